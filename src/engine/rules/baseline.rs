//! Baseline constraints (SPEC 3.1): a CronJob against the entry it matched,
//! attribute by attribute, plus the two verdicts of matching itself:
//! no entry at all, and a required entry with no CronJob.

use super::Ctx;
use std::collections::BTreeMap;

use crate::api::{Rule, Severity, Subject};
use crate::engine::matching::{Pool, Tiers};
use crate::engine::normalize::has_digest;
use crate::engine::verdict::{Finder, Source, max_severity};
use crate::engine::{
    CompiledEntry, ContainerView, CronJobView, DesiredFinding, EntryMatcher, POD_PATH, Settings,
    Tier,
};

/// The CronJob matches no entry of a tier that governs it.
pub fn not_in_baseline(cj: &CronJobView, pool: &Pool, f: &mut Finder) {
    let keys: Vec<&str> = pool.baselines.iter().map(|b| b.key.as_str()).collect();
    f.source(Source::Tier(keys.join(", ")));
    f.check(Rule::NotInBaseline, |f| {
        let images = cj.images();
        f.push(
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
    });
}

/// Required name entries with no live CronJob, per tier; only the entry
/// that would win the match speaks, and both tiers' verdicts on one name
/// share its finding. Returns the findings and the relaxations refused on
/// the way (baseline key, message), as [`Engine::evaluate_cronjob`] does.
///
/// [`Engine::evaluate_cronjob`]: crate::engine::Engine
pub fn missing_required(
    ns: &str,
    cronjobs: &[&CronJobView],
    tiers: &Tiers,
    settings: &Settings,
) -> (Vec<DesiredFinding>, Vec<(String, String)>) {
    let mut out: BTreeMap<&str, DesiredFinding> = BTreeMap::new();
    let mut refused = Vec::new();
    for pool in tiers.pools() {
        for b in &pool.baselines {
            for e in &b.entries {
                let EntryMatcher::Name(n) = &e.matcher else {
                    continue;
                };
                if !e.required || cronjobs.iter().any(|c| &c.name == n) {
                    continue;
                }
                if !pool
                    .by_name
                    .get(n.as_str())
                    .is_some_and(|w| std::ptr::eq(*w, e))
                {
                    continue;
                }
                let matched = match e.tier {
                    Tier::Cluster => [Some(e), None],
                    Tier::Namespace => [None, Some(e)],
                };
                let mut finder = Finder::new(matched, settings, ns);
                finder.source(Source::Entry(e));
                finder.check(Rule::ApprovedCronJobMissing, |f| {
                    f.push(
                        None,
                        format!(
                            "required CronJob {ns}/{n} approved by baseline {} does not exist",
                            e.baseline
                        ),
                        "metadata.name".into(),
                        n.clone(),
                        "<missing>",
                    )
                });
                let (violations, restricted) = finder.finish();
                refused.extend(restricted);
                if violations.is_empty() {
                    continue;
                }
                let f = out.entry(n.as_str()).or_insert_with(|| DesiredFinding {
                    namespace: ns.to_owned(),
                    name: n.clone(),
                    subject: Subject::cronjob(ns, n, None),
                    severity: Severity::Info,
                    violations: Vec::new(),
                    observed: None,
                    baselines: Vec::new(),
                    owner: None,
                    suspend_by: None,
                    actor: None,
                });
                f.violations.extend(violations);
                f.severity = max_severity(&f.violations);
                f.baselines.push(e.baseline.clone());
                if e.tier == Tier::Namespace || f.owner.is_none() {
                    f.owner = e.owner.clone().or(f.owner.take());
                }
            }
        }
    }
    (out.into_values().collect(), refused)
}

/// Every image (containers, initContainers) matches a pattern,
/// and is pinned by digest where the entry requires it.
pub fn images(ctx: &Ctx, e: &CompiledEntry, f: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
    if e.images.is_empty() && !e.require_digest {
        return;
    }
    let approved_by = e.label();
    for (path, name, raw) in pod.image_sites() {
        let image = ctx.engine.images.get(raw);
        if !e.images.is_empty() && !e.images.iter().any(|p| p.matches(&image)) {
            f.push(
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
                None,
                format!(
                    "container {name} image {raw} is not pinned by digest, required by {approved_by}"
                ),
                format!("{path}.image"),
                "an image pinned by @sha256 digest",
                raw.to_owned(),
            );
        }
    }
}

pub fn service_account(ctx: &Ctx, e: &CompiledEntry, f: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
    if e.service_accounts.is_empty() {
        return;
    }
    let sa = pod.service_account.as_str();
    if !e.service_accounts.iter().any(|s| s == sa) {
        f.push(
            None,
            format!("service account {sa} is not approved by {}", e.label()),
            format!("{POD_PATH}.serviceAccountName"),
            e.service_accounts.join(" | "),
            sa.to_owned(),
        );
    }
}

/// `command` + `args` of a container as one line, for messages.
pub fn command_line(c: &ContainerView) -> String {
    c.command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Each container's command and args equal one approved for its name; an
/// omitted approved `command`/`args` means the container must not set it.
pub fn commands(ctx: &Ctx, e: &CompiledEntry, f: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
    if e.commands.is_empty() {
        return;
    }
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
        if ok {
            continue;
        }
        let actual = command_line(c);
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
            None,
            format!(
                "container {} runs {:?}, not approved by {}",
                c.name,
                if actual.is_empty() {
                    "<image default>"
                } else {
                    actual.as_str()
                },
                e.label()
            ),
            format!("{path}.command"),
            expected,
            actual,
        );
    }
}

pub fn template_hash(ctx: &Ctx, e: &CompiledEntry, f: &mut Finder) {
    let Some(pod) = &ctx.cj.pod else { return };
    if let Some(pinned) = &e.template_hash
        && &pod.template_hash != pinned
    {
        let hash = &pod.template_hash;
        f.push(
            None,
            format!(
                "pod template hash {hash} differs from the templateHash pinned by {}",
                e.label()
            ),
            "spec.jobTemplate.spec.template".into(),
            pinned.clone(),
            hash.clone(),
        );
    }
}

/// Every manager owning spec fields is among the entry's managers.
pub fn deploy_path(ctx: &Ctx, e: &CompiledEntry, f: &mut Finder) {
    if e.managers.is_empty() {
        return;
    }
    for m in &ctx.cj.managers {
        if !e.managers.iter().any(|a| a == &m.manager) {
            f.push(
                None,
                format!(
                    "field manager {} ({}) changed the spec; {} approves only {}",
                    m.manager,
                    m.operation,
                    e.label(),
                    e.managers.join(", ")
                ),
                "metadata.managedFields".into(),
                e.managers.join(" | "),
                m.manager.clone(),
            );
        }
    }
}
