//! Matching: the entries of the governing baselines form one pool, and a
//! CronJob matches the most specific entry (name > namePattern > selector;
//! ties go to the first baseline by namespace/name, then entry index).

use std::collections::BTreeMap;

use kube::core::SelectorExt;
use rustc_hash::FxHashMap as HashMap;

use super::{CompiledBaseline, CompiledEntry, CronJobView, EntryMatcher};
use crate::api::{Enforcement, Unapproved};

impl CompiledEntry {
    pub fn matches(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        match &self.matcher {
            EntryMatcher::Name(n) => n == name,
            EntryMatcher::Pattern(g) => g.is_match(name),
            EntryMatcher::Selector(s) => s.matches(labels),
        }
    }
}

/// The entry pool of the baselines governing one namespace.
pub struct Pool<'a> {
    /// In matching order.
    pub baselines: Vec<&'a CompiledBaseline>,
    /// Name entries: the first per name wins.
    pub by_name: HashMap<&'a str, &'a CompiledEntry>,
    patterns: Vec<&'a CompiledEntry>,
    selectors: Vec<&'a CompiledEntry>,
    /// Every governing baseline says `unapproved: Ignore`.
    pub ignore_unapproved: bool,
    /// The first governing baseline asking for enforcement.
    pub suspend_by: Option<&'a str>,
}

impl<'a> Pool<'a> {
    pub fn new(baselines: Vec<&'a CompiledBaseline>) -> Pool<'a> {
        let mut by_name = HashMap::default();
        let mut patterns = Vec::new();
        let mut selectors = Vec::new();
        for b in &baselines {
            for e in &b.entries {
                match &e.matcher {
                    EntryMatcher::Name(n) => {
                        by_name.entry(n.as_str()).or_insert(e);
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
}
