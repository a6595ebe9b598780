//! Running the controller: a restart that writes nothing, two replicas
//! with leader failover, and enforcement off then on. These replace the
//! running controller (`ctl`), so `run_all` runs them last.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::CronJob;
use kube::Api;

use super::{
    NS_DRIFT, NS_ENFORCEMENT, NS_FAILOVER, NS_HAND_EDITS, NS_HEURISTICS, NS_INVALID_BASELINES,
    NS_MANAGED_FIELDS, NS_SNAPSHOT_PIN, NS_TENANT, NS_UNAPPROVED,
};
use crate::harness::{Cluster, http_get, metric};
use crate::support::{Ctl, DEADLINE, baseline_yaml, cronjob_yaml, ensure, wait};

/// The namespaces where the scenarios before the restart had Events emitted.
const WITH_EVENTS: [&str; 8] = [
    NS_UNAPPROVED,
    NS_DRIFT,
    NS_HEURISTICS,
    NS_HAND_EDITS,
    NS_INVALID_BASELINES,
    NS_MANAGED_FIELDS,
    NS_SNAPSHOT_PIN,
    NS_TENANT,
];

pub(super) async fn restart_writes_nothing(c: &Cluster, ctl: &mut Ctl) -> Result<(), String> {
    let before_events: usize = {
        let mut n = 0;
        for ns in WITH_EVENTS {
            n += c.events(ns).await.len();
        }
        n
    };
    ctl.proc.terminate();
    let restarted = c.start_controller("cronwarden-a2", &[]);
    restarted.ready().await?;
    restarted.settle(3).await?;
    let m = restarted.metrics().await;
    let applied = metric(&m, "cronwarden_writes_total", "result=\"applied\"");
    let events = metric(&m, "cronwarden_events_emitted_total", "");
    let skipped = metric(&m, "cronwarden_writes_total", "result=\"skipped\"");
    let mut after_events = 0;
    for ns in WITH_EVENTS {
        after_events += c.events(ns).await.len();
    }
    *ctl = restarted;
    let kinds: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("cronwarden_writes_total{") && l.contains("applied"))
        .collect();
    let log = ctl.proc.tail(400);
    let what: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("writing finding"))
        .collect();
    ensure(
        applied == 0.0,
        format!("{applied} writes after restart, want 0: {kinds:?} {what:?}"),
    )?;
    ensure(
        events == 0.0 && after_events == before_events,
        format!("{events} Events emitted after restart ({before_events} -> {after_events})"),
    )?;
    ensure(skipped > 0.0, "the restarted controller compared findings")
}

pub(super) async fn failover_between_replicas(c: &Cluster, ctl: &mut Ctl) -> Result<(), String> {
    let ns = NS_FAILOVER;
    c.namespace(ns)?;
    c.apply(&baseline_yaml(ns, "team", "    - name: nobody\n"))?;
    let standby = c.start_controller("cronwarden-b", &[]);
    wait("standby ready", Duration::from_secs(60), || async {
        http_get(standby.port, "/readyz").await
    })
    .await?;
    c.apply(&cronjob_yaml(
        ns,
        "first",
        "0 1 * * *",
        "registry.example.com/x:1",
        "",
    ))?;
    c.open_finding(ns, "first", &["NotInBaseline"]).await?;
    // Standbys do not reconcile: let the leader finish two more rounds.
    ctl.settle(2).await?;
    let m = standby.metrics().await;
    ensure(
        metric(&m, "cronwarden_leader", "") == 0.0,
        "standby must not lead",
    )?;
    ensure(
        metric(&m, "cronwarden_writes_total", "result=\"applied\"") == 0.0,
        "standby wrote",
    )?;
    // Crash the leader: no release, the standby waits out the Lease.
    ctl.proc.kill();
    let killed = Instant::now();
    c.apply(&cronjob_yaml(
        ns,
        "second",
        "0 1 * * *",
        "registry.example.com/x:1",
        "",
    ))?;
    c.open_finding(ns, "second", &["NotInBaseline"]).await?;
    let took = killed.elapsed();
    println!(
        "e2e     failover: new violation recorded {:.1}s after the leader was killed (lease 4s)",
        took.as_secs_f64()
    );
    *ctl = standby;
    ensure(
        took <= Duration::from_secs(4 + 5),
        format!("took {took:?}, want <= lease duration + 5s"),
    )?;
    ctl.settle(3).await?;
    for name in ["first", "second"] {
        let n = c.events_about(ns, name, "NotInBaseline").await.len();
        ensure(n == 1, format!("{name}: {n} NotInBaseline Events, want 1"))?;
    }
    Ok(())
}

pub(super) async fn enforcement_suspends_only_when_allowed(
    c: &Cluster,
    ctl: &mut Ctl,
) -> Result<(), String> {
    let ns = NS_ENFORCEMENT;
    c.namespace(ns)?;
    c.apply(&format!(
        "apiVersion: cronwarden.io/v1alpha1\nkind: CronJobBaseline\nmetadata: {{name: strict, namespace: {ns}}}\nspec:\n  enforcement: Suspend\n  approved:\n    - name: allowed\n"
    ))?;
    c.apply(&cronjob_yaml(
        ns,
        "intruder",
        "0 1 * * *",
        "registry.example.com/x:1",
        "",
    ))?;
    c.open_finding(ns, "intruder", &["NotInBaseline"]).await?;
    ctl.settle(2).await?;
    let api = Api::<CronJob>::namespaced(c.client.clone(), ns);
    let cj = api.get("intruder").await.map_err(|e| e.to_string())?;
    ensure(
        cj.spec.suspend != Some(true),
        "suspended although enforcement is off",
    )?;
    // The suspension's preconditions, as the API server applies them: the
    // patch cronwarden sends, for the CronJob as it was before an edit,
    // is refused and suspends nothing (SPEC 6).
    let evaluated = api.get("intruder").await.map_err(|e| e.to_string())?;
    let stale = cronwarden::controller::plan::Suspension {
        baseline: format!("{ns}/strict"),
        uid: evaluated.metadata.uid.clone().unwrap_or_default(),
        resource_version: evaluated
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default(),
    };
    c.kubectl(&[
        "label",
        "cronjob",
        "intruder",
        "-n",
        ns,
        "edited=after-evaluation",
    ])?;
    let refused = api
        .patch(
            "intruder",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(cronwarden::controller::publish::suspension_patch(&stale)),
        )
        .await;
    ensure(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 409),
        format!("a suspension of the CronJob as evaluated before an edit: {refused:?}, want 409"),
    )?;
    let cj = api.get("intruder").await.map_err(|e| e.to_string())?;
    ensure(
        cj.spec.suspend != Some(true),
        "suspended despite the precondition",
    )?;
    // Enforcement on: the optional ClusterRole plus the flag.
    c.kubectl(&["apply", "--server-side", "-k", "config/enforcement"])?;
    ctl.proc.terminate();
    let enforcing = c.start_controller("cronwarden-enforcing", &["--allow-enforcement"]);
    enforcing.ready().await?;
    *ctl = enforcing;
    let cj = wait("CronJob suspended", DEADLINE, || async {
        api.get("intruder")
            .await
            .ok()
            .filter(|cj| cj.spec.suspend == Some(true))
    })
    .await?;
    let ann = cj.metadata.annotations.unwrap_or_default();
    ensure(
        ann.get("cronwarden.io/suspended-by").map(String::as_str)
            == Some(format!("{ns}/strict").as_str()),
        format!("annotations {ann:?}"),
    )?;
    wait("CronJobSuspended Event", DEADLINE, || async {
        (!c.events_about(ns, "intruder", "CronJobSuspended")
            .await
            .is_empty())
        .then_some(())
    })
    .await?;
    Ok(())
}

/// Start-up problems end the process with one line saying what to create
/// or grant, not an API error dump: no namespace for the Lease, an identity
/// without the controller's RBAC, a cluster without the CRDs.
pub(super) async fn startup_problems_say_what_to_fix(c: &Cluster) -> Result<(), String> {
    let run = |name: &str, kubeconfig: &std::path::Path, lease_ns: &str| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cronwarden"));
        cmd.args([
            "run",
            "--metrics-insecure",
            "--metrics-addr",
            "127.0.0.1:0",
            "--probe-addr",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAMESPACE", lease_ns)
        .env("RUST_LOG", "warn");
        crate::harness::Proc::spawn(name, cmd, c.dir.path().join(format!("{name}.log")))
    };
    let exited = |mut p: crate::harness::Proc| async move {
        let code = wait("the controller to exit", DEADLINE, || {
            let code = p.exit_code();
            async move { code }
        })
        .await?;
        let log = std::fs::read_to_string(&p.log).unwrap_or_default();
        let last = log.lines().last().unwrap_or("").to_owned();
        Ok::<_, String>((code, last, log))
    };
    let (code, last, log) = exited(run(
        "startup-no-ns",
        &c.sa_kubeconfig,
        "e2e-no-such-namespace",
    ))
    .await?;
    println!("e2e     no Lease namespace: exit {code}: {last}");
    ensure(
        code != 0
            && last.starts_with("error: namespace e2e-no-such-namespace (for the leader Lease) does not exist: create it")
            && log.lines().count() <= 3,
        format!("exit {code}, log:\n{log}"),
    )?;
    let _ = c.kubectl(&[
        "create",
        "serviceaccount",
        "e2e-nobody",
        "-n",
        "cronwarden-system",
    ]);
    let token = c.kubectl(&["create", "token", "e2e-nobody", "-n", "cronwarden-system"])?;
    let nobody = c.token_kubeconfig("nobody", token.trim())?;
    let (code, last, log) = exited(run("startup-no-rbac", &nobody, "cronwarden-system")).await?;
    println!(
        "e2e     no RBAC: exit {code}: {}",
        &last[..last.len().min(150)]
    );
    ensure(
        code != 0
            && last
                .starts_with("error: RBAC: this controller's identity may not list cronjobs.batch")
            && last.contains("grant them"),
        format!("exit {code}, log:\n{log}"),
    )?;
    // `--check-config` says the same without starting anything: exit 2
    // and the one line for the identity without RBAC, exit 0 for the
    // controller's own service account.
    let check = |kubeconfig: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cronwarden"))
            .args(["run", "--check-config", "--metrics-insecure"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", "cronwarden-system")
            .output()
            .map_err(|e| e.to_string())
    };
    let out = check(&nobody)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(
        out.status.code() == Some(2)
            && stderr.lines().count() == 1
            && stderr
                .starts_with("error: RBAC: this controller's identity may not list cronjobs.batch"),
        format!(
            "--check-config without RBAC: {:?} {stderr}",
            out.status.code()
        ),
    )?;
    let out = check(&c.sa_kubeconfig)?;
    ensure(
        out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("ok: "),
        format!(
            "--check-config as the controller: {:?} {} {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )?;
    // A cluster without the CRDs: a second API server on the same etcd,
    // under another prefix (only when this harness runs the API server).
    let (mut bare, admin) = match c.bare_apiserver().await {
        Ok(b) => b,
        Err(why) => {
            println!("e2e     no CRDs: not run here: {why}");
            return Ok(());
        }
    };
    let outcome = exited(run("startup-no-crds", &admin, "default")).await;
    bare.terminate();
    let (code, last, log) = outcome?;
    println!("e2e     no CRDs: exit {code}: {last}");
    ensure(
        code != 0
            && last.starts_with(
                "error: the cronwarden.io CRDs are not installed \
                 (no cronjobfindings, cronjobbaselines, clustercronjobbaselines): apply them first",
            )
            && log.lines().count() <= 3,
        format!("exit {code}, log:\n{log}"),
    )
}
