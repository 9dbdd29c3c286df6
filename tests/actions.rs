//! The scope matrix, generated from the service's action table: for every route, a principal
//! holding exactly the scope the table names is let through, and a principal with no scope is
//! refused (unless the table says any enrolled principal may call it). A route added to the
//! table without an example here fails this test.

#![allow(clippy::unwrap_used)]

mod common;

use common::{b64, enrol_principal, openssl_csr, Client, Server};
use serde_json::{json, Value};
use signet::api::routes::{routed, Route, ROUTES};
use signet::service::{Requirement, ACTIONS};

/// A server certificate to read and revoke.
fn server_certificate(server: &Server, admin: &Client, name: &str) -> String {
    let (_, csr) = openssl_csr(
        &server.data.join("clients"),
        name,
        &["-addext", &format!("subjectAltName=DNS:{name}")],
    );
    admin
        .post(
            "/v1/certificates",
            &json!({"csr": csr, "profile": "server", "name": name}),
        )
        .json()["serial"]
        .as_str()
        .unwrap()
        .to_string()
}

struct Example {
    /// The path with its parameters filled in.
    path: String,
    /// The body of a POST.
    body: Value,
    /// The target the requirement is judged on (a key name for key scopes).
    target: String,
    /// What a caller holding the scope gets, when not a 2xx: the SoftHSM2 token this test
    /// runs on cannot attest keys, so the attestation route answers 404 once authorised.
    allowed: Option<u16>,
}

/// A request to `route` that succeeds for a caller holding its action's scope. `n` makes names unique.
fn example(route: &Route, server: &Server, admin: &Client, n: usize) -> Option<Example> {
    let ex = |path: &str, body: Value, target: &str| Example {
        path: path.to_string(),
        body,
        target: target.to_string(),
        allowed: None,
    };
    let sig = || {
        admin
            .post("/v1/keys/m-1/sign", &json!({"input": b64(b"x")}))
            .json()["signature"]
            .clone()
    };
    Some(match route.id {
        "keyList" => ex("/v1/keys", json!(null), "*"),
        "keyListUsable" => ex("/v1/me/keys", json!(null), "*"),
        "keyRead" => ex("/v1/keys/m-1", json!(null), "m-1"),
        "keyVersions" => ex("/v1/keys/m-1/versions?state=enabled", json!(null), "m-1"),
        "keyCreate" => ex(
            "/v1/keys",
            json!({"name": format!("made-{n}"), "spec": "ec-p256"}),
            "*",
        ),
        "keyRotate" => ex("/v1/keys/other/rotate", json!({}), "other"),
        "keyAttest" => Example {
            allowed: Some(404),
            ..ex("/v1/keys/m-1/attestation", json!(null), "m-1")
        },
        "keyDisable" => ex("/v1/keys/m-1/versions/1/disable", json!({}), "m-1"),
        "keyEnable" => ex("/v1/keys/m-1/versions/1/enable", json!({}), "m-1"),
        "keyScheduleDeletion" => {
            let name = format!("doomed-{n}");
            admin.post("/v1/keys", &json!({"name": name, "spec": "ec-p256"}));
            ex(
                &format!("/v1/keys/{name}/schedule-deletion"),
                json!({"pending_days": 2}),
                &name,
            )
        }
        "keyCancelDeletion" => {
            let name = format!("reprieved-{n}");
            admin.post("/v1/keys", &json!({"name": name, "spec": "ec-p256"}));
            admin.post(
                &format!("/v1/keys/{name}/schedule-deletion"),
                &json!({"pending_days": 2}),
            );
            ex(
                &format!("/v1/keys/{name}/cancel-deletion"),
                json!({}),
                &name,
            )
        }
        "keySign" => ex("/v1/keys/m-1/sign", json!({"input": b64(b"x")}), "m-1"),
        "keySignBatch" => ex(
            "/v1/keys/m-1/sign-batch",
            json!({"items": [{"input": b64(b"x")}]}),
            "m-1",
        ),
        "keyVerify" => ex(
            "/v1/keys/m-1/verify",
            json!({"input": b64(b"x"), "signature": sig()}),
            "m-1",
        ),
        "caChain" => ex("/v1/ca/chain", json!(null), "ca"),
        "caCrl" => ex("/v1/ca/crl", json!(null), "crl"),
        "caArl" => ex("/v1/ca/arl", json!(null), "arl"),
        "certIssue" => {
            let name = format!("web-{n}.local");
            let (_, csr) = openssl_csr(
                &server.data.join("clients"),
                &name,
                &["-addext", &format!("subjectAltName=DNS:{name}")],
            );
            ex(
                "/v1/certificates",
                json!({"csr": csr, "profile": "server", "name": name}),
                &name,
            )
        }
        "certRead" => {
            let serial = server_certificate(server, admin, &format!("read-{n}.local"));
            ex(&format!("/v1/certificates/{serial}"), json!(null), &serial)
        }
        "certRevoke" => {
            let serial = server_certificate(server, admin, &format!("revoked-{n}.local"));
            ex(
                &format!("/v1/certificates/{serial}/revoke"),
                json!({"reason": "superseded"}),
                &serial,
            )
        }
        "principalList" => ex("/v1/principals", json!(null), "*"),
        // Nobody grants what they do not hold: the example grants nothing.
        "principalCreate" => ex(
            "/v1/principals",
            json!({"name": format!("junior-{n}"), "scopes": []}),
            "*",
        ),
        "principalDelete" => {
            let name = format!("leaver-{n}");
            admin.post("/v1/principals", &json!({"name": name, "scopes": []}));
            ex(&format!("/v1/principals/{name}"), json!(null), &name)
        }
        "tokenIssue" => ex("/v1/tokens", json!({"audience": "a"}), "a"),
        "tokenIntrospect" => ex("/v1/tokens/introspect", json!({"token": "a.b.c"}), "token"),
        "tokenRevoke" => ex("/v1/tokens/revoke", json!({"jti": format!("jti-{n}")}), "*"),
        "jwks" => ex("/.well-known/jwks.json", json!(null), "jwks"),
        "metadata" => ex("/.well-known/signet", json!(null), "metadata"),
        "oauthMetadata" => ex(
            "/.well-known/oauth-authorization-server",
            json!(null),
            "metadata",
        ),
        "auditRead" => ex("/v1/audit?limit=5", json!(null), "audit"),
        "health" => ex("/healthz", json!(null), "service"),
        "ready" => ex("/readyz", json!(null), "service"),
        "metrics" => ex("/metrics", json!(null), "service"),
        "problemRead" => ex("/problems/forbidden", json!(null), "forbidden"),
        "status" => ex("/v1/status", json!(null), "service"),
        "openApi" => ex("/v1/openapi.json", json!(null), "openapi"),
        _ => return None,
    })
}

fn call(client: &Client, method: &str, ex: &Example) -> u16 {
    let reply = match method {
        "GET" => client.get(&ex.path),
        "DELETE" => client.delete(&ex.path),
        _ => client.post(&ex.path, &ex.body),
    };
    if reply.status >= 500 {
        eprintln!("{method} {}: {reply:?}", ex.path);
    }
    reply.status
}

#[test]
fn every_route_in_the_action_table_allows_its_scope_and_nothing_less() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "m-1", "spec": "ec-p256"}));
    admin.post("/v1/keys/m-1/rotate", &json!({}));
    admin.post("/v1/keys", &json!({"name": "other", "spec": "ec-p256"}));
    let nobody = enrol_principal(&server, &admin, "nobody", &[]);
    let mut checked = 0;
    for (n, route) in ROUTES.iter().enumerate() {
        let spec = route.action.spec();
        let ex = example(route, &server, &admin, n)
            .unwrap_or_else(|| panic!("{route:?} has no example in this test: add one"));
        match spec.requirement.scope_for(&ex.target) {
            None => {
                assert_eq!(spec.requirement, Requirement::Enrolled, "{:?}", spec.action);
                let got = call(&nobody, route.method, &ex);
                assert!(
                    (200..300).contains(&got),
                    "{:?}: an enrolled principal should be let through {} {}: {got}",
                    spec.action,
                    route.method,
                    ex.path
                );
            }
            Some(scope) => {
                assert_eq!(
                    call(&nobody, route.method, &ex),
                    403,
                    "{:?}: a principal without {scope} must be refused {} {}",
                    spec.action,
                    route.method,
                    ex.path
                );
                let holder =
                    enrol_principal(&server, &admin, &format!("holder-{n}"), &[scope.as_str()]);
                let got = call(&holder, route.method, &ex);
                assert!(
                    (200..300).contains(&got) || ex.allowed == Some(got),
                    "{:?}: {scope} should allow {} {}: {got}",
                    spec.action,
                    route.method,
                    ex.path
                );
            }
        }
        checked += 1;
    }
    assert_eq!(checked, ROUTES.len());
    // Operator-only actions are not reachable over the API at all.
    for spec in ACTIONS
        .iter()
        .filter(|s| s.requirement == Requirement::Operator)
    {
        assert!(!routed(spec.action), "{:?}", spec.action);
    }
}

/// A client certificate for `name` (who must exist) asked for by `issuer`; the status.
fn issue_client(server: &Server, issuer: &Client, name: &str, ttl: Option<u64>) -> (u16, Value) {
    let (_, csr) = openssl_csr(&server.data.join("clients"), &format!("csr-{name}"), &[]);
    let mut body = json!({"csr": csr, "profile": "client", "name": name});
    if let Some(ttl) = ttl {
        body["ttl"] = json!(ttl);
    }
    let reply = issuer.post("/v1/certificates", &body);
    let status = reply.status;
    (status, reply.json())
}

/// A server certificate for `dns` and `ip` asked for by `issuer`; the status.
fn issue_server(server: &Server, issuer: &Client, dns: &str, ip: Option<&str>) -> u16 {
    let mut san = format!("subjectAltName=DNS:{dns}");
    if let Some(ip) = ip {
        san.push_str(&format!(",IP:{ip}"));
    }
    let (_, csr) = openssl_csr(
        &server.data.join("clients"),
        &format!("srv-{dns}"),
        &["-addext", &san],
    );
    let mut body = json!({"csr": csr, "profile": "server", "name": dns});
    if let Some(ip) = ip {
        body["ips"] = json!([ip]);
    }
    issuer.post("/v1/certificates", &body).status
}

/// The cross-principal cases of the matrix: no operation lets a caller end up with more rights
/// than it holds, and the last usable admin stays. Each refusal is audited as denied.
#[test]
fn no_operation_lets_a_caller_gain_rights_or_lock_out_the_last_admin() {
    let server = Server::start();
    let admin = server.admin();
    let issuer = enrol_principal(&server, &admin, "issuer", &["certs:issue"]);
    let manager = enrol_principal(&server, &admin, "manager", &["principals:manage"]);
    admin.post(
        "/v1/principals",
        &json!({"name": "reader", "scopes": ["keys:read"]}),
    );
    admin.post(
        "/v1/principals",
        &json!({"name": "peer", "scopes": ["certs:issue"]}),
    );

    // certs:issue is not admin: no certificate for a principal holding more than the issuer.
    assert_eq!(issue_client(&server, &issuer, "admin", None).0, 403);
    assert_eq!(issue_client(&server, &issuer, "reader", None).0, 403);
    assert_eq!(issue_client(&server, &issuer, "peer", None).0, 201);
    // The names the service answers on are for admin; others are not.
    assert_eq!(issue_server(&server, &issuer, "localhost", None), 403);
    assert_eq!(
        issue_server(&server, &issuer, "elsewhere.test", Some("127.0.0.1")),
        403
    );
    // The same address as an IPv4-mapped IPv6 one (Go's clients compare the two equal).
    assert_eq!(
        issue_server(&server, &issuer, "mapped.test", Some("::ffff:127.0.0.1")),
        403
    );
    assert_eq!(issue_server(&server, &issuer, "elsewhere.test", None), 201);
    assert_eq!(issue_server(&server, &admin, "localhost", None), 201);

    // principals:manage cannot grant what it lacks, raise itself, or touch someone above it.
    let put = |c: &Client, name: &str, scopes: &[&str]| {
        c.post("/v1/principals", &json!({"name": name, "scopes": scopes}))
            .status
    };
    assert_eq!(
        put(&manager, "manager", &["principals:manage", "certs:issue"]),
        403
    );
    assert_eq!(put(&manager, "helper", &["certs:issue"]), 403);
    assert_eq!(put(&manager, "helper", &["admin"]), 403);
    assert_eq!(put(&manager, "admin", &["keys:read"]), 403);
    assert_eq!(manager.delete("/v1/principals/admin").status, 403);
    assert_eq!(put(&manager, "helper", &[]), 201);
    assert_eq!(put(&manager, "helper", &["principals:manage"]), 201);
    assert_eq!(manager.delete("/v1/principals/helper").status, 204);
    assert_eq!(put(&manager, "signet", &[]), 403);

    // The only admin cannot demote itself, nor be left without a long-lived certificate.
    assert_eq!(put(&admin, "admin", &["keys:read"]), 403);
    let (status, short) = issue_client(&server, &admin, "admin", Some(60));
    assert_eq!(status, 201, "{short}");
    let certs = std::fs::read_to_string(server.data.join("clients/admin.crt.pem")).unwrap();
    let long_serial = {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.pem"), &certs).unwrap();
        let out = common::openssl(dir.path(), &["x509", "-in", "a.pem", "-noout", "-serial"]);
        common::text(&out)
            .trim()
            .trim_start_matches("serial=")
            .to_lowercase()
    };
    let revoke = admin.post(
        &format!("/v1/certificates/{long_serial}/revoke"),
        &json!({"reason": "superseded"}),
    );
    assert_eq!(revoke.status, 409, "{revoke:?}");
    assert!(
        revoke.json()["detail"]
            .as_str()
            .unwrap()
            .contains("no admin"),
        "{revoke:?}"
    );

    // A second admin with a certificate: then the first may be demoted by it.
    let second = enrol_principal(&server, &admin, "second", &["admin"]);
    assert_eq!(put(&second, "admin", &["keys:read"]), 201);
    // Now `second` is the last usable admin. It cannot change itself; an admin whose only
    // certificate expires within the margin does not count, and may not remove it either.
    assert_eq!(put(&second, "second", &["keys:read"]), 403);
    assert_eq!(second.delete("/v1/principals/second").status, 403);
    assert_eq!(put(&second, "brief", &["admin"]), 201);
    let (status, doc) = issue_client(&server, &second, "brief", Some(600));
    assert_eq!(status, 201, "{doc}");
    let clients = server.data.join("clients");
    std::fs::write(
        clients.join("brief.crt.pem"),
        format!(
            "{}{}",
            doc["certificate"].as_str().unwrap(),
            doc["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(clients.join("csr-brief.key"), clients.join("brief.key.pem")).unwrap();
    let brief = server.client("brief");
    assert_eq!(brief.delete("/v1/principals/second").status, 409);
    assert_eq!(put(&brief, "second", &["keys:read"]), 409);

    let audit = second.audit_records();
    let denied: Vec<&Value> = audit.iter().filter(|r| r["outcome"] == "denied").collect();
    assert!(denied.len() >= 12, "{denied:?}");
    assert!(denied.iter().any(|r| r["action"] == "cert.issue"
        && r["principal"] == "issuer"
        && r["target"] == "admin"));
    let data = server.stop();

    // Offline, the operator is bound by the same last-admin rule.
    let out = data.signet(&["principal", "revoke-scope", "second", "admin"]);
    assert!(!out.status.success(), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("no admin"),
        "{}",
        common::text(&out)
    );
}

#[test]
fn the_readme_lists_every_route_of_the_action_table() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for route in ROUTES {
        assert!(
            readme.contains(&format!("{} {}", route.method, route.path)),
            "README.md does not list {} {}",
            route.method,
            route.path
        );
    }
    for kind in signet::api::problem_types::ProblemType::ALL {
        assert!(
            readme.contains(&format!("| `{}` | {} |", kind.slug(), kind.status())),
            "README.md does not document the problem type {}",
            kind.slug()
        );
    }
}
