//! Observe: one watch per kind feeds the in-memory index; nothing else
//! reads the API server.

pub mod index;
mod stored;

use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tracing::{info, warn};

use super::Controller;
use crate::api::{ClusterCronJobBaseline, CronJobBaseline, CronJobFinding};
use crate::cli::RunArgs;
use crate::engine::jobs::JobView;
use crate::engine::{CronJobView, Engine, Tier};
use index::{JobItem, Keyed, Kind, Labels, State, StoredBaseline};

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
    /// A watch whose first list must be indexed before this one starts.
    const AFTER: Option<Kind> = None;
    /// Shrink an item as it arrives, given the index (locked only by the
    /// kinds that need it).
    fn compact(_st: &Mutex<State>, item: Self::Item) -> Self::Item {
        item
    }
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

/// Jobs, projected (SPEC 3.6); a covered one later keeps only its lineage.
impl Watched for Job {
    const KIND: Kind = Kind::Jobs;
    const AFTER: Option<Kind> = Some(Kind::CronJobs);
    type Item = JobItem;
    fn compact(st: &Mutex<State>, v: JobItem) -> JobItem {
        match v {
            JobItem::View(v) => st.lock().unwrap_or_else(|e| e.into_inner()).compact_job(v),
            covered => covered,
        }
    }
    fn project(o: Self) -> JobItem {
        JobItem::View(JobView::from(o))
    }
    fn apply(st: &mut State, _: &Engine, v: JobItem) {
        st.apply_job(v)
    }
    fn delete(st: &mut State, v: &JobItem) {
        st.delete_job(v.namespace(), v.name())
    }
    fn reset(st: &mut State, _: &Engine, all: Vec<JobItem>) {
        st.reset_jobs(all)
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
macro_rules! watched_baseline {
    ($kind:ty, $sync:ident, $tier:ident) => {
        impl Watched for $kind {
            const KIND: Kind = Kind::$sync;
            type Item = Self;
            fn project(o: Self) -> Self {
                o
            }
            fn apply(st: &mut State, engine: &Engine, o: Self) {
                st.apply_baseline(engine, o)
            }
            fn delete(st: &mut State, o: &Self) {
                st.delete_baseline(o.clone())
            }
            fn reset(st: &mut State, engine: &Engine, all: Vec<Self>) {
                let all = all.into_iter().map(StoredBaseline::from).collect();
                st.reset_baselines(engine, Tier::$tier, all)
            }
        }
    };
}

watched_baseline!(CronJobBaseline, Baselines, Namespace);
watched_baseline!(ClusterCronJobBaseline, ClusterBaselines, Cluster);

impl Watched for CronJobFinding {
    const KIND: Kind = Kind::Findings;
    /// Deflated as it arrives: neither the initial list nor the index
    /// holds decoded findings.
    type Item = Keyed;
    fn project(o: Self) -> Keyed {
        Keyed::from(o)
    }
    fn apply(st: &mut State, _: &Engine, o: Keyed) {
        st.apply_finding(o)
    }
    fn delete(st: &mut State, o: &Keyed) {
        st.delete_finding(o)
    }
    fn reset(st: &mut State, _: &Engine, all: Vec<Keyed>) {
        st.reset_findings(all)
    }
}

/// How every watch of the controller lists: the initial list (and a relist
/// after 410 Gone) is most-recent and paginated, 100 objects a page. The
/// API server ignores `limit` for a list at resourceVersion 0 (its cache
/// answers with everything at once), so a cluster's 30,000 Jobs would be
/// one response, whole in memory. A most-recent list is served from the
/// cache too (ConsistentListFromCache), page by page. A page is held
/// decoded as full k8s-openapi objects (managedFields included) until each
/// is projected (several KB each with their managedFields), so a smaller
/// page lowers the peak, for 100 requests per 10,000 objects instead of 20.
pub const LIST_PAGE: u32 = 100;

pub fn list_config() -> watcher::Config {
    watcher::Config::default().page_size(LIST_PAGE)
}

/// Feed one watch into the index. The watcher relists on 410 Gone and
/// backs off on errors; a malformed object is logged, never fatal.
pub async fn observe<K: Watched>(api: Api<K>, ctl: Arc<Controller>, notify: Arc<Notify>) {
    if let Some(after) = K::AFTER {
        while !ctl
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_synced(after)
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    let mut stream = watcher::watcher(api, list_config())
        .default_backoff()
        .boxed();
    let mut buffer: Vec<K::Item> = Vec::new();
    let project = |o: K| watched(&ctl.args, &o).then(|| K::compact(&ctl.state, K::project(o)));
    let kind = K::KIND.as_str();
    while let Some(ev) = stream.next().await {
        if ev.is_ok() {
            ctl.metrics.health.watch_ok(kind);
        }
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
                warn!(kind, error = %e, "watch error; retrying with backoff");
                ctl.metrics.health.watch_error(kind);
                ctl.metrics
                    .watch_errors
                    .get_or_create(&crate::telemetry::KindLabel { kind: kind.into() })
                    .inc();
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
