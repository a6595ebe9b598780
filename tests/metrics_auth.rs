//! `/metrics` behind the API server (SPEC 5.1) against a scripted API
//! server (tower-test): the exact TokenReview and SubjectAccessReview sent,
//! the answer for each outcome, what is cached and what is not, and the
//! HTTPS server with its plain-HTTP probe port.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use clap::Parser;
use http::{HeaderMap, Request, Response, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

use cronwarden::cli::{Cli, Command, RunArgs};
use cronwarden::controller::metrics_auth::{self, Decision, MetricsAuth};
use cronwarden::telemetry::Metrics;

type ApiHandle = Handle<Request<Body>, Response<Body>>;

const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    body: Value,
}

/// A scripted API server: answers each request with the next scripted
/// answer (500 once the script is used up) and records it.
#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<(u16, Value)>>>,
}

impl Fake {
    fn then(&self, code: u16, body: Value) -> &Self {
        self.script.lock().unwrap().push_back((code, body));
        self
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn serve(self, mut handle: ApiHandle) {
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let method = req.method().to_string();
                let path = req.uri().path().to_owned();
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                self.seen.lock().unwrap().push(Seen { method, path, body });
                let (code, answer) = self
                    .script
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| (500, status(500, "unscripted request")));
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                        .unwrap(),
                );
            }
        });
    }
}

fn status(code: u16, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "message": message, "reason": "InternalError", "code": code})
}

fn api() -> (Client, Fake) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let fake = Fake::default();
    fake.clone().serve(handle);
    (Client::new(svc, "default"), fake)
}

const PROMETHEUS: &str = "system:serviceaccount:monitoring:prometheus";

fn user() -> Value {
    json!({
        "username": PROMETHEUS,
        "uid": "5a3c-uid",
        "groups": ["system:serviceaccounts", "system:serviceaccounts:monitoring", "system:authenticated"],
        "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]}
    })
}

fn token_review(token: &str, status: Value) -> Value {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
           "metadata": {}, "spec": {"token": token}, "status": status})
}

fn authenticated(token: &str) -> Value {
    token_review(token, json!({"authenticated": true, "user": user()}))
}

fn access_review(allowed: bool) -> Value {
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "metadata": {}, "spec": {},
           "status": {"allowed": allowed, "reason": if allowed { "RBAC: allowed" } else { "" }}})
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    h
}

async fn body(r: axum::response::Response) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn counted(m: &Metrics, result: &str) -> f64 {
    let line = format!("cronwarden_metrics_auth_total{{result=\"{result}\"}} ");
    m.encode()
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn an_allowed_token_gets_the_metrics_after_a_token_review_and_an_access_review() {
    let (client, fake) = api();
    fake.then(201, authenticated("tok-1"))
        .then(201, access_review(true));
    let metrics = Arc::new(Metrics::default());
    let auth = MetricsAuth::new(client, metrics.clone());

    let r = auth.respond(&bearer("tok-1")).await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = body(r).await;
    assert!(
        text.contains("cronwarden_metrics_auth_total{result=\"allowed\"} 1"),
        "{text}"
    );

    let seen = fake.requests();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, TOKEN_REVIEWS);
    assert_eq!(
        seen[0].body,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "metadata": {}, "spec": {"token": "tok-1"}})
    );
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].path, ACCESS_REVIEWS);
    // The user, groups, uid and extra the TokenReview named; the
    // non-resource URL /metrics, verb get; nothing else.
    assert_eq!(
        seen[1].body,
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "metadata": {},
        "spec": {
            "user": PROMETHEUS,
            "uid": "5a3c-uid",
            "groups": ["system:serviceaccounts", "system:serviceaccounts:monitoring", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/pod-name": ["prometheus-0"]},
            "nonResourceAttributes": {"path": "/metrics", "verb": "get"}
        }})
    );

    // Cached: the next scrape asks nothing.
    let r = auth.respond(&bearer("tok-1")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(counted(&metrics, "allowed"), 2.0);
}

#[tokio::test]
async fn no_bearer_token_is_401_without_asking_the_api_server() {
    let (client, fake) = api();
    let metrics = Arc::new(Metrics::default());
    let auth = MetricsAuth::new(client, metrics.clone());
    let r = auth.respond(&HeaderMap::new()).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let mut basic = HeaderMap::new();
    basic.insert(header::AUTHORIZATION, "Basic dXNlcjpwYXNz".parse().unwrap());
    assert_eq!(auth.decide(&basic).await, Decision::Unauthenticated);
    assert!(fake.requests().is_empty());
    assert_eq!(counted(&metrics, "unauthenticated"), 2.0);
}

#[tokio::test]
async fn a_token_the_api_server_does_not_authenticate_is_401_and_cached() {
    let (client, fake) = api();
    fake.then(
        201,
        token_review(
            "forged",
            json!({"authenticated": false, "error": "invalid bearer token"}),
        ),
    );
    let metrics = Arc::new(Metrics::default());
    let auth = MetricsAuth::new(client, metrics.clone());
    assert_eq!(auth.respond(&bearer("forged")).await.status(), 401);
    assert_eq!(auth.respond(&bearer("forged")).await.status(), 401);
    let seen = fake.requests();
    // One TokenReview, no SubjectAccessReview, nothing for the repeat.
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].path, TOKEN_REVIEWS);
    assert_eq!(seen[0].body["spec"]["token"], "forged");
    assert_eq!(counted(&metrics, "unauthenticated"), 2.0);
}

#[tokio::test]
async fn a_user_not_allowed_to_get_metrics_is_403_and_cached() {
    let (client, fake) = api();
    fake.then(201, authenticated("tok-2"))
        .then(201, access_review(false));
    let metrics = Arc::new(Metrics::default());
    let auth = MetricsAuth::new(client, metrics.clone());
    let r = auth.respond(&bearer("tok-2")).await;
    assert_eq!(r.status(), 403);
    assert!(body(r).await.contains("cronwarden-metrics-reader"));
    assert_eq!(auth.respond(&bearer("tok-2")).await.status(), 403);
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(counted(&metrics, "forbidden"), 2.0);
    assert_eq!(counted(&metrics, "allowed"), 0.0);
}

#[tokio::test]
async fn a_failed_review_is_503_never_the_metrics_and_is_not_cached() {
    let (client, fake) = api();
    // The TokenReview fails, then (next request) the SubjectAccessReview
    // is refused to the controller, then both answer.
    fake.then(500, status(500, "etcd timeout"))
        .then(201, authenticated("tok-3"))
        .then(403, status(403, "cannot create subjectaccessreviews"))
        .then(201, authenticated("tok-3"))
        .then(201, access_review(true));
    let metrics = Arc::new(Metrics::default());
    let auth = MetricsAuth::new(client, metrics.clone());

    let r = auth.respond(&bearer("tok-3")).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    assert!(!body(r).await.contains("cronwarden_"));
    assert_eq!(auth.respond(&bearer("tok-3")).await.status(), 503);
    assert_eq!(auth.respond(&bearer("tok-3")).await.status(), 200);
    let paths: Vec<_> = fake.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            TOKEN_REVIEWS,
            TOKEN_REVIEWS,
            ACCESS_REVIEWS,
            TOKEN_REVIEWS,
            ACCESS_REVIEWS
        ]
    );
    assert_eq!(counted(&metrics, "error"), 2.0);
    assert_eq!(counted(&metrics, "allowed"), 1.0);
}

#[tokio::test]
async fn tokens_are_decided_separately() {
    let (client, fake) = api();
    fake.then(201, authenticated("a"))
        .then(201, access_review(true))
        .then(201, token_review("b", json!({"authenticated": false})));
    let auth = MetricsAuth::new(client, Arc::new(Metrics::default()));
    assert_eq!(auth.decide(&bearer("a")).await, Decision::Allowed);
    assert_eq!(auth.decide(&bearer("b")).await, Decision::Unauthenticated);
    assert_eq!(auth.decide(&bearer("a")).await, Decision::Allowed);
    assert_eq!(fake.requests().len(), 3);
}

fn run_args(extra: &[&str]) -> RunArgs {
    let mut argv = vec![
        "cronwarden",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--probe-addr",
        "127.0.0.1:0",
    ];
    argv.extend_from_slice(extra);
    let Command::Run(args) = Cli::parse_from(argv).command else {
        unreachable!()
    };
    *args
}

#[test]
fn the_flags_and_their_defaults() {
    let Command::Run(args) = Cli::parse_from(["cronwarden", "run"]).command else {
        unreachable!()
    };
    assert_eq!(args.metrics_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(args.probe_addr.to_string(), "0.0.0.0:8081");
    assert!(!args.metrics_insecure);
    assert!(args.metrics_cert.is_none() && args.metrics_key.is_none());
    for argv in [
        &["cronwarden", "run", "--metrics-cert", "c.pem"][..],
        &["cronwarden", "run", "--metrics-key", "k.pem"],
        &[
            "cronwarden",
            "run",
            "--metrics-insecure",
            "--metrics-cert",
            "c.pem",
            "--metrics-key",
            "k.pem",
        ],
    ] {
        assert!(Cli::try_parse_from(argv).is_err(), "{argv:?} accepted");
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// GET `path` over `io` (HTTP/1.1), with a bearer token when given.
async fn get<S>(io: S, path: &str, token: Option<&str>) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header(header::HOST, "localhost");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let r = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let code = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn metrics_are_served_over_https_and_probes_over_plain_http() {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, pem("CERTIFICATE", made.cert.der())).unwrap();
    std::fs::write(&key, pem("PRIVATE KEY", &made.signing_key.serialize_der())).unwrap();
    let args = run_args(&[
        "--metrics-cert",
        cert.to_str().unwrap(),
        "--metrics-key",
        key.to_str().unwrap(),
    ]);
    let (client, fake) = api();
    fake.then(201, authenticated("scraper"))
        .then(201, access_review(true));
    let bound = metrics_auth::serve(&args, client, Arc::new(Metrics::default()))
        .await
        .unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let https = || async {
        let tcp = tokio::net::TcpStream::connect(bound.metrics).await.unwrap();
        connector
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap()
    };

    let (code, _) = get(https().await, "/metrics", None).await;
    assert_eq!(code, 401);
    let (code, text) = get(https().await, "/metrics", Some("scraper")).await;
    assert_eq!(code, 200);
    assert!(text.contains("cronwarden_metrics_auth_total"), "{text}");
    assert_eq!(fake.requests().len(), 2);
    // Plain HTTP on the metrics port gets no metrics.
    let plain = tokio::net::TcpStream::connect(bound.metrics).await.unwrap();
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(plain)),
    )
    .await;
    if let Ok(Ok((mut send, conn))) = answered {
        tokio::spawn(conn);
        let r = send
            .send_request(
                Request::get("/metrics")
                    .header(header::HOST, "localhost")
                    .body(Empty::new())
                    .unwrap(),
            )
            .await;
        assert!(r.is_err(), "plain HTTP answered: {r:?}");
    }

    // The probes: plain HTTP, their own port, no /metrics there.
    let probe = || async { tokio::net::TcpStream::connect(bound.probes).await.unwrap() };
    let (code, text) = get(probe().await, "/readyz", None).await;
    assert_eq!(code, 503, "{text}");
    let (code, _) = get(probe().await, "/healthz", None).await;
    assert_ne!(code, 404);
    let (code, _) = get(probe().await, "/metrics", None).await;
    assert_eq!(code, 404);
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn metrics_insecure_serves_plain_http_to_anyone() {
    let args = run_args(&["--metrics-insecure"]);
    let (client, fake) = api();
    let bound = metrics_auth::serve(&args, client, Arc::new(Metrics::default()))
        .await
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(bound.metrics).await.unwrap();
    let (code, text) = get(tcp, "/metrics", None).await;
    assert_eq!(code, 200);
    assert!(text.contains("cronwarden_leader"), "{text}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn a_bad_certificate_or_a_taken_port_names_the_flag() {
    let (client, _fake) = api();
    let args = run_args(&[
        "--metrics-cert",
        "/nonexistent/tls.crt",
        "--metrics-key",
        "/nonexistent/tls.key",
    ]);
    let e = metrics_auth::serve(&args, client.clone(), Arc::new(Metrics::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--metrics-addr 127.0.0.1:0")
            && e.contains("--metrics-cert: /nonexistent/tls.crt"),
        "{e}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let Command::Run(args) = Cli::parse_from([
        "cronwarden",
        "run",
        "--metrics-insecure",
        "--metrics-addr",
        "127.0.0.1:0",
        "--probe-addr",
        &addr,
    ])
    .command
    else {
        unreachable!()
    };
    let e = metrics_auth::serve(&args, client, Arc::new(Metrics::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with(&format!("--probe-addr {addr}: ")), "{e}");
}
