//! What a baseline entry may relax (SPEC 2.2, as of 2026-12-07).
//!
//! Relaxations are `waive`, a `minInterval` below the HighFrequencySchedule
//! threshold, and `severityOverrides` that lower a severity. Each is
//! weighed per violation against its **gate**: the violation's own severity
//! (graded, like hostPath `/`, or the rule's default) after the controller
//! settings, raised — never lowered — by the matched entries' overrides. A
//! lowered severity never unlocks a further relaxation: a cluster override
//! `HostPathMount: medium` does not make a namespace waiver of that
//! violation count.
//!
//! - At a gate of medium or lower, any matched entry may relax (the
//!   namespace tier only rules the catalogue marks relaxable; SPEC 2.2
//!   also says a namespace override "may only raise": we honour a team's
//!   lowering exactly where its waiver would be, the stronger relaxation,
//!   as before, and refuse it everywhere else).
//! - Above medium, only a cluster-tier entry that names the CronJob's
//!   namespace in `namespaces`. A CronJob's name and labels are written by
//!   whoever writes the CronJob, so an entry matched by `name`,
//!   `namePattern` or `selector` alone must not hand a tenant the
//!   platform's exemptions.
//!
//! A relaxation not honoured is reported on the baseline that asked for it
//! (Restricted=True), by the same [`Finder`](crate::engine::verdict::Finder)
//! call that kept the violation, so the report says exactly what the
//! evaluation did not honour.

use super::{CompiledEntry, Tier};
use crate::api::{Rule, Severity};
use crate::engine::Settings;

/// The highest gate any entry may relax without naming its namespaces.
pub const RELAX_CEILING: Severity = Severity::Medium;

/// A violation's severity before any baseline: its own (or the rule's
/// default), then the controller settings.
pub fn base_severity(rule: Rule, given: Option<Severity>, settings: &Settings) -> Severity {
    settings
        .severity_overrides
        .get(&rule)
        .copied()
        .or(given)
        .unwrap_or_else(|| rule.default_severity())
}

/// The severity relaxations are weighed against: `base` raised by any
/// matched entry's override of `rule` that raises it (lowerings ignored);
/// the matched entries are the approvals of both tiers and the cluster
/// tier's guardrails.
pub fn gate<'e>(
    rule: Rule,
    base: Severity,
    matched: impl IntoIterator<Item = &'e CompiledEntry>,
) -> Severity {
    matched
        .into_iter()
        .filter_map(|e| e.severity_overrides.get(&rule).copied())
        .fold(base, Severity::max)
}

/// Whether `entry`, matched by a CronJob in namespace `ns`, may relax a
/// violation of `rule` whose gate is `gate` (waive it, lower it, or loosen
/// its minInterval).
pub fn may_relax(entry: &CompiledEntry, rule: Rule, gate: Severity, ns: &str) -> bool {
    match entry.tier {
        Tier::Cluster => gate <= RELAX_CEILING || entry.scoped_to(ns),
        Tier::Namespace => rule.info().namespace_may_relax && gate <= RELAX_CEILING,
    }
}

/// Why a relaxation of `entry` is not honoured, for Restricted. One
/// message per entry and relaxation, whatever violation or namespace it
/// met, so the report does not churn.
pub fn refusal(entry: &CompiledEntry, what: &str, rule: Rule) -> String {
    let why = match entry.tier {
        Tier::Namespace if !rule.info().namespace_may_relax => {
            format!("only the cluster tier may relax {rule}")
        }
        Tier::Namespace => format!("{rule} is above {RELAX_CEILING} here"),
        Tier::Cluster => format!(
            "{rule} is above {RELAX_CEILING} here, and only an entry that names the CronJob's \
             namespace in `namespaces` may relax it"
        ),
    };
    format!("{}: {what} is not honoured ({why})", entry.label())
}
