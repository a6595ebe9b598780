//! What a plan is made of (writes, Events) and the small pure helpers the
//! planners share: object references, conditions, labels, evidence equality.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;

use crate::api::{
    API_VERSION, Actor, CONDITION_ACKNOWLEDGED, CronJobBaselineStatus, CronJobFinding,
    CronJobFindingStatus, FindingState, LABEL_SEVERITY, LABEL_STATE, Subject, Violation, reasons,
};
use crate::engine::bounded;

/// Events API limit for `note`.
pub(super) const MAX_NOTE: usize = 1024;

/// An Event to publish once its finding is written.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSpec {
    pub type_: EventType,
    pub reason: String,
    pub action: String,
    pub note: String,
    pub regarding: ObjectReference,
    pub related: Option<ObjectReference>,
}

/// What to write for one finding.
#[derive(Clone, Debug, PartialEq)]
pub enum FindingAction {
    Upsert(Box<FindingChange>),
    Delete { namespace: String, name: String },
}

#[derive(Clone, Debug, PartialEq)]
pub struct FindingChange {
    pub namespace: String,
    pub name: String,
    /// The finding's uid, when it exists already.
    pub uid: Option<String>,
    /// Labels and `spec.subject` to apply (the object is created if missing).
    pub meta: Option<(BTreeMap<String, String>, Subject)>,
    /// The status to hold once the Events are written; its
    /// `pendingEvents` are those earlier transitions still owe (SPEC 4).
    pub status: Option<CronJobFindingStatus>,
    /// The status differs from the server's (otherwise it is written only
    /// to clear pendingEvents once they are delivered).
    pub write_status: bool,
    /// Events of the transitions this change makes.
    pub events: Vec<EventSpec>,
    /// Identifies the status the transitions start from: with the finding's
    /// uid and the reason it names each Event, so a retry after a crash or
    /// a failed status write finds the Event already there (409).
    pub fingerprint: String,
    /// The CronJob to suspend (SPEC 6).
    pub suspend: Option<Suspension>,
}

/// An enforcement action and its preconditions: the CronJob as evaluated.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspension {
    /// The baseline asking for it.
    pub baseline: String,
    pub uid: String,
    pub resource_version: String,
}

/// What a status looks like before a transition: a short hash of it as the
/// server holds it (`none` for a finding without status).
pub fn fingerprint<S: serde::Serialize>(status: Option<&S>) -> String {
    use sha2::{Digest, Sha256};
    match status {
        None => "none".into(),
        Some(s) => {
            let json = serde_json::to_vec(s).unwrap_or_default();
            hex::encode(&Sha256::digest(&json)[..8])
        }
    }
}

/// The name of the Event a transition owes: `<finding>.<16 hex>`, the hex
/// from the finding's uid, the status it started from and the reason, so
/// the same transition always names the same Event.
pub fn event_name(finding: &str, uid: &str, fingerprint: &str, reason: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [uid, fingerprint, reason] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hash = hex::encode(&h.finalize()[..8]);
    let mut base = finding;
    if base.len() > 253 - 17 {
        base = &base[..253 - 17];
    }
    let base = base.trim_end_matches(['.', '-']);
    format!("{base}.{hash}")
}

/// What to write for one baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineChange {
    pub tier: crate::engine::Tier,
    /// Empty for the cluster tier.
    pub namespace: String,
    pub name: String,
    /// With the Events earlier transitions still owe in `pendingEvents`.
    pub status: CronJobBaselineStatus,
    /// The status differs from the server's.
    pub write_status: bool,
    /// BaselineRejected and BaselineRestricted, on transitions only.
    pub events: Vec<EventSpec>,
    /// The baseline's uid and the status its transitions start from: they
    /// name the Events (see [`FindingChange::fingerprint`]).
    pub uid: String,
    pub fingerprint: String,
    /// The baseline, as the Events' `regarding`.
    pub regarding: ObjectReference,
}

/// The Event's `regarding`: the finding's subject, a CronJob or a Job.
pub fn subject_ref(s: &Subject) -> ObjectReference {
    ObjectReference {
        api_version: Some(s.api_version.clone()),
        kind: Some(s.kind.clone()),
        namespace: Some(s.namespace.clone()),
        name: Some(s.name.clone()),
        uid: s.uid.clone(),
        ..Default::default()
    }
}

pub fn cronjob_ref(namespace: &str, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("CronJob".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: uid.map(str::to_owned),
        ..Default::default()
    }
}

pub fn finding_ref(f: Option<&CronJobFinding>, namespace: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some(API_VERSION.into()),
        kind: Some("CronJobFinding".into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: f.and_then(|f| f.metadata.uid.clone()),
        ..Default::default()
    }
}

/// `[severity] CronJob ns/name …`, the note exporters show.
/// `[severity] CronJob ns/name: message`, ending with the actor when known
/// (SPEC 4); a long message is cut, never the actor.
pub(super) fn note_for(subject: &Subject, v: &Violation, actor: Option<&Actor>) -> String {
    let body = if v.message.starts_with(&format!("{} ", subject.kind)) {
        v.message.clone()
    } else {
        format!(
            "{} {}/{}: {}",
            subject.kind, subject.namespace, subject.name, v.message
        )
    };
    let suffix = actor
        .map(|a| format!(" {}", a.describe()))
        .unwrap_or_default();
    let suffix = bounded(suffix, MAX_NOTE / 2);
    let mut note = bounded(format!("[{}] {body}", v.severity), MAX_NOTE - suffix.len());
    note.push_str(&suffix);
    note
}

/// A condition with `lastTransitionTime` kept when its status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    now: &Time,
    generation: Option<i64>,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: last,
        observed_generation: generation,
    }
}

pub(super) fn acknowledged(
    f: Option<&CronJobFinding>,
    previous: &[Condition],
    now: &Time,
) -> Condition {
    let generation = f.map_or(Some(1), |f| f.metadata.generation);
    match f.and_then(|f| f.spec.acknowledgement.as_ref()) {
        None => condition(
            previous,
            CONDITION_ACKNOWLEDGED,
            false,
            reasons::NOT_ACKNOWLEDGED,
            "no acknowledgement in spec.acknowledgement".into(),
            now,
            generation,
        ),
        Some(a) if a.expires.as_ref().is_some_and(|e| e.0 <= now.0) => condition(
            previous,
            CONDITION_ACKNOWLEDGED,
            false,
            reasons::ACKNOWLEDGEMENT_EXPIRED,
            format!(
                "acknowledgement by {} expired at {}",
                a.by,
                a.expires
                    .as_ref()
                    .map(|e| e.0.to_string())
                    .unwrap_or_default()
            ),
            now,
            generation,
        ),
        Some(a) => condition(
            previous,
            CONDITION_ACKNOWLEDGED,
            true,
            reasons::ACKNOWLEDGED,
            bounded(
                format!(
                    "acknowledged by {}{}{}",
                    a.by,
                    a.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default(),
                    a.expires
                        .as_ref()
                        .map(|e| format!(" (until {})", e.0))
                        .unwrap_or_default()
                ),
                MAX_NOTE,
            ),
            now,
            generation,
        ),
    }
}

pub(super) fn labels(severity: &str, state: FindingState) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_SEVERITY.to_owned(), severity.to_owned()),
        (LABEL_STATE.to_owned(), state.as_str().to_owned()),
    ])
}

pub(super) fn labels_differ(f: &CronJobFinding, want: &BTreeMap<String, String>) -> bool {
    let have = f.metadata.labels.as_ref();
    want.iter()
        .any(|(k, v)| have.and_then(|h| h.get(k)) != Some(v))
}

pub(super) fn evidence_equal(a: &Violation, b: &Violation) -> bool {
    a.severity == b.severity
        && a.baseline == b.baseline
        && a.message == b.message
        && a.expected == b.expected
        && a.actual == b.actual
}
