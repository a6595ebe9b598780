//! Schedules exactly as the API server parses them (SPEC 3.5): the
//! conformance table, canonical forms and equality, intervals computed
//! from the fields, and the frequency rules failing closed.
//!
//! The table's rows come from robfig/cron v3's parser and spec tests,
//! Kubernetes' CronJob validation and controller tests, and edge cases;
//! each expectation was checked against robfig/cron v3.0.1 (the version
//! Kubernetes vendors) called as `validateScheduleFormat` calls it, with
//! the interval found by iterating its `Next` over 29 years in UTC.

mod common;

use common::*;
use cronwarden::api::Rule;
use cronwarden::engine::normalize::*;
use cronwarden::engine::{Engine, Settings};
use cronwarden::manifest::Loaded;
use proptest::prelude::*;
use serde_json::json;
use std::time::Duration;

/// What the API server does with the schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Api {
    /// Accepted on creation.
    Accepts,
    /// robfig parses it, but creation is refused because it contains `TZ`;
    /// objects created before that rule still carry it.
    LegacyOnly,
    /// Refused.
    Rejects,
}
use Api::*;

/// The smallest gap between consecutive firings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Gap(u64),
    Never,
    Unparsed,
}
use Want::*;

const M: u64 = 60;
const H: u64 = 3600;
const D: u64 = 86_400;
const Y: u64 = 365 * D;

#[rustfmt::skip]
const TABLE: &[(&str, Api, Want)] = &[
    // robfig parser_test: TestRange / TestField (in the minute field unless noted)
    ("5 * * * *", Accepts, Gap(H)),
    ("0 * * * *", Accepts, Gap(H)),
    ("5-5 * * * *", Accepts, Gap(H)),
    ("5-6 * * * *", Accepts, Gap(M)),
    ("5-7 * * * *", Accepts, Gap(M)),
    ("5-6/2 * * * *", Accepts, Gap(H)),
    ("5-7/2 * * * *", Accepts, Gap(2 * M)),
    ("5-7/1 * * * *", Accepts, Gap(M)),
    ("* * * * *", Accepts, Gap(M)),
    ("*/2 * * * *", Accepts, Gap(2 * M)),
    ("5--5 * * * *", Rejects, Unparsed),
    ("0 0 1 jan-x *", Rejects, Unparsed),
    ("2-x * * * *", Rejects, Unparsed),
    ("*/-12 * * * *", Rejects, Unparsed),
    ("*//2 * * * *", Rejects, Unparsed),
    ("0 0 0 * *", Rejects, Unparsed),
    ("0 24 * * *", Rejects, Unparsed),
    ("5-3 * * * *", Rejects, Unparsed),
    ("*/0 * * * *", Rejects, Unparsed),
    ("5,6 * * * *", Accepts, Gap(M)),
    ("5,6,7 * * * *", Accepts, Gap(M)),
    ("1,5-7/2,3 * * * *", Accepts, Gap(2 * M)),
    ("* 5 j * *", Rejects, Unparsed),
    ("@every Xm", Rejects, Unparsed),
    ("@unrecognized", Rejects, Unparsed),
    ("* * * *", Rejects, Unparsed),
    ("", Rejects, Unparsed),
    ("5 j * * *", Rejects, Unparsed),
    ("@every 5m", Accepts, Gap(5 * M)),
    // robfig spec_test
    ("0/15 * * * *", Accepts, Gap(15 * M)),
    ("5/15 * * * *", Accepts, Gap(15 * M)),
    ("0/15 * * Jul *", Accepts, Gap(15 * M)),
    ("0/15 * * Jun *", Accepts, Gap(15 * M)),
    ("30 08 ? Jul Sun", Accepts, Gap(7 * D)),
    ("30 08 15 Jul ?", Accepts, Gap(Y)),
    ("@hourly", Accepts, Gap(H)),
    ("@daily", Accepts, Gap(D)),
    ("@weekly", Accepts, Gap(7 * D)),
    ("@monthly", Accepts, Gap(28 * D)),
    ("@yearly", Accepts, Gap(Y)),
    ("@annually", Accepts, Gap(Y)),
    ("@midnight", Accepts, Gap(D)),
    ("* * 1,15 * Sun", Accepts, Gap(M)),
    ("* * */10 * Sun", Accepts, Gap(M)),
    ("* * * * Mon", Accepts, Gap(M)),
    ("* * 1,15 * *", Accepts, Gap(M)),
    ("* * */2 * Sun", Accepts, Gap(M)),
    ("20-35/15 * * * *", Accepts, Gap(15 * M)),
    ("20-35/15 1/2 * * *", Accepts, Gap(15 * M)),
    ("20-35/15 10-12 * * *", Accepts, Gap(15 * M)),
    ("20-35/15 1/2 */2 * *", Accepts, Gap(15 * M)),
    ("20-35/15 * 9-20 * *", Accepts, Gap(15 * M)),
    ("20-35/15 * 9-20 Jul *", Accepts, Gap(15 * M)),
    ("0 0 9 Apr-Oct ?", Accepts, Gap(30 * D)),
    ("0 0 */5 Apr,Aug,Oct Mon", Accepts, Gap(D)),
    ("0 0 */5 Oct Mon", Accepts, Gap(D)),
    ("0 0 * Feb Mon", Accepts, Gap(7 * D)),
    ("0 0 * Feb Mon/2", Accepts, Gap(2 * D)),
    ("0 0 29 Feb ?", Accepts, Gap(1461 * D)),
    ("0 0 30 Feb ?", Accepts, Never),
    ("0 0 31 Apr ?", Accepts, Never),
    ("14 14 * * *", Accepts, Gap(D)),
    ("14 14 * * ?", Accepts, Gap(D)),
    ("TZ=America/New_York 30 2 11 Mar ?", LegacyOnly, Gap(Y)),
    ("CRON_TZ=America/New_York 0 * * * ?", LegacyOnly, Gap(H)),
    ("TZ=UTC  5 * * * *", LegacyOnly, Gap(H)),
    ("TZ=Asia/Tokyo @midnight", LegacyOnly, Gap(D)),
    // Kubernetes validation and controller tests
    ("* * * * ?", Accepts, Gap(M)),
    ("error", Rejects, Unparsed),
    ("0 * * * ?", Accepts, Gap(H)),
    ("30 6-16/4 * * 1-5", Accepts, Gap(4 * H)),
    ("30 10,11,12 * * 1-5", Accepts, Gap(H)),
    ("59 23 31 2 *", Accepts, Never),
    ("0 12 * * 5", Accepts, Gap(7 * D)),
    ("@every 1h", Accepts, Gap(H)),
    ("@every schedule", Rejects, Unparsed),
    ("TZ=UTC 0 * * * *", LegacyOnly, Gap(H)),
    ("TZ=0", Rejects, Unparsed),
    ("TZ=", Rejects, Unparsed),
    ("CRON_TZ=UTC", Rejects, Unparsed),
    ("TZ=Invalid/Timezone", Rejects, Unparsed),
    ("TZ=Invalid/Timezone 0 * * * *", Rejects, Unparsed),
    // edge cases
    ("0/1 * * * *", Accepts, Gap(M)),
    ("*/1 * * * *", Accepts, Gap(M)),
    ("? ? ? ? ?", Accepts, Gap(M)),
    ("0 0 ? * 1", Accepts, Gap(7 * D)),
    ("0 0 1 ? *", Accepts, Gap(28 * D)),
    ("0 0 * JAN,jul *", Accepts, Gap(D)),
    ("0 0 * * MON-fri", Accepts, Gap(D)),
    ("0 0 * * sunday", Rejects, Unparsed),
    ("0 0 * january *", Rejects, Unparsed),
    ("0 0 * * 7", Rejects, Unparsed),
    ("0 0 * * 0-7", Rejects, Unparsed),
    ("0 0 * * 0", Accepts, Gap(7 * D)),
    ("60 * * * *", Rejects, Unparsed),
    ("61 * * * *", Rejects, Unparsed),
    ("+5 * * * *", Accepts, Gap(H)),
    ("05 * * * *", Accepts, Gap(H)),
    ("0 +09 * * *", Accepts, Gap(D)),
    ("-1 * * * *", Rejects, Unparsed),
    ("*/+2 * * * *", Accepts, Gap(2 * M)),
    ("*/100 * * * *", Accepts, Gap(H)),
    ("*/9223372036854775807 * * * *", Accepts, Gap(H)),
    ("*/9223372036854775808 * * * *", Rejects, Unparsed),
    ("*-5 * * * *", Accepts, Gap(M)),
    ("1/2/3 * * * *", Rejects, Unparsed),
    ("1-2-3 * * * *", Rejects, Unparsed),
    ("1,,2 * * * *", Accepts, Gap(M)),
    (", * * * *", Accepts, Never),
    ("0 0 * * fr\u{130}", Accepts, Gap(7 * D)),
    ("@HOURLY", Rejects, Unparsed),
    ("@Daily", Rejects, Unparsed),
    ("@hourly ", Rejects, Unparsed),
    (" @hourly", Rejects, Unparsed),
    ("@every 1d", Rejects, Unparsed),
    ("@every 0s", Accepts, Gap(1)),
    ("@every 0", Accepts, Gap(1)),
    ("@every 300ms", Accepts, Gap(1)),
    ("@every 1.5h", Accepts, Gap(90 * M)),
    ("@every 90s", Accepts, Gap(90)),
    ("@every 1.9s", Accepts, Gap(1)),
    ("@every -5m", Accepts, Gap(1)),
    ("@every 1h30m", Accepts, Gap(90 * M)),
    ("@every  5m", Rejects, Unparsed),
    ("@every 5m ", Rejects, Unparsed),
    ("@every .5m", Accepts, Gap(30)),
    ("@every 1.m", Accepts, Gap(M)),
    ("@every 1", Rejects, Unparsed),
    ("@every 1\u{b5}s", Accepts, Gap(1)),
    ("@every 2562047h", Accepts, Gap(2562047 * H)),
    ("@every 2562048h", Rejects, Unparsed),
    ("  0   2 * *  * ", Accepts, Gap(D)),
    ("0\t2\t*\t*\t*", Accepts, Gap(D)),
    ("0 0 * * * *", Rejects, Unparsed),
    ("0 0 0 * * *", Rejects, Unparsed),
    ("0 0 30 2 *", Accepts, Never),
    ("0 0 29 2 *", Accepts, Gap(1461 * D)),
    ("0 0 29 2 1", Accepts, Gap(D)),
    ("0 9-17/2 * * 1-5", Accepts, Gap(2 * H)),
    ("1-59/2 * * * *", Accepts, Gap(2 * M)),
    ("*/5 * * * *", Accepts, Gap(5 * M)),
    ("* */6 * * *", Accepts, Gap(M)),
    ("0,58 * * * *", Accepts, Gap(2 * M)),
    ("0 22,23,0 * * *", Accepts, Gap(H)),
    ("59 23 31 12 *", Accepts, Gap(Y)),
    ("0 0 1 * *", Accepts, Gap(28 * D)),
    ("0 0 1 */2 *", Accepts, Gap(59 * D)),
    ("0 0 31 * *", Accepts, Gap(31 * D)),
    ("0 0 1,31 * *", Accepts, Gap(D)),
    ("0 0 1-31 * 1", Accepts, Gap(D)),
    ("0 0 */1 * 1", Accepts, Gap(7 * D)),
    ("0 0 1-7 * 1", Accepts, Gap(D)),
    ("0 0 13 * 5", Accepts, Gap(D)),
    ("0 0 31 2,4,6,9,11 *", Accepts, Never),
    ("tz=UTC 0 * * * *", Rejects, Unparsed),
    ("TZ=UTC 0 * * * * *", Rejects, Unparsed),
    ("TZ=UTC @every 90s", LegacyOnly, Gap(90)),
    ("TZ=UTC\t0 0 * * * *", Rejects, Unparsed),
];

#[test]
fn conformance_table() {
    let mut failures = Vec::new();
    for &(s, api, want) in TABLE {
        let create = parse_schedule(s).is_ok();
        let existing = parse_existing_schedule(s).is_ok();
        let got_api = match (create, existing) {
            (true, _) => Accepts,
            (false, true) => LegacyOnly,
            (false, false) => Rejects,
        };
        let got = match min_interval(s) {
            Ok(Some(d)) => Gap(d.as_secs()),
            Ok(None) => Never,
            Err(_) => Unparsed,
        };
        if (got_api, got) != (api, want) {
            failures.push(format!(
                "{s:?}: want {api:?} {want:?}, got {got_api:?} {got:?}"
            ));
        }
        // The canonical form is stable, fires as the schedule does, and
        // never turns a rejected schedule into an accepted one.
        let canon = normalize_schedule(s);
        if normalize_schedule(&canon) != canon {
            failures.push(format!("{s:?}: canonical form {canon:?} is not stable"));
        }
        if existing && !same_schedule(s, &canon) {
            failures.push(format!("{s:?}: canonical form {canon:?} fires differently"));
        }
        if !existing && canon != s {
            failures.push(format!("{s:?}: rejected but canonicalised to {canon:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(TABLE.len() >= 150, "{}", TABLE.len());
}

#[test]
fn creation_refuses_tz_like_the_api_server() {
    let err = parse_schedule("TZ=UTC 0 * * * *").unwrap_err();
    assert!(
        err.contains("cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        "{err}"
    );
    // An existing object keeps it: evaluated with the prefix stripped.
    assert_eq!(
        parse_existing_schedule("CRON_TZ=Europe/Paris */5 * * * *")
            .unwrap()
            .0,
        Some("Europe/Paris")
    );
    assert_eq!(
        min_interval("TZ=Europe/Paris */5 * * * *").unwrap(),
        Some(Duration::from_secs(300))
    );
}

#[test]
fn canonical_forms() {
    let n = normalize_schedule;
    assert_eq!(n("@hourly"), "0 * * * *");
    assert_eq!(n("@weekly"), "0 0 * * 0");
    assert_eq!(n("@annually"), "0 0 1 1 *");
    assert_eq!(n("  0   2 * *  * "), "0 2 * * *");
    assert_eq!(n("0\t2 *\u{3000}* *"), "0 2 * * *");
    assert_eq!(n("TZ=UTC   @daily"), "TZ=UTC 0 0 * * *");
    assert_eq!(n("@every 90s"), "@every 90s");
    // Rejected by Kubernetes: left as written.
    assert_eq!(n("@HOURLY"), "@HOURLY");
    assert_eq!(n("@hourly "), "@hourly ");
    assert_eq!(n("@every  5m"), "@every  5m");
}

#[test]
fn same_firings_not_same_text() {
    let same = |a, b| same_schedule(a, b) && same_schedule(b, a);
    assert!(same("*/5 * * * *", "0/5 * * * *"));
    assert!(same("*/5 * * * *", "0-59/5 * * * *"));
    assert!(same("0 * * * *", "@hourly"));
    assert!(same("* * * * *", "? 0-23 */1 JAN-DEC sun-sat"));
    assert!(same("0 9 * * mon-fri", "0 9 ? * 1-5"));
    assert!(same("@every 90s", "@every 1m30s"));
    assert!(same("@every 1s", "@every 300ms"));
    // `*/1` keeps the star flag, `1-31` does not: with a restricted
    // weekday the first fires on Mondays, the second every day.
    assert!(!same_schedule("0 0 */1 * 1", "0 0 1-31 * 1"));
    assert!(same("0 0 */1 * 1", "0 0 * * 1"));
    assert!(same("0 0 1-31 * 1", "0 0 * * *"));
    assert!(!same_schedule("*/5 * * * *", "1/5 * * * *"));
    assert!(!same_schedule("0 0 * * 0", "0 0 * * 1"));
    assert!(!same_schedule("@every 1m", "* * * * *"));
    assert!(!same_schedule("TZ=UTC 0 * * * *", "0 * * * *"));
    assert!(same("TZ=UTC 0 * * * *", "CRON_TZ=UTC @hourly"));
    assert!(
        !same_schedule("@HOURLY", "@HOURLY"),
        "rejected: equal to nothing"
    );
}

#[test]
fn go_durations() {
    let ns = |s: &str| parse_go_duration(s);
    assert_eq!(ns("1h30m").unwrap(), 5_400_000_000_000);
    assert_eq!(ns("1.5h").unwrap(), 5_400_000_000_000);
    assert_eq!(ns("300ms").unwrap(), 300_000_000);
    assert_eq!(ns("-5m").unwrap(), -300_000_000_000);
    assert_eq!(ns("1\u{3bc}s").unwrap(), 1_000);
    assert_eq!(ns(".5s").unwrap(), 500_000_000);
    assert_eq!(ns("0").unwrap(), 0);
    for bad in ["1d", "", "5", "1h ", " 1h", ".s", "1e3s", "9223372037s"] {
        assert!(ns(bad).is_err(), "{bad:?}");
    }
    // The flags and baselines keep humantime, days included.
    assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(7 * D));
}

#[test]
fn never_firing_schedules_have_no_interval() {
    // Computed from the fields: no minute stepping, microseconds each
    // (see the `schedule/min_interval` bench).
    for s in [
        "0 0 30 2 *",
        "0 0 31 2,4,6,9,11 *",
        "59 23 31 2 *",
        ", * * * *",
    ] {
        assert_eq!(min_interval(s).unwrap(), None, "{s}");
    }
}

fn scan(schedule: &str) -> Loaded {
    let cj = with(cronjob("apps", "x"), "/spec/schedule", json!(schedule));
    let mut loaded = Loaded::default();
    loaded.add_text("in.yaml", &serde_json::to_string(&cj).unwrap());
    loaded
}

#[test]
fn scan_rejects_only_what_the_api_server_rejects() {
    for &(s, api, _) in TABLE {
        let errors = scan(s).errors;
        assert_eq!(errors.is_empty(), api == Accepts, "{s:?}: {errors:?}");
        if let Some(e) = errors.first() {
            assert_eq!(e.field.as_deref(), Some("spec.schedule"), "{s:?}");
        }
    }
    let e = &scan("0/1 * * * *").inventory.cronjobs[0];
    assert_eq!(e.schedule, "0/1 * * * *");
}

/// Evaluate a CronJob whose schedule the API server holds but `scan`
/// would refuse (or that no version of the parser accepts any more).
fn evaluate_existing(schedule: &str, settings: Settings) -> cronwarden::engine::Evaluation {
    let mut loaded = load(&[cronjob("apps", "x")]);
    loaded.inventory.cronjobs[0].schedule = schedule.to_owned();
    Engine::new(settings).unwrap().evaluate(&loaded.inventory)
}

#[test]
fn high_frequency_fails_closed() {
    let e = evaluate_existing("0 0 * * * *", Settings::default());
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::HighFrequencySchedule]);
    let m = &e.findings[0].violations[0].message;
    assert!(
        m.starts_with(
            r#"schedule "0 0 * * * *" could not be evaluated (expected exactly 5 fields"#
        ) && m.ends_with("so it counts as firing every 1m, more often than 5m"),
        "{m}"
    );
    // A legacy TZ prefix is stripped and evaluated, not skipped.
    let e = evaluate_existing("TZ=Europe/Paris * * * * *", Settings::default());
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::HighFrequencySchedule]);
    assert!(
        e.findings[0].violations[0]
            .message
            .contains("fires every 1m")
    );
    assert!(
        evaluate_existing("TZ=Europe/Paris */5 * * * *", Settings::default())
            .findings
            .is_empty()
    );
    // A threshold of one minute: firing every minute is not more often.
    let one = Settings {
        min_interval: Duration::from_secs(60),
        ..Settings::default()
    };
    assert!(evaluate_existing("0 0 * * * *", one).findings.is_empty());
}

#[test]
fn high_frequency_on_the_smallest_gap() {
    let at = |s: &str| with(cronjob("apps", "x"), "/spec/schedule", json!(s));
    assert!(!fires(&[at("*/5 * * * *")], Rule::HighFrequencySchedule));
    assert!(!fires(&[at("0/5 * * * *")], Rule::HighFrequencySchedule));
    assert!(fires(&[at("0/1 * * * *")], Rule::HighFrequencySchedule));
    assert!(fires(&[at("* */6 * * *")], Rule::HighFrequencySchedule));
    assert!(fires(&[at("1-59/2 * * * *")], Rule::HighFrequencySchedule));
    assert!(fires(&[at("@every 90s")], Rule::HighFrequencySchedule));
    assert!(!fires(&[at("0 0 30 2 *")], Rule::HighFrequencySchedule));
}

#[test]
fn min_interval_of_an_entry_fails_closed() {
    let mut loaded = load(&[
        cronjob("apps", "x"),
        baseline("apps", "b", json!([{"name": "x", "minInterval": "1m30s"}])),
    ]);
    loaded.inventory.cronjobs[0].schedule = "0 0 * * * *".into();
    let settings = Settings {
        min_interval: Duration::from_secs(30),
        ..Settings::default()
    };
    let e = Engine::new(settings).unwrap().evaluate(&loaded.inventory);
    let f = &e.findings[0];
    assert!(f.rules().contains(&Rule::ScheduleNotApproved), "{f:?}");
    let v = f
        .violations
        .iter()
        .find(|v| v.rule == Rule::ScheduleNotApproved)
        .unwrap();
    assert!(
        v.message.contains("could not be evaluated"),
        "{}",
        v.message
    );
    assert!(
        v.message.contains("more often than the minInterval 1m30s"),
        "{}",
        v.message
    );
}

#[test]
fn approval_by_firing_times() {
    let at = |s: &str| with(cronjob("apps", "x"), "/spec/schedule", json!(s));
    let entry = |s: &str| baseline("apps", "b", json!([{"name": "x", "schedules": [s]}]));
    let approved = |cj: &str, b: &str| {
        !rules(&evaluate(&[at(cj), entry(b)]), "apps", "x").contains(&Rule::ScheduleNotApproved)
    };
    assert!(approved("0/5 * * * *", "*/5 * * * *"));
    assert!(approved("*/5 * * * *", "0-59/5 * * * *"));
    assert!(approved("0 9 * * MON-FRI", "0 9 * * 1-5"));
    assert!(approved("0 0 * * *", "@midnight"));
    assert!(!approved("1/5 * * * *", "*/5 * * * *"));
    assert!(!approved("0 0 1-31 * 1", "0 0 * * 1"));
    // A baseline may approve the legacy TZ form an existing object carries.
    let mut loaded = load(&[cronjob("apps", "x"), entry("TZ=Europe/Paris 0 2 * * *")]);
    loaded.inventory.cronjobs[0].schedule = "TZ=Europe/Paris  0 2 * * *".into();
    let e = Engine::new(Settings::default())
        .unwrap()
        .evaluate(&loaded.inventory);
    assert!(rules(&e, "apps", "x").is_empty(), "{:?}", e.findings);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_strings_never_panic(s in "\\PC{0,60}") {
        let once = normalize_schedule(&s);
        prop_assert_eq!(normalize_schedule(&once), once.clone());
        let _ = parse_schedule(&s);
        let _ = min_interval(&s);
        let _ = parse_go_duration(&s);
        let _ = same_schedule(&s, &once);
    }

    #[test]
    fn cron_like_strings_never_panic(
        fields in prop::collection::vec("[*?0-9a-zA-Z,/+-]{1,12}", 4..7),
        tz in prop::option::of("(CRON_)?TZ=[A-Za-z/]{0,8}"),
    ) {
        let mut s = fields.join(" ");
        if let Some(tz) = tz {
            s = format!("{tz} {s}");
        }
        let once = normalize_schedule(&s);
        prop_assert_eq!(normalize_schedule(&once), once.clone());
        if parse_existing_schedule(&s).is_ok() {
            prop_assert!(same_schedule(&s, &once));
        }
        if let Ok(Some(d)) = min_interval(&s) {
            prop_assert!(d >= Duration::from_secs(60));
        }
    }

    #[test]
    fn every_never_under_a_second(d in "[-+]?[0-9]{0,4}(\\.[0-9]{0,3})?(ns|us|ms|s|m|h){1}") {
        if let Ok(Some(g)) = min_interval(&format!("@every {d}")) {
            prop_assert!(g >= Duration::from_secs(1));
            prop_assert_eq!(g.subsec_nanos(), 0);
        }
    }
}
