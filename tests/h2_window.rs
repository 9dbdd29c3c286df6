//! HTTP/2 clients that never read: a scope-less principal advertises
//! `SETTINGS_INITIAL_WINDOW_SIZE = 0` on 64 connections and asks for the API description (150
//! KB) on each stream it may open. The server's resident memory stays bounded (under 200 MB)
//! and another principal is still answered.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{enrol_principal, Server};

/// Resident memory of a process, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A TLS connection (handshakes one at a time: one source gets only a few at once).
async fn connect(port: u16, config: Arc<rustls::ClientConfig>) -> Tls {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(config)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// One zero-window connection: opens as many streams as the server allows (up to `streams`)
/// for `path`, reads their response heads, never their bodies. Returns the statuses seen and
/// the handles keeping the streams (and connection) open.
async fn hold(
    tls: Tls,
    path: &str,
    streams: usize,
) -> (
    Vec<u16>,
    Vec<h2::RecvStream>,
    h2::client::SendRequest<bytes_of::Bytes>,
) {
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, bytes_of::Bytes>(tls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut send = send;
    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..streams {
        match tokio::time::timeout(Duration::from_millis(500), send.clone().ready()).await {
            Ok(Ok(ready)) => send = ready,
            _ => break,
        }
        let request = http::Request::get(format!("https://localhost{path}"))
            .body(())
            .unwrap();
        match send.send_request(request, true) {
            Ok((response, _)) => pending.push(response),
            Err(_) => break,
        }
    }
    for response in pending {
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(10), response).await {
            statuses.push(response.status().as_u16());
            bodies.push(response.into_body());
        }
    }
    (statuses, bodies, send)
}

/// `bytes` under another name, so the test reads as what it is.
mod bytes_of {
    pub use axum::body::Bytes;
}

#[test]
fn zero_window_http2_clients_cannot_grow_server_memory_without_bound() {
    let server = Server::start();
    let admin = server.admin();
    enrol_principal(&server, &admin, "sloth", &[]);
    let clients = server.data.join("clients");
    let mut config = common::tls_config(
        &server.data.join("ca/root.pem"),
        Some((
            &clients.join("sloth.crt.pem"),
            &clients.join("sloth.key.pem"),
        )),
    );
    config.alpn_protocols = vec![b"h2".to_vec()];
    let config = Arc::new(config);
    let pid = server.child.id();
    let before = rss_kb(pid);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = server.port;
    let held = runtime.block_on(async move {
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let tls = connect(port, config.clone()).await;
            tasks.push(tokio::spawn(hold(tls, "/v1/openapi.json", 200)));
        }
        let mut held = Vec::new();
        for t in tasks {
            held.push(t.await.unwrap());
        }
        held
    });
    let statuses: Vec<u16> = held.iter().flat_map(|(s, _, _)| s.clone()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert!(
        statuses.len() >= 64 * 50,
        "only {} streams answered",
        statuses.len()
    );
    std::thread::sleep(Duration::from_millis(500));
    let during = rss_kb(pid);
    assert!(
        during < 200 * 1024,
        "server RSS {during} kB with {ok} unread answers held (was {before} kB)"
    );
    assert!(busy > 0, "no answer was refused: {ok} held");
    // Another principal is still answered meanwhile.
    assert_eq!(admin.get("/v1/keys").status, 200);
    eprintln!(
        "RSS {before} kB before, {during} kB with {} zero-window streams ({ok} answers held, {busy} refused with 503)",
        statuses.len()
    );
    drop(held);
    drop(runtime);
}
