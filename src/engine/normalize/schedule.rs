//! Schedules (SPEC 3.5): parsed exactly as the API server parses them,
//! compared on the canonical form or on what they fire, and the smallest
//! gap between firings computed from the fields.
//!
//! Kubernetes validates `spec.schedule` with robfig/cron v3's standard
//! parser (`cron.ParseStandard`), and rejects a schedule containing `TZ`
//! on creation. This module ports that parser: five fields into bitsets
//! (plus robfig's "star" flag on day-of-month and day-of-week, which
//! switches their combination from OR to AND), the descriptors, and
//! `@every` with Go's `time.ParseDuration`. Intervals are computed in UTC:
//! DST shifts are not modelled.

use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The firing sets of a five-field schedule, as robfig stores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CronFields {
    /// Bits 0..=59.
    pub minute: u64,
    /// Bits 0..=23.
    pub hour: u32,
    /// Bits 1..=31.
    pub dom: u32,
    /// Bits 1..=12.
    pub month: u16,
    /// Bits 0..=6, Sunday = 0.
    pub dow: u8,
    /// The day-of-month field contains `*` or `?` (or `*/1`).
    pub dom_star: bool,
    /// The day-of-week field contains `*` or `?` (or `*/1`).
    pub dow_star: bool,
}

impl CronFields {
    /// Both day fields restricted: a day matches either (robfig's
    /// `dayMatches`); otherwise it must match both.
    fn days_or(&self) -> bool {
        !self.dom_star && !self.dow_star
    }

    /// What decides when it fires: two schedules with the same key fire
    /// at the same times (the star flags matter only through the day rule).
    /// "Every day" has several spellings (`* * *`, `1-31 * 1`): one key.
    fn firing_key(&self) -> (u64, u32, u16, u32, u8, bool) {
        const ALL_DOM: u32 = !1;
        const ALL_DOW: u8 = 0x7f;
        let (full_dom, full_dow) = (self.dom == ALL_DOM, self.dow == ALL_DOW);
        let every_day = if self.days_or() {
            full_dom || full_dow
        } else {
            full_dom && full_dow
        };
        let (dom, dow, or) = if every_day {
            (ALL_DOM, ALL_DOW, false)
        } else {
            (self.dom, self.dow, self.days_or())
        };
        (self.minute, self.hour, self.month, dom, dow, or)
    }
}

/// A schedule the API server accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParsedSchedule {
    Cron(CronFields),
    /// `@every`, with robfig's rounding: under one second becomes one
    /// second, the rest is truncated to whole seconds.
    Every(Duration),
}

impl ParsedSchedule {
    /// Same firing times (same location is the caller's business).
    pub fn same_firings(&self, other: &ParsedSchedule) -> bool {
        match (self, other) {
            (ParsedSchedule::Cron(a), ParsedSchedule::Cron(b)) => a.firing_key() == b.firing_key(),
            (ParsedSchedule::Every(a), ParsedSchedule::Every(b)) => a == b,
            _ => false,
        }
    }
}

/// The pieces of a schedule robfig accepts, borrowed from the text.
struct Robfig<'a> {
    /// `TZ=Europe/Paris` or `CRON_TZ=...`, as written, and the location.
    tz: Option<(&'a str, &'a str)>,
    body: Body<'a>,
    parsed: ParsedSchedule,
}

enum Body<'a> {
    /// A descriptor, as its five-field expansion.
    Macro(&'static str),
    /// `@every <duration>`, the duration as written.
    Every(&'a str),
    /// The five fields.
    Fields([&'a str; 5]),
}

const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// `cron.ParseStandard`, including the `TZ=`/`CRON_TZ=` prefix it accepts.
fn parse_robfig(spec: &str) -> Result<Robfig<'_>, String> {
    if spec.is_empty() {
        return Err("schedule is empty".into());
    }
    let mut tz = None;
    let mut rest = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        // robfig slices up to the first ASCII space; without one it
        // panics, which Kubernetes turns into a validation error.
        let Some(space) = spec.find(' ') else {
            return Err(format!(
                "{spec:?} has a TZ prefix but no space before the fields"
            ));
        };
        let eq = spec.find('=').unwrap_or(0);
        let location = &spec[eq + 1..space];
        check_location(location)?;
        tz = Some((&spec[..space], location));
        rest = spec[space..].trim();
    }
    if rest.starts_with('@') {
        if let Some((_, expansion)) = MACROS.iter().find(|(m, _)| *m == rest) {
            let parsed = parse_fields(expansion)?.1;
            return Ok(Robfig {
                tz,
                body: Body::Macro(expansion),
                parsed,
            });
        }
        if let Some(d) = rest.strip_prefix("@every ") {
            let delay = parse_go_duration(d)?;
            return Ok(Robfig {
                tz,
                body: Body::Every(d),
                parsed: ParsedSchedule::Every(every_delay(delay)),
            });
        }
        return Err(format!(
            "unrecognized descriptor {rest:?} (descriptors are lower-case: @yearly @annually @monthly @weekly @daily @midnight @hourly @every <duration>)"
        ));
    }
    let (fields, parsed) = parse_fields(rest)?;
    Ok(Robfig {
        tz,
        body: Body::Fields(fields),
        parsed,
    })
}

/// Go's `time.LoadLocation`, against the IANA database bundled with
/// chrono-tz (the API server uses its own copy; names rarely differ).
fn check_location(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "UTC" || name == "Local" || name.parse::<chrono_tz::Tz>().is_ok()
    {
        Ok(())
    } else {
        Err(format!("unknown time zone {name:?} in the TZ prefix"))
    }
}

fn parse_fields(spec: &str) -> Result<([&str; 5], ParsedSchedule), String> {
    // `strings.Fields` and `split_whitespace` split on the same set.
    let mut it = spec.split_whitespace();
    let mut fields = [""; 5];
    let mut n = 0;
    for f in it.by_ref() {
        if n == 5 {
            n += 1;
            break;
        }
        fields[n] = f;
        n += 1;
    }
    if n != 5 {
        let found = if n > 5 { n + it.count() } else { n };
        return Err(format!(
            "expected exactly 5 fields (minute hour day-of-month month day-of-week), found {found}"
        ));
    }
    let (minute, _) = field(fields[0], &MINUTES)?;
    let (hour, _) = field(fields[1], &HOURS)?;
    let (dom, dom_star) = field(fields[2], &DOM)?;
    let (month, _) = field(fields[3], &MONTHS)?;
    let (dow, dow_star) = field(fields[4], &DOW)?;
    // The bounds keep every bit inside its type.
    let parsed = CronFields {
        minute,
        hour: hour as u32,
        dom: dom as u32,
        month: month as u16,
        dow: dow as u8,
        dom_star,
        dow_star,
    };
    Ok((fields, ParsedSchedule::Cron(parsed)))
}

struct Bounds {
    name: &'static str,
    min: u64,
    max: u64,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
/// Names are indexed from `min`.
const MONTHS: Bounds = Bounds {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// robfig's `getField`: comma-separated ranges (empty ones dropped), the
/// union of their bits, and whether any was `*` or `?` (robfig's star bit).
fn field(text: &str, r: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0;
    let mut star = false;
    for expr in text.split(',').filter(|e| !e.is_empty()) {
        let (b, s) = range(expr, r).map_err(|e| format!("{} field {text:?}: {e}", r.name))?;
        bits |= b;
        star |= s;
    }
    Ok((bits, star))
}

/// robfig's `getRange`: `*`, `?`, `N`, `N-M`, each optionally `/step`;
/// `N/step` runs to the field's maximum; `*/1` keeps the star bit.
fn range(expr: &str, r: &Bounds) -> Result<(u64, bool), String> {
    let mut range_and_step = expr.split('/');
    let low_high_text = range_and_step.next().unwrap_or("");
    let step_text = range_and_step.next();
    let mut low_high = low_high_text.split('-');
    let low = low_high.next().unwrap_or("");
    let high = low_high.next();
    let too_many_hyphens = low_high.next().is_some();
    let single = high.is_none();
    let (start, mut end, mut star);
    if low == "*" || low == "?" {
        // robfig ignores whatever follows a `*-` here.
        (start, end, star) = (r.min, r.max, true);
    } else {
        start = int_or_name(low, r.names, r.min)?;
        end = match high {
            None => start,
            Some(_) if too_many_hyphens => return Err(format!("too many hyphens in {expr:?}")),
            Some(h) => int_or_name(h, r.names, r.min)?,
        };
        star = false;
    }
    let step = match step_text {
        None => 1,
        Some(s) => {
            if range_and_step.next().is_some() {
                return Err(format!("too many slashes in {expr:?}"));
            }
            let step = go_uint(s)?;
            if single {
                end = r.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
    };
    if start < r.min {
        return Err(format!("{start} is below the minimum {}", r.min));
    }
    if end > r.max {
        return Err(format!("{end} is above the maximum {}", r.max));
    }
    if start > end {
        return Err(format!("range {expr:?} starts after it ends"));
    }
    if step == 0 {
        return Err(format!("step of {expr:?} must be positive"));
    }
    let mut bits = 0u64;
    let mut i = start;
    while i <= end {
        bits |= 1 << i;
        match i.checked_add(step) {
            Some(n) => i = n,
            None => break,
        }
    }
    Ok((bits, star))
}

/// robfig's `parseIntOrName`: a three-letter name, case-insensitive as
/// Go's `strings.ToLower` is, or a number.
fn int_or_name(s: &str, names: &[&str], min: u64) -> Result<u64, String> {
    if !names.is_empty() && s.chars().count() == 3 {
        // Go lower-cases rune by rune; two non-ASCII runes become ASCII.
        let lower: String = s
            .chars()
            .map(|c| match c {
                '\u{130}' => 'i',
                '\u{212A}' => 'k',
                c => c.to_ascii_lowercase(),
            })
            .collect();
        if let Some(i) = names.iter().position(|n| *n == lower) {
            return Ok(min + i as u64);
        }
    }
    go_uint(s)
}

/// robfig's `mustParseInt`: Go's `strconv.Atoi` (optional sign, decimal
/// digits, fits an int64), then not negative.
fn go_uint(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a number");
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut v: u64 = 0;
    for b in digits.bytes() {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(bad)?;
    }
    let limit = if neg { 1 << 63 } else { (1 << 63) - 1 };
    if v > limit {
        return Err(bad());
    }
    if neg && v != 0 {
        return Err(format!("negative number {s} is not allowed"));
    }
    Ok(v)
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?(ns|us|µs|μs|ms|s|m|h))+`
/// or `0`, as signed nanoseconds. No `d`: `@every 1d` is rejected.
pub fn parse_go_duration(orig: &str) -> Result<i128, String> {
    let invalid = || format!("invalid duration {orig:?}");
    let mut s = orig.as_bytes();
    let mut neg = false;
    if let Some(&c) = s.first()
        && (c == b'-' || c == b'+')
    {
        neg = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut d: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // [0-9]*
        let mut v: u64 = 0;
        let mut i = 0;
        while i < s.len() && s[i].is_ascii_digit() {
            if v > LIMIT / 10 {
                return Err(invalid());
            }
            v = v * 10 + u64::from(s[i] - b'0');
            if v > LIMIT {
                return Err(invalid());
            }
            i += 1;
        }
        let pre = i > 0;
        s = &s[i..];
        // (\.[0-9]*)?
        let (mut f, mut scale, mut post) = (0u64, 1f64, false);
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let mut i = 0;
            let mut overflow = false;
            while i < s.len() && s[i].is_ascii_digit() {
                if !overflow {
                    if f > (LIMIT - 1) / 10 {
                        overflow = true;
                    } else {
                        let y = f * 10 + u64::from(s[i] - b'0');
                        if y > LIMIT {
                            overflow = true;
                        } else {
                            f = y;
                            scale *= 10.0;
                        }
                    }
                }
                i += 1;
            }
            post = i > 0;
            s = &s[i..];
        }
        if !pre && !post {
            return Err(invalid());
        }
        // The unit runs to the next digit or dot.
        let i = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if i == 0 {
            return Err(format!("missing unit in duration {orig:?}"));
        }
        let unit: u64 = match &s[..i] {
            b"ns" => 1,
            // us, µs (U+00B5 micro sign), μs (U+03BC Greek mu)
            b"us" | [0xC2, 0xB5, b's'] | [0xCE, 0xBC, b's'] => 1_000,
            b"ms" => 1_000_000,
            b"s" => 1_000_000_000,
            b"m" => 60_000_000_000,
            b"h" => 3_600_000_000_000,
            u => {
                return Err(format!(
                    "unknown unit {:?} in duration {orig:?} (Go durations: ns us ms s m h)",
                    String::from_utf8_lossy(u)
                ));
            }
        };
        s = &s[i..];
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d += v;
        if d > LIMIT {
            return Err(invalid());
        }
    }
    if neg {
        return Ok(-i128::from(d));
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(i128::from(d))
}

/// robfig's `Every`: under one second (zero and negative included) is one
/// second; otherwise truncated to whole seconds.
fn every_delay(nanos: i128) -> Duration {
    if nanos < 1_000_000_000 {
        Duration::from_secs(1)
    } else {
        Duration::from_secs((nanos / 1_000_000_000) as u64)
    }
}

/// Validate a schedule exactly as the API server does when a CronJob is
/// created: `cron.ParseStandard`, and no `TZ` anywhere in it.
pub fn parse_schedule(schedule: &str) -> Result<ParsedSchedule, String> {
    if schedule.contains("TZ") {
        return Err(format!(
            "invalid schedule {schedule:?}: cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        ));
    }
    parse_existing_schedule(schedule).map(|(_, p)| p)
}

/// A schedule an existing object may carry: `cron.ParseStandard`, which
/// also accepts a `TZ=`/`CRON_TZ=` prefix (objects created before
/// Kubernetes forbade it keep it). Returns the prefix's location.
pub fn parse_existing_schedule(schedule: &str) -> Result<(Option<&str>, ParsedSchedule), String> {
    parse_robfig(schedule)
        .map(|r| (r.tz.map(|(_, loc)| loc), r.parsed))
        .map_err(|e| format!("invalid schedule {schedule:?}: {e}"))
}

/// The canonical form: whitespace folded and descriptors expanded, for a
/// schedule robfig accepts; anything else is returned as is, so a
/// schedule Kubernetes rejects never becomes one it accepts.
pub fn normalize_schedule(schedule: &str) -> String {
    let Ok(r) = parse_robfig(schedule) else {
        return schedule.to_owned();
    };
    let mut out = String::with_capacity(schedule.len());
    if let Some((prefix, _)) = r.tz {
        out.push_str(prefix);
        out.push(' ');
    }
    match r.body {
        Body::Macro(expansion) => out.push_str(expansion),
        Body::Every(d) => {
            out.push_str("@every ");
            out.push_str(d);
        }
        Body::Fields(f) => out.push_str(&f.join(" ")),
    }
    out
}

/// Whether two schedules fire at the same times: both accepted, the same
/// TZ prefix location (or none), and the same firing sets or `@every`
/// delay. `*/5 * * * *` and `0/5 * * * *` do; anything firing at a
/// different time does not.
pub fn same_schedule(a: &str, b: &str) -> bool {
    match (parse_existing_schedule(a), parse_existing_schedule(b)) {
        (Ok((la, pa)), Ok((lb, pb))) => la == lb && pa.same_firings(&pb),
        _ => false,
    }
}

/// Parse a duration as users write it in flags and baselines (`90s`,
/// `15m`, `1h30m`, `7d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?}: {e}"))
}

/// Render a duration the way users write it (`2m`, `1h30m`, `1d`).
pub fn format_duration(d: Duration) -> String {
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

/// The smallest gap between two consecutive firings, `None` when the
/// schedule never fires, an error (saying why) when it cannot be
/// evaluated (the reason does not repeat the schedule). A `TZ=` prefix is
/// stripped: intervals are computed in UTC.
pub fn min_interval(schedule: &str) -> Result<Option<Duration>, String> {
    match parse_robfig(schedule)?.parsed {
        ParsedSchedule::Every(d) => Ok(Some(d)),
        ParsedSchedule::Cron(c) => cron_min_interval(&c),
    }
}

/// The sorted set bits of a mask.
fn bits(mut mask: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let b = mask.trailing_zeros();
            mask &= mask - 1;
            b
        })
    })
}

fn is_leap(y: u32) -> bool {
    y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// From the fields, without stepping through minutes. Times of day do not
/// depend on the day, so the answer is the smaller of the smallest gap
/// within a firing day and `smallest gap between firing days - span of the
/// day's firings`. Firing days are found month by month as bitmasks over
/// 29 years from 2024-01-01, which covers every pair of consecutive year
/// types of the Gregorian calendar (the only longer cycle, the century
/// rule, only lengthens gaps); the scan stops at a one-day gap.
fn cron_min_interval(c: &CronFields) -> Result<Option<Duration>, String> {
    let minutes: Vec<u32> = bits(c.minute).collect();
    let hours: Vec<u32> = bits(u64::from(c.hour)).collect();
    let (Some(&m0), Some(&m1), Some(&h0), Some(&h1)) =
        (minutes.first(), minutes.last(), hours.first(), hours.last())
    else {
        return Ok(None);
    };
    let min_diff = |v: &[u32]| v.windows(2).map(|w| w[1] - w[0]).min();
    let mut best: Option<u64> = None;
    let mut take = |g: u64| best = Some(best.map_or(g, |b| b.min(g)));
    if let Some(g) = min_diff(&minutes) {
        take(u64::from(g));
    }
    if let Some(g) = min_diff(&hours) {
        // From the last minute of one hour to the first of the next.
        take(u64::from(g) * 60 + u64::from(m0) - u64::from(m1));
    }
    let span = u64::from(h1 * 60 + m1) - u64::from(h0 * 60 + m0);

    // Days of a month whose weekday is in the set, for each weekday of
    // the 1st: bit d set for day d.
    let mut by_first_weekday = [0u32; 7];
    for (w, mask) in by_first_weekday.iter_mut().enumerate() {
        for d in 1..=31u32 {
            if c.dow & (1 << ((w as u32 + d - 1) % 7)) != 0 {
                *mask |= 1 << d;
            }
        }
    }
    let mut smallest_day_gap: Option<u64> = None;
    let mut last_day: Option<u64> = None;
    let mut day_index: u64 = 0; // days since 2024-01-01
    let mut weekday: u32 = 1; // 2024-01-01 is a Monday
    'scan: for y in 2024..2024 + 29 {
        for m in 1..=12u32 {
            let len = days_in_month(y, m);
            if c.month & (1 << m) != 0 {
                let in_month = ((1u64 << (len + 1)) - 2) as u32;
                let dow = by_first_weekday[weekday as usize];
                let days = if c.days_or() {
                    c.dom | dow
                } else {
                    c.dom & dow
                } & in_month;
                for d in bits(u64::from(days)) {
                    let idx = day_index + u64::from(d) - 1;
                    if let Some(prev) = last_day {
                        let g = idx - prev;
                        smallest_day_gap = Some(smallest_day_gap.map_or(g, |s| s.min(g)));
                        if g == 1 {
                            break 'scan;
                        }
                    }
                    last_day = Some(idx);
                }
            }
            day_index += u64::from(len);
            weekday = (weekday + len) % 7;
        }
    }
    match (last_day, smallest_day_gap) {
        (None, _) => return Ok(None),
        (Some(_), Some(days)) => take(days * 1440 - span),
        (Some(_), None) => {
            return Err("fires only once in 29 years, which cron cannot express".into());
        }
    }
    Ok(best.map(|m| Duration::from_secs(m * 60)))
}

type IntervalResult = Result<Option<Duration>, String>;

/// Memoised [`min_interval`], shared by evaluations: schedules repeat a lot
/// across CronJobs.
#[derive(Clone, Default)]
pub struct IntervalCache {
    inner: Arc<Mutex<HashMap<String, IntervalResult>>>,
}

impl IntervalCache {
    /// Keyed by the schedule as written: a hit costs no allocation.
    pub fn get(&self, schedule: &str) -> Result<Option<Duration>, String> {
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
