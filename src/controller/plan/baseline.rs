//! A baseline's status (SPEC 2.1) from the engine's report.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

use crate::api::{
    API_VERSION, CONDITION_ACCEPTED, CronJobBaseline, CronJobBaselineStatus, reasons,
};
use crate::engine::{BaselineReport, bounded};

use super::changes::*;

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
