//! The service on whichever token `SIGNET_TEST_TOKEN` names (SoftHSM2, kryoptic, or the remote
//! p11-kit token): `ca init` through a configured module, `serve`, and signatures over mTLS that
//! openssl verifies; what the token cannot do is refused with a clear problem.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::configured::Configured;
use common::{b64, text, unb64};
use serde_json::json;

#[test]
fn ca_init_serve_and_sign_over_mtls_on_the_configured_token() {
    let mut configured = Configured::init("");
    let ca = configured.data().join("ca");
    let verify = common::openssl(
        &ca,
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "server.pem",
        ],
    );
    assert!(verify.status.success(), "{}", text(&verify));

    configured.serve();
    let (server, token) = (configured.server(), &configured.token);
    let admin = server.admin();
    let tmp = tempfile::tempdir().unwrap();
    let msg = b"signed on the configured token";
    for (spec, alg, digest) in [
        ("ec-p256", "ES256", "-sha256"),
        ("rsa-2048", "RS256", "-sha256"),
    ] {
        let name = token.unique(&format!("smoke-{spec}"));
        let created = admin.post("/v1/keys", &json!({"name": name, "spec": spec}));
        assert_eq!(created.status, 201, "{}: {created:?}", token.kind.name());
        let pem = created.json()["versions"][0]["public_key_pem"]
            .as_str()
            .unwrap()
            .to_string();
        // curl, an independent client, signs over mTLS; openssl checks the signature.
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
            .args([
                "--json",
                &json!({"input": b64(msg), "algorithm": alg}).to_string(),
            ])
            .arg(server.url(&format!("/v1/keys/{name}/sign")))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let sig = unb64(reply["signature"].as_str().unwrap());
        std::fs::write(tmp.path().join("k.pem"), &pem).unwrap();
        std::fs::write(tmp.path().join("m"), msg).unwrap();
        std::fs::write(tmp.path().join("s"), &sig).unwrap();
        let check = common::openssl(
            tmp.path(),
            &["dgst", digest, "-verify", "k.pem", "-signature", "s", "m"],
        );
        assert!(
            check.status.success(),
            "{} {alg}: {}",
            token.kind.name(),
            text(&check)
        );
    }
    // What the token cannot make is a clear 422 that lists what it can.
    let ready = admin.get("/readyz").json();
    assert_eq!(ready["hsm"]["token"], token.label.as_str());
    let name = token.unique("smoke-ed");
    let ed = admin.post("/v1/keys", &json!({"name": name, "spec": "ed25519"}));
    match ed.status {
        201 => {}
        422 => {
            let detail = ed.json()["detail"].as_str().unwrap().to_string();
            assert!(
                detail.contains("does not support ed25519") && detail.contains("ec-p256"),
                "{detail}"
            );
            assert!(!detail.contains("CKR_"), "a raw return code: {detail}");
        }
        _ => panic!("{}: {ed:?}", token.kind.name()),
    }
    configured.stop();
    let out = configured.run(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}
