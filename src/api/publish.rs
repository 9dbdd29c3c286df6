//! The publication listener (`[publish] listen`, off by default): plain HTTP for relying
//! parties that are not enrolled, the usual way a CA publishes the URLs its certificates name
//! (CRL distribution points, AIA caIssuers). It serves GET and HEAD of the CA certificates and
//! CRLs, DER, and nothing else: no API route, no key, no state change.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::service::Service;

/// Connections served at once; more are closed as they come.
const MAX_CONNECTIONS: usize = 256;
/// Connections served at once from one address: no one address can take the listener from
/// the relying parties.
const MAX_PER_SOURCE: usize = 16;
/// A client has this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Any connection is closed after this long.
const MAX_CONNECTION: Duration = Duration::from_secs(60);
/// How long a relying party may cache a certificate, and a CRL (CRLs change on revocation).
const CERT_MAX_AGE: &str = "public, max-age=86400";
const CRL_MAX_AGE: &str = "public, max-age=60";

/// The publication router: one path segment, a published file's name.
pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/{name}", get(file))
        .fallback(not_here)
        .with_state(service)
}

async fn file(State(service): State<Arc<Service>>, Path(name): Path<String>) -> Response {
    let content_type = if name.ends_with(".crt") {
        "application/pkix-cert"
    } else if name.ends_with(".crl") {
        "application/pkix-crl"
    } else {
        return not_here().await;
    };
    let lookup = name.clone();
    let found = tokio::task::spawn_blocking(move || service.published_file(&lookup)).await;
    match found {
        Ok(Ok(Some(der))) => {
            let cache = if content_type == "application/pkix-crl" {
                CRL_MAX_AGE
            } else {
                CERT_MAX_AGE
            };
            (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, cache),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                der,
            )
                .into_response()
        }
        Ok(Ok(None)) => not_here().await,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, file = %crate::support::text::echo(&name), "publication: reading a file failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response(),
    }
}

async fn not_here() -> Response {
    let mut r = (
        StatusCode::NOT_FOUND,
        "not published here: only the CA certificates (.crt) and CRLs (.crl)\n",
    )
        .into_response();
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// Serves `listener` until the task is dropped: HTTP/1.1 only, a bounded number of
/// connections in all and from each address, each with a header timeout and a lifetime.
pub async fn serve(service: Arc<Service>, listener: TcpListener) {
    let app = router(service);
    let admission = super::conn::Admission::plain(MAX_CONNECTIONS, MAX_PER_SOURCE);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "publication: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match admission.admit(peer.ip()) {
            Ok(mut admitted) => {
                admitted.handshake_done();
                admitted
            }
            Err(refused) => {
                tracing::debug!(%peer, reason = refused.reason(), "publication: connection refused");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let app = app.clone();
                async move {
                    use tower::ServiceExt;
                    app.oneshot(req.map(axum::body::Body::new)).await
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024);
            let connection = builder.serve_connection(TokioIo::new(tcp), service);
            if let Ok(Err(e)) = tokio::time::timeout(MAX_CONNECTION, connection).await {
                tracing::debug!(%peer, error = %e, "publication: connection ended with an error");
            }
            drop(permit);
        });
    }
}
