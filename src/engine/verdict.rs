//! Verdict: violations are collected through a [`Finder`], which applies
//! global switches, waivers and severity overrides in one place, and are
//! assembled into the [`DesiredFinding`] of a subject.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::governance::relax::{base_severity, gate, may_relax, refusal};
use super::matching::{Matched, Tiers};
use super::{BaselineReport, CompiledEntry, CronJobView, Settings};
use crate::api::{Enforcement, Mitre, Observed, Rule, Severity, Subject, Violation};

/// Violation messages are bounded so findings stay small in etcd.
pub const MAX_MESSAGE: usize = 1024;

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
    /// Who made the write the evidence reflects; the engine never sets it
    /// (it reads no audit log): `audit` and the controller do.
    pub actor: Option<crate::api::Actor>,
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
    /// Baseline → relaxations of it refused while evaluating (SPEC 2.2).
    pub restricted: BTreeMap<String, BTreeSet<String>>,
}

/// What baseline reports and the open-findings gauge need of a namespace's
/// verdict, without its findings' evidence. The controller keeps one per
/// namespace between rounds (its findings' evidence is in the findings
/// index already); a whole [`NamespaceResult`] per namespace was about a
/// fifth of its heap at 10,000 CronJobs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceSummary {
    pub governing: Vec<String>,
    pub matched: BTreeMap<String, usize>,
    pub restricted: BTreeMap<String, BTreeSet<String>>,
    /// Baseline → findings of this namespace that name it.
    pub open: BTreeMap<String, usize>,
    /// (rule, severity) → open violations.
    pub violations: BTreeMap<(Rule, Severity), usize>,
}

impl NamespaceResult {
    pub fn summary(&self) -> NamespaceSummary {
        let mut open: BTreeMap<String, usize> = BTreeMap::new();
        let mut violations: BTreeMap<(Rule, Severity), usize> = BTreeMap::new();
        for f in &self.findings {
            for b in &f.baselines {
                *open.entry(b.clone()).or_default() += 1;
            }
            for v in &f.violations {
                *violations.entry((v.rule, v.severity)).or_default() += 1;
            }
        }
        NamespaceSummary {
            governing: self.governing.clone(),
            matched: self.matched.clone(),
            restricted: self.restricted.clone(),
            open,
            violations,
        }
    }
}

/// What a violation's `baseline` names; formatted only when one is pushed,
/// so evaluating a clean CronJob allocates nothing for it.
pub enum Source<'a> {
    /// A heuristic: no baseline.
    Heuristic,
    /// A baseline rule checked against this entry.
    Entry(&'a CompiledEntry),
    /// NotInBaseline: the baselines of the tier, joined by `, `.
    Tier(String),
}

/// Collects one subject's violations, applying global switches, waivers
/// and severity overrides of both tiers in one place (SPEC 2.2, see
/// [`relax`](super::governance::relax)). The rule being evaluated is set
/// by the dispatcher ([`Finder::check`]), so a check function never names
/// it; the entry it is checked against is set with [`Finder::source`].
pub struct Finder<'a> {
    cluster: Option<&'a CompiledEntry>,
    namespace: Option<&'a CompiledEntry>,
    settings: &'a Settings,
    /// The subject's namespace: where a scoped cluster entry applies.
    ns: &'a str,
    /// The cluster tier's other matched entries (guardrails): their
    /// raising overrides still count, so a tenant who names its CronJob
    /// after a more specific entry does not shed the platform's raise.
    guardrails: Vec<&'a CompiledEntry>,
    /// The rule whose check is running; None outside [`Finder::check`].
    rule: Option<Rule>,
    /// What produced the violations pushed now.
    source: Source<'a>,
    violations: Vec<Violation>,
    /// (baseline key, message): relaxations not honoured.
    restricted: Vec<(String, String)>,
}

impl<'a> Finder<'a> {
    pub fn new(matched: Matched<'a>, settings: &'a Settings, ns: &'a str) -> Self {
        Finder {
            cluster: matched[0],
            namespace: matched[1],
            settings,
            ns,
            guardrails: Vec::new(),
            rule: None,
            source: Source::Heuristic,
            violations: Vec::new(),
            restricted: Vec::new(),
        }
    }

    /// The guardrails of the subject ([`Tiers::guardrails`]).
    pub fn with_guardrails(mut self, guardrails: Vec<&'a CompiledEntry>) -> Self {
        self.guardrails = guardrails;
        self
    }

    /// The severity relaxations of `rule` are weighed against.
    fn gate(&self, rule: Rule, base: Severity) -> Severity {
        let approvals = [self.cluster, self.namespace].into_iter().flatten();
        gate(rule, base, approvals.chain(self.guardrails.iter().copied()))
    }

    /// Attribute the next violations to this entry or tier.
    pub fn source(&mut self, source: Source<'a>) {
        self.source = source;
    }

    /// False for a heuristic switched off globally or waived by a cluster
    /// entry scoped to this namespace (honoured whatever the severity);
    /// every other waiver is weighed per violation.
    pub fn enabled(&self, rule: Rule) -> bool {
        !rule.is_heuristic()
            || !(self.settings.disabled_rules.contains(&rule)
                || self
                    .cluster
                    .is_some_and(|e| e.waive.contains(&rule) && e.scoped_to(self.ns)))
    }

    /// Run `check` for `rule` when the rule is enabled; its pushes are `rule`'s.
    pub fn check(&mut self, rule: Rule, check: impl FnOnce(&mut Self)) {
        if self.enabled(rule) {
            self.rule = Some(rule);
            check(self);
            self.rule = None;
        }
    }

    /// Whether `entry` may relax the current rule by a relaxation that is
    /// not a waiver or an override (a looser minInterval); a refusal is
    /// recorded for Restricted.
    pub fn may_relax(&mut self, entry: &CompiledEntry, what: impl FnOnce() -> String) -> bool {
        let Some(rule) = self.rule else {
            return false;
        };
        let base = base_severity(rule, None, self.settings);
        let gate = self.gate(rule, base);
        if may_relax(entry, rule, gate, self.ns) {
            return true;
        }
        self.restricted
            .push((entry.baseline.clone(), refusal(entry, &what(), rule)));
        false
    }

    /// Record a violation of the current rule; `severity` replaces the
    /// rule's default (HostPathMount grades by path). Waivers and
    /// overrides of the matched entries are weighed here, against the
    /// violation's gate, so what is refused is recorded by the same code
    /// that keeps the violation.
    pub fn push(
        &mut self,
        severity: Option<Severity>,
        message: String,
        field: String,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) {
        let Some(rule) = self.rule else {
            debug_assert!(false, "Finder::push outside Finder::check");
            return;
        };
        let base = base_severity(rule, severity, self.settings);
        let gate = self.gate(rule, base);
        let mut severity = base;
        for e in [self.cluster, self.namespace].into_iter().flatten() {
            if e.waive.contains(&rule) {
                if may_relax(e, rule, gate, self.ns) {
                    return;
                }
                let why = refusal(e, &format!("waive {rule}"), rule);
                self.restricted.push((e.baseline.clone(), why));
            }
        }
        for e in [self.cluster, self.namespace].into_iter().flatten() {
            if let Some(s) = e.severity_overrides.get(&rule).copied() {
                if s >= severity || may_relax(e, rule, gate, self.ns) {
                    severity = s;
                } else {
                    let what = format!("severityOverrides {rule}: {s}");
                    let why = refusal(e, &what, rule);
                    self.restricted.push((e.baseline.clone(), why));
                }
            }
        }
        // A guardrail only raises.
        for g in &self.guardrails {
            if let Some(s) = g.severity_overrides.get(&rule).copied() {
                severity = severity.max(s);
            }
        }
        self.violations.push(Violation {
            rule,
            severity,
            message: bounded(message, MAX_MESSAGE),
            baseline: match &self.source {
                Source::Heuristic => String::new(),
                Source::Entry(e) => e.id(),
                Source::Tier(keys) => keys.clone(),
            },
            field: Some(field),
            expected: Some(bounded(expected.into(), MAX_MESSAGE)),
            actual: Some(bounded(actual.into(), MAX_MESSAGE)),
            first_seen: None,
            last_seen: None,
        });
    }

    /// The violations, sorted by rule (catalogue order), field and source,
    /// and the refused relaxations.
    pub fn finish(mut self) -> (Vec<Violation>, Vec<(String, String)>) {
        self.violations
            .sort_by(|a, b| (a.rule, &a.field, &a.baseline).cmp(&(b.rule, &b.field, &b.baseline)));
        (self.violations, self.restricted)
    }
}

/// The finding of a CronJob from its violations: which baselines speak for
/// it (per tier, the matched entry's, else every governing one), its owner
/// (the team's entry first), and whether a baseline asks for a suspension
/// (SPEC 6: for a baseline-rule violation of severity high or above that
/// its tier produced; never from an invalid baseline).
pub fn assemble(
    cj: &CronJobView,
    tiers: &Tiers,
    matched: Matched,
    violations: Vec<Violation>,
) -> Option<DesiredFinding> {
    if violations.is_empty() {
        return None;
    }
    let mut baselines = Vec::new();
    let mut suspend_by = None;
    for (pool, entry) in tiers.pools().into_iter().zip(matched) {
        let (keys, suspend): (Vec<String>, Option<&str>) = match entry {
            Some(e) => (
                vec![e.baseline.clone()],
                (e.enforcement == Enforcement::Suspend).then_some(e.baseline.as_str()),
            ),
            None => (
                pool.baselines.iter().map(|b| b.key.clone()).collect(),
                pool.suspend_by,
            ),
        };
        let serious = violations.iter().any(|v| {
            !v.rule.is_heuristic()
                && v.severity >= Severity::High
                && keys.iter().any(|k| produced_by(&v.baseline, k))
        });
        if serious && suspend_by.is_none() {
            suspend_by = suspend.map(str::to_owned);
        }
        baselines.extend(keys);
    }
    Some(DesiredFinding {
        namespace: cj.namespace.clone(),
        name: cj.name.clone(),
        subject: Subject::cronjob(&cj.namespace, &cj.name, cj.uid.clone()),
        severity: max_severity(&violations),
        violations,
        observed: Some(observe(cj)),
        baselines,
        owner: matched[1]
            .and_then(|e| e.owner.clone())
            .or_else(|| matched[0].and_then(|e| e.owner.clone())),
        suspend_by,
        actor: None,
    })
}

/// Whether a violation's `baseline` names this baseline (an entry of it,
/// or it among a tier's baselines).
fn produced_by(source: &str, key: &str) -> bool {
    source.split(", ").any(|s| {
        s == key
            || s.strip_prefix(key)
                .is_some_and(|rest| rest.starts_with('['))
    })
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
                actor: self.actor.clone(),
                mitre: Some(mitre()),
                first_seen: Some(now.clone()),
                last_seen: Some(now.clone()),
                resolved_at: None,
                observed_generation: None,
                pending_events: Vec::new(),
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
