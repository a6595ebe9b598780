//! The rule families. Each rule of the catalogue (`api::catalogue`) that is
//! evaluated per CronJob has one row in [`HEURISTICS`] or [`CONSTRAINTS`]
//! naming its check function; the [`Finder`] attributes what a check
//! pushes to that rule, and skips checks of disabled or waived rules.
//! NotInBaseline and ApprovedCronJobMissing are decided by matching itself
//! (see [`baseline`]).

pub mod access;
pub mod baseline;
pub mod commands;
pub mod schedule;
pub mod template;

use super::matching::{Matched, Tiers};
use super::verdict::{Finder, Source, assemble};
use super::{CompiledEntry, CronJobView, DesiredFinding, Engine};
use crate::api::Rule;

/// What a check sees: the CronJob, the entries it matched in each tier
/// (if any) and the engine's settings and caches.
pub struct Ctx<'a> {
    pub engine: &'a Engine,
    pub cj: &'a CronJobView,
    pub cluster: Option<&'a CompiledEntry>,
    pub namespace: Option<&'a CompiledEntry>,
}

/// A heuristic: runs on every CronJob (SPEC 3.2).
pub type Heuristic = fn(&Ctx, &mut Finder);
/// A baseline constraint: runs on a CronJob and the entry it matched (SPEC 3.1).
pub type Constraint = fn(&Ctx, &CompiledEntry, &mut Finder);

pub const HEURISTICS: &[(Rule, Heuristic)] = &[
    (Rule::HighFrequencySchedule, schedule::high_frequency),
    (Rule::PrivilegedJobTemplate, template::privileged),
    (Rule::HostPathMount, template::host_paths),
    (Rule::SuspiciousCommand, commands::suspicious),
    (Rule::MutableImageReference, template::mutable_images),
    (Rule::UnapprovedRegistry, template::unapproved_registry),
    (Rule::SensitiveNamespace, template::sensitive_namespace),
    (Rule::HistoryErasure, template::history_erasure),
    (Rule::PowerfulServiceAccount, access::powerful),
];

pub const CONSTRAINTS: &[(Rule, Constraint)] = &[
    (Rule::ScheduleNotApproved, schedule::approved),
    (Rule::ImageNotApproved, baseline::images),
    (Rule::ServiceAccountNotApproved, baseline::service_account),
    (Rule::CommandNotApproved, baseline::commands),
    (Rule::TemplateDrift, baseline::template_hash),
    (Rule::DeployPathNotApproved, baseline::deploy_path),
];

/// What every other matched cluster-tier entry still checks beside the
/// approval (SPEC 2.2): its `images`, `requireDigest` and `minInterval`.
pub const GUARDRAILS: &[(Rule, Constraint)] = &[
    (Rule::ScheduleNotApproved, schedule::min_interval),
    (Rule::ImageNotApproved, baseline::images),
];

impl Engine {
    /// Every rule on one CronJob: the baseline rules of each governing tier
    /// against the entry it matched there, then the heuristics once.
    /// Returns the finding, if any, and the namespace-tier relaxations
    /// refused on the way (baseline key, message).
    pub(super) fn evaluate_cronjob(
        &self,
        cj: &CronJobView,
        tiers: &Tiers,
        matched: Matched,
    ) -> (Option<DesiredFinding>, Vec<(String, String)>) {
        let ctx = Ctx {
            engine: self,
            cj,
            cluster: matched[0],
            namespace: matched[1],
        };
        let guardrails = tiers.guardrails(cj, matched);
        let mut f =
            Finder::new(matched, &self.settings, &cj.namespace).with_guardrails(guardrails.clone());
        for (pool, entry) in tiers.pools().into_iter().zip(matched) {
            match entry {
                None if pool.governed() && !pool.ignore_unapproved => {
                    baseline::not_in_baseline(cj, pool, &mut f)
                }
                Some(e) => {
                    f.source(Source::Entry(e));
                    for (rule, check) in CONSTRAINTS {
                        f.check(*rule, |f| check(&ctx, e, f));
                    }
                }
                None => {}
            }
        }
        for g in guardrails {
            f.source(Source::Entry(g));
            for (rule, check) in GUARDRAILS {
                f.check(*rule, |f| check(&ctx, g, f));
            }
        }
        f.source(Source::Heuristic);
        for (rule, check) in HEURISTICS {
            f.check(*rule, |f| check(&ctx, f));
        }
        let (violations, restricted) = f.finish();
        (assemble(cj, tiers, matched, violations), restricted)
    }
}
