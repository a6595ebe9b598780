//! `CronJobFinding`: the durable record of a CronJob's deviations (SPEC 2.2).
// Each `printcolumn(...)` repeats `type_`/`json_path`: not a duplicate.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Rule, Severity};

#[derive(CustomResource, JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "cronwarden.io",
    version = "v1alpha1",
    kind = "CronJobFinding",
    namespaced,
    status = "CronJobFindingStatus",
    shortname = "cjf",
    category = "cronwarden",
    doc = "Deviations of one CronJob from its approved baseline and from safe defaults.",
    printcolumn(name = "Severity", type_ = "string", json_path = ".status.severity"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Rules", type_ = "string", json_path = ".status.rules"),
    printcolumn(
        name = "Baseline",
        type_ = "string",
        json_path = ".status.baselines[*]"
    ),
    printcolumn(name = "Actor", type_ = "string", json_path = ".status.actor.user"),
    printcolumn(name = "Ack", type_ = "string", json_path = ".spec.acknowledgement.by"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CronJobFindingSpec {
    pub subject: Subject,
    /// Written by a human (`kubectl edit`/`patch`); the controller never changes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledgement: Option<Acknowledgement>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Empty for an approved CronJob that is missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl Subject {
    /// A batch/v1 CronJob; `uid` is None for an approved CronJob that is missing.
    pub fn cronjob(namespace: &str, name: &str, uid: Option<String>) -> Subject {
        Subject {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            uid,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Acknowledgement {
    #[schemars(length(min = 1))]
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum FindingState {
    #[default]
    Open,
    Resolved,
}

impl FindingState {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingState::Open => "Open",
            FindingState::Resolved => "Resolved",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CronJobFindingStatus {
    pub state: FindingState,
    /// Highest severity among the open violations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Comma-separated rule IDs, for the printer column.
    #[serde(default)]
    pub rules: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Observed>,
    /// Who made the write the evidence reflects, from the audit log
    /// (SPEC 2.4); absent without an audit source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitre: Option<Mitre>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Events of past transitions not yet written (SPEC 4: at least once):
    /// kept here, durably, until the API server has each of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_events: Vec<PendingEvent>,
}

/// An Event a transition owes, recorded in the finding's status until it is
/// written. Its name is fixed when the transition happens, so writing it
/// again after a crash or a leader change finds it (409) instead of
/// duplicating it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingEvent {
    /// The Event object's name (in the subject's namespace).
    pub name: String,
    /// Warning or Normal.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub action: String,
    pub note: String,
    /// The subject's uid when the transition happened: the Event's
    /// `regarding` is the finding's subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regarding_uid: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    pub rule: Rule,
    pub severity: Severity,
    #[schemars(length(max = 1024))]
    pub message: String,
    /// The baseline entry that produced it (`payments/payments[3]`,
    /// `ClusterCronJobBaseline/platform[0]`), or the baselines of the tier
    /// for NotInBaseline; empty for heuristics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 1024))]
    pub baseline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
}

/// The evidence: what the live CronJob looked like when evaluated.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub suspend: bool,
    #[serde(default)]
    pub images: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<ManagerRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<Time>,
}

/// Who made a write, as the API server's audit log recorded it (SPEC 2.4).
/// Unlike managedFields, nothing in it is chosen by the client except
/// `userAgent`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// The authenticated caller (when impersonating, the real caller).
    pub user: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Set when the request impersonated someone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub impersonated_groups: Vec<String>,
    #[serde(default, rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// create, update, patch (or delete).
    pub verb: String,
    #[serde(default, rename = "auditID", skip_serializing_if = "Option::is_none")]
    pub audit_id: Option<String>,
    /// When the API server completed the write (the audit event's stageTimestamp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// `exact`: the audited write produced the evidence (its response
    /// object carries the observed resourceVersion, or the observed uid and
    /// generation); `nearest`: the latest write before the evidence was
    /// observed.
    #[serde(rename = "match")]
    pub match_: ActorMatch,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActorMatch {
    #[default]
    Exact,
    Nearest,
}

impl Actor {
    /// The Event note suffix (SPEC 4): `by alice from 10.0.3.7 (kubectl/v1.36.2)`;
    /// under impersonation `by alice as bob …`.
    pub fn describe(&self) -> String {
        let mut s = format!("by {}", self.user);
        if let Some(u) = &self.impersonated_user {
            s.push_str(" as ");
            s.push_str(u);
        }
        if let Some(ip) = self.source_ips.first() {
            s.push_str(" from ");
            s.push_str(ip);
        }
        if let Some(agent) = self
            .user_agent
            .as_deref()
            .and_then(|a| a.split_whitespace().next())
        {
            s.push_str(" (");
            s.push_str(agent);
            s.push(')');
        }
        s
    }
}

/// A field manager that owns fields under `spec` (SPEC 3.4).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagerRef {
    pub manager: String,
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Mitre {
    pub technique: String,
    pub tactics: Vec<String>,
}

impl Mitre {
    pub fn t1053_007() -> Self {
        Mitre {
            technique: "T1053.007".into(),
            tactics: vec![
                "execution".into(),
                "persistence".into(),
                "privilege-escalation".into(),
            ],
        }
    }
}
