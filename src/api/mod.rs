//! The HTTPS API: a TLS 1.3, mutual-TLS-only listener in front of axum routes. Every connection
//! carries a verified client certificate; every request gets an id, a caller and metrics.

mod keys;
mod metrics;
mod ops;
mod pki;
mod problem;
mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use signet_hsm::{KeyId, KeySpec};
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use metrics::Metrics;
pub use problem::{Ctx, Problem, RequestId, PROBLEM_BASE};

use crate::audit::{AuditLog, Event, Outcome};
use crate::authority;
use crate::config::Config;
use crate::runtime::Signet;

/// Shared state of the running service.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Token, store, config.
    pub signet: Signet,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// The issuing CA.
    pub ca: Arc<signet_pki::Ca>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Writes audit records and returns once they are durable (blocking; one sync for all). The
    /// one place request handlers write audit records; `bench-unaudited` builds skip it.
    pub fn record(&self, events: Vec<Event>) -> crate::error::Result<()> {
        if cfg!(feature = "bench-unaudited") {
            return Ok(());
        }
        self.audit.append_many(events)
    }
}

/// The routes.
pub fn router(state: AppState) -> Router {
    let body_limit = state.signet.config.server.max_body_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v1/audit", get(ops::audit))
        .route("/v1/keys", get(keys::list).post(keys::create))
        .route(
            "/v1/keys/{name}",
            get(keys::show).delete(keys::schedule_deletion),
        )
        .route("/v1/keys/{name}/rotate", post(keys::rotate))
        .route(
            "/v1/keys/{name}/cancel-deletion",
            post(keys::cancel_deletion),
        )
        .route(
            "/v1/keys/{name}/versions/{version}/disable",
            post(keys::disable),
        )
        .route(
            "/v1/keys/{name}/versions/{version}/enable",
            post(keys::enable),
        )
        .route("/v1/keys/{name}/sign", post(keys::sign))
        .route("/v1/keys/{name}/sign-batch", post(keys::sign_batch))
        .route("/v1/keys/{name}/verify", post(keys::verify))
        .route("/v1/ca/chain", get(pki::chain))
        .route("/v1/ca/crl", get(pki::crl))
        .route("/v1/certificates", post(pki::issue))
        .route("/v1/certificates/{serial}", get(pki::show))
        .route("/v1/certificates/{serial}/revoke", post(pki::revoke))
        .route(
            "/v1/principals",
            get(pki::list_principals).post(pki::create_principal),
        )
        .route(
            "/v1/principals/{name}",
            axum::routing::delete(pki::delete_principal),
        )
        .route("/v1/tokens", post(tokens::issue))
        .route("/v1/tokens/introspect", post(tokens::introspect))
        .route("/v1/tokens/revoke", post(tokens::revoke))
        .route("/.well-known/jwks.json", get(tokens::jwks))
        .route("/.well-known/signet", get(tokens::metadata))
        .fallback(ops::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

/// Gives each request an id (echoed in `x-request-id`) and counts it.
async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = random_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let mut response = next.run(req).await;
    if let Ok(value) = id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    state.metrics.request(&route, &method, status, elapsed);
    tracing::info!(target: "signet::request", request_id = %id, %method, %route, status, latency_ms = elapsed * 1000.0, "request");
    response
}

/// 128 random bits, hex.
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::getrandom(&mut bytes);
    hex::encode(bytes)
}

/// `signet serve`: builds a runtime and serves until SIGINT/SIGTERM.
pub fn serve_blocking(config: Config, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (state, tls, addr) = prepare(config, listen).await?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        let server_file = state.signet.data.server_file();
        std::fs::write(
            &server_file,
            format!("pid {}, listening on https://{local}\n", std::process::id()),
        )?;
        announce(&state, local);
        let result = run(state, tls, listener, shutdown_signal()).await;
        let _ = std::fs::remove_file(&server_file);
        result
    })
}

/// Opens the token and store, bootstraps the CA on first start, and builds the TLS config.
pub async fn prepare(
    config: Config,
    listen: Option<SocketAddr>,
) -> anyhow::Result<(AppState, Arc<rustls::ServerConfig>, SocketAddr)> {
    let addr = listen.unwrap_or(config.server.listen);
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let signet = Signet::open(config)?;
        let audit = Arc::new(AuditLog::open(
            &signet.data.audit(),
            signet.store.clone(),
            signet.backend.clone(),
            signet.config.audit.clone(),
        )?);
        audit.append(
            Event::new("signet", "-", "service.start", "signet", Outcome::Ok)
                .with("version", env!("CARGO_PKG_VERSION")),
        )?;
        audit.append(
            Event::new("signet", "-", "config.loaded", "signet", Outcome::Ok)
                .with("data_dir", signet.data.0.display())
                .with(
                    "hsm",
                    if signet.config.is_embedded() {
                        "embedded-softhsm2".to_string()
                    } else {
                        format!("{:?}", signet.config.hsm.module)
                    },
                )
                .with("listen", addr),
        )?;
        if signet.store.ca()?.is_none() {
            let report = authority::init(&signet, &authority::InitOptions::default())?;
            audit.append(
                Event::new("signet", "-", "ca.init", "ca", Outcome::Ok)
                    .with("reason", "first start"),
            )?;
            println!("first start: CA created");
            for line in report.lines {
                println!("  {line}");
            }
        }
        if signet.store.key(crate::tokens::TOKEN_KEY)?.is_none() {
            let record = crate::tokens::ensure_key(&signet)?;
            audit.append(
                Event::new(
                    "signet",
                    "-",
                    "key.create",
                    crate::tokens::TOKEN_KEY,
                    Outcome::Ok,
                )
                .with("spec", &record.spec)
                .with("purpose", "token signing"),
            )?;
        }
        let ca = Arc::new(authority::load(&signet)?);
        let record = authority::record(&signet)?;
        let server_cert = signet
            .store
            .cert(&record.server.serial)?
            .context("server certificate record missing")?;
        use base64::Engine;
        let server_der = base64::engine::general_purpose::STANDARD.decode(server_cert.der)?;
        let server_id = KeyId::from_hex(&record.server.key_id).context("server key id")?;
        let server_spec: KeySpec = record.server.spec.parse()?;
        let tls = crate::tls::server_config(
            signet.backend.clone(),
            signet.store.clone(),
            (server_id, server_spec),
            vec![server_der, ca.intermediate_der().to_vec()],
            ca.root_der(),
        )?;
        let state = AppState {
            signet,
            audit,
            ca,
            metrics: Arc::new(Metrics::new()),
        };
        // Keys whose deletion window passed while the service was down.
        ops::housekeeping(&state);
        Ok((state, Arc::new(tls), addr))
    })
    .await?
}

fn announce(state: &AppState, addr: SocketAddr) {
    if cfg!(feature = "bench-unaudited") {
        println!("WARNING: benchmark build (bench-unaudited): requests are NOT audited");
    }
    let data = &state.signet.data;
    let admin = &state.signet.config.server.admin;
    let host = if addr.ip().is_loopback()
        && state
            .signet
            .config
            .server
            .server_dns
            .iter()
            .any(|d| d == "localhost")
    {
        format!("localhost:{}", addr.port())
    } else {
        addr.to_string()
    };
    println!("listening on https://{addr} (TLS 1.3, client certificate required)");
    println!(
        "try: curl --cacert {} --cert {} --key {} https://{host}/v1/keys",
        data.ca().join("root.pem").display(),
        data.clients().join(format!("{admin}.crt.pem")).display(),
        data.clients().join(format!("{admin}.key.pem")).display(),
    );
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Accepts connections until `shutdown`, then drains in-flight requests for the grace period.
pub async fn run(
    state: AppState,
    tls: Arc<rustls::ServerConfig>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(state.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let trust_domain = state.ca.settings().trust_domain.clone();
    let housekeeping = tokio::spawn(ops::housekeeping_loop(state.clone()));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let state = state.clone();
        let trust_domain = trust_domain.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return refuse(&state, peer, &crate::tls::refusal_reason(&e)).await,
                Err(_) => return refuse(&state, peer, "handshake-timeout").await,
            };
            let caller = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| crate::authz::caller_from_cert(cert, &trust_domain));
            let Some(caller) = caller else {
                return refuse(&state, peer, "no-identity-in-certificate").await;
            };
            let service = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(caller.clone());
                req.map(axum::body::Body::new)
            });
            let service = hyper_util::service::TowerToHyperService::new(service);
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: draining in-flight requests");
    housekeeping.abort();
    let grace = Duration::from_secs(state.signet.config.server.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    let audit = state.audit.clone();
    let _ = tokio::task::spawn_blocking(move || {
        audit.append(Event::new(
            "signet",
            "-",
            "service.stop",
            "signet",
            Outcome::Ok,
        ))?;
        audit.checkpoint()?;
        audit.flush_marker()
    })
    .await;
    Ok(())
}

/// Counts, logs and audits a refused handshake.
async fn refuse(state: &AppState, peer: SocketAddr, reason: &str) {
    state.metrics.refusal(reason);
    tracing::info!(%peer, reason, "TLS handshake refused");
    let audit = state.audit.clone();
    let event = Event::new(
        "-",
        "-",
        "tls.handshake",
        &peer.to_string(),
        Outcome::Denied,
    )
    .with("reason", reason);
    let _ = tokio::task::spawn_blocking(move || audit.append(event)).await;
}
