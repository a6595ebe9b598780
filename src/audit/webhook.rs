//! The audit webhook: kube-apiserver's `--audit-webhook-config-file`
//! backend (batch mode) POSTs `EventList` bodies here over HTTPS (SPEC 7).
//!
//! - Every caller must authenticate: a client certificate signed by
//!   `--audit-webhook-client-ca` (checked in the TLS handshake), or the
//!   bearer token of `--audit-webhook-token-file` (compared in constant
//!   time, as SHA-256 digests so the length leaks nothing either). A
//!   webhook with neither refuses to start: an open one would let anyone
//!   in the network put words in the API server's mouth.
//! - 401 unauthenticated, 405 not POST, 413 over `--audit-webhook-max-body`
//!   (checked on Content-Length and again while reading), 400 malformed.
//! - A body is parsed off the async workers; memory is the body limit times
//!   the connections in flight, and the store's own bounds.
//! - Only HTTP/1.1 is offered (ALPN), which the API server's client speaks.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Bytes};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::{debug, info, warn};

use super::parse_line;
use super::sink::Sink;
use crate::cli::AuditSourceArgs;

/// What every request is checked against.
pub struct Gate {
    /// SHA-256 of the accepted bearer token.
    token: Option<[u8; 32]>,
    pub max_body: usize,
    /// Whether this replica attributes findings now (the leader).
    leading: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Gate {
    pub fn new(token: Option<&str>, max_body: usize) -> Gate {
        Gate {
            token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            max_body,
            leading: Box::new(|| true),
        }
    }

    /// Accept batches only while `leading()`: the API server's webhook
    /// reaches one replica per connection through the Service, and only the
    /// leader writes findings. A standby answers 503 and closes the
    /// connection, so the API server's retry (it retries a failed batch
    /// with backoff) opens a new one, which the Service may send to the
    /// leader.
    pub fn only_when(mut self, leading: impl Fn() -> bool + Send + Sync + 'static) -> Gate {
        self.leading = Box::new(leading);
        self
    }

    fn token_ok(&self, header: Option<&header::HeaderValue>) -> bool {
        let (Some(want), Some(h)) = (&self.token, header) else {
            return false;
        };
        let Some(given) = h.as_bytes().strip_prefix(b"Bearer ") else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given).into();
        bool::from(given.ct_eq(want))
    }
}

fn reply(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    r
}

/// Answer one request; `client_cert` says whether the TLS handshake
/// verified a client certificate.
pub async fn respond<B>(
    gate: &Gate,
    sink: &Arc<Sink>,
    req: Request<B>,
    client_cert: bool,
) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let metrics = sink.metrics();
    let reject = |reason: &str| metrics.audit(&metrics.audit_rejected, "webhook", reason);
    if !client_cert && !gate.token_ok(req.headers().get(header::AUTHORIZATION)) {
        reject("unauthenticated");
        return reply(
            StatusCode::UNAUTHORIZED,
            "authenticate with a client certificate or a bearer token\n",
        );
    }
    if req.method() != Method::POST {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an audit.k8s.io/v1 EventList\n",
        );
    }
    if !(gate.leading)() {
        reject("not_leader");
        let mut r = reply(StatusCode::SERVICE_UNAVAILABLE, "not the leader; retry\n");
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > gate.max_body as u64) {
        reject("too_large");
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "body over the limit\n");
    }
    let body = match Limited::new(req.into_body(), gate.max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                reject("too_large");
                return reply(StatusCode::PAYLOAD_TOO_LARGE, "body over the limit\n");
            }
            reject("malformed");
            return reply(StatusCode::BAD_REQUEST, "could not read the body\n");
        }
    };
    let sink2 = sink.clone();
    let parsed = tokio::task::spawn_blocking(move || match parse_line(&body) {
        Ok(events) => {
            sink2.events("webhook", events);
            true
        }
        Err(_) => false,
    })
    .await
    .unwrap_or(false);
    if parsed {
        reply(StatusCode::OK, "{}\n")
    } else {
        reject("malformed");
        reply(
            StatusCode::BAD_REQUEST,
            "not an audit.k8s.io/v1 Event or EventList\n",
        )
    }
}

/// Every certificate of a PEM file (at least one).
pub(crate) fn read_pem_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn read_pem_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The ring provider, rustls' safe protocol versions, one certificate, and
/// only HTTP/1.1 offered (ALPN).
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_auth {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS settings from the flags: server certificate, and client
/// certificates required (no token) or verified when offered (token too).
pub fn tls_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    token_too: bool,
) -> anyhow::Result<rustls::ServerConfig> {
    let chain = read_pem_certs(cert).map_err(|e| anyhow::anyhow!("--audit-webhook-cert: {e}"))?;
    let key = read_pem_key(key).map_err(|e| anyhow::anyhow!("--audit-webhook-key: {e}"))?;
    let client_auth = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                read_pem_certs(ca).map_err(|e| anyhow::anyhow!("--audit-webhook-client-ca: {e}"))?
            {
                roots.add(c).map_err(|e| {
                    anyhow::anyhow!("--audit-webhook-client-ca: {}: {e}", ca.display())
                })?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            );
            let v = if token_too {
                v.allow_unauthenticated()
            } else {
                v
            };
            Some(v.build()?)
        }
        None => None,
    };
    server_config(chain, key, client_auth)
        .map_err(|e| anyhow::anyhow!("--audit-webhook-cert/--audit-webhook-key: {e}"))
}

/// Accept connections on `listener` for ever and serve each over TLS with
/// HTTP/1.1, with the service `service` makes from the finished handshake.
/// `refused` is called for each handshake that fails; a handshake gets 10 s,
/// request headers 30 s.
pub(crate) fn spawn_https<M, S, B>(
    what: &'static str,
    listener: tokio::net::TcpListener,
    config: rustls::ServerConfig,
    refused: impl Fn() + Send + Sync + 'static,
    service: M,
) where
    M: Fn(&rustls::ServerConnection) -> S + Send + Sync + 'static,
    S: hyper::service::Service<Request<hyper::body::Incoming>, Response = Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let refused = Arc::new(refused);
    let service = Arc::new(service);
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "{what} accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let refused = refused.clone();
            let service = service.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        // A missing or unknown client certificate ends here.
                        debug!(%peer, error = %e, "{what} TLS handshake failed");
                        refused();
                        return;
                    }
                    Err(_) => return,
                };
                let svc = service(tls.get_ref().1);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(tls), svc);
                if let Err(e) = conn.await {
                    debug!(%peer, error = %e, "{what} connection");
                }
            });
        }
    });
}

/// The webhook's flags and files as [`start`] reads them, without binding
/// (`cronwarden run --check-config`).
pub fn check_flags(args: &AuditSourceArgs) -> anyhow::Result<()> {
    webhook_tls(args).map(|_| ())
}

/// The TLS settings and token of the webhook flags.
fn webhook_tls(args: &AuditSourceArgs) -> anyhow::Result<(rustls::ServerConfig, Option<String>)> {
    let (Some(cert), Some(key)) = (&args.webhook_cert, &args.webhook_key) else {
        anyhow::bail!("--audit-webhook-addr needs --audit-webhook-cert and --audit-webhook-key");
    };
    if args.webhook_client_ca.is_none() && args.webhook_token_file.is_none() {
        anyhow::bail!(
            "--audit-webhook-addr needs --audit-webhook-client-ca (mTLS) or --audit-webhook-token-file: an unauthenticated webhook would accept forged audit events"
        );
    }
    let token = match &args.webhook_token_file {
        Some(p) => Some(read_token(p)?),
        None => None,
    };
    let config = tls_config(
        cert,
        key,
        args.webhook_client_ca.as_deref(),
        token.is_some(),
    )?;
    Ok((config, token))
}

/// Bind and serve; errors in the flags or the bind come back at once.
pub async fn start(
    args: &AuditSourceArgs,
    sink: Arc<Sink>,
    leading: impl Fn() -> bool + Send + Sync + 'static,
) -> anyhow::Result<SocketAddr> {
    let Some(addr) = &args.webhook_addr else {
        anyhow::bail!("no --audit-webhook-addr");
    };
    let (config, token) = webhook_tls(args)?;
    let gate = Arc::new(Gate::new(token.as_deref(), args.webhook_max_body).only_when(leading));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--audit-webhook-addr {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    info!(addr = %bound, mtls = args.webhook_client_ca.is_some(), token = args.webhook_token_file.is_some(), "serving the audit webhook");
    let refused = sink.clone();
    spawn_https(
        "audit webhook",
        listener,
        config,
        move || {
            let m = refused.metrics();
            m.audit(&m.audit_rejected, "webhook", "unauthenticated");
        },
        move |tls| {
            let client_cert = tls.peer_certificates().is_some_and(|c| !c.is_empty());
            let gate = gate.clone();
            let sink = sink.clone();
            hyper::service::service_fn(move |req| {
                let gate = gate.clone();
                let sink = sink.clone();
                async move { Ok::<_, Infallible>(respond(&gate, &sink, req, client_cert).await) }
            })
        },
    );
    Ok(bound)
}

fn read_token(p: &PathBuf) -> anyhow::Result<String> {
    let t = std::fs::read_to_string(p)
        .map_err(|e| anyhow::anyhow!("--audit-webhook-token-file {}: {e}", p.display()))?;
    let t = t.trim().to_owned();
    if t.is_empty() {
        anyhow::bail!(
            "--audit-webhook-token-file {}: the file is empty",
            p.display()
        );
    }
    Ok(t)
}
