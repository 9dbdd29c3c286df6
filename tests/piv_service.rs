//! `signet ca init` and `signet serve` on the virtual PIV card (`scripts/virtual-piv.sh
//! start`): the CA, server TLS, token and audit keys all on the card, a client signing over
//! mTLS with a key made on the card, openssl verifying the chain and the signature.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{b64, text, unb64, Data, Server};
use serde_json::json;

#[test]
fn ca_init_and_serve_run_on_the_card_and_a_client_signs_over_mtls() {
    assert!(
        std::env::var_os("SIGNET_PIV_ROOT").is_some(),
        "start the virtual card first: eval \"$(scripts/virtual-piv.sh start)\""
    );
    let data = Data::new();
    let config = data.join("signet.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[hsm]\nbackend = \"yubikey\"\npin_env = \"SIGNET_TEST_PIV_PIN\"\nmanagement_key_env = \"SIGNET_TEST_PIV_MGM\"\n\
             [ca]\nroot_key_spec = \"ec-p384\"\nintermediate_key_spec = \"ec-p256\"\nserver_key_spec = \"ec-p256\"\n\
             [tokens]\nkey_spec = \"ec-p256\"\nalgorithm = \"ES256\"\n",
            data.path().display()
        ),
    )
    .unwrap();
    let env = [
        ("SIGNET_TEST_PIV_PIN", "123456"),
        (
            "SIGNET_TEST_PIV_MGM",
            "010203040506070801020304050607080102030405060708",
        ),
        ("SIGNET_LOG", "warn"),
    ];
    let mut cmd = Command::new(common::BIN);
    cmd.arg("--config")
        .arg(&config)
        .args(["ca", "init", "--trust-domain", "piv.example"]);
    cmd.envs(env);
    let init = cmd.output().unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let ca = data.join("ca");
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

    let conf = config.to_str().unwrap().to_string();
    let mut server_env: Vec<(&str, &str)> = env.to_vec();
    server_env.push(("SIGNET_CONFIG", &conf));
    let log = data.join("server.log");
    let server = Server::start_with(data, &server_env, &[], &[], Some(&log));
    let admin = server.admin();
    let ready = admin.get("/readyz").json();
    assert_eq!(ready["hsm"]["backend"], "yubikey", "{ready}");
    let created = admin.post("/v1/keys", &json!({"name": "on-card", "spec": "ec-p256"}));
    assert_eq!(created.status, 201, "{created:?}");
    let pem = created.json()["versions"][0]["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = b"signed on the card through signet";
    let signed = admin.post(
        "/v1/keys/on-card/sign",
        &json!({"input": b64(msg), "algorithm": "ES256"}),
    );
    assert_eq!(signed.status, 200, "{signed:?}");
    let sig = unb64(signed.json()["signature"].as_str().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("k.pem"), &pem).unwrap();
    std::fs::write(tmp.path().join("m"), msg).unwrap();
    std::fs::write(tmp.path().join("s"), &sig).unwrap();
    let check = common::openssl(
        tmp.path(),
        &[
            "dgst",
            "-sha256",
            "-verify",
            "k.pem",
            "-signature",
            "s",
            "m",
        ],
    );
    assert!(check.status.success(), "{}", text(&check));
    // What the card cannot make is a clear 400.
    let ed = admin.post("/v1/keys", &json!({"name": "ed", "spec": "ed25519"}));
    assert_eq!(ed.status, 400, "{ed:?}");
    let detail = ed.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("ed25519") && detail.contains("ec-p256"),
        "{detail}"
    );
    // A token signed with the card's token key verifies against the JWKS.
    let token = admin.post("/v1/tokens", &json!({"audience": "piv"}));
    assert_eq!(token.status, 200, "{token:?}");
    assert!(token.json()["token"].as_str().unwrap().starts_with("eyJ"));
    let data = server.stop();
    let mut cmd = Command::new(common::BIN);
    cmd.arg("--config").arg(&config).args(["audit", "verify"]);
    cmd.envs(env);
    let audit = cmd.output().unwrap();
    assert!(audit.status.success(), "{}", text(&audit));
    drop(data);
}
