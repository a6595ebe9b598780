//! Faults (issue 13; SPEC 4, 5.1, 5.3), each asserting counts: a crash in
//! the middle of a burst, Events refused by RBAC, the API server going away
//! and coming back, a deleted namespace. They replace or outlive the
//! running controller, so they run after the scenarios that share it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Api;
use kube::api::{ListParams, PostParams};

use super::{NS_APISERVER, NS_BURST, NS_DELETED, NS_EVENTS_RBAC};
use crate::harness::{Cluster, metric};
use crate::support::{Ctl, DEADLINE, baseline_yaml, create_all, cronjob_yaml, ensure, wait};
use cronwarden::api::{CronJobFinding, FindingState};

const BURST: usize = 200;

async fn findings(c: &Cluster, ns: &str) -> Vec<CronJobFinding> {
    Api::<CronJobFinding>::namespaced(c.client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Warning Events per (regarding name, reason).
async fn warnings(c: &Cluster, ns: &str) -> BTreeMap<(String, String), usize> {
    let mut n = BTreeMap::new();
    for e in c.events(ns).await {
        if e.type_.as_deref() != Some("Warning") {
            continue;
        }
        let who = e.regarding.and_then(|r| r.name).unwrap_or_default();
        *n.entry((who, e.reason.unwrap_or_default())).or_default() += 1;
    }
    n
}

/// SIGKILL the controller while it writes the findings of 200 new
/// violations; a new one starts: every finding is there, and each finding
/// and rule has exactly one Warning Event (none lost, none twice).
pub(super) async fn crash_mid_burst(c: &Cluster, ctl: &mut Ctl) -> Result<(), String> {
    let ns = NS_BURST;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(ns, "team", "    - name: nobody\n"))?;
    let cjs: Vec<CronJob> = (0..BURST)
        .map(|i| {
            serde_saphyr::from_str(&cronjob_yaml(
                ns,
                &format!("burst-{i:03}"),
                "0 3 * * *",
                "registry.example.com/x:1",
                "",
            ))
            .unwrap()
        })
        .collect();
    create_all(&c.client, cjs).await?;
    // Kill as soon as the first findings land: mid-burst.
    wait("the first findings of the burst", DEADLINE, || async {
        (!findings(c, ns).await.is_empty()).then_some(())
    })
    .await?;
    ctl.proc.kill();
    let at_kill = findings(c, ns).await;
    let written = at_kill
        .iter()
        .filter(|f| {
            f.status
                .as_ref()
                .is_some_and(|s| s.state == FindingState::Open)
        })
        .count();
    let events_at_kill: usize = warnings(c, ns).await.values().sum();
    let restarted = c.start_controller("cronwarden-burst", &[]);
    restarted.ready().await?;
    *ctl = restarted;
    wait(&format!("{BURST} open findings"), DEADLINE, || async {
        let fs = findings(c, ns).await;
        let open = fs
            .iter()
            .filter(|f| {
                f.status.as_ref().is_some_and(|s| {
                    s.state == FindingState::Open
                        && s.rules.contains("NotInBaseline")
                        && s.pending_events.is_empty()
                })
            })
            .count();
        (open == BURST).then_some(())
    })
    .await?;
    ctl.settle(3).await?;
    let w = warnings(c, ns).await;
    println!(
        "e2e     crash mid-burst: killed with {} findings created, {written} with status, {events_at_kill} Events; after restart {} Events",
        at_kill.len(),
        w.values().sum::<usize>()
    );
    let twice: Vec<_> = w.iter().filter(|(_, n)| **n > 1).collect();
    ensure(twice.is_empty(), format!("Events written twice: {twice:?}"))?;
    let per_finding = (0..BURST)
        .filter(|i| w.get(&(format!("burst-{i:03}"), "NotInBaseline".into())) == Some(&1))
        .count();
    ensure(
        per_finding == BURST && w.len() == BURST,
        format!(
            "{per_finding} of {BURST} findings have their one Event ({} kinds)",
            w.len()
        ),
    )
}

/// Without `create events` the finding is still recorded and its Event is
/// owed in status.pendingEvents; once the permission is back the Event is
/// written, exactly once.
pub(super) async fn events_refused_then_allowed(c: &Cluster, ctl: &Ctl) -> Result<(), String> {
    let ns = NS_EVENTS_RBAC;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(ns, "team", "    - name: nobody\n"))?;
    let roles: Api<ClusterRole> = Api::all(c.client.clone());
    let original = roles
        .get("cronwarden-manager")
        .await
        .map_err(|e| e.to_string())?;
    let mut without = original.clone();
    without.metadata.managed_fields = None;
    if let Some(rules) = without.rules.as_mut() {
        rules.retain(|r| {
            !r.api_groups
                .as_ref()
                .is_some_and(|g| g.iter().any(|g| g == "events.k8s.io"))
        });
    }
    roles
        .replace("cronwarden-manager", &PostParams::default(), &without)
        .await
        .map_err(|e| e.to_string())?;
    let restore = || async {
        let mut back = roles
            .get("cronwarden-manager")
            .await
            .map_err(|e| e.to_string())?;
        back.rules = original.rules.clone();
        back.metadata.managed_fields = None;
        roles
            .replace("cronwarden-manager", &PostParams::default(), &back)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let result = async {
        c.apply(&cronjob_yaml(
            ns,
            "muted",
            "0 3 * * *",
            "registry.example.com/x:1",
            "",
        ))?;
        let owed = wait("the Event owed in status", DEADLINE, || async {
            let f = c.finding(ns, "muted").await?;
            let s = f.status?;
            (s.state == FindingState::Open && !s.pending_events.is_empty()).then_some(s)
        })
        .await?;
        ensure(
            owed.pending_events
                .iter()
                .any(|p| p.reason == "NotInBaseline"),
            format!("owed: {:?}", owed.pending_events),
        )?;
        ensure(
            c.events_about(ns, "muted", "NotInBaseline")
                .await
                .is_empty(),
            "an Event was written without the permission",
        )
    }
    .await;
    restore().await?;
    result?;
    let restored = Instant::now();
    wait(
        "the Event, once allowed",
        Duration::from_secs(90),
        || async {
            let f = c.finding(ns, "muted").await?;
            (f.status?.pending_events.is_empty()
                && !c
                    .events_about(ns, "muted", "NotInBaseline")
                    .await
                    .is_empty())
            .then_some(())
        },
    )
    .await?;
    println!(
        "e2e     Event refused by RBAC written {:.1}s after the permission came back",
        restored.elapsed().as_secs_f64()
    );
    ctl.settle(3).await?;
    let n = c.events_about(ns, "muted", "NotInBaseline").await.len();
    ensure(n == 1, format!("{n} NotInBaseline Events, want 1"))
}

/// kube-apiserver stops and starts again (etcd kept): the controller does
/// not exit, its watches come back, a new violation is still found.
pub(super) async fn apiserver_restart(c: &Cluster, ctl: &mut Ctl) -> Result<(), String> {
    let ns = NS_APISERVER;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(ns, "team", "    - name: nobody\n"))?;
    c.apply(&cronjob_yaml(
        ns,
        "before",
        "0 3 * * *",
        "registry.example.com/x:1",
        "",
    ))?;
    c.open_finding(ns, "before", &["NotInBaseline"]).await?;
    let down = Instant::now();
    c.restart_apiserver(Duration::from_secs(5)).await?;
    println!(
        "e2e     kube-apiserver down and back in {:.1}s",
        down.elapsed().as_secs_f64()
    );
    ensure(
        ctl.proc.running(),
        "the controller exited while the API server was away",
    )?;
    c.apply(&cronjob_yaml(
        ns,
        "after",
        "0 3 * * *",
        "registry.example.com/x:1",
        "",
    ))?;
    let found = Instant::now();
    wait(
        "finding after the restart",
        Duration::from_secs(60),
        || async {
            let f = c.finding(ns, "after").await?;
            (f.status?.state == FindingState::Open).then_some(())
        },
    )
    .await?;
    println!(
        "e2e     new violation found {:.1}s after the API server was back",
        found.elapsed().as_secs_f64()
    );
    ctl.ready().await?;
    ctl.settle(3).await?;
    ensure(ctl.proc.running(), "the controller exited")?;
    for name in ["before", "after"] {
        let n = c.events_about(ns, name, "NotInBaseline").await.len();
        ensure(n == 1, format!("{name}: {n} NotInBaseline Events, want 1"))?;
    }
    Ok(())
}

/// A deleted namespace leaves nothing behind: its findings go with it, and
/// the controller's index and metric series for it are released.
pub(super) async fn namespace_deletion_releases_state(
    c: &Cluster,
    ctl: &Ctl,
) -> Result<(), String> {
    if let Err(why) = &c.controller_manager {
        println!("e2e     (namespace deletion needs kube-controller-manager: {why})");
        return Ok(());
    }
    let ns = NS_DELETED;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(ns, "team", "    - name: nobody\n"))?;
    for i in 0..3 {
        c.apply(&cronjob_yaml(
            ns,
            &format!("doomed-{i}"),
            "* * * * *",
            "registry.example.com/x:1",
            "",
        ))?;
    }
    for i in 0..3 {
        c.open_finding(ns, &format!("doomed-{i}"), &["NotInBaseline"])
            .await?;
    }
    ctl.settle(2).await?;
    let series = |m: &str| {
        m.lines()
            .filter(|l| {
                l.starts_with("cronwarden_open_findings{")
                    && l.contains(&format!("namespace=\"{ns}\""))
            })
            .count()
    };
    let m = ctl.metrics().await;
    let before = metric(&m, "cronwarden_indexed_namespaces", "");
    ensure(
        series(&m) > 0,
        "no open_findings series for the namespace before deletion",
    )?;
    c.kubectl(&["delete", "namespace", ns, "--wait=true", "--timeout=60s"])?;
    let m = wait(
        "the namespace's series and index entries gone",
        DEADLINE,
        || async {
            let m = ctl.metrics().await;
            (series(&m) == 0 && metric(&m, "cronwarden_indexed_namespaces", "") < before)
                .then_some(m)
        },
    )
    .await?;
    println!(
        "e2e     namespace deleted: indexed namespaces {before} -> {}, its series 0",
        metric(&m, "cronwarden_indexed_namespaces", "")
    );
    ensure(
        findings(c, ns).await.is_empty(),
        "findings outlived their namespace",
    )
}
