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
