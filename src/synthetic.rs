//! A deterministic synthetic inventory for benchmarks and scale tests:
//! `cronjobs` CronJobs in `namespaces` namespaces (in contiguous blocks, the
//! order in which the API server lists them), one baseline per
//! namespace holding `entries / namespaces` entries (mostly exact names, a
//! glob and a selector), and about one CronJob in ten deviating.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::api::{ApprovedEntry, CronJobBaseline, CronJobBaselineSpec};

const SCHEDULES: [&str; 12] = [
    "0 2 * * *",
    "*/15 * * * *",
    "@hourly",
    "30 1 * * 0",
    "0 */6 * * *",
    "5 4 * * 1-5",
    "@daily",
    "0 0 1 * *",
    "*/30 * * * *",
    "45 23 * * *",
    "0 9 * * 1",
    "*/10 * * * *",
];

pub struct Spec {
    pub cronjobs: usize,
    pub namespaces: usize,
    pub entries: usize,
}

fn ns_name(i: usize) -> String {
    format!("team-{i:03}")
}

fn cj_name(i: usize) -> String {
    format!("job-{i:06}")
}

fn per_namespace(spec: &Spec) -> usize {
    spec.cronjobs.div_ceil(spec.namespaces.max(1)).max(1)
}

/// CronJobs as JSON objects (what a manifest or the API server holds).
pub fn cronjobs(spec: &Spec) -> Vec<Value> {
    let per_ns = per_namespace(spec);
    (0..spec.cronjobs)
        .map(|i| {
            let ns = ns_name(i / per_ns);
            let deviant = i % 10 == 7;
            let image = if deviant && i % 20 == 7 {
                format!("ghcr.io/unknown/tool:{}", i % 7)
            } else {
                format!("registry.example.com/{ns}/app-{}:1.{}.0", i % 50, i % 9)
            };
            json!({
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {
                    "name": if deviant && i % 20 == 17 { format!("rogue-{i:06}") } else { cj_name(i) },
                    "namespace": ns,
                    "uid": format!("00000000-0000-0000-0000-{i:012}"),
                    "labels": {"app": format!("app-{}", i % 50), "tier": if i % 3 == 0 { "batch" } else { "report" }},
                },
                "spec": {
                    "schedule": SCHEDULES[i % SCHEDULES.len()],
                    "jobTemplate": {"spec": {"template": {"spec": {
                        "restartPolicy": "OnFailure",
                        "serviceAccountName": if deviant && i % 40 == 37 { "admin" } else { "runner" },
                        "containers": [{
                            "name": "main",
                            "image": image,
                            // A shell script, as most real jobs run, so the
                            // command analysis (parse, data flow) is measured:
                            // 16 distinct scripts across the inventory.
                            "command": ["/bin/sh", "-c"],
                            "args": [format!(
                                "set -e; pg_dump -h db-{} app | gzip | aws s3 cp - s3://backups/app-$(date +%F).gz && curl -fsS http://metrics:9091/ok",
                                i % 16
                            )],
                            "env": [{"name": "MODE", "value": "batch"}],
                        }],
                    }}}},
                },
            })
        })
        .collect()
}

/// One baseline per namespace; entries approve the first CronJobs of each
/// namespace by name, the rest by a glob and a selector.
pub fn baselines(spec: &Spec) -> Vec<CronJobBaseline> {
    let entries = (spec.entries / spec.namespaces.max(1)).max(3);
    let per_ns = per_namespace(spec);
    (0..spec.namespaces)
        .map(|n| {
            let ns = ns_name(n);
            let mut approved: Vec<ApprovedEntry> = (0..entries - 2)
                .map(|k| {
                    let i = n * per_ns + k;
                    ApprovedEntry {
                        name: Some(cj_name(i)),
                        schedules: vec![SCHEDULES[i % SCHEDULES.len()].to_owned()],
                        images: vec![format!("registry.example.com/{ns}/*")],
                        service_account_names: vec!["runner".into()],
                        min_interval: Some("5m".into()),
                        owner: Some(format!("owner-{n}")),
                        ..Default::default()
                    }
                })
                .collect();
            approved.push(ApprovedEntry {
                name_pattern: Some("job-*".into()),
                images: vec![format!("registry.example.com/{ns}/*")],
                service_account_names: vec!["runner".into()],
                ..Default::default()
            });
            approved.push(ApprovedEntry {
                selector: Some(
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                        match_labels: Some([("tier".to_owned(), "batch".to_owned())].into()),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            });
            CronJobBaseline {
                metadata: ObjectMeta {
                    name: Some("baseline".into()),
                    namespace: Some(ns),
                    generation: Some(1),
                    ..Default::default()
                },
                spec: CronJobBaselineSpec {
                    approved,
                    ..Default::default()
                },
                status: None,
            }
        })
        .collect()
}

/// The whole inventory as one multi-document YAML stream.
pub fn manifests_yaml(spec: &Spec) -> String {
    let mut out = String::new();
    for b in baselines(spec) {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&b).unwrap_or_default());
    }
    for c in cronjobs(spec) {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&c).unwrap_or_default());
    }
    out
}
