//! Governance: which baselines apply where. Baselines of both tiers are
//! compiled and validated once ([`compile`]), ordered for the tie-break of
//! SPEC 2.2, and selected per namespace into a cluster tier and a
//! namespace tier; [`relax`] says what the namespace tier may relax. Their
//! status counts are aggregated here.

mod compile;
pub mod relax;

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;

pub use compile::{
    BaselineSource, CLUSTER_KIND, CompiledBaseline, CompiledEntry, EntryLabel, EntryMatcher,
    Problem, Tier, baseline_key, compile,
};

use super::NamespaceSummary;

/// What the engine says about one baseline, for its status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselineReport {
    pub tier: Tier,
    /// Empty for the cluster tier.
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub entries: usize,
    pub governed_namespaces: usize,
    pub matched_cronjobs: usize,
    pub open_findings: usize,
    pub problems: Vec<Problem>,
    /// Relaxations not honoured (SPEC 2.2), sorted and unique: exactly
    /// those the evaluation refused, found by the same code that decides
    /// the findings ([`crate::engine::verdict::Finder`]).
    pub restricted: Vec<String>,
}

impl BaselineReport {
    /// `namespace/name`, or `ClusterCronJobBaseline/name`.
    pub fn key(&self) -> String {
        baseline_key(self.tier, &self.namespace, &self.name)
    }
}

/// The baselines governing one namespace, by tier, each in matching order.
#[derive(Default)]
pub struct Governing<'a> {
    pub cluster: Vec<&'a CompiledBaseline>,
    pub namespace: Vec<&'a CompiledBaseline>,
}

/// Baselines in matching order (namespace/name), the tie-break of SPEC 2.1.
pub fn order(baselines: &[CompiledBaseline]) -> Vec<&CompiledBaseline> {
    let mut ordered: Vec<&CompiledBaseline> = baselines.iter().collect();
    ordered.sort_by(|a, b| a.key.cmp(&b.key));
    ordered
}

/// The baselines governing a namespace (SPEC 2.2): the cluster tier is
/// every ClusterCronJobBaseline whose selector matches its labels (none
/// set: every namespace; an invalid one: no namespace), the namespace tier
/// every CronJobBaseline in it.
pub fn governing<'a>(
    ns: &str,
    labels: &BTreeMap<String, String>,
    ordered: &[&'a CompiledBaseline],
) -> Governing<'a> {
    let mut g = Governing::default();
    for b in ordered {
        match b.tier {
            Tier::Cluster if governs(b, labels) => g.cluster.push(b),
            Tier::Namespace if b.namespace == ns => g.namespace.push(b),
            _ => {}
        }
    }
    g
}

/// Whether a cluster-tier baseline governs a namespace with these labels.
pub fn governs(b: &CompiledBaseline, labels: &BTreeMap<String, String>) -> bool {
    !b.selector_invalid
        && b.namespace_selector
            .as_ref()
            .is_none_or(|s| kube::core::SelectorExt::matches(s, labels))
}

/// Baseline reports from per-namespace results (SPEC 2.1 status counts).
pub fn aggregate<'a>(
    ordered: &[&CompiledBaseline],
    results: impl Iterator<Item = &'a NamespaceSummary>,
) -> Vec<BaselineReport> {
    let mut governed: HashMap<&str, usize> = HashMap::default();
    let mut matched: HashMap<&str, usize> = HashMap::default();
    let mut open: HashMap<&str, usize> = HashMap::default();
    let mut restricted: HashMap<&str, BTreeSet<&str>> = HashMap::default();
    for r in results {
        for (b, msgs) in &r.restricted {
            restricted
                .entry(b.as_str())
                .or_default()
                .extend(msgs.iter().map(String::as_str));
        }
        for b in &r.governing {
            *governed.entry(b.as_str()).or_default() += 1;
        }
        for (b, n) in &r.matched {
            *matched.entry(b.as_str()).or_default() += n;
        }
        for (b, n) in &r.open {
            *open.entry(b.as_str()).or_default() += n;
        }
    }
    ordered
        .iter()
        .map(|b| BaselineReport {
            tier: b.tier,
            namespace: b.namespace.clone(),
            name: b.name.clone(),
            generation: b.generation,
            entries: b.declared_entries,
            governed_namespaces: governed.get(b.key.as_str()).copied().unwrap_or(0),
            matched_cronjobs: matched.get(b.key.as_str()).copied().unwrap_or(0),
            open_findings: open.get(b.key.as_str()).copied().unwrap_or(0),
            problems: b.problems.clone(),
            restricted: restricted
                .get(b.key.as_str())
                .into_iter()
                .flatten()
                .map(|m| (*m).to_owned())
                .collect(),
        })
        .collect()
}
