//! `cronwarden run`, in four stages, one module each:
//! 1. [`observe`]: watches feed the in-memory index ([`observe::index`]).
//! 2. [`plan`]: the engine evaluates what is dirty; desired findings are
//!    compared with existing ones and the writes and Events decided (pure).
//! 3. [`publish`]: the only writer: server-side apply, Events.
//! 4. [`run`]: wiring, leader election ([`lease`]), HTTP endpoints and the
//!    reconcile loop.
//!
//! Only observe and publish talk to the API server.

pub mod access;
pub mod health;
pub mod lease;
pub mod metrics_auth;
pub mod observe;
pub mod plan;
pub mod preflight;
pub mod publish;
pub mod run;

pub use run::run;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use tracing::info;

use crate::audit::store::ActorStore;
use crate::cli::RunArgs;
use crate::engine::Engine;
use crate::error::SettingsError;
use crate::telemetry::Metrics;
use observe::index::State;
use publish::Publisher;

/// `now`, to the second: what the API server would keep of it anyway.
pub fn now() -> Time {
    let ts = k8s_openapi::jiff::Timestamp::now();
    Time(k8s_openapi::jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts))
}

/// The controller: settings, the index, and the one writer.
pub struct Controller {
    pub engine: Engine,
    pub state: Arc<Mutex<State>>,
    pub publisher: Publisher,
    pub args: RunArgs,
    pub metrics: Arc<Metrics>,
    /// Answers about service accounts; None with --check-service-accounts=false.
    pub reviews: Option<Arc<access::Reviews>>,
    /// The audit correlation window; None without an audit source.
    pub actors: Option<Arc<Mutex<ActorStore>>>,
}

impl Controller {
    pub fn new(
        client: Client,
        args: RunArgs,
        metrics: Arc<Metrics>,
        instance: String,
    ) -> Result<Self, SettingsError> {
        let reviews = args.check_service_accounts.then(|| {
            Arc::new(access::Reviews::new(
                client.clone(),
                args.power_ttl,
                args.sar_qps,
                metrics.clone(),
            ))
        });
        let mut engine = Engine::new(args.engine.settings())?;
        if let Some(r) = &reviews {
            engine = engine.with_powers(r.clone());
        }
        Ok(Controller {
            engine,
            reviews,
            state: Arc::default(),
            publisher: Publisher {
                enforcement: Arc::new(publish::RateCap::per_minute(args.enforcement_rate)),
                fence: Arc::new(if args.leader_election {
                    lease::Fence::closed()
                } else {
                    lease::Fence::open()
                }),
                ..Publisher::new(client, instance, metrics.clone())
            },
            actors: args.audit.enabled().then(|| {
                Arc::new(Mutex::new(ActorStore::new(
                    args.audit.writes_per_object,
                    args.audit.window,
                    100_000,
                )))
            }),
            args,
            metrics,
        })
    }

    /// One round: plan (on a blocking thread: evaluation is CPU work and
    /// the index lock is never held across an await), then publish, then
    /// the per-key bookkeeping: keys whose writes failed back off, the
    /// others forget their failures. Returns the number of failed keys.
    pub async fn round(self: &Arc<Self>) -> usize {
        let start = Instant::now();
        let now = now();
        let ctl = self.clone();
        let mut plan = match tokio::task::spawn_blocking(move || ctl.plan(&now)).await {
            Ok(plan) => plan,
            Err(e) => {
                // A panic outside any one namespace's evaluation (those are
                // caught per namespace in `plan`): every key is evaluated again.
                tracing::error!(error = %e, "evaluation panicked; re-evaluating everything");
                self.state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .all_dirty = true;
                return 1;
            }
        };
        let writes = plan.findings.len() + plan.baselines.len();
        let evaluated = plan.evaluated.clone();
        let had_baselines = !plan.baselines.is_empty();
        let unplanned = std::mem::take(&mut plan.failed);
        let mut failed = if plan.is_empty() {
            publish::Failed::default()
        } else {
            self.publish(plan).await
        };
        failed.namespaces.extend(unplanned);
        {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let at = Instant::now();
            for ns in &evaluated {
                if failed.namespaces.contains(ns) {
                    st.failed(ns, at, self.args.retry_max);
                } else {
                    st.succeeded(ns);
                }
            }
            if failed.baselines {
                st.baselines_failed(at, self.args.retry_max);
            } else if had_baselines {
                st.baselines_backoff = None;
            }
            self.metrics.backoff_keys.set(st.backoff.len() as i64);
        }
        self.metrics.rounds.inc();
        self.metrics
            .reconcile_duration
            .observe(start.elapsed().as_secs_f64());
        if writes > 0 {
            info!(
                writes,
                failed_keys = failed.count(),
                elapsed_ms = start.elapsed().as_millis() as u64,
                "reconciled"
            );
        }
        failed.count()
    }
}
