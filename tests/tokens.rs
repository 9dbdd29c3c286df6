//! Tokens: issued over mTLS, signed in the HSM, verified by an independent JWT implementation
//! (jsonwebtoken with RustCrypto) fed only the JWKS; rotation overlap, introspection, revocation,
//! certificate binding and the usual attacks.

#![allow(clippy::unwrap_used)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{text, Data, Server};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use std::process::Command;

fn server_with(config: &str) -> Server {
    let data = Data::new();
    let conf = data.join("signet.toml");
    std::fs::write(&conf, config).unwrap();
    let conf = conf.to_str().unwrap().to_string();
    Server::start_in(data, &[("SIGNET_CONFIG", &conf)])
}

fn independent_verify(
    issuer: &str,
    jwks: &str,
    token: &str,
    alg: Algorithm,
    audience: &str,
) -> Result<Value, String> {
    let set: JwkSet = serde_json::from_str(jwks).map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("kid not in JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

fn segments(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    let decode =
        |s: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (decode(parts[0]), decode(parts[1]))
}

fn issue_for(alg_config: &str, alg: Algorithm) {
    let server = server_with(alg_config);
    let admin = server.admin();
    let reply = admin.post(
        "/v1/tokens",
        &json!({"audience": "orders", "scope": "read write", "ttl": 300}),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let doc = reply.json();
    assert_eq!(
        (doc["token_type"].as_str(), doc["expires_in"].as_i64()),
        (Some("Bearer"), Some(300))
    );
    let token = doc["token"].as_str().unwrap();
    let jwks = admin.get("/.well-known/jwks.json");
    assert!(jwks.content_type.contains("jwk-set"), "{jwks:?}");
    let claims = independent_verify(&server.url(""), &jwks.body, token, alg, "orders")
        .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
    assert_eq!(claims["sub"], "admin");
    assert_eq!(claims["scope"], "read write");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        300
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(claims["jti"].as_str().unwrap())
            .unwrap()
            .len(),
        16
    );
    let (header, _) = segments(token);
    assert_eq!(header["typ"], "at+jwt");
    // The kid is the RFC 7638 thumbprint of the JWKS entry.
    let set: Value = serde_json::from_str(&jwks.body).unwrap();
    assert_eq!(set["keys"][0]["kid"], header["kid"]);
    // A wrong audience fails in the independent verifier too.
    assert!(independent_verify(&server.url(""), &jwks.body, token, alg, "billing").is_err());
}

#[test]
fn es256_tokens_verify_independently() {
    issue_for("", Algorithm::ES256);
}

#[test]
fn eddsa_tokens_verify_independently() {
    issue_for(
        "[tokens]\nkey_spec = \"ed25519\"\nalgorithm = \"EdDSA\"\n",
        Algorithm::EdDSA,
    );
}

#[test]
fn rs256_tokens_verify_independently() {
    issue_for(
        "[tokens]\nkey_spec = \"rsa-2048\"\nalgorithm = \"RS256\"\n",
        Algorithm::RS256,
    );
}

#[test]
fn ps256_tokens_verify_independently() {
    issue_for(
        "[tokens]\nkey_spec = \"rsa-2048\"\nalgorithm = \"PS256\"\n",
        Algorithm::PS256,
    );
}

/// Each token-key version keeps the algorithm it signed with. `[tokens]` moves from RS256 to
/// PS256 (the same RSA key spec: a rotation, so no kid signs with two algorithms) and then to
/// ES256 (another spec); after each start the JWKS lists every older version with the algorithm
/// its tokens carry, and every token issued so far verifies in jsonwebtoken, fed only the JWKS,
/// and introspects active.
#[test]
fn token_key_versions_keep_the_algorithm_they_signed_with() {
    let issuer = "https://tokens.example";
    let mut data = Data::new();
    let mut issued: Vec<(String, Algorithm)> = Vec::new();
    let steps = [
        ("rsa-2048", Algorithm::RS256),
        ("rsa-2048", Algorithm::PS256),
        ("ec-p256", Algorithm::ES256),
    ];
    for (step, (spec, alg)) in steps.into_iter().enumerate() {
        let conf = data.join("signet.toml");
        std::fs::write(
            &conf,
            format!(
                "[tokens]\nissuer = \"{issuer}\"\nkey_spec = \"{spec}\"\nalgorithm = \"{alg:?}\"\n"
            ),
        )
        .unwrap();
        let conf = conf.to_str().unwrap().to_string();
        let server = Server::start_in(data, &[("SIGNET_CONFIG", &conf)]);
        let admin = server.admin();
        let reply = admin.post("/v1/tokens", &json!({"audience": "orders"}));
        assert_eq!(reply.status, 200, "{reply:?}");
        let token = reply.json()["token"].as_str().unwrap().to_string();
        assert_eq!(segments(&token).0["alg"], format!("{alg:?}"));
        issued.push((token, alg));
        let key = admin.get("/v1/keys/token-signer").json();
        assert_eq!(key["primary_version"], step + 1, "{key}");

        let jwks = admin.get("/.well-known/jwks.json").body;
        let set: Value = serde_json::from_str(&jwks).unwrap();
        for (token, alg) in &issued {
            let kid = segments(token).0["kid"].clone();
            let entry = set["keys"]
                .as_array()
                .unwrap()
                .iter()
                .find(|k| k["kid"] == kid)
                .unwrap_or_else(|| panic!("{kid} not in {set}"));
            assert_eq!(entry["alg"], format!("{alg:?}"), "step {step}: {set}");
            independent_verify(issuer, &jwks, token, *alg, "orders")
                .unwrap_or_else(|e| panic!("step {step}, a {alg:?} token: {e}"));
            let inspected = admin.post("/v1/tokens/introspect", &json!({"token": token}));
            assert_eq!(
                inspected.json()["active"],
                true,
                "step {step}, a {alg:?} token: {inspected:?}"
            );
        }
        data = server.stop();
    }
}

#[test]
fn tokens_are_bound_to_the_client_certificate() {
    let server = Server::start();
    let admin = server.admin();
    let token = admin.post("/v1/tokens", &json!({"audience": "a"})).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, claims) = segments(&token);
    let cert =
        rustls::pki_types::CertificateDer::pem_file_iter(server.data.join("clients/admin.crt.pem"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
    let expected =
        URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, cert.as_ref()));
    assert_eq!(claims["cnf"]["x5t#S256"], expected);
    let unbound = admin
        .post("/v1/tokens", &json!({"audience": "a", "bind": false}))
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(segments(&unbound).1.get("cnf").is_none());
    // Default TTL from config (15 minutes).
    let (_, claims) = segments(&unbound);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );
    // Offline, against the data directory's own token key (no JWKS file).
    let data = server.stop();
    let out = data.signet(&["token", "verify", &token, "--audience", "a"]);
    assert!(
        out.status.success() && text(&out).contains("\"x5t#S256\""),
        "{}",
        text(&out)
    );
    let dot = token.find('.').unwrap();
    let mut bytes = token.clone().into_bytes();
    bytes[dot + 8] = if bytes[dot + 8] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let out = data.signet(&["token", "verify", &tampered]);
    assert!(
        !out.status.success() && text(&out).contains("invalid token"),
        "{}",
        text(&out)
    );
}

#[test]
fn rotation_overlap_and_retirement() {
    let server = server_with("[server]\nhousekeeping_interval_secs = 1\n");
    let admin = server.admin();
    let short = admin
        .post("/v1/tokens", &json!({"audience": "a", "ttl": 600}))
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(admin.get("/.well-known/jwks.json").body.contains("\"kid\""));
    let rotated = admin.post("/v1/keys/token-signer/rotate", &json!({}));
    assert_eq!(rotated.json()["primary_version"], 2, "{rotated:?}");
    let fresh = admin
        .post("/v1/tokens", &json!({"audience": "a", "ttl": 600}))
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(segments(&short).0["kid"], segments(&fresh).0["kid"]);
    let jwks = admin.get("/.well-known/jwks.json");
    assert!(jwks
        .body
        .contains(segments(&short).0["kid"].as_str().unwrap()));
    assert_eq!(
        serde_json::from_str::<Value>(&jwks.body).unwrap()["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // The old token still verifies after rotation, independently and by introspection.
    independent_verify(&server.url(""), &jwks.body, &short, Algorithm::ES256, "a").unwrap();
    let intro = admin
        .post("/v1/tokens/introspect", &json!({"token": short}))
        .json();
    assert_eq!(intro["active"], true, "{intro}");
    // Disabled, v1 stays published until its last token has expired…
    assert_eq!(
        admin
            .post("/v1/keys/token-signer/versions/1/disable", &json!({}))
            .status,
        200
    );
    let still = admin.get("/.well-known/jwks.json").body;
    assert_eq!(
        serde_json::from_str::<Value>(&still).unwrap()["keys"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // …until its last token has expired, then it leaves the JWKS (tests/clock.rs moves the
    // clock for that). The JWKS verifies the new token offline.
    std::fs::write(server.data.join("jwks.json"), &still).unwrap();
    let offline = std::process::Command::new(common::BIN)
        .args([
            "token",
            "verify",
            &fresh,
            "--jwks",
            server.data.join("jwks.json").to_str().unwrap(),
            "--audience",
            "a",
        ])
        .output()
        .unwrap();
    assert!(
        offline.status.success() && text(&offline).contains("\"sub\": \"admin\""),
        "{}",
        text(&offline)
    );
    let keys = admin.get("/v1/keys/token-signer").json();
    assert_eq!(keys["versions"][0]["state"], "disabled");
    // The token key signs only tokens.
    let raw = admin.post(
        "/v1/keys/token-signer/sign",
        &json!({"input": common::b64(b"{\"alg\":\"none\"}")}),
    );
    assert_eq!(raw.status, 403, "{raw:?}");
}

#[test]
fn revocation_is_seen_online_and_offline() {
    let server = server_with("[server]\nhousekeeping_interval_secs = 1\n");
    let admin = server.admin();
    let issue = |ttl: i64| {
        admin
            .post("/v1/tokens", &json!({"audience": "a", "ttl": ttl}))
            .json()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let t1 = issue(600);
    std::fs::write(
        server.data.join("jwks-at-issue.json"),
        admin.get("/.well-known/jwks.json").body,
    )
    .unwrap();
    assert_eq!(
        admin
            .post(
                "/v1/tokens/introspect",
                &json!({"token": t1, "audience": "a"})
            )
            .json()["active"],
        true
    );
    let revoked = admin.post("/v1/tokens/revoke", &json!({"token": t1}));
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let intro = admin
        .post("/v1/tokens/introspect", &json!({"token": t1}))
        .json();
    assert_eq!(
        (intro["active"].as_bool(), intro["reason"].as_str()),
        (Some(false), Some("revoked"))
    );
    // By jti alone (its expiry unknown to Signet, so kept for the longest token lifetime).
    let t3 = issue(600);
    let jti3 = segments(&t3).1["jti"].as_str().unwrap().to_string();
    assert_eq!(
        admin
            .post("/v1/tokens/revoke", &json!({"jti": jti3}))
            .status,
        200
    );
    assert_eq!(
        admin
            .post("/v1/tokens/introspect", &json!({"token": t3}))
            .json()["active"],
        false
    );
    assert_eq!(
        admin
            .post("/v1/tokens/revoke", &json!({"token": t3, "jti": jti3}))
            .status,
        400
    );
    // A revocation is forgotten once its token has expired: tests/clock.rs.
    let data = server.stop();
    use signet::store::TokenStore;
    let store = signet::store::SledStore::open(&data.join("db")).unwrap();
    assert_eq!(store.revoked_tokens().unwrap().len(), 2);
    assert!(store.token_revoked(jti3.as_str()).unwrap());
    assert!(store
        .token_revoked(segments(&t1).1["jti"].as_str().unwrap())
        .unwrap());
    drop(store);
    // Offline on the data directory: the revocation is seen.
    let out = data.signet(&["token", "verify", &t1, "--audience", "a"]);
    assert!(
        !out.status.success() && text(&out).contains("revoked"),
        "{}",
        text(&out)
    );
    // With a JWKS file alone it cannot be, and the answer says so.
    let jwks = data.join("jwks.json");
    std::fs::write(
        &jwks,
        std::fs::read(data.join("jwks-at-issue.json")).unwrap(),
    )
    .unwrap();
    let out = data.signet(&[
        "token",
        "verify",
        &t1,
        "--jwks",
        jwks.to_str().unwrap(),
        "--audience",
        "a",
    ]);
    assert!(
        out.status.success() && text(&out).contains("revocation not checked"),
        "{}",
        text(&out)
    );
}

#[test]
fn attacks_and_malformed_tokens_are_inactive() {
    let server = Server::start();
    let admin = server.admin();
    let good = admin.post("/v1/tokens", &json!({"audience": "a"})).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = good.split('.').collect();
    let (header, claims) = segments(&good);
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let with_header = |h: Value| format!("{}.{}.{}", enc(&h), parts[1], parts[2]);
    let mut none = header.clone();
    none["alg"] = "none".into();
    let mut es384 = header.clone();
    es384["alg"] = "ES384".into();
    let mut unknown_kid = header.clone();
    unknown_kid["kid"] = "not-a-kid".into();
    // HS256 with the public key as the HMAC secret (the classic key-confusion attack).
    let jwks: Value = serde_json::from_str(&admin.get("/.well-known/jwks.json").body).unwrap();
    let mut hs = header.clone();
    hs["alg"] = "HS256".into();
    let hs_input = format!("{}.{}", enc(&hs), parts[1]);
    let secret = jwks["keys"][0].to_string();
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()),
        hs_input.as_bytes(),
    );
    let hs_token = format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    let mut forged_claims = claims.clone();
    forged_claims["sub"] = "root".into();
    let forged = format!("{}.{}.{}", parts[0], enc(&forged_claims), parts[2]);
    let cases: Vec<(String, &str)> = vec![
        ("not a token".into(), "3 segments"),
        (format!("{}.{}", parts[0], parts[1]), "3 segments"),
        (format!("{good}.extra"), "3 segments"),
        (format!("{}.{}.{}", "!!!", parts[1], parts[2]), "base64url"),
        (with_header(none), "alg none"),
        (
            format!(
                "{}.{}.",
                enc(&json!({"alg": "none", "kid": header["kid"]})),
                parts[1]
            ),
            "alg none",
        ),
        (with_header(es384), "does not match"),
        (with_header(unknown_kid), "unknown kid"),
        (hs_token, "does not match"),
        (forged, "signature does not verify"),
        (
            format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
            "too large",
        ),
    ];
    for (token, reason) in cases {
        let reply = admin.post("/v1/tokens/introspect", &json!({"token": token}));
        assert_eq!(reply.status, 200, "{reply:?}");
        let doc = reply.json();
        assert_eq!(doc["active"], false, "{token}");
        assert!(
            doc["reason"].as_str().unwrap().contains(reason),
            "expected {reason}: {doc}"
        );
    }
    let doc = admin
        .post(
            "/v1/tokens/introspect",
            &json!({"token": good, "audience": "elsewhere"}),
        )
        .json();
    assert!(
        doc["active"] == false && doc["reason"].as_str().unwrap().contains("audience"),
        "{doc}"
    );
    // An expired token: tests/clock.rs.
    assert_eq!(
        admin
            .post("/v1/tokens/introspect", &json!({"token": good}))
            .json()["active"],
        true
    );
}

#[test]
fn token_policy_is_enforced() {
    let server = Server::start();
    let admin = server.admin();
    let dir = server.data.join("clients");
    admin.post("/v1/principals", &json!({"name": "svc", "scopes": ["tokens:issue", "tokens:introspect", "tokens:scope:orders:*"]}));
    let (key, csr) = common::openssl_csr(&dir, "svc", &[]);
    let issued = admin
        .post(
            "/v1/certificates",
            &json!({"csr": csr, "profile": "client", "name": "svc"}),
        )
        .json();
    std::fs::write(
        dir.join("svc.crt.pem"),
        format!(
            "{}{}",
            issued["certificate"].as_str().unwrap(),
            issued["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(key, dir.join("svc.key.pem")).unwrap();
    let svc = server.client("svc");
    let ok = svc.post(
        "/v1/tokens",
        &json!({"audience": "orders", "scope": "orders:read orders:write"}),
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    let token = ok.json()["token"].as_str().unwrap().to_string();
    let intro = svc
        .post("/v1/tokens/introspect", &json!({"token": token}))
        .json();
    assert_eq!(
        (intro["active"].as_bool(), intro["sub"].as_str()),
        (Some(true), Some("svc"))
    );
    assert!(intro.get("reason").is_none());
    let bad = svc
        .post("/v1/tokens/introspect", &json!({"token": "x.y.z"}))
        .json();
    assert!(
        bad["active"] == false && bad.get("reason").is_none(),
        "reasons are for admins: {bad}"
    );
    assert_eq!(
        svc.post(
            "/v1/tokens",
            &json!({"audience": "orders", "scope": "payments:write"})
        )
        .status,
        403
    );
    assert_eq!(
        svc.post(
            "/v1/tokens",
            &json!({"audience": "orders", "subject": "admin"})
        )
        .status,
        403
    );
    assert_eq!(
        svc.post("/v1/tokens", &json!({"audience": "orders", "ttl": 999999}))
            .status,
        400
    );
    assert_eq!(svc.post("/v1/tokens", &json!({"audience": ""})).status, 400);
    // Its own token it may revoke; another's jti it may not.
    let other = admin.post("/v1/tokens", &json!({"audience": "x"})).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let other_jti = segments(&other).1["jti"].as_str().unwrap().to_string();
    assert_eq!(
        svc.post("/v1/tokens/revoke", &json!({"jti": other_jti}))
            .status,
        403
    );
    assert_eq!(
        svc.post("/v1/tokens/revoke", &json!({"token": token}))
            .status,
        200
    );
    // Admin may issue on behalf of svc; the token names the requester.
    let on_behalf = admin
        .post(
            "/v1/tokens",
            &json!({"audience": "orders", "subject": "svc"}),
        )
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, claims) = segments(&on_behalf);
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some("svc"), Some("admin"))
    );
    let meta = svc.get("/.well-known/signet").json();
    assert_eq!(meta["jwks_uri"], server.url("/.well-known/jwks.json"));
    assert_eq!(meta["token_signing_alg_values_supported"][0], "ES256");
    let log = admin.get("/v1/audit?limit=10000").body;
    assert!(
        log.contains("\"action\":\"token.issue\"") && log.contains("\"action\":\"token.revoke\"")
    );
    assert!(!log.contains(&token), "a token leaked into the audit log");
}

#[test]
fn the_token_key_rotates_automatically() {
    let data = Data::new();
    let conf = data.join("signet.toml");
    std::fs::write(
        &conf,
        "[tokens]\nrotate_every_days = 1\n[server]\nhousekeeping_interval_secs = 1\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let server = Server::start_in(data, &[("SIGNET_CONFIG", &conf)]);
    let first = server
        .admin()
        .post("/v1/tokens", &json!({"audience": "a", "ttl": 3600}))
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let data = server.stop();
    // Two days later the housekeeping at start rotates the key; the old version still verifies.
    let later = Server::start_with(
        data,
        &[("SIGNET_CONFIG", &conf)],
        &["faketime", "+2 days"],
        &[],
        None,
    );
    let admin = later.admin();
    let key = admin.get("/v1/keys/token-signer").json();
    assert_eq!(key["primary_version"], 2, "{key}");
    let second = admin.post("/v1/tokens", &json!({"audience": "a"})).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(segments(&first).0["kid"], segments(&second).0["kid"]);
    let jwks = admin.get("/.well-known/jwks.json");
    assert!(jwks
        .body
        .contains(segments(&second).0["kid"].as_str().unwrap()));
    assert!(
        jwks.body
            .contains(segments(&first).0["kid"].as_str().unwrap()),
        "v1 left before its tokens expired"
    );
    assert!(jwks.content_type.contains("jwk-set"));
}

/// An RFC 9068 resource server (PyJWT requiring the profile's claims and `typ`), an RFC 7662
/// introspection request as a form (curl), and RFC 8414 metadata whose URLs are the server's.
#[test]
fn oauth_clients_validate_introspect_by_form_and_read_rfc8414_metadata() {
    let server = server_with("[server]\nserver_dns = [\"localhost\"]\n");
    let admin = server.admin();
    let issuer = server.url("");
    let token = admin
        .post(
            "/v1/tokens",
            &json!({"audience": "orders", "scope": "read"}),
        )
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let jwks = server.data.join("jwks.json");
    std::fs::write(&jwks, admin.get("/.well-known/jwks.json").body).unwrap();
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/target/py/bin/python");
    let tool = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/rfc9068.py");
    let pyjwt = |token: &str, audience: &str| {
        Command::new(python)
            .args([tool, jwks.to_str().unwrap(), token, &issuer, audience])
            .output()
            .unwrap()
    };
    let out = pyjwt(&token, "orders");
    assert!(out.status.success(), "PyJWT refused: {}", text(&out));
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some("admin"), Some("admin"))
    );
    // The same verifier can refuse: another audience.
    assert!(!pyjwt(&token, "billing").status.success());

    // RFC 7662: the form a resource server sends, with curl; JSON still works.
    let d = &server.data;
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-sS", "--cacert", d.join("ca/root.pem").to_str().unwrap()])
            .args(["--cert", d.join("clients/admin.crt.pem").to_str().unwrap()])
            .args(["--key", d.join("clients/admin.key.pem").to_str().unwrap()])
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = curl(&[
        "--data-urlencode",
        &format!("token={token}"),
        &server.url("/v1/tokens/introspect"),
    ]);
    let t = text(&out);
    let (body, status) = t.trim_end().rsplit_once('\n').unwrap();
    assert_eq!(status, "200", "{t}");
    let intro: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (intro["active"].as_bool(), intro["client_id"].as_str()),
        (Some(true), Some("admin")),
        "{intro}"
    );
    let json_intro = admin.post("/v1/tokens/introspect", &json!({"token": token}));
    assert_eq!(json_intro.json()["active"], true);
    // A form without the token (an unknown field instead) is a 400 problem; a form is refused
    // where the request changes state.
    let out = curl(&["--data", "tok=x", &server.url("/v1/tokens/introspect")]);
    assert!(text(&out).trim_end().ends_with("400"), "{}", text(&out));
    let out = curl(&[
        "--data-urlencode",
        &format!("token={token}"),
        &server.url("/v1/tokens/revoke"),
    ]);
    assert!(text(&out).trim_end().ends_with("415"), "{}", text(&out));
    assert_eq!(
        admin
            .post("/v1/tokens/introspect", &json!({"token": token}))
            .json()["active"],
        true
    );

    // RFC 8414: the issuer is the URL this server answers on, and the endpoints are under it.
    let meta = admin.get("/.well-known/oauth-authorization-server");
    assert_eq!(meta.status, 200);
    let meta = meta.json();
    assert_eq!(meta["issuer"], issuer.as_str());
    assert_eq!(claims["iss"], meta["issuer"]);
    for (field, path) in [
        ("jwks_uri", "/.well-known/jwks.json"),
        ("introspection_endpoint", "/v1/tokens/introspect"),
        ("revocation_endpoint", "/v1/tokens/revoke"),
    ] {
        assert_eq!(meta[field], server.url(path).as_str(), "{field}");
    }
    assert_eq!(meta["grant_types_supported"], json!([]));
    assert_eq!(
        meta["introspection_endpoint_auth_methods_supported"],
        json!(["tls_client_auth"])
    );
    // The advertised JWKS is the one served there.
    let jwks_uri = meta["jwks_uri"].as_str().unwrap();
    let path = jwks_uri.strip_prefix(issuer.as_str()).unwrap();
    assert_eq!(admin.get(path).status, 200);
}

/// A configured public URL is the issuer and the base of every advertised endpoint.
#[test]
fn a_configured_public_url_is_the_issuer_and_the_endpoints_base() {
    let server = server_with("[server]\npublic_url = \"https://signet.example.internal/\"\n");
    let admin = server.admin();
    let meta = admin.get("/.well-known/oauth-authorization-server").json();
    assert_eq!(meta["issuer"], "https://signet.example.internal");
    assert_eq!(
        meta["introspection_endpoint"],
        "https://signet.example.internal/v1/tokens/introspect"
    );
    let token = admin.post("/v1/tokens", &json!({"audience": "a"})).json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(segments(&token).1["iss"], "https://signet.example.internal");
    // A URL with a path is refused at start.
    let data = Data::new();
    let conf = data.join("signet.toml");
    std::fs::write(&conf, "[server]\npublic_url = \"https://h/x\"\n").unwrap();
    let out = data.signet(&["--config", conf.to_str().unwrap(), "config", "check"]);
    assert!(
        !out.status.success() && text(&out).contains("server.public_url"),
        "{}",
        text(&out)
    );
}
