//! Plan: evaluate the dirty namespaces and decide, purely, the writes and
//! Events that bring the API server to the desired state.

mod baseline;
mod changes;
mod finding;

pub use baseline::plan_baseline;
pub use changes::*;
pub use finding::plan_finding;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Controller;
use super::observe::index::State;
use crate::api::{CONDITION_ACCEPTED, CronJobFinding, FindingState, Rule, Violation};
use crate::audit::SubjectKind;
use crate::audit::store::ObservedRef;
use crate::engine::jobs::{Lineage, lineage};
use crate::engine::power::PowerSource;
use crate::engine::{
    CompiledBaseline, CronJobView, NamespaceResult, NamespaceSummary, aggregate, max_severity,
};
use crate::telemetry::{FindingLabels, StateLabel};

/// The text of a caught panic, for the log.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not text)")
}

/// Everything one reconcile round decided.
#[derive(Default, Debug)]
pub struct Plan {
    pub findings: Vec<FindingAction>,
    pub baselines: Vec<BaselineChange>,
    /// The keys (namespaces) this round evaluated.
    pub evaluated: Vec<String>,
    /// Dirty keys were left for the next round (see [`ROUND_ACTIONS`]).
    pub more: bool,
    /// Keys that could not be planned (their evaluation panicked, or their
    /// findings in the index do not decode: bugs, logged and counted):
    /// retried with backoff like a failed write.
    pub failed: Vec<String>,
}

/// At most this many finding actions are planned in one round; the dirty
/// keys not reached wait for the next round, which starts at once. A plan
/// holds each action's whole desired status until it is written: the
/// controller's first round over 100,000 CronJobs (or a baseline edit
/// touching thousands) would otherwise hold them all at once, and its
/// memory would grow with the cluster instead of staying bounded. A key
/// is never split: one namespace's actions are planned together.
pub const ROUND_ACTIONS: usize = 256;

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.findings.is_empty() && self.baselines.is_empty()
    }
}

impl Controller {
    /// Evaluate what is dirty and decide the writes: pure with respect to
    /// the API (it reads only the index).
    pub fn plan(&self, now: &Time) -> Plan {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut dirty = st.take_dirty();
        let mut plan = Plan::default();
        let mut results = Vec::new();
        let mut covered = Vec::new();
        let mut rest = Vec::new();
        {
            let st = &*st;
            let ordered: Vec<&CompiledBaseline> = st.baselines.values().map(|(_, c)| c).collect();
            let mut reached = 0;
            for ns in &dirty {
                if plan.findings.len() >= ROUND_ACTIONS {
                    break;
                }
                reached += 1;
                if !self.args.watches(ns) {
                    continue;
                }
                let decoded = match st.decode_findings(ns) {
                    Ok(m) => m,
                    Err(error) => {
                        tracing::error!(namespace = %ns, %error, "cannot plan the namespace");
                        self.metrics.reconcile_error("decode");
                        plan.failed.push(ns.clone());
                        continue;
                    }
                };
                // A panic while one namespace is planned (a bug reachable from
                // what a tenant wrote: third-party parsers, a rule) fails that
                // namespace alone: retried with backoff like a failed write,
                // counted, its recorded findings untouched. Unwinding out of
                // the round instead would stop every namespace, every round.
                let mut found_covered = Vec::new();
                let planned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.plan_namespace(st, ns, &decoded, &ordered, now, &mut found_covered)
                }));
                match planned {
                    Ok((actions, summary)) => {
                        plan.findings.extend(actions);
                        covered.append(&mut found_covered);
                        // Only the summary outlives the namespace's planning.
                        results.push((ns.clone(), summary));
                    }
                    Err(panic) => {
                        let panic = panic_message(panic.as_ref());
                        tracing::error!(
                            namespace = %ns,
                            %panic,
                            "evaluation panicked: the namespace is retried with backoff, \
                             its findings are kept as they are"
                        );
                        self.metrics.reconcile_error("panic");
                        plan.failed.push(ns.clone());
                    }
                }
            }
            if reached < dirty.len() {
                plan.more = true;
                rest = dirty.split_off(reached);
                self.ask_powers(st, &rest);
            }
        }
        // The keys not reached stay dirty, for the next round.
        st.dirty.extend(rest);
        st.forget_templates(&covered);
        st.drop_gone_jobs(&dirty);
        let evaluated = !results.is_empty();
        for (ns, summary) in results {
            st.results.insert(ns, summary);
        }
        for ns in &dirty {
            st.prune(ns);
        }
        plan.evaluated = dirty;
        // Baseline reports aggregate every namespace's result: not from a
        // partial pass (its counts would be written, then corrected).
        if plan.more {
            st.baselines_dirty |= evaluated;
        } else if evaluated || std::mem::take(&mut st.baselines_dirty) {
            let ordered: Vec<&CompiledBaseline> = st.baselines.values().map(|(_, c)| c).collect();
            let reports = aggregate(&ordered, st.results.values());
            for r in &reports {
                if let Some((b, _)) = st.baselines.get(&r.key()) {
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

    /// Evaluate one namespace and decide its finding writes; the Jobs its
    /// CronJobs cover are added to `covered`. Returns the writes and the
    /// namespace's summary (for baseline reports).
    fn plan_namespace(
        &self,
        st: &State,
        ns: &str,
        decoded: &BTreeMap<String, CronJobFinding>,
        ordered: &[&CompiledBaseline],
        now: &Time,
        covered: &mut Vec<(String, String)>,
    ) -> (Vec<FindingAction>, NamespaceSummary) {
        let empty = BTreeMap::new();
        let mut actions = Vec::new();
        let existing = (!decoded.is_empty()).then_some(decoded);
        let labels = st.namespaces.get(ns).unwrap_or(&empty);
        let cjs: Vec<_> = st
            .cronjobs
            .get(ns)
            .map(|m| m.values().collect())
            .unwrap_or_default();
        let mut result = self.engine.evaluate_namespace(ns, labels, &cjs, ordered);
        self.evaluate_jobs(st, ns, &mut result, covered);
        if let Some(actors) = &self.actors {
            let actors = actors.lock().unwrap_or_else(|e| e.into_inner());
            for f in &mut result.findings {
                let (kind, observed) = match f.subject.kind.as_str() {
                    "Job" => (
                        SubjectKind::Job,
                        st.job(ns, &f.subject.name).map(|j| ObservedRef {
                            uid: j.uid.as_deref(),
                            generation: j.generation,
                            resource_version: j.resource_version.0.as_deref(),
                        }),
                    ),
                    _ => (
                        SubjectKind::CronJob,
                        st.cronjob(ns, &f.name).map(|cj| ObservedRef {
                            uid: cj.uid.as_deref(),
                            generation: cj.generation,
                            resource_version: cj.resource_version.0.as_deref(),
                        }),
                    ),
                };
                if let Some(o) = observed {
                    f.actor = actors.lookup(kind, ns, &f.subject.name, o);
                }
            }
        }
        let held = self.hold_pending_power(st, ns, &mut result, existing);
        let mut names: BTreeSet<&str> = result.findings.iter().map(|f| f.name.as_str()).collect();
        names.extend(
            existing
                .into_iter()
                .flat_map(|m| m.keys().map(String::as_str)),
        );
        for name in names {
            if held.contains(name) {
                continue;
            }
            // NamespaceResult keeps findings sorted by name.
            let desired = result
                .findings
                .binary_search_by(|f| f.name.as_str().cmp(name))
                .ok()
                .map(|i| &result.findings[i]);
            let have = existing.and_then(|m| m.get(name));
            // The live subject: a CronJob, or a Job (as far as
            // plan_finding looks at it: its uid).
            let subject = desired
                .map(|d| &d.subject)
                .or_else(|| have.map(|f| &f.spec.subject));
            let live_job;
            let live = match subject {
                Some(s) if s.kind == "Job" => {
                    // A Job found covered keeps only digests: its
                    // uid is the finding's subject's, or another.
                    let uid = match st.job(ns, &s.name) {
                        Some(j) => Some(j.uid.clone()),
                        None => match s.uid.as_deref() {
                            Some(u) => st
                                .covered_job_has_uid(ns, &s.name, u)
                                .map(|same| same.then(|| u.to_owned())),
                            None => st.is_covered(ns, &s.name).then_some(None),
                        },
                    };
                    live_job = uid.map(|uid| CronJobView {
                        namespace: ns.to_owned(),
                        name: s.name.clone(),
                        uid,
                        ..CronJobView::default()
                    });
                    live_job.as_ref()
                }
                _ => st.cronjob(ns, name),
            };
            if let Some(a) = plan_finding(
                desired,
                have,
                live,
                now,
                self.args.retention,
                self.args.allow_enforcement,
            ) {
                actions.push(a);
            } else if desired.is_some() {
                self.metrics.write("finding", "skipped");
            }
        }
        (actions, result.summary())
    }

    /// The Jobs of a namespace (SPEC 3.6): those their CronJob covers are
    /// collected in `covered` (their pod projection is dropped after the
    /// round); the others get a `job.<name>` finding when anything fires.
    fn evaluate_jobs(
        &self,
        st: &State,
        ns: &str,
        result: &mut NamespaceResult,
        covered: &mut Vec<(String, String)>,
    ) {
        let Some(jobs) = st.jobs.get(ns) else {
            return;
        };
        for job in jobs.values() {
            // Checked when it arrived: covered.
            if job.template.is_none() {
                continue;
            }
            let claimed = job.claim.as_ref().map(|c| c.cronjob.as_str());
            let lineage = lineage(
                job,
                claimed.and_then(|c| st.cronjob(ns, c)),
                claimed.and_then(|c| st.histories.get(ns).and_then(|h| h.get(c))),
                true,
            );
            if lineage == Lineage::Covered {
                covered.push((ns.to_owned(), job.name.clone()));
                continue;
            }
            if let Some(mut f) = self.engine.evaluate_claimed_job(job, &lineage) {
                // A CronJob may itself be named `job.<x>`: the Job's finding
                // then takes its uid, so neither hides the other.
                if result.findings.iter().any(|o| o.name == f.name) {
                    let uid = job.uid.as_deref().unwrap_or("no-uid");
                    f.name = format!("{}.{}", f.name, &uid[..uid.len().min(8)]);
                }
                result.findings.push(f);
            }
        }
        result.findings.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// The service-account reviews the namespaces left for a later round
    /// will need start now: they take the longest of anything a finding
    /// waits for, and asking only when a round reaches the namespace
    /// would queue them one plan's worth at a time.
    fn ask_powers(&self, st: &State, namespaces: &[String]) {
        let Some(reviews) = &self.reviews else {
            return;
        };
        for ns in namespaces {
            if !self.args.watches(ns) {
                continue;
            }
            let pods = st
                .cronjobs
                .get(ns)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|c| c.pod.as_ref());
            for pod in pods.filter(|p| p.token_mounted) {
                reviews.power(ns, &pod.service_account);
            }
        }
    }

    /// A PowerfulServiceAccount violation stands while the question is
    /// pending again (after a restart the cache is empty): carried into the
    /// desired finding, or the finding left as it is, so a restart neither
    /// resolves it nor emits its Event again. Returns the findings to leave.
    fn hold_pending_power(
        &self,
        st: &State,
        ns: &str,
        result: &mut NamespaceResult,
        existing: Option<&BTreeMap<String, CronJobFinding>>,
    ) -> BTreeSet<String> {
        let mut held = BTreeSet::new();
        let (Some(reviews), Some(existing)) = (&self.reviews, existing) else {
            return held;
        };
        for (name, f) in existing {
            let Some(s) = f.status.as_ref().filter(|s| s.state == FindingState::Open) else {
                continue;
            };
            let Some(v) = s
                .violations
                .iter()
                .find(|v| v.rule == Rule::PowerfulServiceAccount)
            else {
                continue;
            };
            let pod = match f.spec.subject.kind.as_str() {
                "Job" => st
                    .job(ns, &f.spec.subject.name)
                    .and_then(|j| j.template.as_ref())
                    .and_then(|t| t.pod.as_ref()),
                _ => st.cronjob(ns, name).and_then(|c| c.pod.as_ref()),
            };
            let Some(pod) = pod else { continue };
            if !pod.token_mounted || !reviews.is_pending(ns, &pod.service_account) {
                continue;
            }
            match result.findings.iter_mut().find(|d| &d.name == name) {
                Some(d) => {
                    if !d
                        .violations
                        .iter()
                        .any(|x| x.rule == Rule::PowerfulServiceAccount)
                    {
                        d.violations.push(Violation {
                            first_seen: None,
                            last_seen: None,
                            ..v.clone()
                        });
                        d.violations.sort_by(|a, b| {
                            (a.rule, &a.field, &a.baseline).cmp(&(b.rule, &b.field, &b.baseline))
                        });
                        d.severity = max_severity(&d.violations);
                    }
                }
                None => {
                    held.insert(name.clone());
                }
            }
        }
        held
    }

    fn update_gauges(&self, st: &State) {
        self.metrics.open_findings.clear();
        for (ns, r) in &st.results {
            for ((rule, severity), n) in &r.violations {
                self.metrics
                    .open_findings
                    .get_or_create(&FindingLabels {
                        namespace: ns.clone(),
                        rule: rule.as_str().into(),
                        severity: severity.as_str().into(),
                    })
                    .inc_by(*n as i64);
            }
        }
        self.metrics.cronjobs.set(st.cronjob_count() as i64);
        let mut held: BTreeSet<&String> = st.results.keys().collect();
        held.extend(st.cronjobs.keys());
        held.extend(st.jobs.keys());
        held.extend(st.covered_jobs.keys());
        held.extend(st.findings.keys());
        held.extend(st.histories.keys());
        self.metrics.indexed_namespaces.set(held.len() as i64);
        let owed: usize = st
            .findings
            .values()
            .flat_map(BTreeMap::values)
            .map(|f| f.pending_events())
            .sum();
        self.metrics.pending_events.set(owed as i64);
        self.metrics.jobs.set(st.job_count() as i64);
        let (mut ok, mut bad) = (0, 0);
        for (b, _) in st.baselines.values() {
            let accepted = b
                .status()
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
}
