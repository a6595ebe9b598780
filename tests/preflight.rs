//! Start-up checks (issue 13) against a scripted API server (tower-test):
//! each thing the controller cannot work without is named in one line that
//! says what to create or grant; what it can wait for is only a warning.

use std::sync::{Arc, Mutex};

use clap::Parser;
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

use cronwarden::cli::{Cli, Command, RunArgs};
use cronwarden::controller::preflight;

/// A cluster as start-up sees it.
#[derive(Clone)]
struct Cluster {
    /// The CRDs (plural names) this cluster does not have.
    missing_crds: Vec<&'static str>,
    lease_namespace: bool,
    /// `verb resource[/subresource]` this identity may not do.
    denied: Vec<&'static str>,
    /// SelfSubjectAccessReviews asked, as `verb resource[/sub] [ns]`.
    asked: Arc<Mutex<Vec<String>>>,
}

impl Cluster {
    fn healthy() -> Self {
        Cluster {
            missing_crds: vec![],
            lease_namespace: true,
            denied: vec![],
            asked: Arc::default(),
        }
    }

    fn client(&self) -> Client {
        let (svc, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let me = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let path = req.uri().path().to_owned();
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let (code, answer) = me.answer(&path, body);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
        Client::new(svc, "default")
    }

    fn answer(&self, path: &str, mut body: Value) -> (u16, Value) {
        if let Some(plural) = path.strip_prefix("/apis/cronwarden.io/v1alpha1/") {
            return if !self.missing_crds.contains(&plural) {
                (
                    200,
                    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                             "metadata": {"resourceVersion": "1"}, "items": []}),
                )
            } else {
                (
                    404,
                    status(404, "the server could not find the requested resource"),
                )
            };
        }
        if let Some(ns) = path.strip_prefix("/api/v1/namespaces/") {
            return if self.lease_namespace {
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
                )
            } else {
                (404, status(404, &format!("namespaces \"{ns}\" not found")))
            };
        }
        if path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
            let a = &body["spec"]["resourceAttributes"];
            let s = |k: &str| a[k].as_str().unwrap_or("").to_owned();
            let what = if s("subresource").is_empty() {
                format!("{} {}", s("verb"), s("resource"))
            } else {
                format!("{} {}/{}", s("verb"), s("resource"), s("subresource"))
            };
            let allowed = !self.denied.contains(&what.as_str());
            self.asked
                .lock()
                .unwrap()
                .push(format!("{what} {}", s("namespace")).trim_end().to_owned());
            body["status"] = json!({"allowed": allowed});
            return (201, body);
        }
        (500, status(500, "unscripted request"))
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

fn status(code: u16, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "message": message, "reason": "NotFound", "code": code})
}

fn args(extra: &[&str]) -> RunArgs {
    let mut argv = vec!["cronwarden", "run"];
    argv.extend_from_slice(extra);
    let Command::Run(args) = Cli::parse_from(argv).command else {
        unreachable!()
    };
    *args
}

#[tokio::test]
async fn a_cluster_with_everything_passes_and_each_permission_is_asked_once() {
    let c = Cluster::healthy();
    preflight::check(&c.client(), &args(&[])).await.unwrap();
    let asked = c.asked();
    let mut unique = asked.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), asked.len(), "asked twice: {asked:?}");
    for want in [
        "watch cronjobs",
        "list jobs",
        "patch cronjobfindings/status",
        "create events",
        "update leases cronwarden-system",
        // /metrics is served behind the API server by default.
        "create tokenreviews",
        "create subjectaccessreviews",
    ] {
        assert!(
            asked.iter().any(|a| a == want),
            "{want} not asked: {asked:?}"
        );
    }
}

#[tokio::test]
async fn missing_crds_say_to_apply_them() {
    let all = [
        "cronjobfindings",
        "cronjobbaselines",
        "clustercronjobbaselines",
    ];
    // None installed, or only one of them missing: each is named.
    for missing in [all.to_vec(), vec![all[1]], vec![all[2]], vec![all[0]]] {
        let c = Cluster {
            missing_crds: missing.clone(),
            ..Cluster::healthy()
        };
        let e = preflight::check(&c.client(), &args(&[])).await.unwrap_err();
        assert!(
            e.contains("CRDs are not installed") && e.contains("crds/"),
            "{e}"
        );
        assert!(
            e.contains(&format!("(no {})", missing.join(", "))),
            "{missing:?}: {e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        // Nothing else is asked of a cluster without them.
        assert!(c.asked().is_empty(), "{:?}", c.asked());
    }
}

#[tokio::test]
async fn a_missing_lease_namespace_says_what_to_create_unless_leader_election_is_off() {
    let c = Cluster {
        lease_namespace: false,
        ..Cluster::healthy()
    };
    let e = preflight::check(&c.client(), &args(&["--pod-namespace", "sec-tools"]))
        .await
        .unwrap_err();
    assert!(e.contains("kubectl create namespace sec-tools"), "{e}");
    assert!(!e.contains('\n'), "one line: {e}");
    preflight::check(&c.client(), &args(&["--leader-election=false"]))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_missing_essential_permission_is_named_with_its_namespace() {
    let c = Cluster {
        denied: vec!["watch cronjobs", "update leases"],
        ..Cluster::healthy()
    };
    let e = preflight::check(&c.client(), &args(&[])).await.unwrap_err();
    assert!(e.starts_with("RBAC:"), "{e}");
    assert!(e.contains("watch cronjobs.batch"), "{e}");
    assert!(
        e.contains("update leases.coordination.k8s.io in namespace cronwarden-system"),
        "{e}"
    );
    assert!(!e.contains('\n'), "one line: {e}");
}

#[tokio::test]
async fn permissions_a_feature_can_wait_for_only_warn() {
    // Events wait in status.pendingEvents; /metrics answers 503 until
    // TokenReviews are allowed; enforcement waits for patch.
    let c = Cluster {
        denied: vec![
            "create events",
            "create tokenreviews",
            "create subjectaccessreviews",
            "patch cronjobs",
        ],
        ..Cluster::healthy()
    };
    preflight::check(&c.client(), &args(&["--allow-enforcement"]))
        .await
        .unwrap();
    assert!(c.asked().iter().any(|a| a == "patch cronjobs"));
}

#[tokio::test]
async fn metrics_insecure_without_service_account_checks_asks_no_reviews() {
    let c = Cluster::healthy();
    preflight::check(
        &c.client(),
        &args(&["--metrics-insecure", "--check-service-accounts=false"]),
    )
    .await
    .unwrap();
    let asked = c.asked();
    assert!(
        !asked.iter().any(|a| a.contains("reviews")),
        "reviews asked: {asked:?}"
    );
}

#[tokio::test]
async fn an_api_server_that_cannot_be_reached_is_said_so() {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    drop(handle);
    let e = preflight::check(&Client::new(svc, "default"), &args(&[]))
        .await
        .unwrap_err();
    assert!(e.starts_with("cannot reach the API server"), "{e}");
}
