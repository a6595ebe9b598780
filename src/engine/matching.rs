//! Matching: within a tier the entries of its governing baselines form one
//! pool, and a CronJob matches the most specific entry (name, then
//! namePattern, then selector; ties go to the first baseline by name, then
//! entry index).
//! The tiers are matched separately: an entry of one tier never replaces
//! an entry of the other (SPEC 2.2).

use rustc_hash::FxHashMap as HashMap;

use super::governance::Governing;
use super::{CompiledBaseline, CompiledEntry, CronJobView, EntryMatcher, LabelSet};
use crate::api::{Enforcement, Unapproved};

impl CompiledEntry {
    pub fn matches(&self, name: &str, labels: &LabelSet) -> bool {
        match &self.matcher {
            EntryMatcher::Name(n) => n == name,
            EntryMatcher::Pattern(g) => g.is_match(name),
            EntryMatcher::Selector(s) => labels.satisfies(&s.requirements),
        }
    }
}

/// The entry pool of the baselines governing one namespace.
pub struct Pool<'a> {
    /// In matching order.
    pub baselines: Vec<&'a CompiledBaseline>,
    /// Name entries: the first per name wins.
    pub by_name: HashMap<&'a str, &'a CompiledEntry>,
    /// Name entries whose name an earlier entry already has: never the
    /// approval, still guardrails.
    shadowed: Vec<&'a CompiledEntry>,
    patterns: Vec<&'a CompiledEntry>,
    selectors: Vec<&'a CompiledEntry>,
    /// Every governing baseline says `unapproved: Ignore`.
    pub ignore_unapproved: bool,
    /// The first governing baseline asking for enforcement.
    pub suspend_by: Option<&'a str>,
}

impl<'a> Pool<'a> {
    /// The pool of these baselines in namespace `ns`: an entry with
    /// `namespaces` takes part only where it names the namespace.
    pub fn new(baselines: Vec<&'a CompiledBaseline>, ns: &str) -> Pool<'a> {
        let mut by_name: HashMap<&str, &CompiledEntry> = HashMap::default();
        let mut shadowed = Vec::new();
        let mut patterns = Vec::new();
        let mut selectors = Vec::new();
        for b in &baselines {
            for e in b.entries.iter().filter(|e| e.applies_in(ns)) {
                match &e.matcher {
                    EntryMatcher::Name(n) => {
                        if by_name.contains_key(n.as_str()) {
                            shadowed.push(e);
                        } else {
                            by_name.insert(n.as_str(), e);
                        }
                    }
                    EntryMatcher::Pattern(_) => patterns.push(e),
                    EntryMatcher::Selector(_) => selectors.push(e),
                }
            }
        }
        Pool {
            ignore_unapproved: !baselines.is_empty()
                && baselines.iter().all(|b| b.unapproved == Unapproved::Ignore),
            suspend_by: baselines
                .iter()
                .find(|b| b.enforcement == Enforcement::Suspend)
                .map(|b| b.key.as_str()),
            baselines,
            by_name,
            shadowed,
            patterns,
            selectors,
        }
    }

    /// Some baseline governs the namespace.
    pub fn governed(&self) -> bool {
        !self.baselines.is_empty()
    }

    /// Most specific entry wins; ties go to the first in order.
    pub fn best_match(&self, cj: &CronJobView) -> Option<&'a CompiledEntry> {
        if let Some(e) = self.by_name.get(cj.name.as_str()) {
            return Some(e);
        }
        if let Some(e) = self
            .patterns
            .iter()
            .find(|e| e.matches(&cj.name, &cj.labels))
        {
            return Some(e);
        }
        self.selectors
            .iter()
            .find(|e| e.matches(&cj.name, &cj.labels))
            .copied()
    }

    /// Every other entry of the pool the CronJob matches, in matching
    /// order, besides its approval `best`: the guardrails of SPEC 2.2.
    pub fn also_matched(&self, cj: &CronJobView, best: &CompiledEntry) -> Vec<&'a CompiledEntry> {
        let named = self.by_name.get(cj.name.as_str()).copied();
        named
            .into_iter()
            .chain(
                self.shadowed
                    .iter()
                    .chain(&self.patterns)
                    .chain(&self.selectors)
                    .copied()
                    .filter(|e| e.matches(&cj.name, &cj.labels)),
            )
            .filter(|e| !std::ptr::eq(*e, best))
            .collect()
    }
}

/// The entries a CronJob matched: `[cluster tier, namespace tier]`.
pub type Matched<'a> = [Option<&'a CompiledEntry>; 2];

/// The two tiers governing one namespace.
pub struct Tiers<'a> {
    pub cluster: Pool<'a>,
    pub namespace: Pool<'a>,
}

impl<'a> Tiers<'a> {
    pub fn new(g: Governing<'a>, ns: &str) -> Tiers<'a> {
        Tiers {
            cluster: Pool::new(g.cluster, ns),
            namespace: Pool::new(g.namespace, ns),
        }
    }

    /// The cluster tier's guardrails for a CronJob that matched `matched`:
    /// every other cluster entry it matches keeps its `images`,
    /// `requireDigest` and `minInterval`, unless its approval is scoped to
    /// its namespace (an exception that replaces them; SPEC 2.2).
    pub fn guardrails(&self, cj: &CronJobView, matched: Matched<'a>) -> Vec<&'a CompiledEntry> {
        match matched[0] {
            Some(best) if !best.scoped_to(&cj.namespace) => self.cluster.also_matched(cj, best),
            _ => Vec::new(),
        }
    }

    /// The pools, cluster tier first (the order of [`Matched`]).
    pub fn pools(&self) -> [&Pool<'a>; 2] {
        [&self.cluster, &self.namespace]
    }

    /// The most specific entry of each tier.
    pub fn best_match(&self, cj: &CronJobView) -> Matched<'a> {
        [self.cluster.best_match(cj), self.namespace.best_match(cj)]
    }

    /// Keys of every governing baseline, cluster tier first.
    pub fn keys(&self) -> Vec<String> {
        self.pools()
            .iter()
            .flat_map(|p| p.baselines.iter().map(|b| b.key.clone()))
            .collect()
    }
}
