//! Baselines compiled for matching (SPEC 2.1): validated once, with every
//! problem named by entry, so a bad entry never stops the others.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kube::core::Selector;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::{
    ApprovedCommand, ApprovedEntry, ClusterCronJobBaseline, CronJobBaseline, Enforcement, Rule,
    Severity, Unapproved, reasons,
};
use crate::engine::normalize::{
    Glob, ImagePattern, normalize_schedule, parse_duration, parse_existing_schedule,
};

/// Why a baseline is not fully accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub enum EntryMatcher {
    Name(String),
    Pattern(Glob),
    Selector(LabelMatcher),
}

/// An entry's label selector: kube-core's parsed form, for display, and
/// its requirements, matched against a view's [`LabelSet`] with
/// kube-core's semantics.
///
/// [`LabelSet`]: crate::engine::LabelSet
#[derive(Debug)]
pub struct LabelMatcher {
    shown: Selector,
    pub requirements: Vec<kube::core::Expression>,
}

impl LabelMatcher {
    pub fn new(s: Selector) -> Self {
        LabelMatcher {
            requirements: s.clone().into_iter().collect(),
            shown: s,
        }
    }
}

impl std::fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.shown.fmt(f)
    }
}

impl EntryMatcher {
    /// name > namePattern > selector.
    pub fn specificity(&self) -> u8 {
        match self {
            EntryMatcher::Name(_) => 3,
            EntryMatcher::Pattern(_) => 2,
            EntryMatcher::Selector(_) => 1,
        }
    }
}

/// The two tiers of SPEC 2.1; a CronJob must satisfy every tier that
/// governs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    /// ClusterCronJobBaselines: the platform's guardrails.
    Cluster,
    /// CronJobBaselines: a team's inventory of its own namespace.
    #[default]
    Namespace,
}

/// Kind name of the cluster tier, the prefix of its baseline keys.
pub const CLUSTER_KIND: &str = "ClusterCronJobBaseline";

#[derive(Debug)]
pub struct CompiledEntry {
    /// Key of the baseline: `namespace/name`, or
    /// `ClusterCronJobBaseline/name` for the cluster tier.
    pub baseline: String,
    pub tier: Tier,
    pub index: usize,
    pub matcher: EntryMatcher,
    pub required: bool,
    /// Normalised (macros expanded).
    pub schedules: Vec<String>,
    pub time_zones: Vec<String>,
    pub min_interval: Option<Duration>,
    pub images: Vec<ImagePattern>,
    pub require_digest: bool,
    pub service_accounts: Vec<String>,
    pub commands: Vec<ApprovedCommand>,
    pub template_hash: Option<String>,
    pub managers: Vec<String>,
    pub owner: Option<String>,
    pub waive: BTreeSet<Rule>,
    pub severity_overrides: BTreeMap<Rule, Severity>,
    pub enforcement: Enforcement,
    /// Cluster tier: the namespaces the entry applies in, sorted; empty =
    /// every namespace its baseline governs (SPEC 2.1).
    pub namespaces: Vec<String>,
}

impl CompiledEntry {
    /// Whether the entry takes part in matching in namespace `ns`.
    pub fn applies_in(&self, ns: &str) -> bool {
        self.namespaces.is_empty()
            || self
                .namespaces
                .binary_search_by(|n| n.as_str().cmp(ns))
                .is_ok()
    }

    /// Whether the entry names `ns` in `namespaces`: a scoped exception
    /// there, which may relax violations above medium and replaces the
    /// cluster tier's other guardrails (SPEC 2.2).
    pub fn scoped_to(&self, ns: &str) -> bool {
        self.tier == Tier::Cluster && !self.namespaces.is_empty() && self.applies_in(ns)
    }

    /// `ns/baseline[i] (name x)`, formatted only when a message needs it.
    pub fn label(&self) -> EntryLabel<'_> {
        EntryLabel(self)
    }

    /// `ns/baseline[i]`: what a violation records as its `baseline`.
    pub fn id(&self) -> String {
        format!("{}[{}]", self.baseline, self.index)
    }
}

pub struct EntryLabel<'a>(&'a CompiledEntry);

impl std::fmt::Display for EntryLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.0;
        write!(f, "{}[{}] ", e.baseline, e.index)?;
        match &e.matcher {
            EntryMatcher::Name(n) => write!(f, "(name {n})"),
            EntryMatcher::Pattern(p) => write!(f, "(namePattern {})", p.as_str()),
            EntryMatcher::Selector(s) => write!(f, "(selector {s})"),
        }
    }
}

#[derive(Debug)]
pub struct CompiledBaseline {
    pub tier: Tier,
    /// Empty for the cluster tier.
    pub namespace: String,
    pub name: String,
    /// `namespace/name`, or `ClusterCronJobBaseline/name`.
    pub key: String,
    pub uid: Option<String>,
    pub generation: Option<i64>,
    /// Cluster tier: which namespaces it governs (None: every namespace).
    pub namespace_selector: Option<Selector>,
    /// Cluster tier: the selector did not compile, so it governs nothing.
    pub selector_invalid: bool,
    pub unapproved: Unapproved,
    /// Detect when the baseline has any problem: enforcement never acts on
    /// an invalid baseline (SPEC 6).
    pub enforcement: Enforcement,
    pub entries: Vec<CompiledEntry>,
    /// Entries as declared (valid or not), for status.
    pub declared_entries: usize,
    pub problems: Vec<Problem>,
}

/// What compile reads of either baseline kind.
pub struct BaselineSource<'a> {
    pub tier: Tier,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: Option<&'a str>,
    pub generation: Option<i64>,
    pub namespace_selector: Option<&'a LabelSelector>,
    pub unapproved: Unapproved,
    pub enforcement: Enforcement,
    pub approved: &'a [ApprovedEntry],
}

impl<'a> From<&'a CronJobBaseline> for BaselineSource<'a> {
    fn from(b: &'a CronJobBaseline) -> Self {
        BaselineSource {
            tier: Tier::Namespace,
            namespace: b.metadata.namespace.as_deref().unwrap_or_default(),
            name: b.metadata.name.as_deref().unwrap_or_default(),
            uid: b.metadata.uid.as_deref(),
            generation: b.metadata.generation,
            namespace_selector: None,
            unapproved: b.spec.unapproved,
            enforcement: b.spec.enforcement,
            approved: &b.spec.approved,
        }
    }
}

impl<'a> From<&'a ClusterCronJobBaseline> for BaselineSource<'a> {
    fn from(b: &'a ClusterCronJobBaseline) -> Self {
        BaselineSource {
            tier: Tier::Cluster,
            namespace: "",
            name: b.metadata.name.as_deref().unwrap_or_default(),
            uid: b.metadata.uid.as_deref(),
            generation: b.metadata.generation,
            namespace_selector: b.spec.namespace_selector.as_ref(),
            unapproved: b.spec.unapproved,
            enforcement: b.spec.enforcement,
            approved: &b.spec.approved,
        }
    }
}

/// The key of a baseline: `namespace/name` or `ClusterCronJobBaseline/name`.
pub fn baseline_key(tier: Tier, namespace: &str, name: &str) -> String {
    match tier {
        Tier::Cluster => format!("{CLUSTER_KIND}/{name}"),
        Tier::Namespace => format!("{namespace}/{name}"),
    }
}

fn entry_name(base: &str, i: usize, e: &ApprovedEntry) -> String {
    let what = e
        .name
        .as_deref()
        .map(|n| format!(" (name {n})"))
        .or_else(|| {
            e.name_pattern
                .as_deref()
                .map(|p| format!(" (namePattern {p})"))
        })
        .unwrap_or_default();
    format!("{base} entry approved[{i}]{what}")
}

/// Compile one baseline. Invalid entries are left out and named in
/// `problems` (they approve nothing: fail closed); the rest keep working.
pub fn compile(b: BaselineSource) -> CompiledBaseline {
    let key = baseline_key(b.tier, b.namespace, b.name);
    let mut problems = Vec::new();
    let mut selector_invalid = false;
    let namespace_selector = match b.namespace_selector {
        None => None,
        Some(sel) => match Selector::try_from(sel.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                selector_invalid = true;
                problems.push(Problem {
                    reason: reasons::INVALID_PATTERN,
                    message: format!(
                        "baseline {key}: invalid namespaceSelector ({e}); it governs no namespace"
                    ),
                });
                None
            }
        },
    };
    let mut entries = Vec::new();
    for (i, e) in b.approved.iter().enumerate() {
        match compile_entry(&key, b.tier, i, e, b.enforcement) {
            Ok(c) => entries.push(c),
            Err(p) => problems.push(p),
        }
    }
    let enforcement = if problems.is_empty() {
        b.enforcement
    } else {
        Enforcement::Detect
    };
    for e in &mut entries {
        e.enforcement = enforcement;
    }
    CompiledBaseline {
        tier: b.tier,
        namespace: b.namespace.to_owned(),
        name: b.name.to_owned(),
        key,
        uid: b.uid.map(str::to_owned),
        generation: b.generation,
        namespace_selector,
        selector_invalid,
        unapproved: b.unapproved,
        enforcement,
        entries,
        declared_entries: b.approved.len(),
        problems,
    }
}

fn compile_entry(
    base: &str,
    tier: Tier,
    i: usize,
    e: &ApprovedEntry,
    enforcement: Enforcement,
) -> Result<CompiledEntry, Problem> {
    let label = || entry_name(base, i, e);
    let bad = |reason: &'static str, why: String| Problem {
        reason,
        message: format!("{}: {why}", label()),
    };
    let set = [
        e.name.is_some(),
        e.name_pattern.is_some(),
        e.selector.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if set != 1 {
        return Err(bad(
            reasons::INVALID_ENTRY,
            "exactly one of name, namePattern or selector must be set".into(),
        ));
    }
    let matcher = if let Some(n) = &e.name {
        if n.is_empty() {
            return Err(bad(reasons::INVALID_ENTRY, "name is empty".into()));
        }
        EntryMatcher::Name(n.clone())
    } else if let Some(p) = &e.name_pattern {
        let g = Glob::new(p).map_err(|err| {
            bad(
                reasons::INVALID_PATTERN,
                format!("invalid namePattern {p:?}: {err}"),
            )
        })?;
        EntryMatcher::Pattern(g)
    } else {
        let s = e.selector.clone().unwrap_or_default();
        EntryMatcher::Selector(LabelMatcher::new(Selector::try_from(s).map_err(|err| {
            bad(reasons::INVALID_PATTERN, format!("invalid selector: {err}"))
        })?))
    };
    if e.required == Some(true) && !matches!(matcher, EntryMatcher::Name(_)) {
        return Err(bad(
            reasons::INVALID_ENTRY,
            "required is only allowed on entries with a name".into(),
        ));
    }
    let mut schedules = Vec::new();
    for s in &e.schedules {
        // What robfig accepts, a legacy `TZ=` prefix included: an entry
        // may approve a schedule an existing object still carries.
        parse_existing_schedule(s).map_err(|err| bad(reasons::INVALID_SCHEDULE, err))?;
        schedules.push(normalize_schedule(s));
    }
    let min_interval = match &e.min_interval {
        Some(d) => Some(
            parse_duration(d)
                .map_err(|err| bad(reasons::INVALID_DURATION, format!("minInterval: {err}")))?,
        ),
        None => None,
    };
    let images = e
        .images
        .iter()
        .map(|p| ImagePattern::new(p).map_err(|err| bad(reasons::INVALID_PATTERN, err)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(r) = e.waive.iter().find(|r| !r.is_heuristic()) {
        return Err(bad(
            reasons::INVALID_ENTRY,
            format!("waive names {r}, which is not a heuristic rule"),
        ));
    }
    let waive: BTreeSet<Rule> = e.waive.iter().copied().collect();
    let mut namespaces = e.namespaces.clone();
    namespaces.sort();
    namespaces.dedup();
    if tier == Tier::Namespace && !namespaces.is_empty() {
        return Err(bad(
            reasons::INVALID_ENTRY,
            "namespaces is only allowed on ClusterCronJobBaseline entries (a CronJobBaseline governs its own namespace)".into(),
        ));
    }
    if let Some(n) = namespaces.iter().find(|n| !is_dns_label(n)) {
        return Err(bad(
            reasons::INVALID_ENTRY,
            format!("namespaces: {n:?} is not a namespace name"),
        ));
    }
    let severity_overrides = e.severity_overrides.clone();
    if let Some(h) = &e.template_hash {
        let ok = h
            .strip_prefix("sha256:")
            .is_some_and(|x| x.len() == 64 && x.bytes().all(|b| b.is_ascii_hexdigit()));
        if !ok {
            return Err(bad(
                reasons::INVALID_PATTERN,
                format!("templateHash {h:?} is not sha256:<64 hex digits>"),
            ));
        }
    }
    Ok(CompiledEntry {
        baseline: base.to_owned(),
        tier,
        index: i,
        matcher,
        required: e.required == Some(true),
        schedules,
        time_zones: e.time_zones.clone(),
        min_interval,
        images,
        require_digest: e.require_digest == Some(true),
        service_accounts: e.service_account_names.clone(),
        commands: e.commands.clone(),
        template_hash: e.template_hash.clone(),
        managers: e.managers.clone(),
        owner: e.owner.clone(),
        waive,
        severity_overrides,
        enforcement,
        namespaces,
    })
}

/// A namespace name as the API server accepts it (RFC 1123 label).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
