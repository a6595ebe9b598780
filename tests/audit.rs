//! `cronwarden audit` and the controller's audit sources over audit events
//! captured from a real kube-apiserver (`tests/fixtures/audit/`, written by
//! `e2e/capture-audit.sh`; its README lists every line).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cronwarden::api::{ActorMatch, Rule, Severity};
use cronwarden::audit::offline::{AuditReport, Auditor, audit_paths, render};
use cronwarden::audit::sink::Sink;
use cronwarden::audit::store::{ActorStore, ObservedRef};
use cronwarden::audit::webhook::{Gate, respond};
use cronwarden::audit::{SubjectKind, parse_line};
use cronwarden::engine::{Engine, Settings};
use cronwarden::manifest::Loaded;
use cronwarden::scan::Format;
use cronwarden::telemetry::Metrics;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use proptest::prelude::*;

const DIR: &str = "tests/fixtures/audit";
const DEPLOYER: &str = "system:serviceaccount:team-a:deployer";

fn fixture(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

fn engine() -> Engine {
    Engine::new(Settings::default()).unwrap()
}

/// A namespace baseline for team-a approving nothing: every CronJob written
/// there is NotInBaseline, so every write has a finding to carry its actor.
fn governing_team_a() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("b.yaml"),
        "apiVersion: cronwarden.io/v1alpha1\nkind: CronJobBaseline\nmetadata: {name: team-a, namespace: team-a}\nspec:\n  approved:\n    - name: nothing-else\n      schedules: [\"@daily\"]\n      images: [\"registry.example.com/*\"]\n",
    )
    .unwrap();
    d
}

fn audit(files: &[&str], baselines: Option<&Path>) -> AuditReport {
    let paths: Vec<PathBuf> = files.iter().map(|f| fixture(f)).collect();
    let b: Vec<PathBuf> = baselines.into_iter().map(Path::to_path_buf).collect();
    audit_paths(&engine(), &b, &paths)
}

fn finding<'a>(
    r: &'a AuditReport,
    name: &str,
    verb: &str,
) -> &'a cronwarden::engine::DesiredFinding {
    r.records
        .iter()
        .filter(|rec| rec.write.name == name && rec.write.actor.verb == verb)
        .find_map(|rec| rec.finding.map(|i| &r.scan.evaluation.findings[i]))
        .unwrap_or_else(|| panic!("no finding for {verb} {name}"))
}

#[test]
fn every_write_of_the_log_is_counted_and_attributed() {
    let b = governing_team_a();
    let r = audit(&["requestresponse.jsonl"], Some(b.path()));
    let c = &r.counts;
    assert_eq!((c.lines, c.skipped, c.bad_lines), (14, 0, 0));
    // 14 events: 8 writes (5 of sa-made, Job manual-1, impersonated,
    // curl-made), 2 deletes, 3 refused (403, 422, 409), 1 status write.
    assert_eq!(
        (c.events, c.writes, c.deletes, c.failed, c.subresource),
        (14, 8, 2, 3, 1)
    );
    assert_eq!((c.unevaluated, c.dry_runs), (0, 0));
    assert!(r.scan.errors.is_empty(), "{:?}", r.scan.errors);

    // The ServiceAccount, by its token.
    let f = finding(&r, "sa-made", "create");
    let a = f.actor.as_ref().unwrap();
    assert_eq!(a.user, DEPLOYER);
    assert!(
        a.groups
            .contains(&"system:serviceaccounts:team-a".to_owned()),
        "{:?}",
        a.groups
    );
    assert_eq!(a.impersonated_user, None);
    assert!(
        a.user_agent
            .as_deref()
            .unwrap()
            .starts_with("kubectl/v1.36.2")
    );
    assert_eq!(a.source_ips, vec!["127.0.0.1".to_owned()]);
    assert!(a.audit_id.as_deref().is_some_and(|id| id.len() == 36));
    assert!(a.time.is_some());
    assert_eq!(a.match_, ActorMatch::Exact);
    assert!(f.rules().contains(&Rule::NotInBaseline));
    // Each later write of it is its own verdict, with its own verb.
    for verb in ["patch", "update"] {
        assert_eq!(
            finding(&r, "sa-made", verb).actor.as_ref().unwrap().verb,
            verb
        );
    }

    // Impersonation: the real caller stays the user.
    let a = finding(&r, "impersonated", "create").actor.clone().unwrap();
    assert_eq!(a.user, "admin");
    assert_eq!(a.impersonated_user.as_deref(), Some("alice"));
    assert_eq!(
        a.impersonated_groups,
        vec!["devs".to_owned(), "system:authenticated".to_owned()]
    );
    assert_eq!(
        a.describe(),
        "by admin as alice from 127.0.0.1 (kubectl/v1.36.2)"
    );

    // A custom user agent, and what the CronJob it created runs.
    let f = finding(&r, "curl-made", "create");
    assert_eq!(
        f.actor.as_ref().unwrap().user_agent.as_deref(),
        Some("evil-agent/6.6.6")
    );
    assert!(f.rules().contains(&Rule::SuspiciousCommand));
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(r.exit_code(Severity::High), 1);

    // Deletes are on the record, with who.
    let deletes: Vec<_> = r.records.iter().filter(|x| x.write.deleted).collect();
    assert_eq!(deletes.len(), 2);
    assert!(
        deletes
            .iter()
            .all(|d| d.write.actor.user == DEPLOYER && d.finding.is_none())
    );
}

#[test]
fn without_a_governing_baseline_only_the_heuristics_speak() {
    let r = audit(&["requestresponse.jsonl"], None);
    let names: Vec<&str> = r
        .scan
        .evaluation
        .findings
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    // The Job made with `kubectl create job --from` is a manual run.
    assert_eq!(names, vec!["job.manual-1", "curl-made"]);
    assert_eq!(r.exit_code(Severity::Critical), 1);
}

#[test]
fn the_webhook_batches_hold_the_same_writes_as_the_log() {
    let b = governing_team_a();
    let log = audit(&["requestresponse.jsonl"], Some(b.path()));
    let hook = audit(
        &["webhook-batch-1.json", "webhook-batch-2.json"],
        Some(b.path()),
    );
    let ids = |r: &AuditReport| -> Vec<Option<String>> {
        r.records
            .iter()
            .map(|x| x.write.actor.audit_id.clone())
            .collect()
    };
    assert_eq!(ids(&log), ids(&hook));
    let mut a = log.counts.clone();
    let mut h = hook.counts.clone();
    (a.files, a.lines, h.files, h.lines) = (0, 0, 0, 0);
    assert_eq!(a, h);
    assert_eq!(log.scan.evaluation.findings, hook.scan.evaluation.findings);
}

#[test]
fn gzip_is_read_like_plain_text() {
    let plain = std::fs::read(fixture("requestresponse.jsonl")).unwrap();
    let d = tempfile::tempdir().unwrap();
    let gz = d.path().join("audit.log.gz");
    let mut e = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    e.write_all(&plain).unwrap();
    e.finish().unwrap();
    let a = audit(&["requestresponse.jsonl"], None);
    let b = audit_paths(&engine(), &[], &[gz]);
    assert_eq!(a.counts.writes, b.counts.writes);
    assert_eq!(a.scan.evaluation.findings, b.scan.evaluation.findings);
}

#[test]
fn the_prefilter_skips_other_events_and_metadata_level_writes_are_reported() {
    let text = std::fs::read_to_string(fixture("mixed.jsonl")).unwrap();
    let with_jobs = text.lines().filter(|l| l.contains("jobs\"")).count() as u64;
    let r = audit(&["mixed.jsonl"], None);
    assert_eq!(r.counts.lines, text.lines().count() as u64);
    assert_eq!(r.counts.skipped, r.counts.lines - with_jobs);
    assert!(r.counts.skipped > 50, "{:?}", r.counts);
    assert_eq!(r.counts.bad_lines, 0);
    // meta-only logs batch at Metadata level: writes without their object,
    // still attributed, never silently dropped.
    let meta: Vec<_> = r
        .records
        .iter()
        .filter(|x| x.write.namespace == "meta-only" && !x.write.deleted)
        .collect();
    assert!(!meta.is_empty());
    assert_eq!(meta.len() as u64, r.counts.unevaluated);
    for m in meta {
        assert!(m.note.as_deref().unwrap().starts_with("not evaluated"));
        assert_eq!(m.write.actor.user, "admin");
    }
    let table = render(&r, Format::Table);
    assert!(table.contains("writes without their object"), "{table}");
    assert!(table.contains("not evaluated"), "{table}");
}

/// Lines of a capture rewritten the way another log would carry them.
fn edited(file: &str, line: usize, edit: impl Fn(&mut serde_json::Value)) -> String {
    let text = std::fs::read_to_string(fixture(file)).unwrap();
    let mut v: serde_json::Value =
        serde_json::from_str(text.lines().nth(line - 1).unwrap()).unwrap();
    edit(&mut v);
    serde_json::to_string(&v).unwrap()
}

#[test]
fn dry_runs_and_request_stage_events_change_nothing() {
    let dry = edited("requestresponse.jsonl", 9, |v| {
        let uri = v["requestURI"].as_str().unwrap().to_owned();
        v["requestURI"] = format!("{uri}?dryRun=All").into();
    });
    let early = edited("requestresponse.jsonl", 9, |v| {
        v["stage"] = "RequestReceived".into()
    });
    let e = engine();
    let mut a = Auditor::new(&e, Loaded::default());
    a.line("x", 1, dry.as_bytes());
    a.line("x", 2, early.as_bytes());
    let r = a.report;
    assert_eq!(
        (r.counts.dry_runs, r.counts.writes, r.counts.events),
        (1, 0, 1)
    );
    assert!(r.scan.evaluation.findings.is_empty());
}

#[test]
fn a_bad_line_is_named_and_the_rest_still_reported() {
    let text = std::fs::read_to_string(fixture("requestresponse.jsonl")).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let cut = &lines[8][..lines[8].len() / 2]; // a line torn by rotation
    lines.insert(3, cut);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("torn.log");
    std::fs::write(&p, lines.join("\n")).unwrap();
    let r = audit_paths(&engine(), &[], std::slice::from_ref(&p));
    assert_eq!(r.counts.bad_lines, 1);
    assert_eq!(r.scan.errors.len(), 1);
    let e = r.scan.errors[0].to_string();
    assert!(
        e.starts_with(&format!("{}:4: not an audit event", p.display())),
        "{e}"
    );
    assert_eq!(
        r.scan.evaluation.findings.len(),
        2,
        "job.manual-1 and curl-made are still found"
    );
    assert_eq!(r.exit_code(Severity::High), 2);
}

#[test]
fn a_file_that_cannot_be_read_is_bad_input() {
    let r = audit_paths(&engine(), &[], &[PathBuf::from("/nonexistent/audit.log")]);
    assert_eq!(r.exit_code(Severity::High), 2);
    assert!(
        r.scan.errors[0]
            .to_string()
            .contains("/nonexistent/audit.log")
    );
}

#[test]
fn every_output_format_carries_the_actor() {
    let r = audit(&["requestresponse.jsonl"], None);
    let json = render(&r, Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["items"][0]["status"]["rules"], "ManualJobRun");
    let status = &v["items"][1]["status"];
    assert_eq!(status["actor"]["user"], DEPLOYER);
    assert_eq!(status["actor"]["userAgent"], "evil-agent/6.6.6");
    assert_eq!(status["actor"]["match"], "exact");
    // First seen when it was written, not when the log was read.
    assert_eq!(status["firstSeen"], status["actor"]["time"]);
    assert!(render(&r, Format::Yaml).contains("evil-agent/6.6.6"));
    let sarif: serde_json::Value = serde_json::from_str(&render(&r, Format::Sarif)).unwrap();
    assert_eq!(
        sarif["runs"][0]["results"][0]["properties"]["actor"]["user"],
        DEPLOYER
    );
    assert!(render(&r, Format::Openreports).contains("actorUser"));
    let table = render(&r, Format::Table);
    assert!(table.lines().next().unwrap().contains("ACTOR"));
    assert!(table.contains("(evil-agent/6.6.6)"));
}

// ------------------------------------------------------------------ sources

/// A sink, its window, the namespaces it asked to re-evaluate, its metrics.
type Wired = (
    Arc<Sink>,
    Arc<Mutex<ActorStore>>,
    Arc<Mutex<Vec<String>>>,
    Arc<Metrics>,
);

fn sink() -> Wired {
    let store = Arc::new(Mutex::new(ActorStore::default()));
    let touched = Arc::new(Mutex::new(Vec::new()));
    let t = touched.clone();
    let metrics = Arc::new(Metrics::default());
    let s = Sink::new(
        store.clone(),
        metrics.clone(),
        Box::new(move |ns: &str| t.lock().unwrap().push(ns.to_owned())),
    );
    (Arc::new(s), store, touched, metrics)
}

/// The observed state after line 5 (rv 225, generation 5), then after the
/// status write of line 13 (rv 230, same generation).
fn who_made_sa_made(store: &Mutex<ActorStore>, rv: &str) -> Option<cronwarden::api::Actor> {
    let text = std::fs::read_to_string(fixture("requestresponse.jsonl")).unwrap();
    let uid = serde_json::from_str::<serde_json::Value>(text.lines().next().unwrap()).unwrap()
        ["responseObject"]["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    store.lock().unwrap().lookup(
        SubjectKind::CronJob,
        "team-a",
        "sa-made",
        ObservedRef {
            uid: Some(&uid),
            generation: Some(5),
            resource_version: Some(rv),
        },
    )
}

#[test]
fn the_sink_keeps_writes_and_attributes_the_evidence() {
    let (s, store, touched, _) = sink();
    for l in std::fs::read_to_string(fixture("requestresponse.jsonl"))
        .unwrap()
        .lines()
    {
        assert!(s.line("log", l.as_bytes()));
    }
    let a = who_made_sa_made(&store, "225").unwrap();
    assert_eq!((a.verb.as_str(), a.match_), ("update", ActorMatch::Exact));
    // The status write by admin moved the resourceVersion, not the actor.
    let a = who_made_sa_made(&store, "230").unwrap();
    assert_eq!(
        (a.user.as_str(), a.verb.as_str(), a.match_),
        (DEPLOYER, "update", ActorMatch::Exact)
    );
    assert!(touched.lock().unwrap().iter().all(|n| n == "team-a"));
}

#[test]
fn the_log_is_followed_across_rotation_and_truncation() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("audit.log");
    let text = std::fs::read_to_string(fixture("requestresponse.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Written before the start: not read (followed from its end).
    std::fs::write(&path, format!("{}\n", lines[0])).unwrap();
    let (s, store, _, metrics) = sink();
    let stop = Arc::new(AtomicBool::new(false));
    let h = cronwarden::audit::follow::spawn(path.clone(), s, stop.clone()).unwrap();
    let kept = || store.lock().unwrap().len();
    let wait = |n: usize| {
        for _ in 0..100 {
            if kept() >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("expected {n} writes kept, have {}", kept());
    };
    std::thread::sleep(Duration::from_millis(300));
    let append = |p: &Path, s: &str| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(p)
            .unwrap();
        f.write_all(s.as_bytes()).unwrap();
    };
    // A line written in two pieces counts once, when whole.
    let (a, b) = lines[1].split_at(100);
    append(&path, a);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(kept(), 0);
    append(&path, &format!("{b}\n"));
    wait(1);
    // Rotation as kube-apiserver does it: rename, new file.
    std::fs::rename(&path, d.path().join("audit-2026.log")).unwrap();
    append(&path, &format!("{}\n{}\n", lines[2], lines[3]));
    wait(3);
    // copytruncate.
    std::fs::write(&path, "").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append(&path, &format!("{}\nnot json but about jobs\"\n", lines[4]));
    wait(4);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    h.join().unwrap();
    assert!(
        metrics.encode().contains(
            "cronwarden_audit_events_rejected_total{source=\"log\",reason=\"malformed\"} 1"
        ),
        "{}",
        metrics.encode()
    );
}

async fn call(
    gate: &Gate,
    s: &Arc<Sink>,
    body: Vec<u8>,
    auth: Option<&str>,
    cert: bool,
) -> (u16, String) {
    let mut req =
        hyper::Request::post("/audit?timeout=30s").header("content-type", "application/json");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let req = req.body(Full::new(Bytes::from(body))).unwrap();
    let resp = respond(gate, s, req, cert).await;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_webhook_authenticates_bounds_and_parses() {
    let (s, store, _, metrics) = sink();
    let batch = std::fs::read(fixture("webhook-batch-1.json")).unwrap();
    let gate = Gate::new(Some("s3cret"), 64 << 10);
    assert_eq!(call(&gate, &s, batch.clone(), None, false).await.0, 401);
    assert_eq!(
        call(&gate, &s, batch.clone(), Some("Bearer wrong"), false)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&gate, &s, batch.clone(), Some("s3cret"), false)
            .await
            .0,
        401
    );
    assert_eq!(
        store.lock().unwrap().len(),
        0,
        "nothing from an unauthenticated caller"
    );
    assert_eq!(
        call(
            &gate,
            &s,
            b"{\"kind\":".to_vec(),
            Some("Bearer s3cret"),
            false
        )
        .await
        .0,
        400
    );
    assert_eq!(
        call(
            &gate,
            &s,
            vec![b' '; 65 << 10],
            Some("Bearer s3cret"),
            false
        )
        .await
        .0,
        413
    );
    assert_eq!(
        call(&gate, &s, batch.clone(), Some("Bearer s3cret"), false)
            .await
            .0,
        200
    );
    // A verified client certificate is enough on its own.
    assert_eq!(call(&gate, &s, batch, None, true).await.0, 200);
    assert_eq!(store.lock().unwrap().len(), 4, "sa-made's last 4 writes");
    // A standby sends the API server to retry elsewhere, keeping nothing.
    let standby = Gate::new(Some("s3cret"), 64 << 10).only_when(|| false);
    let before = store.lock().unwrap().len();
    let batch = std::fs::read(fixture("webhook-batch-2.json")).unwrap();
    assert_eq!(
        call(&standby, &s, batch, Some("Bearer s3cret"), false)
            .await
            .0,
        503
    );
    assert_eq!(store.lock().unwrap().len(), before);
    let m = metrics.encode();
    for (reason, n) in [("unauthenticated", 3), ("malformed", 1), ("too_large", 1)] {
        let line = format!(
            "cronwarden_audit_events_rejected_total{{source=\"webhook\",reason=\"{reason}\"}} {n}"
        );
        assert!(m.contains(&line), "{line}\n{m}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The line parser and classifier never panic, on noise or on real
    /// lines with bytes changed.
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), at in 0usize..40000, b in any::<u8>()) {
        for e in parse_line(&bytes).unwrap_or_default() {
            let _ = e.classify();
        }
        let text = std::fs::read(fixture("requestresponse.jsonl")).unwrap();
        let mut line: Vec<u8> = text.split(|c| *c == b'\n').nth(at % 13).unwrap().to_vec();
        let i = at % line.len();
        line[i] = b;
        let e = engine();
        let mut a = Auditor::new(&e, Loaded::default());
        a.line("fuzz", 1, &line);
    }
}
