//! What a namespace baseline may relax (SPEC 2.2). Relaxations — `waive`,
//! a `minInterval` below the HighFrequencySchedule threshold, and
//! `severityOverrides` that lower a severity — are honoured from the
//! cluster tier for any rule. From the namespace tier only for heuristics
//! the catalogue marks relaxable and whose severity, after the controller
//! settings and the cluster tier's overrides, is medium or lower; a
//! namespace override may always raise. Anything else is ignored and
//! reported on the baseline (Restricted=True), never silently dropped.

use super::CompiledEntry;
use crate::api::{Rule, Severity};
use crate::engine::Settings;
use crate::engine::normalize::format_duration;

/// The highest severity a namespace baseline may relax.
pub const NAMESPACE_RELAX_CEILING: Severity = Severity::Medium;

/// The severity of a violation before any namespace-tier relaxation: its
/// own (or the rule's default), then the controller settings, then the
/// matched cluster-tier entry.
pub fn severity_before_namespace(
    rule: Rule,
    given: Option<Severity>,
    settings: &Settings,
    cluster: Option<&CompiledEntry>,
) -> Severity {
    cluster
        .and_then(|e| e.severity_overrides.get(&rule))
        .or_else(|| settings.severity_overrides.get(&rule))
        .copied()
        .or(given)
        .unwrap_or_else(|| rule.default_severity())
}

/// Whether a namespace baseline may relax `rule` at this severity.
pub fn namespace_may_relax(rule: Rule, severity: Severity) -> bool {
    rule.info().namespace_may_relax && severity <= NAMESPACE_RELAX_CEILING
}

/// Why a namespace-tier relaxation is not honoured, for Restricted.
/// It does not name the severity met: one message per entry and
/// relaxation, whatever violation it met, so the report does not churn.
pub fn refusal(entry: &CompiledEntry, what: &str, rule: Rule) -> String {
    let why = if rule.info().namespace_may_relax {
        format!("{rule} is above {NAMESPACE_RELAX_CEILING} here")
    } else {
        format!("only the cluster tier may relax {rule}")
    };
    format!("{}: {what} is not honoured ({why})", entry.label())
}

/// The relaxations of a namespace-tier entry that no CronJob can ever get
/// under these settings (before any cluster-tier override is known).
/// Relaxations refused only because of a cluster entry are found during
/// evaluation and reported the same way.
pub fn never_honoured(e: &CompiledEntry, settings: &Settings) -> Vec<String> {
    let sev = |r: Rule| severity_before_namespace(r, None, settings, None);
    let mut out = Vec::new();
    for r in &e.waive {
        if !namespace_may_relax(*r, sev(*r)) {
            out.push(refusal(e, &format!("waive {r}"), *r));
        }
    }
    for (r, s) in &e.severity_overrides {
        if *s < sev(*r) && !namespace_may_relax(*r, sev(*r)) {
            out.push(refusal(e, &format!("severityOverrides {r}: {s}"), *r));
        }
    }
    if let Some(min) = e.min_interval
        && min < settings.min_interval
    {
        let hfs = Rule::HighFrequencySchedule;
        if !namespace_may_relax(hfs, sev(hfs)) {
            let what = format!("minInterval {}", format_duration(min));
            out.push(refusal(e, &what, hfs));
        }
    }
    out
}
