//! Metrics (Prometheus text format), health endpoints and structured logs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub namespace: String,
    pub rule: String,
    pub severity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// finding, finding_status, baseline_status, delete, suspend, event
    pub kind: String,
    /// applied | skipped | failed
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuditLabels {
    /// log | webhook
    pub source: String,
    /// received: the event's kind of interest (write, failed, status, dry_run, other);
    /// rejected: malformed | unauthenticated | too_large | not_leader
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// allowed | unauthenticated | forbidden | error
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub error: String,
}

/// Every metric cronwarden exports (SPEC 5).
pub struct Metrics {
    pub registry: Registry,
    pub open_findings: Family<FindingLabels, Gauge>,
    pub cronjobs: Gauge,
    pub jobs: Gauge,
    pub baselines: Family<StateLabel, Gauge>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ErrorLabel, Counter>,
    pub events: Family<ReasonLabel, Counter>,
    pub writes: Family<WriteLabels, Counter>,
    pub leader: Gauge,
    pub power_reviews: Counter,
    pub sars: Family<StateLabel, Counter>,
    pub audit_received: Family<AuditLabels, Counter>,
    pub audit_rejected: Family<AuditLabels, Counter>,
    pub audit_dropped: Counter,
    pub audit_kept: Gauge,
    pub backoff_keys: Gauge,
    pub pending_events: Gauge,
    pub indexed_namespaces: Gauge,
    pub rounds: Counter,
    pub watch_errors: Family<KindLabel, Counter>,
    /// Requests to /metrics by the API server's answer.
    pub metrics_auth: Family<ResultLabel, Counter>,
    pub ready: AtomicBool,
    /// What /healthz judges (SPEC 5.1, 5.3).
    pub health: crate::controller::health::Health,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cronwarden");
        let open_findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "open_findings",
            "Open violations by namespace, rule and severity",
            open_findings.clone(),
        );
        let cronjobs = Gauge::default();
        registry.register(
            "cronjobs_observed",
            "CronJobs in the watch index",
            cronjobs.clone(),
        );
        let jobs = Gauge::default();
        registry.register("jobs_observed", "Jobs in the watch index", jobs.clone());
        let baselines = Family::<StateLabel, Gauge>::default();
        registry.register(
            "baselines",
            "CronJobBaselines by state (accepted, rejected)",
            baselines.clone(),
        );
        let reconcile_duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register(
            "reconcile_duration_seconds",
            "Time to evaluate and publish one reconcile round",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed API writes by status code (or transport), and namespaces that could not be planned (panic, decode)",
            reconcile_errors.clone(),
        );
        let events = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "events_emitted",
            "Kubernetes Events published, by reason",
            events.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "API writes by kind and result (skipped = compared equal, nothing sent)",
            writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let power_reviews = Counter::default();
        registry.register(
            "service_account_reviews",
            "Service accounts reviewed for PowerfulServiceAccount (each is one SubjectAccessReview per permission asked)",
            power_reviews.clone(),
        );
        let sars = Family::<StateLabel, Counter>::default();
        registry.register(
            "subject_access_reviews",
            "SubjectAccessReviews sent, by answer (allowed, denied, error)",
            sars.clone(),
        );
        let audit_received = Family::<AuditLabels, Counter>::default();
        registry.register(
            "audit_events_received",
            "Audit events read, by source and what they were (write, failed, status, dry_run, other)",
            audit_received.clone(),
        );
        let audit_rejected = Family::<AuditLabels, Counter>::default();
        registry.register(
            "audit_events_rejected",
            "Audit input refused, by source and reason (malformed, unauthenticated, too_large)",
            audit_rejected.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_writes_dropped",
            "Audited writes not kept for attribution because the window was full",
            audit_dropped.clone(),
        );
        let audit_kept = Gauge::default();
        registry.register(
            "audit_writes_kept",
            "Audited writes held in the attribution window",
            audit_kept.clone(),
        );
        let backoff_keys = Gauge::default();
        registry.register(
            "backoff_keys",
            "Keys (namespaces) whose writes failed, waiting out their backoff",
            backoff_keys.clone(),
        );
        let pending_events = Gauge::default();
        registry.register(
            "events_pending",
            "Events owed by transitions and not yet written (kept in findings' status.pendingEvents)",
            pending_events.clone(),
        );
        let indexed_namespaces = Gauge::default();
        registry.register(
            "indexed_namespaces",
            "Namespaces the index holds anything of (CronJobs, Jobs, findings, verdicts); a deleted one leaves",
            indexed_namespaces.clone(),
        );
        let rounds = Counter::default();
        registry.register(
            "reconcile_rounds",
            "Reconcile rounds completed by the leader",
            rounds.clone(),
        );
        let watch_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "watch_errors",
            "Watch errors by kind (each is followed by a retry with backoff)",
            watch_errors.clone(),
        );
        let metrics_auth = Family::<ResultLabel, Counter>::default();
        registry.register(
            "metrics_auth",
            "Requests to /metrics by the API server's answer (allowed, unauthenticated, forbidden, error)",
            metrics_auth.clone(),
        );
        Metrics {
            registry,
            metrics_auth,
            backoff_keys,
            pending_events,
            indexed_namespaces,
            rounds,
            watch_errors,
            health: Default::default(),
            power_reviews,
            sars,
            audit_received,
            audit_rejected,
            audit_dropped,
            audit_kept,
            open_findings,
            cronjobs,
            jobs,
            baselines,
            reconcile_duration,
            reconcile_errors,
            events,
            writes,
            leader,
            ready: AtomicBool::new(false),
        }
    }
}

impl Metrics {
    pub fn write(&self, kind: &str, result: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                kind: kind.into(),
                result: result.into(),
            })
            .inc();
    }

    pub fn sar(&self, state: &str) {
        self.sars
            .get_or_create(&StateLabel {
                state: state.into(),
            })
            .inc();
    }

    /// One reconcile error: a failed API write (its HTTP code, or
    /// `transport`) or a namespace that could not be planned (`panic`: its
    /// evaluation panicked; `decode`: a stored finding does not decode).
    pub fn reconcile_error(&self, error: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabel {
                error: error.into(),
            })
            .inc();
    }

    pub fn audit(&self, family: &Family<AuditLabels, Counter>, source: &str, reason: &str) {
        family
            .get_or_create(&AuditLabels {
                source: source.into(),
                reason: reason.into(),
            })
            .inc();
    }

    pub fn metrics_auth(&self, result: &str) {
        self.metrics_auth
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Every metric in OpenMetrics text: what `/metrics` answers a caller
/// allowed to read it.
pub fn metrics_response(m: &Metrics) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

async fn serve_metrics(State(m): State<Arc<Metrics>>) -> Response {
    metrics_response(&m)
}

/// 500 with the reason when a watch has been failing or the reconcile loop
/// has stalled for longer than `--health-stall` (SPEC 5.1).
async fn healthz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    match m.health.check() {
        Ok(()) => (StatusCode::OK, "ok".to_owned()),
        Err(why) => (StatusCode::INTERNAL_SERVER_ERROR, why),
    }
}

async fn readyz(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    if m.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first full list of every watch",
        )
    }
}

/// `/metrics` to anyone over plain HTTP: `--metrics-insecure` only. The
/// protected server is [`crate::controller::metrics_auth`].
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(metrics)
}

/// `/healthz` and `/readyz` over plain HTTP, for the kubelet (`--probe-addr`).
pub fn probe_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr; `RUST_LOG` overrides the level (default info).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
