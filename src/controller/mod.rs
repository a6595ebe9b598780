//! `cronwarden run`: observe (watches → index) → engine → reconcile (desired
//! vs existing) → publish (SSA + Events). Only observe and publish talk to
//! the API server.

pub mod publish;
pub mod reconcile;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};
use tracing::{Instrument, error, info, info_span, warn};

use crate::api::{CONDITION_ACCEPTED, CronJobBaseline, CronJobFinding};
use crate::cli::RunArgs;
use crate::engine::{CompiledBaseline, CronJobView, Engine, aggregate};
use crate::telemetry::{FindingLabels, Metrics, StateLabel};
use publish::Publisher;
use reconcile::{BaselineChange, FindingAction, plan_baseline, plan_finding};
use state::{Kind, Labels, State};

/// `now`, to the second: what the API server would keep of it anyway.
pub fn now() -> Time {
    let ts = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

/// Everything one reconcile round decided.
#[derive(Default, Debug)]
pub struct Plan {
    pub findings: Vec<FindingAction>,
    pub baselines: Vec<BaselineChange>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty() && self.baselines.is_empty()
    }
}

pub struct Controller {
    pub engine: Engine,
    pub state: Arc<Mutex<State>>,
    pub publisher: Publisher,
    pub args: RunArgs,
    pub metrics: Arc<Metrics>,
}

impl Controller {
    pub fn new(
        client: Client,
        args: RunArgs,
        metrics: Arc<Metrics>,
        instance: String,
    ) -> Result<Self, String> {
        Ok(Controller {
            engine: Engine::new(args.engine.settings())?,
            state: Arc::default(),
            publisher: Publisher::new(client, instance, metrics.clone()),
            args,
            metrics,
        })
    }

    /// Evaluate what is dirty and decide the writes: pure with respect to
    /// the API (it reads only the index).
    pub fn plan(&self, now: &Time) -> Plan {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let dirty = st.take_dirty();
        let mut plan = Plan::default();
        let empty = BTreeMap::new();
        let mut results = Vec::new();
        {
            let st = &*st;
            let ordered: Vec<&CompiledBaseline> = st.baselines.values().map(|(_, c)| c).collect();
            for ns in &dirty {
                if !self.args.watches(ns) {
                    continue;
                }
                let labels = st.namespaces.get(ns).unwrap_or(&empty);
                let cjs: Vec<_> = st
                    .cronjobs
                    .get(ns)
                    .map(|m| m.values().collect())
                    .unwrap_or_default();
                let result = self.engine.evaluate_namespace(ns, labels, &cjs, &ordered);
                let existing = st.findings.get(ns);
                let mut names: BTreeSet<&str> =
                    result.findings.iter().map(|f| f.name.as_str()).collect();
                names.extend(
                    existing
                        .into_iter()
                        .flat_map(|m| m.keys().map(String::as_str)),
                );
                for name in names {
                    // NamespaceResult keeps findings sorted by name.
                    let desired = result
                        .findings
                        .binary_search_by(|f| f.name.as_str().cmp(name))
                        .ok()
                        .map(|i| &result.findings[i]);
                    let have = existing.and_then(|m| m.get(name));
                    if let Some(a) = plan_finding(
                        desired,
                        have,
                        st.cronjob(ns, name),
                        now,
                        self.args.retention,
                        self.args.allow_enforcement,
                    ) {
                        plan.findings.push(a);
                    } else if desired.is_some() {
                        self.metrics.write("finding", "skipped");
                    }
                }
                results.push(result);
            }
        }
        let evaluated = !results.is_empty();
        for r in results {
            st.results.insert(r.namespace.clone(), r);
        }
        if evaluated || std::mem::take(&mut st.baselines_dirty) {
            let ordered: Vec<&CompiledBaseline> = st.baselines.values().map(|(_, c)| c).collect();
            let reports = aggregate(&ordered, st.results.values());
            for r in &reports {
                let key = format!("{}/{}", r.namespace, r.name);
                if let Some((b, _)) = st.baselines.get(&key) {
                    match plan_baseline(r, b, now) {
                        Some(c) => plan.baselines.push(c),
                        None => self.metrics.write("baseline_status", "skipped"),
                    }
                }
            }
            self.update_gauges(&st);
        }
        plan
    }

    fn update_gauges(&self, st: &State) {
        self.metrics.open_findings.clear();
        for r in st.results.values() {
            for f in &r.findings {
                for v in &f.violations {
                    self.metrics
                        .open_findings
                        .get_or_create(&FindingLabels {
                            namespace: f.namespace.clone(),
                            rule: v.rule.as_str().into(),
                            severity: v.severity.as_str().into(),
                        })
                        .inc();
                }
            }
        }
        self.metrics.cronjobs.set(st.cronjob_count() as i64);
        let (mut ok, mut bad) = (0, 0);
        for (b, _) in st.baselines.values() {
            let accepted = b
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_ACCEPTED))
                .is_none_or(|c| c.status == "True");
            if accepted { ok += 1 } else { bad += 1 }
        }
        self.metrics
            .baselines
            .get_or_create(&StateLabel {
                state: "accepted".into(),
            })
            .set(ok);
        self.metrics
            .baselines
            .get_or_create(&StateLabel {
                state: "rejected".into(),
            })
            .set(bad);
    }

    /// Publish a plan with bounded concurrency; what was written goes
    /// straight into the index. Returns the number of failed actions (their
    /// namespaces are marked dirty again).
    pub async fn publish(&self, plan: Plan) -> usize {
        let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        futures::stream::iter(plan.findings)
            .for_each_concurrent(self.args.write_concurrency, |action| {
                let failures = failures.clone();
                async move {
                    let (ns, result) = match &action {
                        FindingAction::Upsert(c) => {
                            let r = self.publisher.finding(c).await;
                            (c.namespace.clone(), r.map(|o| o.map(Ok)))
                        }
                        FindingAction::Delete { namespace, name } => {
                            let r = self.publisher.delete_finding(namespace, name).await;
                            (namespace.clone(), r.map(|_| Some(Err(name.clone()))))
                        }
                    };
                    let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(Some(Ok(obj))) => st.apply_finding(obj),
                        Ok(Some(Err(name))) => {
                            if let Some(m) = st.findings.get_mut(&ns) {
                                m.remove(&name);
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            error!(error = %e, "write failed; will retry");
                            failures.fetch_add(1, Ordering::Relaxed);
                            st.mark(&ns);
                        }
                    }
                }
            })
            .await;
        for change in plan.baselines {
            match self.publisher.baseline(&change).await {
                Ok(Some(obj)) => {
                    let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    st.apply_baseline(&self.engine, obj);
                }
                Ok(None) => {}
                Err(e) => {
                    error!(error = %e, "baseline status write failed; will retry");
                    failures.fetch_add(1, Ordering::Relaxed);
                    self.state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .baselines_dirty = true;
                }
            }
        }
        failures.load(Ordering::Relaxed)
    }

    /// One round: plan then publish.
    pub async fn round(&self) -> usize {
        let start = Instant::now();
        let now = now();
        let plan = self.plan(&now);
        let writes = plan.findings.len() + plan.baselines.len();
        let failures = if plan.is_empty() {
            0
        } else {
            self.publish(plan).await
        };
        self.metrics
            .reconcile_duration
            .observe(start.elapsed().as_secs_f64());
        if writes > 0 {
            info!(
                writes,
                failures,
                elapsed_ms = start.elapsed().as_millis() as u64,
                "reconciled"
            );
        }
        failures
    }
}

/// One kind of watched object and how it updates the index.
pub trait Watched: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static {
    const KIND: Kind;
    /// What the index keeps of an object. Objects are projected as they
    /// arrive, so neither the initial list nor the index holds full objects.
    type Item: Send + 'static;
    fn project(o: Self) -> Self::Item;
    fn apply(st: &mut State, engine: &Engine, item: Self::Item);
    fn delete(st: &mut State, item: &Self::Item);
    fn reset(st: &mut State, engine: &Engine, all: Vec<Self::Item>);
}

impl Watched for CronJob {
    const KIND: Kind = Kind::CronJobs;
    type Item = CronJobView;
    fn project(o: Self) -> CronJobView {
        CronJobView::from(o)
    }
    fn apply(st: &mut State, _: &Engine, v: CronJobView) {
        st.apply_cronjob(v)
    }
    fn delete(st: &mut State, v: &CronJobView) {
        st.delete_cronjob(&v.namespace, &v.name)
    }
    fn reset(st: &mut State, _: &Engine, all: Vec<CronJobView>) {
        st.reset_cronjobs(all)
    }
}

impl Watched for Namespace {
    const KIND: Kind = Kind::Namespaces;
    /// Name and labels: all a namespaceSelector reads.
    type Item = (String, Labels);
    fn project(o: Self) -> (String, Labels) {
        (
            o.metadata.name.unwrap_or_default(),
            o.metadata.labels.unwrap_or_default(),
        )
    }
    fn apply(st: &mut State, _: &Engine, (name, labels): (String, Labels)) {
        st.apply_namespace(name, labels)
    }
    fn delete(st: &mut State, (name, _): &(String, Labels)) {
        st.delete_namespace(name)
    }
    fn reset(st: &mut State, _: &Engine, all: Vec<(String, Labels)>) {
        st.reset_namespaces(all)
    }
}

/// Baselines and findings are kept whole, less their managedFields (the
/// index drops those, whichever way an object arrives).
impl Watched for CronJobBaseline {
    const KIND: Kind = Kind::Baselines;
    type Item = Self;
    fn project(o: Self) -> Self {
        o
    }
    fn apply(st: &mut State, engine: &Engine, o: Self) {
        st.apply_baseline(engine, o)
    }
    fn delete(st: &mut State, o: &Self) {
        st.delete_baseline(o)
    }
    fn reset(st: &mut State, engine: &Engine, all: Vec<Self>) {
        st.reset_baselines(engine, all)
    }
}

impl Watched for CronJobFinding {
    const KIND: Kind = Kind::Findings;
    type Item = Self;
    fn project(o: Self) -> Self {
        o
    }
    fn apply(st: &mut State, _: &Engine, o: Self) {
        st.apply_finding(o)
    }
    fn delete(st: &mut State, o: &Self) {
        st.delete_finding(o)
    }
    fn reset(st: &mut State, _: &Engine, all: Vec<Self>) {
        st.reset_findings(all)
    }
}

/// Feed one watch into the index. The watcher relists on 410 Gone and
/// backs off on errors; a malformed object is logged, never fatal.
pub async fn observe<K: Watched>(api: Api<K>, ctl: Arc<Controller>, notify: Arc<Notify>) {
    let mut stream = watcher::watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .boxed();
    let mut buffer: Vec<K::Item> = Vec::new();
    let project = |o: K| watched(&ctl.args, &o).then(|| K::project(o));
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(o)) => buffer.extend(project(o)),
            Ok(Event::InitDone) => {
                let mut st = ctl.state.lock().unwrap_or_else(|e| e.into_inner());
                K::reset(&mut st, &ctl.engine, std::mem::take(&mut buffer));
                st.set_synced(K::KIND);
                ctl.metrics.ready.store(st.synced(), Ordering::Relaxed);
                info!(kind = ?K::KIND, "watch synced");
            }
            Ok(Event::Apply(o)) => {
                let Some(item) = project(o) else { continue };
                let mut st = ctl.state.lock().unwrap_or_else(|e| e.into_inner());
                K::apply(&mut st, &ctl.engine, item);
            }
            Ok(Event::Delete(o)) => {
                let Some(item) = project(o) else { continue };
                let mut st = ctl.state.lock().unwrap_or_else(|e| e.into_inner());
                K::delete(&mut st, &item);
            }
            Err(e) => {
                warn!(kind = ?K::KIND, error = %e, "watch error; retrying with backoff");
                continue;
            }
        }
        notify.notify_one();
    }
}

fn watched<K: Resource>(args: &RunArgs, o: &K) -> bool {
    o.meta()
        .namespace
        .as_deref()
        .is_none_or(|ns| args.watches(ns))
}

/// Run the controller until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    crate::telemetry::init_logging(args.log_format);
    let client = Client::try_default().await?;
    let metrics = Arc::new(Metrics::default());
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cronwarden".into());
        format!("{host}-{}", std::process::id())
    });
    let ctl = Arc::new(
        Controller::new(
            client.clone(),
            args.clone(),
            metrics.clone(),
            identity.clone(),
        )
        .map_err(anyhow::Error::msg)?,
    );
    info!(
        identity,
        trusted = ?args.engine.trusted_namespaces,
        enforcement = args.allow_enforcement,
        retention_s = args.retention.as_secs(),
        "starting cronwarden controller"
    );

    let listener = tokio::net::TcpListener::bind(args.metrics_addr).await?;
    info!(addr = %args.metrics_addr, "serving /metrics, /healthz, /readyz");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, crate::telemetry::router(metrics)).await {
            error!(error = %e, "metrics server stopped");
        }
    });

    let notify = Arc::new(Notify::new());
    tokio::spawn(observe(
        Api::<CronJob>::all(client.clone()),
        ctl.clone(),
        notify.clone(),
    ));
    tokio::spawn(observe(
        Api::<Namespace>::all(client.clone()),
        ctl.clone(),
        notify.clone(),
    ));
    tokio::spawn(observe(
        Api::<CronJobBaseline>::all(client.clone()),
        ctl.clone(),
        notify.clone(),
    ));
    tokio::spawn(observe(
        Api::<CronJobFinding>::all(client.clone()),
        ctl.clone(),
        notify.clone(),
    ));

    let (leader, lease_task) = crate::lease::elect(client.clone(), &args, identity).await?;
    let result = reconcile_loop(ctl.clone(), leader, notify).await;
    if let Some(task) = lease_task {
        // Dropping the receiver (in reconcile_loop) releases the Lease.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    info!("stopped");
    result
}

async fn reconcile_loop(
    ctl: Arc<Controller>,
    mut leader: watch::Receiver<bool>,
    notify: Arc<Notify>,
) -> anyhow::Result<()> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut was_leader = false;
    let mut retry_after: Option<Duration> = None;
    loop {
        let resync = tokio::time::sleep(retry_after.unwrap_or(ctl.args.resync));
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { info!("interrupt: shutting down"); break; }
            _ = notify.notified() => {}
            _ = resync => {
                ctl.state.lock().unwrap_or_else(|e| e.into_inner()).all_dirty = true;
            }
            r = leader.changed() => {
                if r.is_err() { warn!("leader election stopped"); }
            }
        }
        // Let a burst of watch events land in one round.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let is_leader = *leader.borrow();
        ctl.metrics.leader.set(is_leader as i64);
        if is_leader != was_leader {
            info!(leader = is_leader, "leadership changed");
            if is_leader {
                // Standby caches are warm; re-evaluate everything once.
                ctl.state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .all_dirty = true;
            }
            was_leader = is_leader;
        }
        if !is_leader || !ctl.metrics.ready.load(Ordering::Relaxed) {
            continue;
        }
        let span = info_span!("reconcile");
        let failures = ctl.round().instrument(span).await;
        retry_after = (failures > 0).then(|| Duration::from_secs(2));
    }
    drop(leader);
    Ok(())
}
