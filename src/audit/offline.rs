//! `cronwarden audit [FILE…|-]`: audit log lines (plain or gzip) → the
//! CronJob and Job writes in them → the engine, with the actor on every
//! finding (SPEC 7).
//!
//! Each write is evaluated on its own, as the object it left (the response
//! object at `RequestResponse` level): the log is a history, so the same
//! CronJob written three times gives three verdicts, in log order. Baselines
//! come from `--baselines` manifests. `ApprovedCronJobMissing` is not
//! decided here (a log says what was written, not what exists).
//!
//! Jobs get the template heuristics in a `job.<name>` finding; a Job the
//! cronjob controller created from its CronJob is covered by that CronJob
//! and only counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::Value;

use super::{AuditWrite, Classified, PREFILTER, SubjectKind, parse_line};
use crate::api::Severity;
use crate::engine::jobs::{JobView, lineage};
use crate::engine::{CompiledBaseline, DesiredFinding, Engine, Evaluation, order};
use crate::error::{InputError, Source};
use crate::manifest::Loaded;
use crate::scan::{Format, ScanResult};

/// The service account the cronjob controller writes Jobs as.
const CRONJOB_CONTROLLER: &str = "system:serviceaccount:kube-system:cronjob-controller";

/// Counts for the summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: usize,
    pub lines: u64,
    /// Lines the prefilter skipped (no `jobs"` in them).
    pub skipped: u64,
    pub bad_lines: u64,
    /// Completed events about batch cronjobs/jobs writes.
    pub events: u64,
    pub writes: u64,
    pub deletes: u64,
    pub failed: u64,
    pub subresource: u64,
    pub dry_runs: u64,
    /// Writes whose event carries no object (Metadata level, Request-level patch).
    pub unevaluated: u64,
    /// Jobs the cronjob controller created from their CronJob.
    pub covered_jobs: u64,
}

/// One write of the log, in order, with its verdict.
#[derive(Clone, Debug)]
pub struct Record {
    pub write: AuditWrite,
    pub location: Source,
    /// Index into the evaluation's findings.
    pub finding: Option<usize>,
    /// Why there is no verdict (delete, no object, covered Job).
    pub note: Option<String>,
}

pub struct AuditReport {
    /// Baselines read and the findings, in log order, each with its actor.
    pub scan: ScanResult,
    pub records: Vec<Record>,
    pub counts: Counts,
}

impl AuditReport {
    /// `scan`'s exit codes.
    pub fn exit_code(&self, fail_on: Severity) -> i32 {
        self.scan.exit_code(fail_on)
    }
}

/// The engine and the compiled baselines, reused for every write.
pub struct Auditor<'a> {
    engine: &'a Engine,
    compiled: Vec<CompiledBaseline>,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    finder: memchr::memmem::Finder<'static>,
    pub report: AuditReport,
}

impl<'a> Auditor<'a> {
    /// `baselines`: manifests of either baseline kind (and Namespaces, for
    /// namespaceSelectors); CronJobs in them are ignored.
    pub fn new(engine: &'a Engine, baselines: Loaded) -> Auditor<'a> {
        let crate::scan::ScanResult {
            loaded,
            evaluation,
            errors,
        } = crate::scan::scan_loaded(engine, baselines);
        let inv = &loaded.inventory;
        let compiled = engine.compile_inventory(inv);
        let namespaces = inv.namespaces.clone();
        let report = AuditReport {
            scan: ScanResult {
                loaded,
                evaluation: Evaluation {
                    findings: Vec::new(),
                    baselines: evaluation.baselines,
                },
                errors,
            },
            records: Vec::new(),
            counts: Counts::default(),
        };
        Auditor {
            engine,
            compiled,
            namespaces,
            finder: memchr::memmem::Finder::new(PREFILTER),
            report,
        }
    }

    /// Read every file (`-` = stdin); a file that cannot be read is bad input.
    pub fn read_paths(&mut self, paths: &[PathBuf]) {
        for p in paths {
            let name = p.display().to_string();
            let result = if p.as_os_str() == "-" {
                self.read(&name, std::io::stdin().lock())
            } else {
                match std::fs::File::open(p) {
                    Ok(f) => self.read(&name, f),
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = result {
                self.report.scan.errors.push(InputError::document(
                    Source::file(name),
                    format!("cannot read: {e}"),
                ));
            }
        }
    }

    /// Read one stream of audit lines, gunzipping when it starts with the
    /// gzip magic.
    pub fn read(&mut self, name: &str, input: impl Read) -> std::io::Result<()> {
        self.report.counts.files += 1;
        let mut buffered = BufReader::with_capacity(1 << 20, input);
        let gz = buffered.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        if gz {
            let d = flate2::bufread::MultiGzDecoder::new(buffered);
            self.lines(name, BufReader::with_capacity(1 << 20, d))
        } else {
            self.lines(name, buffered)
        }
    }

    fn lines(&mut self, name: &str, mut r: impl BufRead) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(1 << 16);
        let mut n = 0u64;
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            n += 1;
            self.report.counts.lines += 1;
            self.line(name, n, &line);
        }
    }

    /// One line: prefilter, parse, classify, evaluate.
    pub fn line(&mut self, file: &str, n: u64, line: &[u8]) {
        if self.finder.find(line).is_none() {
            if !line.iter().all(u8::is_ascii_whitespace) {
                self.report.counts.skipped += 1;
            }
            return;
        }
        let location = |item: Option<usize>| Source {
            file: match item {
                Some(i) => format!("{file}:{n} items[{i}]"),
                None => format!("{file}:{n}"),
            },
            document: 0,
            item: None,
        };
        let events = match parse_line(line) {
            Ok(e) => e,
            Err(why) => {
                self.report.counts.bad_lines += 1;
                self.report
                    .scan
                    .errors
                    .push(InputError::document(location(None), why));
                return;
            }
        };
        let listed = events.len() > 1;
        for (i, ev) in events.into_iter().enumerate() {
            let at = location(listed.then_some(i));
            let c = &mut self.report.counts;
            match ev.classify() {
                Classified::Other => continue,
                Classified::Failed(_) => c.failed += 1,
                Classified::Subresource => c.subresource += 1,
                Classified::DryRun => c.dry_runs += 1,
                Classified::Write(w) => self.write(*w, at),
            }
            self.report.counts.events += 1;
        }
    }

    fn write(&mut self, mut w: AuditWrite, location: Source) {
        let c = &mut self.report.counts;
        let object = w.object.take();
        let mut record = Record {
            write: w,
            location: location.clone(),
            finding: None,
            note: None,
        };
        let w = &record.write;
        if w.deleted {
            c.deletes += 1;
            record.note = Some(format!("{} deleted", w.kind.as_str()));
            self.report.records.push(record);
            return;
        }
        c.writes += 1;
        let Some(object) = object else {
            c.unevaluated += 1;
            record.note = Some("not evaluated: the audit event carries no object (Metadata level, or a patch at Request level)".into());
            self.report.records.push(record);
            return;
        };
        let finding = match w.kind {
            SubjectKind::CronJob => self.cronjob(object, location),
            SubjectKind::Job => self.job(object, &location, w),
        };
        match finding {
            Ok(Some(mut f)) => {
                f.actor = Some(record.write.actor.clone());
                record.finding = Some(self.report.scan.evaluation.findings.len());
                self.report.scan.evaluation.findings.push(f);
            }
            Ok(None) => {}
            Err(note) => record.note = Some(note),
        }
        self.report.records.push(record);
    }

    fn cronjob(
        &mut self,
        object: Value,
        location: Source,
    ) -> Result<Option<DesiredFinding>, String> {
        let mut l = Loaded::default();
        l.add_value(location, object);
        if !l.errors.is_empty() {
            self.report.scan.errors.append(&mut l.errors);
            return Err("not evaluated: the object in the event is not a valid CronJob".into());
        }
        let Some(view) = l.inventory.cronjobs.pop() else {
            return Err("not evaluated: no CronJob in the event".into());
        };
        let ordered = order(&self.compiled);
        let empty = BTreeMap::new();
        let labels = self.namespaces.get(&view.namespace).unwrap_or(&empty);
        let result = self
            .engine
            .evaluate_namespace(&view.namespace, labels, &[&view], &ordered);
        Ok(result
            .findings
            .into_iter()
            .find(|f| f.subject.kind == "CronJob" && f.name == view.name))
    }

    fn job(
        &mut self,
        object: Value,
        location: &Source,
        w: &AuditWrite,
    ) -> Result<Option<DesiredFinding>, String> {
        let job: Job = match serde_path_to_error::deserialize(object) {
            Ok(j) => j,
            Err(e) => {
                let field = e.path().to_string();
                self.report.scan.errors.push(InputError::field(
                    location.clone(),
                    format!("Job {}", w.key()),
                    field,
                    e.into_inner().to_string(),
                ));
                return Err("not evaluated: the object in the event is not a valid Job".into());
            }
        };
        if covered_by_cronjob(&job, &w.actor.user) {
            self.report.counts.covered_jobs += 1;
            return Err("created by the cronjob controller: covered by its CronJob".into());
        }
        // Offline, the CronJob it may claim is not known: a manual run is
        // still named, the template is not checked against anything.
        let job = JobView::from(job);
        let l = lineage(&job, None, None, false);
        Ok(self.engine.evaluate_claimed_job(&job, &l))
    }
}

/// A Job the cronjob controller made from its CronJob: written by that
/// controller, with a controller ownerReference to a CronJob. Anyone else
/// writing such a Job (a forged ownerReference) is evaluated on its own.
fn covered_by_cronjob(job: &Job, user: &str) -> bool {
    user == CRONJOB_CONTROLLER
        && job.metadata.owner_references.iter().flatten().any(|o| {
            o.controller == Some(true) && o.kind == "CronJob" && o.api_version == "batch/v1"
        })
}

/// Run `cronwarden audit` over paths.
pub fn audit_paths(engine: &Engine, baselines: &[PathBuf], paths: &[PathBuf]) -> AuditReport {
    let loaded = Loaded::read_paths(baselines);
    let mut a = Auditor::new(engine, loaded);
    a.read_paths(paths);
    a.report
}

/// Render in the scan formats: table (with ACTOR), json/yaml
/// (CronJobFinding objects, first seen when written), sarif, openreports.
pub fn render(report: &AuditReport, format: Format) -> String {
    match format {
        Format::Table => table(report),
        _ => {
            let now = Time(k8s_openapi::jiff::Timestamp::now());
            crate::scan::render::render_with(&report.scan, format, &now, |f| {
                f.actor
                    .as_ref()
                    .and_then(|a| a.time.clone())
                    .unwrap_or_else(|| now.clone())
            })
        }
    }
}

/// Writes that have no verdict but must be seen (deletes, no object),
/// for the formats that carry only findings: printed on stderr.
pub fn notes(report: &AuditReport) -> Vec<String> {
    report
        .records
        .iter()
        .filter_map(|r| {
            r.note.as_ref().map(|n| {
                format!(
                    "{}: {} {} {} by {}: {n}",
                    r.location,
                    r.write.actor.verb,
                    r.write.kind.as_str(),
                    r.write.key(),
                    r.write.actor.user
                )
            })
        })
        .collect()
}

fn table(report: &AuditReport) -> String {
    let findings = &report.scan.evaluation.findings;
    let mut rows: Vec<Vec<String>> = Vec::new();
    for r in &report.records {
        let actor = r.write.actor.describe();
        let actor = actor.strip_prefix("by ").unwrap_or(&actor).to_owned();
        let name = match r.write.kind {
            SubjectKind::CronJob => r.write.name.clone(),
            SubjectKind::Job => format!("job.{}", r.write.name),
        };
        if let Some(f) = r.finding.and_then(|i| findings.get(i)) {
            for v in &f.violations {
                rows.push(vec![
                    f.namespace.clone(),
                    f.name.clone(),
                    r.write.actor.verb.clone(),
                    v.severity.as_str().into(),
                    v.rule.as_str().into(),
                    actor.clone(),
                    v.message.clone(),
                ]);
            }
        } else if let Some(n) = &r.note {
            rows.push(vec![
                r.write.namespace.clone(),
                name,
                r.write.actor.verb.clone(),
                "-".into(),
                "-".into(),
                actor,
                n.clone(),
            ]);
        }
    }
    let mut out = crate::scan::render::columns(
        &[
            "NAMESPACE",
            "NAME",
            "VERB",
            "SEVERITY",
            "RULE",
            "ACTOR",
            "MESSAGE",
        ],
        &rows,
    );
    if !rows.is_empty() {
        out.push('\n');
    }
    out.push_str(&summary(report));
    out.push('\n');
    out
}

/// `read 3 files, 1200 lines: 40 events about CronJobs and Jobs (…); 12 findings with 20 violations (…)`.
pub fn summary(report: &AuditReport) -> String {
    let c = &report.counts;
    let p = crate::scan::render::plural;
    let mut parts = vec![p(c.writes as usize, "write", "writes")];
    for (n, one, many) in [
        (c.deletes, "delete", "deletes"),
        (c.failed, "failed request", "failed requests"),
        (c.subresource, "status write", "status writes"),
        (c.dry_runs, "dry run", "dry runs"),
        (
            c.unevaluated,
            "write without its object",
            "writes without their object",
        ),
        (
            c.covered_jobs,
            "Job of its CronJob",
            "Jobs of their CronJob",
        ),
    ] {
        if n > 0 {
            parts.push(p(n as usize, one, many));
        }
    }
    let mut s = format!(
        "read {}, {}: {} about CronJobs and Jobs ({})",
        p(c.files, "file", "files"),
        p(c.lines as usize, "line", "lines"),
        p(c.events as usize, "event", "events"),
        parts.join(", ")
    );
    if c.bad_lines > 0 {
        let _ = write!(s, ", {}", p(c.bad_lines as usize, "bad line", "bad lines"));
    }
    let _ = write!(
        s,
        "; {}",
        crate::scan::render::findings_summary(&report.scan.evaluation.findings)
    );
    s
}
