//! Run: wiring (client, watches, HTTP), leader election and the reconcile
//! loop that drives plan and publish.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};
use tokio::sync::{Notify, watch};
use tracing::{Instrument, info, info_span, warn};

use super::Controller;
use super::observe::observe;
use crate::api::{ClusterCronJobBaseline, CronJobBaseline, CronJobFinding};
use crate::cli::RunArgs;
use crate::telemetry::Metrics;

/// Run the controller until SIGTERM or Ctrl-C.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    crate::telemetry::init_logging(args.log_format);
    let client = Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "no Kubernetes client configuration (in-cluster service account or KUBECONFIG): {e}"
        )
    })?;
    if let Err(why) = super::preflight::check(&client, &args).await {
        anyhow::bail!("{why}");
    }
    let metrics = Arc::new(Metrics::default());
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cronwarden".into());
        format!("{host}-{}", std::process::id())
    });
    let ctl = Arc::new(Controller::new(
        client.clone(),
        args.clone(),
        metrics.clone(),
        identity.clone(),
    )?);
    info!(
        identity,
        enforcement = args.allow_enforcement,
        retention_s = args.retention.as_secs(),
        "starting cronwarden controller"
    );

    // /metrics (HTTPS behind TokenReview + SubjectAccessReview, or plain
    // with --metrics-insecure) and the plain-HTTP probes.
    super::metrics_auth::serve(&args, client.clone(), metrics).await?;

    let notify = Arc::new(Notify::new());
    tokio::spawn(observe(
        Api::<CronJob>::all(client.clone()),
        ctl.clone(),
        notify.clone(),
    ));
    if args.watch_jobs {
        tokio::spawn(observe(
            Api::<Job>::all(client.clone()),
            ctl.clone(),
            notify.clone(),
        ));
    } else {
        ctl.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .without_jobs();
    }
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
        Api::<ClusterCronJobBaseline>::all(client.clone()),
        ctl.clone(),
        notify.clone(),
    ));
    tokio::spawn(observe(
        Api::<CronJobFinding>::all(client.clone()),
        ctl.clone(),
        notify.clone(),
    ));

    if let Some(reviews) = &ctl.reviews {
        super::access::spawn_rbac_watches(&client, reviews);
        let state = ctl.state.clone();
        let notify = notify.clone();
        tokio::spawn(reviews.clone().run(move |ns: &str| {
            state.lock().unwrap_or_else(|e| e.into_inner()).mark(ns);
            notify.notify_one();
        }));
    }
    if let Some(store) = &ctl.actors {
        start_audit_sources(&args, &ctl, store.clone(), notify.clone()).await?;
    }

    let (leader, lease_task) =
        super::lease::elect(client.clone(), &args, identity, ctl.publisher.fence.clone()).await?;
    let result = reconcile_loop(ctl.clone(), leader, notify).await;
    if let Some(task) = lease_task {
        // Dropping the receiver (in reconcile_loop) releases the Lease.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    info!("stopped");
    result
}

/// The log follower and the webhook feed one correlation window; each
/// audited write re-evaluates its namespace (a late actor costs one write,
/// no Event).
async fn start_audit_sources(
    args: &RunArgs,
    ctl: &Arc<Controller>,
    store: Arc<std::sync::Mutex<crate::audit::store::ActorStore>>,
    notify: Arc<Notify>,
) -> anyhow::Result<()> {
    use crate::audit::sink::Sink;
    let state = ctl.state.clone();
    let sink = Arc::new(Sink::new(
        store,
        ctl.metrics.clone(),
        Box::new(move |ns: &str| {
            state.lock().unwrap_or_else(|e| e.into_inner()).mark(ns);
            notify.notify_one();
        }),
    ));
    if let Some(path) = &args.audit.log {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        crate::audit::follow::spawn(path.clone(), sink.clone(), stop)?;
    }
    if args.audit.webhook_addr.is_some() {
        let metrics = ctl.metrics.clone();
        crate::audit::webhook::start(&args.audit, sink.clone(), move || metrics.leader.get() == 1)
            .await?;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            sink.sweep();
        }
    });
    Ok(())
}

async fn reconcile_loop(
    ctl: Arc<Controller>,
    mut leader: watch::Receiver<bool>,
    notify: Arc<Notify>,
) -> anyhow::Result<()> {
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut was_leader = false;
    let mut next_resync = tokio::time::Instant::now() + ctl.args.resync;
    ctl.metrics
        .health
        .set_stall(ctl.args.health_stall.max(ctl.args.resync * 2));
    loop {
        // The next key whose backoff ends, else the resync; a lapsing fence
        // is looked at every second so leadership is reported promptly.
        let due = ctl
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .promote_due(std::time::Instant::now());
        let mut wake = next_resync;
        if let Some(d) = due {
            wake = wake.min(tokio::time::Instant::from_std(d));
        }
        if was_leader {
            wake = wake.min(tokio::time::Instant::now() + Duration::from_secs(1));
        }
        let mut ready_now = false;
        tokio::select! {
            _ = sigterm.recv() => { info!("SIGTERM: shutting down"); break; }
            _ = tokio::signal::ctrl_c() => { info!("interrupt: shutting down"); break; }
            _ = notify.notified() => { ready_now = true; }
            _ = tokio::time::sleep_until(wake) => {}
            r = leader.changed() => {
                if r.is_err() { warn!("leader election stopped"); }
            }
        }
        if tokio::time::Instant::now() >= next_resync {
            next_resync = tokio::time::Instant::now() + ctl.args.resync;
            ctl.state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .all_dirty = true;
        }
        if ready_now {
            // Let the watch events of one API response land in one round;
            // a longer burst batches by itself (events that arrive while a
            // round runs wait for the next one). Every millisecond here is
            // detection latency.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let is_leader = *leader.borrow() && ctl.publisher.fence.allows();
        ctl.metrics.leader.set(is_leader as i64);
        if is_leader != was_leader {
            info!(leader = is_leader, "leadership changed");
            if is_leader {
                // Standby caches are warm; re-evaluate everything once (this
                // also drains Events owed by transitions of the old leader).
                ctl.state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .all_dirty = true;
            }
            was_leader = is_leader;
        }
        if !is_leader || !ctl.metrics.ready.load(Ordering::Relaxed) {
            ctl.metrics.health.beat();
            continue;
        }
        let span = info_span!("reconcile");
        ctl.round().instrument(span).await;
        ctl.metrics.health.beat();
        // Keys a round left dirty (its plan was full, see ROUND_ACTIONS)
        // are taken up at once, not at the next event or resync.
        if !ctl
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dirty
            .is_empty()
        {
            notify.notify_one();
        }
    }
    drop(leader);
    Ok(())
}
