//! The service end to end: a real `signet serve` on loopback, real mTLS clients (rustls through
//! ureq, curl, openssl s_client) with certificates from Signet's own CA.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{b64, openssl, openssl_csr, text, unb64, Client, Server};
use serde_json::{json, Value};

fn problem_type(reply: &common::Reply) -> String {
    assert!(
        reply.content_type.starts_with("application/problem+json"),
        "{reply:?}"
    );
    let doc = reply.json();
    assert!(
        doc["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{doc}"
    );
    assert!(
        doc["request_id"].as_str().is_some_and(|d| d.len() == 32),
        "{doc}"
    );
    doc["type"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string()
}

fn openssl_verify(dir: &std::path::Path, pem: &str, msg: &[u8], sig: &[u8], digest: &str) -> bool {
    std::fs::write(dir.join("k.pem"), pem).unwrap();
    std::fs::write(dir.join("m"), msg).unwrap();
    std::fs::write(dir.join("s"), sig).unwrap();
    let out = openssl(
        dir,
        &["dgst", digest, "-verify", "k.pem", "-signature", "s", "m"],
    );
    out.status.success()
}

#[test]
fn key_lifecycle_over_mtls() {
    let server = Server::start();
    let admin = server.admin();
    let tmp = tempfile::tempdir().unwrap();

    let created = admin.post("/v1/keys", &json!({"name": "payments", "spec": "ec-p256"}));
    assert_eq!(created.status, 201, "{created:?}");
    let key = created.json();
    assert_eq!(key["versions"][0]["state"], "enabled");
    let pem_v1 = key["versions"][0]["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(key["versions"][0]["jwk"]["crv"], "P-256");
    assert_eq!(
        problem_type(&admin.post("/v1/keys", &json!({"name": "payments", "spec": "ec-p256"}))),
        "conflict"
    );

    let list = admin.get("/v1/keys").json();
    assert_eq!(list["keys"][0]["name"], "payments");

    let msg = b"transfer 100 to bob";
    let signed = admin.post("/v1/keys/payments/sign", &json!({"input": b64(msg)}));
    assert_eq!(signed.status, 200, "{signed:?}");
    let s = signed.json();
    assert_eq!(
        (s["version"].as_u64(), s["algorithm"].as_str()),
        (Some(1), Some("ES256"))
    );
    let sig = unb64(s["signature"].as_str().unwrap());
    assert!(
        openssl_verify(tmp.path(), &pem_v1, msg, &sig, "-sha256"),
        "openssl rejects the API's signature"
    );
    let verified = admin
        .post(
            "/v1/keys/payments/verify",
            &json!({"input": b64(msg), "signature": s["signature"]}),
        )
        .json();
    assert_eq!(verified["valid"], true);
    let forged = admin
        .post(
            "/v1/keys/payments/verify",
            &json!({"input": b64(b"transfer 999 to eve"), "signature": s["signature"]}),
        )
        .json();
    assert_eq!(forged["valid"], false);

    // Raw encoding and digest input.
    let digest = ring::digest::digest(&ring::digest::SHA256, msg);
    let raw = admin
        .post(
            "/v1/keys/payments/sign",
            &json!({"input": b64(digest.as_ref()), "input_type": "digest", "encoding": "raw"}),
        )
        .json();
    assert_eq!(unb64(raw["signature"].as_str().unwrap()).len(), 64);

    // Rotation: new signatures use v2; v1 still verifies and signs only when asked for.
    let rotated = admin.post("/v1/keys/payments/rotate", &json!({})).json();
    assert_eq!(rotated["primary_version"], 2);
    let s2 = admin
        .post("/v1/keys/payments/sign", &json!({"input": b64(msg)}))
        .json();
    assert_eq!(s2["version"], 2);
    let s1 = admin
        .post(
            "/v1/keys/payments/sign",
            &json!({"input": b64(msg), "version": 1}),
        )
        .json();
    assert_eq!(s1["version"], 1);
    let old = admin
        .post(
            "/v1/keys/payments/verify",
            &json!({"input": b64(msg), "signature": s["signature"], "version": 1}),
        )
        .json();
    assert_eq!(old["valid"], true);
    let wrong_version = admin
        .post(
            "/v1/keys/payments/verify",
            &json!({"input": b64(msg), "signature": s["signature"]}),
        )
        .json();
    assert_eq!(wrong_version["valid"], false);

    // Disable v1: it refuses to sign, still verifies; the primary cannot be disabled.
    assert_eq!(
        admin
            .post("/v1/keys/payments/versions/1/disable", &json!({}))
            .status,
        200
    );
    assert_eq!(
        problem_type(&admin.post(
            "/v1/keys/payments/sign",
            &json!({"input": b64(msg), "version": 1})
        )),
        "conflict"
    );
    assert_eq!(
        admin
            .post(
                "/v1/keys/payments/verify",
                &json!({"input": b64(msg), "signature": s["signature"], "version": 1})
            )
            .json()["valid"],
        true
    );
    assert_eq!(
        problem_type(&admin.post("/v1/keys/payments/versions/2/disable", &json!({}))),
        "conflict"
    );
    // The versions, or those in one state; a state that does not exist is a bad request.
    let versions = |query: &str| -> Vec<u64> {
        let reply = admin.get(&format!("/v1/keys/payments/versions{query}"));
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json()["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(versions(""), [1, 2]);
    assert_eq!(versions("?state=enabled"), [2]);
    assert_eq!(versions("?state=disabled"), [1]);
    assert!(versions("?state=destroyed").is_empty());
    assert_eq!(
        problem_type(&admin.get("/v1/keys/payments/versions?state=asleep")),
        "bad-request"
    );
    assert_eq!(
        admin
            .post("/v1/keys/payments/versions/1/enable", &json!({}))
            .status,
        200
    );
    assert_eq!(
        problem_type(&admin.post("/v1/keys/payments/versions/9/enable", &json!({}))),
        "not-found"
    );

    // Scheduled deletion blocks use at once; cancelling restores it.
    let schedule = "/v1/keys/payments/schedule-deletion";
    for refused in [
        json!({"pending_days": 0}),
        json!({"pending_days": 31}),
        json!({"pending_days": 2.5}),
        json!({"pending_days": "3"}),
        json!([3]),
    ] {
        let reply = admin.post(schedule, &refused);
        assert_eq!(problem_type(&reply), "bad-request", "{refused}: {reply:?}");
    }
    // An integer as JSON Schema counts them: 3.0 is 3.
    let scheduled = admin.post(schedule, &json!({"pending_days": 3.0}));
    assert_eq!(scheduled.status, 202, "{scheduled:?}");
    assert!(scheduled.json()["deletion"]["destroy_after"].is_string());
    assert_eq!(
        problem_type(&admin.post("/v1/keys/payments/sign", &json!({"input": b64(msg)}))),
        "conflict"
    );
    assert_eq!(
        problem_type(&admin.post("/v1/keys/payments/rotate", &json!({}))),
        "conflict"
    );
    assert_eq!(
        admin
            .post("/v1/keys/payments/cancel-deletion", &json!({}))
            .status,
        200
    );
    assert_eq!(
        admin
            .post("/v1/keys/payments/sign", &json!({"input": b64(msg)}))
            .status,
        200
    );
}

#[test]
fn sign_batch_answers_each_item() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "batch", "spec": "rsa-2048"}));
    // What the key refuses is the item's own answer (422)...
    let items = json!({"items": [
        {"input": b64(b"one"), "algorithm": "PS256"},
        {"input": b64(b"two"), "input_type": "digest", "context": b64(b"c")},
        {"input": b64(b"three"), "algorithm": "ES256"},
        {"input": b64(b"four")},
        {"input": b64(&[0u8; 10]), "input_type": "digest", "algorithm": "RS256"},
    ]});
    let reply = admin.post("/v1/keys/batch/sign-batch", &items);
    assert_eq!(reply.status, 200, "{reply:?}");
    let results = reply.json()["results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0]["algorithm"], "PS256");
    assert_eq!(results[1]["error"]["status"], 422);
    assert_eq!(results[2]["error"]["status"], 422);
    assert_eq!(results[3]["algorithm"], "RS256");
    assert!(
        results[4]["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("32-byte digest"),
        "{}",
        results[4]
    );
    // ...what the API description refuses (bad base64, an unknown field, an item that is not
    // an object) refuses the batch, naming the item.
    for (item, needle) in [
        (
            json!({"input": "%%%"}),
            "items[1]: input is not valid base64",
        ),
        (json!({"bogus": true}), "unknown field `bogus`"),
        (json!([b64(b"x")]), "expected a map"),
    ] {
        let reply = admin.post(
            "/v1/keys/batch/sign-batch",
            &json!({"items": [{"input": b64(b"one")}, item]}),
        );
        assert_eq!(problem_type(&reply), "bad-request", "{reply:?}");
        assert!(reply.body.contains(needle), "{needle}: {}", reply.body);
    }
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"], i);
    }
    let good = admin.post("/v1/keys/batch/verify", &json!({"input": b64(b"one"), "algorithm": "PS256", "signature": results[0]["signature"]})).json();
    assert_eq!(good["valid"], true);
    let too_many: Vec<Value> = (0..101).map(|_| json!({"input": b64(b"x")})).collect();
    assert_eq!(
        problem_type(&admin.post("/v1/keys/batch/sign-batch", &json!({"items": too_many}))),
        "bad-request"
    );
    assert_eq!(
        problem_type(&admin.post("/v1/keys/batch/sign-batch", &json!({"items": []}))),
        "bad-request"
    );
}

#[test]
fn bad_input_gets_problem_documents() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "/v1/keys",
            "{not json".into(),
            "bad-request",
            "invalid JSON",
        ),
        (
            "/v1/keys",
            "".into(),
            "bad-request",
            "JSON body is required",
        ),
        (
            "/v1/keys",
            json!({"name": "x", "spec": "rsa-1024"}).to_string(),
            "bad-request",
            "unknown key spec",
        ),
        (
            "/v1/keys",
            json!({"name": "a/b", "spec": "ec-p256"}).to_string(),
            "bad-request",
            "must be 1-64",
        ),
        (
            "/v1/keys",
            json!({"name": "x", "extra": 1}).to_string(),
            "bad-request",
            "unknown field",
        ),
        (
            "/v1/keys/k/sign",
            json!({"input": b64(b"m"), "algorithm": "HS256"}).to_string(),
            "bad-request",
            "unknown signature algorithm",
        ),
        (
            "/v1/keys/k/sign",
            json!({"input": b64(b"m"), "algorithm": "none"}).to_string(),
            "bad-request",
            "unknown signature algorithm",
        ),
        (
            "/v1/keys/k/sign",
            json!({"input": b64(b"m"), "algorithm": "ES384"}).to_string(),
            "unprocessable",
            "does not fit",
        ),
        (
            "/v1/keys/k/sign",
            json!({"input": b64(&[1; 20]), "input_type": "digest"}).to_string(),
            "unprocessable",
            "32-byte digest",
        ),
        (
            "/v1/keys/k/sign",
            json!({"input": ""}).to_string(),
            "unprocessable",
            "empty",
        ),
        (
            "/v1/keys/k/sign",
            json!({"input": b64(b"m"), "input_type": "hash"}).to_string(),
            "bad-request",
            "unknown variant",
        ),
        (
            "/v1/keys/nope/sign",
            json!({"input": b64(b"m")}).to_string(),
            "not-found",
            "no key named",
        ),
        (
            "/v1/keys/k/verify",
            json!({"input": b64(b"m"), "signature": "???"}).to_string(),
            "bad-request",
            "signature is not valid base64",
        ),
        (
            "/v1/certificates",
            json!({"csr": "garbage", "profile": "client", "name": "admin"}).to_string(),
            "unprocessable",
            "PKCS#10",
        ),
        (
            "/v1/certificates",
            json!({"csr": "x", "profile": "root", "name": "admin"}).to_string(),
            "bad-request",
            "unknown profile",
        ),
        (
            "/v1/certificates/00/revoke",
            json!({"reason": "bored"}).to_string(),
            "bad-request",
            "unknown revocation reason",
        ),
        (
            "/v1/principals",
            json!({"name": "p", "scopes": ["superuser"]}).to_string(),
            "bad-request",
            "unknown scope",
        ),
    ];
    for (path, body, slug, needle) in cases {
        let reply = admin.post_raw(path, &body);
        assert_eq!(problem_type(&reply), slug, "{path} {body}: {reply:?}");
        assert!(
            reply.json()["detail"].as_str().unwrap().contains(needle),
            "{path} {body}: {}",
            reply.body
        );
    }
    assert_eq!(problem_type(&admin.get("/v1/nothing-here")), "not-found");
    let big = format!("{{\"input\":\"{}\"}}", "A".repeat(2 * 1024 * 1024));
    let reply = admin.post_raw("/v1/keys/k/sign", &big);
    assert_eq!(reply.status, 413, "{}", reply.body);
    assert_eq!(problem_type(&reply), "payload-too-large");
    // The service is still healthy after all that.
    assert_eq!(admin.get("/healthz").json()["status"], "ok");
    let ready = admin.get("/readyz").json();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["hsm"]["token"], "signet");
}

/// Writes a client identity (key + cert chain) for `name` issued through the API from an
/// openssl-made CSR.
fn enrol(
    server: &Server,
    admin: &Client,
    name: &str,
    scopes: &[&str],
    profile: &str,
) -> (Client, String) {
    let dir = server.data.join("clients");
    if profile == "client" {
        let created = admin.post("/v1/principals", &json!({"name": name, "scopes": scopes}));
        assert_eq!(created.status, 201, "{created:?}");
    }
    let extra: Vec<String> = if profile == "server" {
        vec!["-addext".into(), format!("subjectAltName=DNS:{name}")]
    } else {
        vec![]
    };
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let (key, csr) = openssl_csr(&dir, name, &extra);
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": profile, "name": name}),
    );
    assert_eq!(issued.status, 201, "{issued:?}");
    let doc = issued.json();
    let cert_path = dir.join(format!("{name}.crt.pem"));
    std::fs::write(
        &cert_path,
        format!(
            "{}{}",
            doc["certificate"].as_str().unwrap(),
            doc["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(&key, dir.join(format!("{name}.key.pem"))).unwrap();
    (
        server.client(name),
        doc["serial"].as_str().unwrap().to_string(),
    )
}

#[test]
fn enrolment_scopes_and_immediate_revocation() {
    let server = Server::start();
    let admin = server.admin();
    admin.post(
        "/v1/keys",
        &json!({"name": "billing-eu", "spec": "ec-p256"}),
    );
    admin.post("/v1/keys", &json!({"name": "payroll", "spec": "ec-p256"}));
    let (billing, serial) = enrol(
        &server,
        &admin,
        "billing",
        &["keys:sign:billing-*"],
        "client",
    );

    assert_eq!(
        billing
            .post(
                "/v1/keys/billing-eu/sign",
                &json!({"input": b64(b"invoice")})
            )
            .status,
        200
    );
    let denied = billing.post("/v1/keys/payroll/sign", &json!({"input": b64(b"salary")}));
    assert_eq!(denied.status, 403);
    assert_eq!(problem_type(&denied), "forbidden");
    assert!(denied.json()["detail"]
        .as_str()
        .unwrap()
        .contains("keys:sign:payroll"));
    assert_eq!(
        problem_type(&billing.post("/v1/keys", &json!({"name": "mine"}))),
        "forbidden"
    );
    assert_eq!(problem_type(&billing.get("/v1/principals")), "forbidden");
    assert_eq!(problem_type(&billing.get("/v1/audit")), "forbidden");
    // Anyone enrolled may read the chain and CRL.
    let chain = billing.get("/v1/ca/chain");
    assert_eq!(chain.body.matches("BEGIN CERTIFICATE").count(), 2);
    let crl = billing.try_get("/v1/ca/crl").unwrap();
    assert_eq!(crl.content_type, "application/pkix-crl");

    // A client certificate for someone who is not a principal is refused at issuance.
    let (_, csr) = openssl_csr(&server.data.join("clients"), "ghost", &[]);
    let reply = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "client", "name": "ghost"}),
    );
    assert!(
        reply.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no principal named"),
        "{reply:?}"
    );

    // Revocation takes effect on the next handshake, without a restart.
    let revoked = admin.post(
        &format!("/v1/certificates/{serial}/revoke"),
        &json!({"reason": "keyCompromise"}),
    );
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert_eq!(revoked.json()["status"], "revoked");
    let fresh = server.client("billing");
    let err = fresh.try_get("/healthz").unwrap_err();
    assert!(!err.is_empty());
    // The client can see the alert before the server has counted the refusal: wait for it.
    let counted = "signet_tls_handshake_refusals_total{reason=\"revoked\"} 1";
    let mut metrics = admin.get("/metrics").body;
    for _ in 0..40 {
        if metrics.contains(counted) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        metrics = admin.get("/metrics").body;
    }
    assert!(metrics.contains(counted), "{metrics}");
    assert!(
        metrics.contains("signet_authorization_denials_total{action=\"key.sign\"}"),
        "{metrics}"
    );
    // The CRL lists it.
    let crl_pem = admin.post_raw("/v1/ca/crl", "");
    assert_eq!(crl_pem.status, 405);
    let dir = tempfile::tempdir().unwrap();
    let der = ureq_get_bytes(&server, "/v1/ca/crl");
    std::fs::write(dir.path().join("crl.der"), der).unwrap();
    let out = openssl(
        dir.path(),
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "crl.der",
            "-noout",
            "-text",
            "-CAfile",
            server.data.join("ca/chain.pem").to_str().unwrap(),
            "-verify",
        ],
    );
    assert!(
        out.status.success() && text(&out).to_lowercase().contains(&serial),
        "{}",
        text(&out)
    );

    // Deleting a principal takes its rights away at once, revokes its certificates (listed
    // in the CRL), and re-creating the name revives none of them.
    let (ops, ops_serial) = enrol(&server, &admin, "ops", &["keys:read"], "client");
    assert_eq!(ops.get("/v1/keys").status, 200);
    assert_eq!(admin.delete("/v1/principals/ops").status, 204);
    let gone = ops.get("/v1/keys");
    assert_eq!(problem_type(&gone), "unauthenticated", "{gone:?}");
    let record = admin.get(&format!("/v1/certificates/{ops_serial}")).json();
    assert_eq!(record["status"], "revoked", "{record}");
    assert_eq!(
        admin
            .post(
                "/v1/principals",
                &json!({"name": "ops", "scopes": ["keys:read"]})
            )
            .status,
        201
    );
    assert!(server.client("ops").try_get("/v1/keys").is_err());
    let der = ureq_get_bytes(&server, "/v1/ca/crl");
    std::fs::write(dir.path().join("crl2.der"), der).unwrap();
    let out = openssl(
        dir.path(),
        &[
            "crl", "-inform", "DER", "-in", "crl2.der", "-noout", "-text",
        ],
    );
    assert!(
        text(&out).to_lowercase().contains(&ops_serial),
        "{}",
        text(&out)
    );
}

fn ureq_get_bytes(server: &Server, path: &str) -> Vec<u8> {
    let output = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--cacert",
            server.data.join("ca/root.pem").to_str().unwrap(),
        ])
        .args([
            "--cert",
            server.data.join("clients/admin.crt.pem").to_str().unwrap(),
        ])
        .args([
            "--key",
            server.data.join("clients/admin.key.pem").to_str().unwrap(),
        ])
        .arg(server.url(path))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    output.stdout
}

#[test]
fn tls_refuses_everything_but_verified_tls13_clients() {
    let server = Server::start();
    let admin = server.admin();
    let root = server.data.join("ca/root.pem");

    // No client certificate.
    let anonymous = Client::new(&root, None, &server);
    assert!(anonymous.try_get("/healthz").is_err());
    let out = Command::new("curl")
        .args(["-sS", "--cacert", root.to_str().unwrap()])
        .arg(server.url("/healthz"))
        .output()
        .unwrap();
    assert!(!out.status.success());

    // A certificate from an unrelated CA (made with openssl).
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::openssl_self_signed(d, "evil-ca", "/CN=Evil CA", &[]);
    let csr = [
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "evil.key",
        "-out",
        "evil.csr",
        "-subj",
        "/CN=admin",
    ];
    assert!(openssl(d, &csr).status.success());
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=URI:spiffe://signet.local/admin\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let out = openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "evil.csr",
            "-CA",
            "evil-ca.pem",
            "-CAkey",
            "evil-ca.key",
            "-CAcreateserial",
            "-out",
            "evil.pem",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let impostor = Client::new(
        &root,
        Some((&d.join("evil.pem"), &d.join("evil.key"))),
        &server,
    );
    assert!(impostor.try_get("/healthz").is_err());

    // A server certificate from Signet's own CA used as a client certificate.
    let (_, _) = enrol(&server, &admin, "svc.example", &[], "server");
    let wrong_purpose = server.client("svc.example");
    assert!(wrong_purpose.try_get("/healthz").is_err());

    // TLS 1.2 is refused; TLS 1.3 with the admin bundle works (openssl s_client).
    let clients = server.data.join("clients");
    let connect = format!("127.0.0.1:{}", server.port);
    let s_client = |version: &str| {
        Command::new("openssl")
            .args([
                "s_client",
                version,
                "-connect",
                &connect,
                "-servername",
                "localhost",
                "-CAfile",
                root.to_str().unwrap(),
            ])
            .args([
                "-cert",
                clients.join("admin.crt.pem").to_str().unwrap(),
                "-key",
                clients.join("admin.key.pem").to_str().unwrap(),
                "-verify_return_error",
                "-brief",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = s_client("-tls1_2");
    assert!(
        !out.status.success() || !text(&out).contains("Protocol version: TLSv1.2"),
        "{}",
        text(&out)
    );
    let out = s_client("-tls1_3");
    let t = text(&out);
    assert!(
        t.contains("TLSv1.3") && t.contains("Verification: OK"),
        "{t}"
    );

    let metrics = admin.get("/metrics").body;
    for reason in [
        "no-client-certificate",
        "unknown-issuer",
        "wrong-purpose",
        "protocol-version-or-cipher",
    ] {
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{reason} not counted: {metrics}"
        );
    }
    // curl, an independent client, with the bundle written by the first start.
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--tlsv1.3",
            "--cacert",
            root.to_str().unwrap(),
        ])
        .args([
            "--cert",
            clients.join("admin.crt.pem").to_str().unwrap(),
            "--key",
            clients.join("admin.key.pem").to_str().unwrap(),
        ])
        .arg(server.url("/v1/keys"))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"keys\""),
        "{}",
        text(&out)
    );
}

#[test]
fn restart_reuses_everything_and_shutdown_is_graceful() {
    let server = Server::start();
    assert!(
        server
            .stdout
            .iter()
            .any(|l| l.contains("first start: CA created")),
        "{:?}",
        server.stdout
    );
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "durable", "spec": "ed25519"}));
    let pem = admin.get("/v1/keys/durable").json()["versions"][0]["public_key_pem"].clone();
    let root = std::fs::read(server.data.join("ca/root.pem")).unwrap();
    let data = server.stop();
    let again = Server::start_in(data, &[]);
    assert!(
        !again.stdout.iter().any(|l| l.contains("first start")),
        "{:?}",
        again.stdout
    );
    assert_eq!(std::fs::read(again.data.join("ca/root.pem")).unwrap(), root);
    let admin = again.admin();
    assert_eq!(
        admin.get("/v1/keys/durable").json()["versions"][0]["public_key_pem"],
        pem
    );
    let log = admin.get("/v1/audit?limit=10000").body;
    assert!(
        log.contains("\"action\":\"service.stop\""),
        "graceful stop was not recorded"
    );
}

#[test]
fn concurrent_clients_get_valid_signatures() {
    let server = Server::start();
    let admin = server.admin();
    let key = admin
        .post("/v1/keys", &json!({"name": "hot", "spec": "ec-p256"}))
        .json();
    let pem = key["versions"][0]["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    let spki = pem::parse(pem.as_bytes()).unwrap().into_contents();
    let point = {
        use x509_parser::prelude::FromDer;
        x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki)
            .unwrap()
            .1
            .subject_public_key
            .data
            .to_vec()
    };
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let client = server.admin();
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| {
                        let msg = format!("thread {t} msg {i}");
                        let r = client
                            .post("/v1/keys/hot/sign", &json!({"input": b64(msg.as_bytes())}));
                        assert_eq!(r.status, 200, "{r:?}");
                        (msg, unb64(r.json()["signature"].as_str().unwrap()))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let verifier =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, point);
    let mut n = 0;
    for h in handles {
        for (msg, sig) in h.join().unwrap() {
            verifier.verify(msg.as_bytes(), &sig).unwrap();
            n += 1;
        }
    }
    assert_eq!(n, 160);
}

/// The certificate answered by `POST /v1/certificates`, saved alone as most users do, works
/// with curl: the server completes the chain with its own intermediate. `certificate_chain`
/// (leaf + intermediate) verifies with openssl against the root.
#[test]
fn a_leaf_only_client_certificate_is_accepted() {
    let server = Server::start();
    let admin = server.admin();
    let created = admin.post("/v1/principals", &json!({"name": "leafy", "scopes": []}));
    assert_eq!(created.status, 201, "{created:?}");
    let dir = server.data.join("clients");
    let (key, csr) = openssl_csr(&dir, "leafy", &[]);
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "client", "name": "leafy"}),
    );
    assert_eq!(issued.status, 201, "{issued:?}");
    let doc = issued.json();
    let leaf = dir.join("leafy-leaf.pem");
    std::fs::write(&leaf, doc["certificate"].as_str().unwrap()).unwrap();
    assert_eq!(
        std::fs::read_to_string(&leaf)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        1
    );
    let curl = |cert: &std::path::Path| {
        Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(server.data.join("ca/root.pem"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(&key)
            .arg(server.url("/healthz"))
            .output()
            .unwrap()
    };
    let out = curl(&leaf);
    assert!(out.status.success(), "leaf only: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"ok\""));

    // The ready bundle: leaf then intermediate, verifying to the root.
    let chain = doc["certificate_chain"].as_str().unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2, "{chain}");
    assert!(chain.starts_with(doc["certificate"].as_str().unwrap()));
    let bundle = dir.join("leafy-chain.pem");
    std::fs::write(&bundle, chain).unwrap();
    let intermediate = dir.join("leafy-intermediate.pem");
    std::fs::write(
        &intermediate,
        &chain[doc["certificate"].as_str().unwrap().len()..],
    )
    .unwrap();
    let verify = openssl(
        &dir,
        &[
            "verify",
            "-CAfile",
            server.data.join("ca/root.pem").to_str().unwrap(),
            "-untrusted",
            intermediate.to_str().unwrap(),
            "-purpose",
            "sslclient",
            leaf.to_str().unwrap(),
        ],
    );
    assert!(verify.status.success(), "{}", text(&verify));
    let out = curl(&bundle);
    assert!(out.status.success(), "bundle: {}", text(&out));
}

/// Problem `type`s are relative references that the server itself resolves.
#[test]
fn problem_types_are_relative_and_described() {
    let server = Server::start();
    let admin = server.admin();
    let reply = admin.get("/v1/keys/none-such");
    assert_eq!(reply.status, 404);
    let kind = reply.json()["type"].as_str().unwrap().to_string();
    assert_eq!(kind, "/problems/not-found");
    let doc = admin.get(&kind);
    assert_eq!(doc.status, 200, "{doc:?}");
    let doc = doc.json();
    assert_eq!(doc["status"], 404);
    assert_eq!(doc["type"], kind.as_str());
    assert!(doc["meaning"].as_str().unwrap().contains("no such key"));
    let unknown = admin.get("/problems/no-such-type");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["type"], "/problems/not-found");
}

/// `[server] problem_type_base` replaces the prefix.
#[test]
fn the_problem_type_base_is_configurable() {
    let data = common::Data::new();
    std::fs::write(
        data.join("signet.toml"),
        "[server]\nproblem_type_base = \"https://docs.example/signet/problems/\"\n",
    )
    .unwrap();
    let config = data.join("signet.toml");
    let server = Server::start_in(data, &[("SIGNET_CONFIG", config.to_str().unwrap())]);
    let reply = server.admin().get("/v1/keys/none-such");
    assert_eq!(
        reply.json()["type"],
        "https://docs.example/signet/problems/not-found"
    );
}

/// The audit read's bounds are the described ones: beyond them a 400, not a silent clamp.
#[test]
fn audit_read_bounds_are_enforced_as_described() {
    let server = Server::start();
    let admin = server.admin();
    for query in ["after=9223372036854775808", "limit=0", "limit=10001"] {
        let reply = admin.get(&format!("/v1/audit?{query}"));
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
    }
    for query in ["after=9223372036854775807", "limit=10000", "limit=1"] {
        assert_eq!(
            admin.get(&format!("/v1/audit?{query}")).status,
            200,
            "{query}"
        );
    }
    let doc = admin.get("/v1/openapi.json").json();
    let params = &doc["paths"]["/v1/audit"]["get"]["parameters"];
    let limit = params
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "limit")
        .unwrap();
    assert_eq!(limit["schema"]["maximum"], 10000, "{limit}");
    // Bounds the configuration sets are the ones described (defaults: 100 items, 3600 s).
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        (
            &schemas["BatchRequest"]["properties"]["items"]["minItems"],
            &schemas["BatchRequest"]["properties"]["items"]["maxItems"]
        ),
        (&json!(1), &json!(100))
    );
    assert_eq!(schemas["IssueBody"]["properties"]["ttl"]["maximum"], 3600);
    let empty = admin.post("/v1/keys/none/sign-batch", &json!({"items": []}));
    assert_eq!(empty.status, 400, "{empty:?}");
    // JSON documents are described as objects.
    let jwks = &doc["paths"]["/.well-known/jwks.json"]["get"]["responses"]["200"]["content"];
    assert_eq!(
        jwks["application/jwk-set+json"]["schema"]["type"], "object",
        "{jwks}"
    );
}
