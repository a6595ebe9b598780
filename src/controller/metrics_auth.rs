//! `/metrics` only for callers the API server lets read it (SPEC 5.1), as
//! Kubebuilder projects serve it: over HTTPS, and for each request the
//! bearer token is checked with a TokenReview, then the user it names with
//! a SubjectAccessReview for `get` on the non-resource URL `/metrics`. Bind
//! the `cronwarden-metrics-reader` ClusterRole to Prometheus's service
//! account.
//!
//! - 401 without a bearer token or with one the API server does not
//!   authenticate, 403 when the authorizer does not allow it, 503 when a
//!   review fails (fail closed: never the metrics), 200 otherwise.
//! - Decisions are cached per SHA-256 of the token for 60 s, at most 1024
//!   of them. When full, expired ones go first, then refusals before
//!   permissions, oldest first: a flood of random tokens neither grows
//!   memory nor evicts Prometheus. A failed review is not cached.
//! - At most 8 reviews are in flight (later requests wait), each 10 s at
//!   most.
//! - The probes (`/healthz`, `/readyz`) are on their own plain-HTTP port
//!   (`--probe-addr`) for the kubelet. `--metrics-insecure` serves
//!   `/metrics` over plain HTTP to anyone, for local runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing::{debug, error, info, warn};

use crate::audit::webhook::{read_pem_certs, read_pem_key, server_config, spawn_https};
use crate::cli::RunArgs;
use crate::telemetry::{self, Metrics};

/// How long a decision about a token is kept.
pub const TTL: Duration = Duration::from_secs(60);
/// Decisions kept at most.
pub const CAPACITY: usize = 1024;
/// Reviews in flight at most.
const IN_FLIGHT: usize = 8;
/// Longest a TokenReview and SubjectAccessReview may take together.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// What one request to `/metrics` gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No bearer token, or one the API server does not authenticate.
    Unauthenticated,
    /// Authenticated, but not allowed to `get` `/metrics`.
    Forbidden,
    /// A review failed: refused, and not cached.
    Error,
}

impl Decision {
    /// The `result` label of `cronwarden_metrics_auth_total`.
    pub fn label(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Unauthenticated => "unauthenticated",
            Decision::Forbidden => "forbidden",
            Decision::Error => "error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Decision::Allowed => StatusCode::OK,
            Decision::Unauthenticated => StatusCode::UNAUTHORIZED,
            Decision::Forbidden => StatusCode::FORBIDDEN,
            Decision::Error => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Decisions by token digest, bounded in age and number.
struct Cache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<[u8; 32], (Decision, Instant)>,
}

impl Cache {
    fn new(ttl: Duration, capacity: usize) -> Cache {
        Cache {
            ttl,
            capacity: capacity.max(1),
            entries: HashMap::new(),
        }
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.ttl
    }

    fn get(&self, key: &[u8; 32], now: Instant) -> Option<Decision> {
        self.entries
            .get(key)
            .filter(|(_, at)| self.fresh(*at, now))
            .map(|(d, _)| *d)
    }

    fn put(&mut self, key: [u8; 32], decision: Decision, now: Instant) {
        if decision == Decision::Error {
            return;
        }
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let (ttl, entries) = (self.ttl, &mut self.entries);
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= self.capacity {
                // Refusals first, oldest first: bad tokens evict each other.
                let victim = entries
                    .iter()
                    .min_by_key(|(_, (d, at))| (*d == Decision::Allowed, *at))
                    .map(|(k, _)| *k);
                if let Some(k) = victim {
                    entries.remove(&k);
                }
            }
        }
        self.entries.insert(key, (decision, now));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The token of `Authorization: Bearer <token>`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The user a TokenReview's answer names, when it authenticated the token.
fn authenticated(review: TokenReview) -> Option<UserInfo> {
    let status = review.status?;
    if status.authenticated != Some(true) {
        return None;
    }
    status
        .user
        .filter(|u| u.username.as_deref().is_some_and(|n| !n.is_empty()))
}

/// May `user` `get` the non-resource URL `/metrics`?
fn access_review(user: UserInfo) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username,
            groups: user.groups,
            uid: user.uid,
            extra: user.extra,
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some("/metrics".into()),
                verb: Some("get".into()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

fn allowed(review: &SubjectAccessReview) -> bool {
    review
        .status
        .as_ref()
        .is_some_and(|s| s.allowed && s.denied != Some(true))
}

/// Decides, with the API server, who may read `/metrics`.
pub struct MetricsAuth {
    client: Client,
    metrics: Arc<Metrics>,
    cache: Mutex<Cache>,
    in_flight: Semaphore,
}

impl MetricsAuth {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> MetricsAuth {
        MetricsAuth {
            client,
            metrics,
            cache: Mutex::new(Cache::new(TTL, CAPACITY)),
            in_flight: Semaphore::new(IN_FLIGHT),
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Decision> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key, Instant::now())
    }

    /// The decision for one request's headers, counted in
    /// `cronwarden_metrics_auth_total`.
    pub async fn decide(&self, headers: &HeaderMap) -> Decision {
        let decision = match bearer(headers) {
            None => Decision::Unauthenticated,
            Some(token) => self.decide_token(token).await,
        };
        self.metrics.metrics_auth(decision.label());
        decision
    }

    async fn decide_token(&self, token: &str) -> Decision {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(d) = self.cached(&key) {
            return d;
        }
        let _permit = self.in_flight.acquire().await.ok();
        // A request with the same token may have answered while this waited.
        if let Some(d) = self.cached(&key) {
            return d;
        }
        let decision = match tokio::time::timeout(REVIEW_TIMEOUT, self.review(token)).await {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                warn!(error = %e, "/metrics: review failed; answering 503");
                Decision::Error
            }
            Err(_) => {
                warn!(
                    timeout_s = REVIEW_TIMEOUT.as_secs(),
                    "/metrics: review timed out; answering 503"
                );
                Decision::Error
            }
        };
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, decision, Instant::now());
        decision
    }

    /// A TokenReview, then (authenticated) a SubjectAccessReview.
    async fn review(&self, token: &str) -> Result<Decision, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_owned(),
                ..TokenReviewSpec::default()
            },
            ..TokenReview::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let Some(user) = authenticated(answer) else {
            return Ok(Decision::Unauthenticated);
        };
        let name = user.username.clone().unwrap_or_default();
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access_review(user))
            .await?;
        if allowed(&answer) {
            Ok(Decision::Allowed)
        } else {
            debug!(user = name, "/metrics: not allowed to get /metrics");
            Ok(Decision::Forbidden)
        }
    }

    /// The answer to one request for `/metrics`.
    pub async fn respond(&self, headers: &HeaderMap) -> Response {
        let decision = self.decide(headers).await;
        let code = decision.status();
        match decision {
            Decision::Allowed => telemetry::metrics_response(&self.metrics),
            Decision::Unauthenticated => (
                code,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "send a bearer token the API server authenticates\n",
            )
                .into_response(),
            Decision::Forbidden => (
                code,
                "not allowed to get /metrics (bind the cronwarden-metrics-reader ClusterRole)\n",
            )
                .into_response(),
            Decision::Error => (
                code,
                [(header::RETRY_AFTER, "5")],
                "could not review the token; try again\n",
            )
                .into_response(),
        }
    }
}

/// `/metrics` behind `auth`.
pub fn router(auth: Arc<MetricsAuth>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(
                |State(auth): State<Arc<MetricsAuth>>, headers: HeaderMap| async move {
                    auth.respond(&headers).await
                },
            ),
        )
        .with_state(auth)
}

/// The server's TLS settings: `--metrics-cert` and `--metrics-key`, or a
/// self-signed certificate made now.
pub fn tls_config(cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<rustls::ServerConfig> {
    let (chain, key) = match (cert, key) {
        (Some(cert), Some(key)) => (
            read_pem_certs(cert).map_err(|e| anyhow!("--metrics-cert: {e}"))?,
            read_pem_key(key).map_err(|e| anyhow!("--metrics-key: {e}"))?,
        ),
        (None, None) => {
            let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
                .map_err(|e| anyhow!("making a self-signed certificate: {e}"))?;
            info!(
                "no --metrics-cert: /metrics uses a self-signed certificate made at start-up (scrape with insecure_skip_verify)"
            );
            let key = PrivatePkcs8KeyDer::from(made.signing_key.serialize_der());
            (vec![made.cert.der().clone()], PrivateKeyDer::Pkcs8(key))
        }
        _ => anyhow::bail!("--metrics-cert and --metrics-key go together"),
    };
    server_config(chain, key, None).map_err(|e| anyhow!("--metrics-cert/--metrics-key: {e}"))
}

/// Where [`serve`] listens.
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub metrics: SocketAddr,
    pub probes: SocketAddr,
}

async fn bind(
    flag: &str,
    addr: SocketAddr,
) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow!("{flag} {addr}: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| anyhow!("{flag} {addr}: {e}"))?;
    Ok((listener, bound))
}

fn spawn_plain(what: &'static str, listener: tokio::net::TcpListener, router: Router) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!(error = %e, "{what} stopped");
        }
    });
}

/// Start both servers of `cronwarden run`: `/metrics` on `--metrics-addr`
/// (HTTPS behind the API server's review, or plain HTTP with
/// `--metrics-insecure`) and the probes on `--probe-addr` (plain HTTP). A
/// bad certificate or a failed bind comes back at once, naming the flag.
pub async fn serve(args: &RunArgs, client: Client, metrics: Arc<Metrics>) -> anyhow::Result<Bound> {
    let tls = if args.metrics_insecure {
        None
    } else {
        let config = tls_config(args.metrics_cert.as_deref(), args.metrics_key.as_deref())
            .map_err(|e| anyhow!("TLS of --metrics-addr {}: {e}", args.metrics_addr))?;
        Some(config)
    };
    let (probes, probes_addr) = bind("--probe-addr", args.probe_addr).await?;
    let (listener, metrics_addr) = bind("--metrics-addr", args.metrics_addr).await?;
    spawn_plain(
        "probe server",
        probes,
        telemetry::probe_router(metrics.clone()),
    );
    info!(addr = %probes_addr, "serving /healthz, /readyz");
    match tls {
        None => {
            warn!(addr = %metrics_addr, "serving /metrics over plain HTTP to anyone (--metrics-insecure)");
            spawn_plain(
                "metrics server",
                listener,
                telemetry::metrics_router(metrics),
            );
        }
        Some(config) => {
            let router = router(Arc::new(MetricsAuth::new(client, metrics)));
            spawn_https(
                "metrics server",
                listener,
                config,
                || {},
                move |_| hyper_util::service::TowerToHyperService::new(router.clone()),
            );
            info!(addr = %metrics_addr, "serving /metrics over HTTPS to callers allowed to get it (TokenReview, SubjectAccessReview)");
        }
    }
    Ok(Bound {
        metrics: metrics_addr,
        probes: probes_addr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::TokenReviewStatus;
    use k8s_openapi::api::authorization::v1::SubjectAccessReviewStatus;

    fn key(n: u32) -> [u8; 32] {
        Sha256::digest(n.to_le_bytes()).into()
    }

    #[test]
    fn decisions_expire_after_the_ttl() {
        let t0 = Instant::now();
        let mut c = Cache::new(TTL, CAPACITY);
        c.put(key(1), Decision::Allowed, t0);
        c.put(key(2), Decision::Forbidden, t0);
        c.put(key(3), Decision::Unauthenticated, t0);
        let almost = t0 + TTL - Duration::from_millis(1);
        assert_eq!(c.get(&key(1), almost), Some(Decision::Allowed));
        assert_eq!(c.get(&key(2), almost), Some(Decision::Forbidden));
        assert_eq!(c.get(&key(3), almost), Some(Decision::Unauthenticated));
        assert_eq!(c.get(&key(1), t0 + TTL), None);
        assert_eq!(c.get(&key(2), t0 + TTL), None);
        assert_eq!(c.get(&key(4), t0), None);
        // A new answer for the same token replaces the old one.
        c.put(key(1), Decision::Forbidden, t0 + TTL);
        assert_eq!(c.get(&key(1), t0 + TTL), Some(Decision::Forbidden));
    }

    #[test]
    fn errors_are_not_cached() {
        let t0 = Instant::now();
        let mut c = Cache::new(TTL, CAPACITY);
        c.put(key(1), Decision::Error, t0);
        assert_eq!(c.get(&key(1), t0), None);
        assert_eq!(c.len(), 0);
        // Nor do they overwrite what was known.
        c.put(key(1), Decision::Allowed, t0);
        c.put(key(1), Decision::Error, t0);
        assert_eq!(c.get(&key(1), t0), Some(Decision::Allowed));
    }

    #[test]
    fn a_flood_of_tokens_stays_bounded_and_keeps_the_allowed_ones() {
        let t0 = Instant::now();
        let mut c = Cache::new(TTL, CAPACITY);
        c.put(key(0), Decision::Allowed, t0);
        for n in 1..20_000 {
            c.put(
                key(n),
                Decision::Unauthenticated,
                t0 + Duration::from_micros(n as u64),
            );
            assert!(c.len() <= CAPACITY);
        }
        assert_eq!(c.len(), CAPACITY);
        let now = t0 + Duration::from_secs(1);
        assert_eq!(c.get(&key(0), now), Some(Decision::Allowed));
        // The newest refusals are kept, the oldest went.
        assert_eq!(c.get(&key(19_999), now), Some(Decision::Unauthenticated));
        assert_eq!(c.get(&key(1), now), None);
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first() {
        let t0 = Instant::now();
        let mut c = Cache::new(TTL, 3);
        c.put(key(1), Decision::Forbidden, t0);
        c.put(key(2), Decision::Allowed, t0 + TTL / 2);
        c.put(key(3), Decision::Forbidden, t0 + TTL / 2);
        let later = t0 + TTL + Duration::from_secs(1);
        c.put(key(4), Decision::Allowed, later);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&key(1), later), None);
        assert_eq!(c.get(&key(2), later), Some(Decision::Allowed));
        assert_eq!(c.get(&key(3), later), Some(Decision::Forbidden));
        assert_eq!(c.get(&key(4), later), Some(Decision::Allowed));
        // Full of fresh entries: the oldest refusal goes before any permission.
        c.put(key(5), Decision::Allowed, later);
        assert_eq!(c.get(&key(3), later), None);
        assert_eq!(c.get(&key(2), later), Some(Decision::Allowed));
        // Only permissions: the oldest goes.
        c.put(key(6), Decision::Allowed, later);
        assert_eq!(c.get(&key(2), later), None);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn only_a_bearer_token_is_taken() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert_eq!(bearer(&with("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer(&with("bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("Bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with("Bearer ")), None);
        assert_eq!(bearer(&with("Bearer")), None);
        assert_eq!(bearer(&with("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    fn token_review(status: Option<TokenReviewStatus>) -> TokenReview {
        TokenReview {
            status,
            ..TokenReview::default()
        }
    }

    fn user(name: &str) -> UserInfo {
        UserInfo {
            username: Some(name.into()),
            uid: Some("uid-1".into()),
            groups: Some(vec!["system:serviceaccounts".into()]),
            extra: Some([("scopes".to_owned(), vec!["a".to_owned()])].into()),
        }
    }

    #[test]
    fn a_token_review_authenticates_only_with_a_user() {
        let ok = TokenReviewStatus {
            authenticated: Some(true),
            user: Some(user("prometheus")),
            ..TokenReviewStatus::default()
        };
        assert_eq!(
            authenticated(token_review(Some(ok.clone()))),
            Some(user("prometheus"))
        );
        let no = TokenReviewStatus {
            authenticated: Some(false),
            error: Some("invalid bearer token".into()),
            ..ok.clone()
        };
        assert_eq!(authenticated(token_review(Some(no))), None);
        let unset = TokenReviewStatus {
            authenticated: None,
            ..ok.clone()
        };
        assert_eq!(authenticated(token_review(Some(unset))), None);
        let nameless = TokenReviewStatus {
            user: Some(user("")),
            ..ok
        };
        assert_eq!(authenticated(token_review(Some(nameless))), None);
        assert_eq!(authenticated(token_review(None)), None);
    }

    #[test]
    fn the_access_review_asks_for_get_on_the_metrics_url_as_the_user() {
        let sar = access_review(user("system:serviceaccount:monitoring:prometheus"));
        let spec = &sar.spec;
        assert_eq!(
            spec.user.as_deref(),
            Some("system:serviceaccount:monitoring:prometheus")
        );
        assert_eq!(spec.uid.as_deref(), Some("uid-1"));
        assert_eq!(spec.groups, user("x").groups);
        assert_eq!(spec.extra, user("x").extra);
        assert_eq!(
            spec.non_resource_attributes,
            Some(NonResourceAttributes {
                path: Some("/metrics".into()),
                verb: Some("get".into()),
            })
        );
        assert!(spec.resource_attributes.is_none());
    }

    #[test]
    fn only_an_explicit_allow_allows() {
        let with = |status: Option<SubjectAccessReviewStatus>| SubjectAccessReview {
            status,
            ..SubjectAccessReview::default()
        };
        let yes = SubjectAccessReviewStatus {
            allowed: true,
            ..SubjectAccessReviewStatus::default()
        };
        assert!(allowed(&with(Some(yes.clone()))));
        assert!(!allowed(&with(Some(SubjectAccessReviewStatus::default()))));
        assert!(!allowed(&with(Some(SubjectAccessReviewStatus {
            denied: Some(true),
            ..yes
        }))));
        assert!(!allowed(&with(None)));
    }

    #[test]
    fn each_decision_has_its_code_and_label() {
        let all = [
            (Decision::Allowed, 200, "allowed"),
            (Decision::Unauthenticated, 401, "unauthenticated"),
            (Decision::Forbidden, 403, "forbidden"),
            (Decision::Error, 503, "error"),
        ];
        for (d, code, label) in all {
            assert_eq!(d.status().as_u16(), code);
            assert_eq!(d.label(), label);
        }
    }

    #[test]
    fn without_files_a_self_signed_certificate_is_made() {
        let config = tls_config(None, None).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        let only_one = tls_config(Some(Path::new("/nonexistent.crt")), None).unwrap_err();
        assert!(only_one.to_string().contains("go together"), "{only_one}");
        let missing = tls_config(
            Some(Path::new("/nonexistent.crt")),
            Some(Path::new("/nonexistent.key")),
        )
        .unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("--metrics-cert: /nonexistent.crt"),
            "{missing}"
        );
    }
}
