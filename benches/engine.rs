//! Engine benchmarks (`make bench`): a full evaluation of 10k CronJobs in
//! 100 namespaces against 1,000 baseline entries, scaling over 1k/10k/100k,
//! `scan` of a 10k-CronJob YAML file end to end, and the template hash of
//! one pod template.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use cronwarden::engine::normalize::template_hash as template_hash_of;
use cronwarden::engine::{CronJobView, Engine, Inventory, Settings};
use cronwarden::synthetic::{self, Spec};
use k8s_openapi::api::batch::v1::CronJob;

/// mimalloc, as the binary uses: glibc's allocator tripled the evaluation
/// time here (5.2 → 15.2 ms for 10,000 CronJobs).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn inventory(cronjobs: usize) -> Inventory {
    let spec = Spec {
        cronjobs,
        namespaces: 100,
        entries: 1000,
    };
    Inventory {
        cronjobs: synthetic::cronjobs(&spec)
            .into_iter()
            .map(|v| CronJobView::from(serde_json::from_value::<CronJob>(v).unwrap()))
            .collect(),
        baselines: synthetic::baselines(&spec),
        cluster_baselines: Vec::new(),
        namespaces: Default::default(),
        jobs: Vec::new(),
        rbac: Default::default(),
    }
}

fn evaluate(c: &mut Criterion) {
    let engine = Engine::new(Settings::default()).unwrap();
    let mut group = c.benchmark_group("evaluate");
    group.measurement_time(Duration::from_secs(8));
    for n in [1_000usize, 10_000, 100_000] {
        let inv = inventory(n);
        if n == 100_000 {
            group.sample_size(10);
        }
        let compiled: Vec<_> = inv.baselines.iter().map(|b| engine.compile(b)).collect();
        let refs: Vec<&CronJobView> = inv.cronjobs.iter().collect();
        // Warm the schedule-interval memo, as a running controller has it.
        let findings = engine.evaluate(&inv).findings.len();
        eprintln!("{n} CronJobs x 1000 entries: {findings} findings");
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("compiled", n), &n, |b, _| {
            b.iter(|| black_box(engine.evaluate_compiled(&refs, &compiled, &inv.namespaces)))
        });
        group.bench_with_input(BenchmarkId::new("with_baseline_compile", n), &n, |b, _| {
            b.iter(|| black_box(engine.evaluate(&inv)))
        });
    }
    group.finish();
}

/// The cluster tier's cost per CronJob (SPEC 2.2): 10k CronJobs, their
/// team baselines, and a platform baseline whose `*` guardrail, 20
/// namePattern and 20 selector entries every CronJob is matched against
/// (each CronJob matches the `*` and some of the others, so each carries
/// guardrails whose images and raises are checked).
fn cluster_tier(c: &mut Criterion) {
    let engine = Engine::new(Settings::default()).unwrap();
    let mut group = c.benchmark_group("evaluate/cluster_tier");
    group.measurement_time(Duration::from_secs(8));
    let mut inv = inventory(10_000);
    let mut entries = vec![serde_json::json!({
        "namePattern": "*",
        "images": ["registry.example.com/*"],
        "minInterval": "5m",
        "severityOverrides": {"MutableImageReference": "medium"},
    })];
    for i in 0..20 {
        entries.push(serde_json::json!({"namePattern": format!("job-00{i:02}*"), "images": ["registry.example.com/*"]}));
        entries.push(serde_json::json!({
            "selector": {"matchLabels": {"app": format!("app-{i}")}},
            "waive": ["HistoryErasure"],
        }));
    }
    inv.cluster_baselines = vec![
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cronwarden.io/v1alpha1",
            "kind": "ClusterCronJobBaseline",
            "metadata": {"name": "platform"},
            "spec": {"approved": entries},
        }))
        .unwrap(),
    ];
    let compiled = engine.compile_inventory(&inv);
    let refs: Vec<&CronJobView> = inv.cronjobs.iter().collect();
    let findings = engine.evaluate(&inv).findings.len();
    eprintln!("10000 CronJobs x 1000 team entries + 41 cluster entries: {findings} findings");
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("compiled/10000", |b| {
        b.iter(|| black_box(engine.evaluate_compiled(&refs, &compiled, &inv.namespaces)))
    });
    group.finish();
}

fn scan_file(c: &mut Criterion) {
    let spec = Spec {
        cronjobs: 10_000,
        namespaces: 100,
        entries: 1000,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inventory.yaml");
    std::fs::write(&path, synthetic::manifests_yaml(&spec)).unwrap();
    let engine = Engine::new(Settings::default()).unwrap();
    let mut group = c.benchmark_group("scan");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("file_10k_cronjobs", |b| {
        b.iter(|| {
            let r = cronwarden::scan::scan_paths(&engine, std::slice::from_ref(&path), &[]);
            assert!(r.errors.is_empty());
            black_box(r.evaluation.findings.len())
        })
    });
    group.finish();
}

/// The smallest gap, computed from the fields (uncached): a schedule that
/// never fires, one that fires every fourth year, and a dense one.
fn schedule_min_interval(c: &mut Criterion) {
    let mut group = c.benchmark_group("schedule/min_interval");
    for (name, s) in [
        ("never_0_0_30_2", "0 0 30 2 *"),
        ("feb29_0_0_29_2", "0 0 29 2 *"),
        ("every5m", "*/5 * * * *"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| cronwarden::engine::normalize::min_interval(black_box(s)))
        });
    }
    group.finish();
}

/// The template hash runs once per CronJob on arrival: the pod template of
/// the plain fixture and of the rich one (every projected field set).
fn template_hash(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize/template_hash");
    for (name, text) in [
        (
            "plain",
            include_str!("../tests/fixtures/cronjob-as-served.yaml"),
        ),
        (
            "rich",
            include_str!("../tests/fixtures/cronjob-rich-as-served.yaml"),
        ),
    ] {
        let cj: CronJob = serde_saphyr::from_str(text).unwrap();
        let pod = cj.spec.job_template.spec.and_then(|j| j.template.spec);
        group.bench_function(name, |b| {
            b.iter(|| black_box(template_hash_of(black_box(pod.as_ref()))))
        });
    }
    group.finish();
}

/// `cronwarden audit` over a log shaped like a busy cluster's: the captured
/// `mixed.jsonl` (Metadata-level noise of every kind, a few batch writes at
/// RequestResponse) repeated to 64 MiB, read from memory. The figure is
/// bytes per second through prefilter, parse, classify and evaluation.
fn audit_log(c: &mut Criterion) {
    use cronwarden::audit::offline::Auditor;
    use cronwarden::manifest::Loaded;
    let mixed = include_bytes!("../tests/fixtures/audit/mixed.jsonl");
    let mut log = Vec::with_capacity(64 << 20);
    while log.len() < 64 << 20 {
        log.extend_from_slice(mixed);
    }
    let engine = Engine::new(Settings::default()).unwrap();
    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(log.len() as u64));
    group.bench_function("log_64MiB_mixed", |b| {
        b.iter(|| {
            let mut a = Auditor::new(&engine, Loaded::default());
            a.read("bench", &log[..]).unwrap();
            black_box(a.report.counts.writes)
        })
    });
    // The webhook's work per batch: parse an EventList of the captured
    // writes and keep them in the correlation window.
    let batch = include_bytes!("../tests/fixtures/audit/webhook-batch-2.json");
    let events = cronwarden::audit::parse_line(batch).unwrap().len() as u64;
    let store = std::sync::Arc::new(std::sync::Mutex::new(
        cronwarden::audit::store::ActorStore::default(),
    ));
    let sink = cronwarden::audit::sink::Sink::new(
        store,
        std::sync::Arc::new(cronwarden::telemetry::Metrics::default()),
        Box::new(|_| {}),
    );
    group.throughput(Throughput::Elements(events));
    group.bench_function("webhook_batch", |b| {
        b.iter(|| {
            sink.events(
                "webhook",
                cronwarden::audit::parse_line(black_box(batch)).unwrap(),
            )
        })
    });
    group.finish();
}

/// The controller's findings index keeps each finding deflated and decodes
/// a namespace's findings when it plans it: the cost per finding, both
/// ways, for the bundled samples' largest finding (5 violations).
fn stored_finding(c: &mut Criterion) {
    use cronwarden::api::CronJobFinding;
    use cronwarden::controller::observe::index::{Keyed, StoredFinding};
    let list: serde_json::Value =
        serde_json::from_str(include_str!("../tests/golden/samples.json")).unwrap();
    let finding: CronJobFinding = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "CronJobFinding")
        .max_by_key(|o| o["status"]["violations"].as_array().map_or(0, Vec::len))
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .unwrap();
    let mut group = c.benchmark_group("index/finding");
    group.bench_function("deflate", |b| {
        b.iter(|| black_box(StoredFinding::encode(black_box(finding.clone()))))
    });
    let k = Keyed::from(finding.clone());
    group.bench_function("inflate", |b| {
        b.iter(|| black_box(k.stored.decode(&k.namespace, &k.name).unwrap()))
    });
    group.finish();
}

criterion_group!(
    benches,
    stored_finding,
    evaluate,
    cluster_tier,
    scan_file,
    schedule_min_interval,
    template_hash,
    audit_log
);
criterion_main!(benches);
