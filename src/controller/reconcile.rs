//! Desired versus existing: the pure heart of the controller. Given what the
//! engine wants and what the API server holds, decide the writes and the
//! Events, carrying timestamps over so that an unchanged state compares
//! equal and costs no write (SPEC 5), and emitting Events only on
//! transitions (SPEC 4).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;

use crate::api::{
    API_VERSION, CONDITION_ACCEPTED, CONDITION_ACKNOWLEDGED, CONDITION_ACTIVE, CronJobBaseline,
    CronJobBaselineStatus, CronJobFinding, CronJobFindingStatus, FindingState, LABEL_SEVERITY,
    LABEL_STATE, Rule, Subject, Violation, reasons,
};
use crate::engine::{BaselineReport, CronJobView, DesiredFinding, bounded, mitre};

/// Events API limit for `note`.
const MAX_NOTE: usize = 1024;

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
    /// Labels and `spec.subject` to apply (the object is created if missing).
    pub meta: Option<(BTreeMap<String, String>, Subject)>,
    pub status: Option<CronJobFindingStatus>,
    pub events: Vec<EventSpec>,
    /// The CronJob to suspend, and the baseline asking for it.
    pub suspend: Option<String>,
}

/// What to write for one baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct BaselineChange {
    pub namespace: String,
    pub name: String,
    pub status: CronJobBaselineStatus,
    pub event: Option<EventSpec>,
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
fn note_for(namespace: &str, name: &str, v: &Violation) -> String {
    let body = if v.message.starts_with("CronJob ") {
        v.message.clone()
    } else {
        format!("CronJob {namespace}/{name}: {}", v.message)
    };
    bounded(format!("[{}] {body}", v.severity), MAX_NOTE)
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

fn acknowledged(f: Option<&CronJobFinding>, previous: &[Condition], now: &Time) -> Condition {
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

fn labels(severity: &str, state: FindingState) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_SEVERITY.to_owned(), severity.to_owned()),
        (LABEL_STATE.to_owned(), state.as_str().to_owned()),
    ])
}

fn labels_differ(f: &CronJobFinding, want: &BTreeMap<String, String>) -> bool {
    let have = f.metadata.labels.as_ref();
    want.iter()
        .any(|(k, v)| have.and_then(|h| h.get(k)) != Some(v))
}

fn evidence_equal(a: &Violation, b: &Violation) -> bool {
    a.severity == b.severity
        && a.message == b.message
        && a.expected == b.expected
        && a.actual == b.actual
}

/// Decide what one finding needs. `cronjob` is the live CronJob of that
/// name, if any; `enforce` says whether suspension is allowed at all.
pub fn plan_finding(
    desired: Option<&DesiredFinding>,
    existing: Option<&CronJobFinding>,
    cronjob: Option<&CronJobView>,
    now: &Time,
    retention: Duration,
    enforce: bool,
) -> Option<FindingAction> {
    let prev = existing.and_then(|f| f.status.as_ref());
    let prev_conditions: &[Condition] = prev.map(|s| s.conditions.as_slice()).unwrap_or_default();
    // A finding we are about to create starts at generation 1.
    let generation = existing.map_or(Some(1), |f| f.metadata.generation);
    match (desired, existing) {
        (None, None) => None,
        (Some(d), _) => {
            let continuing = prev.filter(|s| s.state == FindingState::Open);
            let mut changed = continuing.is_none();
            let violations: Vec<Violation> = d
                .violations
                .iter()
                .map(|v| {
                    let before = continuing.and_then(|s| {
                        s.violations
                            .iter()
                            .find(|p| p.rule == v.rule && p.field == v.field)
                    });
                    let (first, last) = match before {
                        Some(p) if evidence_equal(p, v) => {
                            (p.first_seen.clone(), p.last_seen.clone())
                        }
                        Some(p) => {
                            changed = true;
                            (p.first_seen.clone(), Some(now.clone()))
                        }
                        None => {
                            changed = true;
                            (Some(now.clone()), Some(now.clone()))
                        }
                    };
                    Violation {
                        first_seen: first.or_else(|| Some(now.clone())),
                        last_seen: last.or_else(|| Some(now.clone())),
                        ..v.clone()
                    }
                })
                .collect();
            let rules_column = d.rules_column();
            if let Some(s) = continuing {
                // Violations that went away, or evidence that changed.
                if s.violations.len() != violations.len()
                    || s.observed != d.observed
                    || s.rules != rules_column
                {
                    changed = true;
                }
            }
            let status = CronJobFindingStatus {
                state: FindingState::Open,
                severity: Some(d.severity),
                rules: rules_column,
                baselines: d.baselines.clone(),
                owner: d.owner.clone(),
                violations,
                observed: d.observed.clone(),
                mitre: Some(mitre()),
                first_seen: continuing
                    .and_then(|s| s.first_seen.clone())
                    .or_else(|| Some(now.clone())),
                last_seen: if changed {
                    Some(now.clone())
                } else {
                    continuing.and_then(|s| s.last_seen.clone())
                },
                resolved_at: None,
                observed_generation: generation,
                conditions: vec![
                    condition(
                        prev_conditions,
                        CONDITION_ACTIVE,
                        true,
                        reasons::VIOLATIONS_OPEN,
                        bounded(format!("[{}] {}", d.severity, d.summary()), MAX_NOTE),
                        now,
                        generation,
                    ),
                    acknowledged(existing, prev_conditions, now),
                ],
            };
            let want_labels = labels(d.severity.as_str(), FindingState::Open);
            let meta = match existing {
                Some(f) if !labels_differ(f, &want_labels) && f.spec.subject == d.subject => None,
                _ => Some((want_labels, d.subject.clone())),
            };
            let status_change = (prev != Some(&status)).then_some(status);
            // Events: every rule when the finding opens, new rules after.
            let before: Vec<Rule> = continuing
                .map(|s| s.violations.iter().map(|v| v.rule).collect())
                .unwrap_or_default();
            let regarding = cronjob_ref(&d.namespace, &d.name, d.subject.uid.as_deref());
            let related = finding_ref(existing, &d.namespace, &d.name);
            let mut events = Vec::new();
            for rule in d.rules() {
                if before.contains(&rule) {
                    continue;
                }
                let Some(v) = d.violations.iter().find(|v| v.rule == rule) else {
                    continue;
                };
                events.push(EventSpec {
                    type_: EventType::Warning,
                    reason: rule.as_str().into(),
                    action: "Detected".into(),
                    note: note_for(&d.namespace, &d.name, v),
                    regarding: regarding.clone(),
                    related: Some(related.clone()),
                });
            }
            let suspend = d
                .suspend_by
                .clone()
                .filter(|_| enforce)
                .filter(|_| cronjob.is_some_and(|c| c.suspend != Some(true)));
            if meta.is_none() && status_change.is_none() && events.is_empty() && suspend.is_none() {
                return None;
            }
            Some(FindingAction::Upsert(Box::new(FindingChange {
                namespace: d.namespace.clone(),
                name: d.name.clone(),
                meta,
                status: status_change,
                events,
                suspend,
            })))
        }
        (None, Some(f)) => {
            let namespace = f.metadata.namespace.clone().unwrap_or_default();
            let name = f.metadata.name.clone().unwrap_or_default();
            let prev = prev.cloned().unwrap_or_default();
            if prev.state == FindingState::Resolved {
                let expired = prev
                    .resolved_at
                    .as_ref()
                    .is_none_or(|t| t.0 + retention <= now.0);
                if expired {
                    return Some(FindingAction::Delete { namespace, name });
                }
                // Keep mirroring the acknowledgement on resolved findings.
                let mut status = prev.clone();
                let ack = acknowledged(Some(f), prev_conditions, now);
                status
                    .conditions
                    .retain(|c| c.type_ != CONDITION_ACKNOWLEDGED);
                status.conditions.push(ack);
                if status == prev {
                    return None;
                }
                return Some(FindingAction::Upsert(Box::new(FindingChange {
                    namespace,
                    name,
                    meta: None,
                    status: Some(status),
                    events: Vec::new(),
                    suspend: None,
                })));
            }
            let gone = match cronjob {
                None => true,
                Some(c) => f
                    .spec
                    .subject
                    .uid
                    .as_ref()
                    .is_some_and(|u| c.uid.as_ref() != Some(u)),
            };
            let reason = if gone && f.spec.subject.uid.is_some() {
                reasons::CRONJOB_DELETED
            } else if prev
                .violations
                .iter()
                .any(|v| v.rule == Rule::NotInBaseline)
            {
                reasons::APPROVED
            } else {
                reasons::RESOLVED
            };
            let message = match reason {
                reasons::CRONJOB_DELETED => {
                    "the CronJob was deleted; the finding is kept as evidence".to_owned()
                }
                reasons::APPROVED => "the CronJob is now approved by a baseline".to_owned(),
                _ => "no violation remains".to_owned(),
            };
            let severity = prev
                .severity
                .map(|s| s.as_str())
                .unwrap_or("info")
                .to_owned();
            let status = CronJobFindingStatus {
                state: FindingState::Resolved,
                resolved_at: Some(now.clone()),
                last_seen: Some(now.clone()),
                observed_generation: generation,
                conditions: vec![
                    condition(
                        prev_conditions,
                        CONDITION_ACTIVE,
                        false,
                        reason,
                        message.clone(),
                        now,
                        generation,
                    ),
                    acknowledged(Some(f), prev_conditions, now),
                ],
                ..prev
            };
            let event = EventSpec {
                type_: EventType::Normal,
                reason: reasons::FINDING_RESOLVED.into(),
                action: "Resolved".into(),
                note: bounded(
                    format!(
                        "[{severity}] CronJob {namespace}/{name}: finding resolved ({reason}): {message}"
                    ),
                    MAX_NOTE,
                ),
                regarding: cronjob_ref(&namespace, &name, f.spec.subject.uid.as_deref()),
                related: Some(finding_ref(Some(f), &namespace, &name)),
            };
            Some(FindingAction::Upsert(Box::new(FindingChange {
                namespace,
                name,
                meta: Some((
                    labels(&severity, FindingState::Resolved),
                    f.spec.subject.clone(),
                )),
                status: Some(status),
                events: vec![event],
                suspend: None,
            })))
        }
    }
}

/// Decide a baseline's status (SPEC 2.1) and whether it just became invalid.
pub fn plan_baseline(
    report: &BaselineReport,
    existing: &CronJobBaseline,
    now: &Time,
) -> Option<BaselineChange> {
    let prev = existing.status.clone().unwrap_or_default();
    let generation = existing.metadata.generation;
    let accepted = report.problems.is_empty();
    let (reason, message) = if accepted {
        (
            reasons::ACCEPTED.to_owned(),
            format!("{} entries accepted", report.entries),
        )
    } else {
        (
            report.problems[0].reason.to_owned(),
            bounded(
                report
                    .problems
                    .iter()
                    .map(|p| p.message.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                MAX_NOTE,
            ),
        )
    };
    let cond = condition(
        &prev.conditions,
        CONDITION_ACCEPTED,
        accepted,
        &reason,
        message.clone(),
        now,
        generation,
    );
    let status = CronJobBaselineStatus {
        observed_generation: generation,
        entries: report.entries as i32,
        governed_namespaces: report.governed_namespaces as i32,
        matched_cron_jobs: report.matched_cronjobs as i32,
        open_findings: report.open_findings as i32,
        conditions: vec![cond],
    };
    if existing.status.as_ref() == Some(&status) {
        return None;
    }
    let was = prev
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_ACCEPTED);
    let newly_rejected =
        !accepted && was.is_none_or(|c| c.status != "False" || c.message != message);
    let event = newly_rejected.then(|| EventSpec {
        type_: EventType::Warning,
        reason: reasons::BASELINE_REJECTED.into(),
        action: "Validated".into(),
        note: bounded(
            format!(
                "[medium] CronJobBaseline {}/{} rejected: {message}",
                report.namespace, report.name
            ),
            MAX_NOTE,
        ),
        regarding: ObjectReference {
            api_version: Some(API_VERSION.into()),
            kind: Some("CronJobBaseline".into()),
            namespace: Some(report.namespace.clone()),
            name: Some(report.name.clone()),
            uid: existing.metadata.uid.clone(),
            ..Default::default()
        },
        related: None,
    });
    Some(BaselineChange {
        namespace: report.namespace.clone(),
        name: report.name.clone(),
        status,
        event,
    })
}
