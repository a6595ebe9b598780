//! A baseline's status (SPEC 2.1) from the engine's report.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use super::super::observe::index::StoredBaseline;
use crate::api::{
    API_VERSION, CONDITION_ACCEPTED, CONDITION_RESTRICTED, CronJobBaselineStatus, reasons,
};
use crate::engine::governance::CLUSTER_KIND;
use crate::engine::{BaselineReport, Tier, bounded};

use super::changes::*;

/// Decide a baseline's status (SPEC 2.1): `Accepted` (False names every
/// invalid entry) and `Restricted` (True names every namespace-tier
/// relaxation that is not honoured, SPEC 2.2), with an Event when the
/// baseline becomes invalid or a relaxation starts being refused.
pub fn plan_baseline(
    report: &BaselineReport,
    existing: &StoredBaseline,
    now: &Time,
) -> Option<BaselineChange> {
    let prev = existing.status().cloned().unwrap_or_default();
    let generation = existing.generation();
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
    let restricted = !report.restricted.is_empty();
    let (r_reason, r_message) = if restricted {
        (
            reasons::RELAXATION_IGNORED,
            bounded(report.restricted.join("; "), MAX_NOTE),
        )
    } else {
        (
            reasons::NOT_RESTRICTED,
            "every relaxation is honoured".to_owned(),
        )
    };
    let conditions = vec![
        condition(
            &prev.conditions,
            CONDITION_ACCEPTED,
            accepted,
            &reason,
            message.clone(),
            now,
            generation,
        ),
        condition(
            &prev.conditions,
            CONDITION_RESTRICTED,
            restricted,
            r_reason,
            r_message.clone(),
            now,
            generation,
        ),
    ];
    let status = CronJobBaselineStatus {
        observed_generation: generation,
        entries: report.entries as i32,
        governed_namespaces: report.governed_namespaces as i32,
        matched_cron_jobs: report.matched_cronjobs as i32,
        open_findings: report.open_findings as i32,
        conditions,
        pending_events: prev.pending_events.clone(),
    };
    let write_status = existing.status() != Some(&status);
    if !write_status && status.pending_events.is_empty() {
        return None;
    }
    let was = |t: &str| prev.conditions.iter().find(|c| c.type_ == t).cloned();
    let became =
        |t: &str, on: &str, msg: &str| was(t).is_none_or(|c| c.status != on || c.message != msg);
    let kind = match report.tier {
        Tier::Cluster => CLUSTER_KIND,
        Tier::Namespace => "CronJobBaseline",
    };
    let regarding = ObjectReference {
        api_version: Some(API_VERSION.into()),
        kind: Some(kind.into()),
        namespace: (report.tier == Tier::Namespace).then(|| report.namespace.clone()),
        name: Some(report.name.clone()),
        uid: existing.uid(),
        ..Default::default()
    };
    let mut events = Vec::new();
    if !accepted && became(CONDITION_ACCEPTED, "False", &message) {
        events.push(EventSpec {
            type_: EventType::Warning,
            reason: reasons::BASELINE_REJECTED.into(),
            action: "Validated".into(),
            note: bounded(
                format!("[medium] {kind} {} rejected: {message}", report.key()),
                MAX_NOTE,
            ),
            regarding: regarding.clone(),
            related: None,
        });
    }
    if restricted && became(CONDITION_RESTRICTED, "True", &r_message) {
        events.push(EventSpec {
            type_: EventType::Warning,
            reason: reasons::BASELINE_RESTRICTED.into(),
            action: "Validated".into(),
            note: bounded(
                format!(
                    "[medium] {kind} {} tries to relax what only the cluster tier may: {r_message}",
                    report.key()
                ),
                MAX_NOTE,
            ),
            regarding: regarding.clone(),
            related: None,
        });
    }
    Some(BaselineChange {
        tier: report.tier,
        namespace: report.namespace.clone(),
        name: report.name.clone(),
        status,
        write_status,
        events,
        uid: existing.uid().unwrap_or_default(),
        fingerprint: fingerprint(existing.status()),
        regarding,
    })
}
