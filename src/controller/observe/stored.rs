//! A finding as the index keeps it between rounds: its JSON, deflated.
//!
//! The index must hold every finding of the cluster (plan_finding compares
//! the whole status, carries timestamps over and writes the resolution
//! with the evidence it had). As decoded objects they cost ~3.3 KB each
//! (dozens of small strings: conditions, violations, evidence, MITRE,
//! timestamps); 27,500 of them were 90 MiB of the 100k-CronJob bench. As
//! deflated JSON they cost ~0.7 KB. A finding is decoded only while its
//! namespace is planned, so the round pays ~15 µs per finding of a dirty
//! namespace and nothing for the others. What the index reads of every
//! finding each round (uid, resourceVersion, owed Events) stays beside the
//! bytes, undecoded.

use std::io::{Read, Write};

use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use kube::ResourceExt;

use crate::api::CronJobFinding;

pub struct StoredFinding {
    uid: Option<Box<str>>,
    /// Parsed for the newer-wins comparison; None when not a number.
    resource_version: Option<u64>,
    pending_events: u32,
    deflated: Box<[u8]>,
}

impl StoredFinding {
    /// Encode a finding (its managedFields dropped: several KB of JSON
    /// nobody reads, returned by writes as well as by the watch).
    pub fn encode(mut f: CronJobFinding) -> Keyed {
        f.metadata.managed_fields = None;
        let json = serde_json::to_vec(&f).unwrap_or_default();
        let mut e = DeflateEncoder::new(Vec::with_capacity(json.len() / 2), Compression::fast());
        // Writing into a Vec cannot fail.
        let deflated = match e.write_all(&json).and_then(|()| e.finish()) {
            Ok(v) => v.into_boxed_slice(),
            Err(_) => Box::default(),
        };
        let stored = StoredFinding {
            uid: f.metadata.uid.as_deref().map(Into::into),
            resource_version: f
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok()),
            pending_events: f
                .status
                .as_ref()
                .map_or(0, |s| s.pending_events.len() as u32),
            deflated,
        };
        Keyed {
            namespace: f.namespace().unwrap_or_default(),
            name: f.name_any(),
            stored,
        }
    }

    /// The finding as it was stored. The bytes are our own encoding of a
    /// value that serialised, so this fails only on a bug; the error names
    /// the finding and the caller treats it as a failed key (retried with
    /// backoff, never silently dropped).
    pub fn decode(&self, namespace: &str, name: &str) -> Result<CronJobFinding, String> {
        let mut json = Vec::with_capacity(self.deflated.len() * 3);
        DeflateDecoder::new(&self.deflated[..])
            .read_to_end(&mut json)
            .map_err(|e| e.to_string())
            .and_then(|_| serde_json::from_slice(&json).map_err(|e| e.to_string()))
            .map_err(|e| {
                format!(
                    "CronJobFinding {}/{}: the index's copy does not decode: {e}",
                    namespace, name
                )
            })
    }

    pub fn uid(&self) -> Option<&str> {
        self.uid.as_deref()
    }

    /// Events this finding still owes (SPEC 4), for the gauge.
    pub fn pending_events(&self) -> usize {
        self.pending_events as usize
    }

    /// Bytes held for the finding's body.
    pub fn encoded_len(&self) -> usize {
        self.deflated.len()
    }

    /// Newer wins: a watch event older than what a write returned is
    /// ignored, so a lagging watch never makes us re-emit Events.
    /// resourceVersions are opaque, but etcd-backed servers issue
    /// increasing integers; when both parse, an older one is stale.
    pub fn is_older_than(&self, old: &StoredFinding) -> bool {
        self.uid == old.uid
            && matches!((self.resource_version, old.resource_version), (Some(n), Some(o)) if n < o)
    }
}

/// A stored finding with its key, as the watch and writes deliver it (the
/// index keeps the key only as its map keys).
pub struct Keyed {
    pub namespace: String,
    pub name: String,
    pub stored: StoredFinding,
}

impl From<CronJobFinding> for Keyed {
    fn from(f: CronJobFinding) -> Self {
        StoredFinding::encode(f)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    use super::*;

    /// Every finding `cronwarden scan` writes for the bundled samples.
    fn samples() -> Vec<CronJobFinding> {
        let list: serde_json::Value =
            serde_json::from_str(include_str!("../../../tests/golden/samples.json")).unwrap();
        let found: Vec<CronJobFinding> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "CronJobFinding")
            .map(|o| serde_json::from_value(o.clone()).unwrap())
            .collect();
        assert!(found.len() >= 5, "the samples have findings");
        found
    }

    fn with(uid: &str, rv: &str) -> Keyed {
        let mut f = samples().remove(0);
        f.metadata.uid = Some(uid.into());
        f.metadata.resource_version = Some(rv.into());
        f.into()
    }

    #[test]
    fn a_finding_decodes_as_it_was_stored_less_its_managed_fields() {
        for mut f in samples() {
            f.metadata.uid = Some("3f1c2d4e-0000-4000-8000-000000000001".into());
            f.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
                manager: Some("cronwarden".into()),
                ..Default::default()
            }]);
            if let Some(s) = f.status.as_mut() {
                s.pending_events.clear();
            }
            let k = Keyed::from(f.clone());
            let back = k.stored.decode(&k.namespace, &k.name).unwrap();
            f.metadata.managed_fields = None;
            assert_eq!(
                serde_json::to_value(&back).unwrap(),
                serde_json::to_value(&f).unwrap()
            );
            assert_eq!((back.status, back.spec), (f.status.clone(), f.spec.clone()));
            assert_eq!(
                (k.namespace.as_str(), k.name.as_str()),
                (f.namespace().unwrap().as_str(), f.name_any().as_str())
            );
            assert_eq!(k.stored.uid(), f.metadata.uid.as_deref());
            // What the index saves: the JSON is at least twice the bytes kept.
            let json = serde_json::to_vec(&f).unwrap().len();
            assert!(
                k.stored.encoded_len() * 2 <= json,
                "{} of {json}",
                k.stored.encoded_len()
            );
        }
    }

    #[test]
    fn owed_events_are_counted_without_decoding() {
        let mut f = samples().remove(0);
        let s = f.status.get_or_insert_with(Default::default);
        s.pending_events = (0..3)
            .map(|i| crate::api::PendingEvent {
                name: format!("e{i}"),
                type_: "Warning".into(),
                reason: "NotInBaseline".into(),
                action: "Detected".into(),
                note: String::new(),
                regarding_uid: None,
            })
            .collect();
        assert_eq!(Keyed::from(f).stored.pending_events(), 3);
    }

    #[test]
    fn an_older_copy_of_the_same_finding_is_stale() {
        let (a, b) = ("uid-a", "uid-b");
        assert!(with(a, "9").stored.is_older_than(&with(a, "10").stored));
        assert!(!with(a, "10").stored.is_older_than(&with(a, "9").stored));
        assert!(!with(a, "10").stored.is_older_than(&with(a, "10").stored));
        // A new finding of the same name: never stale, whatever the numbers.
        assert!(!with(b, "9").stored.is_older_than(&with(a, "10").stored));
        // Opaque resourceVersions: never judged.
        assert!(!with(a, "x").stored.is_older_than(&with(a, "10").stored));
    }

    #[test]
    fn bytes_that_do_not_decode_are_an_error_naming_the_finding() {
        let mut k = with("u", "1");
        k.stored.deflated = vec![0xff, 0x00, 0x13].into_boxed_slice();
        let e = k.stored.decode("apps", "rogue").unwrap_err();
        assert!(e.contains("CronJobFinding apps/rogue"), "{e}");
    }
}
