//! The only place that writes: server-side apply with field manager
//! `cronwarden` (status through the status subresource), Events through
//! kube-runtime's recorder, retries with backoff on 409/429/5xx.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{EventType, Reporter};
use kube::{Api, Client};
use serde_json::json;

use futures::StreamExt;
use tracing::{debug, error, warn};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;

use super::lease::Fence;
use super::observe::index::StoredBaseline;
use super::plan::{
    BaselineChange, EventSpec, FindingAction, FindingChange, Plan, Suspension, event_name,
};
use crate::api::{
    ANNOTATION_SUSPENDED_BY, API_VERSION, ClusterCronJobBaseline, CronJobBaseline, CronJobFinding,
    FIELD_MANAGER, PendingEvent, REPORTING_CONTROLLER, reasons,
};
use crate::engine::Tier;
use crate::engine::governance::CLUSTER_KIND;
use crate::telemetry::{Metrics, ReasonLabel};

use crate::error::{ControllerError, retryable};

#[derive(Clone)]
pub struct Publisher {
    pub client: Client,
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub attempts: u32,
    pub backoff: Duration,
    /// Whether this replica may write now (leader fencing, SPEC 5.1).
    pub fence: Arc<Fence>,
    /// Suspensions allowed per minute (SPEC 6).
    pub enforcement: Arc<RateCap>,
}

/// What a finding change left on the server: the object as last written,
/// and the first error (its key is retried with backoff).
#[derive(Default)]
pub struct Written {
    pub latest: Option<CronJobFinding>,
    pub error: Option<ControllerError>,
}

/// A token bucket: `per_minute` actions, refilled continuously, with a
/// burst of the same size.
pub struct RateCap {
    per_minute: f64,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl RateCap {
    pub fn per_minute(n: u32) -> Self {
        RateCap {
            per_minute: f64::from(n),
            state: std::sync::Mutex::new((f64::from(n), std::time::Instant::now())),
        }
    }

    pub fn try_take(&self) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        let refill = now.duration_since(st.1).as_secs_f64() * self.per_minute / 60.0;
        st.0 = (st.0 + refill).min(self.per_minute);
        st.1 = now;
        if st.0 >= 1.0 {
            st.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Publisher {
    pub fn new(client: Client, instance: String, metrics: Arc<Metrics>) -> Self {
        Publisher {
            client,
            reporter: Reporter {
                controller: REPORTING_CONTROLLER.into(),
                instance: Some(instance),
            },
            metrics,
            attempts: 5,
            backoff: Duration::from_millis(100),
            fence: Arc::new(Fence::open()),
            enforcement: Arc::new(RateCap::per_minute(10)),
        }
    }

    /// Refuse to write once this replica's Lease may have lapsed.
    fn fenced(&self, action: &'static str, object: &str) -> Result<(), ControllerError> {
        if self.fence.allows() {
            Ok(())
        } else {
            self.metrics.write("fenced", "refused");
            Err(ControllerError::NotLeading {
                action,
                object: object.into(),
            })
        }
    }

    async fn retry<T, F, Fut>(
        &self,
        action: &'static str,
        object: &str,
        mut call: F,
    ) -> Result<T, ControllerError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = self.backoff;
        let mut attempt = 1;
        loop {
            self.fenced(action, object)?;
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.attempts && retryable(&e) => {
                    debug!(action, object, attempt, error = %e, "retrying");
                    self.metrics.reconcile_error(&error_label(&e));
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(source) => {
                    self.metrics.reconcile_error(&error_label(&source));
                    return Err(ControllerError::Api {
                        action,
                        object: object.into(),
                        source,
                    });
                }
            }
        }
    }

    /// Apply one finding change (SPEC 4, 5.1, 6), in the order that loses
    /// no Event and duplicates none:
    /// 1. labels and `spec.subject` (creates the finding);
    /// 2. the suspension, when enforcement asks for it;
    /// 3. the Events owed: earlier ones from `status.pendingEvents`, then
    ///    this change's, each under a name fixed by the transition, so an
    ///    Event that exists already (409) counts as written;
    /// 4. the status, with the Events that could not be written kept in
    ///    `pendingEvents` for the next attempt.
    ///
    /// A finding whose Events all go through costs one or two requests
    /// plus one per Event; the status lands even when Events are refused.
    pub async fn finding(&self, change: &FindingChange) -> Written {
        let mut out = Written::default();
        let api: Api<CronJobFinding> = Api::namespaced(self.client.clone(), &change.namespace);
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let object = format!("CronJobFinding {}/{}", change.namespace, change.name);
        let mut uid = change.uid.clone();
        if let Some((labels, subject)) = &change.meta {
            let body = json!({
                "apiVersion": API_VERSION,
                "kind": "CronJobFinding",
                "metadata": {"name": change.name, "namespace": change.namespace, "labels": labels},
                "spec": {"subject": subject},
            });
            let patch = Patch::Apply(&body);
            match self
                .retry("apply", &object, || api.patch(&change.name, &pp, &patch))
                .await
            {
                Ok(o) => {
                    self.metrics.write("finding", "applied");
                    uid = o.metadata.uid.clone();
                    out.latest = Some(o);
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        let Some(status) = &change.status else {
            return out;
        };
        let uid = uid.unwrap_or_default();
        let related = ObjectReference {
            api_version: Some(API_VERSION.into()),
            kind: Some("CronJobFinding".into()),
            namespace: Some(change.namespace.clone()),
            name: Some(change.name.clone()),
            uid: (!uid.is_empty()).then(|| uid.clone()),
            ..Default::default()
        };
        let subject = change
            .meta
            .as_ref()
            .map(|(_, s)| s.clone())
            .or_else(|| out.latest.as_ref().map(|f| f.spec.subject.clone()));
        let mut owed: Vec<PendingEvent> = status.pending_events.clone();
        let mut fresh: Vec<EventSpec> = change.events.clone();
        if let Some(s) = &change.suspend {
            match self.suspend(&change.namespace, &change.name, s).await {
                Ok(()) => fresh.push(EventSpec {
                    type_: EventType::Warning,
                    reason: reasons::CRONJOB_SUSPENDED.into(),
                    action: "Suspended".into(),
                    note: format!(
                        "[high] CronJob {}/{} suspended by cronwarden: enforcement of baseline {}",
                        change.namespace, change.name, s.baseline
                    ),
                    regarding: super::plan::cronjob_ref(
                        &change.namespace,
                        &change.name,
                        Some(&s.uid),
                    ),
                    related: None,
                }),
                Err(e) => out.error = Some(e),
            }
        }
        owed.extend(
            fresh
                .iter()
                .map(|ev| pending(ev, &change.name, &uid, &change.fingerprint)),
        );
        let mut undelivered = Vec::new();
        for p in owed {
            let regarding = match &subject {
                Some(s) => ObjectReference {
                    uid: p.regarding_uid.clone().or_else(|| s.uid.clone()),
                    ..super::plan::subject_ref(s)
                },
                None => super::plan::cronjob_ref(
                    &change.namespace,
                    &change.name,
                    p.regarding_uid.as_deref(),
                ),
            };
            if let Err(e) = self.deliver(&p, regarding, Some(related.clone())).await {
                warn!(event = p.name, reason = p.reason, error = %e, "Event not written; kept in the finding's status for the next attempt");
                out.error.get_or_insert(e);
                undelivered.push(p);
            }
        }
        let mut status = status.clone();
        let cleared = status.pending_events != undelivered;
        status.pending_events = undelivered;
        self.metrics
            .pending_events
            .set(status.pending_events.len() as i64);
        debug!(
            finding = %object,
            meta = change.meta.is_some(),
            status = change.write_status,
            events = fresh.len(),
            cleared,
            "writing finding"
        );
        if change.write_status || cleared {
            let body = json!({
                "apiVersion": API_VERSION,
                "kind": "CronJobFinding",
                "metadata": {"name": change.name, "namespace": change.namespace},
                "status": status,
            });
            let patch = Patch::Apply(&body);
            match self
                .retry("apply status", &object, || {
                    api.patch_status(&change.name, &pp, &patch)
                })
                .await
            {
                Ok(o) => {
                    self.metrics.write("finding_status", "applied");
                    out.latest = Some(o);
                }
                Err(e) => {
                    out.error = Some(e);
                }
            }
        }
        out
    }

    pub async fn delete_finding(&self, namespace: &str, name: &str) -> Result<(), ControllerError> {
        let api: Api<CronJobFinding> = Api::namespaced(self.client.clone(), namespace);
        let object = format!("CronJobFinding {namespace}/{name}");
        let dp = DeleteParams::default();
        let r = self
            .retry("delete", &object, || api.delete(name, &dp))
            .await;
        match r {
            Ok(_) => {
                self.metrics.write("delete", "applied");
                Ok(())
            }
            // Already gone is what we wanted.
            Err(ControllerError::Api {
                source: kube::Error::Api(s),
                ..
            }) if s.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A baseline's status, after its Events (named by the transition, as
    /// for findings); those refused stay owed in its `pendingEvents`.
    pub async fn baseline(
        &self,
        change: &BaselineChange,
    ) -> Result<Option<StoredBaseline>, ControllerError> {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let (kind, object) = match change.tier {
            Tier::Cluster => (CLUSTER_KIND, format!("{CLUSTER_KIND} {}", change.name)),
            Tier::Namespace => (
                "CronJobBaseline",
                format!("CronJobBaseline {}/{}", change.namespace, change.name),
            ),
        };
        let mut owed = change.status.pending_events.clone();
        owed.extend(
            change
                .events
                .iter()
                .map(|ev| pending(ev, &change.name, &change.uid, &change.fingerprint)),
        );
        let mut undelivered = Vec::new();
        let mut error = None;
        for p in owed {
            let regarding = ObjectReference {
                uid: p.regarding_uid.clone(),
                ..change.regarding.clone()
            };
            if let Err(e) = self.deliver(&p, regarding, None).await {
                warn!(event = p.name, reason = p.reason, error = %e, "Event not written; kept in the baseline's status for the next attempt");
                error.get_or_insert(e);
                undelivered.push(p);
            }
        }
        let cleared = change.status.pending_events != undelivered;
        let mut status = change.status.clone();
        status.pending_events = undelivered;
        if !change.write_status && !cleared {
            return error.map_or(Ok(None), Err);
        }
        let mut metadata = json!({"name": change.name});
        if change.tier == Tier::Namespace {
            metadata["namespace"] = json!(change.namespace);
        }
        let body = json!({
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": metadata,
            "status": status,
        });
        let patch = Patch::Apply(&body);
        let o: StoredBaseline = match change.tier {
            Tier::Cluster => {
                let api: Api<ClusterCronJobBaseline> = Api::all(self.client.clone());
                self.retry("apply status", &object, || {
                    api.patch_status(&change.name, &pp, &patch)
                })
                .await?
                .into()
            }
            Tier::Namespace => {
                let api: Api<CronJobBaseline> =
                    Api::namespaced(self.client.clone(), &change.namespace);
                self.retry("apply status", &object, || {
                    api.patch_status(&change.name, &pp, &patch)
                })
                .await?
                .into()
            }
        };
        self.metrics.write("baseline_status", "applied");
        error.map_or(Ok(Some(o)), Err)
    }

    /// SPEC 6: set `spec.suspend: true` and annotate, only on the CronJob
    /// as it was evaluated: the patch carries its uid and resourceVersion
    /// as preconditions, so one changed since is left alone (409) and
    /// evaluated again. Rate-capped; never deletes, never un-suspends.
    async fn suspend(
        &self,
        namespace: &str,
        name: &str,
        s: &Suspension,
    ) -> Result<(), ControllerError> {
        let object = format!("CronJob {namespace}/{name}");
        if !self.enforcement.try_take() {
            return Err(ControllerError::RateCapped { object });
        }
        let api: Api<CronJob> = Api::namespaced(self.client.clone(), namespace);
        let body = suspension_patch(s);
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patch = Patch::Merge(&body);
        self.fenced("suspend", &object)?;
        // No retry: a conflict means the CronJob changed since it was
        // evaluated; the next evaluation decides again.
        match api.patch(name, &pp, &patch).await {
            Ok(_) => {
                self.metrics.write("suspend", "applied");
                warn!(namespace, name, baseline = s.baseline, "suspended CronJob");
                Ok(())
            }
            Err(source) => {
                self.metrics.write("suspend", "failed");
                Err(ControllerError::Api {
                    action: "suspend",
                    object,
                    source,
                })
            }
        }
    }

    /// Write one owed Event under its fixed name; one that exists already
    /// was written before (a crash, a lost response, another leader).
    async fn deliver(
        &self,
        p: &PendingEvent,
        regarding: ObjectReference,
        related: Option<ObjectReference>,
    ) -> Result<(), ControllerError> {
        // A cluster-scoped object's Events live in `default`, as the
        // recorder puts them.
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(p.name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(p.action.clone()),
            reason: Some(p.reason.clone()),
            note: Some(p.note.clone()),
            type_: Some(p.type_.clone()),
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            regarding: Some(regarding),
            related,
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: self.reporter.instance.clone(),
            ..Default::default()
        };
        let object = format!("Event {namespace}/{} ({})", p.name, p.reason);
        let pp = PostParams::default();
        self.retry("create", &object, || async {
            match api.create(&pp, &event).await {
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    self.metrics.write("event", "existed");
                    Ok(false)
                }
                r => r.map(|_| true),
            }
        })
        .await
        .map(|created| {
            if created {
                self.metrics.write("event", "applied");
                self.metrics
                    .events
                    .get_or_create(&ReasonLabel {
                        reason: p.reason.clone(),
                    })
                    .inc();
            }
        })
    }
}

/// The Event a transition owes, named by the object it concerns, that
/// object's uid and the status the transition starts from.
fn pending(ev: &EventSpec, object: &str, uid: &str, fingerprint: &str) -> PendingEvent {
    PendingEvent {
        name: event_name(object, uid, fingerprint, &ev.reason),
        type_: match ev.type_ {
            EventType::Warning => "Warning".into(),
            EventType::Normal => "Normal".into(),
        },
        reason: ev.reason.clone(),
        action: ev.action.clone(),
        note: ev.note.clone(),
        regarding_uid: ev.regarding.uid.clone(),
    }
}

fn error_label(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.code.to_string(),
        _ => "transport".into(),
    }
}

impl super::Controller {
    /// Publish a plan with bounded concurrency; what was written goes
    /// straight into the index. Returns the namespaces where some action
    /// failed (each retried with its own backoff) and whether a baseline
    /// status write failed.
    pub async fn publish(&self, plan: Plan) -> Failed {
        let failed = std::sync::Mutex::new(Failed::default());
        futures::stream::iter(plan.findings)
            .for_each_concurrent(self.args.write_concurrency, |action| {
                let failed = &failed;
                async move {
                    let (ns, written, removed, error) = match &action {
                        FindingAction::Upsert(c) => {
                            let w = self.publisher.finding(c).await;
                            (c.namespace.clone(), w.latest, None, w.error)
                        }
                        FindingAction::Delete { namespace, name } => {
                            match self.publisher.delete_finding(namespace, name).await {
                                Ok(()) => (namespace.clone(), None, Some(name.clone()), None),
                                Err(e) => (namespace.clone(), None, None, Some(e)),
                            }
                        }
                    };
                    let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(obj) = written {
                        st.apply_finding(obj);
                    }
                    if let Some(name) = removed
                        && let Some(m) = st.findings.get_mut(&ns)
                    {
                        m.remove(&name);
                    }
                    drop(st);
                    if let Some(e) = error {
                        log_failure(&e);
                        failed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .namespaces
                            .insert(ns);
                    }
                }
            })
            .await;
        let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
        for change in plan.baselines {
            match self.publisher.baseline(&change).await {
                Ok(Some(obj)) => {
                    let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    st.apply_baseline(&self.engine, obj);
                }
                Ok(None) => {}
                Err(e) => {
                    log_failure(&e);
                    failed.baselines = true;
                }
            }
        }
        failed
    }
}

/// The merge patch that suspends a CronJob: `metadata.uid` and
/// `metadata.resourceVersion` in the body are preconditions the API server
/// checks (409 Conflict when the object is not the one evaluated).
pub fn suspension_patch(s: &Suspension) -> serde_json::Value {
    json!({
        "metadata": {
            "uid": s.uid,
            "resourceVersion": s.resource_version,
            "annotations": {ANNOTATION_SUSPENDED_BY: s.baseline},
        },
        "spec": {"suspend": true},
    })
}

/// Where a round's writes failed.
#[derive(Default, Debug)]
pub struct Failed {
    pub namespaces: std::collections::BTreeSet<String>,
    pub baselines: bool,
}

impl Failed {
    pub fn count(&self) -> usize {
        self.namespaces.len() + usize::from(self.baselines)
    }
}

fn log_failure(e: &ControllerError) {
    match e {
        ControllerError::NotLeading { .. } | ControllerError::RateCapped { .. } => {
            warn!(error = %e, "write deferred")
        }
        _ if e.is_retryable() => warn!(error = %e, "write failed; will retry with backoff"),
        _ => {
            error!(error = %e, "write refused; will retry with backoff (a refusal that persists needs an operator: RBAC, admission, schema)")
        }
    }
}
