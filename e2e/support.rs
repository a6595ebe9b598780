//! What the scenarios and the bench share: deadlines and polling, the
//! running controller (`Ctl`), manifest builders, and `Cluster` helpers that
//! read findings, baselines and Events the way a user sees them. Neither
//! `scenarios` nor `bench` imports the other; both import from here.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, PostParams};

use crate::harness::{Cluster, Proc, free_metrics_port, http_get, metric};
use cronwarden::api::{CronJobFinding, FindingState};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Ctl {
    pub proc: Proc,
    /// `/healthz` and `/readyz`.
    pub port: u16,
    /// `/metrics` (plain HTTP: `--metrics-insecure`).
    pub metrics_port: u16,
}

impl Ctl {
    pub async fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics")
            .await
            .unwrap_or_default()
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

/// Create namespaced objects, 32 requests in flight.
pub async fn create_all<K>(client: &kube::Client, objects: Vec<K>) -> Result<(), String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::Serialize
        + serde::de::DeserializeOwned,
{
    let results: Vec<Result<(), String>> = futures::stream::iter(objects)
        .map(|o| {
            let client = client.clone();
            async move {
                let api: Api<K> =
                    Api::namespaced(client, o.meta().namespace.as_deref().unwrap_or("default"));
                api.create(&PostParams::default(), &o)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
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

pub fn ensure(cond: bool, msg: impl Into<String>) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg.into()) }
}

/// Each `(what, result, why)` must have been refused by the
/// cronwarden-findings admission policy with `why` in its message.
pub fn ensure_refused(refusals: &[(&str, Result<String, String>, &str)]) -> Result<(), String> {
    let wrong: Vec<String> = refusals
        .iter()
        .filter(|(_, r, why)| {
            !matches!(r, Err(e) if e.contains("cronwarden-findings") && e.contains(why))
        })
        .map(|(what, r, why)| format!("{what}: want refused with {why:?}, got {r:?}"))
        .collect();
    ensure(
        wrong.is_empty(),
        format!(
            "{} of {} edits not refused: {wrong:?}",
            wrong.len(),
            refusals.len()
        ),
    )
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

/// A ClusterCronJobBaseline that governs namespace `ns` alone (selected by
/// the `kubernetes.io/metadata.name` label the API server sets), so it
/// never reaches another scenario's objects.
pub fn cluster_baseline_yaml(name: &str, ns: &str, entries: &str) -> String {
    format!(
        "apiVersion: cronwarden.io/v1alpha1\nkind: ClusterCronJobBaseline\nmetadata:\n  name: {name}\nspec:\n  namespaceSelector:\n    matchLabels: {{kubernetes.io/metadata.name: {ns}}}\n  approved:\n{entries}"
    )
}

impl Cluster {
    pub fn apply(&self, yaml: &str) -> Result<String, String> {
        self.apply_as(yaml, &[])
    }

    /// `kubectl apply` with `extra` flags, such as `--as=USER` to act as
    /// an impersonated user.
    pub fn apply_as(&self, yaml: &str, extra: &[&str]) -> Result<String, String> {
        let path = self.dir.path().join(format!(
            "apply-{}.yaml",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::write(&path, yaml).unwrap();
        let mut args = vec!["apply", "-f", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.kubectl(&args)
    }

    /// `kubectl auth can-i` as `user`: `resource` may name a subresource
    /// (`cronjobfindings.cronwarden.io/status`); `ns` None asks cluster-wide.
    pub fn can_i(
        &self,
        user: &str,
        verb: &str,
        resource: &str,
        ns: Option<&str>,
    ) -> Result<bool, String> {
        let (resource, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (resource, None),
        };
        let mut args = vec![
            "auth".to_owned(),
            "can-i".to_owned(),
            verb.to_owned(),
            resource.to_owned(),
            format!("--as={user}"),
        ];
        if let Some(s) = sub {
            args.push(format!("--subresource={s}"));
        }
        if let Some(ns) = ns {
            args.extend(["-n".to_owned(), ns.to_owned()]);
        }
        let out = std::process::Command::new(&self.kubectl)
            .args(&args)
            .env("KUBECONFIG", &self.admin_kubeconfig)
            .output()
            .map_err(|e| format!("kubectl: {e}"))?;
        // Exit 0 with "yes", 1 with "no"; anything else is an error.
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" if out.status.success() => Ok(true),
            "no" => Ok(false),
            other => Err(format!(
                "kubectl {}: {other} {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }

    /// `kubectl patch cronjobfinding NAME -n NS --type=merge -p PATCH`,
    /// with `extra` flags such as `--as=USER` or `--subresource=status`.
    pub fn patch_finding(
        &self,
        ns: &str,
        name: &str,
        patch: &str,
        extra: &[&str],
    ) -> Result<String, String> {
        let mut args = vec!["patch", "cronjobfinding", name, "-n", ns];
        args.extend_from_slice(extra);
        args.extend(["--type=merge", "-p", patch]);
        self.kubectl(&args)
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
        let metrics_port = free_metrics_port();
        let port = free_metrics_port();
        Ctl {
            proc: self.controller(name, metrics_port, port, extra),
            port,
            metrics_port,
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
        if let Some(tail) = self.controller_manager_tail(20) {
            eprintln!("--- kube-controller-manager log (last 20 lines)\n{tail}");
        }
        eprintln!(
            "--- findings\n{}",
            self.kubectl(&["get", "cjf", "-A", "-o", "wide"])
                .unwrap_or_else(|e| e)
        );
        eprintln!(
            "--- baselines\n{}\n{}",
            self.kubectl(&["get", "ccjb"]).unwrap_or_else(|e| e),
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
