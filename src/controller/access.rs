//! What service accounts may do, asked of the cluster's own authorizer
//! (SPEC 3.7): one review per service account is a SubjectAccessReview per
//! dangerous permission of [`CHECKS`] (31; a namespaced one granted is asked
//! again cluster-wide, to say where), `*` on `*` first and alone when
//! allowed.
//!
//! - Answers are cached per service account for `--power-ttl` (10 min) and
//!   marked stale when any Role, ClusterRole or binding changes (watched,
//!   metadata only). A stale or expired answer is still served until the
//!   new one arrives, so a finding never flaps while the cluster is asked.
//! - Reviews are rate-limited (`--sar-qps`); a service account seen for the
//!   first time is Pending, and its namespace is re-evaluated once answered.
//! - A failed review keeps the last answer; with none, the finding says the
//!   power could not be evaluated (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::PostParams;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::engine::power::{Answer, CHECKS, Check, Power, PowerSource};
use crate::telemetry::Metrics;

type Key = (String, String);

struct Entry {
    answer: Answer,
    answered: Option<Instant>,
    /// RBAC changed since it was answered.
    stale: bool,
    /// Reviews that failed in a row, and when to ask again after one.
    failures: u32,
    retry_at: Option<Instant>,
}

/// A first review that fails is asked again (after 0.5, 1, 2, 4, 8, 16 s:
/// about 30 s in all) before the finding says the power could not be
/// evaluated: an API server restart is not a reason to raise it.
const ATTEMPTS_BEFORE_FAILED: u32 = 6;

pub struct Reviews {
    client: Client,
    ttl: Duration,
    interval: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
    wake: Notify,
    metrics: Arc<Metrics>,
}

impl Reviews {
    pub fn new(client: Client, ttl: Duration, qps: f64, metrics: Arc<Metrics>) -> Reviews {
        Reviews {
            client,
            ttl,
            interval: Duration::from_secs_f64(1.0 / qps.max(0.1)),
            entries: Mutex::default(),
            wake: Notify::new(),
            metrics,
        }
    }

    fn due(&self, e: &Entry, now: Instant) -> bool {
        if let Some(at) = e.retry_at {
            return now >= at;
        }
        e.stale || e.answered.is_none_or(|t| now.duration_since(t) >= self.ttl)
    }

    /// Mark every answer stale: RBAC changed.
    pub fn invalidate(&self) {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for e in m.values_mut() {
            e.stale = true;
        }
        drop(m);
        self.wake.notify_one();
    }

    /// Ask the authorizer about what is due, at the rate allowed; `answered`
    /// is told each namespace whose answer arrived or changed.
    pub async fn run(self: Arc<Self>, answered: impl Fn(&str) + Send + Sync) {
        loop {
            let due: Vec<Key> = {
                let now = Instant::now();
                let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                m.iter()
                    .filter(|(_, e)| self.due(e, now))
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            if due.is_empty() {
                let now = Instant::now();
                let next_retry = {
                    let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                    m.values()
                        .filter_map(|e| e.retry_at)
                        .min()
                        .map(|at| at.saturating_duration_since(now))
                };
                let sleep = next_retry
                    .unwrap_or(Duration::from_secs(30))
                    .min(Duration::from_secs(30));
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(sleep) => {}
                }
                continue;
            }
            for (ns, sa) in due {
                let result = self.review(&ns, &sa).await;
                let changed = {
                    let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
                    let e = m.entry((ns.clone(), sa.clone())).or_insert(Entry {
                        answer: Answer::Pending,
                        answered: None,
                        stale: false,
                        failures: 0,
                        retry_at: None,
                    });
                    let new = match result {
                        Ok(p) => {
                            e.failures = 0;
                            e.retry_at = None;
                            Answer::Known(p)
                        }
                        Err(why) => {
                            e.failures += 1;
                            e.retry_at = Some(
                                Instant::now() + Duration::from_secs(1 << e.failures.min(5)) / 2,
                            );
                            match &e.answer {
                                // Keep what was known: no flapping on an API blip.
                                Answer::Known(_) => e.answer.clone(),
                                Answer::Pending if e.failures < ATTEMPTS_BEFORE_FAILED => {
                                    Answer::Pending
                                }
                                _ => Answer::Failed(why),
                            }
                        }
                    };
                    let changed = new != e.answer;
                    e.answer = new;
                    e.answered = Some(Instant::now());
                    e.stale = false;
                    changed
                };
                self.metrics.power_reviews.inc();
                if changed {
                    answered(&ns);
                }
            }
        }
    }

    /// One review: what `sa` of `ns` may do of [`CHECKS`].
    pub async fn review(&self, ns: &str, sa: &str) -> Result<Power, String> {
        let mut p = Power::default();
        for c in CHECKS {
            // What is allowed cluster-wide is allowed in the namespace too:
            // a namespaced permission is asked there first, and cluster-wide
            // only when granted, to say where. A powerless account costs
            // one review per permission.
            if c.cluster_scoped || c.verb == "*" {
                if self.allowed(ns, sa, c, None).await? {
                    p.cluster.push(*c);
                    if c.verb == "*" {
                        break;
                    }
                }
            } else if self.allowed(ns, sa, c, Some(ns)).await? {
                if self.allowed(ns, sa, c, None).await? {
                    p.cluster.push(*c);
                } else {
                    p.namespace.push(*c);
                }
            }
        }
        debug!(namespace = ns, service_account = sa, power = %p.describe(ns), "reviewed");
        Ok(p)
    }

    async fn allowed(
        &self,
        ns: &str,
        sa: &str,
        c: &Check,
        namespace: Option<&str>,
    ) -> Result<bool, String> {
        tokio::time::sleep(self.interval).await;
        let sar = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{ns}:{sa}")),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                    "system:authenticated".into(),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(c.verb.into()),
                    group: Some(c.group.into()),
                    resource: Some(c.resource.into()),
                    subresource: (!c.subresource.is_empty()).then(|| c.subresource.into()),
                    namespace: namespace.map(str::to_owned),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        match api.create(&PostParams::default(), &sar).await {
            Ok(r) => {
                let allowed = r.status.is_some_and(|s| s.allowed);
                self.metrics.sar(if allowed { "allowed" } else { "denied" });
                Ok(allowed)
            }
            Err(e) => {
                self.metrics.sar("error");
                Err(format!("SubjectAccessReview failed: {e}"))
            }
        }
    }
}

impl Reviews {
    /// Not answered yet (a restart, a service account seen for the first time).
    pub fn is_pending(&self, namespace: &str, service_account: &str) -> bool {
        let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&(namespace.to_owned(), service_account.to_owned()))
            .is_none_or(|e| e.answer == Answer::Pending)
    }
}

impl PowerSource for Reviews {
    fn power(&self, namespace: &str, service_account: &str) -> Answer {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_owned(), service_account.to_owned());
        if let Some(e) = m.get(&key) {
            return e.answer.clone();
        }
        m.insert(
            key,
            Entry {
                answer: Answer::Pending,
                answered: None,
                stale: false,
                failures: 0,
                retry_at: None,
            },
        );
        drop(m);
        self.wake.notify_one();
        Answer::Pending
    }

    fn label(&self) -> &'static str {
        "SubjectAccessReview"
    }
}

/// Watch one RBAC kind (metadata only); any change after the first list
/// makes every answer stale.
pub async fn watch_rbac<K>(client: Client, reviews: Arc<Reviews>)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Send + Sync + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let mut stream = watcher::watcher(api, super::observe::list_config())
        .default_backoff()
        .boxed();
    let mut synced = false;
    while let Some(ev) = stream.next().await {
        match ev {
            // A relist may have missed changes: stale too.
            Ok(Event::InitDone) => {
                if synced {
                    reviews.invalidate();
                }
                synced = true;
            }
            Ok(Event::Apply(_) | Event::Delete(_)) if synced => reviews.invalidate(),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "RBAC watch error; retrying with backoff"),
        }
    }
}

/// The four RBAC watches.
pub fn spawn_rbac_watches(client: &Client, reviews: &Arc<Reviews>) {
    tokio::spawn(watch_rbac::<Role>(client.clone(), reviews.clone()));
    tokio::spawn(watch_rbac::<RoleBinding>(client.clone(), reviews.clone()));
    tokio::spawn(watch_rbac::<ClusterRole>(client.clone(), reviews.clone()));
    tokio::spawn(watch_rbac::<ClusterRoleBinding>(
        client.clone(),
        reviews.clone(),
    ));
}
