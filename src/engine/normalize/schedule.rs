//! Schedules (SPEC 3.5): parsed as a CronJob needs them, compared on the
//! canonical form, and the smallest gap between firings.

use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Fold whitespace and expand the macros Kubernetes accepts, so
/// `@hourly` compares equal to `0 * * * *`.
pub fn normalize_schedule(schedule: &str) -> String {
    let folded = schedule.split_whitespace().collect::<Vec<_>>().join(" ");
    let expanded = match folded.to_ascii_lowercase().as_str() {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => return folded,
    };
    expanded.to_owned()
}

fn cron_parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
}

/// Validate a schedule the way a CronJob needs it: five fields, a macro,
/// or `@every <duration>`.
pub fn parse_schedule(schedule: &str) -> Result<ParsedSchedule, String> {
    let norm = normalize_schedule(schedule);
    if norm.is_empty() {
        return Err("schedule is empty".into());
    }
    if let Some(rest) = norm.strip_prefix("@every ") {
        let d = parse_duration(rest)?;
        if d < std::time::Duration::from_secs(1) {
            return Err(format!("@every interval {rest:?} is under one second"));
        }
        return Ok(ParsedSchedule::Every(d));
    }
    if norm.split(' ').count() != 5 {
        return Err(format!(
            "schedule {schedule:?} must have five fields (minute hour day-of-month month day-of-week) or be a macro"
        ));
    }
    cron_parser()
        .parse(&norm)
        .map(|c| ParsedSchedule::Cron(Box::new(c)))
        .map_err(|e| format!("invalid schedule {schedule:?}: {e}"))
}

pub enum ParsedSchedule {
    Cron(Box<Cron>),
    Every(std::time::Duration),
}

/// Parse a Go-style duration (`90s`, `15m`, `1h30m`).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Render a duration the way users write it (`2m`, `1h30m`, `1d`).
pub fn format_duration(d: std::time::Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

/// The smallest gap between two consecutive firings of a schedule, `None`
/// when it never fires.
///
/// Times of day do not depend on the day in cron, so the answer is the
/// smaller of the smallest gap within one firing day and the smallest
/// `gap between firing days - span of a day`; days are scanned over 28 years
/// (the calendar's full cycle), both stopping as soon as the minimum
/// possible gap is seen. Evaluated in UTC: DST shifts are not modelled.
pub fn min_interval(schedule: &str) -> Result<Option<std::time::Duration>, String> {
    let cron = match parse_schedule(schedule)? {
        ParsedSchedule::Every(d) => return Ok(Some(d)),
        ParsedSchedule::Cron(c) => c,
    };
    // 2024-01-01 is a Monday in a leap year.
    let anchor: DateTime<Utc> = Utc.from_utc_datetime(
        &NaiveDate::from_ymd_opt(2024, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .ok_or("anchor")?,
    );
    let Ok(first) = cron.find_next_occurrence(&anchor, true) else {
        return Ok(None);
    };
    let day0 = first.date_naive();
    let minute = Duration::minutes(1);
    let mut best: Option<Duration> = None;
    let mut prev = first;
    let mut last_of_day = first;
    for next in cron.iter_after(first) {
        if next.date_naive() != day0 {
            break;
        }
        let gap = next - prev;
        best = Some(best.map_or(gap, |b| b.min(gap)));
        if gap <= minute {
            return Ok(Some(std::time::Duration::from_secs(60)));
        }
        prev = next;
        last_of_day = next;
    }
    let span = last_of_day - first;
    let horizon = anchor + Duration::days(366 * 28);
    let mut day = day0;
    let mut smallest_day_gap: Option<i64> = None;
    while let Some(start) = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)) {
        let start = Utc.from_utc_datetime(&start);
        let Ok(next) = cron.find_next_occurrence(&start, true) else {
            break;
        };
        if next > horizon {
            break;
        }
        let next_day = next.date_naive();
        let gap_days = (next_day - day).num_days();
        smallest_day_gap = Some(smallest_day_gap.map_or(gap_days, |g: i64| g.min(gap_days)));
        if gap_days <= 1 {
            break;
        }
        day = next_day;
    }
    if let Some(days) = smallest_day_gap {
        let across = Duration::days(days) - span;
        best = Some(best.map_or(across, |b| b.min(across)));
    }
    Ok(best.and_then(|b| b.to_std().ok()))
}

type IntervalResult = Result<Option<std::time::Duration>, String>;

/// Memoised [`min_interval`], shared by evaluations: schedules repeat a lot
/// across CronJobs, and the search costs up to a few thousand cron steps.
#[derive(Clone, Default)]
pub struct IntervalCache {
    inner: Arc<Mutex<HashMap<String, IntervalResult>>>,
}

impl IntervalCache {
    /// Keyed by the schedule as written: a hit costs no allocation.
    pub fn get(&self, schedule: &str) -> Result<Option<std::time::Duration>, String> {
        if let Some(v) = self
            .inner
            .lock()
            .ok()
            .and_then(|m| m.get(schedule).cloned())
        {
            return v;
        }
        let v = min_interval(schedule);
        if let Ok(mut m) = self.inner.lock() {
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(schedule.to_owned(), v.clone());
        }
        v
    }
}
