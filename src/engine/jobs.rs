//! Jobs and their lineage (SPEC 3.6): a Job the cronjob controller made
//! from its CronJob's template is covered by the CronJob's finding; every
//! other Job gets the heuristics in a finding of its own, `job.<name>`,
//! plus ManualJobRun or ForgedJobLineage when it claims a CronJob.
//!
//! Decisions:
//! - A Job *claims* a CronJob with a controller ownerReference of kind
//!   CronJob (`batch/v1`); that is what both the cronjob controller and
//!   `kubectl create job --from=cronjob/…` write.
//! - Its pod template must hash (the security-relevant template hash of
//!   SPEC 3.5) to the CronJob's current template, or to one the CronJob had
//!   since this controller has watched it ([`TemplateHistory`]). A Job
//!   created before the oldest template the controller knows of took effect
//!   (its `since`: when the controller first saw it, or for the template
//!   found at start-up the CronJob's last spec write in managedFields)
//!   cannot be checked against the template it was made from; it is not
//!   reported. Creation times are set by the API server, so a Job made
//!   after a template took effect can never pass as older.
//! - An ownerReference uid that is not the CronJob's, or naming a CronJob
//!   that does not exist, is ForgedJobLineage.
//! - A Job covered by its CronJob keeps only its identity, owner and
//!   template hash in memory (its pod projection is dropped).

use std::collections::VecDeque;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::inventory::Untracked;
use super::rules::{Ctx, HEURISTICS};
use super::verdict::{Finder, Source, max_severity, observe};
use super::{CronJobView, DesiredFinding, Engine};
use crate::api::{Rule, Subject};

/// What `kubectl create job --from=cronjob/…` writes on the Job.
pub const INSTANTIATE_ANNOTATION: &str = "cronjob.kubernetes.io/instantiate";

/// Template versions kept per CronJob.
pub const HISTORY: usize = 4;

/// The CronJob a Job claims to come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub cronjob: String,
    pub uid: String,
}

/// A Job as the engine sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobView {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub created_at: Option<Time>,
    pub claim: Option<Claim>,
    /// `cronjob.kubernetes.io/instantiate: manual`.
    pub manual: bool,
    pub template_hash: String,
    /// The pod projection for the heuristics; dropped once the Job is
    /// known to be covered by its CronJob.
    pub template: Option<Box<CronJobView>>,
    pub generation: Option<i64>,
    /// Deleted before the controller evaluated it (a forged Job the garbage
    /// collector removed at once): evaluated once more, then dropped.
    pub gone: bool,
    /// For attributing the Job to an audited write; not compared.
    pub resource_version: Untracked<Option<String>>,
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        let claim = job
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| {
                o.controller == Some(true)
                    && o.kind == "CronJob"
                    && o.api_version.starts_with("batch/")
            })
            .map(|o| Claim {
                cronjob: o.name.clone(),
                uid: o.uid.clone(),
            });
        let manual = job
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(INSTANTIATE_ANNOTATION))
            .is_some_and(|v| v == "manual");
        let view = CronJobView::from_job(job);
        JobView {
            namespace: view.namespace.clone(),
            name: view.name.clone(),
            uid: view.uid.clone(),
            created_at: view.created_at.clone(),
            claim,
            manual,
            template_hash: view
                .pod
                .as_ref()
                .map(|p| p.template_hash.clone())
                .unwrap_or_default(),
            generation: view.generation,
            gone: false,
            resource_version: view.resource_version.clone(),
            template: Some(Box::new(view)),
        }
    }
}

/// The templates a CronJob has had while watched: hash and when it took
/// effect (None: unknown, as early as can be).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplateHistory {
    pub entries: VecDeque<(String, Option<Time>)>,
}

impl TemplateHistory {
    /// Record the CronJob's template as observed at `now`; the first one
    /// seen takes effect at `first_since` (its last spec write).
    pub fn observe(&mut self, hash: &str, first_since: Option<Time>, now: &Time) {
        if self.entries.back().is_some_and(|(h, _)| h == hash) {
            return;
        }
        let since = if self.entries.is_empty() {
            first_since
        } else {
            Some(now.clone())
        };
        if self.entries.len() >= HISTORY {
            self.entries.pop_front();
        } else if self.entries.is_empty() {
            // One per CronJob, mostly never a second template: no spare
            // capacity (a first push reserves four).
            self.entries.reserve_exact(1);
        }
        self.entries.push_back((hash.to_owned(), since));
    }

    fn knows(&self, hash: &str) -> bool {
        self.entries.iter().any(|(h, _)| h == hash)
    }

    /// When the oldest known template took effect.
    fn horizon(&self) -> Option<&Time> {
        self.entries.front().and_then(|(_, t)| t.as_ref())
    }
}

/// The last time a field manager wrote the CronJob's spec.
pub fn last_spec_write(cj: &CronJobView) -> Option<Time> {
    cj.managers
        .iter()
        .filter_map(|m| m.time.clone())
        .max_by_key(|t| t.0)
        .or_else(|| cj.created_at.clone())
}

/// What lineage says of a Job.
#[derive(Clone, Debug, PartialEq)]
pub enum Lineage {
    /// Made by the cronjob controller from its CronJob: reported nowhere.
    Covered,
    /// Claims no CronJob: the heuristics only.
    Standalone,
    /// Claims a CronJob: these lineage problems (maybe none, for a manual
    /// run of the right template) and whether it is a manual run.
    Claimed { manual: bool, forged: Vec<Forgery> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Forgery {
    pub message: String,
    pub field: &'static str,
    pub expected: String,
    pub actual: String,
}

/// Check a Job against the CronJob it claims. `all_cronjobs`: the caller
/// knows every CronJob of the namespace (the controller), so a missing one
/// does not exist; offline, a CronJob not in the input is just unknown,
/// and so is a uid the manifests do not carry.
pub fn lineage(
    job: &JobView,
    cronjob: Option<&CronJobView>,
    history: Option<&TemplateHistory>,
    all_cronjobs: bool,
) -> Lineage {
    let Some(claim) = &job.claim else {
        return Lineage::Standalone;
    };
    let mut forged = Vec::new();
    match cronjob {
        None if !all_cronjobs => {}
        None => forged.push(Forgery {
            message: format!(
                "Job {}/{} names CronJob {} as its controller, and no such CronJob exists",
                job.namespace, job.name, claim.cronjob
            ),
            field: "metadata.ownerReferences",
            expected: format!("an existing CronJob {}", claim.cronjob),
            actual: claim.cronjob.clone(),
        }),
        Some(cj) => {
            if (all_cronjobs || cj.uid.is_some()) && cj.uid.as_deref() != Some(claim.uid.as_str()) {
                forged.push(Forgery {
                    message: format!(
                        "Job {}/{} claims CronJob {} by an ownerReference uid that is not the CronJob's",
                        job.namespace, job.name, claim.cronjob
                    ),
                    field: "metadata.ownerReferences",
                    expected: cj.uid.clone().unwrap_or_default(),
                    actual: claim.uid.clone(),
                });
            }
            let current = cj
                .pod
                .as_ref()
                .map(|p| p.template_hash.as_str())
                .unwrap_or_default();
            let known = job.template_hash == current
                || history.is_some_and(|h| h.knows(&job.template_hash));
            let predates = match (history.and_then(TemplateHistory::horizon), &job.created_at) {
                (Some(h), Some(c)) => c.0 < h.0,
                _ => false,
            };
            if !known && !predates {
                forged.push(Forgery {
                    message: format!(
                        "Job {}/{} claims CronJob {}, but its pod template matches neither the CronJob's current template nor one it had when it scheduled Jobs",
                        job.namespace, job.name, claim.cronjob
                    ),
                    field: "spec.template",
                    expected: current.to_owned(),
                    actual: job.template_hash.clone(),
                });
            }
        }
    }
    if forged.is_empty() && !job.manual && (cronjob.is_some() || all_cronjobs) {
        Lineage::Covered
    } else {
        Lineage::Claimed {
            manual: job.manual,
            forged,
        }
    }
}

/// The finding name of a Job (SPEC 2.3).
pub fn finding_name(job: &str) -> String {
    format!("job.{job}")
}

impl Engine {
    /// The finding of a Job that its CronJob does not cover: lineage
    /// violations, then the heuristics on its pod template (not
    /// HighFrequencySchedule: a Job has no schedule).
    pub fn evaluate_claimed_job(&self, job: &JobView, lineage: &Lineage) -> Option<DesiredFinding> {
        let template = job.template.as_deref()?;
        let mut f = Finder::new([None, None], &self.settings, &job.namespace);
        f.source(Source::Heuristic);
        if let Lineage::Claimed { manual, forged } = lineage {
            if *manual {
                let claim = job
                    .claim
                    .as_ref()
                    .map(|c| c.cronjob.as_str())
                    .unwrap_or_default();
                f.check(Rule::ManualJobRun, |f| {
                    f.push(
                        None,
                        format!(
                            "Job {}/{} was created by hand from CronJob {claim} (kubectl create job --from), off its schedule",
                            job.namespace, job.name
                        ),
                        format!("metadata.annotations[{INSTANTIATE_ANNOTATION}]"),
                        "runs only on the CronJob's schedule",
                        "manual",
                    )
                });
            }
            f.check(Rule::ForgedJobLineage, |f| {
                for x in forged {
                    f.push(
                        None,
                        x.message.clone(),
                        x.field.into(),
                        x.expected.clone(),
                        x.actual.clone(),
                    );
                }
            });
        }
        let ctx = Ctx {
            engine: self,
            cj: template,
            cluster: None,
            namespace: None,
        };
        // No schedule; and SensitiveNamespace asks for a baseline entry,
        // which no Job can have (installers run Jobs in kube-system).
        for (rule, check) in HEURISTICS {
            if !matches!(rule, Rule::HighFrequencySchedule | Rule::SensitiveNamespace) {
                f.check(*rule, |f| check(&ctx, f));
            }
        }
        let (mut violations, _) = f.finish();
        if violations.is_empty() {
            return None;
        }
        // The heuristics name fields of a CronJob's template.
        for v in &mut violations {
            if let Some(field) = &mut v.field
                && let Some(rest) = field.strip_prefix("spec.jobTemplate.spec.")
            {
                *field = format!("spec.{rest}");
            }
        }
        let mut observed = observe(template);
        observed.schedule = String::new();
        Some(DesiredFinding {
            namespace: job.namespace.clone(),
            name: finding_name(&job.name),
            subject: Subject {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                namespace: job.namespace.clone(),
                name: job.name.clone(),
                uid: job.uid.clone(),
            },
            severity: max_severity(&violations),
            violations,
            observed: Some(observed),
            baselines: Vec::new(),
            owner: None,
            suspend_by: None,
            actor: None,
        })
    }
}
