//! The detection engine: a pure function from an [`Inventory`] to desired
//! findings. No I/O, no clock, no client: the controller and `scan` feed it
//! and publish or render what comes out.
//!
//! Stages, one folder or file each, in the order data flows through them:
//! 1. [`inventory`]: what the engine reads of a CronJob (a projection).
//! 2. [`governance`]: baselines compiled and validated, which of them govern
//!    a namespace, and the per-baseline status counts.
//! 3. [`matching`]: the entry pool of the governing baselines and the most
//!    specific entry for a CronJob.
//! 4. [`rules`]: the rule families (baseline constraints, template
//!    heuristics, commands, schedules), dispatched from the catalogue.
//! 5. [`verdict`]: violations collected with waivers, switches and
//!    overrides applied, and assembled into desired findings.
//!
//! [`analysis`] reads what a container executes (SPEC 3.3) once, when a
//! CronJob arrives; [`normalize`] holds the shared pure helpers (images, schedules, the
//! template hash, managedFields).

pub mod analysis;
pub mod governance;
pub mod inventory;
pub mod jobs;
pub mod matching;
pub mod normalize;
pub mod power;
pub mod rules;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;

use crate::api::{Rule, Severity};
use crate::error::SettingsError;
pub use governance::{
    BaselineReport, BaselineSource, CompiledBaseline, CompiledEntry, EntryMatcher, Problem, Tier,
    aggregate, governing, order,
};
pub use inventory::{
    ContainerPath, ContainerView, CronJobView, HostPathVolume, Inventory, LabelSet, POD_PATH,
    PodView,
};
use matching::Tiers;
use normalize::{ImageCache, IntervalCache};
pub use verdict::{
    DesiredFinding, Evaluation, MAX_MESSAGE, NamespaceResult, NamespaceSummary, bounded,
    max_severity, mitre, observe,
};

/// Engine settings shared by `scan` and the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// HighFrequencySchedule threshold where no entry sets minInterval.
    pub min_interval: Duration,
    /// Heuristic rules switched off.
    pub disabled_rules: BTreeSet<Rule>,
    /// Registry globs (`registry.example.com`, `*.corp.example`); empty = UnapprovedRegistry off.
    pub registry_allowlist: Vec<String>,
    pub severity_overrides: BTreeMap<Rule, Severity>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_interval: Duration::from_secs(300),
            disabled_rules: BTreeSet::new(),
            registry_allowlist: Vec::new(),
            severity_overrides: BTreeMap::new(),
        }
    }
}

/// The label the API server sets on every namespace, to its name (and
/// restores when a client changes it).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace's labels as the API server serves them: with
/// `kubernetes.io/metadata.name` set to its name, so a cluster baseline
/// selecting a namespace by it governs the same namespaces offline (`scan`,
/// `audit`, where manifests may lack the label or the Namespace) as live.
pub fn with_name_label<'l>(
    ns: &str,
    labels: &'l BTreeMap<String, String>,
) -> std::borrow::Cow<'l, BTreeMap<String, String>> {
    if labels.get(NAMESPACE_NAME_LABEL).map(String::as_str) == Some(ns) {
        std::borrow::Cow::Borrowed(labels)
    } else {
        let mut l = labels.clone();
        l.insert(NAMESPACE_NAME_LABEL.to_owned(), ns.to_owned());
        std::borrow::Cow::Owned(l)
    }
}

/// Pre-compiled settings plus the memo caches of schedule intervals and
/// image references.
#[derive(Clone)]
pub struct Engine {
    pub settings: Settings,
    /// What service accounts may do (SPEC 3.7); None: PowerfulServiceAccount is silent.
    pub powers: Option<std::sync::Arc<dyn power::PowerSource>>,
    allowlist: Option<Vec<normalize::Glob>>,
    intervals: IntervalCache,
    images: ImageCache,
}

impl Engine {
    pub fn new(settings: Settings) -> Result<Engine, SettingsError> {
        let allowlist = if settings.registry_allowlist.is_empty() {
            None
        } else {
            let globs = settings
                .registry_allowlist
                .iter()
                .map(|r| {
                    normalize::Glob::new(r.trim()).map_err(|why| SettingsError::Registry {
                        entry: r.clone(),
                        why,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(globs)
        };
        if let Some(r) = settings.disabled_rules.iter().find(|r| !r.is_heuristic()) {
            return Err(SettingsError::NotDisableable(*r));
        }
        Ok(Engine {
            settings,
            powers: None,
            allowlist,
            intervals: IntervalCache::default(),
            images: ImageCache::default(),
        })
    }

    /// Compile a baseline of either tier.
    pub fn compile<'a>(&self, b: impl Into<BaselineSource<'a>>) -> CompiledBaseline {
        governance::compile(b.into())
    }

    /// Every baseline of an inventory compiled, the cluster tier first.
    pub fn compile_inventory(&self, inv: &Inventory) -> Vec<CompiledBaseline> {
        inv.cluster_baselines
            .iter()
            .map(|b| self.compile(b))
            .chain(inv.baselines.iter().map(|b| self.compile(b)))
            .collect()
    }

    /// Answer PowerfulServiceAccount from this source.
    pub fn with_powers(mut self, source: std::sync::Arc<dyn power::PowerSource>) -> Engine {
        self.powers = Some(source);
        self
    }

    /// Evaluate an inventory from scratch. With RBAC objects in it and no
    /// other source of answers, PowerfulServiceAccount reads them (offline).
    pub fn evaluate(&self, inv: &Inventory) -> Evaluation {
        if self.powers.is_none() && !inv.rbac.is_empty() {
            return self
                .clone()
                .with_powers(std::sync::Arc::new(inv.rbac.clone()))
                .evaluate(inv);
        }
        let compiled = self.compile_inventory(inv);
        let cronjobs: Vec<&CronJobView> = inv.cronjobs.iter().collect();
        let mut e = self.evaluate_compiled(&cronjobs, &compiled, &inv.namespaces);
        // Jobs: lineage against the CronJobs given (offline, a CronJob not
        // in the input is unknown, not absent), then the heuristics.
        for job in &inv.jobs {
            let claimed = job.claim.as_ref().and_then(|c| {
                inv.cronjobs
                    .iter()
                    .find(|cj| cj.namespace == job.namespace && cj.name == c.cronjob)
            });
            let l = jobs::lineage(job, claimed, None, false);
            if l != jobs::Lineage::Covered
                && let Some(f) = self.evaluate_claimed_job(job, &l)
            {
                e.findings.push(f);
            }
        }
        e.findings
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        e
    }

    /// Evaluate with baselines compiled beforehand (the controller keeps
    /// them compiled between reconciles).
    pub fn evaluate_compiled(
        &self,
        cronjobs: &[&CronJobView],
        baselines: &[CompiledBaseline],
        namespace_labels: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Evaluation {
        let empty = BTreeMap::new();
        let ordered = order(baselines);
        let mut by_ns: HashMap<&str, Vec<&CronJobView>> = HashMap::default();
        for cj in cronjobs {
            by_ns.entry(cj.namespace.as_str()).or_default().push(cj);
        }
        let mut namespaces: BTreeSet<&str> = namespace_labels.keys().map(String::as_str).collect();
        namespaces.extend(by_ns.keys().copied());
        namespaces.extend(
            ordered
                .iter()
                .filter(|b| b.tier == Tier::Namespace)
                .map(|b| b.namespace.as_str()),
        );
        let results: Vec<NamespaceResult> = namespaces
            .iter()
            .map(|ns| {
                let labels = namespace_labels.get(*ns).unwrap_or(&empty);
                let cjs = by_ns.get(ns).map(Vec::as_slice).unwrap_or_default();
                self.evaluate_namespace(ns, labels, cjs, &ordered)
            })
            .collect();
        let summaries: Vec<NamespaceSummary> = results.iter().map(|r| r.summary()).collect();
        let baselines = aggregate(&ordered, summaries.iter());
        let mut findings: Vec<DesiredFinding> =
            results.into_iter().flat_map(|r| r.findings).collect();
        findings.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Evaluation {
            findings,
            baselines,
        }
    }

    /// Evaluate one namespace: the unit the controller re-evaluates when a
    /// CronJob, the namespace's labels or a baseline governing it change.
    /// `baselines` must be in [`order`].
    pub fn evaluate_namespace(
        &self,
        ns: &str,
        labels: &BTreeMap<String, String>,
        cronjobs: &[&CronJobView],
        baselines: &[&CompiledBaseline],
    ) -> NamespaceResult {
        let labels = with_name_label(ns, labels);
        let tiers = Tiers::new(governing(ns, &labels, baselines), ns);
        let mut result = NamespaceResult {
            namespace: ns.to_owned(),
            governing: tiers.keys(),
            ..NamespaceResult::default()
        };
        for cj in cronjobs {
            let matched = tiers.best_match(cj);
            for e in matched.iter().flatten() {
                *result.matched.entry(e.baseline.clone()).or_default() += 1;
            }
            let (finding, restricted) = self.evaluate_cronjob(cj, &tiers, matched);
            result.findings.extend(finding);
            for (b, msg) in restricted {
                result.restricted.entry(b).or_default().insert(msg);
            }
        }
        let (missing, refused) =
            rules::baseline::missing_required(ns, cronjobs, &tiers, &self.settings);
        result.findings.extend(missing);
        for (b, msg) in refused {
            result.restricted.entry(b).or_default().insert(msg);
        }
        result.findings.sort_by(|a, b| a.name.cmp(&b.name));
        result
    }
}
