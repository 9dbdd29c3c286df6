//! Service behaviour beyond the happy path: expired and self-signed client certificates, crash
//! safety, the single-owner data directory, every scope allowed and denied, structured logs,
//! and destruction once a deletion window has passed.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{b64, enrol_principal, openssl_csr, text, Client, Data, Server};
use serde_json::{json, Value};

fn audit_export(data: &Data) -> Vec<Value> {
    let out = data.join("audit.jsonl");
    data.ok(&["audit", "export", "--out", out.to_str().unwrap()]);
    std::fs::read_to_string(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn refusal_reasons(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|r| r["action"] == "tls.handshake")
        .map(|r| r["details"]["reason"].as_str().unwrap().to_string())
        .collect()
}

fn curl_with(
    server: &Server,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::process::Output {
    Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--cacert",
            server.data.join("ca/root.pem").to_str().unwrap(),
        ])
        .args([
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .arg(server.url("/healthz"))
        .output()
        .unwrap()
}

#[test]
fn expired_and_self_signed_client_certificates_are_refused() {
    let server = Server::start();
    // A self-signed certificate claiming to be the admin.
    let d = server.data.join("clients");
    std::fs::write(d.join("self.cnf"), "[req]\ndistinguished_name=dn\n[dn]\n[ext]\nsubjectAltName=URI:spiffe://signet.local/admin\nextendedKeyUsage=clientAuth\n").unwrap();
    let (key, cert) = common::openssl_self_signed(
        &d,
        "self",
        "/CN=admin",
        &["-config", "self.cnf", "-extensions", "ext"],
    );
    let out = curl_with(&server, &cert, &key);
    assert!(
        !out.status.success(),
        "self-signed accepted: {}",
        text(&out)
    );
    let data = server.stop();
    assert!(refusal_reasons(&audit_export(&data)).contains(&"unknown-issuer".to_string()));

    // 400 days later the admin certificate (365 days) has expired: the server, run under
    // faketime, refuses it.
    let later = Server::start_with(data, &[], &["faketime", "+400 days"], &[], None);
    let clients = later.data.join("clients");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-k",
            "--cert",
            clients.join("admin.crt.pem").to_str().unwrap(),
            "--key",
            clients.join("admin.key.pem").to_str().unwrap(),
        ])
        .arg(later.url("/healthz"))
        .output()
        .unwrap();
    // The refusal's cause is asserted from the audit record below; curl may see the connection
    // close before it reads the alert.
    assert!(
        !out.status.success(),
        "expired certificate accepted: {}",
        text(&out)
    );
    let data = later.stop();
    assert!(refusal_reasons(&audit_export(&data)).contains(&"expired".to_string()));
}

#[test]
fn kill_9_right_after_201_loses_nothing() {
    let server = Server::start();
    let admin = server.admin();
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "k1", "spec": "ec-p384"}))
            .status,
        201
    );
    assert_eq!(admin.post("/v1/keys/k1/rotate", &json!({})).status, 200);
    assert_eq!(
        admin
            .post(
                "/v1/principals",
                &json!({"name": "p1", "scopes": ["keys:read"]})
            )
            .status,
        201
    );
    let (_, csr) = openssl_csr(&server.data.join("clients"), "p1", &[]);
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "client", "name": "p1"}),
    );
    assert_eq!(issued.status, 201);
    let serial = issued.json()["serial"].as_str().unwrap().to_string();
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "k2", "spec": "ed25519"}))
            .status,
        201
    );
    Command::new("kill")
        .args(["-9", &server.child.id().to_string()])
        .status()
        .unwrap();
    let data = server.stop();
    let again = Server::start_in(data, &[]);
    let admin = again.admin();
    let k1 = admin.get("/v1/keys/k1").json();
    assert_eq!(k1["primary_version"], 2, "{k1}");
    assert_eq!(admin.get("/v1/keys/k2").status, 200);
    assert_eq!(
        admin
            .post(
                "/v1/keys/k2/sign",
                &json!({"input": b64(b"after the crash")})
            )
            .status,
        200
    );
    assert_eq!(
        admin.get(&format!("/v1/certificates/{serial}")).json()["status"],
        "active"
    );
    let principals = admin.get("/v1/principals").body;
    assert!(principals.contains("\"p1\""), "{principals}");
}

#[test]
fn offline_cli_against_a_running_server_fails_clearly() {
    let server = Server::start();
    server
        .admin()
        .post("/v1/keys", &json!({"name": "held", "spec": "ec-p256"}));
    let out = server
        .data
        .signet(&["key", "create", "sneaky", "--spec", "ec-p256"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "held by the signet server (pid {}",
            server.child.id()
        )),
        "{t}"
    );
    assert!(t.contains("Nothing was changed"), "{t}");
    let list = server.admin().get("/v1/keys").body;
    assert!(!list.contains("sneaky"), "{list}");
    let data = server.stop();
    assert!(
        !data.join("server.pid").exists(),
        "server.pid left behind after a graceful stop"
    );
    let listing = data.ok(&["key", "list"]);
    assert!(
        listing.contains("held") && !listing.contains("sneaky"),
        "{listing}"
    );
}

#[test]
fn every_scope_allows_its_routes_and_nothing_else() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "m-1", "spec": "ec-p256"}));
    admin.post("/v1/keys", &json!({"name": "other", "spec": "ec-p256"}));
    let sig = admin
        .post("/v1/keys/m-1/sign", &json!({"input": b64(b"x")}))
        .json()["signature"]
        .clone();
    let dir = server.data.join("clients");
    let (_, server_csr) = openssl_csr(&dir, "web", &["-addext", "subjectAltName=DNS:web.local"]);
    let victim = admin
        .post(
            "/v1/certificates",
            &json!({"csr": server_csr, "profile": "server", "name": "web.local"}),
        )
        .json()["serial"]
        .as_str()
        .unwrap()
        .to_string();

    let cert_path = format!("/v1/certificates/{victim}");
    let revoke_path = format!("/v1/certificates/{victim}/revoke");
    let (cert_path, revoke_path) = (cert_path.as_str(), revoke_path.as_str());
    type Call<'a> = (&'a str, &'a str, Value);
    let status = |c: &Client, (method, path, body): &Call| match *method {
        "GET" => c.get(path).status,
        "DELETE" => c.delete(path).status,
        _ => c.post(path, body).status,
    };
    let cases: Vec<(&str, Call, Call)> = vec![
        (
            "keys:create",
            (
                "POST",
                "/v1/keys",
                json!({"name": "made", "spec": "ec-p256"}),
            ),
            ("GET", "/v1/keys", json!(null)),
        ),
        (
            "keys:read",
            ("GET", "/v1/keys", json!(null)),
            ("POST", "/v1/keys", json!({"name": "nope"})),
        ),
        (
            "keys:manage",
            ("POST", "/v1/keys/other/rotate", json!({})),
            ("POST", "/v1/keys/other/sign", json!({"input": b64(b"x")})),
        ),
        (
            "keys:sign:m-*",
            ("POST", "/v1/keys/m-1/sign", json!({"input": b64(b"x")})),
            ("POST", "/v1/keys/other/sign", json!({"input": b64(b"x")})),
        ),
        (
            "keys:verify",
            (
                "POST",
                "/v1/keys/m-1/verify",
                json!({"input": b64(b"x"), "signature": sig}),
            ),
            ("POST", "/v1/keys/m-1/sign", json!({"input": b64(b"x")})),
        ),
        (
            "certs:read",
            ("GET", cert_path, json!(null)),
            ("POST", revoke_path, json!({})),
        ),
        (
            "certs:issue",
            (
                "POST",
                "/v1/certificates",
                json!({"csr": openssl_csr(&dir, "web2", &["-addext", "subjectAltName=DNS:web2.local"]).1, "profile": "server", "name": "web2.local"}),
            ),
            ("GET", cert_path, json!(null)),
        ),
        (
            "certs:revoke",
            ("POST", revoke_path, json!({"reason": "superseded"})),
            ("GET", "/v1/principals", json!(null)),
        ),
        (
            "principals:manage",
            (
                "POST",
                "/v1/principals",
                json!({"name": "junior", "scopes": []}),
            ),
            (
                "POST",
                "/v1/principals",
                json!({"name": "usurper", "scopes": ["admin"]}),
            ),
        ),
        (
            "audit:read",
            ("GET", "/v1/audit?limit=5", json!(null)),
            ("GET", "/v1/keys", json!(null)),
        ),
        (
            "tokens:issue",
            ("POST", "/v1/tokens", json!({"audience": "a"})),
            ("POST", "/v1/tokens/introspect", json!({"token": "a.b.c"})),
        ),
        (
            "tokens:introspect",
            ("POST", "/v1/tokens/introspect", json!({"token": "a.b.c"})),
            ("POST", "/v1/tokens", json!({"audience": "a"})),
        ),
        (
            "tokens:revoke",
            ("POST", "/v1/tokens/revoke", json!({"jti": "some-jti"})),
            ("GET", "/v1/audit", json!(null)),
        ),
    ];
    for (i, (scope, allowed, denied)) in cases.iter().enumerate() {
        let client = enrol_principal(&server, &admin, &format!("p{i}"), &[scope]);
        let got = status(&client, allowed);
        assert!(
            (200..300).contains(&got),
            "{scope} should allow {} {}: {got}",
            allowed.0,
            allowed.1
        );
        assert_eq!(
            status(&client, denied),
            403,
            "{scope} should not allow {} {}",
            denied.0,
            denied.1
        );
    }
    // No scopes at all: only health, readiness, metrics, the chain and the well-known documents.
    let nobody = enrol_principal(&server, &admin, "nobody", &[]);
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/ca/chain",
        "/.well-known/jwks.json",
        "/.well-known/signet",
    ] {
        assert_eq!(nobody.get(path).status, 200, "{path}");
    }
    for path in ["/v1/keys", "/v1/principals", "/v1/audit", "/v1/keys/m-1"] {
        assert_eq!(nobody.get(path).status, 403, "{path}");
    }
}

#[test]
fn json_logs_carry_request_ids_and_no_secrets() {
    let data = Data::new();
    let log = data.join("server.log");
    let server = Server::start_with(
        data,
        &[("SIGNET_LOG", "info,cryptoki=off")],
        &[],
        &["--log-format", "json"],
        Some(&log),
    );
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    let token = admin.post("/v1/tokens", &json!({"audience": "a"})).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let signed = admin.post(
        "/v1/keys/k/sign",
        &json!({"input": b64(b"confidential payload")}),
    );
    let request_id = signed.json();
    let _ = request_id;
    let pin = std::fs::read_to_string(server.data.join("pin")).unwrap();
    let pass = std::fs::read_to_string(server.data.join("clients/admin.p12.pass")).unwrap();
    let data = server.stop();
    let text = std::fs::read_to_string(data.join("server.log")).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "signet::request")
        .collect();
    assert!(requests.len() >= 3, "{text}");
    assert!(
        requests
            .iter()
            .all(|r| r["request_id"].as_str().is_some_and(|id| id.len() == 32)),
        "{text}"
    );
    let audit_sign = lines
        .iter()
        .find(|l| l["target"] == "audit" && l["action"] == "key.sign")
        .unwrap();
    let rid = audit_sign["request_id"].as_str().unwrap();
    assert!(
        requests
            .iter()
            .any(|r| r["request_id"] == rid && r["route"] == "/v1/keys/{name}/sign"),
        "{text}"
    );
    for secret in [
        pin.as_str(),
        pass.as_str(),
        token.as_str(),
        &b64(b"confidential payload"),
    ] {
        assert!(!text.contains(secret), "a secret leaked into the log");
    }
}

#[test]
fn keys_are_destroyed_once_their_deletion_window_has_passed() {
    let server = Server::start();
    let admin = server.admin();
    let key = admin
        .post("/v1/keys", &json!({"name": "doomed", "spec": "ec-p256"}))
        .json();
    let key_id = key["versions"][0]["key_id"].as_str().unwrap().to_string();
    admin.post("/v1/keys", &json!({"name": "kept", "spec": "ec-p256"}));
    assert_eq!(
        admin
            .post(
                "/v1/keys/doomed/schedule-deletion",
                &json!({"pending_days": 1})
            )
            .status,
        202
    );
    let data = server.stop();
    // Two days later, the check at start destroys it in the token.
    let later = Server::start_with(data, &[], &["faketime", "+2 days"], &[], None);
    let admin = later.admin();
    let doomed = admin.get("/v1/keys/doomed").json();
    assert_eq!(doomed["versions"][0]["state"], "destroyed", "{doomed}");
    assert!(doomed["versions"][0].get("public_key_pem").is_none());
    assert_eq!(
        admin
            .post("/v1/keys/doomed/sign", &json!({"input": b64(b"x")}))
            .status,
        409
    );
    assert_eq!(
        admin
            .post("/v1/keys/kept/sign", &json!({"input": b64(b"x")}))
            .status,
        200
    );
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "doomed", "spec": "ec-p256"}))
            .status,
        409
    );
    let data = later.stop();
    let log = audit_export(&data);
    assert!(
        log.iter()
            .any(|r| r["action"] == "key.destroy" && r["target"] == "doomed"),
        "no key.destroy record"
    );
    // pkcs11-tool no longer finds the pair.
    let t = common::embedded_objects(&data, None);
    assert!(t.contains("signet:key:kept:v1"), "{t}");
    assert!(
        !t.contains("signet:key:doomed") && !t.contains(&key_id),
        "{t}"
    );
}

/// `serve --demo` seeds principals, keys and bundles, and its printed curl lines work as
/// printed: the signer signs, the reader reads and cannot sign. A second start adds nothing.
#[test]
fn demo_start_seeds_and_its_curl_lines_work() {
    // `--demo` belongs after `serve`, which the helper writes last: a shell appends it.
    let demo = ["sh", "-c", "exec \"$@\" --demo", "sh"];
    let server = Server::start_with(Data::new(), &[], &demo, &[], None);
    let line = |prefix: &str| {
        server
            .stdout
            .iter()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {prefix:?} in {:?}", server.stdout))
    };
    let sign = line("demo: sign:  ");
    let read = line("demo: read:  ");
    let run = |cmd: &str| {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{cmd} -sS -w '\\n%{{http_code}}'"))
            .output()
            .unwrap();
        text(&out)
    };
    let signed = run(&sign);
    assert!(
        signed.trim_end().ends_with("200") && signed.contains("\"signature\""),
        "{signed}"
    );
    let listed = run(&read);
    assert!(
        listed.trim_end().ends_with("200") && listed.contains("demo-rsa"),
        "{listed}"
    );
    // The reader holds no signing scope: its certificate on the sign line is refused.
    let refused = run(&sign.replace("demo-signer", "demo-reader"));
    assert!(refused.trim_end().ends_with("403"), "{refused}");
    let data = server.stop();
    let again = Server::start_with(data, &[], &demo, &[], None);
    assert!(
        !again
            .stdout
            .iter()
            .any(|l| l.starts_with("demo: principal") || l.starts_with("demo: key")),
        "{:?}",
        again.stdout
    );
}
