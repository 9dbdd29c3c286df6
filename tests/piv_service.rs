//! `signet ca init` and `signet serve` on the virtual PIV card (`scripts/virtual-piv.sh
//! start`): the CA, server TLS, token and audit keys all on the card, a client signing over
//! mTLS with a key made on the card, openssl verifying the chain and the signature; every key
//! the card makes is attested, checked against the configured root and recorded, and a key
//! whose attestation does not chain to the configured root is refused.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{b64, text, unb64, Data, Server};
use serde_json::json;

const ENV: [(&str, &str); 3] = [
    ("SIGNET_TEST_PIV_PIN", "123456"),
    (
        "SIGNET_TEST_PIV_MGM",
        "010203040506070801020304050607080102030405060708",
    ),
    ("SIGNET_LOG", "warn,yubikey=off"),
];

fn write_config(config: &Path, data: &Data, root: &str) {
    std::fs::write(
        config,
        format!(
            "data_dir = \"{}\"\n\
             [hsm]\nbackend = \"yubikey\"\npin_env = \"SIGNET_TEST_PIV_PIN\"\n\
             management_key_env = \"SIGNET_TEST_PIV_MGM\"\nattestation_roots = [\"{root}\"]\n\
             [ca]\nroot_key_spec = \"ec-p384\"\nintermediate_key_spec = \"ec-p256\"\nserver_key_spec = \"ec-p256\"\n\
             [tokens]\nkey_spec = \"ec-p256\"\nalgorithm = \"ES256\"\n",
            data.path().display()
        ),
    )
    .unwrap();
}

fn signet(config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(common::BIN);
    cmd.arg("--config").arg(config).args(args).envs(ENV);
    cmd.output().unwrap()
}

/// The virtual card moved to vpcd's second reader (port 35964) for as long as this lives, then
/// back into the first, so the tests after this one find it where they expect it.
struct OtherReader<'a> {
    removed: &'a Path,
}

impl<'a> OtherReader<'a> {
    fn plug(removed: &'a Path) -> Self {
        let moved = OtherReader { removed };
        moved.replug(Some("35964"));
        moved
    }

    /// Pulls the card, names the reader it goes back into (none: its first), puts it back.
    fn replug(&self, port: Option<&str>) {
        let control = self.removed.parent().unwrap();
        std::fs::write(self.removed, b"").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
        match port {
            Some(port) => std::fs::write(control.join("port"), port).unwrap(),
            None => drop(std::fs::remove_file(control.join("port"))),
        }
        std::fs::remove_file(self.removed).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

impl Drop for OtherReader<'_> {
    fn drop(&mut self) {
        self.replug(None);
    }
}

/// `openssl verify` of a PEM file holding the leaf then its issuer, against `root`.
fn verify_chain(dir: &Path, root: &str, chain: &[u8]) {
    let file = dir.join("chain.pem");
    std::fs::write(&file, chain).unwrap();
    let file = file.to_str().unwrap();
    let out = common::openssl(dir, &["verify", "-CAfile", root, "-untrusted", file, file]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn ca_init_and_serve_run_on_the_card_and_a_client_signs_over_mtls() {
    let root = std::env::var("SIGNET_PIV_ROOT")
        .expect("start the virtual card first: eval \"$(scripts/virtual-piv.sh start)\"");
    let data = Data::new();
    let config = data.join("signet.toml");
    write_config(&config, &data, &root);
    let init = signet(&config, &["ca", "init", "--trust-domain", "piv.example"]);
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
    let mut server_env: Vec<(&str, &str)> = ENV.to_vec();
    server_env.push(("SIGNET_CONFIG", &conf));
    let log = data.join("server.log");
    let server = Server::start_with(data, &server_env, &[], &[], Some(&log));
    let admin = server.admin();
    let ready = admin.get("/readyz").json();
    assert_eq!(ready["hsm"]["backend"], "yubikey", "{ready}");
    let created = admin.post("/v1/keys", &json!({"name": "on-card", "spec": "ec-p256"}));
    assert_eq!(created.status, 201, "{created:?}");
    let version = created.json()["versions"][0].clone();
    let pem = version["public_key_pem"].as_str().unwrap().to_string();
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

    // The card attested the key when it made it, and the record says so.
    let attested = &version["attestation"];
    assert_eq!(attested["generated_on_device"], true, "{version}");
    assert_eq!(attested["serial"], 5437251);
    assert_eq!(attested["firmware"], "5.4.3");
    assert_eq!(attested["pin_policy"], "once");
    assert_eq!(attested["touch_policy"], "never");
    let by = attested["verified_by"].as_str().unwrap();
    assert!(by.contains("Signet Test PIV Attestation Root"), "{by}");
    // The attestation over the API verifies with openssl against the card's root.
    let attestation = admin.get("/v1/keys/on-card/attestation");
    assert_eq!(attestation.status, 200, "{attestation:?}");
    let chain = attestation.json()["chain_pem"]
        .as_str()
        .unwrap()
        .to_string();
    verify_chain(tmp.path(), &root, chain.as_bytes());

    // What the card cannot make is a clear 422.
    let ed = admin.post("/v1/keys", &json!({"name": "ed", "spec": "ed25519"}));
    assert_eq!(ed.status, 422, "{ed:?}");
    let detail = ed.json()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("ed25519") && detail.contains("ec-p256"),
        "{detail}"
    );
    // A token signed with the card's token key.
    let token = admin.post("/v1/tokens", &json!({"audience": "piv"}));
    assert_eq!(token.status, 200, "{token:?}");
    assert!(token.json()["token"].as_str().unwrap().starts_with("eyJ"));
    // The card pulled: signatures are refused (503, nothing answered unsigned) and readiness
    // says so; put back, the same server signs again without a restart.
    let removed = Path::new(&std::env::var("SIGNET_PIV_CONTROL").unwrap()).join("removed");
    std::fs::write(&removed, b"").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sign = || {
        admin.post(
            "/v1/keys/on-card/sign",
            &json!({"input": b64(msg), "algorithm": "ES256"}),
        )
    };
    let pulled = sign();
    let ready = admin.get("/readyz");
    std::fs::remove_file(&removed).unwrap();
    assert_eq!(pulled.status, 503, "{pulled:?}");
    assert!(pulled.body.contains("hsm-unavailable"), "{pulled:?}");
    assert_eq!(ready.status, 503, "{ready:?}");
    let back = sign();
    assert_eq!(back.status, 200, "{back:?}");
    // Pulled again and plugged into the other reader: PC/SC shows it there, and the same
    // server finds it by its serial and signs, still without a restart.
    let moved = OtherReader::plug(&removed);
    // Where PC/SC shows the card: (first reader, second reader), each None while pcscd does
    // not list that reader yet (it can take a few seconds on a loaded machine).
    let placement = || {
        let readers = text(&Command::new("opensc-tool").arg("-l").output().unwrap());
        let card_in = |reader: &str| {
            readers
                .lines()
                .find(|line| line.ends_with(reader))
                .map(|line| line.split_whitespace().nth(1) == Some("Yes"))
        };
        (
            (card_in("(virtual) 00 00"), card_in("(virtual) 00 01")),
            readers,
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (mut place, mut readers) = placement();
    while place != (Some(false), Some(true)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
        (place, readers) = placement();
    }
    assert_eq!(
        place,
        (Some(false), Some(true)),
        "the card is not in the second reader:\n{readers}"
    );
    let elsewhere = sign();
    assert_eq!(elsewhere.status, 200, "{elsewhere:?}");
    drop(moved);
    let data = server.stop();
    let audit = signet(&config, &["audit", "verify"]);
    assert!(audit.status.success(), "{}", text(&audit));

    // `signet key attest` prints the chain (leaf first), which openssl verifies too.
    let attest = signet(&config, &["key", "attest", "on-card"]);
    assert!(attest.status.success(), "{}", text(&attest));
    let said = String::from_utf8_lossy(&attest.stderr).to_string();
    assert!(
        said.contains("serial 5437251") && said.contains("verified against"),
        "{said}"
    );
    verify_chain(tmp.path(), &root, &attest.stdout);

    // Against another root the card's attestations do not chain: a key made there is refused
    // and not kept.
    common::openssl_self_signed(tmp.path(), "foreign", "/CN=foreign", &[]);
    write_config(
        &config,
        &data,
        tmp.path().join("foreign.pem").to_str().unwrap(),
    );
    let server = Server::start_with(data, &server_env, &[], &[], Some(&log));
    let admin = server.admin();
    let refused = admin.post("/v1/keys", &json!({"name": "untrusted", "spec": "ec-p256"}));
    assert_eq!(refused.status, 409, "{refused:?}");
    let detail = refused.json()["detail"].as_str().unwrap().to_string();
    assert!(detail.contains("attestation"), "{detail}");
    assert_eq!(admin.get("/v1/keys/untrusted").status, 404);
    drop(server.stop());
}
