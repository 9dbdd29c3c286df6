//! Tried as an attacker would: forged log lines, cross-site form posts, errors that are not
//! problem documents, self-inflicted lockouts, and the second encoding of a token signature.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{b64, enrol_principal, text, Data, Server};
use serde_json::{json, Value};

fn problem(reply: &common::Reply) -> Value {
    assert!(
        reply.content_type.starts_with("application/problem+json"),
        "not a problem document: {reply:?}"
    );
    let doc = reply.json();
    assert!(
        doc["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{doc}"
    );
    assert_eq!(doc["status"], reply.status, "{doc}");
    doc
}

#[test]
fn caller_supplied_names_cannot_forge_log_lines() {
    let data = Data::new();
    let log = data.join("server.log");
    let server = Server::start_with(
        data,
        &[("SIGNET_LOG", "info,cryptoki=off")],
        &[],
        &[],
        Some(&log),
    );
    let admin = server.admin();
    let forged =
        "2026-01-01T00:00:00.000000Z  INFO audit: seq=1 principal=root action=key.sign FORGED";
    let encoded = format!(
        "x%0A{}%0D%0A{}",
        forged.replace(' ', "%20"),
        forged.replace(' ', "%20")
    );
    // A key name in the path, a target in a record, and names in bodies.
    admin.post(
        &format!("/v1/keys/{encoded}/sign"),
        &json!({"input": b64(b"x")}),
    );
    admin.post(&format!("/v1/keys/{encoded}/rotate"), &json!({}));
    admin.post(
        "/v1/principals",
        &json!({"name": format!("p\n{forged}"), "scopes": []}),
    );
    admin.post(
        "/v1/tokens",
        &json!({"audience": format!("a\n{forged}"), "ttl": 60}),
    );
    let data = server.stop();
    let text = std::fs::read_to_string(data.join("server.log")).unwrap();
    assert!(
        text.contains("FORGED"),
        "the attempts did not reach the log"
    );
    for line in text.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00"),
            "a forged line: {line}"
        );
    }
    // The audit records carry the names escaped, on one line each.
    let records = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    for line in records.lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        assert!(!r["target"].as_str().unwrap().contains('\n'), "{r}");
    }
}

#[test]
fn json_endpoints_refuse_other_content_types() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    let body = json!({"input": b64(b"cross-site")}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ] {
        let reply = admin.post_typed("/v1/keys/k/sign", content_type, &body);
        assert_eq!(reply.status, 415, "{content_type:?}: {reply:?}");
        assert_eq!(problem(&reply)["type"], "/problems/unsupported-media-type");
    }
    let ok = admin.post_typed("/v1/keys/k/sign", "application/json; charset=utf-8", &body);
    assert_eq!(ok.status, 200, "{ok:?}");
    // curl --json, as the README writes it.
    let d = &server.data;
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--cacert",
            d.join("ca/root.pem").to_str().unwrap(),
        ])
        .args(["--cert", d.join("clients/admin.crt.pem").to_str().unwrap()])
        .args(["--key", d.join("clients/admin.key.pem").to_str().unwrap()])
        .args(["--json", &body])
        .arg(server.url("/v1/keys/k/sign"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Only the two JSON requests signed anything.
    let log = admin.get("/v1/audit?limit=10000").body;
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("\"action\":\"key.sign\"") && l.contains("\"outcome\":\"ok\""))
            .count(),
        2
    );
}

#[test]
fn every_error_class_is_a_problem_document() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    let bad_query = admin.get("/v1/audit?after=abc");
    assert_eq!(bad_query.status, 400);
    assert!(problem(&bad_query)["detail"]
        .as_str()
        .unwrap()
        .contains("query"));
    let bad_path = admin.post("/v1/keys/k/versions/first/disable", &json!({}));
    assert_eq!(bad_path.status, 400);
    problem(&bad_path);
    let wrong_method = admin.delete("/v1/ca/chain");
    assert_eq!(wrong_method.status, 405);
    assert_eq!(
        problem(&wrong_method)["type"],
        "/problems/method-not-allowed"
    );
    assert_eq!(problem(&admin.get("/v1/nothing"))["status"], 404);
    // A long name is echoed cut short, not whole.
    let long = "n".repeat(5000);
    let reply = admin.post(
        &format!("/v1/keys/{long}/sign"),
        &json!({"input": b64(b"x")}),
    );
    let doc = problem(&reply);
    assert!(doc["detail"].as_str().unwrap().len() < 400, "{doc}");
    // An oversized upload over HTTP/2 is answered with 413, not a reset stream.
    let d = &server.data;
    let big = d.join("big.json");
    std::fs::write(
        &big,
        format!("{{\"input\":\"{}\"}}", "A".repeat(2 * 1024 * 1024)),
    )
    .unwrap();
    for version in ["--http2", "--http1.1"] {
        let out = Command::new("curl")
            .args([
                "-sS",
                version,
                "--cacert",
                d.join("ca/root.pem").to_str().unwrap(),
            ])
            .args(["--cert", d.join("clients/admin.crt.pem").to_str().unwrap()])
            .args(["--key", d.join("clients/admin.key.pem").to_str().unwrap()])
            .args(["-H", "content-type: application/json"])
            .args(["-w", "\n%{http_code} %{http_version}"])
            .arg("--data-binary")
            .arg(format!("@{}", big.display()))
            .arg(server.url("/v1/keys/k/sign"))
            .output()
            .unwrap();
        let t = text(&out);
        assert!(out.status.success(), "{version}: {t}");
        assert!(
            t.contains("payload-too-large") && t.contains("\n413 "),
            "{version}: {t}"
        );
    }
    let data = server.stop();
    let records = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    assert!(!records.contains(&long), "a long name was stored whole");
}

#[test]
fn self_inflicted_lockouts_are_refused() {
    let server = Server::start();
    let admin = server.admin();
    // The server's own certificate.
    let server_pem = std::fs::read_to_string(server.data.join("ca/server.pem")).unwrap();
    let server_serial = serial_from_pem(&server.data, &server_pem);
    let reply = admin.post(
        &format!("/v1/certificates/{server_serial}/revoke"),
        &json!({}),
    );
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(problem(&reply)["detail"]
        .as_str()
        .unwrap()
        .contains("own TLS certificate"));
    // The only admin's own certificate.
    let admin_pem = std::fs::read_to_string(server.data.join("clients/admin.crt.pem")).unwrap();
    let admin_serial = serial_from_pem(&server.data, &admin_pem);
    let reply = admin.post(
        &format!("/v1/certificates/{admin_serial}/revoke"),
        &json!({}),
    );
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(problem(&reply)["detail"]
        .as_str()
        .unwrap()
        .contains("would leave no admin"));
    assert_eq!(admin.get("/healthz").status, 200);
    // With a second admin enrolled, the first one's certificate can go.
    let second = enrol_principal(&server, &admin, "admin2", &["admin"]);
    let reply = second.post(
        &format!("/v1/certificates/{admin_serial}/revoke"),
        &json!({"reason": "superseded"}),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
}

fn serial_from_pem(data: &Data, pem: &str) -> String {
    let path = data.join("serial-probe.pem");
    std::fs::write(&path, pem).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    text(&out)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

#[test]
fn the_high_s_twin_of_a_token_signature_is_inactive() {
    let server = Server::start();
    let admin = server.admin();
    let token = admin.post("/v1/tokens", &json!({"audience": "a"})).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    assert_eq!(sig.len(), 64);
    // s' = n - s over the P-256 group order: the same statement, signed "again".
    let n = hex_decode("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551");
    let mut s = sig[32..].to_vec();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = i16::from(n[i]) - i16::from(s[i]) - borrow;
        borrow = 0;
        if d < 0 {
            d += 256;
            borrow = 1;
        }
        s[i] = d as u8;
    }
    let twin = format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode([&sig[..32], &s[..]].concat())
    );
    let doc = admin
        .post("/v1/tokens/introspect", &json!({"token": twin}))
        .json();
    assert_eq!(doc["active"], false, "{doc}");
    assert_eq!(doc["reason"], "signature does not verify", "{doc}");
    let doc = admin
        .post("/v1/tokens/introspect", &json!({"token": token}))
        .json();
    assert_eq!(doc["active"], true, "{doc}");
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A ClientHello record with a session id of `sid_len` bytes (legal: at most 32), then `tail`.
fn client_hello(sid_len: u8, tail: &[u8]) -> Vec<u8> {
    let mut body = vec![0x03, 0x03];
    body.extend([0x5a; 32]); // random
    body.push(sid_len);
    body.extend(std::iter::repeat_n(0x11, sid_len as usize));
    body.extend([0x00, 0x02, 0x13, 0x01, 0x01, 0x00]); // one suite, null compression
    body.extend([0x00, 0x00]); // no extensions
    body.extend(tail);
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut record = vec![0x16, 0x03, 0x01, (hs.len() >> 8) as u8, hs.len() as u8];
    record.extend(hs);
    record
}

/// Every label value on /metrics comes from a fixed, documented set: a flood of malformed
/// ClientHellos (the 33-byte session id whose refusal text once became a label, quotes and
/// all, and mutated variants) and made-up HTTP methods from an enrolled client add no series
/// of their own, and the page parses with promtool and the Python prometheus_client parser.
#[test]
fn metrics_labels_come_from_fixed_sets_after_a_fuzzed_handshake_flood() {
    use std::io::{Read, Write};
    let server = Server::start();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..300u32 {
        let mut bytes = client_hello(if i % 3 == 0 { 33 } else { (i % 40) as u8 }, b"");
        // Flip a few bytes after the record header in most of them.
        for _ in 0..(i % 5) {
            let at = 5 + (next() as usize) % (bytes.len() - 5);
            bytes[at] = next() as u8;
        }
        if let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", server.port)) {
            let _ = tcp.set_read_timeout(Some(std::time::Duration::from_millis(500)));
            let _ = tcp.write_all(&bytes);
            let mut buf = [0u8; 64];
            let _ = tcp.read(&mut buf);
        }
    }
    // Made-up methods from an enrolled client, over HTTP/1.1 on a raw TLS stream.
    let clients = server.data.join("clients");
    let config = common::tls_config(
        &server.data.join("ca/root.pem"),
        Some((
            &clients.join("admin.crt.pem"),
            &clients.join("admin.key.pem"),
        )),
    );
    for method in ["FROB", "X\"Y", "GETT", "BREW"] {
        let tcp = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let conn = rustls::ClientConnection::new(
            std::sync::Arc::new(config.clone()),
            "localhost".try_into().unwrap(),
        )
        .unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        let _ = stream
            .write_all(format!("{method} /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes());
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
    }
    // Refusals are counted as they happen, but let the last ones land.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let page = server.admin().get("/metrics").body;
    let allowed: Vec<&str> = signet::service::metrics::REFUSAL_REASONS.to_vec();
    let mut reasons = 0;
    for line in page
        .lines()
        .filter(|l| l.starts_with("signet_tls_handshake_refusals_total{"))
    {
        let reason = line
            .split("reason=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert!(
            allowed.contains(&reason),
            "label {reason:?} is not in the set: {line}"
        );
        reasons += 1;
    }
    assert!(reasons >= 2, "{page}");
    for line in page
        .lines()
        .filter(|l| l.starts_with("signet_http_requests_total{"))
    {
        let method = line
            .split("method=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap();
        assert!(
            signet::service::metrics::METHODS.contains(&method),
            "method {method:?}: {line}"
        );
    }
    assert!(page.contains("method=\"other\""), "{page}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &page).unwrap();
    let promtool = Command::new("sh")
        .arg("-c")
        .arg(format!("promtool check metrics < {}", file.display()))
        .output()
        .unwrap();
    let t = text(&promtool);
    // promtool's lint may comment on naming; it must not find the page unparsable, nor a
    // family without its HELP (what it said of OpenMetrics served as text).
    assert!(
        !t.contains("error while linting") && !t.contains("parse") && !t.contains("no help text"),
        "{t}"
    );
    // A scraper asking for OpenMetrics gets it.
    let d = &server.data;
    let om = Command::new("curl")
        .args([
            "-sS",
            "-D",
            "-",
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
        ])
        .args(["--cacert", d.join("ca/root.pem").to_str().unwrap()])
        .args(["--cert", d.join("clients/admin.crt.pem").to_str().unwrap()])
        .args(["--key", d.join("clients/admin.key.pem").to_str().unwrap()])
        .arg(server.url("/metrics"))
        .output()
        .unwrap();
    let om = text(&om);
    assert!(
        om.contains("content-type: application/openmetrics-text")
            && om.trim_end().ends_with("# EOF"),
        "{om}"
    );
    assert!(!page.contains("# EOF") && page.contains("# HELP signet_http_requests_total "));
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py/bin/python");
    let parsed = Command::new(python)
        .args([
            "-c",
            "import sys; from prometheus_client.parser import text_string_to_metric_families as p; \
             n = sum(len(f.samples) for f in p(open(sys.argv[1]).read())); print(n)",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(parsed.status.success(), "{}", text(&parsed));
    let samples: usize = String::from_utf8_lossy(&parsed.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(samples > 10, "{}", text(&parsed));
}

/// Routes that change something without a body refuse the content types a cross-site form can
/// send (415), with or without a body, and change nothing; with no content type they work.
#[test]
fn bodyless_state_changes_refuse_cross_site_form_types() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    admin.post("/v1/keys", &json!({"name": "doomed", "spec": "ec-p256"}));
    admin.post(
        "/v1/keys/doomed/schedule-deletion",
        &json!({"pending_days": 2}),
    );
    let (_, csr) = common::openssl_csr(
        &server.data.join("clients"),
        "victim.test",
        &["-addext", "subjectAltName=DNS:victim.test"],
    );
    let serial = admin
        .post(
            "/v1/certificates",
            &json!({"csr": csr, "profile": "server", "name": "victim.test"}),
        )
        .json()["serial"]
        .as_str()
        .unwrap()
        .to_string();
    let routes = [
        "/v1/keys/k/rotate".to_string(),
        "/v1/keys/k/versions/1/disable".to_string(),
        "/v1/keys/k/versions/1/enable".to_string(),
        "/v1/keys/k/schedule-deletion".to_string(),
        "/v1/keys/doomed/cancel-deletion".to_string(),
        format!("/v1/certificates/{serial}/revoke"),
    ];
    for route in &routes {
        for content_type in [
            "application/x-www-form-urlencoded",
            "text/plain;charset=UTF-8",
            "multipart/form-data; boundary=----x",
        ] {
            for body in ["", "reason=keyCompromise"] {
                let reply = admin.post_typed(route, content_type, body);
                assert_eq!(
                    reply.status, 415,
                    "{route} {content_type:?} {body:?}: {reply:?}"
                );
                assert_eq!(problem(&reply)["type"], "/problems/unsupported-media-type");
            }
        }
    }
    // Nothing changed.
    let key = admin.get("/v1/keys/k").json();
    assert_eq!(key["versions"].as_array().unwrap().len(), 1, "{key}");
    assert!(key["deletion"].is_null(), "{key}");
    assert_eq!(
        admin.get(&format!("/v1/certificates/{serial}")).json()["status"],
        "active"
    );
    assert!(admin.get("/v1/keys/doomed").json()["deletion"].is_object());
    // Without a content type (what an API client sends with no body) they work.
    assert_eq!(admin.post_typed("/v1/keys/k/rotate", "", "").status, 200);
}

/// The `key=value` fields of a text log line, with quoted values unescaped; `None` when a
/// quote is not closed.
fn log_fields(line: &str) -> Option<Vec<(String, String)>> {
    let mut fields = Vec::new();
    let mut rest = line;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(' ').map_or(0, |i| i + 1);
        let key = rest[key_start..eq].to_string();
        let after = &rest[eq + 1..];
        if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, e)) = chars.next() {
                            value.push(e);
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end?;
            fields.push((key, value));
            rest = &quoted[end + 1..];
        } else {
            let value: String = after.chars().take_while(|c| *c != ' ').collect();
            rest = &after[value.len()..];
            fields.push((key, value));
        }
    }
    Some(fields)
}

/// Values from requests cannot add fields to a text log line: a key name in the path and a
/// token audience shaped like `x outcome="ok" principal=admin` stay inside one quoted value.
#[test]
fn caller_supplied_values_cannot_inject_log_fields() {
    let data = Data::new();
    let log = data.join("server.log");
    let server = Server::start_with(
        data,
        &[("SIGNET_LOG", "info,cryptoki=off")],
        &[],
        &[],
        Some(&log),
    );
    let admin = server.admin();
    let nobody = enrol_principal(&server, &admin, "nobody", &[]);
    let injected = "x outcome=\"ok\" principal=admin action=key.sign";
    let encoded = injected
        .replace(' ', "%20")
        .replace('"', "%22")
        .replace('=', "%3D");
    nobody.post(
        &format!("/v1/keys/{encoded}/sign"),
        &json!({"input": b64(b"x")}),
    );
    admin.post(&format!("/v1/keys/{encoded}/rotate"), &json!({}));
    admin.post(
        "/v1/tokens",
        &json!({"audience": format!("a\" principal=\"admin\" outcome=\"ok"), "ttl": 60}),
    );
    let data = server.stop();
    let text = std::fs::read_to_string(data.join("server.log")).unwrap();
    let mut seen = 0;
    for line in text.lines() {
        let fields = log_fields(line).unwrap_or_else(|| panic!("unparsable: {line}"));
        for key in ["principal", "outcome", "action"] {
            let n = fields.iter().filter(|(k, _)| k == key).count();
            assert!(n <= 1, "{key} appears {n} times: {line}");
        }
        if fields.iter().any(|(_, v)| v.contains("principal=admin")) {
            seen += 1;
            // The one principal field is the real caller's.
            if let Some((_, p)) = fields.iter().find(|(k, _)| k == "principal") {
                assert!(p == "nobody" || p == "admin", "{line}");
            }
        }
    }
    assert!(seen >= 1, "the attempts did not reach the log:\n{text}");
}

/// Over-long targets and over-large header sections are answered with problem documents
/// (414 and 431), over HTTP/1.1 and HTTP/2 alike, up to the HTTP library's own 64 KiB head.
#[test]
fn too_long_targets_and_headers_get_problem_documents() {
    let server = Server::start();
    let d = &server.data;
    let curl = |version: &str, extra: &[String], path: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-w",
                "\n%{http_code} %{content_type}",
                version,
                "--cacert",
            ])
            .arg(d.join("ca/root.pem"))
            .args(["--cert", d.join("clients/admin.crt.pem").to_str().unwrap()])
            .args(["--key", d.join("clients/admin.key.pem").to_str().unwrap()])
            .args(extra)
            .arg(server.url(path))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let long_path = format!("/v1/keys/{}", "a".repeat(10_000));
    let big_header = vec!["-H".to_string(), format!("X-Big: {}", "b".repeat(40_000))];
    let many: Vec<String> = (0..150)
        .flat_map(|i| ["-H".to_string(), format!("X-H{i}: v")])
        .collect();
    for version in ["--http1.1", "--http2"] {
        for (extra, path, status, kind) in [
            (&vec![], long_path.as_str(), "414", "uri-too-long"),
            (&big_header, "/healthz", "431", "header-fields-too-large"),
            (&many, "/healthz", "431", "header-fields-too-large"),
        ] {
            let answer = curl(version, extra, path);
            let (body, last) = answer.rsplit_once('\n').unwrap();
            assert_eq!(
                last,
                format!("{status} application/problem+json"),
                "{version} {path:.40}: {answer:.300}"
            );
            let doc: Value = serde_json::from_str(body).unwrap();
            assert_eq!(doc["type"], format!("/problems/{kind}"), "{doc}");
            assert!(doc["detail"].as_str().unwrap().contains("at most"), "{doc}");
        }
    }
}

/// Headers a TLS scanner looks for, read with curl: HSTS and nosniff on every answer, no
/// caching of answers (tokens, metadata) unless the route allows it (the JWKS).
#[test]
fn answers_carry_hsts_nosniff_and_no_store() {
    let server = Server::start();
    let d = &server.data;
    let headers = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-"])
            .args(["--cacert", d.join("ca/root.pem").to_str().unwrap()])
            .args(["--cert", d.join("clients/admin.crt.pem").to_str().unwrap()])
            .args(["--key", d.join("clients/admin.key.pem").to_str().unwrap()])
            .arg(server.url(path))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
    };
    for path in ["/v1/keys", "/v1/principals", "/v1/nothing-here"] {
        let h = headers(path);
        assert!(
            h.contains("strict-transport-security: max-age="),
            "{path}: {h}"
        );
        assert!(h.contains("x-content-type-options: nosniff"), "{path}: {h}");
        assert!(h.contains("cache-control: no-store"), "{path}: {h}");
    }
    let jwks = headers("/.well-known/jwks.json");
    assert!(
        jwks.contains("cache-control: public, max-age=") && !jwks.contains("no-store"),
        "{jwks}"
    );
}
