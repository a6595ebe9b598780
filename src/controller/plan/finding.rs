//! Desired versus existing findings: the pure heart of the controller.
//! Given what the engine wants and what the API server holds, decide the
//! writes and the Events, carrying timestamps over so that an unchanged
//! state compares equal and costs no write (SPEC 5), and emitting Events
//! only on transitions (SPEC 4).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::runtime::events::EventType;

use crate::api::{
    CONDITION_ACKNOWLEDGED, CONDITION_ACTIVE, CronJobFinding, CronJobFindingStatus, FindingState,
    Rule, Violation, reasons,
};
use crate::engine::{CronJobView, DesiredFinding, bounded, mitre};

use super::changes::*;

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
                        s.violations.iter().find(|p| {
                            p.rule == v.rule && p.field == v.field && p.baseline == v.baseline
                        })
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
            // The actor of the write the evidence reflects; kept while the
            // evidence stands even after the audit window forgot the write.
            let actor = d.actor.clone().or_else(|| {
                continuing
                    .filter(|s| s.observed == d.observed)
                    .and_then(|s| s.actor.clone())
            });
            let status = CronJobFindingStatus {
                state: FindingState::Open,
                severity: Some(d.severity),
                rules: rules_column,
                baselines: d.baselines.clone(),
                owner: d.owner.clone(),
                violations,
                observed: d.observed.clone(),
                actor: actor.clone(),
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
                pending_events: prev.map(|s| s.pending_events.clone()).unwrap_or_default(),
            };
            let want_labels = labels(d.severity.as_str(), FindingState::Open);
            let meta = match existing {
                Some(f) if !labels_differ(f, &want_labels) && f.spec.subject == d.subject => None,
                _ => Some((want_labels, d.subject.clone())),
            };
            let write_status = prev != Some(&status);
            // Events: every rule when the finding opens, new rules after.
            let before: Vec<Rule> = continuing
                .map(|s| s.violations.iter().map(|v| v.rule).collect())
                .unwrap_or_default();
            let regarding = subject_ref(&d.subject);
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
                    note: note_for(&d.subject, v, actor.as_ref()),
                    regarding: regarding.clone(),
                    related: Some(related.clone()),
                });
            }
            let suspend = d
                .suspend_by
                .clone()
                .filter(|_| enforce)
                .and_then(|baseline| {
                    // The CronJob as evaluated: the patch's preconditions.
                    let c = cronjob.filter(|c| c.suspend != Some(true))?;
                    Some(Suspension {
                        baseline,
                        uid: c.uid.clone()?,
                        resource_version: c.resource_version.0.clone()?,
                    })
                })
                // Only the subject this finding is about (never a Job's).
                .filter(|_| d.subject.kind == "CronJob");
            if meta.is_none()
                && !write_status
                && events.is_empty()
                && suspend.is_none()
                && status.pending_events.is_empty()
            {
                return None;
            }
            Some(FindingAction::Upsert(Box::new(FindingChange {
                namespace: d.namespace.clone(),
                name: d.name.clone(),
                uid: existing.and_then(|f| f.metadata.uid.clone()),
                meta,
                status: Some(status),
                write_status,
                events,
                fingerprint: fingerprint(prev),
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
                // Owed Events are written before the evidence goes.
                if expired && prev.pending_events.is_empty() {
                    return Some(FindingAction::Delete { namespace, name });
                }
                // Keep mirroring the acknowledgement on resolved findings.
                let mut status = prev.clone();
                let ack = acknowledged(Some(f), prev_conditions, now);
                status
                    .conditions
                    .retain(|c| c.type_ != CONDITION_ACKNOWLEDGED);
                status.conditions.push(ack);
                let write_status = status != prev;
                if !write_status && status.pending_events.is_empty() {
                    return None;
                }
                return Some(FindingAction::Upsert(Box::new(FindingChange {
                    namespace,
                    name,
                    uid: f.metadata.uid.clone(),
                    meta: None,
                    status: Some(status),
                    write_status,
                    events: Vec::new(),
                    fingerprint: fingerprint(f.status.as_ref()),
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
            let job = f.spec.subject.kind == "Job";
            let reason = if gone && job {
                reasons::JOB_DELETED
            } else if gone && f.spec.subject.uid.is_some() {
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
                reasons::JOB_DELETED => {
                    "the Job was deleted; the finding is kept as evidence".to_owned()
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
                        "[{severity}] {} {}/{}: finding resolved ({reason}): {message}",
                        f.spec.subject.kind, f.spec.subject.namespace, f.spec.subject.name
                    ),
                    MAX_NOTE,
                ),
                regarding: subject_ref(&f.spec.subject),
                related: Some(finding_ref(Some(f), &namespace, &name)),
            };
            Some(FindingAction::Upsert(Box::new(FindingChange {
                namespace,
                name,
                uid: f.metadata.uid.clone(),
                meta: Some((
                    labels(&severity, FindingState::Resolved),
                    f.spec.subject.clone(),
                )),
                status: Some(status),
                write_status: true,
                events: vec![event],
                fingerprint: fingerprint(f.status.as_ref()),
                suspend: None,
            })))
        }
    }
}
