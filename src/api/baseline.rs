//! The two baseline tiers (SPEC 2.1): `ClusterCronJobBaseline`, the
//! platform's guardrails over the namespaces it selects, and
//! `CronJobBaseline`, a team's approved CronJobs in its own namespace.
//! Both share the entry format; only the cluster kind selects namespaces.
// Each `printcolumn(...)` repeats `type_`/`json_path`: not a duplicate.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::{Rule, Severity};

/// A pattern that `time.ParseDuration`-style durations (`90s`, `15m`, `1h30m`) match.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cronwarden.io",
    version = "v1alpha1",
    kind = "CronJobBaseline",
    namespaced,
    status = "CronJobBaselineStatus",
    shortname = "cjb",
    category = "cronwarden",
    doc = "A team's approved CronJobs: governs its own namespace only (the namespace tier).",
    printcolumn(
        name = "Entries",
        type_ = "integer",
        json_path = ".status.entries",
        description = "approved entries"
    ),
    printcolumn(
        name = "Matched",
        type_ = "integer",
        json_path = ".status.matchedCronJobs",
        description = "CronJobs matched by an entry"
    ),
    printcolumn(
        name = "Open Findings",
        type_ = "integer",
        json_path = ".status.openFindings"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.approved.all(e, !has(e.namespaces))").message("namespaces is only allowed on ClusterCronJobBaseline entries: a CronJobBaseline governs its own namespace"))]
pub struct CronJobBaselineSpec {
    /// What to do with CronJobs that match no entry.
    #[serde(default)]
    pub unapproved: Unapproved,
    /// Detect only, or also suspend offending CronJobs (needs the controller's consent).
    #[serde(default)]
    pub enforcement: Enforcement,
    /// The approved CronJobs.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub approved: Vec<ApprovedEntry>,
}

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cronwarden.io",
    version = "v1alpha1",
    kind = "ClusterCronJobBaseline",
    status = "CronJobBaselineStatus",
    shortname = "ccjb",
    category = "cronwarden",
    doc = "The platform's approved CronJobs and guardrails for the namespaces its namespaceSelector selects (the cluster tier).",
    printcolumn(
        name = "Selector",
        type_ = "string",
        json_path = ".spec.namespaceSelector",
        description = "namespaces governed (empty: every namespace)"
    ),
    printcolumn(
        name = "Entries",
        type_ = "integer",
        json_path = ".status.entries",
        description = "approved entries"
    ),
    printcolumn(
        name = "Matched",
        type_ = "integer",
        json_path = ".status.matchedCronJobs",
        description = "CronJobs matched by an entry"
    ),
    printcolumn(
        name = "Open Findings",
        type_ = "integer",
        json_path = ".status.openFindings"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterCronJobBaselineSpec {
    /// The namespaces this baseline governs, by their labels; omitted =
    /// every namespace. An invalid selector governs nothing and makes the
    /// baseline Accepted=False.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// What to do with CronJobs that match no entry of the cluster tier.
    #[serde(default)]
    pub unapproved: Unapproved,
    /// Detect only, or also suspend offending CronJobs (needs the controller's consent).
    #[serde(default)]
    pub enforcement: Enforcement,
    /// The approved CronJobs.
    #[serde(default)]
    #[schemars(length(max = 10000))]
    pub approved: Vec<ApprovedEntry>,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Unapproved {
    #[default]
    Report,
    Ignore,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum Enforcement {
    #[default]
    Detect,
    Suspend,
}

/// One approved CronJob, or a family of them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.name), has(self.namePattern), has(self.selector)].filter(x, x).size() == 1").message("exactly one of name, namePattern or selector must be set"))]
#[x_kube(validation = Rule::new("!has(self.required) || !self.required || has(self.name)").message("required is only allowed on entries with a name"))]
pub struct ApprovedEntry {
    /// Exact CronJob name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Glob over CronJob names (`report-*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name_pattern: Option<String>,
    /// Label selector over CronJob labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// Name entries only: report ApprovedCronJobMissing when no such CronJob exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// Allowed schedules (macros are expanded before comparison); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<String>,
    /// Allowed `spec.timeZone` values; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_zones: Vec<String>,
    /// The schedule must not fire more often than this; also replaces the
    /// global HighFrequencySchedule threshold for matched CronJobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$"))]
    pub min_interval: Option<String>,
    /// Allowed image patterns (globs over normalised references); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Images must be pinned by digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_digest: Option<bool>,
    /// Allowed service accounts; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_account_names: Vec<String>,
    /// Allowed command and args per container; empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<ApprovedCommand>,
    /// Strict pin of the security-relevant pod template (`cronwarden baseline snapshot --pin-template`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub template_hash: Option<String>,
    /// Allowed deployment paths (field managers that own spec fields); empty = any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<String>,
    /// Informational, copied into findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Heuristic rules not reported for the CronJobs this entry matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::api::catalogue::waive_schema")]
    pub waive: Vec<Rule>,
    /// Severity per rule ID for the CronJobs this entry matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::api::catalogue::severity_overrides_schema")]
    pub severity_overrides: BTreeMap<Rule, Severity>,
    /// ClusterCronJobBaseline only: the entry applies in these namespaces
    /// alone (exact names). Needed for relaxations of violations above
    /// medium, and makes the entry a scoped exception that replaces the
    /// cluster tier's other guardrails there (SPEC 2.2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "namespaces_schema")]
    pub namespaces: Vec<String>,
}

/// Schema of an entry's `namespaces`: namespace names (DNS-1123 labels),
/// unique, so a typo is refused at apply time.
fn namespaces_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 1000,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 63,
            "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        },
    })
}

/// The approved command line of one container. An omitted `command` or
/// `args` means the container must not set it (the image default runs).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovedCommand {
    #[schemars(length(min = 1))]
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronJobBaselineStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub entries: i32,
    #[serde(default)]
    pub governed_namespaces: i32,
    #[serde(default)]
    pub matched_cron_jobs: i32,
    #[serde(default)]
    pub open_findings: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Events of past transitions not yet written (SPEC 4: at least once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_events: Vec<super::PendingEvent>,
}
