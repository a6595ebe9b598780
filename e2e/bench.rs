//! `make bench-e2e`: measurements against a real API server, printed as a
//! table for the README. Not a timed test: it fails only when something
//! never happens, never because a figure is slow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::harness::{Cluster, metric};
use crate::support::{baseline_yaml, create_all, cronjob_yaml, wait};
use cronwarden::api::{CronJobBaseline, CronJobFinding, FindingState};
use cronwarden::engine::{CronJobView, Engine, Inventory, Settings};
use cronwarden::synthetic::{self, Spec};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds (user + system) used so far by the processes named `comm`
/// (the controller, kube-apiserver, etcd of this run: nothing else here
/// runs them).
fn cpu_seconds(comm: &str) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|stat| {
            let (head, tail) = stat.rsplit_once(')')?;
            (head.split_once('(')?.1 == comm).then_some(())?;
            let f: Vec<&str> = tail.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / tick)
        })
        .sum()
}

/// CPU used by the controller, kube-apiserver and etcd between two
/// `cpu_now()` readings.
fn cpu_now() -> [f64; 3] {
    ["cronwarden", "kube-apiserver", "etcd"].map(cpu_seconds)
}

fn cpu_used(before: [f64; 3]) -> String {
    let now = cpu_now();
    format!(
        "controller {:.1} s, kube-apiserver {:.1} s, etcd {:.1} s",
        now[0] - before[0],
        now[1] - before[1],
        now[2] - before[2]
    )
}

/// kube-apiserver's `apiserver_request_total`, summed by verb, resource
/// and subresource.
async fn api_requests(c: &Cluster) -> HashMap<String, f64> {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = c.client.request_text(req).await.unwrap_or_default();
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |k: &str| {
            labels
                .split(&format!("{k}=\""))
                .nth(1)
                .and_then(|r| r.split('"').next())
                .unwrap_or("")
                .to_owned()
        };
        let key = format!(
            "{} {}{}",
            label("verb"),
            label("resource"),
            match label("subresource") {
                s if s.is_empty() => String::new(),
                s => format!("/{s}"),
            }
        );
        *out.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// The busiest kinds of request since `before`.
async fn api_requests_since(c: &Cluster, before: &HashMap<String, f64>) -> String {
    let now = api_requests(c).await;
    let mut d: Vec<(String, f64)> = now
        .into_iter()
        .map(|(k, v)| {
            let b = before.get(&k).copied().unwrap_or(0.0);
            (k, v - b)
        })
        .filter(|(_, v)| *v > 0.0)
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = d.iter().map(|(_, v)| v).sum();
    let top: Vec<String> = d.iter().take(5).map(|(k, v)| format!("{k} {v}")).collect();
    format!("{total} in all; {}", top.join(", "))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `make bench-e2e`: detection latency and behaviour at scale.
pub async fn bench(c: &Cluster) -> i32 {
    match run(c).await {
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

async fn run(c: &Cluster) -> Result<(), String> {
    let mut report = Vec::<(String, String)>::new();
    // E2E_BENCH=latency or =scale runs one half.
    let only = std::env::var("E2E_BENCH").unwrap_or_default();
    if only != "scale" {
        latency(c, &mut report).await?;
    }
    if only != "latency" {
        scale(c, &mut report).await?;
    }
    println!("\n| measurement | result |\n|---|---|");
    for (k, v) in &report {
        println!("| {k} | {v} |");
    }
    Ok(())
}

/// Open findings seen through a watch, by `namespace/name`: when each was
/// first seen open with a rule, and its rules now. A watch, not polling
/// lists: listing thousands of findings every 150 ms would cost the API
/// server more than the controller's writes do.
type Seen = Arc<Mutex<HashMap<String, (Instant, String)>>>;

fn watch_findings(api: Api<CronJobFinding>) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let seen_w = seen.clone();
    let watch = tokio::spawn(async move {
        let mut s = watcher::watcher(api, watcher::Config::default()).boxed();
        while let Ok(Some(ev)) = s.try_next().await {
            let (f, deleted) = match ev {
                watcher::Event::Apply(f) | watcher::Event::InitApply(f) => (f, false),
                watcher::Event::Delete(f) => (f, true),
                _ => continue,
            };
            let key = format!("{}/{}", f.namespace().unwrap_or_default(), f.name_any());
            let rules = f
                .status
                .as_ref()
                .filter(|s| s.state == FindingState::Open && !s.rules.is_empty())
                .map(|s| s.rules.clone());
            let mut seen = seen_w.lock().unwrap();
            match rules {
                Some(rules) if !deleted => {
                    seen.entry(key)
                        .or_insert_with(|| (Instant::now(), String::new()))
                        .1 = rules;
                }
                _ => {
                    seen.remove(&key);
                }
            }
        }
    });
    (seen, watch)
}

fn violating_cronjob(ns: &str, name: &str) -> CronJob {
    serde_saphyr::from_str(&cronjob_yaml(
        ns,
        name,
        "0 3 * * *",
        "registry.example.com/x:1",
        "",
    ))
    .unwrap()
}

/// Create a violating CronJob; when the create returned.
async fn create_timed(cronjobs: &Api<CronJob>, ns: &str, name: &str) -> Result<Instant, String> {
    cronjobs
        .create(&PostParams::default(), &violating_cronjob(ns, name))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Instant::now())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn percentiles(report: &mut Vec<(String, String)>, what: &str, lat: &[Duration], goal: &str) {
    report.push((
        format!("detection latency, {what}: p50 / p99 / max (goal p99 {goal})"),
        format!(
            "{} / {} / {}",
            ms(percentile(lat, 50.0)),
            ms(percentile(lat, 99.0)),
            ms(*lat.last().unwrap())
        ),
    ));
}

fn latencies(ns: &str, created: &HashMap<String, Instant>, seen: &Seen) -> Vec<Duration> {
    let seen = seen.lock().unwrap();
    let mut lat: Vec<Duration> = created
        .iter()
        .map(|(n, t)| seen[&format!("{ns}/{n}")].0.duration_since(*t))
        .collect();
    lat.sort();
    lat
}

/// Detection latency from outside: create returned → the finding, with its
/// rule, seen through a watch. Isolated: one CronJob at a time on a quiet
/// cluster (the floor: one watch delivery, one evaluation, the writes).
/// Burst: 1,000 created at once, 32 requests in flight.
async fn latency(c: &Cluster, report: &mut Vec<(String, String)>) -> Result<(), String> {
    let ctl = c.start_controller("bench-latency", &[]);
    ctl.ready().await?;
    for ns in ["bench-latency", "bench-burst"] {
        c.namespace(ns)?;
        c.apply(&baseline_yaml(ns, "team", "    - name: nothing-approved\n"))?;
    }
    let ns = "bench-latency";
    let (seen, watch) = watch_findings(Api::namespaced(c.client.clone(), ns));
    tokio::time::sleep(Duration::from_millis(500)).await; // let the watch start
    let cronjobs: Api<CronJob> = Api::namespaced(c.client.clone(), ns);
    // Warm-up: the first detection after start-up is slower (reported on
    // its own, not a sample).
    let t = create_timed(&cronjobs, ns, "latency-warmup").await?;
    let key = format!("{ns}/latency-warmup");
    wait(&key, Duration::from_secs(60), || async {
        seen.lock().unwrap().get(&key).map(|(at, _)| *at)
    })
    .await
    .map(|at| {
        report.push((
            "detection latency, the first CronJob after ready (warm-up)".into(),
            ms(at.duration_since(t)),
        ))
    })?;
    let mut created = HashMap::new();
    for i in 0..30 {
        let name = format!("latency-{i:03}");
        // Quiet: the previous finding's writes and their echoes are done.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t = create_timed(&cronjobs, ns, &name).await?;
        created.insert(name.clone(), t);
        let key = format!("{ns}/{name}");
        wait(&name, Duration::from_secs(30), || async {
            seen.lock().unwrap().contains_key(&key).then_some(())
        })
        .await?;
    }
    watch.abort();
    let lat = latencies(ns, &created, &seen);
    percentiles(
        report,
        "isolated (30 CronJobs, one at a time)",
        &lat,
        "≤ 20 ms",
    );

    let ns = "bench-burst";
    let (seen, watch) = watch_findings(Api::namespaced(c.client.clone(), ns));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let cronjobs: Api<CronJob> = Api::namespaced(c.client.clone(), ns);
    let results: Vec<Result<(), String>> = futures::stream::iter(0..1000)
        .map(|i| {
            let (cronjobs, created) = (cronjobs.clone(), created.clone());
            async move {
                let name = format!("burst-{i:04}");
                let t = create_timed(&cronjobs, ns, &name).await?;
                created.lock().unwrap().insert(name, t);
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, String>>()?;
    wait("1,000 findings", Duration::from_secs(300), || async {
        (seen.lock().unwrap().len() >= 1000).then_some(())
    })
    .await?;
    watch.abort();
    let lat = latencies(ns, &created.lock().unwrap(), &seen);
    percentiles(
        report,
        "burst (1,000 CronJobs created 32 at a time)",
        &lat,
        "≤ 250 ms",
    );
    drop(ctl);
    Ok(())
}

async fn scale(c: &Cluster, report: &mut Vec<(String, String)>) -> Result<(), String> {
    let spec = Spec {
        // E2E_CRONJOBS=100000 for the 100k run (with E2E_JOBS_PER_CRONJOB=0).
        cronjobs: std::env::var("E2E_CRONJOBS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
        namespaces: 100,
        entries: 1000,
    };
    let start = Instant::now();
    let nss: Api<Namespace> = Api::all(c.client.clone());
    for i in 0..spec.namespaces {
        let labels = if i < 10 {
            json!({"bench-group": "a"})
        } else {
            json!({})
        };
        let ns: Namespace = serde_json::from_value(
            json!({"metadata": {"name": format!("team-{i:03}"), "labels": labels}}),
        )
        .unwrap();
        nss.create(&PostParams::default(), &ns)
            .await
            .map_err(|e| e.to_string())?;
    }
    let baselines = synthetic::baselines(&spec);
    for b in &baselines {
        let api: Api<CronJobBaseline> =
            Api::namespaced(c.client.clone(), b.metadata.namespace.as_deref().unwrap());
        let mut b = b.clone();
        b.metadata.generation = None;
        api.create(&PostParams::default(), &b)
            .await
            .map_err(|e| e.to_string())?;
    }
    // The baseline edit below changes this one; it governs 10 namespaces.
    let wide = |pattern: &str| {
        format!(
            "apiVersion: cronwarden.io/v1alpha1\nkind: ClusterCronJobBaseline\nmetadata: {{name: bench-wide}}\nspec:\n  namespaceSelector: {{matchLabels: {{bench-group: a}}}}\n  approved:\n    - namePattern: \"{pattern}\"\n      schedules: [\"7 7 7 7 *\"]\n"
        )
    };
    c.apply(&wide("zzz-*"))?;
    let values = synthetic::cronjobs(&spec);
    let client = c.client.clone();
    let cronjobs: Vec<CronJob> = values
        .iter()
        .map(|v| {
            let mut cj: CronJob = serde_json::from_value(v.clone()).unwrap();
            cj.metadata.uid = None;
            cj
        })
        .collect();
    create_all(&client, cronjobs)
        .await
        .map_err(|e| format!("creating CronJobs: {e}"))?;
    println!(
        "bench: created {} CronJobs, 100 baselines in {:.0}s",
        spec.cronjobs,
        start.elapsed().as_secs_f64()
    );
    // Three Jobs of each CronJob, as its controller would have made them
    // (its template, a controller ownerReference with its uid), suspended
    // so kube-controller-manager's job controller starts no pods.
    let start_jobs = Instant::now();
    let jobs_per_cronjob = std::env::var("E2E_JOBS_PER_CRONJOB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3usize);
    let all_cronjobs = Api::<CronJob>::all(c.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .filter(|cj| cj.namespace().is_some_and(|n| n.starts_with("team-")))
        .collect::<Vec<_>>();
    let jobs: Vec<serde_json::Value> = all_cronjobs
        .iter()
        .flat_map(|cj| {
            (0..jobs_per_cronjob).map(move |n| {
                let mut spec = serde_json::to_value(&cj.spec.job_template.spec).unwrap();
                spec["suspend"] = json!(true);
                json!({
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {
                        "name": format!("{}-{}", cj.name_any(), 29000000 + n),
                        "namespace": cj.namespace(),
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob",
                            "name": cj.name_any(), "uid": cj.uid(), "controller": true,
                            "blockOwnerDeletion": true}],
                    },
                    "spec": spec,
                })
            })
        })
        .collect();
    let job_count = jobs.len();
    let jobs: Vec<k8s_openapi::api::batch::v1::Job> = jobs
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    create_all(&client, jobs)
        .await
        .map_err(|e| format!("creating Jobs: {e}"))?;
    println!(
        "bench: created {job_count} Jobs in {:.0}s",
        start_jobs.elapsed().as_secs_f64()
    );

    // What the engine says the controller must write, offline.
    let mut inventory = Inventory {
        cronjobs: values
            .iter()
            .map(|v| CronJobView::from(serde_json::from_value::<CronJob>(v.clone()).unwrap()))
            .collect(),
        baselines,
        cluster_baselines: vec![serde_saphyr::from_str(&wide("zzz-*")).unwrap()],
        jobs: Vec::new(),
        rbac: Default::default(),
        namespaces: (0..spec.namespaces)
            .map(|i| {
                (
                    format!("team-{i:03}"),
                    if i < 10 {
                        [("bench-group".to_owned(), "a".to_owned())].into()
                    } else {
                        Default::default()
                    },
                )
            })
            .collect(),
    };
    let engine = Engine::new(Settings::default()).unwrap();
    let expected = engine.evaluate(&inventory).findings.len();

    let (seen, watch) = watch_findings(Api::all(c.client.clone()));
    let t0 = Instant::now();
    let cpu0 = cpu_now();
    let req0 = api_requests(c).await;
    let ctl = c.start_controller("bench-scale", &[]);
    wait("/readyz", Duration::from_secs(300), || async {
        crate::harness::http_get(ctl.port, "/readyz").await
    })
    .await?;
    let ready = t0.elapsed();
    let hwm_ready = rss_kib(ctl.proc.child.id(), "VmHWM:");
    let team_findings = |pred: fn(&str, &str) -> bool| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(k, (_, rules))| k.starts_with("team-") && pred(k, rules))
            .count()
    };
    wait(
        &format!("{expected} findings written"),
        Duration::from_secs(600),
        || async { (team_findings(|_, _| true) >= expected).then_some(()) },
    )
    .await?;
    let all_written = t0.elapsed();
    report.push((
        format!(
            "scale: {} CronJobs / 100 namespaces / 1,000 entries: time to ready",
            spec.cronjobs
        ),
        format!("{:.1} s", ready.as_secs_f64()),
    ));
    report.push((
        format!("scale: time until all {expected} findings are written"),
        format!("{:.1} s", all_written.as_secs_f64()),
    ));
    let hwm_written = rss_kib(ctl.proc.child.id(), "VmHWM:");
    report.push((
        "scale: CPU from start until all findings are written".into(),
        cpu_used(cpu0),
    ));
    report.push((
        "scale: API requests from start until all findings are written (all clients)".into(),
        api_requests_since(c, &req0).await,
    ));

    // Every service account's SubjectAccessReviews are done (rate-limited
    // by --sar-qps, in the background: a CronJob with no other violation
    // may still run with a powerful account).
    let accounts: std::collections::BTreeSet<(String, String)> = inventory
        .cronjobs
        .iter()
        .filter_map(|c| Some((c.namespace.clone(), c.pod.as_ref()?.service_account.clone())))
        .collect();
    wait(
        "every service account reviewed",
        Duration::from_secs(600),
        || async {
            let m = ctl.metrics().await;
            (metric(&m, "cronwarden_service_account_reviews_total", "") >= accounts.len() as f64)
                .then_some(())
        },
    )
    .await?;
    report.push((
        format!(
            "scale: time until all {} service accounts are reviewed (--sar-qps 500)",
            accounts.len()
        ),
        format!("{:.1} s", t0.elapsed().as_secs_f64()),
    ));
    // Steady state begins once two full rounds in a row wrote nothing (the
    // baseline statuses follow the findings).
    let applied = || async {
        metric(
            &ctl.metrics().await,
            "cronwarden_writes_total",
            "result=\"applied\"",
        )
    };
    let settle_start = Instant::now();
    loop {
        let w = applied().await;
        ctl.settle(2).await?;
        if applied().await == w {
            break;
        }
        if settle_start.elapsed() > Duration::from_secs(300) {
            return Err("the controller never stopped writing".into());
        }
    }
    report.push((
        "scale: time until the controller stops writing (steady state)".into(),
        format!("{:.1} s", t0.elapsed().as_secs_f64()),
    ));
    let steady = std::env::var("E2E_STEADY_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300u64);
    let before_m = ctl.metrics().await;
    let before = metric(&before_m, "cronwarden_writes_total", "result=\"applied\"");
    let rounds_before = ctl.rounds().await;
    tokio::time::sleep(Duration::from_secs(steady)).await;
    let m = ctl.metrics().await;
    let writes = metric(&m, "cronwarden_writes_total", "result=\"applied\"") - before;
    let rounds = ctl.rounds().await - rounds_before;
    report.push((format!("scale: writes at steady state over {steady} s ({rounds} reconcile rounds, full re-evaluation every 2 s)"), format!("{writes}")));
    report.push((
        "scale: controller RSS at steady state (VmRSS)".into(),
        mib(rss_kib(ctl.proc.child.id(), "VmRSS:")),
    ));

    // The edit: the wide baseline's pattern now matches every CronJob of
    // its 10 namespaces that no exact name entry claims.
    inventory.cluster_baselines = vec![serde_saphyr::from_str(&wide("*")).unwrap()];
    let want: usize = engine
        .evaluate(&inventory)
        .findings
        .iter()
        .filter(|f| {
            f.violations
                .iter()
                .any(|v| v.rule.as_str() == "ScheduleNotApproved")
        })
        .count();
    let affected = inventory
        .cronjobs
        .iter()
        .filter(|c| c.namespace.as_str() < "team-010")
        .count();
    let t1 = Instant::now();
    let cpu1 = cpu_now();
    let req1 = api_requests(c).await;
    c.apply(&wide("*"))?;
    wait(
        &format!("{want} ScheduleNotApproved findings"),
        Duration::from_secs(300),
        || async {
            let n = team_findings(|_, rules| rules.contains("ScheduleNotApproved"));
            (n >= want).then_some(())
        },
    )
    .await?;
    report.push((
        format!(
            "scale: baseline edit over {affected} CronJobs ({want} new violations) fully reflected"
        ),
        format!("{:.1} s", t1.elapsed().as_secs_f64()),
    ));
    report.push(("scale: CPU during the baseline edit".into(), cpu_used(cpu1)));
    report.push((
        "scale: API requests during the baseline edit (all clients)".into(),
        api_requests_since(c, &req1).await,
    ));
    report.push((
        "scale: controller peak RSS (VmHWM) once ready (initial lists indexed)".into(),
        mib(hwm_ready),
    ));
    report.push((
        "scale: controller peak RSS (VmHWM) once all findings are written".into(),
        mib(hwm_written),
    ));
    report.push((
        "scale: controller peak RSS (VmHWM), whole run".into(),
        mib(rss_kib(ctl.proc.child.id(), "VmHWM:")),
    ));
    let m = ctl.metrics().await;
    report.push((
        format!(
            "scale: Jobs indexed ({job_count} created, {jobs_per_cronjob} per CronJob, all covered)"
        ),
        format!(
            "{} Jobs, {} job findings",
            metric(&m, "cronwarden_jobs_observed", ""),
            team_findings(|k, _| k.contains("/job."))
        ),
    ));
    report.push((
        format!(
            "scale: service-account reviews / SubjectAccessReviews, {} distinct service accounts, whole run (RBAC unchanged)",
            accounts.len()
        ),
        format!(
            "{} / {}",
            metric(&m, "cronwarden_service_account_reviews_total", ""),
            metric(&m, "cronwarden_subject_access_reviews_total", "")
        ),
    ));
    watch.abort();
    Ok(())
}
