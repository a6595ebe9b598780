//! The only place that writes: server-side apply with field manager
//! `cronwarden` (status through the status subresource), Events through
//! kube-runtime's recorder, retries with backoff on 409/429/5xx.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::CronJob;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;
use std::sync::atomic::Ordering;

use futures::StreamExt;
use tracing::{debug, error, warn};

use super::observe::index::StoredBaseline;
use super::plan::{BaselineChange, EventSpec, FindingAction, FindingChange, Plan};
use crate::api::{
    ANNOTATION_SUSPENDED_BY, API_VERSION, ClusterCronJobBaseline, CronJobBaseline, CronJobFinding,
    FIELD_MANAGER, REPORTING_CONTROLLER, reasons,
};
use crate::engine::Tier;
use crate::engine::governance::CLUSTER_KIND;
use crate::telemetry::{ErrorLabel, Metrics, ReasonLabel};

use crate::error::{ControllerError, retryable};

#[derive(Clone)]
pub struct Publisher {
    pub client: Client,
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub attempts: u32,
    pub backoff: Duration,
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
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.attempts && retryable(&e) => {
                    debug!(action, object, attempt, error = %e, "retrying");
                    self.metrics
                        .reconcile_errors
                        .get_or_create(&ErrorLabel {
                            error: error_label(&e),
                        })
                        .inc();
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                Err(source) => {
                    self.metrics
                        .reconcile_errors
                        .get_or_create(&ErrorLabel {
                            error: error_label(&source),
                        })
                        .inc();
                    return Err(ControllerError::Api {
                        action,
                        object: object.into(),
                        source,
                    });
                }
            }
        }
    }

    /// Apply one finding change; returns the object as the server has it now.
    pub async fn finding(
        &self,
        change: &FindingChange,
    ) -> Result<Option<CronJobFinding>, ControllerError> {
        let api: Api<CronJobFinding> = Api::namespaced(self.client.clone(), &change.namespace);
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let object = format!("CronJobFinding {}/{}", change.namespace, change.name);
        let mut latest = None;
        if let Some((labels, subject)) = &change.meta {
            let body = json!({
                "apiVersion": API_VERSION,
                "kind": "CronJobFinding",
                "metadata": {"name": change.name, "namespace": change.namespace, "labels": labels},
                "spec": {"subject": subject},
            });
            let patch = Patch::Apply(&body);
            let o = self
                .retry("apply", &object, || api.patch(&change.name, &pp, &patch))
                .await?;
            self.metrics.write("finding", "applied");
            latest = Some(o);
        }
        if let Some(status) = &change.status {
            let body = json!({
                "apiVersion": API_VERSION,
                "kind": "CronJobFinding",
                "metadata": {"name": change.name, "namespace": change.namespace},
                "status": status,
            });
            let patch = Patch::Apply(&body);
            let o = self
                .retry("apply status", &object, || {
                    api.patch_status(&change.name, &pp, &patch)
                })
                .await?;
            self.metrics.write("finding_status", "applied");
            latest = Some(o);
        }
        if let Some(baseline) = &change.suspend {
            self.suspend(&change.namespace, &change.name, baseline)
                .await?;
        }
        let uid = latest.as_ref().and_then(|o| o.metadata.uid.clone());
        for ev in &change.events {
            let mut ev = ev.clone();
            if let (Some(r), Some(uid)) = (ev.related.as_mut(), &uid) {
                r.uid = Some(uid.clone());
            }
            self.event(&ev).await?;
        }
        Ok(latest)
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
        let mut metadata = json!({"name": change.name});
        if change.tier == Tier::Namespace {
            metadata["namespace"] = json!(change.namespace);
        }
        let body = json!({
            "apiVersion": API_VERSION,
            "kind": kind,
            "metadata": metadata,
            "status": change.status,
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
        for ev in &change.events {
            self.event(ev).await?;
        }
        Ok(Some(o))
    }

    /// SPEC 6: set `spec.suspend: true`, annotate, emit CronJobSuspended.
    /// Never deletes, never un-suspends.
    async fn suspend(
        &self,
        namespace: &str,
        name: &str,
        baseline: &str,
    ) -> Result<(), ControllerError> {
        let api: Api<CronJob> = Api::namespaced(self.client.clone(), namespace);
        let body = json!({
            "metadata": {"annotations": {ANNOTATION_SUSPENDED_BY: baseline}},
            "spec": {"suspend": true},
        });
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let object = format!("CronJob {namespace}/{name}");
        let patch = Patch::Merge(&body);
        let cj = self
            .retry("suspend", &object, || api.patch(name, &pp, &patch))
            .await?;
        self.metrics.write("suspend", "applied");
        warn!(namespace, name, baseline, "suspended CronJob");
        self.event(&EventSpec {
            type_: EventType::Warning,
            reason: reasons::CRONJOB_SUSPENDED.into(),
            action: "Suspended".into(),
            note: format!("[high] CronJob {namespace}/{name} suspended by cronwarden: enforcement of baseline {baseline}"),
            regarding: super::plan::cronjob_ref(namespace, name, cj.metadata.uid.as_deref()),
            related: None,
        })
        .await
    }

    /// A new Recorder per Event: its cache would fold a repeat of the same
    /// reason within minutes into a series on the old Event, which exporters
    /// ignore (SPEC 4). We publish only on transitions, so each is new.
    pub async fn event(&self, ev: &EventSpec) -> Result<(), ControllerError> {
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let event = Event {
            type_: ev.type_,
            reason: ev.reason.clone(),
            note: Some(ev.note.clone()),
            action: ev.action.clone(),
            secondary: ev.related.clone(),
        };
        let object = format!(
            "Event {} for {}/{}",
            ev.reason,
            ev.regarding.namespace.as_deref().unwrap_or(""),
            ev.regarding.name.as_deref().unwrap_or("")
        );
        self.retry("create", &object, || {
            recorder.publish(&event, &ev.regarding)
        })
        .await?;
        self.metrics
            .events
            .get_or_create(&ReasonLabel {
                reason: ev.reason.clone(),
            })
            .inc();
        Ok(())
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
}
