//! Schedule rules: the entry's approved schedules, time zones and
//! minInterval (ScheduleNotApproved), and the global frequency heuristic.

use std::time::Duration;

use super::Ctx;
use crate::engine::CompiledEntry;
use crate::engine::normalize::{format_duration, normalize_schedule, same_schedule};
use crate::engine::verdict::Finder;

/// The smallest gap between firings the frequency checks compare, failing
/// closed (SPEC 3.5): a schedule that cannot be evaluated counts as firing
/// every minute, with the reason. `None` when it never fires.
fn smallest_gap(ctx: &Ctx) -> Option<(Duration, Option<String>)> {
    match ctx.engine.intervals.get(&ctx.cj.schedule) {
        Ok(gap) => gap.map(|g| (g, None)),
        Err(why) => Some((Duration::from_secs(60), Some(why))),
    }
}

/// How the schedule compares with a threshold, for a message.
fn fires_every(schedule: &str, gap: Duration, why: Option<&str>) -> String {
    match why {
        None => format!("schedule {schedule:?} fires every {}", format_duration(gap)),
        Some(why) => format!(
            "schedule {schedule:?} could not be evaluated ({why}), so it counts as firing every {}",
            format_duration(gap)
        ),
    }
}

/// Schedule among the entry's (canonical form), timeZone among the
/// entry's, and no more frequent than its minInterval.
pub fn approved(ctx: &Ctx, e: &CompiledEntry, f: &mut Finder) {
    let cj = ctx.cj;
    let approved_by = e.label();
    if !e.schedules.is_empty() {
        // As written, then canonical, then the same firing times.
        let ok = e.schedules.iter().any(|a| a == &cj.schedule)
            || e.schedules.contains(&normalize_schedule(&cj.schedule))
            || e.schedules.iter().any(|a| same_schedule(a, &cj.schedule));
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
    min_interval(ctx, e, f);
}

/// No more frequent than the entry's minInterval: part of an approval, and
/// a guardrail that every matched cluster-tier entry keeps (SPEC 2.2).
pub fn min_interval(ctx: &Ctx, e: &CompiledEntry, f: &mut Finder) {
    let cj = ctx.cj;
    if let Some(min) = e.min_interval
        && let Some((gap, why)) = smallest_gap(ctx)
        && gap < min
    {
        f.push(
            None,
            format!(
                "{}, more often than the minInterval {} of {}",
                fires_every(&cj.schedule, gap, why.as_deref()),
                format_duration(min),
                e.label()
            ),
            "spec.schedule".into(),
            format!(">= {} between runs", format_duration(min)),
            cj.schedule.clone(),
        );
    }
}

/// The smallest gap between firings is under the threshold: the global
/// one, replaced by the cluster-tier entry's minInterval, then by the
/// namespace-tier entry's, each where it is stricter, or looser where that
/// entry may relax this rule (SPEC 2.2; a refusal is reported).
/// Guardrail entries never loosen it.
pub fn high_frequency(ctx: &Ctx, f: &mut Finder) {
    let cj = ctx.cj;
    let mut threshold = ctx.engine.settings.min_interval;
    for e in [ctx.cluster, ctx.namespace].into_iter().flatten() {
        if let Some(min) = e.min_interval
            && (min >= threshold
                || f.may_relax(e, || format!("minInterval {}", format_duration(min))))
        {
            threshold = min;
        }
    }
    if let Some((gap, why)) = smallest_gap(ctx)
        && gap < threshold
    {
        f.push(
            None,
            format!(
                "{}, more often than {}",
                fires_every(&cj.schedule, gap, why.as_deref()),
                format_duration(threshold)
            ),
            "spec.schedule".into(),
            format!(">= {} between runs", format_duration(threshold)),
            cj.schedule.clone(),
        );
    }
}
