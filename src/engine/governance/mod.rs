//! Governance: which baselines apply where. Baselines are compiled and
//! validated once ([`compile`]), ordered for the tie-break of SPEC 2.1, and
//! selected per namespace; their status counts are aggregated here.

mod compile;

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

pub use compile::{CompiledBaseline, CompiledEntry, EntryLabel, EntryMatcher, Problem, compile};

use super::NamespaceResult;

/// What the engine says about one baseline, for its status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BaselineReport {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    pub entries: usize,
    pub governed_namespaces: usize,
    pub matched_cronjobs: usize,
    pub open_findings: usize,
    pub problems: Vec<Problem>,
}

/// Baselines in matching order (namespace/name), the tie-break of SPEC 2.1.
pub fn order(baselines: &[CompiledBaseline]) -> Vec<&CompiledBaseline> {
    let mut ordered: Vec<&CompiledBaseline> = baselines.iter().collect();
    ordered.sort_by(|a, b| a.key.cmp(&b.key));
    ordered
}

/// The baselines governing a namespace: its own, plus trusted ones whose
/// namespaceSelector matches its labels.
pub fn governing<'a>(
    ns: &str,
    labels: &BTreeMap<String, String>,
    ordered: &[&'a CompiledBaseline],
) -> Vec<&'a CompiledBaseline> {
    ordered
        .iter()
        .copied()
        .filter(|b| {
            b.namespace == ns
                || b.namespace_selector
                    .as_ref()
                    .is_some_and(|s| kube::core::SelectorExt::matches(s, labels))
        })
        .collect()
}

/// Baseline reports from per-namespace results (SPEC 2.1 status counts).
pub fn aggregate<'a>(
    ordered: &[&CompiledBaseline],
    results: impl Iterator<Item = &'a NamespaceResult>,
) -> Vec<BaselineReport> {
    let mut governed: HashMap<&str, usize> = HashMap::default();
    let mut matched: HashMap<&str, usize> = HashMap::default();
    let mut open: HashMap<&str, usize> = HashMap::default();
    for r in results {
        for b in &r.governing {
            *governed.entry(b.as_str()).or_default() += 1;
        }
        for (b, n) in &r.matched {
            *matched.entry(b.as_str()).or_default() += n;
        }
        for f in &r.findings {
            for b in &f.baselines {
                *open.entry(b.as_str()).or_default() += 1;
            }
        }
    }
    ordered
        .iter()
        .map(|b| BaselineReport {
            namespace: b.namespace.clone(),
            name: b.name.clone(),
            generation: b.generation,
            entries: b.declared_entries,
            governed_namespaces: governed.get(b.key.as_str()).copied().unwrap_or(0),
            matched_cronjobs: matched.get(b.key.as_str()).copied().unwrap_or(0),
            open_findings: open.get(b.key.as_str()).copied().unwrap_or(0),
            problems: b.problems.clone(),
        })
        .collect()
}
