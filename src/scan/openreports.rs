//! `scan -o openreports`: `openreports.io/v1alpha1` `Report` objects, one
//! per namespace, one result per violation, so Policy Reporter and other
//! OpenReports consumers show cronwarden's findings next to other tools'.
//!
//! Fields follow the reports-api types (`apis/openreports.io/v1alpha1`):
//! `source`, `summary`, and per result `policy`, `rule`, `category`,
//! `severity`, `result`, `scored`, `timestamp`, `resources` (the subject,
//! an ObjectReference), `message` and string `properties`. A Report covers
//! a namespace, so the subject of each result is in its `resources`; the
//! Report-level `scope` is the Namespace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::ScanResult;
use crate::api::{FIELD_MANAGER, Severity};

/// The OpenReports `result` of a violation: `fail` from high up (what
/// `scan --fail-on` stops on by default), `warn` below.
pub fn result_of(s: Severity) -> &'static str {
    if s >= Severity::High { "fail" } else { "warn" }
}

/// One Report per namespace with findings, in namespace order.
pub fn reports(result: &ScanResult, now: &Time) -> Vec<Value> {
    let timestamp = json!({
        "seconds": now.0.as_second(),
        "nanos": now.0.subsec_nanosecond(),
    });
    let mut by_ns: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for f in &result.evaluation.findings {
        let subject = json!({
            "apiVersion": f.subject.api_version,
            "kind": f.subject.kind,
            "namespace": f.subject.namespace,
            "name": f.subject.name,
            "uid": f.subject.uid,
        });
        for v in &f.violations {
            let mut properties = BTreeMap::from([
                ("baseline", f.baselines.join(", ")),
                ("field", v.field.clone().unwrap_or_default()),
                ("expected", v.expected.clone().unwrap_or_default()),
                ("actual", v.actual.clone().unwrap_or_default()),
                ("mitreTechnique", "T1053.007".to_owned()),
                ("mitreTactic", v.rule.info().tactic.to_owned()),
            ]);
            if let Some(a) = &f.actor {
                properties.insert("actor", a.describe());
                properties.insert("actorUser", a.user.clone());
                properties.insert("auditID", a.audit_id.clone().unwrap_or_default());
            }
            properties.retain(|_, val| !val.is_empty());
            by_ns.entry(f.namespace.as_str()).or_default().push(json!({
                "source": FIELD_MANAGER,
                "policy": FIELD_MANAGER,
                "rule": v.rule.as_str(),
                "category": v.rule.kind().as_str(),
                "severity": v.severity.as_str(),
                "result": result_of(v.severity),
                "scored": true,
                "timestamp": timestamp,
                "resources": [subject],
                "message": v.message,
                "properties": properties,
            }));
        }
    }
    by_ns
        .into_iter()
        .map(|(ns, results)| {
            let fail = results.iter().filter(|r| r["result"] == "fail").count();
            json!({
                "apiVersion": "openreports.io/v1alpha1",
                "kind": "Report",
                "metadata": {
                    "name": FIELD_MANAGER,
                    "namespace": ns,
                    "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
                },
                "source": FIELD_MANAGER,
                "scope": {"apiVersion": "v1", "kind": "Namespace", "name": ns},
                "summary": {"pass": 0, "fail": fail, "warn": results.len() - fail, "error": 0, "skip": 0},
                "results": results,
            })
        })
        .collect()
}
