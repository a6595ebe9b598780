//! `cronwarden baseline snapshot`: baselines (CronJobBaselines, or with
//! `--cluster` ClusterCronJobBaselines) that approve exactly the CronJobs
//! given, so a team or the platform starts from the current inventory.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use crate::api::{
    ApprovedCommand, ApprovedEntry, ClusterCronJobBaseline, ClusterCronJobBaselineSpec,
    CronJobBaseline, CronJobBaselineSpec,
};
use crate::engine::CronJobView;
use crate::engine::normalize::{ImageRef, template_hash};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageMode {
    /// Images exactly as found (tag and digest).
    #[default]
    Exact,
    /// Repository only: any tag or digest of it is approved.
    Repository,
}

#[derive(Clone, Debug, Default)]
pub struct SnapshotOptions {
    pub name: String,
    pub images: ImageMode,
    pub pin_template: bool,
    pub required: bool,
    pub managers: bool,
}

/// One baseline per namespace, entries sorted by CronJob name. The same
/// namespace/name seen more than once (overlays, a manifest in two files)
/// yields one entry approving the union of what was seen (SPEC 8).
pub fn snapshot(cronjobs: &[&CronJobView], opts: &SnapshotOptions) -> Vec<CronJobBaseline> {
    let mut by_ns: BTreeMap<&str, BTreeMap<&str, Vec<&CronJobView>>> = BTreeMap::new();
    for cj in cronjobs {
        by_ns
            .entry(cj.namespace.as_str())
            .or_default()
            .entry(cj.name.as_str())
            .or_default()
            .push(cj);
    }
    by_ns
        .into_iter()
        .map(|(ns, by_name)| CronJobBaseline {
            metadata: ObjectMeta {
                name: Some(opts.name.clone()),
                namespace: Some(ns.to_owned()),
                ..Default::default()
            },
            spec: CronJobBaselineSpec {
                approved: by_name
                    .into_values()
                    .map(|copies| merged(&copies, opts))
                    .collect(),
                ..Default::default()
            },
            status: None,
        })
        .collect()
}

/// One entry for every copy of a CronJob: lists are unions; a template
/// pin only when every copy has the same template (one entry holds one
/// hash, and pinning one copy would flag the others).
fn merged(copies: &[&CronJobView], opts: &SnapshotOptions) -> ApprovedEntry {
    let mut entries = copies.iter().map(|c| entry(c, opts));
    let mut out = entries.next().unwrap_or_default();
    for e in entries {
        union(&mut out.schedules, e.schedules);
        union(&mut out.time_zones, e.time_zones);
        union(&mut out.images, e.images);
        union(&mut out.service_account_names, e.service_account_names);
        union(&mut out.commands, e.commands);
        union(&mut out.managers, e.managers);
        if out.template_hash != e.template_hash {
            out.template_hash = None;
        }
    }
    out.images.sort();
    out
}

fn union<T: PartialEq>(into: &mut Vec<T>, more: Vec<T>) {
    for m in more {
        if !into.contains(&m) {
            into.push(m);
        }
    }
}

fn entry(cj: &CronJobView, opts: &SnapshotOptions) -> ApprovedEntry {
    let pod = cj.pod.as_ref();
    let mut images: Vec<String> = cj
        .images()
        .into_iter()
        .map(|i| match opts.images {
            ImageMode::Exact => i,
            ImageMode::Repository => {
                let r = ImageRef::parse(&i);
                if r.valid { r.repository } else { i }
            }
        })
        .collect();
    images.sort();
    images.dedup();
    let commands = pod
        .map(|p| {
            p.containers()
                .map(|(_, c)| ApprovedCommand {
                    container: c.name.clone(),
                    command: c.command.clone().filter(|v| !v.is_empty()),
                    args: c.args.clone().filter(|v| !v.is_empty()),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut managers: Vec<String> = if opts.managers {
        cj.managers.iter().map(|m| m.manager.clone()).collect()
    } else {
        Vec::new()
    };
    managers.dedup();
    ApprovedEntry {
        name: Some(cj.name.clone()),
        required: opts.required.then_some(true),
        schedules: vec![cj.schedule.clone()],
        time_zones: cj.time_zone.clone().into_iter().collect(),
        images,
        service_account_names: pod
            .map(|p| vec![p.service_account.clone()])
            .unwrap_or_default(),
        commands,
        template_hash: opts
            .pin_template
            .then(|| pod.map_or_else(|| template_hash(None), |p| p.template_hash.clone())),
        managers,
        ..Default::default()
    }
}

/// The same approvals as ClusterCronJobBaselines (`--cluster`), for the
/// platform tier: one per namespace, named `<name>-<namespace>`, selecting
/// that namespace by its `kubernetes.io/metadata.name` label, and each
/// entry naming it in `namespaces` (SPEC 2.2): a snapshot learns what runs
/// where, so the approval of `backup` in `payments` must never match a
/// CronJob a tenant names `backup` elsewhere, even if the selector is later
/// widened or the entries copied into a shared baseline. Such an entry is
/// a scoped exception: in its namespace it replaces the cluster tier's
/// other guardrails, which is what approving the CronJob as found means.
pub fn to_cluster(baselines: Vec<CronJobBaseline>) -> Vec<ClusterCronJobBaseline> {
    baselines
        .into_iter()
        .map(|b| {
            let ns = b.metadata.namespace.unwrap_or_default();
            ClusterCronJobBaseline {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{ns}", b.metadata.name.unwrap_or_default())),
                    ..Default::default()
                },
                spec: ClusterCronJobBaselineSpec {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            ns.clone(),
                        )])),
                        ..Default::default()
                    }),
                    unapproved: b.spec.unapproved,
                    enforcement: b.spec.enforcement,
                    approved: b
                        .spec
                        .approved
                        .into_iter()
                        .map(|e| ApprovedEntry {
                            namespaces: vec![ns.clone()],
                            ..e
                        })
                        .collect(),
                },
                status: None,
            }
        })
        .collect()
}

/// YAML stream of the baselines.
pub fn to_yaml<T: serde::Serialize>(baselines: &[T]) -> String {
    let mut out = String::new();
    for b in baselines {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(b).unwrap_or_default());
    }
    out
}
