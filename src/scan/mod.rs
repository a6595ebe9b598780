//! `cronwarden scan`: manifests → inventory → engine → rendered findings.

pub mod openreports;
pub mod render;

use std::path::PathBuf;

use crate::api::Severity;
use crate::engine::{DesiredFinding, Engine, Evaluation, Tier};
use crate::manifest::{InputError, Loaded, Source};

pub use render::{Format, render};

/// Exit codes of `scan` (SPEC 7).
pub const EXIT_CLEAN: i32 = 0;
pub const EXIT_FINDINGS: i32 = 1;
pub const EXIT_BAD_INPUT: i32 = 2;

pub struct ScanResult {
    pub loaded: Loaded,
    pub evaluation: Evaluation,
    /// Input errors, including baselines the engine rejected.
    pub errors: Vec<InputError>,
}

impl ScanResult {
    /// 2 on bad input, else 1 when a finding is at or above `fail_on`, else 0
    /// (`audit` answers the same way).
    pub fn exit_code(&self, fail_on: Severity) -> i32 {
        if !self.errors.is_empty() {
            EXIT_BAD_INPUT
        } else if self
            .evaluation
            .findings
            .iter()
            .any(|f| f.severity >= fail_on)
        {
            EXIT_FINDINGS
        } else {
            EXIT_CLEAN
        }
    }

    /// Where a finding's CronJob was read from; for a missing CronJob, the
    /// baseline that requires it.
    pub fn source_of(&self, finding: &DesiredFinding) -> Option<&Source> {
        if finding.subject.kind == "Job" {
            return self
                .loaded
                .inventory
                .jobs
                .iter()
                .position(|j| j.namespace == finding.namespace && j.name == finding.subject.name)
                .and_then(|i| self.loaded.job_sources.get(i));
        }
        self.loaded
            .inventory
            .cronjobs
            .iter()
            .position(|c| c.namespace == finding.namespace && c.name == finding.name)
            .and_then(|i| self.loaded.cronjob_sources.get(i))
            .or_else(|| {
                finding
                    .baselines
                    .first()
                    .and_then(|b| self.loaded.baseline_sources.get(b))
            })
    }
}

/// Scan `paths`; with `baselines` (SPEC 8, `--baselines`), baselines,
/// Namespaces and RBAC objects come from there alone and those in `paths`
/// are ignored and counted.
pub fn scan_paths(engine: &Engine, paths: &[PathBuf], baselines: &[PathBuf]) -> ScanResult {
    let mut loaded = Loaded::read_paths(paths);
    if !baselines.is_empty() {
        loaded = loaded.with_trusted(Loaded::read_paths(baselines));
    }
    scan_loaded(engine, loaded)
}

pub fn scan_loaded(engine: &Engine, loaded: Loaded) -> ScanResult {
    let evaluation = engine.evaluate(&loaded.inventory);
    let mut errors = loaded.errors.clone();
    // An invalid baseline is bad input for scan (the API server would
    // accept it, but it approves nothing); a refused relaxation is shown
    // under the table, like the controller's Restricted condition.
    for b in &evaluation.baselines {
        for p in &b.problems {
            let key = b.key();
            let source = loaded
                .baseline_sources
                .get(&key)
                .cloned()
                .unwrap_or_else(|| Source::file("<unknown>"));
            errors.push(InputError {
                location: source,
                object: Some(match b.tier {
                    Tier::Cluster => key.clone(),
                    Tier::Namespace => format!("CronJobBaseline {key}"),
                }),
                field: Some(field_of_problem(&p.message)),
                message: format!("{} ({})", p.message, p.reason),
            });
        }
    }
    ScanResult {
        loaded,
        evaluation,
        errors,
    }
}

/// `spec.approved[i]` from a problem message naming `approved[i]`.
fn field_of_problem(message: &str) -> String {
    message
        .find("approved[")
        .and_then(|i| {
            message[i..]
                .find(']')
                .map(|j| format!("spec.{}", &message[i..=i + j]))
        })
        .unwrap_or_else(|| "spec".into())
}
