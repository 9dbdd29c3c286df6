//! ML-DSA through the service, on the token `SIGNET_TEST_TOKEN` names. On kryoptic (built with
//! its `pqc` features by scripts/kryoptic.sh) every ML-DSA spec is created, signs over the API
//! with and without a context string, verifies, batch-signs, and signs tokens; pyca/cryptography
//! (tests/tools/mldsa_check.py, an implementation outside the project) checks the signatures,
//! the SPKI PEM, the AKP JWK and the JWTs against the JWKS. On a token without ML-DSA
//! (SoftHSM2, the p11-kit remote SoftHSM2) the same requests get a clear problem saying what the
//! token would need.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::configured::Configured;
use common::{b64, text, unb64};
use serde_json::{json, Value};
use signet_softhsm::TokenKind;

const SPECS: [(&str, &str, usize); 3] = [
    ("ml-dsa-44", "ML-DSA-44", 2420),
    ("ml-dsa-65", "ML-DSA-65", 3309),
    ("ml-dsa-87", "ML-DSA-87", 4627),
];

/// The Python of `scripts/setup.sh`'s venv (pyca/cryptography >= 50), or the system's.
fn python() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Runs the checks through pyca/cryptography; panics on any that fails.
fn pyca_checks(checks: Vec<Value>) {
    python_checks("mldsa_check.py", checks)
}

/// Runs the checks through `tests/tools/<script>`; panics on any that fails.
fn python_checks(script: &str, checks: Vec<Value>) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(script);
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({ "checks": checks }).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), checks.len(), "{}", text(&out));
    for (line, check) in lines.iter().zip(&checks) {
        assert_eq!(line, "ok", "{}", check["what"]);
    }
}

fn unb64url(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn supports_ml_dsa(configured: &Configured) -> bool {
    configured.token.kind == TokenKind::Kryoptic
}

/// A post-quantum key made over the API, and its signatures of one message without and with a
/// context string.
struct Made {
    name: String,
    pem: String,
    jwk: Value,
    sig: Vec<u8>,
    sig_ctx: Vec<u8>,
}

impl Made {
    /// What an outside implementation must find: both signatures good with their own context,
    /// not with another or over another message; the JWK the PEM's key.
    fn checks(&self, (spec, alg, _): (&str, &str, usize), msg: &[u8], ctx: &[u8]) -> Vec<Value> {
        let (pem, sig, sig_ctx) = (&self.pem, &self.sig, &self.sig_ctx);
        vec![
            json!({"what": format!("{spec} signature"), "kind": "sig", "alg": alg, "pem": pem,
                   "msg": b64(msg), "sig": b64(sig), "expect": true}),
            json!({"what": format!("{spec} signature with context"), "kind": "sig", "alg": alg,
                   "pem": pem, "msg": b64(msg), "sig": b64(sig_ctx), "ctx": b64(ctx),
                   "expect": true}),
            json!({"what": format!("{spec} context signature without it"), "kind": "sig",
                   "alg": alg, "pem": pem, "msg": b64(msg), "sig": b64(sig_ctx),
                   "expect": false}),
            json!({"what": format!("{spec} another message"), "kind": "sig", "alg": alg,
                   "pem": pem, "msg": b64(b"another"), "sig": b64(sig), "expect": false}),
            json!({"what": format!("{spec} JWK"), "kind": "jwk", "jwk": self.jwk, "pem": pem}),
        ]
    }
}

/// Makes a key of `spec` over the API and signs `msg` with its default algorithm, without and
/// with `ctx`: signatures of `size` bytes, which the service's verifier accepts with the context
/// they were made with only; a digest is refused. On a token without the spec, the 422 that
/// names what it would need instead, and `None`.
fn pq_key_signs_over_the_api(
    admin: &common::Client,
    token: &signet_softhsm::TestToken,
    supported: bool,
    (spec, alg, size): (&str, &str, usize),
    msg: &[u8],
    ctx: &[u8],
) -> Option<Made> {
    let name = token.unique(spec);
    let created = admin.post("/v1/keys", &json!({"name": name, "spec": spec}));
    if !supported {
        assert_eq!(created.status, 422, "{}: {created:?}", token.kind.name());
        let detail = created.json()["detail"].as_str().unwrap().to_string();
        let mechanism = if spec.starts_with("ml-dsa") {
            "CKM_ML_DSA"
        } else {
            "CKM_SLH_DSA"
        };
        assert!(
            detail.contains(&format!("does not support {spec}"))
                && detail.contains(&format!("needs a PKCS#11 3.2 token with {mechanism}")),
            "{detail}"
        );
        assert!(!detail.contains("CKR_"), "a raw return code: {detail}");
        return None;
    }
    assert_eq!(created.status, 201, "{spec}: {created:?}");
    let key = created.json();
    assert_eq!(key["spec"], spec);
    let version = &key["versions"][0];
    assert_eq!(version["jwk"]["kty"], "AKP");
    assert_eq!(version["jwk"]["alg"], alg);

    let path = format!("/v1/keys/{name}/sign");
    let signed = admin.post(&path, &json!({"input": b64(msg)}));
    assert_eq!(signed.status, 200, "{signed:?}");
    assert_eq!(signed.json()["algorithm"], alg);
    let sig = unb64(signed.json()["signature"].as_str().unwrap());
    assert_eq!(sig.len(), size);
    let with_ctx = admin.post(&path, &json!({"input": b64(msg), "context": b64(ctx)}));
    assert_eq!(with_ctx.status, 200, "{with_ctx:?}");
    let sig_ctx = unb64(with_ctx.json()["signature"].as_str().unwrap());

    // The service's own verifier, with and without the context.
    let verify = |sig: &[u8], context: Option<&[u8]>| {
        let mut body = json!({"input": b64(msg), "signature": b64(sig)});
        if let Some(c) = context {
            body["context"] = b64(c).into();
        }
        let reply = admin.post(&format!("/v1/keys/{name}/verify"), &body);
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.json()["valid"].as_bool().unwrap()
    };
    assert!(verify(&sig, None));
    assert!(verify(&sig_ctx, Some(ctx)));
    assert!(!verify(&sig_ctx, None));
    assert!(!verify(&sig, Some(ctx)));

    let digest = admin.post(
        &path,
        &json!({"input": b64(&[0u8; 32]), "input_type": "digest"}),
    );
    assert_eq!(digest.status, 422, "{digest:?}");
    assert!(
        digest.json()["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{alg} signs the whole message")),
        "{digest:?}"
    );
    Some(Made {
        pem: version["public_key_pem"].as_str().unwrap().to_string(),
        jwk: version["jwk"].clone(),
        name,
        sig,
        sig_ctx,
    })
}

const SLH_SPECS: [(&str, &str, usize); 2] = [
    ("slh-dsa-sha2-128s", "SLH-DSA-SHA2-128s", 7856),
    ("slh-dsa-sha2-128f", "SLH-DSA-SHA2-128f", 17088),
];

/// SLH-DSA keys (FIPS 205) in the token, through the API: created, signing with and without a
/// context, verified by the service and by the `slhdsa` package from PyPI (an implementation
/// outside the project, reading the SPKI PEM and the AKP JWK itself); a digest is refused; no
/// certificate or token is signed with them. On a token without SLH-DSA a clear 422.
#[test]
fn slh_dsa_keys_sign_over_the_api_and_an_independent_implementation_verifies() {
    let mut configured = Configured::init("");
    configured.serve();
    let supported = supports_ml_dsa(&configured);
    let (server, token) = (configured.server(), &configured.token);
    let admin = server.admin();
    let msg = b"a message signed with a hash-based key in the token";
    let ctx = b"signet/slh-dsa-test";
    let mut checks = Vec::new();
    for row in SLH_SPECS {
        let Some(made) = pq_key_signs_over_the_api(&admin, token, supported, row, msg, ctx) else {
            continue;
        };
        checks.extend(made.checks(row, msg, ctx));
    }
    if !supported {
        return;
    }
    assert_eq!(checks.len(), 10);
    python_checks("slhdsa_check.py", checks);
    let metrics = admin.get("/metrics").body;
    for (_, alg, _) in SLH_SPECS {
        let counted = format!("signet_sign_operations_total{{algorithm=\"{alg}\",outcome=\"ok\"}}");
        assert!(metrics.contains(&counted), "{counted}\n{metrics}");
    }
    // No certificate is signed with SLH-DSA: `ca init` refuses such a root before changing
    // anything.
    configured.stop();
    let out = configured.run(&["ca", "init", "--force", "--root-spec", "slh-dsa-sha2-128s"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Signet signs no certificate with SLH-DSA; nothing was changed"),
        "{}",
        text(&out)
    );
}

/// Signet's SLH-DSA verifier judges signatures made outside the project, by the `slhdsa`
/// package from PyPI (its own FIPS 205 implementation), pure and HashSLH-DSA (SHA-256 with a
/// context, SHA-512): it accepts them, with the right context and hash, and refuses them
/// altered, cut short, over another message, without their context, under another hash, and
/// a pre-hash signature as a pure one or the reverse. (The NIST ACVP SLH-DSA verification
/// vectors reachable here cover no parameter set Signet makes; the token's signatures are
/// checked the other way round above.) Needs no token.
#[test]
fn slh_dsa_signatures_made_elsewhere_verify_in_signet() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/slhdsa_check.py");
    for (name, spec) in [
        ("sha2_128s", signet_hsm::KeySpec::SlhDsaSha2_128s),
        ("sha2_128f", signet_hsm::KeySpec::SlhDsaSha2_128f),
    ] {
        let out = Command::new(python())
            .arg(&script)
            .args(["sign", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let made: Value = serde_json::from_slice(&out.stdout).unwrap();
        let hex = |v: &Value| hex::decode(v.as_str().unwrap()).unwrap();
        let public = signet_hsm::PublicKey::from_slh_dsa(spec, &hex(&made["public"])).unwrap();
        let cases = made["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 13);
        for case in cases {
            let (msg, ctx, sig) = (hex(&case["msg"]), hex(&case["ctx"]), hex(&case["sig"]));
            let got = match case["hash"].as_str() {
                None => signet_hsm::verify::verify_slh_dsa(&public, &msg, &ctx, &sig),
                Some(hash) => {
                    let hash = match hash {
                        "SHA256" => signet_hsm::Hash::Sha256,
                        _ => signet_hsm::Hash::Sha512,
                    };
                    let digest = hash.digest(&msg);
                    signet_hsm::verify::verify_pre_hashed(&public, hash, &digest, &ctx, &sig)
                }
            };
            assert_eq!(
                got,
                case["valid"].as_bool().unwrap(),
                "{name}: {}",
                case["what"]
            );
        }
    }
}

/// A pre-hash algorithm (HashML-DSA, HashSLH-DSA) on a key made over the API.
struct PreHash<'a> {
    name: &'a str,
    alg: &'a str,
    /// The key's pure algorithm.
    pure: &'a str,
    /// The key's other pre-hash algorithms.
    others: &'a [String],
    /// The signature's length.
    size: usize,
}

impl PreHash<'_> {
    /// Signs `msg` three ways over the API — the message (Signet hashes it), its `digest`
    /// made here, the message with `ctx` — and checks them with the service's verifier: each
    /// verifies with its own input and context only, not over another message, not as the pure
    /// algorithm (of the message or of the digest), not under another hash; a digest of the
    /// wrong length is refused, saying the length. The three signatures, in that order.
    fn signs_and_verifies(
        &self,
        admin: &common::Client,
        msg: &[u8],
        digest: &[u8],
        ctx: &[u8],
    ) -> [Vec<u8>; 3] {
        let (alg, pure) = (self.alg, self.pure);
        let path = format!("/v1/keys/{}/sign", self.name);
        let sign = |body: Value| {
            let reply = admin.post(&path, &body);
            assert_eq!(reply.status, 200, "{alg}: {reply:?}");
            assert_eq!(reply.json()["algorithm"], alg);
            let sig = unb64(reply.json()["signature"].as_str().unwrap());
            assert_eq!(sig.len(), self.size);
            sig
        };
        let of_message = sign(json!({"input": b64(msg), "algorithm": alg}));
        let of_digest =
            sign(json!({"input": b64(digest), "input_type": "digest", "algorithm": alg}));
        let with_ctx = sign(json!({"input": b64(msg), "algorithm": alg, "context": b64(ctx)}));
        let verify =
            |input: &[u8], digest: bool, algorithm: &str, sig: &[u8], context: Option<&[u8]>| {
                let mut body =
                    json!({"input": b64(input), "signature": b64(sig), "algorithm": algorithm});
                if digest {
                    body["input_type"] = "digest".into();
                }
                if let Some(c) = context {
                    body["context"] = b64(c).into();
                }
                let reply = admin.post(&format!("/v1/keys/{}/verify", self.name), &body);
                assert_eq!(reply.status, 200, "{reply:?}");
                reply.json()["valid"].as_bool().unwrap()
            };
        for sig in [&of_message, &of_digest] {
            assert!(verify(msg, false, alg, sig, None), "{alg} message");
            assert!(verify(digest, true, alg, sig, None), "{alg} digest");
            assert!(!verify(b"another message", false, alg, sig, None));
            assert!(!verify(msg, false, alg, sig, Some(ctx)));
            assert!(!verify(msg, false, pure, sig, None), "{alg} as {pure}");
            assert!(!verify(digest, false, pure, sig, None), "{alg} as {pure}");
            for other in self.others {
                assert!(!verify(msg, false, other, sig, None), "{alg} as {other}");
            }
        }
        assert!(verify(msg, false, alg, &with_ctx, Some(ctx)));
        assert!(!verify(msg, false, alg, &with_ctx, None));
        let short = admin.post(
            &path,
            &json!({"input": b64(&[0u8; 20]), "input_type": "digest", "algorithm": alg}),
        );
        assert_eq!(short.status, 422, "{short:?}");
        let detail = short.json()["detail"].as_str().unwrap().to_string();
        assert!(detail.contains(&digest.len().to_string()), "{detail}");
        [of_message, of_digest, with_ctx]
    }
}

/// HashSLH-DSA (FIPS 205 §10.2) with SHA-256 and SHA-512 over the API: an SLH-DSA key signs a
/// message (Signet hashes it) or a digest made elsewhere, with or without a context string; the
/// token (`CKM_HASH_SLH_DSA`) builds M' and signs. The service's verifier and the `slhdsa`
/// package from PyPI accept exactly those signatures: not as pure SLH-DSA, not under the
/// other hash, not without their context. On a token without SLH-DSA the algorithm is refused.
#[test]
fn hash_slh_dsa_signs_messages_and_digests_over_the_api() {
    use sha2::Digest;
    let mut configured = Configured::init("");
    configured.serve();
    let supported = supports_ml_dsa(&configured);
    let (server, token) = (configured.server(), &configured.token);
    let admin = server.admin();
    let name = token.unique("hash-slh");
    let spec = if supported {
        "slh-dsa-sha2-128f"
    } else {
        "ec-p256"
    };
    let created = admin.post("/v1/keys", &json!({"name": name, "spec": spec}));
    assert_eq!(created.status, 201, "{created:?}");
    let path = format!("/v1/keys/{name}/sign");
    if !supported {
        let refused = admin.post(
            &path,
            &json!({"input": b64(b"x"), "algorithm": "HashSLH-DSA-SHA2-128f-SHA256"}),
        );
        assert_eq!(refused.status, 422, "{refused:?}");
        return;
    }
    let pem = created.json()["versions"][0]["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = b"a large document, signed as its digest with a hash-based key";
    let ctx = b"signet/hash-slh-dsa";
    let pure = "SLH-DSA-SHA2-128f";
    let mut checks = Vec::new();
    for (hash, digest) in [
        ("SHA256", sha2::Sha256::digest(msg).to_vec()),
        ("SHA512", sha2::Sha512::digest(msg).to_vec()),
    ] {
        let alg = format!("HashSLH-DSA-SHA2-128f-{hash}");
        let other = format!(
            "HashSLH-DSA-SHA2-128f-{}",
            if hash == "SHA256" { "SHA512" } else { "SHA256" }
        );
        let signing = PreHash {
            name: &name,
            alg: &alg,
            pure,
            others: &[other],
            size: 17088,
        };
        let [of_message, of_digest, with_ctx] =
            signing.signs_and_verifies(&admin, msg, &digest, ctx);
        let check =
            |what: &str, hash: Option<&str>, sig: &[u8], ctx: Option<&[u8]>, expect: bool| {
                json!({"what": format!("{alg}: {what}"), "kind": "sig", "alg": pure, "pem": pem,
                   "hash": hash, "msg": b64(msg), "sig": b64(sig), "ctx": ctx.map(b64),
                   "expect": expect})
            };
        checks.extend([
            check("of the message", Some(hash), &of_message, None, true),
            check("of the digest", Some(hash), &of_digest, None, true),
            check("with a context", Some(hash), &with_ctx, Some(ctx), true),
            check("without its context", Some(hash), &with_ctx, None, false),
            check("as pure SLH-DSA", None, &of_digest, None, false),
        ]);
    }
    python_checks("slhdsa_check.py", checks);
    // The key's own algorithm stays pure SLH-DSA unless asked.
    let signed = admin.post(&path, &json!({"input": b64(msg)}));
    assert_eq!(signed.json()["algorithm"], pure, "{signed:?}");
}

#[test]
fn ml_dsa_keys_sign_verify_and_batch_over_the_api() {
    let mut configured = Configured::init("");
    configured.serve();
    let supported = supports_ml_dsa(&configured);
    let (server, token) = (configured.server(), &configured.token);
    let admin = server.admin();
    let msg = b"a message signed with a post-quantum key in the token";
    let ctx = b"signet/pqc-test";
    let mut checks = Vec::new();
    for row in SPECS {
        let Some(made) = pq_key_signs_over_the_api(&admin, token, supported, row, msg, ctx) else {
            continue;
        };
        let (spec, alg, _) = row;
        let (name, pem) = (&made.name, &made.pem);
        let path = format!("/v1/keys/{name}/sign");
        // A context that is too long is refused.
        let long = admin.post(
            &path,
            &json!({"input": b64(msg), "context": b64(&[1u8; 256])}),
        );
        assert_eq!(long.status, 400, "{long:?}");
        assert!(long.json()["detail"]
            .as_str()
            .unwrap()
            .contains("at most 255"));

        // Batch signing: each item on its own.
        let batch = admin.post(
            &format!("/v1/keys/{name}/sign-batch"),
            &json!({"items": [{"input": b64(msg)}, {"input": b64(b"second"), "context": b64(ctx)}]}),
        );
        assert_eq!(batch.status, 200, "{batch:?}");
        let results = batch.json()["results"].as_array().unwrap().clone();
        assert_eq!(results.len(), 2, "{batch:?}");
        let batch_sig = unb64(results[1]["signature"].as_str().unwrap());

        checks.extend(made.checks(row, msg, ctx));
        checks.push(
            json!({"what": format!("{spec} batch item"), "kind": "sig", "alg": alg, "pem": pem,
                   "msg": b64(b"second"), "sig": b64(&batch_sig), "ctx": b64(ctx),
                   "expect": true}),
        );

        // The CLI's `key public` gives the same PEM.
        let public = admin.get(&format!("/v1/keys/{name}"));
        assert_eq!(
            public.json()["versions"][0]["public_key_pem"].as_str(),
            Some(pem.as_str())
        );
    }
    if !supported {
        return;
    }
    assert_eq!(checks.len(), 18);
    pyca_checks(checks);
    // Metrics count the signatures by algorithm, as for any key.
    let metrics = admin.get("/metrics").body;
    for (_, alg, _) in SPECS {
        let counted = format!("signet_sign_operations_total{{algorithm=\"{alg}\",outcome=\"ok\"}}");
        assert!(metrics.contains(&counted), "{counted}\n{metrics}");
    }
    // The CLI shows the same public key, as PEM and as an AKP JWK.
    let name = token.unique("ml-dsa-65");
    let pem = admin.get(&format!("/v1/keys/{name}")).json()["versions"][0]["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    configured.stop();
    let out = configured.run(&["key", "public", &name]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), pem);
    let out = configured.run(&["key", "public", &name, "--format", "jwk"]);
    assert!(out.status.success(), "{}", text(&out));
    let jwk: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["alg"].as_str()),
        (Some("AKP"), Some("ML-DSA-65"))
    );
}

#[test]
fn ml_dsa_signs_tokens_that_pyca_verifies_against_the_jwks() {
    let tokens = "[tokens]\nkey_spec = \"ml-dsa-65\"\nalgorithm = \"ML-DSA-65\"\n";
    let mut configured = Configured::init(tokens);
    if !supports_ml_dsa(&configured) {
        // Without ML-DSA in the token the service cannot make its token key, and will not
        // start without it: it says why.
        let out = configured.run(&["serve", "--listen", "127.0.0.1:0"]);
        let all = text(&out);
        assert!(!out.status.success(), "{all}");
        assert!(all.contains("needs a PKCS#11 3.2 token"), "{all}");
        assert!(!all.contains("CKR_"), "{all}");
        return;
    }
    configured.serve();
    let server = configured.server();
    let admin = server.admin();
    let issued = admin.post("/v1/tokens", &json!({"audience": "pqc-test"}));
    assert_eq!(issued.status, 200, "{issued:?}");
    let token = issued.json()["token"].as_str().unwrap().to_string();
    let jwks = admin.get("/.well-known/jwks.json").json();
    assert_eq!(jwks["keys"][0]["kty"], "AKP");
    assert_eq!(jwks["keys"][0]["alg"], "ML-DSA-65");
    let header: Value =
        serde_json::from_slice(&unb64url(token.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], "ML-DSA-65");
    // The service's introspection agrees.
    let inspected = admin.post("/v1/tokens/introspect", &json!({"token": token}));
    assert_eq!(inspected.status, 200, "{inspected:?}");
    assert_eq!(inspected.json()["active"], true, "{inspected:?}");
    // A token with one signature byte changed is not active.
    let mut forged = token.clone().into_bytes();
    let at = token.rfind('.').unwrap() + 100;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let inspected = admin.post("/v1/tokens/introspect", &json!({"token": forged}));
    assert_eq!(inspected.json()["active"], false, "{inspected:?}");
    // `signet token verify` checks it offline against the JWKS file.
    let jwks_file = server.data.join("jwks.json");
    std::fs::write(&jwks_file, jwks.to_string()).unwrap();
    let offline = configured.run(&[
        "token",
        "verify",
        &token,
        "--jwks",
        jwks_file.to_str().unwrap(),
        "--audience",
        "pqc-test",
    ]);
    assert!(offline.status.success(), "{}", text(&offline));
    let spoiled = configured.run(&[
        "token",
        "verify",
        &forged,
        "--jwks",
        jwks_file.to_str().unwrap(),
        "--audience",
        "pqc-test",
    ]);
    assert!(!spoiled.status.success(), "{}", text(&spoiled));
    pyca_checks(vec![json!({
        "what": "an ML-DSA-65 JWT against the JWKS",
        "kind": "jwt",
        "token": token,
        "jwks": jwks,
        "sub": "admin",
    })]);
}

/// A CSR for a new ML-DSA key, made by pyca/cryptography (spoiled signature with `bad`).
fn ml_dsa_csr(alg: &str, name: &str, bad: bool) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/mldsa_check.py");
    let mut cmd = Command::new(python());
    cmd.arg(script).args(["csr", alg, name]);
    if bad {
        cmd.arg("bad");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Certificates for ML-DSA keys come from any CA key: the embedded CA (ECDSA) certifies an
/// ML-DSA key from its CSR, and pyca/cryptography validates the path root → intermediate →
/// leaf for the server name and finds the CSR's key in it. A CSR whose signature is spoiled is
/// refused.
#[test]
fn ml_dsa_keys_get_certificates_from_their_csr() {
    let server = common::Server::start();
    let admin = server.admin();
    let ca = server.data.join("ca");
    let root = std::fs::read_to_string(ca.join("root.pem")).unwrap();
    let intermediate = std::fs::read_to_string(ca.join("intermediate.pem")).unwrap();
    let mut checks = Vec::new();
    for (i, (_, alg, _)) in SPECS.into_iter().enumerate() {
        let name = format!("pq{i}.example");
        let csr = ml_dsa_csr(alg, &name, false);
        let issued = admin.post(
            "/v1/certificates",
            &json!({"csr": csr, "profile": "server", "name": name, "dns": [name]}),
        );
        assert_eq!(issued.status, 201, "{alg}: {issued:?}");
        let leaf = issued.json()["certificate"].as_str().unwrap().to_string();
        checks.push(json!({
            "what": format!("an {alg} leaf"), "kind": "chain", "alg": alg, "leaf": leaf,
            "intermediate": intermediate, "root": root, "dns": name, "csr": csr,
        }));
        // The certificate is listed and can be revoked like any other.
        let serial = issued.json()["serial"].as_str().unwrap().to_string();
        let listed = admin.get(&format!("/v1/certificates/{serial}"));
        assert_eq!(listed.status, 200, "{listed:?}");
    }
    pyca_checks(checks);
    let bad = ml_dsa_csr("ML-DSA-65", "bad.example", true);
    let refused = admin.post(
        "/v1/certificates",
        &json!({"csr": bad, "profile": "server", "name": "bad.example", "dns": ["bad.example"]}),
    );
    assert_eq!(refused.status, 422, "{refused:?}");
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("self-signature does not verify"),
        "{refused:?}"
    );
}

/// An all-ML-DSA CA (`ca init --root-spec ml-dsa-87 --intermediate-spec ml-dsa-65`, replacing
/// the ECDSA one the first `init` made): the root and the intermediate are ML-DSA keys in the
/// token and sign certificates and the CRL with ML-DSA (RFC 9881), above an ECDSA server key.
/// Mutual TLS works across that chain both ways (the test's rustls client checks the server's
/// chain, the server the admin's), and pyca/cryptography checks every signature: the root's
/// own, the intermediate's, a leaf's and the CRL's. On a token without ML-DSA the command is
/// refused before anything changes.
#[test]
fn an_all_ml_dsa_ca_issues_and_serves_over_mutual_tls() {
    let mut configured = Configured::init("");
    let init = configured.run(&[
        "ca",
        "init",
        "--force",
        "--trust-domain",
        "pq.example",
        "--root-spec",
        "ml-dsa-87",
        "--intermediate-spec",
        "ml-dsa-65",
    ]);
    if !supports_ml_dsa(&configured) {
        assert!(!init.status.success(), "{}", text(&init));
        assert!(
            text(&init).contains("this token cannot make the root key (ml-dsa-87)"),
            "{}",
            text(&init)
        );
        let show = configured.run(&["ca", "show"]);
        assert!(text(&show).contains("smoke.example"), "{}", text(&show));
        return;
    }
    assert!(init.status.success(), "{}", text(&init));
    let show = configured.run(&["ca", "show"]);
    assert!(
        text(&show).contains("ml-dsa-87") && text(&show).contains("ml-dsa-65"),
        "{}",
        text(&show)
    );
    configured.serve();
    let server = configured.server();
    let admin = server.admin();
    let keys = admin.get("/v1/keys");
    assert_eq!(keys.status, 200, "{keys:?}");
    let ca = server.data.join("ca");
    let root = std::fs::read_to_string(ca.join("root.pem")).unwrap();
    let intermediate = std::fs::read_to_string(ca.join("intermediate.pem")).unwrap();
    let name = "pq-leaf.example";
    let csr = ml_dsa_csr("ML-DSA-44", name, false);
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "server", "name": name, "dns": [name]}),
    );
    assert_eq!(issued.status, 201, "{issued:?}");
    let leaf = issued.json()["certificate"].as_str().unwrap().to_string();
    let serial = issued.json()["serial"].as_str().unwrap().to_string();
    let revoked = admin.post(
        &format!("/v1/certificates/{serial}/revoke"),
        &json!({"reason": "keyCompromise"}),
    );
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let crl = admin.get_as("/v1/ca/crl", "application/x-pem-file");
    assert_eq!(crl.status, 200, "{crl:?}");
    let arl = admin.get_as("/v1/ca/arl", "application/x-pem-file");
    assert_eq!(arl.status, 200, "{arl:?}");
    pyca_checks(vec![json!({
        "what": "the all-ML-DSA CA", "kind": "mlca", "root": root,
        "intermediate": intermediate, "leaf": leaf, "crl": crl.body, "arl": arl.body,
        "serial": serial, "dns": name,
    })]);
    // signet-client (here the CLI's remote mode) verifies the server's ML-DSA chain too.
    let out = Command::new(common::BIN)
        .args(["--server", &server.url(""), "--ca"])
        .arg(ca.join("root.pem"))
        .arg("--bundle")
        .arg(server.data.join("clients/admin.p12"))
        .args(["key", "list"])
        .env_remove("SIGNET_DATA_DIR")
        .env_remove("SIGNET_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("token-signer"), "{}", text(&out));
}

/// `[tokens] key_spec` changed between two starts: the token key is rotated to the new spec (an
/// audited rotation), new tokens carry the new algorithm and kid, and the JWKS keeps the old
/// kid while its tokens live, so a token of each verifies — with pyca/cryptography for ML-DSA
/// and PyJWT for ES256 — and introspects active. ES256 to ML-DSA-65 on a token with ML-DSA;
/// elsewhere the same migration to Ed25519 (SoftHSM2) or ES384 (p11-kit, without EdDSA).
#[test]
fn the_token_key_moves_to_another_spec_and_both_kids_verify() {
    // One issuer across both starts (by default it names the port, which changes).
    let issuer = "[tokens]\nissuer = \"https://tokens.example\"\n";
    let mut configured = Configured::init(issuer);
    let (spec, alg) = match configured.token.kind {
        TokenKind::Kryoptic => ("ml-dsa-65", "ML-DSA-65"),
        TokenKind::SoftHsm => ("ed25519", "EdDSA"),
        TokenKind::P11Kit => ("ec-p384", "ES384"),
    };
    configured.serve();
    let before = configured
        .server()
        .admin()
        .post("/v1/tokens", &json!({"audience": "migrate"}));
    assert_eq!(before.status, 200, "{before:?}");
    let old_token = before.json()["token"].as_str().unwrap().to_string();
    configured.stop();

    let text_config = std::fs::read_to_string(&configured.config)
        .unwrap()
        .replace(
            issuer,
            &format!("{issuer}key_spec = \"{spec}\"\nalgorithm = \"{alg}\"\n"),
        );
    std::fs::write(&configured.config, text_config).unwrap();
    configured.serve();
    let admin = configured.server().admin();
    let after = admin.post("/v1/tokens", &json!({"audience": "migrate"}));
    assert_eq!(after.status, 200, "{after:?}");
    let new_token = after.json()["token"].as_str().unwrap().to_string();
    let header = |t: &str| -> Value {
        serde_json::from_slice(&unb64url(t.split('.').next().unwrap())).unwrap()
    };
    assert_eq!(header(&old_token)["alg"], "ES256");
    assert_eq!(header(&new_token)["alg"], alg);
    assert_ne!(header(&old_token)["kid"], header(&new_token)["kid"]);

    let jwks = admin.get("/.well-known/jwks.json").json();
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    assert_eq!(algs.len(), 2, "{jwks}");
    assert!(algs.contains(&"ES256") && algs.contains(&alg), "{jwks}");
    for token in [&old_token, &new_token] {
        let inspected = admin.post("/v1/tokens/introspect", &json!({"token": token}));
        assert_eq!(inspected.json()["active"], true, "{inspected:?}");
    }
    let key = admin.get("/v1/keys/token-signer").json();
    assert_eq!(key["spec"], spec, "{key}");
    assert_eq!(key["primary_version"], 2, "{key}");
    pyca_checks(
        [&old_token, &new_token]
            .into_iter()
            .map(|t| {
                json!({"what": format!("a {} token", header(t)["alg"]), "kind": "jwt",
                       "token": t, "jwks": jwks, "sub": "admin"})
            })
            .collect(),
    );
    configured.stop();
    let out = configured.run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// An unmodified PKCS#11 3.2 application (cryptoki) signs with an ML-DSA key held by Signet
/// through `libsignet_pkcs11.so`: the key shows as `CKK_ML_DSA` with its parameter set and
/// public value, `CKM_ML_DSA` signs with and without a context string, HashML-DSA with SHA-256,
/// SHA-384 and SHA-512 over a digest or a message, the module verifies, and
/// pyca/cryptography checks the signatures. On a token without ML-DSA the module still offers
/// the mechanism and refuses it on another key type.
#[test]
fn applications_sign_with_ml_dsa_keys_through_the_pkcs11_module() {
    use cryptoki::error::{Error as CkError, RvError};
    use cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
    use cryptoki::mechanism::{Mechanism, MechanismType};
    use cryptoki::object::{KeyType, MlDsaParameterSetType, ObjectClass};

    let mut configured = Configured::init("");
    configured.serve();
    let supported = supports_ml_dsa(&configured);
    let server = configured.server();
    let admin = server.admin();
    let (name, spec) = if supported {
        ("pq", "ml-dsa-65")
    } else {
        ("classic", "ec-p256")
    };
    let created = admin.post("/v1/keys", &json!({"name": name, "spec": spec}));
    assert_eq!(created.status, 201, "{created:?}");
    let version = created.json()["versions"][0].clone();
    let (ctx, slot, session) = module_session(server);
    assert!(ctx
        .get_mechanism_list(slot)
        .unwrap()
        .contains(&MechanismType::ML_DSA));
    let find = |class: ObjectClass| find_one(&session, class, name);
    let private = find(ObjectClass::PRIVATE_KEY);
    let plain = Mechanism::MlDsa(SignAdditionalContext::new(HedgeType::Preferred, None));
    if !supported {
        let err = session.sign_init(&plain, private).unwrap_err();
        assert!(
            matches!(err, CkError::Pkcs11(RvError::KeyTypeInconsistent, _)),
            "{err}"
        );
        return;
    }
    let public = find(ObjectClass::PUBLIC_KEY);
    let (msg, ctx_bytes) = (MODULE_MESSAGE, MODULE_CONTEXT);
    let (sig, sig_ctx) = module_key_signs_with_context(
        &session,
        (private, public),
        (KeyType::ML_DSA, MlDsaParameterSetType::ML_DSA_65.into()),
        &version["jwk"],
        Mechanism::MlDsa,
        3309,
    );
    // HashML-DSA with SHA-512: a digest the application made (CKM_HASH_ML_DSA), the module
    // hashing the parts (CKM_HASH_ML_DSA_SHA512), and with a context string; the module's
    // C_Verify, Signet's verify and the other mechanism all agree.
    {
        use cryptoki::mechanism::dsa::HashSignAdditionalContext;
        use sha2::Digest;
        let mechanisms = ctx.get_mechanism_list(slot).unwrap();
        assert!(
            mechanisms.contains(&MechanismType::HASH_ML_DSA),
            "{mechanisms:?}"
        );
        assert!(mechanisms.contains(&MechanismType::HASH_ML_DSA_SHA512));
        let digest = sha2::Sha512::digest(msg).to_vec();
        let of_digest = Mechanism::HashMlDsa(HashSignAdditionalContext::new(
            HedgeType::Preferred,
            None,
            MechanismType::SHA512,
        ));
        let hashing =
            Mechanism::HashMlDsaSha512(SignAdditionalContext::new(HedgeType::Preferred, None));
        let sig = session.sign(&of_digest, private, &digest).unwrap();
        assert_eq!(sig.len(), 3309);
        session.verify(&of_digest, public, &digest, &sig).unwrap();
        session.verify(&hashing, public, msg, &sig).unwrap();
        assert!(session.verify(&plain, public, msg, &sig).is_err());
        session.sign_init(&hashing, private).unwrap();
        session.sign_update(&msg[..10]).unwrap();
        session.sign_update(&msg[10..]).unwrap();
        let in_parts = session.sign_final().unwrap();
        session
            .verify(&of_digest, public, &digest, &in_parts)
            .unwrap();
        let api_verify = |sig: &[u8], context: Option<&[u8]>| {
            let mut body = json!({"input": b64(msg), "signature": b64(sig),
                                  "algorithm": "HashML-DSA-65-SHA512"});
            if let Some(c) = context {
                body["context"] = b64(c).into();
            }
            admin.post(&format!("/v1/keys/{name}/verify"), &body).json()["valid"] == true
        };
        assert!(api_verify(&sig, None) && api_verify(&in_parts, None));
        let with_context = Mechanism::HashMlDsaSha512(SignAdditionalContext::new(
            HedgeType::Preferred,
            Some(ctx_bytes),
        ));
        let sig_ctx = session.sign(&with_context, private, msg).unwrap();
        session
            .verify(&with_context, public, msg, &sig_ctx)
            .unwrap();
        assert!(session.verify(&hashing, public, msg, &sig_ctx).is_err());
        assert!(api_verify(&sig_ctx, Some(ctx_bytes)) && !api_verify(&sig_ctx, None));
        // SHA-256 and SHA-384 the same way: a digest signed, the module hashing, Signet
        // verifying under the name with the hash; a signature over one hash is not one over
        // another.
        for (named, hashing, algorithm, digest) in [
            (
                MechanismType::SHA256,
                Mechanism::HashMlDsaSha256(SignAdditionalContext::new(HedgeType::Preferred, None)),
                "HashML-DSA-65-SHA256",
                sha2::Sha256::digest(msg).to_vec(),
            ),
            (
                MechanismType::SHA384,
                Mechanism::HashMlDsaSha384(SignAdditionalContext::new(HedgeType::Preferred, None)),
                "HashML-DSA-65-SHA384",
                sha2::Sha384::digest(msg).to_vec(),
            ),
        ] {
            assert!(mechanisms.contains(&hashing.mechanism_type()));
            let of_digest = Mechanism::HashMlDsa(HashSignAdditionalContext::new(
                HedgeType::Preferred,
                None,
                named,
            ));
            let sig = session.sign(&of_digest, private, &digest).unwrap();
            session.verify(&hashing, public, msg, &sig).unwrap();
            assert!(session.verify(&hashing, public, b"another", &sig).is_err());
            assert!(session.verify(&plain, public, msg, &sig).is_err());
            let in_parts = {
                session.sign_init(&hashing, private).unwrap();
                session.sign_update(&msg[..7]).unwrap();
                session.sign_update(&msg[7..]).unwrap();
                session.sign_final().unwrap()
            };
            session
                .verify(&of_digest, public, &digest, &in_parts)
                .unwrap();
            let body = |sig: &[u8], algorithm: &str| json!({"input": b64(msg), "signature": b64(sig), "algorithm": algorithm});
            for (sig, algorithm, valid) in [
                (&sig, algorithm, true),
                (&in_parts, algorithm, true),
                (&sig, "HashML-DSA-65-SHA512", false),
            ] {
                let answer = admin.post(&format!("/v1/keys/{name}/verify"), &body(sig, algorithm));
                assert_eq!(answer.json()["valid"], valid, "{algorithm}: {answer:?}");
            }
        }
        // A hash HashML-DSA here does not take (SHA-1) is refused at C_SignInit.
        let sha1 = Mechanism::HashMlDsa(HashSignAdditionalContext::new(
            HedgeType::Preferred,
            None,
            MechanismType::SHA1,
        ));
        let err = session.sign_init(&sha1, private).unwrap_err();
        assert!(
            matches!(err, CkError::Pkcs11(RvError::MechanismParamInvalid, _)),
            "{err}"
        );
    }
    let pem = version["public_key_pem"].as_str().unwrap();
    pyca_checks(vec![
        json!({"what": "a module signature", "kind": "sig", "alg": "ML-DSA-65", "pem": pem,
               "msg": b64(msg), "sig": b64(&sig), "expect": true}),
        json!({"what": "a module signature with context", "kind": "sig", "alg": "ML-DSA-65",
               "pem": pem, "msg": b64(msg), "sig": b64(&sig_ctx), "ctx": b64(ctx_bytes),
               "expect": true}),
    ]);
}

/// `libsignet_pkcs11.so` for the admin of `server` (its configuration is read by
/// `C_Initialize`: call before any other thread of the test exists), its one slot, and a
/// read-only session there.
fn module_session(
    server: &common::Server,
) -> (
    cryptoki::context::Pkcs11,
    cryptoki::slot::Slot,
    cryptoki::session::Session,
) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    std::env::set_var(
        "SIGNET_PKCS11_CONF",
        common::pkcs11_settings(server, "admin"),
    );
    let ctx = Pkcs11::new(common::pkcs11_module()).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx.get_slots_with_token().unwrap()[0];
    let session = ctx.open_ro_session(slot).unwrap();
    (ctx, slot, session)
}

/// The one object of `class` labelled `label`.
fn find_one(
    session: &cryptoki::session::Session,
    class: cryptoki::object::ObjectClass,
    label: &str,
) -> cryptoki::object::ObjectHandle {
    use cryptoki::object::Attribute;
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1, "{class:?} {label}");
    found[0]
}

/// What the module tests sign, and the context string they sign it with.
const MODULE_MESSAGE: &[u8] = b"signed by an application through the PKCS#11 module";
const MODULE_CONTEXT: &[u8] = b"app-context";

/// Through the module, a post-quantum key pair (`keys`: private, public): a `key_type` key of
/// parameter set `set`, whose public `CKA_VALUE` is the `jwk`'s `pub`. It signs
/// [`MODULE_MESSAGE`] with the mechanism `mechanism` makes of a `CK_SIGN_ADDITIONAL_CONTEXT`,
/// without and with [`MODULE_CONTEXT`]: signatures of `size` bytes that `C_Verify` accepts over
/// that message with that context only. Deterministic signing is refused. Returns the two
/// signatures.
fn module_key_signs_with_context(
    session: &cryptoki::session::Session,
    (private, public): (
        cryptoki::object::ObjectHandle,
        cryptoki::object::ObjectHandle,
    ),
    (key_type, set): (
        cryptoki::object::KeyType,
        cryptoki::object::ParameterSetType,
    ),
    jwk: &Value,
    mechanism: fn(
        cryptoki::mechanism::dsa::SignAdditionalContext<'static>,
    ) -> cryptoki::mechanism::Mechanism<'static>,
    size: usize,
) -> (Vec<u8>, Vec<u8>) {
    use cryptoki::error::{Error as CkError, RvError};
    use cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
    use cryptoki::object::{Attribute, AttributeType};

    let attrs = session
        .get_attributes(
            private,
            &[AttributeType::KeyType, AttributeType::ParameterSet],
        )
        .unwrap();
    assert!(attrs.contains(&Attribute::KeyType(key_type)), "{attrs:?}");
    assert!(attrs.contains(&Attribute::ParameterSet(set)), "{attrs:?}");
    let value = session
        .get_attributes(public, &[AttributeType::Value])
        .unwrap();
    let jwk_pub = unb64url(jwk["pub"].as_str().unwrap());
    assert_eq!(value, vec![Attribute::Value(jwk_pub)]);

    let msg = MODULE_MESSAGE;
    let plain = mechanism(SignAdditionalContext::new(HedgeType::Preferred, None));
    let sig = session.sign(&plain, private, msg).unwrap();
    assert_eq!(sig.len(), size);
    session.verify(&plain, public, msg, &sig).unwrap();
    assert!(session.verify(&plain, public, b"other", &sig).is_err());
    let with_ctx = mechanism(SignAdditionalContext::new(
        HedgeType::Required,
        Some(MODULE_CONTEXT),
    ));
    let sig_ctx = session.sign(&with_ctx, private, msg).unwrap();
    session.verify(&with_ctx, public, msg, &sig_ctx).unwrap();
    assert!(session.verify(&plain, public, msg, &sig_ctx).is_err());
    let deterministic = mechanism(SignAdditionalContext::new(
        HedgeType::DeterministicRequired,
        None,
    ));
    let err = session.sign_init(&deterministic, private).unwrap_err();
    assert!(
        matches!(err, CkError::Pkcs11(RvError::MechanismParamInvalid, _)),
        "{err}"
    );
    (sig, sig_ctx)
}

/// SLH-DSA keys through `libsignet_pkcs11.so` (on kryoptic): listed as `CKK_SLH_DSA` with
/// their parameter set and public `CKA_VALUE`, signing with `CKM_SLH_DSA` (with and without a
/// context string; deterministic signing refused) and HashSLH-DSA (`CKM_HASH_SLH_DSA` over a
/// digest, `CKM_HASH_SLH_DSA_SHA256/512` in parts or with a context), verified by the module's
/// `C_Verify`, the service and the `slhdsa` package against the PEM Signet serves.
#[test]
fn applications_sign_with_slh_dsa_keys_through_the_pkcs11_module() {
    use cryptoki::error::{Error as CkError, RvError};
    use cryptoki::mechanism::dsa::{HedgeType, SignAdditionalContext};
    use cryptoki::mechanism::{Mechanism, MechanismType};
    use cryptoki::object::{KeyType, ObjectClass, SlhDsaParameterSetType};

    let mut configured = Configured::init("");
    if !supports_ml_dsa(&configured) {
        return;
    }
    configured.serve();
    let server = configured.server();
    let admin = server.admin();
    let name = "slh";
    let created = admin.post(
        "/v1/keys",
        &json!({"name": name, "spec": "slh-dsa-sha2-128f"}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let version = created.json()["versions"][0].clone();
    let (ctx, slot, session) = module_session(server);
    assert!(ctx
        .get_mechanism_list(slot)
        .unwrap()
        .contains(&MechanismType::SLH_DSA));
    let find = |class: ObjectClass| find_one(&session, class, name);
    let private = find(ObjectClass::PRIVATE_KEY);
    let public = find(ObjectClass::PUBLIC_KEY);
    let (msg, ctx_bytes) = (MODULE_MESSAGE, MODULE_CONTEXT);
    let (sig, sig_ctx) = module_key_signs_with_context(
        &session,
        (private, public),
        (KeyType::SLH_DSA, SlhDsaParameterSetType::SHA2_128F.into()),
        &version["jwk"],
        Mechanism::SlhDsa,
        17088,
    );
    // An ML-DSA mechanism on an SLH-DSA key is the wrong key type.
    let ml_dsa = Mechanism::MlDsa(SignAdditionalContext::new(HedgeType::Preferred, None));
    let err = session.sign_init(&ml_dsa, private).unwrap_err();
    assert!(
        matches!(err, CkError::Pkcs11(RvError::KeyTypeInconsistent, _)),
        "{err}"
    );
    // HashSLH-DSA: a SHA-512 digest the application made (CKM_HASH_SLH_DSA naming SHA-512),
    // the module hashing the parts (CKM_HASH_SLH_DSA_SHA256), and with a context string
    // (CKM_HASH_SLH_DSA_SHA512); the module's C_Verify, Signet's verify and the `slhdsa`
    // package agree. SHA-384, which Signet's HashSLH-DSA does not take, is refused.
    let (of_digest, in_parts, hashed_ctx) = {
        use cryptoki::mechanism::dsa::HashSignAdditionalContext;
        use sha2::Digest;
        let mechanisms = ctx.get_mechanism_list(slot).unwrap();
        for wanted in [
            MechanismType::HASH_SLH_DSA,
            MechanismType::HASH_SLH_DSA_SHA256,
            MechanismType::HASH_SLH_DSA_SHA512,
        ] {
            assert!(mechanisms.contains(&wanted), "{wanted} in {mechanisms:?}");
        }
        let pure = Mechanism::SlhDsa(SignAdditionalContext::new(HedgeType::Preferred, None));
        let named = |hash| {
            Mechanism::HashSlhDsa(HashSignAdditionalContext::new(
                HedgeType::Preferred,
                None,
                hash,
            ))
        };
        let digest = sha2::Sha512::digest(msg).to_vec();
        let of_digest = session
            .sign(&named(MechanismType::SHA512), private, &digest)
            .unwrap();
        assert_eq!(of_digest.len(), 17088);
        let sha512 =
            Mechanism::HashSlhDsaSha512(SignAdditionalContext::new(HedgeType::Preferred, None));
        session.verify(&sha512, public, msg, &of_digest).unwrap();
        assert!(session.verify(&pure, public, msg, &of_digest).is_err());
        let sha256 =
            Mechanism::HashSlhDsaSha256(SignAdditionalContext::new(HedgeType::Preferred, None));
        session.sign_init(&sha256, private).unwrap();
        session.sign_update(&msg[..9]).unwrap();
        session.sign_update(&msg[9..]).unwrap();
        let in_parts = session.sign_final().unwrap();
        let digest256 = sha2::Sha256::digest(msg).to_vec();
        session
            .verify(&named(MechanismType::SHA256), public, &digest256, &in_parts)
            .unwrap();
        assert!(session.verify(&sha512, public, msg, &in_parts).is_err());
        let with_context = Mechanism::HashSlhDsaSha512(SignAdditionalContext::new(
            HedgeType::Preferred,
            Some(ctx_bytes),
        ));
        let hashed_ctx = session.sign(&with_context, private, msg).unwrap();
        session
            .verify(&with_context, public, msg, &hashed_ctx)
            .unwrap();
        assert!(session.verify(&sha512, public, msg, &hashed_ctx).is_err());
        let api_verify = |sig: &[u8], algorithm: &str, context: Option<&[u8]>| {
            let mut body =
                json!({"input": b64(msg), "signature": b64(sig), "algorithm": algorithm});
            if let Some(c) = context {
                body["context"] = b64(c).into();
            }
            admin.post(&format!("/v1/keys/{name}/verify"), &body).json()["valid"] == true
        };
        assert!(api_verify(&of_digest, "HashSLH-DSA-SHA2-128f-SHA512", None));
        assert!(api_verify(&in_parts, "HashSLH-DSA-SHA2-128f-SHA256", None));
        assert!(!api_verify(&in_parts, "HashSLH-DSA-SHA2-128f-SHA512", None));
        assert!(api_verify(
            &hashed_ctx,
            "HashSLH-DSA-SHA2-128f-SHA512",
            Some(ctx_bytes)
        ));
        let err = session
            .sign_init(&named(MechanismType::SHA384), private)
            .unwrap_err();
        assert!(
            matches!(err, CkError::Pkcs11(RvError::MechanismParamInvalid, _)),
            "{err}"
        );
        (of_digest, in_parts, hashed_ctx)
    };
    let pem = version["public_key_pem"].as_str().unwrap();
    let check = |what: &str, hash: Option<&str>, sig: &[u8], ctx: Option<&[u8]>, expect: bool| {
        json!({"what": what, "kind": "sig", "alg": "SLH-DSA-SHA2-128f", "pem": pem,
               "hash": hash, "msg": b64(msg), "sig": b64(sig), "ctx": ctx.map(b64),
               "expect": expect})
    };
    python_checks(
        "slhdsa_check.py",
        vec![
            check("a module signature", None, &sig, None, true),
            check(
                "a module signature with context",
                None,
                &sig_ctx,
                Some(ctx_bytes),
                true,
            ),
            check(
                "HashSLH-DSA over a digest",
                Some("SHA512"),
                &of_digest,
                None,
                true,
            ),
            check(
                "HashSLH-DSA in parts",
                Some("SHA256"),
                &in_parts,
                None,
                true,
            ),
            check(
                "in parts, as SHA-512",
                Some("SHA512"),
                &in_parts,
                None,
                false,
            ),
            check(
                "HashSLH-DSA with context",
                Some("SHA512"),
                &hashed_ctx,
                Some(ctx_bytes),
                true,
            ),
        ],
    );
}

/// `POST /v1/keys/NAME/rotate {"spec": …}` moves a key to another spec (ES256 to ML-DSA-65 on a
/// token with ML-DSA; to Ed25519 on SoftHSM2, ES384 over p11-kit): the new version signs with
/// the new algorithm, the old one still verifies with its own, and the token key refuses a spec
/// other than `[tokens] key_spec`.
#[test]
fn a_key_rotates_to_another_spec_and_its_old_version_still_verifies() {
    let mut configured = Configured::init("");
    let (spec, alg) = match configured.token.kind {
        TokenKind::Kryoptic => ("ml-dsa-65", "ML-DSA-65"),
        TokenKind::SoftHsm => ("ed25519", "EdDSA"),
        TokenKind::P11Kit => ("ec-p384", "ES384"),
    };
    configured.serve();
    let admin = configured.server().admin();
    let name = configured.token.unique("moving");
    let created = admin.post("/v1/keys", &json!({"name": name, "spec": "ec-p256"}));
    assert_eq!(created.status, 201, "{created:?}");
    let msg = b"signed before and after the move";
    let sign = |version: u32| {
        let reply = admin.post(
            &format!("/v1/keys/{name}/sign"),
            &json!({"input": b64(msg), "version": version}),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        let body = reply.json();
        (
            body["algorithm"].as_str().unwrap().to_string(),
            body["signature"].as_str().unwrap().to_string(),
        )
    };
    let (alg1, sig1) = sign(1);
    assert_eq!(alg1, "ES256");
    let rotated = admin.post(&format!("/v1/keys/{name}/rotate"), &json!({"spec": spec}));
    assert_eq!(rotated.status, 200, "{rotated:?}");
    assert_eq!(rotated.json()["spec"], spec);
    assert_eq!(rotated.json()["primary_version"], 2);
    let (alg2, sig2) = sign(2);
    assert_eq!(alg2, alg);
    // Each version verifies with its own algorithm, and only its own signatures.
    let verify = |version: u32, signature: &str| {
        admin
            .post(
                &format!("/v1/keys/{name}/verify"),
                &json!({"input": b64(msg), "signature": signature, "version": version}),
            )
            .json()["valid"]
            .as_bool()
    };
    assert_eq!(verify(1, &sig1), Some(true));
    assert_eq!(verify(2, &sig2), Some(true));
    assert_eq!(verify(2, &sig1), Some(false));
    // A plain rotation keeps the (new) spec.
    let again = admin.post(&format!("/v1/keys/{name}/rotate"), &json!({}));
    assert_eq!(again.json()["spec"], spec, "{again:?}");
    let (alg3, _) = sign(3);
    assert_eq!(alg3, alg);
    // The token key follows [tokens] key_spec only.
    admin.post("/v1/tokens", &json!({"audience": "a"}));
    let refused = admin.post("/v1/keys/token-signer/rotate", &json!({"spec": spec}));
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(
        refused.json()["detail"]
            .as_str()
            .unwrap()
            .contains("follows [tokens] key_spec"),
        "{refused:?}"
    );
}

/// HashML-DSA (FIPS 204 §5.4) with SHA-512 over the API: the same ML-DSA key signs a message
/// (Signet hashes it) or a SHA-512 digest made elsewhere, with or without a context string; the
/// token (kryoptic, OpenSSL inside) builds FIPS 204's M' and signs, and Signet's verifier, which
/// builds M' on its own, accepts exactly those signatures. A HashML-DSA signature is not a pure
/// ML-DSA one. On a token without ML-DSA, the algorithm on another key's spec is refused.
#[test]
fn hash_ml_dsa_signs_messages_and_digests_over_the_api() {
    use sha2::Digest;
    let mut configured = Configured::init("");
    configured.serve();
    let supported = supports_ml_dsa(&configured);
    let (server, token) = (configured.server(), &configured.token);
    let admin = server.admin();
    if !supported {
        let name = token.unique("ec");
        let created = admin.post("/v1/keys", &json!({"name": name, "spec": "ec-p256"}));
        assert_eq!(created.status, 201, "{created:?}");
        let refused = admin.post(
            &format!("/v1/keys/{name}/sign"),
            &json!({"input": b64(b"x"), "algorithm": "HashML-DSA-65-SHA512"}),
        );
        assert_eq!(refused.status, 422, "{refused:?}");
        return;
    }
    let msg = b"a large document, signed as its digest";
    let ctx = b"signet/hash-ml-dsa";
    let hashes: [(&str, Vec<u8>); 3] = [
        ("SHA256", sha2::Sha256::digest(msg).to_vec()),
        ("SHA384", sha2::Sha384::digest(msg).to_vec()),
        ("SHA512", sha2::Sha512::digest(msg).to_vec()),
    ];
    for ((spec, pure, size), (hash, digest)) in SPECS
        .iter()
        .flat_map(|s| hashes.iter().map(move |h| (s, h)))
    {
        let (spec, pure, size) = (*spec, *pure, *size);
        let alg = format!("Hash{pure}-{hash}");
        let name = token.unique(&format!("hash-{spec}-{hash}"));
        let created = admin.post("/v1/keys", &json!({"name": name, "spec": spec}));
        assert_eq!(created.status, 201, "{spec}: {created:?}");
        let others: Vec<String> = hashes
            .iter()
            .filter(|(other, _)| other != hash)
            .map(|(other, _)| format!("Hash{pure}-{other}"))
            .collect();
        let signing = PreHash {
            name: &name,
            alg: &alg,
            pure,
            others: &others,
            size,
        };
        signing.signs_and_verifies(&admin, msg, digest, ctx);
    }
    // The key's own algorithm stays pure ML-DSA unless asked.
    let name = token.unique("hash-ml-dsa-65-SHA512");
    let signed = admin.post(
        &format!("/v1/keys/{name}/sign"),
        &json!({"input": b64(msg)}),
    );
    assert_eq!(signed.json()["algorithm"], "ML-DSA-65", "{signed:?}");
}

/// A client whose certificate is for an ML-DSA-65 key logs in over mutual TLS: it signs the
/// TLS 1.3 handshake with ML-DSA (`mldsa65`, 0x0905; the key made and kept in software by the
/// test, with pyca/cryptography making its CSR), Signet checks that signature with its ML-DSA
/// verifier added to rustls, and the request runs under the certificate's principal and
/// scopes. The CA stays ECDSA: any token will do.
#[test]
fn an_ml_dsa_client_certificate_logs_in_over_mutual_tls() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    use rustls::SignatureScheme;
    use std::sync::Arc;

    type Key = ml_dsa::SigningKey<ml_dsa::MlDsa65>;

    struct MlDsaKey(Arc<Key>);
    impl std::fmt::Debug for MlDsaKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("MlDsaKey")
        }
    }
    impl rustls::sign::SigningKey for MlDsaKey {
        fn choose_scheme(
            &self,
            offered: &[SignatureScheme],
        ) -> Option<Box<dyn rustls::sign::Signer>> {
            offered
                .contains(&SignatureScheme::ML_DSA_65)
                .then(|| Box::new(MlDsaKey(self.0.clone())) as Box<dyn rustls::sign::Signer>)
        }
        fn algorithm(&self) -> rustls::SignatureAlgorithm {
            rustls::SignatureAlgorithm::Unknown(0)
        }
    }
    impl rustls::sign::Signer for MlDsaKey {
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
            self.0
                .expanded_key()
                .sign_deterministic(message, &[])
                .map(|s| s.encode().to_vec())
                .map_err(|_| rustls::Error::General("ML-DSA signing failed".into()))
        }
        fn scheme(&self) -> SignatureScheme {
            SignatureScheme::ML_DSA_65
        }
    }
    #[derive(Debug)]
    struct Resolver(Arc<rustls::sign::CertifiedKey>);
    impl rustls::client::ResolvesClientCert for Resolver {
        fn resolve(
            &self,
            _: &[&[u8]],
            _: &[SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    let server = common::Server::start();
    let admin = server.admin();
    let created = admin.post(
        "/v1/principals",
        &json!({"name": "pq-client", "scopes": ["keys:read"]}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    // The key and its CSR, made by pyca/cryptography; the seed comes back to sign with here.
    let seed_file = server.data.join("pq-client.seed");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/mldsa_check.py");
    let out = Command::new(python())
        .arg(script)
        .args(["keycsr", "ML-DSA-65", "pq-client"])
        .arg(&seed_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let csr = String::from_utf8(out.stdout).unwrap();
    let seed_hex = std::fs::read_to_string(&seed_file).unwrap();
    let seed: Vec<u8> = (0..seed_hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&seed_hex[i..i + 2], 16).unwrap())
        .collect();
    let seed: [u8; 32] = seed.try_into().unwrap();
    let key = Key::from_seed(&seed.into());
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "client", "name": "pq-client"}),
    );
    assert_eq!(issued.status, 201, "{issued:?}");
    let leaf = issued.json()["certificate"].as_str().unwrap().to_string();
    let intermediate = std::fs::read_to_string(server.data.join("ca/intermediate.pem")).unwrap();
    let chain: Vec<CertificateDer<'static>> = [leaf.as_str(), intermediate.as_str()]
        .iter()
        .map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .collect();
    let certified = rustls::sign::CertifiedKey::new(chain, Arc::new(MlDsaKey(Arc::new(key))));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.data.join("ca/root.pem")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_cert_resolver(Arc::new(Resolver(Arc::new(certified))));
    let client = common::Client::with_config(config, &server);
    let keys = client.get("/v1/keys");
    assert_eq!(keys.status, 200, "{keys:?}");
    // Its scopes are the principal's: keys:read, not keys:create.
    let create = client.post("/v1/keys", &json!({"name": "nope", "spec": "ec-p256"}));
    assert_eq!(create.status, 403, "{create:?}");
    // The audit log names the principal for both.
    let audit = admin.audit_records();
    assert!(
        audit.iter().any(|r| r["principal"] == "pq-client"
            && r["action"] == "key.create"
            && r["outcome"] == "denied"),
        "no denied key.create by pq-client"
    );
}
