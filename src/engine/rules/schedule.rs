//! Schedule rules: the entry's approved schedules, time zones and
//! minInterval (ScheduleNotApproved), and the global frequency heuristic.

use super::Ctx;
use crate::engine::CompiledEntry;
use crate::engine::normalize::{format_duration, normalize_schedule};
use crate::engine::verdict::Finder;

/// Schedule among the entry's (canonical form), timeZone among the
/// entry's, and no more frequent than its minInterval.
pub fn approved(ctx: &Ctx, e: &CompiledEntry, f: &mut Finder) {
    let cj = ctx.cj;
    let approved_by = e.label();
    if !e.schedules.is_empty() {
        let ok = e.schedules.iter().any(|a| a == &cj.schedule)
            || e.schedules.contains(&normalize_schedule(&cj.schedule));
        if !ok {
            f.push(
                None,
                format!(
                    "schedule {:?} is not approved by {approved_by}",
                    cj.schedule
                ),
                "spec.schedule".into(),
                e.schedules.join(" | "),
                cj.schedule.clone(),
            );
        }
    }
    if !e.time_zones.is_empty() {
        let tz = cj.time_zone.as_deref().unwrap_or("");
        if !e.time_zones.iter().any(|z| z == tz) {
            let shown = if tz.is_empty() { "<unset>" } else { tz };
            f.push(
                None,
                format!("timeZone {shown} is not approved by {approved_by}"),
                "spec.timeZone".into(),
                e.time_zones.join(" | "),
                shown.to_owned(),
            );
        }
    }
    if let Some(min) = e.min_interval
        && let Ok(Some(gap)) = ctx.engine.intervals.get(&cj.schedule)
        && gap < min
    {
        f.push(
            None,
            format!(
                "schedule {:?} fires every {}, more often than the minInterval {} of {approved_by}",
                cj.schedule,
                format_duration(gap),
                format_duration(min)
            ),
            "spec.schedule".into(),
            format!(">= {} between runs", format_duration(min)),
            cj.schedule.clone(),
        );
    }
}

/// The smallest gap between firings is under the threshold: the global
/// one, replaced by the cluster-tier entry's minInterval, then by the
/// namespace-tier entry's when that is stricter, or looser where the
/// namespace tier may relax this rule (SPEC 2.2).
pub fn high_frequency(ctx: &Ctx, f: &mut Finder) {
    let cj = ctx.cj;
    let mut threshold = ctx
        .cluster
        .and_then(|e| e.min_interval)
        .unwrap_or(ctx.engine.settings.min_interval);
    if let Some(min) = ctx.namespace.and_then(|e| e.min_interval)
        && (min >= threshold
            || f.namespace_may_relax(|| format!("minInterval {}", format_duration(min))))
    {
        threshold = min;
    }
    if let Ok(Some(gap)) = ctx.engine.intervals.get(&cj.schedule)
        && gap < threshold
    {
        f.push(
            None,
            format!(
                "schedule {:?} fires every {}, more often than {}",
                cj.schedule,
                format_duration(gap),
                format_duration(threshold)
            ),
            "spec.schedule".into(),
            format!(">= {} between runs", format_duration(threshold)),
            cj.schedule.clone(),
        );
    }
}
