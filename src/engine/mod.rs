//! The detection engine: a pure function from an [`Inventory`] to desired
//! findings. No I/O, no clock, no client: the controller and `scan` feed it
//! and publish or render what comes out.

pub mod baseline;
pub mod normalize;
pub mod rules;
pub mod view;

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap as HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{
    CronJobBaseline, Enforcement, Mitre, Observed, Rule, Severity, Subject, Unapproved, Violation,
};
pub use baseline::{CompiledBaseline, CompiledEntry, EntryMatcher, Problem};
use normalize::{ImageCache, IntervalCache, format_duration, has_digest, normalize_schedule};
pub use view::{ContainerPath, ContainerView, CronJobView, HostPathVolume, POD_PATH, PodView};

/// Violation messages are bounded so findings stay small in etcd.
pub const MAX_MESSAGE: usize = 1024;

/// Everything the engine decides over.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub cronjobs: Vec<CronJobView>,
    pub baselines: Vec<CronJobBaseline>,
    /// Namespace name → labels. Namespaces of CronJobs and baselines not
    /// listed here count as existing with no labels.
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

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

/// A finding as the engine wants it to exist: no timestamps, no state.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredFinding {
    pub namespace: String,
    pub name: String,
    pub subject: Subject,
    /// Sorted by rule, then field.
    pub violations: Vec<Violation>,
    pub observed: Option<Observed>,
    /// `namespace/name` of the baselines behind the verdict.
    pub baselines: Vec<String>,
    pub owner: Option<String>,
    pub severity: Severity,
    /// Baseline asking, via `enforcement: Suspend`, for the CronJob to be suspended.
    pub suspend_by: Option<String>,
}

impl DesiredFinding {
    pub fn rules(&self) -> Vec<Rule> {
        let mut r: Vec<Rule> = self.violations.iter().map(|v| v.rule).collect();
        r.dedup();
        r
    }

    pub fn rules_column(&self) -> String {
        self.rules()
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The one-line summary used in Event notes and tables.
    pub fn summary(&self) -> String {
        self.violations
            .first()
            .map(|v| v.message.clone())
            .unwrap_or_default()
    }
}

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

#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    /// Sorted by namespace, then name.
    pub findings: Vec<DesiredFinding>,
    /// Sorted by namespace, then name.
    pub baselines: Vec<BaselineReport>,
}

/// The engine's verdict on one namespace.
#[derive(Clone, Debug, Default)]
pub struct NamespaceResult {
    pub namespace: String,
    /// Sorted by name.
    pub findings: Vec<DesiredFinding>,
    /// `namespace/name` of the baselines governing the namespace.
    pub governing: Vec<String>,
    /// Baseline → CronJobs of this namespace its entries matched.
    pub matched: BTreeMap<String, usize>,
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

/// Pre-compiled settings plus the memo of schedule intervals.
#[derive(Clone)]
pub struct Engine {
    pub settings: Settings,
    allowlist: Option<Vec<normalize::Glob>>,
    intervals: IntervalCache,
    images: ImageCache,
}

struct Pool<'a> {
    baselines: Vec<&'a CompiledBaseline>,
    by_name: HashMap<&'a str, &'a CompiledEntry>,
    patterns: Vec<&'a CompiledEntry>,
    selectors: Vec<&'a CompiledEntry>,
    ignore_unapproved: bool,
    suspend_by: Option<&'a str>,
}

impl<'a> Pool<'a> {
    fn new(baselines: Vec<&'a CompiledBaseline>) -> Pool<'a> {
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

    /// Most specific entry wins; ties go to the first in order.
    fn best_match(&self, cj: &CronJobView) -> Option<&'a CompiledEntry> {
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

impl Engine {
    pub fn new(settings: Settings) -> Result<Engine, String> {
        let allowlist = if settings.registry_allowlist.is_empty() {
            None
        } else {
            let globs = settings
                .registry_allowlist
                .iter()
                .map(|r| {
                    normalize::Glob::new(r.trim())
                        .map_err(|e| format!("invalid registry allowlist entry {r:?}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some(globs)
        };
        for r in &settings.disabled_rules {
            if !r.is_heuristic() {
                return Err(format!(
                    "{r} is a baseline rule; only heuristic rules can be disabled"
                ));
            }
        }
        Ok(Engine {
            settings,
            allowlist,
            intervals: IntervalCache::default(),
            images: ImageCache::default(),
        })
    }

    pub fn compile(&self, b: &CronJobBaseline) -> CompiledBaseline {
        baseline::compile(b, &self.settings.trusted_namespaces)
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

        // Required entries with no live CronJob (SPEC 3.1 ApprovedCronJobMissing).
        let mut missing: BTreeMap<String, DesiredFinding> = BTreeMap::new();
        for b in &pool.baselines {
            for e in &b.entries {
                let EntryMatcher::Name(n) = &e.matcher else {
                    continue;
                };
                if !e.required || cronjobs.iter().any(|c| &c.name == n) {
                    continue;
                }
                // Only the entry that would win the match speaks.
                if !pool
                    .by_name
                    .get(n.as_str())
                    .is_some_and(|w| std::ptr::eq(*w, e))
                {
                    continue;
                }
                let mut finder = Finder::new(Some(e), &self.settings);
                finder.push(
                    Rule::ApprovedCronJobMissing,
                    None,
                    format!(
                        "required CronJob {ns}/{n} approved by baseline {} does not exist",
                        e.baseline
                    ),
                    "metadata.name".into(),
                    n.clone(),
                    "<missing>",
                );
                let violations = finder.finish();
                if violations.is_empty() || missing.contains_key(n) {
                    continue;
                }
                missing.insert(
                    n.clone(),
                    DesiredFinding {
                        namespace: ns.to_owned(),
                        name: n.clone(),
                        subject: Subject {
                            api_version: "batch/v1".into(),
                            kind: "CronJob".into(),
                            namespace: ns.to_owned(),
                            name: n.clone(),
                            uid: None,
                        },
                        severity: max_severity(&violations),
                        violations,
                        observed: None,
                        baselines: vec![e.baseline.clone()],
                        owner: e.owner.clone(),
                        suspend_by: None,
                    },
                );
            }
        }
        findings.extend(missing.into_values());
        findings.sort_by(|a, b| a.name.cmp(&b.name));
        NamespaceResult {
            namespace: ns.to_owned(),
            governing: pool.baselines.iter().map(|b| b.key.clone()).collect(),
            matched,
            findings,
        }
    }

    fn evaluate_cronjob(
        &self,
        cj: &CronJobView,
        pool: &Pool,
        entry: Option<&CompiledEntry>,
    ) -> Option<DesiredFinding> {
        let mut f = Finder::new(entry, &self.settings);
        let pod = cj.pod.as_ref();
        let governed = !pool.baselines.is_empty();

        // Baseline rules.
        match entry {
            None if governed && !pool.ignore_unapproved => {
                let images = cj.images();
                f.push(
                    Rule::NotInBaseline,
                    None,
                    format!(
                        "CronJob {}/{} is not in any baseline (schedule {}, image {})",
                        cj.namespace,
                        cj.name,
                        cj.schedule,
                        if images.is_empty() {
                            "<none>".to_owned()
                        } else {
                            images.join(", ")
                        }
                    ),
                    "metadata.name".into(),
                    "an approved entry",
                    cj.name.clone(),
                );
            }
            Some(e) => self.baseline_rules(cj, e, &mut f),
            None => {}
        }

        // Heuristics.
        let threshold = entry
            .and_then(|e| e.min_interval)
            .unwrap_or(self.settings.min_interval);
        if f.enabled(Rule::HighFrequencySchedule)
            && let Ok(Some(gap)) = self.intervals.get(&cj.schedule)
            && gap < threshold
        {
            f.push(
                Rule::HighFrequencySchedule,
                None,
                format!(
                    "schedule {:?} fires every {}, more often than {}",
                    cj.schedule,
                    format_duration(gap),
                    format_duration(threshold)
                ),
                "spec.schedule".into(),
                format!(">= {} between runs", format_duration(threshold)),
                cj.schedule.clone(),
            );
        }
        if let Some(pod) = pod {
            if f.enabled(Rule::PrivilegedJobTemplate) {
                rules::privileged(pod, &mut f);
            }
            if f.enabled(Rule::HostPathMount) {
                rules::host_paths(pod, &mut f);
            }
            if f.enabled(Rule::SuspiciousCommand) {
                rules::suspicious_commands(pod, &mut f);
            }
            let mutable = f.enabled(Rule::MutableImageReference);
            let registry = f.enabled(Rule::UnapprovedRegistry) && self.allowlist.is_some();
            if mutable || registry {
                rules::images(
                    pod,
                    &self.images,
                    self.allowlist.as_ref(),
                    mutable,
                    registry,
                    &mut f,
                );
            }
        }
        if entry.is_none()
            && f.enabled(Rule::SensitiveNamespace)
            && rules::SENSITIVE_NAMESPACES.contains(&cj.namespace.as_str())
        {
            f.push(
                Rule::SensitiveNamespace,
                None,
                format!(
                    "CronJob {}/{} runs in system namespace {} without baseline approval",
                    cj.namespace, cj.name, cj.namespace
                ),
                "metadata.namespace".into(),
                "approved by a baseline",
                cj.namespace.clone(),
            );
        }
        if f.enabled(Rule::HistoryErasure) {
            rules::history_erasure(cj, &mut f);
        }

        let violations = f.finish();
        if violations.is_empty() {
            return None;
        }
        let baselines: Vec<String> = match entry {
            Some(e) => vec![e.baseline.clone()],
            None => pool.baselines.iter().map(|b| b.key.clone()).collect(),
        };
        let suspend_by = match entry {
            Some(e) if e.enforcement == Enforcement::Suspend => Some(e.baseline.clone()),
            Some(_) => None,
            None => pool.suspend_by.map(str::to_owned),
        }
        .filter(|_| {
            violations
                .iter()
                .any(|v| !v.rule.is_heuristic() && v.severity >= Severity::High)
        });
        Some(DesiredFinding {
            namespace: cj.namespace.clone(),
            name: cj.name.clone(),
            subject: Subject {
                api_version: "batch/v1".into(),
                kind: "CronJob".into(),
                namespace: cj.namespace.clone(),
                name: cj.name.clone(),
                uid: cj.uid.clone(),
            },
            severity: max_severity(&violations),
            violations,
            observed: Some(observe(cj)),
            baselines,
            owner: entry.and_then(|e| e.owner.clone()),
            suspend_by,
        })
    }

    fn baseline_rules(&self, cj: &CronJobView, e: &CompiledEntry, f: &mut Finder) {
        let approved_by = e.label();
        if !e.schedules.is_empty() {
            let approved = e.schedules.iter().any(|a| a == &cj.schedule)
                || e.schedules.contains(&normalize_schedule(&cj.schedule));
            if !approved {
                f.push(
                    Rule::ScheduleNotApproved,
                    None,
                    format!(
                        "schedule {:?} is not approved by {approved_by}",
                        cj.schedule
                    ),
                    "spec.schedule".into(),
                    e.schedules.join(" | "),
                    cj.schedule.clone(),
                );
            }
        }
        if !e.time_zones.is_empty() {
            let tz = cj.time_zone.as_deref().unwrap_or("");
            if !e.time_zones.iter().any(|z| z == tz) {
                f.push(
                    Rule::ScheduleNotApproved,
                    None,
                    format!(
                        "timeZone {} is not approved by {approved_by}",
                        if tz.is_empty() { "<unset>" } else { tz }
                    ),
                    "spec.timeZone".into(),
                    e.time_zones.join(" | "),
                    if tz.is_empty() {
                        "<unset>".to_owned()
                    } else {
                        tz.to_owned()
                    },
                );
            }
        }
        if let Some(min) = e.min_interval
            && let Ok(Some(gap)) = self.intervals.get(&cj.schedule)
            && gap < min
        {
            f.push(
                        Rule::ScheduleNotApproved,
                        None,
                        format!(
                            "schedule {:?} fires every {}, more often than the minInterval {} of {approved_by}",
                            cj.schedule,
                            format_duration(gap),
                            format_duration(min)
                        ),
                        "spec.schedule".into(),
                        format!(">= {} between runs", format_duration(min)),
                        cj.schedule.clone(),
                    );
        }
        let Some(pod) = &cj.pod else { return };
        if !e.images.is_empty() || e.require_digest {
            for (path, name, raw) in pod.image_sites() {
                let image = self.images.get(raw);
                if !e.images.is_empty() && !e.images.iter().any(|p| p.matches(&image)) {
                    f.push(
                        Rule::ImageNotApproved,
                        None,
                        format!("container {name} runs image {raw}, not approved by {approved_by}"),
                        format!("{path}.image"),
                        e.images
                            .iter()
                            .map(|p| p.source.as_str())
                            .collect::<Vec<_>>()
                            .join(" | "),
                        raw.to_owned(),
                    );
                } else if e.require_digest && !has_digest(&image) {
                    f.push(
                        Rule::ImageNotApproved,
                        None,
                        format!("container {name} image {raw} is not pinned by digest, required by {approved_by}"),
                        format!("{path}.image"),
                        "an image pinned by @sha256 digest",
                        raw.to_owned(),
                    );
                }
            }
        }
        if !e.service_accounts.is_empty() {
            let sa = pod.service_account.as_str();
            if !e.service_accounts.iter().any(|s| s == sa) {
                f.push(
                    Rule::ServiceAccountNotApproved,
                    None,
                    format!("service account {sa} is not approved by {approved_by}"),
                    format!("{POD_PATH}.serviceAccountName"),
                    e.service_accounts.join(" | "),
                    sa.to_owned(),
                );
            }
        }
        if !e.commands.is_empty() {
            for (path, c) in pod.containers() {
                let allowed: Vec<_> = e
                    .commands
                    .iter()
                    .filter(|a| a.container == c.name)
                    .collect();
                let cmd = c.command.clone().filter(|v| !v.is_empty());
                let args = c.args.clone().filter(|v| !v.is_empty());
                let ok = allowed.iter().any(|a| {
                    a.command.clone().filter(|v| !v.is_empty()) == cmd
                        && a.args.clone().filter(|v| !v.is_empty()) == args
                });
                if !ok {
                    let actual = rules::command_line(c);
                    let expected = if allowed.is_empty() {
                        format!("no command approved for container {}", c.name)
                    } else {
                        allowed
                            .iter()
                            .map(|a| {
                                a.command
                                    .iter()
                                    .flatten()
                                    .chain(a.args.iter().flatten())
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            })
                            .collect::<Vec<_>>()
                            .join(" | ")
                    };
                    f.push(
                        Rule::CommandNotApproved,
                        None,
                        format!(
                            "container {} runs {:?}, not approved by {approved_by}",
                            c.name,
                            if actual.is_empty() {
                                "<image default>"
                            } else {
                                actual.as_str()
                            }
                        ),
                        format!("{path}.command"),
                        expected,
                        actual,
                    );
                }
            }
        }
        if let Some(pinned) = &e.template_hash
            && &pod.template_hash != pinned
        {
            let hash = &pod.template_hash;
            f.push(
                Rule::TemplateDrift,
                None,
                format!(
                    "pod template hash {hash} differs from the templateHash pinned by {approved_by}"
                ),
                "spec.jobTemplate.spec.template".into(),
                pinned.clone(),
                hash.clone(),
            );
        }
        if !e.managers.is_empty() {
            for m in &cj.managers {
                if !e.managers.iter().any(|a| a == &m.manager) {
                    f.push(
                        Rule::DeployPathNotApproved,
                        None,
                        format!(
                            "field manager {} ({}) changed the spec; {approved_by} approves only {}",
                            m.manager,
                            m.operation,
                            e.managers.join(", ")
                        ),
                        "metadata.managedFields".into(),
                        e.managers.join(" | "),
                        m.manager.clone(),
                    );
                }
            }
        }
    }
}

/// Collects one CronJob's violations, applying waivers, switches and
/// severity overrides in one place.
pub(crate) struct Finder<'a> {
    entry: Option<&'a CompiledEntry>,
    settings: &'a Settings,
    violations: Vec<Violation>,
}

impl<'a> Finder<'a> {
    fn new(entry: Option<&'a CompiledEntry>, settings: &'a Settings) -> Self {
        Finder {
            entry,
            settings,
            violations: Vec::new(),
        }
    }

    /// False for a heuristic switched off globally or waived by the matched entry.
    pub(crate) fn enabled(&self, rule: Rule) -> bool {
        !rule.is_heuristic()
            || !(self.settings.disabled_rules.contains(&rule)
                || self.entry.is_some_and(|e| e.waive.contains(&rule)))
    }

    pub(crate) fn push(
        &mut self,
        rule: Rule,
        severity: Option<Severity>,
        message: String,
        field: String,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) {
        if !self.enabled(rule) {
            return;
        }
        let severity = self
            .entry
            .and_then(|e| e.severity_overrides.get(&rule))
            .or_else(|| self.settings.severity_overrides.get(&rule))
            .copied()
            .or(severity)
            .unwrap_or_else(|| rule.default_severity());
        self.violations.push(Violation {
            rule,
            severity,
            message: bounded(message, MAX_MESSAGE),
            field: Some(field),
            expected: Some(bounded(expected.into(), MAX_MESSAGE)),
            actual: Some(bounded(actual.into(), MAX_MESSAGE)),
            first_seen: None,
            last_seen: None,
        });
    }

    fn finish(mut self) -> Vec<Violation> {
        self.violations
            .sort_by(|a, b| (a.rule, &a.field).cmp(&(b.rule, &b.field)));
        self.violations
    }
}

/// Cut a message to at most `max` bytes (on a character boundary), marking
/// the cut, so findings and Events stay small.
pub fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

pub fn max_severity(v: &[Violation]) -> Severity {
    v.iter().map(|v| v.severity).max().unwrap_or(Severity::Info)
}

pub fn observe(cj: &CronJobView) -> Observed {
    Observed {
        uid: cj.uid.clone(),
        schedule: cj.schedule.clone(),
        time_zone: cj.time_zone.clone(),
        suspend: cj.suspend.unwrap_or(false),
        images: cj.images(),
        service_account_name: cj.pod.as_ref().map(|p| p.service_account.clone()),
        managers: cj.managers.clone(),
        created_at: cj.created_at.clone(),
    }
}

pub fn mitre() -> Mitre {
    Mitre::t1053_007()
}

impl DesiredFinding {
    /// The CronJobFinding object for this finding as first seen at `now`:
    /// what `scan --output yaml` prints and what the controller creates.
    pub fn to_object(&self, now: &Time) -> crate::api::CronJobFinding {
        use crate::api::{
            CONDITION_ACKNOWLEDGED, CONDITION_ACTIVE, CronJobFinding, CronJobFindingSpec,
            CronJobFindingStatus, FindingState, LABEL_SEVERITY, LABEL_STATE, reasons,
        };
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
        let labels = BTreeMap::from([
            (LABEL_SEVERITY.to_owned(), self.severity.as_str().to_owned()),
            (
                LABEL_STATE.to_owned(),
                FindingState::Open.as_str().to_owned(),
            ),
        ]);
        let violations = self
            .violations
            .iter()
            .map(|v| Violation {
                first_seen: Some(now.clone()),
                last_seen: Some(now.clone()),
                ..v.clone()
            })
            .collect();
        CronJobFinding {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                ..Default::default()
            },
            spec: CronJobFindingSpec {
                subject: self.subject.clone(),
                acknowledgement: None,
            },
            status: Some(CronJobFindingStatus {
                state: FindingState::Open,
                severity: Some(self.severity),
                rules: self.rules_column(),
                baselines: self.baselines.clone(),
                owner: self.owner.clone(),
                violations,
                observed: self.observed.clone(),
                mitre: Some(mitre()),
                first_seen: Some(now.clone()),
                last_seen: Some(now.clone()),
                resolved_at: None,
                observed_generation: None,
                conditions: vec![
                    Condition {
                        type_: CONDITION_ACTIVE.into(),
                        status: "True".into(),
                        reason: reasons::VIOLATIONS_OPEN.into(),
                        message: bounded(
                            format!("[{}] {}", self.severity, self.summary()),
                            MAX_MESSAGE,
                        ),
                        last_transition_time: now.clone(),
                        observed_generation: None,
                    },
                    Condition {
                        type_: CONDITION_ACKNOWLEDGED.into(),
                        status: "False".into(),
                        reason: reasons::NOT_ACKNOWLEDGED.into(),
                        message: "no acknowledgement in spec.acknowledgement".into(),
                        last_transition_time: now.clone(),
                        observed_generation: None,
                    },
                ],
            }),
        }
    }
}
