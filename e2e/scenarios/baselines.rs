//! What a baseline says and how it is checked: invalid baselines rejected
//! by the schema or the engine without breaking the others, the `managers`
//! (deploy path) of an entry, and a `snapshot --pin-template` baseline
//! approving the object the API server serves.

use kube::Api;

use super::{NS_INVALID_BASELINES, NS_MANAGED_FIELDS, NS_SNAPSHOT_PIN, NS_UNAPPROVED};
use crate::harness::Cluster;
use crate::support::{Ctl, DEADLINE, baseline_yaml, cronjob_yaml, ensure, wait};
use cronwarden::api::CronJobBaseline;

pub(super) async fn invalid_baselines_rejected(c: &Cluster, ctl: &Ctl) -> Result<(), String> {
    let ns = NS_INVALID_BASELINES;
    c.namespace(ns)?;
    let both = baseline_yaml(ns, "both", "    - name: a\n      namePattern: \"a*\"\n");
    let err = c
        .apply(&both)
        .err()
        .ok_or("schema accepted name + namePattern")?;
    ensure(
        err.contains("exactly one of name, namePattern or selector"),
        format!("schema message: {err}"),
    )?;
    // `namespaces` scopes cluster entries only (SPEC 2.1): the API server
    // refuses it in a team's baseline.
    let scoped = baseline_yaml(
        ns,
        "scoped",
        "    - name: a\n      namespaces: [kube-system]\n",
    );
    let err = c
        .apply(&scoped)
        .err()
        .ok_or("schema accepted namespaces on a CronJobBaseline entry")?;
    ensure(
        err.contains("namespaces is only allowed on ClusterCronJobBaseline entries"),
        format!("schema message: {err}"),
    )?;
    let bad_enum = baseline_yaml(ns, "enum", "    - name: a\n      waive: [NotInBaseline]\n");
    ensure(
        c.apply(&bad_enum).is_err(),
        "schema accepted waiving a baseline rule",
    )?;
    c.apply(&baseline_yaml(
        ns,
        "cron",
        "    - name: ok-entry\n    - name: bad-entry\n      schedules: [\"61 * * * *\"]\n",
    ))?;
    let b = wait("Accepted=False InvalidSchedule", DEADLINE, || async {
        let b = Api::<CronJobBaseline>::namespaced(c.client.clone(), ns)
            .get_opt("cron")
            .await
            .ok()??;
        let cond = b
            .status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")?
            .clone();
        (cond.status == "False" && cond.reason == "InvalidSchedule").then_some(cond)
    })
    .await?;
    ensure(
        b.message.contains("approved[1] (name bad-entry)"),
        format!("message names the entry: {}", b.message),
    )?;
    wait("BaselineRejected Event", DEADLINE, || async {
        (!c.events_about(ns, "cron", "BaselineRejected")
            .await
            .is_empty())
        .then_some(())
    })
    .await?;
    // The valid entry keeps working, and so do other baselines.
    c.apply(&cronjob_yaml(
        ns,
        "ok-entry",
        "0 1 * * *",
        "registry.example.com/x:1",
        "",
    ))?;
    c.apply(&cronjob_yaml(
        ns,
        "stranger",
        "0 1 * * *",
        "registry.example.com/x:1",
        "",
    ))?;
    c.open_finding(ns, "stranger", &["NotInBaseline"]).await?;
    ctl.settle(2).await?;
    ensure(
        c.finding(ns, "ok-entry").await.is_none(),
        "the valid entry of a rejected baseline still approves",
    )?;
    // The baseline of `unapproved_cronjob_gets_finding_and_event`.
    let other = Api::<CronJobBaseline>::namespaced(c.client.clone(), NS_UNAPPROVED)
        .get("team")
        .await
        .map_err(|e| e.to_string())?;
    let accepted = other
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Accepted"))
        .map(|c| c.status);
    ensure(
        accepted.as_deref() == Some("True"),
        "other baselines stay Accepted",
    )
}

pub(super) async fn second_field_manager_violates_deploy_path(c: &Cluster) -> Result<(), String> {
    let ns = NS_MANAGED_FIELDS;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(
        ns,
        "team",
        "    - name: backup\n      managers: [argocd-controller]\n",
    ))?;
    let path = c.dir.path().join("managed-fields.yaml");
    std::fs::write(
        &path,
        cronjob_yaml(
            ns,
            "backup",
            "30 1 * * *",
            "registry.example.com/backup:1.0",
            "",
        ),
    )
    .unwrap();
    c.kubectl(&[
        "apply",
        "--server-side",
        "--field-manager=argocd-controller",
        "-f",
        path.to_str().unwrap(),
    ])?;
    c.kubectl(&[
        "set",
        "image",
        "cronjob/backup",
        "-n",
        ns,
        "main=ghcr.io/evil-org/backup:1.0",
    ])?;
    let f = c
        .open_finding(ns, "backup", &["DeployPathNotApproved"])
        .await?;
    let managers: Vec<String> = f
        .status
        .and_then(|s| s.observed)
        .map(|o| o.managers.into_iter().map(|m| m.manager).collect())
        .unwrap_or_default();
    ensure(
        managers.contains(&"argocd-controller".to_owned())
            && managers.contains(&"kubectl-set".to_owned()),
        format!("observed.managers {managers:?}"),
    )
}

pub(super) async fn snapshot_pin_approves_served_object(
    c: &Cluster,
    ctl: &Ctl,
) -> Result<(), String> {
    let ns = NS_SNAPSHOT_PIN;
    c.namespace(ns)?;
    let manifest = std::fs::read_to_string(
        crate::harness::root().join("tests/fixtures/cronjob-manifest.yaml"),
    )
    .map_err(|e| e.to_string())?
    .replace("namespace: reports", &format!("namespace: {ns}"));
    let path = c.dir.path().join("snapshot-pin-manifest.yaml");
    std::fs::write(&path, &manifest).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cronwarden"))
        .args([
            "baseline",
            "snapshot",
            "--pin-template",
            "--name",
            "pinned",
            path.to_str().unwrap(),
        ])
        .output()
        .map_err(|e| e.to_string())?;
    ensure(
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )?;
    let snap = String::from_utf8(out.stdout).unwrap();
    ensure(
        snap.contains("templateHash: sha256:"),
        "snapshot pins a hash",
    )?;
    c.apply(&snap)?;
    c.kubectl(&["apply", "-f", path.to_str().unwrap()])?;
    ctl.settle(3).await?;
    let served = c.kubectl(&[
        "get",
        "cronjob",
        "nightly-report",
        "-n",
        ns,
        "-o",
        "jsonpath={.spec.jobTemplate.spec.template.spec.containers[0].terminationMessagePath}",
    ])?;
    ensure(
        served == "/dev/termination-log",
        "the API server defaulted the template",
    )?;
    match c.finding(ns, "nightly-report").await {
        None => Ok(()),
        Some(f) => Err(format!(
            "served object not approved: {:?}",
            f.status.map(|s| s.rules)
        )),
    }
}
