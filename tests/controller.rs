//! The reconciler against scripted API exchanges (the kube-rs
//! `ApiServerVerifier` pattern with tower-test): the exact method, path
//! (with `fieldManager`) and body of every request, and no request at all
//! when nothing changed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use http::{Request, Response};
use http_body_util::BodyExt;
use k8s_openapi::api::batch::v1::CronJob;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use cronwarden::api::{CronJobBaseline, CronJobFinding};
use cronwarden::cli::{Cli, Command};
use cronwarden::controller::Controller;
use cronwarden::controller::observe::index::Kind;
use cronwarden::engine::Tier;

type ApiHandle = Handle<Request<Body>, Response<Body>>;

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

/// A scripted API server: records every request; answers with the queued
/// error codes first, then the way a real server would (the stored object
/// with the patch applied, Events echoed).
#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    errors: Arc<Mutex<VecDeque<u16>>>,
    objects: Arc<Mutex<BTreeMap<String, Value>>>,
    /// Event creates to refuse with 403, status writes to fail with 500.
    refuse: Arc<Mutex<(u32, u32)>>,
}

impl Fake {
    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn refuse_events(&self, n: u32) {
        self.refuse.lock().unwrap().0 = n;
    }

    fn fail_on_status(&self, n: u32) {
        self.refuse.lock().unwrap().1 = n;
    }

    fn fail_next(&self, codes: &[u16]) {
        self.errors.lock().unwrap().extend(codes.iter().copied());
    }

    fn store(&self, path: &str, obj: Value) {
        self.objects.lock().unwrap().insert(path.to_owned(), obj);
    }

    fn answer(&self, seen: &Seen) -> (u16, Value) {
        if let Some(code) = self.errors.lock().unwrap().pop_front() {
            let reason = match code {
                409 => "Conflict",
                429 => "TooManyRequests",
                _ => "InternalError",
            };
            return (
                code,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code}),
            );
        }
        {
            let mut r = self.refuse.lock().unwrap();
            if seen.path.contains("/events") && r.0 > 0 {
                r.0 -= 1;
                return (
                    403,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403}),
                );
            }
            if seen.path.contains("/status?") && r.1 > 0 {
                r.1 -= 1;
                return (
                    500,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500}),
                );
            }
        }
        if seen.path.contains("/events") {
            // Events are created under a fixed name: a second create of
            // the same name is refused, as a real server does.
            let key = format!(
                "event/{}",
                seen.body["metadata"]["name"].as_str().unwrap_or("")
            );
            let mut objects = self.objects.lock().unwrap();
            if objects.contains_key(&key) {
                return (
                    409,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409}),
                );
            }
            objects.insert(key, seen.body.clone());
            return (201, seen.body.clone());
        }
        let base = seen
            .path
            .split('?')
            .next()
            .unwrap()
            .trim_end_matches("/status")
            .to_owned();
        let mut objects = self.objects.lock().unwrap();
        if seen.method == "DELETE" {
            objects.remove(&base);
            return (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            );
        }
        let mut obj = objects
            .get(&base)
            .cloned()
            .unwrap_or_else(|| json!({"metadata": {}}));
        // Preconditions in a patch body: uid and resourceVersion must match.
        for field in ["uid", "resourceVersion"] {
            let want = &seen.body["metadata"][field];
            if seen.method == "PATCH" && !want.is_null() && *want != obj["metadata"][field] {
                return (
                    409,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409}),
                );
            }
        }
        if seen.path.contains("/status?") && seen.path.contains("fieldManager=cronwarden") {
            // Server-side apply of a status the manager owns whole: fields
            // left out of the apply are removed.
            obj["status"] = Value::Null;
        }
        merge(&mut obj, &seen.body);
        let n = objects.len() + 1;
        let meta = obj["metadata"].as_object_mut().unwrap();
        meta.entry("uid").or_insert(json!(format!("uid-{n}")));
        meta.entry("generation").or_insert(json!(1));
        meta.insert(
            "resourceVersion".into(),
            json!(format!("{}", 100 + self.seen.lock().unwrap().len())),
        );
        objects.insert(base, obj.clone());
        (200, obj)
    }

    fn serve(self, mut handle: ApiHandle) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().to_string();
                let path = req.uri().to_string();
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let seen = Seen { method, path, body };
                let (code, answer) = self.answer(&seen);
                self.seen.lock().unwrap().push(seen);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        })
    }
}

/// JSON merge (RFC 7386), enough for apply and merge-patch bodies.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

fn controller(extra: &[&str]) -> (Arc<Controller>, Fake, tokio::task::JoinHandle<()>) {
    controller_on(extra, Fake::default())
}

/// A controller talking to `fake` (a restart keeps the server).
fn controller_on(
    extra: &[&str],
    fake: Fake,
) -> (Arc<Controller>, Fake, tokio::task::JoinHandle<()>) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "default");
    // One replica: its writes are not fenced by a Lease.
    let mut argv = vec!["cronwarden", "run", "--leader-election=false"];
    argv.extend_from_slice(extra);
    let Command::Run(args) = Cli::parse_from(argv).command else {
        unreachable!()
    };
    let mut ctl = Controller::new(client, *args, Default::default(), "test-0".into()).unwrap();
    ctl.publisher.backoff = Duration::from_millis(1);
    let task = fake.clone().serve(handle);
    (Arc::new(ctl), fake, task)
}

fn cronjob(ns: &str, name: &str) -> CronJob {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "generation": 1, "resourceVersion": "7"},
        "spec": {"schedule": "0 2 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "main", "image": "registry.example.com/team/app:1.0"}]}}}}}
    }))
    .unwrap()
}

fn baseline(ns: &str, name: &str, spec: Value) -> CronJobBaseline {
    serde_json::from_value(json!({
        "apiVersion": "cronwarden.io/v1alpha1", "kind": "CronJobBaseline",
        "metadata": {"name": name, "namespace": ns, "uid": "uid-baseline", "generation": 1},
        "spec": spec
    }))
    .unwrap()
}

const FINDINGS: &str = "/apis/cronwarden.io/v1alpha1/namespaces/apps/cronjobfindings";
const BASELINES: &str = "/apis/cronwarden.io/v1alpha1/namespaces/apps/cronjobbaselines";

/// Seed the index as if every watch had delivered its first list, and the
/// fake server with the same objects.
fn seed(
    ctl: &Controller,
    fake: &Fake,
    cronjobs: Vec<CronJob>,
    baselines: Vec<CronJobBaseline>,
    findings: Vec<CronJobFinding>,
) {
    for c in &cronjobs {
        let name = c.metadata.name.clone().unwrap();
        let ns = c.metadata.namespace.clone().unwrap();
        fake.store(
            &format!("/apis/batch/v1/namespaces/{ns}/cronjobs/{name}"),
            serde_json::to_value(c).unwrap(),
        );
    }
    for b in &baselines {
        let name = b.metadata.name.clone().unwrap();
        let ns = b.metadata.namespace.clone().unwrap();
        fake.store(
            &format!("/apis/cronwarden.io/v1alpha1/namespaces/{ns}/cronjobbaselines/{name}"),
            serde_json::to_value(b).unwrap(),
        );
    }
    for f in &findings {
        let name = f.metadata.name.clone().unwrap();
        fake.store(
            &format!("{FINDINGS}/{name}"),
            serde_json::to_value(f).unwrap(),
        );
    }
    let mut st = ctl.state.lock().unwrap();
    st.reset_cronjobs(cronjobs.into_iter().map(Into::into).collect());
    st.reset_baselines(
        &ctl.engine,
        Tier::Namespace,
        baselines.into_iter().map(Into::into).collect(),
    );
    st.reset_findings(findings.into_iter().map(Into::into).collect());
    st.reset_namespaces(Vec::new());
    for k in [
        Kind::CronJobs,
        Kind::Namespaces,
        Kind::Baselines,
        Kind::ClusterBaselines,
        Kind::Findings,
    ] {
        st.set_synced(k);
    }
}

/// An unapproved CronJob `apps/rogue` in a namespace governed by `apps/team`.
fn seed_rogue(ctl: &Controller, fake: &Fake) {
    let team = baseline("apps", "team", json!({"approved": [{"name": "other"}]}));
    seed(
        ctl,
        fake,
        vec![cronjob("apps", "rogue")],
        vec![team],
        vec![],
    );
}

async fn round(ctl: &Arc<Controller>) -> usize {
    tokio::time::timeout(Duration::from_secs(10), ctl.round())
        .await
        .expect("round finished")
}

#[tokio::test]
async fn new_finding_is_applied_with_status_and_one_event_per_rule() {
    let (ctl, fake, _srv) = controller(&[]);
    seed_rogue(&ctl, &fake);
    assert_eq!(round(&ctl).await, 0, "no failed writes");
    let r = fake.requests();
    assert_eq!(
        r.len(),
        4,
        "{:#?}",
        r.iter().map(|s| (&s.method, &s.path)).collect::<Vec<_>>()
    );

    let apply = &r[0];
    assert_eq!(apply.method, "PATCH");
    assert_eq!(
        apply.path,
        format!("{FINDINGS}/rogue?&force=true&fieldManager=cronwarden")
    );
    assert_eq!(
        apply.body["metadata"]["labels"]["cronwarden.io/severity"],
        "high"
    );
    assert_eq!(
        apply.body["metadata"]["labels"]["cronwarden.io/state"],
        "Open"
    );
    assert_eq!(apply.body["spec"]["subject"]["uid"], "uid-rogue");
    assert!(
        apply.body.get("status").is_none(),
        "status goes through the subresource"
    );
    assert!(apply.body["metadata"].get("ownerReferences").is_none());

    let event = &r[1];
    assert_eq!(event.method, "POST");
    assert_eq!(event.path, "/apis/events.k8s.io/v1/namespaces/apps/events?");
    assert_eq!(event.body["reason"], "NotInBaseline");
    let name = event.body["metadata"]["name"].as_str().unwrap();
    assert!(
        name.starts_with("rogue.") && name.len() == "rogue.".len() + 16,
        "a name fixed by the transition: {name}"
    );
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["action"], "Detected");
    assert_eq!(
        event.body["reportingController"],
        "cronwarden.io/controller"
    );
    assert_eq!(event.body["regarding"]["kind"], "CronJob");
    assert_eq!(event.body["regarding"]["uid"], "uid-rogue");
    assert_eq!(event.body["related"]["kind"], "CronJobFinding");
    assert!(
        event.body["related"]["uid"].is_string(),
        "related carries the new finding's uid"
    );
    assert!(
        event.body["note"]
            .as_str()
            .unwrap()
            .starts_with("[high] CronJob apps/rogue is not in any baseline")
    );

    let status = &r[2];
    assert_eq!(status.method, "PATCH");
    assert_eq!(
        status.path,
        format!("{FINDINGS}/rogue/status?&force=true&fieldManager=cronwarden")
    );
    let s = &status.body["status"];
    assert_eq!(s["state"], "Open");
    assert_eq!(s["rules"], "NotInBaseline");
    assert_eq!(s["violations"][0]["rule"], "NotInBaseline");
    assert_eq!(s["conditions"][0]["type"], "Active");
    assert_eq!(s["conditions"][0]["status"], "True");
    assert_eq!(s["conditions"][1]["type"], "Acknowledged");
    assert_eq!(s["mitre"]["technique"], "T1053.007");
    assert!(
        s.get("pendingEvents").is_none(),
        "the Event was written: none owed"
    );

    let b = &r[3];
    assert_eq!(
        b.path,
        format!("{BASELINES}/team/status?&force=true&fieldManager=cronwarden")
    );
    assert_eq!(b.body["status"]["openFindings"], 1);
    assert_eq!(b.body["status"]["entries"], 1);
    assert_eq!(b.body["status"]["conditions"][0]["status"], "True");

    // What was written went into the index: the next round sends nothing.
    assert_eq!(round(&ctl).await, 0);
    assert_eq!(fake.requests().len(), 4, "a second round wrote");
}

#[tokio::test]
async fn unchanged_state_sends_no_request_at_all() {
    // A first controller writes; a restarted one that lists exactly what the
    // server then holds must not send a single request.
    let (ctl, fake, _srv) = controller(&[]);
    seed_rogue(&ctl, &fake);
    round(&ctl).await;
    let objects = fake.objects.lock().unwrap().clone();
    let finding: CronJobFinding =
        serde_json::from_value(objects[&format!("{FINDINGS}/rogue")].clone()).unwrap();
    let base: CronJobBaseline =
        serde_json::from_value(objects[&format!("{BASELINES}/team")].clone()).unwrap();

    let (fresh, fake2, _srv2) = controller(&[]);
    seed(
        &fresh,
        &fake2,
        vec![cronjob("apps", "rogue")],
        vec![base],
        vec![finding],
    );
    assert_eq!(round(&fresh).await, 0);
    assert!(
        fake2.requests().is_empty(),
        "unchanged state made requests: {:?}",
        fake2.requests().iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    let m = fresh.metrics.encode();
    assert!(
        m.contains(r#"cronwarden_writes_total{kind="finding",result="skipped"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"cronwarden_writes_total{kind="baseline_status",result="skipped"} 1"#),
        "{m}"
    );
}

fn open_finding(name: &str, rule: &str) -> CronJobFinding {
    serde_json::from_value(json!({
        "apiVersion": "cronwarden.io/v1alpha1", "kind": "CronJobFinding",
        "metadata": {"name": name, "namespace": "apps", "uid": "uid-finding", "generation": 1, "resourceVersion": "5",
                     "labels": {"cronwarden.io/severity": "high", "cronwarden.io/state": "Open"}},
        "spec": {"subject": {"apiVersion": "batch/v1", "kind": "CronJob", "namespace": "apps", "name": name, "uid": format!("uid-{name}")}},
        "status": {"state": "Open", "severity": "high", "rules": rule, "baselines": ["apps/team"],
                   "violations": [{"rule": rule, "severity": "high", "message": "m", "field": "metadata.name"}],
                   "firstSeen": "2026-11-20T00:00:00Z", "lastSeen": "2026-11-20T00:00:00Z"}
    }))
    .unwrap()
}

#[tokio::test]
async fn resolution_when_the_cronjob_is_deleted() {
    let (ctl, fake, _srv) = controller(&[]);
    seed(
        &ctl,
        &fake,
        vec![],
        vec![],
        vec![open_finding("gone", "NotInBaseline")],
    );
    assert_eq!(round(&ctl).await, 0);
    let r = fake.requests();
    assert_eq!(r.len(), 3);
    assert_eq!(
        r[0].path,
        format!("{FINDINGS}/gone?&force=true&fieldManager=cronwarden")
    );
    assert_eq!(
        r[0].body["metadata"]["labels"]["cronwarden.io/state"],
        "Resolved"
    );
    assert_eq!(r[1].method, "POST");
    assert_eq!(r[1].body["reason"], "FindingResolved");
    assert_eq!(r[1].body["type"], "Normal");
    assert_eq!(
        r[2].path,
        format!("{FINDINGS}/gone/status?&force=true&fieldManager=cronwarden")
    );
    let s = &r[2].body["status"];
    assert_eq!(s["state"], "Resolved");
    assert_eq!(s["conditions"][0]["type"], "Active");
    assert_eq!(s["conditions"][0]["status"], "False");
    assert_eq!(s["conditions"][0]["reason"], "CronJobDeleted");
    assert!(s["resolvedAt"].is_string());
    assert_eq!(s["violations"][0]["rule"], "NotInBaseline", "evidence kept");
    assert_eq!(s["firstSeen"], "2026-11-20T00:00:00Z");
    // Resolved and within retention: nothing more.
    assert_eq!(round(&ctl).await, 0);
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn resolved_findings_are_deleted_after_retention() {
    let (ctl, fake, _srv) = controller(&["--retention", "1h"]);
    let mut old = open_finding("old", "NotInBaseline");
    let s = old.status.as_mut().unwrap();
    s.state = cronwarden::api::FindingState::Resolved;
    s.resolved_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    seed(&ctl, &fake, vec![], vec![], vec![old]);
    assert_eq!(round(&ctl).await, 0);
    let r = fake.requests();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].method.as_str(), r[0].path.as_str()),
        ("DELETE", &*format!("{FINDINGS}/old?"))
    );
}

#[tokio::test]
async fn rejected_baseline_gets_accepted_false_and_an_event() {
    let (ctl, fake, _srv) = controller(&[]);
    let bad = baseline(
        "apps",
        "broken",
        json!({"approved": [{"name": "ok"}, {"name": "bad", "schedules": ["61 * * * *"]}]}),
    );
    seed(&ctl, &fake, vec![], vec![bad], vec![]);
    assert_eq!(round(&ctl).await, 0);
    let r = fake.requests();
    assert_eq!(
        r.len(),
        2,
        "{:?}",
        r.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    // The Event first, under a name fixed by the transition; then the status.
    assert_eq!(r[0].body["reason"], "BaselineRejected");
    assert_eq!(r[0].body["regarding"]["kind"], "CronJobBaseline");
    assert!(
        r[0].body["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("broken.")
    );
    assert_eq!(
        r[1].path,
        format!("{BASELINES}/broken/status?&force=true&fieldManager=cronwarden")
    );
    let cond = &r[1].body["status"]["conditions"][0];
    assert_eq!(cond["type"], "Accepted");
    assert_eq!(cond["status"], "False");
    assert_eq!(cond["reason"], "InvalidSchedule");
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("approved[1] (name bad)")
    );
    assert_eq!(r[1].body["status"]["observedGeneration"], 1);
    // Still rejected, same message: no second Event.
    assert_eq!(round(&ctl).await, 0);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn conflict_and_throttling_are_retried() {
    let (ctl, fake, _srv) = controller(&[]);
    seed_rogue(&ctl, &fake);
    fake.fail_next(&[409, 429]);
    assert_eq!(round(&ctl).await, 0, "retried writes succeed");
    let r = fake.requests();
    let applies: Vec<&Seen> = r
        .iter()
        .filter(|s| s.path == format!("{FINDINGS}/rogue?&force=true&fieldManager=cronwarden"))
        .collect();
    assert_eq!(applies.len(), 3, "409 and 429 retried");
    assert_eq!(
        applies[0].body, applies[2].body,
        "the same apply is sent again"
    );
    let m = ctl.metrics.encode();
    assert!(
        m.contains(r#"cronwarden_reconcile_errors_total{error="409"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"cronwarden_reconcile_errors_total{error="429"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_write_that_keeps_failing_is_reported_and_retried_next_round() {
    let (mut ctl, fake, _srv) = controller(&[]);
    Arc::get_mut(&mut ctl).unwrap().publisher.attempts = 2;
    seed_rogue(&ctl, &fake);
    fake.fail_next(&[500, 503]);
    assert_eq!(round(&ctl).await, 1, "one failed key");
    {
        let mut st = ctl.state.lock().unwrap();
        assert!(st.dirty.is_empty(), "not retried at once: it backs off");
        let (due, failures) = st.backoff["apps"];
        assert_eq!(failures, 1);
        let wait = due - std::time::Instant::now();
        assert!(wait <= Duration::from_millis(250), "{wait:?}");
        assert_eq!(st.promote_due(due), None);
        assert!(st.dirty.contains("apps"), "evaluated again once due");
    }
    assert_eq!(round(&ctl).await, 0, "the next round succeeds");
    assert!(
        ctl.state.lock().unwrap().backoff.is_empty(),
        "success forgets the failures"
    );
    assert!(
        fake.requests()
            .iter()
            .any(|s| s.path.ends_with("/events?") && s.body["reason"] == "NotInBaseline")
    );
}

#[tokio::test]
async fn enforcement_suspends_only_when_allowed() {
    let strict = || {
        baseline(
            "apps",
            "strict",
            json!({"enforcement": "Suspend", "approved": [{"name": "other"}]}),
        )
    };
    let (ctl, fake, _srv) = controller(&[]);
    seed(
        &ctl,
        &fake,
        vec![cronjob("apps", "rogue")],
        vec![strict()],
        vec![],
    );
    round(&ctl).await;
    assert!(
        fake.requests()
            .iter()
            .all(|s| !s.path.starts_with("/apis/batch/")),
        "patched without --allow-enforcement"
    );

    let (ctl, fake, _srv) = controller(&["--allow-enforcement"]);
    seed(
        &ctl,
        &fake,
        vec![cronjob("apps", "rogue")],
        vec![strict()],
        vec![],
    );
    assert_eq!(round(&ctl).await, 0);
    let r = fake.requests();
    let patch = r
        .iter()
        .find(|s| {
            s.path
                .starts_with("/apis/batch/v1/namespaces/apps/cronjobs/rogue?")
        })
        .expect("CronJob patched");
    assert_eq!(patch.method, "PATCH");
    assert!(patch.path.contains("fieldManager=cronwarden"));
    assert_eq!(patch.body["spec"]["suspend"], true);
    assert_eq!(
        patch.body["metadata"]["annotations"]["cronwarden.io/suspended-by"],
        "apps/strict"
    );
    let ev = r
        .iter()
        .find(|s| s.body["reason"] == "CronJobSuspended")
        .expect("CronJobSuspended Event");
    assert_eq!(ev.body["type"], "Warning");
    assert!(r.iter().all(|s| s.method != "DELETE"), "never deletes");
}

/// The initial list arrives in any order; the index groups it by namespace
/// (built from sorted runs) and a later duplicate replaces the earlier one.
#[test]
fn reset_indexes_cronjobs_by_namespace_whatever_the_order() {
    use cronwarden::controller::observe::index::State;
    use cronwarden::engine::CronJobView;
    let view = |ns: &str, name: &str, schedule: &str| CronJobView {
        namespace: ns.into(),
        name: name.into(),
        schedule: schedule.into(),
        ..Default::default()
    };
    let mut st = State::default();
    st.reset_cronjobs(vec![
        view("b", "y", "1"),
        view("a", "z", "1"),
        view("b", "x", "1"),
        view("a", "y", "1"),
        view("b", "x", "2"),
    ]);
    assert_eq!(st.cronjob_count(), 4);
    let names: Vec<(&str, Vec<&str>)> = st
        .cronjobs
        .iter()
        .map(|(ns, m)| (ns.as_str(), m.keys().map(String::as_str).collect()))
        .collect();
    assert_eq!(names, vec![("a", vec!["y", "z"]), ("b", vec!["x", "y"])]);
    assert_eq!(st.cronjob("b", "x").unwrap().schedule, "2");
    assert!(st.take_dirty().contains(&"b".to_owned()));
}

/// PowerfulServiceAccount asks the authorizer one SubjectAccessReview per
/// permission, as the service account (user and groups), in its namespace
/// for namespaced permissions, and cluster-wide only to place a grant.
#[tokio::test]
async fn service_account_review_is_one_subject_access_review_per_permission() {
    use cronwarden::controller::access::Reviews;
    use cronwarden::engine::power::CHECKS;
    let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            assert_eq!(req.method(), "POST");
            assert_eq!(
                req.uri().path(),
                "/apis/authorization.k8s.io/v1/subjectaccessreviews"
            );
            let bytes = req.into_body().collect().await.unwrap().to_bytes();
            let mut sar: Value = serde_json::from_slice(&bytes).unwrap();
            let a = &sar["spec"]["resourceAttributes"];
            // Secrets may be read in `apps` only.
            let allowed = a["resource"] == "secrets" && a["namespace"] == "apps";
            seen2.lock().unwrap().push(sar.clone());
            sar["status"] = json!({"allowed": allowed});
            send.send_response(
                Response::builder()
                    .status(201)
                    .body(Body::from(serde_json::to_vec(&sar).unwrap()))
                    .unwrap(),
            );
        }
    });
    let client = Client::new(svc, "default");
    let metrics = Arc::new(cronwarden::telemetry::Metrics::default());
    let reviews = Reviews::new(client, Duration::from_secs(600), 10_000.0, metrics);
    let p = reviews.review("apps", "reader").await.unwrap();
    assert_eq!(
        p.describe("apps"),
        "in namespace apps: get secrets, list secrets"
    );
    let seen = seen.lock().unwrap();
    // 31 permissions, and the two granted ones asked again cluster-wide.
    assert_eq!(seen.len(), CHECKS.len() + 2);
    for sar in seen.iter() {
        assert_eq!(sar["spec"]["user"], "system:serviceaccount:apps:reader");
        assert_eq!(
            sar["spec"]["groups"],
            json!([
                "system:serviceaccounts",
                "system:serviceaccounts:apps",
                "system:authenticated"
            ])
        );
    }
    let cluster_scoped = seen
        .iter()
        .filter(|s| s["spec"]["resourceAttributes"]["namespace"].is_null())
        .count();
    assert_eq!(
        cluster_scoped,
        CHECKS
            .iter()
            .filter(|c| c.cluster_scoped || c.verb == "*")
            .count()
            + 2
    );
}

fn events_of(fake: &Fake) -> Vec<Seen> {
    fake.requests()
        .into_iter()
        .filter(|s| s.path.contains("/events"))
        .collect()
}

/// Make every key whose backoff is running due now.
fn expire_backoff(ctl: &Controller) {
    let mut st = ctl.state.lock().unwrap();
    let later = std::time::Instant::now() + Duration::from_secs(3600);
    st.promote_due(later);
}

/// SPEC 4: an Event refused (here 403: RBAC without `create events`) is
/// owed in the finding's status, which is written anyway; once allowed it
/// is written under the same name, and the status stops owing it.
#[tokio::test]
async fn a_refused_event_is_owed_in_status_and_written_once_allowed() {
    let (ctl2, fake2, _srv2) = controller(&[]);
    seed_rogue(&ctl2, &fake2);
    // The apply goes through; the Event is refused with 403.
    fake2.refuse_events(1);
    assert_eq!(round(&ctl2).await, 1, "one key failed: the Event");
    let r = fake2.requests();
    let status = r
        .iter()
        .find(|s| s.path.contains("/rogue/status"))
        .expect("the status is written even though the Event was refused");
    let owed = &status.body["status"]["pendingEvents"];
    assert_eq!(owed.as_array().unwrap().len(), 1, "{owed}");
    assert_eq!(owed[0]["reason"], "NotInBaseline");
    assert_eq!(owed[0]["type"], "Warning");
    let name = owed[0]["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("rogue."));
    assert_eq!(status.body["status"]["rules"], "NotInBaseline");

    // Allowed again: the next attempt writes that Event, once.
    expire_backoff(&ctl2);
    assert_eq!(round(&ctl2).await, 0);
    let evs = events_of(&fake2);
    assert_eq!(evs.len(), 2, "the refused attempt and the one that worked");
    assert_eq!(evs[1].body["metadata"]["name"], name.as_str());
    let last = fake2.requests().last().unwrap().clone();
    assert!(last.path.contains("/rogue/status"));
    assert!(
        last.body["status"].get("pendingEvents").is_none(),
        "nothing owed any more: {}",
        last.body["status"]
    );
    let before = fake2.requests().len();
    assert_eq!(round(&ctl2).await, 0);
    expire_backoff(&ctl2);
    assert_eq!(round(&ctl2).await, 0);
    assert_eq!(
        fake2.requests().len(),
        before,
        "settled: no more writes: {:#?}",
        fake2.requests()[before..]
            .iter()
            .map(|s| (&s.method, &s.path, &s.body))
            .collect::<Vec<_>>()
    );
    let m = ctl2.metrics.encode();
    assert!(
        m.contains(r#"cronwarden_events_emitted_total{reason="NotInBaseline"} 1"#),
        "{m}"
    );
}

/// A controller that dies after writing the Event and before the status
/// (here: the status write fails, then a fresh controller starts from what
/// the server holds) names the same Event again and finds it there (409):
/// exactly one Event.
#[tokio::test]
async fn an_event_written_before_a_crash_is_not_written_twice() {
    let (mut ctl, fake, _srv) = controller(&[]);
    Arc::get_mut(&mut ctl).unwrap().publisher.attempts = 1;
    seed_rogue(&ctl, &fake);
    // apply ok, Event ok, status 500.
    fake.fail_on_status(1);
    assert_eq!(round(&ctl).await, 1);
    assert_eq!(events_of(&fake).len(), 1);
    let stored: CronJobFinding =
        serde_json::from_value(fake.objects.lock().unwrap()[&format!("{FINDINGS}/rogue")].clone())
            .unwrap();
    assert!(stored.status.is_none(), "the status never landed");
    drop(ctl);

    // Restart: a new controller, the same server.
    let (ctl, _, _srv2) = controller_on(&[], fake.clone());
    let team = baseline("apps", "team", json!({"approved": [{"name": "other"}]}));
    seed(
        &ctl,
        &fake,
        vec![cronjob("apps", "rogue")],
        vec![team],
        vec![stored],
    );
    assert_eq!(round(&ctl).await, 0);
    let evs = events_of(&fake);
    assert_eq!(evs.len(), 2, "asked twice");
    assert_eq!(
        evs[0].body["metadata"]["name"], evs[1].body["metadata"]["name"],
        "under the same name"
    );
    let created = fake
        .objects
        .lock()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("event/"))
        .count();
    assert_eq!(created, 1, "exactly one Event exists");
    let m = ctl.metrics.encode();
    assert!(
        m.contains(r#"cronwarden_writes_total{kind="event",result="existed"} 1"#),
        "{m}"
    );
    assert!(!m.contains("cronwarden_events_emitted_total{"), "{m}");
}

/// SPEC 6: the suspension carries the evaluated CronJob's uid and
/// resourceVersion; a CronJob changed since (another resourceVersion on
/// the server) is left alone, and no CronJobSuspended is emitted.
#[tokio::test]
async fn a_cronjob_changed_since_evaluation_is_not_suspended() {
    let strict = baseline(
        "apps",
        "strict",
        json!({"enforcement": "Suspend", "approved": [{"name": "other"}]}),
    );
    let (ctl, fake, _srv) = controller(&["--allow-enforcement"]);
    seed(
        &ctl,
        &fake,
        vec![cronjob("apps", "rogue")],
        vec![strict],
        vec![],
    );
    // Someone edits the CronJob after the index saw resourceVersion 7.
    {
        let mut o = fake.objects.lock().unwrap();
        let cj = o
            .get_mut("/apis/batch/v1/namespaces/apps/cronjobs/rogue")
            .unwrap();
        cj["metadata"]["resourceVersion"] = json!("8");
    }
    assert_eq!(round(&ctl).await, 1, "the suspension failed and is retried");
    let r = fake.requests();
    let patch = r
        .iter()
        .find(|s| {
            s.path
                .starts_with("/apis/batch/v1/namespaces/apps/cronjobs/rogue?")
        })
        .expect("a suspension was tried");
    assert_eq!(patch.body["metadata"]["uid"], "uid-rogue");
    assert_eq!(patch.body["metadata"]["resourceVersion"], "7");
    let o = fake.objects.lock().unwrap();
    let cj = &o["/apis/batch/v1/namespaces/apps/cronjobs/rogue"];
    assert!(cj["spec"].get("suspend").is_none(), "not suspended: {cj}");
    drop(o);
    assert!(
        r.iter().all(|s| s.body["reason"] != "CronJobSuspended"),
        "no CronJobSuspended"
    );
    assert!(
        r.iter().any(|s| s.path.contains("/rogue/status")),
        "the finding is still recorded"
    );
}

/// SPEC 6: suspensions are rate-capped; those over the cap wait.
#[tokio::test]
async fn suspensions_are_rate_capped() {
    let strict = baseline(
        "apps",
        "strict",
        json!({"enforcement": "Suspend", "approved": [{"name": "other"}]}),
    );
    let (ctl, fake, _srv) = controller(&["--allow-enforcement", "--enforcement-rate", "1"]);
    seed(
        &ctl,
        &fake,
        vec![cronjob("apps", "a"), cronjob("apps", "b")],
        vec![strict],
        vec![],
    );
    assert_eq!(round(&ctl).await, 1, "the second waits");
    let patches = fake
        .requests()
        .iter()
        .filter(|s| s.path.starts_with("/apis/batch/v1/"))
        .count();
    assert_eq!(patches, 1, "one suspension per minute at most");
    let m = ctl.metrics.encode();
    assert!(
        m.contains(r#"cronwarden_writes_total{kind="suspend",result="applied"} 1"#),
        "{m}"
    );
}

/// SPEC 5.1: once a namespace is deleted (its objects first, each by its
/// own watch, then the namespace), nothing of it stays in the index and
/// its metric series go.
#[tokio::test]
async fn a_deleted_namespace_leaves_nothing_behind() {
    let (ctl, fake, _srv) = controller(&[]);
    seed_rogue(&ctl, &fake);
    ctl.state
        .lock()
        .unwrap()
        .reset_namespaces(vec![("apps".into(), Default::default())]);
    assert_eq!(round(&ctl).await, 0);
    let m = ctl.metrics.encode();
    assert!(
        m.contains(r#"cronwarden_open_findings{namespace="apps""#),
        "{m}"
    );
    assert!(m.contains("cronwarden_indexed_namespaces 1"), "{m}");
    {
        let mut st = ctl.state.lock().unwrap();
        let f = st.findings["apps"]["rogue"]
            .decode("apps", "rogue")
            .unwrap();
        st.delete_cronjob("apps", "rogue");
        st.delete_finding(&f.into());
        let b = st.baselines.values().next().unwrap().0.clone();
        st.delete_baseline(b);
        st.delete_namespace("apps");
    }
    round(&ctl).await;
    let m = ctl.metrics.encode();
    assert!(!m.contains(r#"namespace="apps""#), "{m}");
    assert!(m.contains("cronwarden_indexed_namespaces 0"), "{m}");
    let st = ctl.state.lock().unwrap();
    assert!(st.results.is_empty() && st.findings.is_empty() && st.cronjobs.is_empty());
}

/// A round plans at most `ROUND_ACTIONS` finding writes, never splitting a
/// namespace; the namespaces it did not reach stay dirty for the next
/// round, and baseline reports wait until all are evaluated, so no partial
/// count is ever written.
#[tokio::test]
async fn a_round_plans_a_bounded_number_of_writes() {
    use cronwarden::controller::plan::ROUND_ACTIONS;
    let (ctl, fake, _srv) = controller(&[]);
    let n = ROUND_ACTIONS + 44;
    let nss: Vec<String> = (0..n).map(|i| format!("ns-{i:03}")).collect();
    seed(
        &ctl,
        &fake,
        nss.iter().map(|ns| cronjob(ns, "rogue")).collect(),
        nss.iter()
            .map(|ns| baseline(ns, "team", json!({"approved": [{"name": "other"}]})))
            .collect(),
        vec![],
    );
    let count = |fake: &Fake| {
        let r = fake.requests();
        let findings = r
            .iter()
            .filter(|s| s.path.contains("/cronjobfindings/rogue?"))
            .count();
        let baselines = r
            .iter()
            .filter(|s| s.path.contains("/cronjobbaselines/team/status?"))
            .count();
        (findings, baselines)
    };
    assert_eq!(round(&ctl).await, 0);
    assert_eq!(count(&fake), (ROUND_ACTIONS, 0));
    {
        // The namespaces written are dirty again too (the writes' answers
        // are indexed); those not reached must be.
        let st = ctl.state.lock().unwrap();
        assert!(nss[ROUND_ACTIONS..].iter().all(|ns| st.dirty.contains(ns)));
    }
    assert_eq!(round(&ctl).await, 0);
    assert_eq!(count(&fake), (n, n));
    // Every namespace got its finding exactly once.
    let mut applied: Vec<String> = fake
        .requests()
        .iter()
        .filter(|s| s.path.contains("/cronjobfindings/rogue?"))
        .map(|s| s.path.split('/').nth(5).unwrap().to_owned())
        .collect();
    applied.sort();
    applied.dedup();
    assert_eq!(applied, nss);
}

/// A power source that panics for one namespace while `broken`: a stand-in
/// for any bug a tenant's object can reach during evaluation.
struct Fragile {
    broken: std::sync::atomic::AtomicBool,
}

impl cronwarden::engine::power::PowerSource for Fragile {
    fn power(&self, namespace: &str, _: &str) -> cronwarden::engine::power::Answer {
        if namespace == "bad" && self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            panic!("fault injected into the evaluation of {namespace}");
        }
        cronwarden::engine::power::Answer::Known(Default::default())
    }

    fn label(&self) -> &'static str {
        "test"
    }
}

/// Issue 13: one bad object never stalls the others. A panic while one
/// namespace is evaluated fails that namespace alone: the others are
/// written in the same round, the panicking one is counted and backs off
/// on its own, and once the bug is gone its finding is written. (Before,
/// the round unwound and every namespace was re-evaluated, forever.)
#[tokio::test]
async fn a_panic_in_one_namespace_never_stalls_the_others() {
    let (mut ctl, fake, _srv) = controller(&[]);
    let fragile = Arc::new(Fragile {
        broken: true.into(),
    });
    Arc::get_mut(&mut ctl).unwrap().engine.powers = Some(fragile.clone());
    let approved = || json!({"approved": [{"name": "other"}]});
    seed(
        &ctl,
        &fake,
        vec![cronjob("apps", "rogue"), cronjob("bad", "rogue")],
        vec![
            baseline("apps", "team", approved()),
            baseline("bad", "team", approved()),
        ],
        vec![],
    );
    let panics = |ctl: &Controller, n: u32| {
        let m = ctl.metrics.encode();
        let line = format!(r#"cronwarden_reconcile_errors_total{{error="panic"}} {n}"#);
        assert!(m.contains(&line), "{m}");
    };
    // Findings and Events; its baseline's status is written from the
    // namespaces that were evaluated (bad's last result, here none).
    let in_bad = |fake: &Fake| {
        fake.requests()
            .iter()
            .filter(|s| {
                s.path.contains("/namespaces/bad/cronjobfindings")
                    || s.path.contains("/namespaces/bad/events")
            })
            .count()
    };

    assert_eq!(round(&ctl).await, 1, "the panicking namespace alone failed");
    assert!(
        fake.requests()
            .iter()
            .any(|s| s.method == "PATCH" && s.path.starts_with(&format!("{FINDINGS}/rogue"))),
        "apps' finding is written in the same round: {:?}",
        fake.requests()
    );
    assert!(!events_of(&fake).is_empty());
    assert_eq!(in_bad(&fake), 0);
    panics(&ctl, 1);

    // The failed key waits for its backoff: nothing else is redone.
    let before = fake.requests().len();
    assert_eq!(round(&ctl).await, 0);
    assert_eq!(fake.requests().len(), before);

    // Retried once due, still broken: counted again, nothing written.
    expire_backoff(&ctl);
    assert_eq!(round(&ctl).await, 1);
    assert_eq!(fake.requests().len(), before);
    panics(&ctl, 2);

    // The bug is gone: the retry writes bad's finding and its Events.
    fragile
        .broken
        .store(false, std::sync::atomic::Ordering::SeqCst);
    expire_backoff(&ctl);
    assert_eq!(round(&ctl).await, 0);
    assert!(in_bad(&fake) >= 2, "{:?}", fake.requests());
    assert!(
        events_of(&fake)
            .iter()
            .any(|e| e.path.contains("/namespaces/bad/"))
    );
}
