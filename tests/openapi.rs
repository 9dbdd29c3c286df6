//! The OpenAPI description the server serves: valid per an independent validator
//! (`openapi-spec-validator` from PyPI), listing exactly the routes the server answers, and
//! describing what the server really sends (live answers checked against its schemas by
//! `jsonschema`, undocumented fields refused); and exact, per a property-based API tester
//! (Schemathesis from PyPI) that generates requests from it, valid and invalid, and fails on
//! any disagreement with the live server.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use common::{b64, text, Server};
use serde_json::{json, Value};
use signet::api::routes::ROUTES;

/// The Python environment `scripts/setup.sh` makes (`target/py`), or the system's.
fn python_tool(name: &str) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/py/bin")
        .join(name);
    if venv.exists() {
        venv
    } else {
        PathBuf::from(name)
    }
}

#[test]
fn the_description_is_valid_complete_and_true() {
    let server = Server::start();
    let admin = server.admin();
    let reply = admin.get("/v1/openapi.json");
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("application/json"));
    let doc: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &reply.body).unwrap();

    // 1. An independent validator accepts it.
    let out = Command::new(python_tool("openapi-spec-validator"))
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("openapi-spec-validator (scripts/setup.sh installs it): {e}"));
    assert!(
        out.status.success() && text(&out).contains("OK"),
        "{}",
        text(&out)
    );

    // 2. Exactly the routed rows of the action table, each with its scope.
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.to_uppercase(), path.clone()))
        })
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(documented, routed);
    for (method, path) in &documented {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op["x-signet-scope"].is_string(), "{method} {path}: {op}");
        assert!(op["responses"]["401"].is_object() && op["responses"]["403"].is_object());
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]["application/problem+json"].is_object(),
                    "{method} {path} {status}"
                );
            }
        }
    }

    // 3. The server answers every documented operation (not with its no-such-route fallback)
    //    and nothing undocumented.
    for (method, path) in &documented {
        let concrete = path
            .replace("{name}", "no-such-thing")
            .replace("{serial}", "00")
            .replace("{version}", "1");
        let reply = match method.as_str() {
            "GET" => admin.get(&concrete),
            "DELETE" => admin.delete(&concrete),
            _ => admin.post(&concrete, &json!({})),
        };
        assert!(
            reply.status != 405 && !reply.body.contains("no such route"),
            "{method} {path} is documented but not served: {reply:?}"
        );
    }
    let unknown = admin.get("/v1/not-a-route");
    assert!(unknown.body.contains("no such route"), "{unknown:?}");

    // 4. What the server sends matches the schemas.
    let mut answers = Vec::new();
    let mut keep = |name: &str, body: &str| {
        let path = dir.path().join(format!("{name}-{}.json", answers.len()));
        std::fs::write(&path, body).unwrap();
        answers.push(format!("{name}={}", path.display()));
    };
    let created = admin.post("/v1/keys", &json!({"name": "doc-key", "spec": "ec-p256"}));
    assert_eq!(created.status, 201, "{created:?}");
    keep("KeyView", &created.body);
    keep("KeyList", &admin.get("/v1/keys").body);
    keep(
        "SignatureView",
        &admin
            .post("/v1/keys/doc-key/sign", &json!({"input": b64(b"x")}))
            .body,
    );
    keep(
        "BatchView",
        &admin
            .post(
                "/v1/keys/doc-key/sign-batch",
                &json!({"items": [
                    {"input": b64(b"a")},
                    {"input": b64(b"short"), "input_type": "digest"}
                ]}),
            )
            .body,
    );
    let sig = admin
        .post("/v1/keys/doc-key/sign", &json!({"input": b64(b"v")}))
        .json()["signature"]
        .clone();
    keep(
        "VerifyView",
        &admin
            .post(
                "/v1/keys/doc-key/verify",
                &json!({"input": b64(b"v"), "signature": sig}),
            )
            .body,
    );
    keep("ProblemDocument", &admin.get("/v1/keys/none-such").body);
    keep(
        "ProblemDocument",
        &admin.post("/v1/keys", &json!({"spec": 1})).body,
    );
    keep("PrincipalList", &admin.get("/v1/principals").body);
    let (_, csr) = common::openssl_csr(dir.path(), "doc-svc", &[]);
    admin.post("/v1/principals", &json!({"name": "doc-svc", "scopes": []}));
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "client", "name": "doc-svc"}),
    );
    keep("IssuedView", &issued.body);
    let serial = issued.json()["serial"].as_str().unwrap().to_string();
    keep(
        "CertView",
        &admin.get(&format!("/v1/certificates/{serial}")).body,
    );
    let token = admin.post("/v1/tokens", &json!({"audience": "doc"}));
    keep("TokenView", &token.body);
    let jwt = token.json()["token"].as_str().unwrap().to_string();
    keep(
        "IntrospectionView",
        &admin
            .post("/v1/tokens/introspect", &json!({"token": jwt}))
            .body,
    );
    keep(
        "IntrospectionView",
        &admin
            .post("/v1/tokens/introspect", &json!({"token": "a.b.c"}))
            .body,
    );
    keep(
        "RevokedView",
        &admin.post("/v1/tokens/revoke", &json!({"token": jwt})).body,
    );
    keep("HealthView", &admin.get("/healthz").body);
    keep("ReadyView", &admin.get("/readyz").body);
    keep("Status", &admin.get("/v1/status").body);
    keep("ProblemTypeView", &admin.get("/problems/forbidden").body);
    let out = Command::new(python_tool("python3"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/tools/check_answers.py"
        ))
        .arg(&file)
        .args(&answers)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("checked {} answers", answers.len())));
    server.stop();
}

/// Schemathesis (pinned in `scripts/setup.sh`, its own venv `target/st`) drives the live server
/// from the description with every check it has: answers and statuses as described, requests
/// the description refuses refused, requests it allows accepted (or refused only with 422, a
/// rule it cannot express — `tests/tools/schemathesis.toml`), no 5xx, a deleted thing gone.
/// Seeded, so a failure reproduces; nothing excluded.
#[test]
fn a_property_based_tester_finds_no_disagreement() {
    let tester = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/st/bin/st");
    assert!(
        tester.exists(),
        "{} is missing: scripts/setup.sh installs Schemathesis",
        tester.display()
    );
    let server = Server::start();
    let admin = server.admin();
    let clients = server.data.join("clients");
    // Its working directory gets its cache (earlier failures it would replay first): a fresh
    // one each run, outside the source tree.
    let work = tempfile::tempdir().unwrap();
    // Things that exist, so that half the requests naming a key or a certificate reach it
    // rather than a 404 (the other half use generated names).
    let key = admin.post("/v1/keys", &json!({"name": "seed-key", "spec": "ec-p256"}));
    assert_eq!(key.status, 201, "{key:?}");
    let (_, csr) = common::openssl_csr(work.path(), "seed.example", &[]);
    let cert = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "server", "name": "seed.example", "dns": ["seed.example"]}),
    );
    assert_eq!(cert.status, 201, "{cert:?}");
    let serial = cert.json()["serial"].as_str().unwrap().to_string();
    let settings = work.path().join("schemathesis.toml");
    std::fs::write(
        &settings,
        format!(
            "{}\n[dictionaries.serials]\nvalues = [\"{serial}\"]\n\n\
             [dictionaries.keys]\nvalues = [\"seed-key\"]\n\n\
             [parameters]\n\
             \"path.serial\" = {{ dictionary = \"serials\", probability = 0.5 }}\n\
             \"path.name\" = {{ dictionary = \"keys\", probability = 0.5 }}\n",
            std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/tools/schemathesis.toml"
            ))
            .unwrap()
        ),
    )
    .unwrap();
    let out = Command::new(&tester)
        .current_dir(work.path())
        .arg("--config-file")
        .arg(&settings)
        .arg("run")
        .arg(server.url("/v1/openapi.json"))
        .arg("--request-cert")
        .arg(clients.join("admin.crt.pem"))
        .arg("--request-cert-key")
        .arg(clients.join("admin.key.pem"))
        .arg("--tls-verify")
        .arg(server.data.join("ca/root.pem"))
        .args(["--checks", "all", "--seed", "1", "--max-examples", "50"])
        // One worker: the run is the same every time. A slow answer on a loaded machine is
        // not a disagreement (the default request timeout is 10 s).
        .args(["--workers", "1", "--request-timeout", "120", "--no-color"])
        .output()
        .unwrap();
    let report = text(&out);
    assert!(
        out.status.success() && report.contains(" passed"),
        "Schemathesis found disagreements between the description and the server:\n{report}"
    );
    // The seeded names were used: the certificate reads reached a certificate.
    assert!(
        !report.contains("- GET /v1/certificates/{serial}"),
        "the tester never found the seeded certificate:\n{report}"
    );
    server.stop();
}
