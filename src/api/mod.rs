//! The HTTPS API: a TLS 1.3, mutual-TLS-only listener in front of axum routes. The routes come
//! from the service's action table; handlers only translate between HTTP and the service.

pub mod conn;
pub mod executor;
mod keys;
pub mod model;
mod number;
pub mod openapi;
mod ops;
mod pki;
mod problem;
pub mod problem_types;
pub mod publish;
pub mod routes;
mod tokens;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower::ServiceExt;

pub use problem::{
    problem_type_uri, set_problem_base, ApiJson, Ctx, Problem, RequestId, DEFAULT_PROBLEM_BASE,
};

use self::conn::{Activity, Admission, Close, Timeouts};
use self::problem_types::ProblemType;
use crate::config::Config;
use crate::service::{ClientIdentity, Service};

/// Shared state of the running service.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The service.
    pub service: Arc<Service>,
    /// Where blocking work runs.
    pub executor: Arc<executor::Executor>,
}

impl AppState {
    /// The state for `service`, with a worker pool sized by [`worker_threads`].
    pub fn new(service: Arc<Service>) -> std::io::Result<Self> {
        Ok(AppState {
            executor: Arc::new(executor::Executor::new(worker_threads(service.config()))?),
            service,
        })
    }
}

/// How many worker threads run requests' blocking work: one per token session (at least two),
/// and with a database one more per database connection, as each request then spends most of
/// its time waiting on the network. No more than the token can serve: with SoftHSM2 on two
/// CPUs, six workers for four sessions made 2.4–2.5 context switches per signature at 16
/// connections, two workers for two sessions 1.7–2.1 at the same rate (BENCHMARKS.md). While
/// every session is busy with a slow operation, other requests wait for a worker.
pub fn worker_threads(config: &crate::config::Config) -> usize {
    let mut threads = match &config.hsm {
        crate::config::HsmConfig::Pkcs11(p) => p.pool_size.max(2),
        // One card, one handle: more threads would only queue on it.
        crate::config::HsmConfig::Yubikey(_) => 3,
    };
    if let crate::config::StoreConfig::Postgres(pg) = &config.store {
        threads += pg.pool_size;
    }
    threads
}

/// The routes, one per row of the route table.
pub fn router(state: AppState) -> Router {
    set_problem_base(&state.service.config().server.problem_type_base);
    let body_limit = state.service.config().server.max_body_bytes;
    let mut router: Router<AppState> = Router::new();
    for route in routes::ROUTES {
        router = router.route(route.path, route.method_router());
    }
    // Built once; every answer shares it.
    let config = state.service.config().clone();
    ops::DOCUMENT.get_or_init(|| openapi::document_for(&config));
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .with_state(state)
}

async fn method_not_allowed(req: Request) -> Problem {
    let id = problem::request_id(req.extensions());
    Problem::new(
        ProblemType::MethodNotAllowed,
        format!("{} is not allowed on this route", req.method()),
        &id,
    )
}

async fn not_found(req: Request) -> Problem {
    let id = problem::request_id(req.extensions());
    Problem::new(ProblemType::NotFound, "no such route", &id)
}

/// Gives each request an id (echoed in `x-request-id`), counts and logs it.
async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let id = match crate::support::random::hex_id() {
        Ok(id) => id,
        Err(e) => {
            return axum::response::IntoResponse::into_response(Problem::from_error(&e.into(), "-"))
        }
    };
    req.extensions_mut().insert(RequestId(id.clone()));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    // The HTTP library's own limits are set above these (see `connection`), so a request over
    // them is answered here, with a problem document, not with an empty 414 or 431.
    if let Some(problem) = oversized(&req, &id) {
        let response = axum::response::IntoResponse::into_response(problem);
        return finish(response, &state, &id, &route, &method, started);
    }
    // Read the whole body before any handler or extractor can answer: an answer sent before
    // the body arrived (a 404 for a route that takes none, a 401, a 415) would make hyper close
    // the connection under a client that is about to reuse it.
    let has_body = req
        .headers()
        .contains_key(axum::http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    // A cross-site form (or a `text/plain` fetch without a CORS preflight) can send these
    // types: no route that changes anything takes them, body or not. Answered once the body
    // is read, like every other answer.
    let form = (!matches!(
        req.method(),
        &axum::http::Method::GET | &axum::http::Method::HEAD
    ))
    .then(|| simple_form_type(req.headers()))
    .flatten()
    .filter(|kind| {
        !(*kind == "application/x-www-form-urlencoded"
            && routes::takes_form(req.method().as_str(), &route))
    });
    let refuse_form = |kind: &str| {
        axum::response::IntoResponse::into_response(Problem::new(
            ProblemType::UnsupportedMediaType,
            format!("{kind} is what cross-site forms send: {method} takes application/json, or no body without a content type"),
            &id,
        ))
    };
    let response = if has_body {
        let (parts, body) = req.into_parts();
        match problem::read_body_of(body, &state, &id).await {
            Ok(_) if form.is_some() => refuse_form(form.unwrap_or_default()),
            Ok(bytes) => {
                next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                    .await
            }
            Err(problem) => axum::response::IntoResponse::into_response(problem),
        }
    } else if let Some(kind) = form {
        refuse_form(kind)
    } else {
        next.run(req).await
    };
    finish(response, &state, &id, &route, &method, started)
}

/// Longest request target (path and query) answered.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header fields in a request.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header fields (names and values) in a request.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The HTTP library's limits, above Signet's so that Signet answers first: HTTP/1 buffers a
/// request head up to this, HTTP/2 accepts a header list up to this.
const LIBRARY_HEAD_BYTES: usize = 64 * 1024;
const LIBRARY_MAX_HEADERS: usize = 256;

/// A 414 or 431 problem when the request is over Signet's limits.
fn oversized(req: &Request, id: &str) -> Option<Problem> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(Problem::new(
            ProblemType::UriTooLong,
            format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are taken"),
            id,
        ));
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return Some(Problem::new(
            ProblemType::HeadersTooLarge,
            format!(
                "the request has {} header fields and {bytes} bytes of them; at most {MAX_HEADERS} and {MAX_HEADER_BYTES} are taken",
                headers.len()
            ),
            id,
        ));
    }
    None
}

/// The content type, when it is one a cross-site HTML form can send without a preflight.
fn simple_form_type(headers: &axum::http::HeaderMap) -> Option<&'static str> {
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "text/plain",
    ]
    .into_iter()
    .find(|t| problem::has_content_type(headers, t))
}

/// Echoes the request id, counts and logs the answer.
fn finish(
    mut response: Response,
    state: &AppState,
    id: &str,
    route: &str,
    method: &str,
    started: Instant,
) -> Response {
    if let Ok(value) = id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    hardening_headers(response.headers_mut());
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    state
        .service
        .metrics()
        .request(route, method, status, elapsed);
    tracing::info!(target: "signet::request", request_id = %id, %method, %route, status, latency_ms = elapsed * 1000.0, "request");
    response
}

/// Headers every answer carries: HTTPS only from now on (HSTS), no content sniffing, and no
/// caching unless the route says otherwise (answers carry tokens, keys' metadata, bundles).
fn hardening_headers(headers: &mut axum::http::HeaderMap) {
    use axum::http::{header, HeaderValue};
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}

/// `signet serve`: builds a runtime and serves until SIGINT/SIGTERM.
pub fn serve_blocking(
    config: Config,
    listen: Option<SocketAddr>,
    demo: bool,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.server.io_threads())
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Bound first: the address in use (a `--listen` flag, port 0 made concrete) is what
        // the service advertises when no public URL is configured.
        let mut config = config;
        let addr = listen.unwrap_or(config.server.listen);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        config.server.listen = local;
        let publication = match config.publish.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("publication listener on {addr}"))?,
            ),
            None => None,
        };
        let (service, tls) = prepare(config).await?;
        if demo {
            let (s, base) = (service.clone(), service.config().server.public_url());
            for line in tokio::task::spawn_blocking(move || s.seed_demo(&base)).await?? {
                println!("{line}");
            }
        }
        let publication = match publication {
            Some(listener) => {
                println!(
                    "publishing the CA certificates and CRLs on http://{} (plain HTTP, GET only)",
                    listener.local_addr()?
                );
                Some(tokio::spawn(publish::serve(service.clone(), listener)))
            }
            None => None,
        };
        let server_file = service.paths().server_file();
        std::fs::write(
            &server_file,
            format!("pid {}, listening on https://{local}\n", std::process::id()),
        )?;
        announce(&service, local);
        let result = run(service, tls, listener, shutdown_signal()).await;
        if let Some(task) = publication {
            task.abort();
        }
        let _ = std::fs::remove_file(&server_file);
        result
    })
}

/// Opens the service, bootstraps the CA on first start, and builds the TLS config.
pub async fn prepare(config: Config) -> anyhow::Result<(Arc<Service>, Arc<crate::tls::Tls>)> {
    let addr = config.server.listen;
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let service = Arc::new(Service::open(config)?);
        if let Some(report) = service.bootstrap(addr)? {
            for (i, line) in report.lines.iter().enumerate() {
                if i == 0 {
                    println!("{line}");
                } else {
                    println!("  {line}");
                }
            }
        }
        // Every node has the CA's public certificates in its data directory, whichever made
        // the CA.
        service.write_public_ca_files()?;
        let tls = crate::tls::server_config(service.clone())?;
        // Keys whose deletion window passed while the service was down.
        service.housekeeping();
        Ok((service, Arc::new(tls)))
    })
    .await?
}

fn announce(service: &Service, addr: SocketAddr) {
    if cfg!(feature = "bench-unaudited") {
        println!("WARNING: benchmark build (bench-unaudited): requests are NOT audited");
    }
    let data = service.paths();
    let config = service.config();
    let admin = &config.server.admin;
    let host =
        if addr.ip().is_loopback() && config.server.server_dns.iter().any(|d| d == "localhost") {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
    let bundle = data.clients().join(format!("{admin}.crt.pem"));
    if bundle.exists() {
        println!(
            "try: curl --cacert {} --cert {} --key {} https://{host}/v1/keys",
            data.ca().join("root.pem").display(),
            bundle.display(),
            data.clients().join(format!("{admin}.key.pem")).display(),
        );
    } else {
        // Another node (or `ca init` elsewhere) made the CA: its admin bundle is there.
        println!(
            "the CA's root is in {}; the admin bundle was written where the CA was made (or issue one here: signet principal create NAME --scope ...; signet cert issue --profile client --name NAME --p12 FILE)",
            data.ca().join("root.pem").display()
        );
    }
    println!("listening on https://{addr} (TLS 1.3, client certificate required)");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Runs housekeeping periodically.
async fn housekeeping_loop(service: Arc<Service>) {
    let every = service.config().server.housekeeping_interval_secs.max(1);
    let mut ticker = tokio::time::interval(Duration::from_secs(every));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let s = service.clone();
        let _ = tokio::task::spawn_blocking(move || s.housekeeping()).await;
    }
}

/// How often a node looks for a CA rotation made elsewhere (`signet ca rotate`, or another
/// node).
const ROTATION_CHECK: Duration = Duration::from_secs(3);

/// Picks up CA rotations without a restart: a new server certificate and key, and the
/// intermediates to trust.
async fn rotation_loop(service: Arc<Service>, tls: Arc<crate::tls::Tls>) {
    let mut ticker = tokio::time::interval(ROTATION_CHECK);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (s, t) = (service.clone(), tls.clone());
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || t.reload(&s)).await {
            tracing::warn!(error = %e, "checking for a CA rotation");
        }
    }
}

/// Writes refusal summaries on their interval.
async fn refusal_loop(service: Arc<Service>) {
    let every = service.config().server.refusal_summary_secs.max(1);
    let mut ticker = tokio::time::interval(Duration::from_secs(every));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let s = service.clone();
        let _ = tokio::task::spawn_blocking(move || s.flush_refusals()).await;
    }
}

/// What every connection task needs.
struct Shared {
    service: Arc<Service>,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    trust_domain: String,
    timeouts: Timeouts,
    /// Response bytes held for slow readers, server-wide and per principal.
    response_budget: Arc<tokio::sync::Semaphore>,
    principal_budgets: conn::PrincipalBudgets,
    handshake_timeout: Duration,
    header_read_timeout: Duration,
}

/// Accepts connections until `shutdown`, then drains in-flight requests for the grace period.
pub async fn run(
    service: Arc<Service>,
    tls: Arc<crate::tls::Tls>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let server = &service.config().server;
    let admission = Admission::new(server);
    let state = AppState::new(service.clone())?;
    let executor = state.executor.clone();
    let shared = Arc::new(Shared {
        acceptor: tokio_rustls::TlsAcceptor::from(tls.config()),
        app: router(state),
        trust_domain: service.ca()?.settings().trust_domain.clone(),
        timeouts: Timeouts::new(server),
        response_budget: conn::ResponseBudget::server(server.max_buffered_response_bytes),
        principal_budgets: conn::PrincipalBudgets::new(
            server.max_buffered_response_bytes_per_principal,
        ),
        handshake_timeout: Duration::from_secs(server.handshake_timeout_secs),
        header_read_timeout: Duration::from_secs(server.header_read_timeout_secs),
        service: service.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let housekeeping = tokio::spawn(housekeeping_loop(service.clone()));
    let refusals = tokio::spawn(refusal_loop(service.clone()));
    let rotations = tokio::spawn(rotation_loop(service.clone(), tls.clone()));
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
        match admission.admit(peer.ip()) {
            Ok(admitted) => {
                tokio::spawn(connection(
                    shared.clone(),
                    tcp,
                    peer,
                    admitted,
                    stop_rx.clone(),
                ));
            }
            Err(refused) => {
                // Closed before any TLS work: the cheapest answer to a flood.
                drop(tcp);
                refuse(&service, peer, refused.reason());
            }
        }
    }
    tracing::info!("shutting down: draining in-flight requests");
    housekeeping.abort();
    refusals.abort();
    rotations.abort();
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + Duration::from_secs(server.shutdown_grace_secs);
    while admission.open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if admission.open() > 0 {
        tracing::warn!(
            open = admission.open(),
            "grace period over; closing the remaining connections"
        );
    }
    let s = service.clone();
    let _ = tokio::task::spawn_blocking(move || {
        executor.stop();
        s.shutdown()
    })
    .await;
    Ok(())
}

/// One connection: the handshake under its timeout, then HTTP until the client leaves, the
/// connection idles or ages out, or the service stops.
async fn connection(
    shared: Arc<Shared>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    mut admitted: conn::Admitted,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let accepted =
        tokio::time::timeout(shared.handshake_timeout, shared.acceptor.accept(tcp)).await;
    admitted.handshake_done();
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return refuse(&shared.service, peer, crate::tls::refusal_reason(&e)),
        Err(_) => return refuse(&shared.service, peer, "handshake-timeout"),
    };
    let identity = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| ClientIdentity::from_certificate(cert, &shared.trust_domain));
    let Some(identity) = identity else {
        return refuse(&shared.service, peer, "no-identity-in-certificate");
    };
    let activity = Activity::new();
    let app = shared.app.clone();
    let tracked = activity.clone();
    // Set when a request was refused for the certificate itself (revoked or expired since the
    // handshake): the connection is closed once that answer is out, so it cannot be used to
    // collect refusals forever.
    let refused = Arc::new(tokio::sync::Notify::new());
    let refusing = refused.clone();
    let budget = conn::ResponseBudget::new(
        shared.response_budget.clone(),
        shared.principal_budgets.of(&identity.name),
        shared
            .service
            .config()
            .server
            .max_buffered_response_bytes_per_connection,
    );
    let service = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(identity.clone());
        let app = app.clone();
        let activity = tracked.clone();
        let refusing = refusing.clone();
        let budget = budget.clone();
        async move {
            activity.begin();
            let response = app.oneshot(req.map(axum::body::Body::new)).await;
            activity.end();
            let Ok(mut r) = response;
            let id = r
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            if r.status() == axum::http::StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
                refusing.notify_one();
            }
            Ok::<_, std::convert::Infallible>(charge(&budget, r, &id))
        }
    });
    let service = hyper_util::service::TowerToHyperService::new(service);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(shared.header_read_timeout)
        .max_buf_size(LIBRARY_HEAD_BYTES)
        .max_headers(LIBRARY_MAX_HEADERS);
    builder
        .http2()
        .max_header_list_size(LIBRARY_HEAD_BYTES as u32)
        .max_concurrent_streams(100)
        .max_send_buf_size(64 * 1024);
    let io = TokioIo::new(conn::Tracked::new(stream, activity.clone()));
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut closing: Option<(Close, Instant)> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some((Close::Shutdown, Instant::now()));
            }
            _ = refused.notified(), if closing.is_none() => {
                tracing::debug!(%peer, "closing the connection of a revoked or expired certificate");
                connection.as_mut().graceful_shutdown();
                closing = Some((Close::Refused, Instant::now()));
            }
            _ = tick.tick() => match closing {
                None => {
                    if let Some(why) = shared.timeouts.due(&activity) {
                        tracing::debug!(%peer, ?why, "closing the connection");
                        connection.as_mut().graceful_shutdown();
                        closing = Some((why, Instant::now()));
                    }
                }
                Some((why, since)) if since.elapsed() > shared.timeouts.grace => {
                    tracing::debug!(%peer, ?why, "closing the connection now");
                    break;
                }
                Some(_) => {}
            },
        }
    }
    drop(admitted);
}

/// The response with its body charged to the budgets, or a short 503 when they are spent.
fn charge(budget: &conn::ResponseBudget, response: Response, id: &str) -> Response {
    let (parts, body) = response.into_parts();
    match budget.charge(body) {
        Some(body) => Response::from_parts(parts, axum::body::Body::new(body)),
        None => {
            let problem = Problem::new(
                ProblemType::NotReady,
                "too many answers wait for clients that do not read them; read the pending answers (or open the flow-control window) and try again",
                id,
            );
            let mut response = axum::response::IntoResponse::into_response(problem);
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            response
        }
    }
}

/// Counts a refused connection; audits it now while refusals are few, else in a summary.
/// Nothing waits for the record, and no thread is held for it.
fn refuse(service: &Arc<Service>, peer: SocketAddr, reason: &str) {
    if let Some(event) = service.note_refusal(peer.ip(), reason) {
        drop(service.audit().enqueue(vec![event]));
    }
}
