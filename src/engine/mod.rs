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
//! [`normalize`] holds the shared pure helpers (images, schedules, the
//! template hash, managedFields).

pub mod governance;
pub mod inventory;
pub mod matching;
pub mod normalize;
pub mod rules;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rustc_hash::FxHashMap as HashMap;

use crate::api::{CronJobBaseline, Rule, Severity};
use crate::error::SettingsError;
pub use governance::{
    BaselineReport, CompiledBaseline, CompiledEntry, EntryMatcher, Problem, aggregate, governing,
    order,
};
pub use inventory::{
    ContainerPath, ContainerView, CronJobView, HostPathVolume, Inventory, POD_PATH, PodView,
};
use matching::Pool;
use normalize::{ImageCache, IntervalCache};
pub use verdict::{
    DesiredFinding, Evaluation, MAX_MESSAGE, NamespaceResult, bounded, max_severity, mitre, observe,
};

/// Engine settings shared by `scan` and the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Namespaces whose baselines may use namespaceSelector.
    pub trusted_namespaces: BTreeSet<String>,
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
            trusted_namespaces: BTreeSet::from(["cronwarden-system".to_owned()]),
            min_interval: Duration::from_secs(300),
            disabled_rules: BTreeSet::new(),
            registry_allowlist: Vec::new(),
            severity_overrides: BTreeMap::new(),
        }
    }
}

/// Pre-compiled settings plus the memo caches of schedule intervals and
/// image references.
#[derive(Clone)]
pub struct Engine {
    pub settings: Settings,
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
            allowlist,
            intervals: IntervalCache::default(),
            images: ImageCache::default(),
        })
    }

    pub fn compile(&self, b: &CronJobBaseline) -> CompiledBaseline {
        governance::compile(b, &self.settings.trusted_namespaces)
    }

    /// Evaluate an inventory from scratch.
    pub fn evaluate(&self, inv: &Inventory) -> Evaluation {
        let compiled: Vec<CompiledBaseline> =
            inv.baselines.iter().map(|b| self.compile(b)).collect();
        let cronjobs: Vec<&CronJobView> = inv.cronjobs.iter().collect();
        self.evaluate_compiled(&cronjobs, &compiled, &inv.namespaces)
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
        namespaces.extend(ordered.iter().map(|b| b.namespace.as_str()));
        let results: Vec<NamespaceResult> = namespaces
            .iter()
            .map(|ns| {
                let labels = namespace_labels.get(*ns).unwrap_or(&empty);
                let cjs = by_ns.get(ns).map(Vec::as_slice).unwrap_or_default();
                self.evaluate_namespace(ns, labels, cjs, &ordered)
            })
            .collect();
        let baselines = aggregate(&ordered, results.iter());
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
        let pool = Pool::new(governing(ns, labels, baselines));
        let mut findings: Vec<DesiredFinding> = Vec::new();
        let mut matched: BTreeMap<String, usize> = BTreeMap::new();
        for cj in cronjobs {
            let entry = pool.best_match(cj);
            if let Some(e) = entry {
                match matched.get_mut(e.baseline.as_str()) {
                    Some(n) => *n += 1,
                    None => {
                        matched.insert(e.baseline.clone(), 1);
                    }
                }
            }
            if let Some(f) = self.evaluate_cronjob(cj, &pool, entry) {
                findings.push(f);
            }
        }
        findings.extend(rules::baseline::missing_required(
            ns,
            cronjobs,
            &pool,
            &self.settings,
        ));
        findings.sort_by(|a, b| a.name.cmp(&b.name));
        NamespaceResult {
            namespace: ns.to_owned(),
            governing: pool.baselines.iter().map(|b| b.key.clone()).collect(),
            matched,
            findings,
        }
    }
}
