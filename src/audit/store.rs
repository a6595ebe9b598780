//! The correlation window: the last few audited writes per object, so a
//! finding can name who made the write its evidence reflects (SPEC 2.4).
//!
//! Memory is bounded three ways: at most `per_object` writes per
//! kind/namespace/name (default 4), none older than `window` (default one
//! hour), and at most `max_objects` objects (default 100,000); what does
//! not fit is dropped and counted.
//!
//! Attribution, for an observed object (uid, generation, resourceVersion):
//! 1. `exact`: a write whose response object carries the observed
//!    resourceVersion;
//! 2. otherwise the latest write of the same uid at or before the observed
//!    resourceVersion: `exact` when it produced the observed generation
//!    (later writes were to the status subresource, which never counts);
//!    when it produced an older generation the write behind the evidence
//!    has not been seen yet, and nobody is named rather than the wrong
//!    person;
//! 3. `nearest` when the writes carry no object (`Metadata` level): the
//!    latest one, by time.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap as HashMap;

use super::{AuditWrite, SubjectKind};
use crate::api::{Actor, ActorMatch};

#[derive(Clone, Debug)]
struct Stored {
    uid: Option<String>,
    rv: Option<String>,
    generation: Option<i64>,
    actor: Actor,
    received: Instant,
    seq: u64,
}

type Key = (SubjectKind, String, String);

pub struct ActorStore {
    per_object: usize,
    window: Duration,
    max_objects: usize,
    map: HashMap<Key, VecDeque<Stored>>,
    seq: u64,
    /// Writes dropped because the store was full.
    pub dropped: u64,
}

/// What the controller observed of a subject.
#[derive(Clone, Copy, Debug, Default)]
pub struct ObservedRef<'a> {
    pub uid: Option<&'a str>,
    pub generation: Option<i64>,
    pub resource_version: Option<&'a str>,
}

impl Default for ActorStore {
    fn default() -> Self {
        ActorStore::new(4, Duration::from_secs(3600), 100_000)
    }
}

impl ActorStore {
    pub fn new(per_object: usize, window: Duration, max_objects: usize) -> Self {
        ActorStore {
            per_object: per_object.max(1),
            window,
            max_objects,
            map: HashMap::default(),
            seq: 0,
            dropped: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.map.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keep a write; false when it was dropped (store full) or is a delete.
    pub fn record(&mut self, w: &AuditWrite, now: Instant) -> bool {
        if w.deleted || w.name.is_empty() {
            return false;
        }
        let key = (w.kind, w.namespace.clone(), w.name.clone());
        if !self.map.contains_key(&key) && self.map.len() >= self.max_objects {
            self.sweep(now);
            if self.map.len() >= self.max_objects {
                self.dropped += 1;
                return false;
            }
        }
        self.seq += 1;
        let q = self.map.entry(key).or_default();
        if q.len() >= self.per_object {
            q.pop_front();
        }
        q.push_back(Stored {
            uid: w.uid.clone(),
            rv: w.resource_version.clone(),
            generation: w.generation,
            actor: w.actor.clone(),
            received: now,
            seq: self.seq,
        });
        true
    }

    /// Forget writes older than the window; returns how many went.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        self.map.retain(|_, q| {
            let before = q.len();
            q.retain(|s| now.duration_since(s.received) < self.window);
            gone += before - q.len();
            !q.is_empty()
        });
        gone
    }

    /// Everything of a namespace (deleted).
    pub fn forget_namespace(&mut self, ns: &str) {
        self.map.retain(|(_, n, _), _| n != ns);
    }

    /// Who made the write the observed object reflects, if known.
    pub fn lookup(
        &self,
        kind: SubjectKind,
        ns: &str,
        name: &str,
        obs: ObservedRef,
    ) -> Option<Actor> {
        let q = self.map.get(&(kind, ns.to_owned(), name.to_owned()))?;
        attribute(q.iter(), obs)
    }
}

fn attribute<'a>(
    writes: impl Iterator<Item = &'a Stored> + Clone,
    obs: ObservedRef,
) -> Option<Actor> {
    let with = |s: &Stored, m: ActorMatch| Actor {
        match_: m,
        ..s.actor.clone()
    };
    if let Some(rv) = obs.resource_version
        && let Some(s) = writes.clone().find(|s| s.rv.as_deref() == Some(rv))
    {
        return Some(with(s, ActorMatch::Exact));
    }
    let observed_rv = obs.resource_version.and_then(|v| v.parse::<u64>().ok());
    let candidate = writes
        .filter(|s| match (s.uid.as_deref(), obs.uid) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        })
        .filter(|s| {
            match (
                s.rv.as_deref().and_then(|v| v.parse::<u64>().ok()),
                observed_rv,
            ) {
                (Some(w), Some(o)) => w <= o,
                _ => true,
            }
        })
        .max_by(|a, b| {
            (a.actor.time.as_ref().map(|t| t.0), a.seq)
                .cmp(&(b.actor.time.as_ref().map(|t| t.0), b.seq))
        })?;
    match (candidate.generation, obs.generation) {
        (Some(w), Some(o))
            if w == o && candidate.uid.is_some() && candidate.uid.as_deref() == obs.uid =>
        {
            Some(with(candidate, ActorMatch::Exact))
        }
        // The write that made the evidence is not in the window (yet).
        (Some(_), Some(_)) => None,
        _ => Some(with(candidate, ActorMatch::Nearest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn write(user: &str, rv: Option<&str>, generation: Option<i64>, secs: i64) -> AuditWrite {
        AuditWrite {
            kind: SubjectKind::CronJob,
            namespace: "ns".into(),
            name: "cj".into(),
            actor: Actor {
                user: user.into(),
                verb: "update".into(),
                time: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).unwrap(),
                )),
                ..Actor::default()
            },
            object: None,
            uid: rv.map(|_| "u1".into()),
            resource_version: rv.map(str::to_owned),
            generation,
            deleted: false,
        }
    }

    fn obs<'a>(rv: &'a str, generation: i64) -> ObservedRef<'a> {
        ObservedRef {
            uid: Some("u1"),
            generation: Some(generation),
            resource_version: Some(rv),
        }
    }

    #[test]
    fn exact_by_resource_version_then_by_generation_after_status_writes() {
        let mut s = ActorStore::default();
        let now = Instant::now();
        s.record(&write("alice", Some("10"), Some(1), 0), now);
        s.record(&write("mallory", Some("20"), Some(2), 10), now);
        let a = s
            .lookup(SubjectKind::CronJob, "ns", "cj", obs("20", 2))
            .unwrap();
        assert_eq!((a.user.as_str(), a.match_), ("mallory", ActorMatch::Exact));
        // The cronjob controller wrote status since: rv 25, same generation.
        let a = s
            .lookup(SubjectKind::CronJob, "ns", "cj", obs("25", 2))
            .unwrap();
        assert_eq!((a.user.as_str(), a.match_), ("mallory", ActorMatch::Exact));
        // Observed before mallory's write landed: alice's state.
        let a = s
            .lookup(SubjectKind::CronJob, "ns", "cj", obs("15", 1))
            .unwrap();
        assert_eq!(a.user, "alice");
    }

    #[test]
    fn the_write_behind_the_evidence_not_seen_yet_names_nobody() {
        let mut s = ActorStore::default();
        s.record(&write("alice", Some("10"), Some(1), 0), Instant::now());
        // Generation 2 was written by someone whose audit event is late.
        assert!(
            s.lookup(SubjectKind::CronJob, "ns", "cj", obs("30", 2))
                .is_none()
        );
    }

    #[test]
    fn metadata_level_writes_are_nearest() {
        let mut s = ActorStore::default();
        s.record(&write("bob", None, None, 0), Instant::now());
        s.record(&write("carol", None, None, 5), Instant::now());
        let a = s
            .lookup(SubjectKind::CronJob, "ns", "cj", obs("30", 2))
            .unwrap();
        assert_eq!((a.user.as_str(), a.match_), ("carol", ActorMatch::Nearest));
        assert!(
            s.lookup(SubjectKind::Job, "ns", "cj", obs("30", 2))
                .is_none()
        );
    }

    #[test]
    fn bounded_per_object_by_objects_and_by_time() {
        let mut s = ActorStore::new(2, Duration::from_secs(60), 2);
        let t0 = Instant::now();
        for i in 0..5 {
            s.record(
                &write(&format!("u{i}"), Some(&format!("{}", 10 + i)), Some(1), i),
                t0,
            );
        }
        assert_eq!(s.len(), 2);
        let mut other = write("x", Some("1"), Some(1), 0);
        other.name = "b".into();
        assert!(s.record(&other, t0));
        other.name = "c".into();
        assert!(!s.record(&other, t0));
        assert_eq!(s.dropped, 1);
        assert_eq!(s.sweep(t0 + Duration::from_secs(61)), 3);
        assert!(s.is_empty());
        other.deleted = true;
        assert!(!s.record(&other, t0));
    }
}
