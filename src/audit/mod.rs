//! Kubernetes audit events (`audit.k8s.io/v1`): who wrote a CronJob or a
//! Job (SPEC 2.4, 7).
//!
//! Three sources feed the same parser: `cronwarden audit` over log files
//! ([`offline`]), and in the controller a followed log file ([`follow`])
//! and the API server's audit webhook ([`webhook`]). What they read is
//! classified here into writes of the batch group's `cronjobs` and `jobs`;
//! the controller keeps the last few per object ([`store`]) and attributes
//! findings to them.
//!
//! Decisions:
//! - Only writes to the resource itself count: a `status` subresource write
//!   (the cronjob and job controllers' bookkeeping) cannot change what the
//!   rules read, so it never becomes the actor.
//! - Dry-run requests (`dryRun=All`) persist nothing: they are counted, not
//!   attributed and not evaluated.
//! - A failed request (code ≥ 400) changed nothing: counted, no finding.
//! - Lines are pre-filtered on the bytes `jobs"` before JSON parsing: every
//!   event about `cronjobs` or `jobs` carries that string as the API server
//!   writes it (Go's encoder never escapes ASCII letters), so the other
//!   events of a busy log cost one substring search. A skipped line is not
//!   validated; a kept line that is not an audit event is reported.

pub mod follow;
pub mod offline;
pub mod sink;
pub mod store;
pub mod webhook;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde::Deserialize;
use serde_json::Value;

use crate::api::{Actor, ActorMatch};

/// The bytes every event about `cronjobs` or `jobs` contains.
pub const PREFILTER: &[u8] = b"jobs\"";

/// A line longer than this is refused without parsing (the API server's
/// own request limit is 3 MiB; a RequestResponse event carries two objects).
pub const MAX_LINE: usize = 16 << 20;

/// What an audit event holds that cronwarden reads.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub level: String,
    #[serde(default, rename = "auditID")]
    pub audit_id: String,
    #[serde(default)]
    pub stage: String,
    #[serde(default, rename = "requestURI")]
    pub request_uri: String,
    #[serde(default)]
    pub verb: String,
    #[serde(default)]
    pub user: UserInfo,
    #[serde(default)]
    pub impersonated_user: Option<UserInfo>,
    #[serde(default, rename = "sourceIPs")]
    pub source_ips: Vec<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    #[serde(default)]
    pub request_object: Option<Value>,
    #[serde(default)]
    pub response_object: Option<Value>,
    #[serde(default)]
    pub request_received_timestamp: Option<String>,
    #[serde(default)]
    pub stage_timestamp: Option<String>,
    /// Set when the line is an `EventList` (the webhook's batch body).
    #[serde(default)]
    pub items: Option<Vec<AuditEvent>>,
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub api_group: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub subresource: String,
}

#[derive(Deserialize, Debug, Default, Clone)]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: Option<i32>,
}

/// Parse one line: an `Event` or an `EventList`, flattened to events.
pub fn parse_line(line: &[u8]) -> Result<Vec<AuditEvent>, String> {
    if line.len() > MAX_LINE {
        return Err(format!(
            "line of {} bytes is over the {} MiB limit",
            line.len(),
            MAX_LINE >> 20
        ));
    }
    let mut ev: AuditEvent =
        serde_json::from_slice(line).map_err(|e| format!("not an audit event: {e}"))?;
    match ev.kind.as_str() {
        "EventList" => Ok(ev.items.take().unwrap_or_default()),
        "Event" => Ok(vec![ev]),
        "" => Err("not an audit event: no kind".into()),
        k => Err(format!("not an audit event: kind {k:?}")),
    }
}

/// Whether a line can hold an event about CronJobs or Jobs.
pub fn may_concern_jobs(finder: &memchr::memmem::Finder, line: &[u8]) -> bool {
    finder.find(line).is_some()
}

/// Which of the two kinds a write is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubjectKind {
    CronJob,
    Job,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::CronJob => "CronJob",
            SubjectKind::Job => "Job",
        }
    }
}

/// A successful write of a CronJob or Job, as the audit event shows it.
#[derive(Clone, Debug)]
pub struct AuditWrite {
    pub kind: SubjectKind,
    pub namespace: String,
    pub name: String,
    /// The caller; `match_` is set when the write is attributed.
    pub actor: Actor,
    /// The object as stored (the response object), else the request body
    /// of a create or update. None at `Metadata` level, for a patch at
    /// `Request` level, and for deletes.
    pub object: Option<Value>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: Option<i64>,
    pub deleted: bool,
}

/// What one audit event is to cronwarden.
#[derive(Debug)]
pub enum Classified {
    /// Not about batch cronjobs/jobs, not a write, or not the final stage.
    Other,
    /// A write the API server refused (code ≥ 400), with the code.
    Failed(i32),
    /// A write to a subresource (`status`): not the subject's evidence.
    Subresource,
    /// A dry run: nothing was persisted.
    DryRun,
    Write(Box<AuditWrite>),
}

impl AuditEvent {
    pub fn classify(self) -> Classified {
        let Some(r) = &self.object_ref else {
            return Classified::Other;
        };
        let kind = match (r.api_group.as_str(), r.resource.as_str()) {
            ("batch", "cronjobs") => SubjectKind::CronJob,
            ("batch", "jobs") => SubjectKind::Job,
            _ => return Classified::Other,
        };
        let deleted = match self.verb.as_str() {
            "create" | "update" | "patch" => false,
            "delete" | "deletecollection" => true,
            _ => return Classified::Other,
        };
        // Log and webhook backends also send RequestReceived (and Panic)
        // unless the policy omits them; only the completed request says
        // what happened.
        if self.stage != "ResponseComplete" {
            return Classified::Other;
        }
        if let Some(code) = self.response_status.as_ref().and_then(|s| s.code)
            && code >= 400
        {
            return Classified::Failed(code);
        }
        if !r.subresource.is_empty() {
            return Classified::Subresource;
        }
        if is_dry_run(&self.request_uri) {
            return Classified::DryRun;
        }
        let object = if deleted {
            None
        } else {
            object_of(kind, self.response_object, self.request_object, &self.verb)
        };
        let meta = object.as_ref().and_then(|o| o.get("metadata"));
        let text = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let name = if r.name.is_empty() {
            text("name").unwrap_or_default()
        } else {
            r.name.clone()
        };
        let namespace = if r.namespace.is_empty() {
            text("namespace").unwrap_or_default()
        } else {
            r.namespace.clone()
        };
        let uid = text("uid").or_else(|| r.uid.clone());
        let resource_version = text("resourceVersion").or_else(|| r.resource_version.clone());
        let generation = meta
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64);
        let (impersonated_user, impersonated_groups) = match self.impersonated_user {
            Some(u) => (Some(u.username), u.groups),
            None => (None, Vec::new()),
        };
        let actor = Actor {
            user: self.user.username,
            groups: self.user.groups,
            impersonated_user,
            impersonated_groups,
            source_ips: self.source_ips,
            user_agent: self.user_agent,
            verb: self.verb,
            audit_id: (!self.audit_id.is_empty()).then_some(self.audit_id),
            time: self
                .stage_timestamp
                .or(self.request_received_timestamp)
                .and_then(|t| t.parse().ok())
                .map(Time),
            match_: ActorMatch::Exact,
        };
        Classified::Write(Box::new(AuditWrite {
            kind,
            namespace,
            name,
            actor,
            object,
            uid,
            resource_version,
            generation,
            deleted,
        }))
    }
}

/// `dryRun=All` in the query string (the only value the API accepts).
fn is_dry_run(uri: &str) -> bool {
    uri.split_once('?').is_some_and(|(_, q)| {
        q.split('&').any(|kv| {
            kv.split_once('=')
                .is_some_and(|(k, v)| k == "dryRun" && !v.is_empty())
        })
    })
}

/// The object a write left: the response (as stored, defaults applied),
/// else the request body of a create or update (a patch body is not an
/// object). Only a whole object of the expected kind is taken.
fn object_of(
    kind: SubjectKind,
    response: Option<Value>,
    request: Option<Value>,
    verb: &str,
) -> Option<Value> {
    let whole = |v: &Value| v.get("kind").and_then(Value::as_str) == Some(kind.as_str());
    if let Some(r) = response.filter(whole) {
        return Some(r);
    }
    if verb == "patch" {
        return None;
    }
    request.filter(whole)
}

impl AuditWrite {
    /// `namespace/name` as tables print it.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_is_read_from_the_query() {
        assert!(is_dry_run(
            "/apis/batch/v1/namespaces/a/cronjobs?dryRun=All"
        ));
        assert!(is_dry_run(
            "/apis/batch/v1/namespaces/a/cronjobs?fieldManager=x&dryRun=All"
        ));
        assert!(!is_dry_run(
            "/apis/batch/v1/namespaces/a/cronjobs?fieldManager=dryRun"
        ));
        assert!(!is_dry_run(
            "/apis/batch/v1/namespaces/a/cronjobs/dryRun=All"
        ));
    }

    #[test]
    fn a_line_that_is_not_an_event_is_an_error() {
        assert!(parse_line(b"{\"kind\":\"Pod\"}").is_err());
        assert!(parse_line(b"{").is_err());
        assert!(parse_line(b"[]").is_err());
        assert!(
            parse_line(b"{\"kind\":\"EventList\",\"items\":[]}")
                .unwrap()
                .is_empty()
        );
    }
}
