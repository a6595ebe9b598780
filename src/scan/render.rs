//! Output formats of `scan`: table, json, yaml (CronJobFinding objects),
//! SARIF 2.1.0 and OpenReports.

use std::collections::BTreeMap;
use std::fmt::Write;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::ScanResult;
use crate::api::{CronJobFinding, Rule, Severity};
use crate::engine::DesiredFinding;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
    Sarif,
    Openreports,
}

pub fn render(result: &ScanResult, format: Format, now: &Time) -> String {
    match format {
        Format::Table => table(result),
        _ => render_with(result, format, now, |_| now.clone()),
    }
}

/// The object formats, with each finding first seen at `time_of(finding)`
/// (`audit` uses the time of the write).
pub fn render_with(
    result: &ScanResult,
    format: Format,
    now: &Time,
    time_of: impl Fn(&DesiredFinding) -> Time,
) -> String {
    let objects = || -> Vec<CronJobFinding> {
        result
            .evaluation
            .findings
            .iter()
            .map(|f| f.to_object(&time_of(f)))
            .collect()
    };
    match format {
        Format::Table => table(result),
        Format::Json => {
            let list = json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": objects(),
            });
            serde_json::to_string_pretty(&list).unwrap_or_default() + "\n"
        }
        Format::Yaml => {
            let mut out = String::new();
            for o in objects() {
                out.push_str("---\n");
                out.push_str(&serde_saphyr::to_string(&o).unwrap_or_default());
            }
            out
        }
        Format::Sarif => serde_json::to_string_pretty(&sarif(result)).unwrap_or_default() + "\n",
        Format::Openreports => {
            let mut out = String::new();
            for r in super::openreports::reports(result, now) {
                out.push_str("---\n");
                out.push_str(&serde_saphyr::to_string(&r).unwrap_or_default());
            }
            out
        }
    }
}

pub fn objects(result: &ScanResult, now: &Time) -> Vec<CronJobFinding> {
    result
        .evaluation
        .findings
        .iter()
        .map(|f| f.to_object(now))
        .collect()
}

/// Left-aligned columns under a header, trailing blanks trimmed; nothing
/// at all without rows.
pub fn columns<S: AsRef<str>>(headers: &[&str], rows: &[Vec<S>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.as_ref().chars().count());
        }
    }
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let header: Vec<&str> = headers.to_vec();
    let mut line_of = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, c) in cells.enumerate() {
            let _ = write!(line, "{:<w$}  ", c, w = widths[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    line_of(&mut header.iter().copied());
    for r in rows {
        line_of(&mut r.iter().map(|c| c.as_ref()));
    }
    out
}

pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `3 findings with 5 violations (critical: 1, high: 4)`: counted per
/// violation, as a finding (one per subject) holds several.
pub fn findings_summary(findings: &[DesiredFinding]) -> String {
    let mut by_sev: BTreeMap<Severity, usize> = BTreeMap::new();
    let mut violations = 0;
    for f in findings {
        for v in &f.violations {
            *by_sev.entry(v.severity).or_default() += 1;
            violations += 1;
        }
    }
    let counts = Severity::ALL
        .iter()
        .rev()
        .filter_map(|s| by_sev.get(s).map(|n| format!("{s}: {n}")))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{} with {}{}",
        plural(findings.len(), "finding", "findings"),
        plural(violations, "violation", "violations"),
        if counts.is_empty() {
            String::new()
        } else {
            format!(" ({counts})")
        }
    )
}

fn table(result: &ScanResult) -> String {
    let rows: Vec<Vec<&str>> = result
        .evaluation
        .findings
        .iter()
        .flat_map(|f| {
            f.violations.iter().map(move |v| {
                vec![
                    f.namespace.as_str(),
                    f.name.as_str(),
                    v.severity.as_str(),
                    v.rule.as_str(),
                    v.message.as_str(),
                ]
            })
        })
        .collect();
    let mut out = columns(&["NAMESPACE", "NAME", "SEVERITY", "RULE", "MESSAGE"], &rows);
    if !rows.is_empty() {
        out.push('\n');
    }
    let inv = &result.loaded.inventory;
    let jobs = if inv.jobs.is_empty() {
        String::new()
    } else {
        format!(", {}", plural(inv.jobs.len(), "Job", "Jobs"))
    };
    let _ = writeln!(
        out,
        "scanned {}{jobs} and {}: {}",
        plural(inv.cronjobs.len(), "CronJob", "CronJobs"),
        plural(
            inv.baselines.len() + inv.cluster_baselines.len(),
            "baseline",
            "baselines"
        ),
        findings_summary(&result.evaluation.findings),
    );
    let ig = result.loaded.ignored;
    if ig.workloads_in_baselines > 0 {
        let _ = writeln!(
            out,
            "not scanned: {} in the --baselines paths (give them as paths to scan them)",
            plural(
                ig.workloads_in_baselines,
                "CronJob or Job",
                "CronJobs and Jobs"
            ),
        );
    }
    if (ig.baselines, ig.namespaces, ig.rbac) != (0, 0, 0) {
        let _ = writeln!(
            out,
            "ignored in the scanned input (--baselines gives them): {}, {}, {}",
            plural(ig.baselines, "baseline", "baselines"),
            plural(ig.namespaces, "Namespace", "Namespaces"),
            plural(ig.rbac, "RBAC object", "RBAC objects"),
        );
    }
    for b in &result.evaluation.baselines {
        for p in &b.problems {
            let _ = writeln!(out, "baseline {}: {} ({})", b.key(), p.message, p.reason);
        }
        for r in &b.restricted {
            let _ = writeln!(out, "baseline {}: restricted: {r}", b.key());
        }
    }
    out
}

fn sarif(result: &ScanResult) -> Value {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.as_str(),
                "name": r.as_str(),
                "shortDescription": {"text": r.info().title},
                "fullDescription": {"text": r.info().description},
                "defaultConfiguration": {"level": r.default_severity().sarif_level()},
                "properties": {
                    "kind": r.kind().as_str(),
                    "mitre-tactic": r.info().tactic,
                    "security-severity": security_severity(r.default_severity()),
                    "tags": ["security", "kubernetes", "cronjob", "T1053.007"],
                },
            })
        })
        .collect();
    let mut results = Vec::new();
    for f in &result.evaluation.findings {
        let source = result.source_of(f);
        for v in &f.violations {
            let mut location = json!({
                "logicalLocations": [{
                    "fullyQualifiedName": format!("{}/{}", f.namespace, f.name),
                    "kind": "resource",
                }],
            });
            if let Some(s) = source {
                location["physicalLocation"] = json!({
                    "artifactLocation": {"uri": s.file},
                });
            }
            let mut properties = json!({
                "severity": v.severity.as_str(),
                "field": v.field,
                "expected": v.expected,
                "actual": v.actual,
                "baselines": f.baselines,
            });
            if let Some(a) = &f.actor {
                properties["actor"] = json!(a);
            }
            let rule_index = Rule::ALL.iter().position(|r| *r == v.rule).unwrap_or(0);
            results.push(json!({
                "ruleId": v.rule.as_str(),
                "ruleIndex": rule_index,
                "level": v.severity.sarif_level(),
                "message": {"text": format!("[{}] {}", v.severity, v.message)},
                "locations": [location],
                "partialFingerprints": {
                    "cronwarden/v1": format!("{}/{}/{}/{}", f.namespace, f.name, v.rule, v.field.as_deref().unwrap_or("")),
                },
                "properties": properties,
            }));
        }
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "cronwarden",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/cronwarden/cronwarden",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// GitHub code scanning's numeric severity scale.
fn security_severity(s: Severity) -> &'static str {
    match s {
        Severity::Info => "0.0",
        Severity::Low => "3.0",
        Severity::Medium => "5.0",
        Severity::High => "7.5",
        Severity::Critical => "9.5",
    }
}
