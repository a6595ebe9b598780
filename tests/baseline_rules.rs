//! Baseline rules (SPEC 3.1), governance and matching (SPEC 2.1): each rule
//! fires, and a near miss stays quiet.

mod common;

use common::*;
use cronwarden::api::{Rule, Severity, reasons};
use serde_json::json;

fn approved(entry: serde_json::Value) -> serde_json::Value {
    baseline("apps", "b", json!([entry]))
}

#[test]
fn not_in_baseline_only_where_governed() {
    let e = evaluate(&[cronjob("apps", "x"), approved(json!({"name": "other"}))]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::NotInBaseline]);
    let f = &e.findings.iter().find(|f| f.name == "x").unwrap();
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.baselines, vec!["apps/b".to_owned()]);
    assert_eq!(
        f.violations[0].message,
        "CronJob apps/x is not in any baseline (schedule 0 2 * * *, image registry.example.com/team/app:1.0.0)"
    );
    // Ungoverned namespace: heuristics only.
    let e = evaluate(&[
        cronjob("elsewhere", "x"),
        approved(json!({"name": "other"})),
    ]);
    assert!(rules(&e, "elsewhere", "x").is_empty());
    // Matched: quiet.
    let e = evaluate(&[cronjob("apps", "x"), approved(json!({"name": "x"}))]);
    assert!(e.findings.is_empty());
    assert_eq!(e.baselines[0].matched_cronjobs, 1);
}

#[test]
fn unapproved_ignore_needs_every_governing_baseline() {
    let ignore = with(
        approved(json!({"name": "other"})),
        "/spec/unapproved",
        json!("Ignore"),
    );
    assert!(
        evaluate(&[cronjob("apps", "x"), ignore.clone()])
            .findings
            .is_empty()
    );
    let report = baseline("apps", "c", json!([{"name": "third"}]));
    let e = evaluate(&[cronjob("apps", "x"), ignore, report]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::NotInBaseline]);
}

#[test]
fn schedule_not_approved() {
    let entry = json!({"name": "x", "schedules": ["0 * * * *"]});
    let at = |s: &str| with(cronjob("apps", "x"), "/spec/schedule", json!(s));
    let e = evaluate(&[at("0 3 * * *"), approved(entry.clone())]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::ScheduleNotApproved]);
    // Macros are expanded and whitespace folded before comparison.
    assert!(
        evaluate(&[at("@hourly"), approved(entry.clone())])
            .findings
            .is_empty()
    );
    assert!(
        evaluate(&[at(" 0  *  * * *"), approved(entry)])
            .findings
            .is_empty()
    );
    let daily = json!({"name": "x", "schedules": ["@daily"]});
    assert!(
        evaluate(&[at("0 0 * * *"), approved(daily.clone())])
            .findings
            .is_empty()
    );
    assert!(
        evaluate(&[at("@midnight"), approved(daily)])
            .findings
            .is_empty()
    );
}

#[test]
fn time_zone_and_min_interval_are_schedule_constraints() {
    let tz = json!({"name": "x", "timeZones": ["Etc/UTC"]});
    let e = evaluate(&[cronjob("apps", "x"), approved(tz.clone())]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::ScheduleNotApproved]);
    assert_eq!(
        e.findings[0].violations[0].actual.as_deref(),
        Some("<unset>")
    );
    let in_utc = with(cronjob("apps", "x"), "/spec/timeZone", json!("Etc/UTC"));
    assert!(evaluate(&[in_utc, approved(tz)]).findings.is_empty());

    let min = json!({"name": "x", "minInterval": "30m"});
    let every10 = with(
        cronjob("apps", "x"),
        "/spec/schedule",
        json!("*/10 * * * *"),
    );
    let e = evaluate(&[every10, approved(min.clone())]);
    // Under the entry's minInterval: both the baseline rule and the heuristic,
    // whose threshold the entry replaced.
    assert_eq!(
        rules(&e, "apps", "x"),
        vec![Rule::ScheduleNotApproved, Rule::HighFrequencySchedule]
    );
    let every30 = with(
        cronjob("apps", "x"),
        "/spec/schedule",
        json!("*/30 * * * *"),
    );
    assert!(evaluate(&[every30, approved(min)]).findings.is_empty());
}

fn image(i: &str) -> serde_json::Value {
    with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/containers/0/image",
        json!(i),
    )
}

#[test]
fn image_not_approved_with_normalised_patterns() {
    let entry = |p: &str| approved(json!({"name": "x", "images": [p]}));
    // Docker Hub short names are normalised on both sides.
    assert!(
        evaluate(&[image("busybox:1.36"), entry("docker.io/library/busybox")])
            .findings
            .is_empty()
    );
    assert!(
        evaluate(&[image("docker.io/library/busybox:1.36"), entry("busybox")])
            .findings
            .is_empty()
    );
    // A pattern without tag matches any tag and digest of the repository.
    assert!(
        evaluate(&[
            image("registry.example.com/team/app:9.9"),
            entry("registry.example.com/team/app")
        ])
        .findings
        .is_empty()
    );
    // `*` crosses `/`.
    assert!(
        evaluate(&[
            image("registry.example.com/team/sub/app:1"),
            entry("registry.example.com/team/*")
        ])
        .findings
        .is_empty()
    );
    // A tagged pattern pins the tag.
    let e = evaluate(&[
        image("registry.example.com/team/app:2.0"),
        entry("registry.example.com/team/app:1.*"),
    ]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::ImageNotApproved]);
    // Near misses: another repository, a look-alike registry.
    let e = evaluate(&[
        image("registry.example.com/team/application:1"),
        entry("registry.example.com/team/app"),
    ]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::ImageNotApproved]);
    let e = evaluate(&[
        image("registry.example.com.evil.io/team/app:1"),
        entry("registry.example.com/team/app"),
    ]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::ImageNotApproved]);
}

#[test]
fn image_rules_cover_init_containers_and_digests() {
    let mut cj = image("registry.example.com/team/app:1");
    set(
        &mut cj,
        "/spec/jobTemplate/spec/template/spec/initContainers",
        json!([{"name": "init", "image": "ghcr.io/x/y:1"}]),
    );
    let e = evaluate(&[
        cj,
        approved(json!({"name": "x", "images": ["registry.example.com/*"]})),
    ]);
    let f = &e.findings[0];
    assert_eq!(f.rules(), vec![Rule::ImageNotApproved]);
    assert_eq!(
        f.violations[0].field.as_deref(),
        Some("spec.jobTemplate.spec.template.spec.initContainers[0].image")
    );

    let digest = json!({"name": "x", "requireDigest": true});
    let e = evaluate(&[
        image("registry.example.com/team/app:1"),
        approved(digest.clone()),
    ]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::ImageNotApproved]);
    let pinned = image(
        "registry.example.com/team/app@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    );
    assert!(evaluate(&[pinned, approved(digest)]).findings.is_empty());
}

#[test]
fn service_account_not_approved() {
    let entry = approved(json!({"name": "x", "serviceAccountNames": ["runner"]}));
    let e = evaluate(&[cronjob("apps", "x"), entry.clone()]);
    assert_eq!(
        rules(&e, "apps", "x"),
        vec![Rule::ServiceAccountNotApproved]
    );
    assert_eq!(
        e.findings[0].violations[0].actual.as_deref(),
        Some("default")
    );
    let ok = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/serviceAccountName",
        json!("runner"),
    );
    assert!(evaluate(&[ok, entry.clone()]).findings.is_empty());
    // The deprecated alias counts when serviceAccountName is absent.
    let alias = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/serviceAccount",
        json!("runner"),
    );
    assert!(evaluate(&[alias, entry]).findings.is_empty());
}

#[test]
fn command_not_approved() {
    let entry = approved(
        json!({"name": "x", "commands": [{"container": "main", "command": ["/bin/report"], "args": ["--nightly"]}]}),
    );
    let run = |cmd: serde_json::Value, args: serde_json::Value| {
        let cj = with(
            cronjob("apps", "x"),
            "/spec/jobTemplate/spec/template/spec/containers/0/command",
            cmd,
        );
        with(
            cj,
            "/spec/jobTemplate/spec/template/spec/containers/0/args",
            args,
        )
    };
    assert!(
        evaluate(&[
            run(json!(["/bin/report"]), json!(["--nightly"])),
            entry.clone()
        ])
        .findings
        .is_empty()
    );
    for (cmd, args) in [
        (
            json!(["/bin/report"]),
            json!(["--nightly", "--upload=http://x"]),
        ),
        (json!(["/bin/sh", "-c"]), json!(["/bin/report --nightly"])),
        (json!([]), json!(["--nightly"])),
    ] {
        let e = evaluate(&[run(cmd.clone(), args.clone()), entry.clone()]);
        assert_eq!(
            rules(&e, "apps", "x"),
            vec![Rule::CommandNotApproved],
            "{cmd} {args}"
        );
    }
    // A container with no approved command line is reported too.
    let mut two = run(json!(["/bin/report"]), json!(["--nightly"]));
    set(
        &mut two,
        "/spec/jobTemplate/spec/template/spec/containers/1",
        json!({"name": "sidecar", "image": "registry.example.com/s:1"}),
    );
    let e = evaluate(&[two, entry]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::CommandNotApproved]);
}

#[test]
fn template_drift() {
    let loaded = load(&[cronjob("apps", "x")]);
    // Computed from the object itself, not from the engine's view of it.
    let raw: k8s_openapi::api::batch::v1::CronJob =
        serde_json::from_value(cronjob("apps", "x")).unwrap();
    let pod = raw.spec.job_template.spec.and_then(|j| j.template.spec);
    let hash = cronwarden::engine::normalize::template_hash(pod.as_ref());
    assert_eq!(
        Some(&hash),
        loaded.inventory.cronjobs[0]
            .pod
            .as_ref()
            .map(|p| &p.template_hash)
    );
    let entry = approved(json!({"name": "x", "templateHash": hash}));
    assert!(
        evaluate(&[cronjob("apps", "x"), entry.clone()])
            .findings
            .is_empty()
    );
    // A security-relevant change drifts; a defaulted field does not.
    let env = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/containers/0/env",
        json!([{"name": "LD_PRELOAD", "value": "/x.so"}]),
    );
    let e = evaluate(&[env, entry.clone()]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::TemplateDrift]);
    let pull = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/containers/0/imagePullPolicy",
        json!("Always"),
    );
    assert!(evaluate(&[pull, entry]).findings.is_empty());
}

fn managed(managers: &[(&str, &str, bool)]) -> serde_json::Value {
    let entries: Vec<_> = managers
        .iter()
        .map(|(m, op, spec)| {
            let fields = if *spec { json!({"f:spec": {"f:schedule": {}}}) } else { json!({"f:status": {"f:lastScheduleTime": {}}}) };
            json!({"manager": m, "operation": op, "apiVersion": "batch/v1", "fieldsType": "FieldsV1", "fieldsV1": fields, "time": "2026-11-22T07:15:13Z"})
        })
        .collect();
    with(
        cronjob("apps", "x"),
        "/metadata/managedFields",
        json!(entries),
    )
}

#[test]
fn deploy_path_not_approved() {
    let entry = approved(json!({"name": "x", "managers": ["argocd-controller"]}));
    let e = evaluate(&[
        managed(&[
            ("argocd-controller", "Apply", true),
            ("kubectl-edit", "Update", true),
        ]),
        entry.clone(),
    ]);
    assert_eq!(rules(&e, "apps", "x"), vec![Rule::DeployPathNotApproved]);
    assert_eq!(
        e.findings[0].violations[0].actual.as_deref(),
        Some("kubectl-edit")
    );
    // Managers that own only status (the cronjob controller) do not count.
    let e = evaluate(&[
        managed(&[
            ("argocd-controller", "Apply", true),
            ("kube-controller-manager", "Update", false),
        ]),
        entry,
    ]);
    assert!(e.findings.is_empty());
}

#[test]
fn approved_cronjob_missing() {
    let entry = approved(json!({"name": "ledger", "required": true, "owner": "team-a"}));
    let e = evaluate(std::slice::from_ref(&entry));
    assert_eq!(
        rules(&e, "apps", "ledger"),
        vec![Rule::ApprovedCronJobMissing]
    );
    let f = &e.findings[0];
    assert_eq!(f.subject.uid, None);
    assert_eq!(f.owner.as_deref(), Some("team-a"));
    assert!(
        evaluate(&[cronjob("apps", "ledger"), entry])
            .findings
            .is_empty()
    );
    // Not required: nothing.
    assert!(
        evaluate(&[approved(json!({"name": "ledger"}))])
            .findings
            .is_empty()
    );
}

#[test]
fn most_specific_entry_wins_then_first_in_order() {
    let mut cj = cronjob("apps", "report-nightly");
    set(&mut cj, "/metadata/labels", json!({"app": "report"}));
    let entries = json!([
        {"selector": {"matchLabels": {"app": "report"}}, "schedules": ["1 1 * * *"]},
        {"namePattern": "report-*", "schedules": ["2 2 * * *"]},
        {"name": "report-nightly", "schedules": ["0 2 * * *"]},
    ]);
    assert!(
        evaluate(&[cj.clone(), baseline("apps", "b", entries)])
            .findings
            .is_empty()
    );
    let entries = json!([
        {"selector": {"matchLabels": {"app": "report"}}, "schedules": ["1 1 * * *"]},
        {"namePattern": "report-*", "schedules": ["0 2 * * *"]},
    ]);
    assert!(
        evaluate(&[cj.clone(), baseline("apps", "b", entries)])
            .findings
            .is_empty()
    );
    // Ties: first baseline by namespace/name, then entry index.
    let a = baseline(
        "apps",
        "a",
        json!([{"namePattern": "report-*", "schedules": ["0 2 * * *"]}]),
    );
    let z = baseline(
        "apps",
        "z",
        json!([{"namePattern": "report-*", "schedules": ["5 5 * * *"]}]),
    );
    assert!(
        evaluate(&[cj.clone(), z.clone(), a.clone()])
            .findings
            .is_empty()
    );
    let a_bad = baseline(
        "apps",
        "a",
        json!([{"namePattern": "report-*", "schedules": ["5 5 * * *"]}]),
    );
    let z_ok = baseline(
        "apps",
        "z",
        json!([{"namePattern": "report-*", "schedules": ["0 2 * * *"]}]),
    );
    let e = evaluate(&[cj, a_bad, z_ok]);
    assert_eq!(
        rules(&e, "apps", "report-nightly"),
        vec![Rule::ScheduleNotApproved]
    );
}

#[test]
fn invalid_entries_are_named_and_the_rest_keeps_working() {
    let b = baseline(
        "apps",
        "b",
        json!([
            {"name": "bad-cron", "schedules": ["61 * * * *"]},
            {"namePattern": "[unclosed"},
            {"name": "bad-duration", "minInterval": "soon"},
            {"name": "good", "schedules": ["0 2 * * *"]},
        ]),
    );
    let e = evaluate(&[b, cronjob("apps", "good")]);
    let problems: Vec<_> = e.baselines[0]
        .problems
        .iter()
        .map(|p| (p.reason, p.message.clone()))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0].0, reasons::INVALID_SCHEDULE);
    assert!(
        problems[0].1.contains("approved[0] (name bad-cron)"),
        "{}",
        problems[0].1
    );
    assert_eq!(problems[1].0, reasons::INVALID_PATTERN);
    assert!(problems[1].1.contains("approved[1]"));
    assert_eq!(problems[2].0, reasons::INVALID_DURATION);
    assert!(problems[2].1.contains("approved[2] (name bad-duration)"));
    assert!(
        e.findings.is_empty(),
        "the valid entry still approves: {:?}",
        e.findings
    );
    assert_eq!(e.baselines[0].entries, 4);
}

#[test]
fn baseline_report_counts() {
    let b = baseline(
        "apps",
        "b",
        json!([{"name": "x"}, {"name": "y", "schedules": ["1 1 * * *"]}]),
    );
    let e = evaluate(&[
        b,
        cronjob("apps", "x"),
        cronjob("apps", "y"),
        cronjob("apps", "z"),
    ]);
    let r = &e.baselines[0];
    assert_eq!(
        (
            r.entries,
            r.governed_namespaces,
            r.matched_cronjobs,
            r.open_findings
        ),
        (2, 1, 2, 2)
    );
}

#[test]
fn suspend_is_requested_only_for_high_baseline_violations() {
    let b = with(
        baseline(
            "apps",
            "b",
            json!([{"name": "x", "schedules": ["1 1 * * *"]}]),
        ),
        "/spec/enforcement",
        json!("Suspend"),
    );
    let e = evaluate(&[b.clone(), cronjob("apps", "x"), cronjob("apps", "rogue")]);
    let find = |n: &str| e.findings.iter().find(|f| f.name == n).unwrap();
    assert_eq!(
        find("rogue").suspend_by.as_deref(),
        Some("apps/b"),
        "NotInBaseline is high"
    );
    assert_eq!(find("x").suspend_by, None, "ScheduleNotApproved is medium");
    // Heuristics alone never suspend.
    let hp = with(
        cronjob("apps", "x"),
        "/spec/jobTemplate/spec/template/spec/volumes",
        json!([{"name": "h", "hostPath": {"path": "/"}}]),
    );
    let b2 = with(
        baseline("apps", "b", json!([{"name": "x"}])),
        "/spec/enforcement",
        json!("Suspend"),
    );
    let e = evaluate(&[b2, hp]);
    assert_eq!(e.findings[0].suspend_by, None);
}

#[test]
fn findings_are_sorted_and_deterministic() {
    let objs = [
        cronjob("b", "2"),
        cronjob("a", "1"),
        approved(json!({"name": "q"})),
        cronjob("apps", "z"),
        cronjob("apps", "a"),
    ];
    let e1 = evaluate(&objs);
    let mut rev = objs.to_vec();
    rev.reverse();
    let e2 = evaluate(&rev);
    let keys = |e: &cronwarden::engine::Evaluation| {
        e.findings
            .iter()
            .map(|f| format!("{}/{}", f.namespace, f.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&e1), keys(&e2));
    assert_eq!(keys(&e1), vec!["apps/a", "apps/z"]);
}
