//! Authenticated connections: a revocation (or a deleted principal) bites on the next request
//! of a connection that is already open; idle, half-sent and old connections are closed;
//! connection caps hold. Real TLS clients on loopback.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{b64, enrol_principal, Data, Server};
use serde_json::json;

fn server_with(config: &str) -> Server {
    let data = Data::new();
    let conf = data.join("signet.toml");
    std::fs::write(&conf, config).unwrap();
    let conf = conf.to_str().unwrap().to_string();
    Server::start_in(data, &[("SIGNET_CONFIG", &conf)])
}

/// A raw TLS 1.3 connection presenting the admin bundle.
fn admin_stream(server: &Server) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let clients = server.data.join("clients");
    let config = common::tls_config(
        &server.data.join("ca/root.pem"),
        Some((
            &clients.join("admin.crt.pem"),
            &clients.join("admin.key.pem"),
        )),
    );
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn get(stream: &mut impl Write) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    stream.flush().unwrap();
}

/// Reads one response (headers and the short body) and returns it as text.
fn read_response(stream: &mut impl Read) -> std::io::Result<String> {
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// When the server closed the stream (EOF or a reset), waiting up to `within`; a read that
/// merely times out means the connection is still open.
fn closed_within(
    stream: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    within: Duration,
) -> Option<Duration> {
    use std::io::ErrorKind::{TimedOut, WouldBlock};
    stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    while started.elapsed() < within {
        match stream.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            Err(e) if matches!(e.kind(), WouldBlock | TimedOut) => continue,
            Err(_) => return Some(started.elapsed()),
            Ok(_) => continue,
        }
    }
    None
}

#[test]
fn revocation_and_deletion_bite_on_the_next_request_of_an_open_connection() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    let client = enrol_principal(&server, &admin, "svc", &["keys:sign:k", "keys:create"]);
    // The agent keeps this connection open between requests.
    assert_eq!(
        client
            .post("/v1/keys/k/sign", &json!({"input": b64(b"before")}))
            .status,
        200
    );
    let serial = client.get("/healthz");
    assert_eq!(serial.status, 200);
    let certs = admin.get("/v1/audit?limit=10000").body;
    let svc_serial = certs
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["action"] == "cert.issue" && r["target"] == "svc" && r["outcome"] == "ok")
        .unwrap()["details"]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        admin
            .post(&format!("/v1/certificates/{svc_serial}/revoke"), &json!({}))
            .status,
        200
    );
    // Same connection, next request: refused as an HTTP answer (not a failed handshake).
    let signed = client
        .try_post("/v1/keys/k/sign", &json!({"input": b64(b"after")}))
        .expect("the open connection still answers");
    assert_eq!(signed.status, 401, "{signed:?}");
    assert!(signed.content_type.starts_with("application/problem+json"));
    assert!(signed.body.contains("revoked"), "{}", signed.body);
    let created = client
        .try_post("/v1/keys", &json!({"name": "sneaky"}))
        .unwrap();
    assert_eq!(created.status, 401);
    assert!(!admin.get("/v1/keys").body.contains("sneaky"));

    // A deleted principal's open connection loses every right at once, health included: its
    // certificates are revoked with it.
    let other = enrol_principal(&server, &admin, "leaver", &["keys:read"]);
    assert_eq!(other.get("/v1/keys").status, 200);
    assert_eq!(admin.delete("/v1/principals/leaver").status, 204);
    assert_eq!(other.get("/v1/keys").status, 401);
    assert_eq!(other.get("/healthz").status, 401);

    let log = admin.get("/v1/audit?limit=10000").body;
    assert!(
        log.lines().any(|l| l.contains("\"action\":\"request\"")
            && l.contains("certificate revoked")
            && l.contains("\"principal\":\"svc\"")),
        "the refused request was not audited"
    );
    assert!(!log.contains(&b64(b"after")));
}

#[test]
fn idle_half_sent_and_old_connections_are_closed() {
    let server = server_with(
        "[server]\nidle_timeout_secs = 2\nheader_read_timeout_secs = 2\nmax_connection_secs = 6\n",
    );
    // Idle: one request, then nothing.
    let mut idle = admin_stream(&server);
    get(&mut idle);
    assert!(read_response(&mut idle)
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    let closed = closed_within(&mut idle, Duration::from_secs(8)).expect("idle connection kept");
    assert!(closed >= Duration::from_millis(1500), "{closed:?}");

    // Half-sent: headers started, never finished.
    let mut slow = admin_stream(&server);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .unwrap();
    slow.flush().unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(8)).is_some(),
        "a half-sent request kept its connection"
    );

    // Busy but old: a request every second is never idle, yet the connection ends at its
    // maximum lifetime (after answering).
    let mut busy = admin_stream(&server);
    let started = Instant::now();
    let mut answered = 0;
    loop {
        get(&mut busy);
        match read_response(&mut busy) {
            Ok(r) if r.starts_with("HTTP/1.1 200") => answered += 1,
            _ => break,
        }
        if started.elapsed() > Duration::from_secs(15) {
            panic!("a busy connection outlived max_connection_secs");
        }
        std::thread::sleep(Duration::from_millis(900));
    }
    let lived = started.elapsed();
    assert!(answered >= 4, "{answered} answers in {lived:?}");
    assert!(lived >= Duration::from_secs(5), "{lived:?}");
}

#[test]
fn connection_caps_hold_per_source() {
    let server = server_with("[server]\nmax_connections_per_source = 3\n");
    // Three connections are held open; the fourth is closed before its handshake completes.
    let mut held: Vec<_> = (0..3).map(|_| admin_stream(&server)).collect();
    for s in held.iter_mut() {
        get(s);
        assert!(read_response(s).unwrap().starts_with("HTTP/1.1 200"));
    }
    let mut fourth = admin_stream(&server);
    let served = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .and_then(|()| fourth.flush())
        .and_then(|()| read_response(&mut fourth));
    assert!(
        served.is_err(),
        "a fourth connection was served: {served:?}"
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let mut again = admin_stream(&server);
    get(&mut again);
    assert!(read_response(&mut again)
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    let metrics = server.admin().get("/metrics").body;
    assert!(
        metrics.contains("reason=\"source-connection-cap\""),
        "{metrics}"
    );
}

/// A body that arrives after its headers, on a request answered without reading it (no such
/// route, a method the route does not take), leaves the connection usable: the server reads
/// the body before any answer. Otherwise hyper answers first, finds the rest of the body not
/// yet there and closes the connection under a client about to reuse it (ureq then sees
/// "Unexpected EOF" on its next request).
#[test]
fn a_late_body_does_not_cost_the_connection() {
    let server = Server::start();
    let mut stream = admin_stream(&server);
    let body = b"{}";
    for path in ["/v1/no-such-route", "/v1/status", "/v1/keys/nope/sign"] {
        stream
            .write_all(
                format!(
                    "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
        stream.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        stream.write_all(body).unwrap();
        stream.flush().unwrap();
        let answer = read_response(&mut stream)
            .unwrap_or_else(|e| panic!("{path}: the connection was closed: {e}"));
        assert!(answer.starts_with("HTTP/1.1 4"), "{path}: {answer}");
        assert!(
            !answer.to_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
    get(&mut stream);
    let answer = read_response(&mut stream).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// One address holding as many idle sockets as it may (they never start a TLS handshake) takes
/// only its share of the handshake slots: an admin from another address still connects, each
/// time within a second, for as long as the sockets are held.
#[test]
fn one_address_holding_idle_sockets_does_not_block_other_clients() {
    let server = Server::start();
    // 128 (max_connections_per_source) raw sockets from 127.0.0.1 that never say anything.
    let held: Vec<TcpStream> = (0..128)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", server.port)).ok())
        .collect();
    assert!(held.len() >= 64, "{}", held.len());
    std::thread::sleep(Duration::from_millis(200));
    let clients = server.data.join("clients");
    for round in 0..12 {
        common::answered_within_a_second_from_elsewhere(
            [
                "--cacert".as_ref(),
                server.data.join("ca/root.pem").as_os_str(),
                "--cert".as_ref(),
                clients.join("admin.crt.pem").as_os_str(),
                "--key".as_ref(),
                clients.join("admin.key.pem").as_os_str(),
                server.url("/healthz").as_ref(),
            ],
            &format!("round {round}"),
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(held);
    // The server notices the closed sockets as their handshakes fail: until then this
    // address's handshake slots may still be taken.
    let started = Instant::now();
    let metrics = loop {
        match server.admin().try_get("/metrics") {
            Ok(reply) => break reply.body,
            Err(e) if started.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(
        metrics.contains("reason=\"source-handshake-cap\""),
        "{metrics}"
    );
}

/// A raw TLS 1.3 connection presenting `DATA/clients/<name>.crt.pem` + `.key.pem`.
fn stream_as(
    server: &Server,
    name: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let clients = server.data.join("clients");
    let config = common::tls_config(
        &server.data.join("ca/root.pem"),
        Some((
            &clients.join(format!("{name}.crt.pem")),
            &clients.join(format!("{name}.key.pem")),
        )),
    );
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// Enrols `name` with a client certificate that lives `ttl` seconds.
fn enrol_for(server: &Server, name: &str, scopes: &[&str], ttl: u64) {
    let admin = server.admin();
    let dir = server.data.join("clients");
    assert_eq!(
        admin
            .post("/v1/principals", &json!({"name": name, "scopes": scopes}))
            .status,
        201
    );
    let (key, csr) = common::openssl_csr(&dir, name, &[]);
    let doc = admin
        .post(
            "/v1/certificates",
            &json!({"csr": csr, "profile": "client", "name": name, "ttl": ttl}),
        )
        .json();
    std::fs::write(
        dir.join(format!("{name}.crt.pem")),
        format!(
            "{}{}",
            doc["certificate"].as_str().unwrap(),
            doc["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(key, dir.join(format!("{name}.key.pem"))).unwrap();
}

/// A certificate that expires while its connection is open stops working on the next request
/// (401, audited), and the server closes that connection after answering. The server runs
/// with its clock ten times as fast (faketime), so the shortest certificate (60 s) expires in
/// six seconds.
#[test]
fn an_expired_certificate_stops_working_on_its_open_connection() {
    let data = Data::new();
    let conf = data.join("signet.toml");
    // Connection timeouts far beyond the test (the clock runs ten times as fast).
    std::fs::write(
        &conf,
        "[server]\nheader_read_timeout_secs = 600\nidle_timeout_secs = 600\nmax_connection_secs = 3600\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let server = Server::start_with(
        data,
        &[("SIGNET_CONFIG", &conf)],
        &["faketime", "-f", "+0 x10"],
        &[],
        None,
    );
    enrol_for(&server, "brief", &["keys:read"], 60);
    let mut stream = stream_as(&server, "brief");
    get(&mut stream);
    assert!(read_response(&mut stream)
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(4000));
    // Still working before it expires (about 40 s of the server's clock have passed).
    get(&mut stream);
    assert!(read_response(&mut stream)
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(3000));
    get(&mut stream);
    let answer = read_response(&mut stream).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("expired"), "{answer}");
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).is_some(),
        "the connection of an expired certificate stayed open"
    );
    let log = server.admin().get("/v1/audit?limit=10000").body;
    assert!(
        log.lines().any(|l| l.contains("\"action\":\"request\"")
            && l.contains("certificate expired")
            && l.contains("\"principal\":\"brief\"")),
        "{log}"
    );
}

/// A principal without scopes looping on denied requests adds a bounded number of records:
/// its first denials each second in full, the rest as one summary with their count. A revoked
/// certificate's open connection is answered once and closed.
#[test]
fn a_denial_loop_is_summarised_and_a_revoked_connection_is_closed() {
    let server = server_with("[server]\nrefusal_summary_secs = 1\n");
    let admin = server.admin();
    let nobody = enrol_principal(&server, &admin, "nobody", &[]);
    let before = admin.get("/v1/audit?limit=10000").body.lines().count();
    let started = Instant::now();
    let mut denied = 0;
    while denied < 1500 {
        assert_eq!(nobody.get("/v1/keys").status, 403);
        denied += 1;
    }
    let elapsed = started.elapsed().as_secs() + 1;
    std::thread::sleep(Duration::from_millis(2500));
    let log: Vec<serde_json::Value> = admin
        .get("/v1/audit?limit=10000")
        .body
        .lines()
        .skip(before)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let full = log
        .iter()
        .filter(|r| r["action"] == "key.list" && r["outcome"] == "denied")
        .count() as u64;
    let summarised: u64 = log
        .iter()
        .filter(|r| r["action"] == "authorization.denied.summary" && r["principal"] == "nobody")
        .map(|r| {
            r["details"]["count"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(full + summarised, 1500, "every denial is accounted for");
    assert!(
        full <= 5 * (elapsed + 1),
        "{full} full records in {elapsed} s"
    );

    // Revoked while open: one 401, then the server closes the connection.
    enrol_for(&server, "gone", &["keys:read"], 3600);
    let mut stream = stream_as(&server, "gone");
    get(&mut stream);
    assert!(read_response(&mut stream)
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    let serial = admin
        .get("/v1/audit?limit=10000")
        .body
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["action"] == "cert.issue" && r["target"] == "gone" && r["outcome"] == "ok")
        .unwrap()["details"]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        admin
            .post(&format!("/v1/certificates/{serial}/revoke"), &json!({}))
            .status,
        200
    );
    get(&mut stream);
    let answer = read_response(&mut stream).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).is_some(),
        "the connection of a revoked certificate stayed open"
    );
}
