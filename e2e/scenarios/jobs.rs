//! Jobs and lineage (SPEC 3.6), with kube-controller-manager's cronjob and
//! job controllers running: a CronJob's own Jobs are covered and reported
//! nowhere; a manual run, forged lineage and a standalone privileged Job
//! each get their `job.<name>` finding.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::Api;
use kube::api::ListParams;

use super::NS_JOBS;
use crate::harness::Cluster;
use crate::support::{DEADLINE, baseline_yaml, cronjob_yaml, ensure, wait};

fn job_yaml(ns: &str, name: &str, owner: Option<(&str, &str)>, image: &str, extra: &str) -> String {
    let owner = owner
        .map(|(cj, uid)| {
            format!(
                "  ownerReferences:\n  - {{apiVersion: batch/v1, kind: CronJob, name: {cj}, uid: {uid}, controller: true}}\n"
            )
        })
        .unwrap_or_default();
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\n  namespace: {ns}\n{owner}spec:\n  template:\n    spec:\n      restartPolicy: OnFailure\n{extra}      containers:\n        - name: main\n          image: {image}\n"
    )
}

async fn rules_of(c: &Cluster, ns: &str, name: &str) -> Option<Vec<String>> {
    let f = c.finding(ns, name).await?;
    Some(
        f.status?
            .violations
            .iter()
            .map(|v| v.rule.as_str().to_owned())
            .collect(),
    )
}

pub(super) async fn lineage_with_real_cronjob_controller(c: &Cluster) -> Result<(), String> {
    if let Err(why) = &c.controller_manager {
        println!("e2e   (jobs: skipped, {why})");
        return Ok(());
    }
    let ns = NS_JOBS;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(
        ns,
        "team",
        "    - name: every-minute\n      schedules: [\"* * * * *\"]\n      minInterval: 1m\n      images: [\"registry.example.com/*\"]\n",
    ))?;
    c.apply(&cronjob_yaml(
        ns,
        "every-minute",
        "* * * * *",
        "registry.example.com/app:1.0.0",
        "",
    ))?;
    // The cronjob controller runs it at the next minute.
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), ns);
    let scheduled = wait(
        "a Job of the CronJob's schedule",
        Duration::from_secs(75),
        || async {
            jobs.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find(|j| {
                    j.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with("every-minute-"))
                })
        },
    )
    .await?;
    let scheduled = scheduled.metadata.name.unwrap_or_default();
    let uid = Api::<CronJob>::namespaced(c.client.clone(), ns)
        .get("every-minute")
        .await
        .map_err(|e| e.to_string())?
        .metadata
        .uid
        .unwrap_or_default();

    // By hand from the CronJob: ManualJobRun.
    c.kubectl(&[
        "create",
        "job",
        "manual-1",
        "--from=cronjob/every-minute",
        "-n",
        ns,
    ])?;
    let f = c
        .open_finding(ns, "job.manual-1", &["ManualJobRun"])
        .await?;
    ensure(
        f.spec.subject.kind == "Job" && f.spec.subject.name == "manual-1",
        format!("subject {:?}", f.spec.subject),
    )?;
    let ev = c.events_about(ns, "manual-1", "ManualJobRun").await;
    ensure(
        ev.len() == 1,
        format!("{} ManualJobRun Events regarding the Job", ev.len()),
    )?;

    // Right owner, another template: ForgedJobLineage.
    c.apply(&job_yaml(
        ns,
        "every-minute-forged",
        Some(("every-minute", &uid)),
        "evil.example.com/miner:latest",
        "",
    ))?;
    c.open_finding(ns, "job.every-minute-forged", &["ForgedJobLineage"])
        .await?;
    // The right template under a uid that is not the CronJob's (the garbage
    // collector deletes such a Job soon: the finding stays as evidence).
    c.apply(&job_yaml(
        ns,
        "every-minute-uid",
        Some(("every-minute", "00000000-0000-0000-0000-000000000000")),
        "registry.example.com/app:1.0.0",
        "",
    ))?;
    wait("ForgedJobLineage for the wrong uid", DEADLINE, || async {
        rules_of(c, ns, "job.every-minute-uid")
            .await
            .filter(|r| r.iter().any(|x| x == "ForgedJobLineage"))
    })
    .await?;

    // A standalone privileged Job: its own finding, resolved when deleted.
    c.apply(&job_yaml(
        ns,
        "standalone",
        None,
        "registry.example.com/app:1.0.0",
        "      hostPID: true\n",
    ))?;
    c.open_finding(ns, "job.standalone", &["PrivilegedJobTemplate"])
        .await?;
    c.kubectl(&["delete", "job", "standalone", "-n", ns, "--wait=true"])?;
    c.resolved_finding(ns, "job.standalone", "JobDeleted")
        .await?;

    // The CronJob's own Job: no finding, no Event, ever.
    ensure(
        c.finding(ns, &format!("job.{scheduled}")).await.is_none(),
        format!("a finding for the scheduled Job {scheduled}"),
    )?;
    ensure(
        c.finding(ns, "every-minute").await.is_none(),
        "the approved CronJob has a finding",
    )?;
    let about_scheduled = c.events(ns).await.into_iter().filter(|e| {
        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(scheduled.as_str())
    });
    ensure(
        about_scheduled.count() == 0,
        "Events about the scheduled Job",
    )?;
    Ok(())
}
