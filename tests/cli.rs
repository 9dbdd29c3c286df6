//! The CLI on a fresh data directory, against the real embedded SoftHSM2 token, checked with
//! openssl and pkcs11-tool (OpenSC) as independent tools.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{openssl, text, Data};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn key_round_trip_verifies_with_openssl() {
    let data = Data::new();
    let dir = data.path();
    std::fs::write(dir.join("msg"), b"sign me, please").unwrap();
    for (name, spec, alg, dgst) in [
        ("ec", "ec-p256", "ES256", Some("-sha256")),
        ("ec384", "ec-p384", "ES384", Some("-sha384")),
        ("rsa", "rsa-2048", "PS256", Some("-sha256")),
        ("rsa1", "rsa-2048", "RS512", Some("-sha512")),
        ("ed", "ed25519", "EdDSA", None),
    ] {
        let out = data.ok(&["key", "create", name, "--spec", spec]);
        assert!(out.contains(spec), "{out}");
        let pem = data.ok(&["key", "public", name]);
        std::fs::write(dir.join(format!("{name}.pem")), &pem).unwrap();
        let sig = dir.join(format!("{name}.sig"));
        data.ok(&[
            "key",
            "sign",
            name,
            "--alg",
            alg,
            "--in",
            dir.join("msg").to_str().unwrap(),
            "--out",
            sig.to_str().unwrap(),
        ]);
        let pem_s = format!("{name}.pem");
        let sig_s = format!("{name}.sig");
        let out = match dgst {
            Some(d) => {
                let mut args = vec!["dgst", d, "-verify", &pem_s, "-signature", &sig_s];
                if alg.starts_with("PS") {
                    args.extend([
                        "-sigopt",
                        "rsa_padding_mode:pss",
                        "-sigopt",
                        "rsa_pss_saltlen:digest",
                    ]);
                }
                args.push("msg");
                openssl(dir, &args)
            }
            None => openssl(
                dir,
                &[
                    "pkeyutl", "-verify", "-pubin", "-inkey", &pem_s, "-rawin", "-in", "msg",
                    "-sigfile", &sig_s,
                ],
            ),
        };
        assert!(out.status.success(), "{name} {alg}: {}", text(&out));
    }
    // base64 to stdout, raw ECDSA, and a precomputed digest.
    let sig = data.ok(&[
        "key",
        "sign",
        "ec",
        "--in",
        dir.join("msg").to_str().unwrap(),
        "--raw",
    ]);
    assert_eq!(common::unb64(sig.trim()).len(), 64);
    let digest = openssl(
        dir,
        &["dgst", "-sha256", "-binary", "-out", "msg.sha256", "msg"],
    );
    assert!(digest.status.success());
    data.ok(&[
        "key",
        "sign",
        "ec",
        "--alg",
        "ES256",
        "--digest",
        "--in",
        dir.join("msg.sha256").to_str().unwrap(),
        "--out",
        dir.join("d.sig").to_str().unwrap(),
    ]);
    let out = openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "ec.pem",
            "-signature",
            "d.sig",
            "msg",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    let list = data.ok(&["key", "list"]);
    for name in ["ec", "ec384", "rsa", "ed"] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{list}");
    }
    let jwk: serde_json::Value =
        serde_json::from_str(&data.ok(&["key", "public", "ed", "--format", "jwk"])).unwrap();
    assert_eq!(jwk["kty"], "OKP");
    assert!(jwk["kid"].as_str().unwrap().len() >= 43);

    // The embedded default's secrets are private to the owner.
    assert_eq!(mode(&data.join("pin")), 0o600);
    assert_eq!(mode(&data.join("so-pin")), 0o600);
    assert_eq!(mode(data.path()), 0o700);

    data.ok(&["key", "delete", "ec"]);
    let out = data.signet(&[
        "key",
        "sign",
        "ec",
        "--in",
        dir.join("msg").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no key named \"ec\""), "{}", text(&out));
}

#[test]
fn cli_bad_input_is_a_clear_error() {
    let data = Data::new();
    data.ok(&["key", "create", "k", "--spec", "ec-p256"]);
    std::fs::write(data.join("msg"), b"x").unwrap();
    let msg = data.join("msg");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["key", "create", "bad", "--spec", "rsa-1024"],
            "unknown key spec",
        ),
        (
            vec!["key", "create", "k", "--spec", "ec-p256"],
            "already exists",
        ),
        (
            vec!["key", "create", "../evil", "--spec", "ec-p256"],
            "must be 1-64",
        ),
        (
            vec![
                "key",
                "sign",
                "k",
                "--alg",
                "RS256",
                "--in",
                msg.to_str().unwrap(),
            ],
            "does not fit",
        ),
        (
            vec![
                "key",
                "sign",
                "k",
                "--alg",
                "HS256",
                "--in",
                msg.to_str().unwrap(),
            ],
            "unknown signature algorithm",
        ),
        (
            vec![
                "key",
                "sign",
                "k",
                "--digest",
                "--in",
                msg.to_str().unwrap(),
            ],
            "32-byte digest",
        ),
        (
            vec!["key", "sign", "nope", "--in", msg.to_str().unwrap()],
            "no key named",
        ),
        (
            vec!["key", "sign", "k", "--in", "/nonexistent/file"],
            "reading /nonexistent/file",
        ),
    ];
    for (args, expected) in cases {
        let out = data.signet(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let t = text(&out);
        assert!(
            t.contains(expected),
            "{args:?}: expected {expected:?} in {t}"
        );
        assert!(!t.contains("panicked"), "{t}");
    }
    std::fs::write(data.join("empty"), b"").unwrap();
    let out = data.signet(&[
        "key",
        "sign",
        "k",
        "--in",
        data.join("empty").to_str().unwrap(),
    ]);
    assert!(text(&out).contains("empty"), "{}", text(&out));
}

#[test]
fn configured_module_with_pin_file_and_bad_pin() {
    // A token made outside Signet (as an operator would), reached through --config.
    let data = Data::new();
    let conf_dir = data.join("hsm");
    std::fs::create_dir_all(conf_dir.join("tokens")).unwrap();
    let conf = conf_dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            conf_dir.join("tokens").display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "ops",
            "--so-pin",
            "5678",
            "--pin",
            "1234",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    let module = signet_softhsm::find_module().unwrap();
    common::write_secret(&data.join("pin.txt"), "1234\n");
    let config = data.join("signet.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[hsm]\nmodule = \"{}\"\ntoken_label = \"ops\"\npin_file = \"{}\"\n",
            data.join("state").display(),
            module.display(),
            data.join("pin.txt").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        // From inside the temporary directory: a relative default never reads the checkout.
        Command::new(common::BIN)
            .current_dir(data.path())
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .env("SIGNET_LOG", "warn,cryptoki=off")
            .output()
            .unwrap()
    };
    // The store's directory, made by the operator (as systemd's StateDirectory= does).
    std::fs::create_dir_all(data.join("state")).unwrap();
    let out = run(&["config", "check"]);
    assert!(
        out.status.success() && text(&out).contains("token \"ops\""),
        "{}",
        text(&out)
    );
    // A PIN file that group or others can read is refused, as ssh refuses such a key.
    std::fs::set_permissions(data.join("pin.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&["key", "create", "early"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("chmod 600") && !t.contains("1234"),
        "{t}"
    );
    std::fs::set_permissions(data.join("pin.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run(&["key", "create", "opskey", "--spec", "ec-p384"]);
    assert!(out.status.success(), "{}", text(&out));
    // The service's own key names are reserved, for creation and import alike.
    let out = run(&["key", "create", "token-signer"]);
    assert!(
        !out.status.success() && text(&out).contains("reserved"),
        "{}",
        text(&out)
    );

    // pkcs11-tool, an independent PKCS#11 client, sees the key as sensitive and never extractable.
    let t = common::pkcs11_list(&conf, "ops", "1234", Some("privkey"));
    assert!(t.contains("signet:key:opskey:v1"), "{t}");
    assert!(
        t.contains("sensitive") && t.contains("never extractable"),
        "{t}"
    );
    assert!(
        !t.to_lowercase().contains("decrypt"),
        "signing keys must not decrypt: {t}"
    );

    // A wrong PIN: a clear error, and nothing changed.
    common::write_secret(&data.join("pin.txt"), "9999\n");
    let out = run(&["key", "list"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("incorrect PIN") && !t.contains("9999"), "{t}");
    common::write_secret(&data.join("pin.txt"), "1234\n");
    let out = run(&["key", "list"]);
    assert!(
        out.status.success() && text(&out).contains("opskey"),
        "{}",
        text(&out)
    );

    // A missing module.
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[hsm]\nmodule = \"/nonexistent/libpkcs11.so\"\npin_file = \"{}\"\n",
            data.join("state").display(),
            data.join("pin.txt").display()
        ),
    )
    .unwrap();
    let out = run(&["key", "list"]);
    assert!(
        !out.status.success()
            && text(&out).contains("cannot load PKCS#11 module /nonexistent/libpkcs11.so"),
        "{}",
        text(&out)
    );
}

#[test]
fn ca_init_builds_a_chain_openssl_accepts() {
    let data = Data::new();
    let out = data.ok(&[
        "ca",
        "init",
        "--trust-domain",
        "corp.example",
        "--server-dns",
        "signet.corp.example",
        "--server-ip",
        "10.1.2.3",
        "--admin",
        "root-admin",
    ]);
    assert!(out.contains("total"), "{out}");
    let ca = data.join("ca");
    for leaf in ["server.pem", "../clients/root-admin.crt.pem"] {
        let out = openssl(
            &ca,
            &[
                "verify",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "intermediate.pem",
                leaf,
            ],
        );
        assert!(out.status.success(), "{leaf}: {}", text(&out));
    }
    let server = openssl(&ca, &["x509", "-in", "server.pem", "-noout", "-text"]);
    let t = text(&server);
    assert!(
        t.contains("DNS:signet.corp.example")
            && t.contains("IP Address:10.1.2.3")
            && t.contains("TLS Web Server Authentication"),
        "{t}"
    );
    let client = openssl(
        &ca,
        &[
            "x509",
            "-in",
            "../clients/root-admin.crt.pem",
            "-noout",
            "-text",
        ],
    );
    assert!(
        text(&client).contains("URI:spiffe://corp.example/root-admin"),
        "{}",
        text(&client)
    );
    let chain = std::fs::read_to_string(ca.join("chain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);

    let clients = data.join("clients");
    for secret in [
        "root-admin.p12",
        "root-admin.p12.pass",
        "root-admin.key.pem",
    ] {
        assert_eq!(mode(&clients.join(secret)), 0o600, "{secret}");
    }
    let pass = std::fs::read_to_string(clients.join("root-admin.p12.pass")).unwrap();
    let out = openssl(
        &clients,
        &[
            "pkcs12",
            "-info",
            "-in",
            "root-admin.p12",
            "-noenc",
            "-passin",
            &format!("pass:{pass}"),
        ],
    );
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("AES-256-CBC") && t.contains("MAC: sha256"),
        "{t}"
    );

    let show = data.ok(&["ca", "show"]);
    for needle in [
        "Root CA",
        "Intermediate CA",
        "sha256",
        "ec-p384",
        "in the token",
    ] {
        assert!(show.contains(needle), "{needle} missing from {show}");
    }

    // Every CA key (and the server's) is in the token and never extractable, per pkcs11-tool.
    let t = common::embedded_objects(&data, Some("privkey"));
    for role in [
        "signet:ca:root:",
        "signet:ca:intermediate:",
        "signet:ca:server-tls:",
    ] {
        let block = t
            .split("Private Key Object")
            .find(|b| b.contains(role))
            .unwrap_or_else(|| panic!("{role} not in token: {t}"));
        assert!(
            block.contains("never extractable") && block.contains("sensitive"),
            "{block}"
        );
    }
}

#[test]
fn ca_init_twice_refuses_and_changes_nothing() {
    let data = Data::new();
    data.ok(&["ca", "init"]);
    let root_before = std::fs::read(data.join("ca/root.pem")).unwrap();
    let certs_before = data.ok(&["cert", "list"]);
    let out = data.signet(&["ca", "init"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("a CA already exists") && text(&out).contains("--force"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(data.join("ca/root.pem")).unwrap(),
        root_before
    );
    assert_eq!(data.ok(&["cert", "list"]), certs_before);
    // --force replaces it.
    data.ok(&["ca", "init", "--force"]);
    assert_ne!(
        std::fs::read(data.join("ca/root.pem")).unwrap(),
        root_before
    );
}

#[test]
fn cert_issue_revoke_and_crl() {
    let data = Data::new();
    data.ok(&["ca", "init"]);
    let dir = data.path();
    let (_key, _csr) =
        common::openssl_csr(dir, "svc", &["-addext", "subjectAltName=DNS:svc.internal"]);
    let out = data.signet(&[
        "cert",
        "issue",
        "--profile",
        "server",
        "--name",
        "svc.internal",
        "--csr",
        dir.join("svc.csr").to_str().unwrap(),
        "--out",
        dir.join("svc.pem").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let out = openssl(
        dir,
        &["verify", "-CAfile", "signet-data-ignored", "svc.pem"],
    );
    assert!(!out.status.success()); // sanity: a bad CA file fails
    let ca = data.join("ca");
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            ca.join("root.pem").to_str().unwrap(),
            "-untrusted",
            ca.join("intermediate.pem").to_str().unwrap(),
            "svc.pem",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // A CSR asking for more than it is granted is refused, clearly.
    common::openssl_csr(
        dir,
        "greedy",
        &[
            "-addext",
            "subjectAltName=DNS:svc.internal,DNS:bank.example",
        ],
    );
    let out = data.signet(&[
        "cert",
        "issue",
        "--profile",
        "server",
        "--name",
        "svc.internal",
        "--csr",
        dir.join("greedy.csr").to_str().unwrap(),
    ]);
    assert!(
        !out.status.success() && text(&out).contains("bank.example"),
        "{}",
        text(&out)
    );

    // A bundle for a new client (a principal first: a certificate names one).
    data.ok(&["principal", "create", "worker", "--scope", "keys:read"]);
    let out = data.ok(&[
        "cert",
        "issue",
        "--profile",
        "client",
        "--name",
        "worker",
        "--p12",
        dir.join("worker.p12").to_str().unwrap(),
    ]);
    let serial = out.split_whitespace().nth(2).unwrap().to_string();
    assert_eq!(serial.len(), 32, "{out}");
    assert!(dir.join("worker.p12.pass").exists());

    let out = data.ok(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    assert!(out.contains("revoked"), "{out}");
    let list = data.ok(&["cert", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&serial) && l.contains("revoked")),
        "{list}"
    );
    data.ok(&["crl", "--out", dir.join("crl.pem").to_str().unwrap()]);
    let out = openssl(
        dir,
        &[
            "crl",
            "-in",
            "crl.pem",
            "-CAfile",
            ca.join("chain.pem").to_str().unwrap(),
            "-verify",
            "-noout",
            "-text",
        ],
    );
    let t = text(&out);
    assert!(out.status.success() && t.contains("verify OK"), "{t}");
    assert!(t.to_lowercase().contains(&serial), "{t}");
    // The CRL on disk was regenerated by the revocation too.
    let on_disk = std::fs::read_to_string(ca.join("crl.pem")).unwrap();
    assert!(on_disk.contains("BEGIN X509 CRL"));
    let out = data.signet(&["cert", "revoke", &serial]);
    assert!(!out.status.success() && text(&out).contains("already revoked"));
    let out = data.signet(&["cert", "revoke", &serial[..30], "--reason", "bored"]);
    assert!(
        !out.status.success() && text(&out).contains("unknown revocation reason"),
        "{}",
        text(&out)
    );
}

#[test]
fn bootstrap_script_is_idempotent_on_an_operator_token() {
    let data = Data::new();
    let hsm = data.join("hsm");
    std::fs::create_dir_all(hsm.join("tokens")).unwrap();
    let conf = hsm.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            hsm.join("tokens").display()
        ),
    )
    .unwrap();
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "ca-token",
            "--so-pin",
            "87654321",
            "--pin",
            "24682468",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", text(&init));
    common::write_secret(&data.join("pin"), "24682468\n");
    let module = signet_softhsm::find_module().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bootstrap-ca.sh");
    let run = || {
        Command::new("bash")
            .arg(script)
            .args([
                "--module",
                module.to_str().unwrap(),
                "--token-label",
                "ca-token",
            ])
            .args([
                "--pin-file",
                data.join("pin").to_str().unwrap(),
                "--data-dir",
                data.join("state").to_str().unwrap(),
            ])
            .args([
                "--trust-domain",
                "ops.example",
                "--server-dns",
                "signet.ops.example",
            ])
            .env("SIGNET_BIN", common::BIN)
            .env("SOFTHSM2_CONF", &conf)
            .env("SIGNET_LOG", "warn,cryptoki=off")
            .output()
            .unwrap()
    };
    let first = run();
    let t = text(&first);
    assert!(first.status.success(), "{t}");
    assert!(
        t.contains("root CA") && t.contains("wrote") && t.contains("signet.ops.example"),
        "{t}"
    );
    let root = std::fs::read(data.join("state/ca/root.pem")).unwrap();
    let second = run();
    let t = text(&second);
    assert!(
        second.status.success() && t.contains("a CA already exists; nothing changed"),
        "{t}"
    );
    assert_eq!(std::fs::read(data.join("state/ca/root.pem")).unwrap(), root);
    let ca = data.join("state/ca");
    let out = openssl(
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
    assert!(out.status.success(), "{}", text(&out));
    // The script refuses clearly without its arguments.
    let out = Command::new("bash")
        .arg(script)
        .env_remove("SIGNET_HSM_MODULE")
        .output()
        .unwrap();
    assert!(
        !out.status.success() && text(&out).contains("--module is required"),
        "{}",
        text(&out)
    );
}

/// `signet status` reports the token, store, CA validity, CRL and audit checkpoint, offline and
/// as JSON; a running server answers the same document at GET /v1/status.
#[test]
fn status_reports_what_an_operator_needs() {
    let data = Data::new();
    // Inspecting writes nothing: on an empty data directory it says so and creates nothing.
    let before = data.signet(&["status"]);
    assert!(!before.status.success());
    assert!(
        text(&before).contains("nothing to inspect"),
        "{}",
        text(&before)
    );
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
    data.ok(&["ca", "init"]);
    let out = data.ok(&["status"]);
    for expected in [
        "backend       pkcs11",
        "token         signet",
        "store         sled",
        "not probed",
        "days left",
        "crl           number 1",
        "next update",
        "anchored in the token",
    ] {
        assert!(out.contains(expected), "{expected:?} missing from:\n{out}");
    }
    let doc: serde_json::Value = serde_json::from_str(&data.ok(&["status", "--json"])).unwrap();
    // Whole days: 90 just after issue, 89 once a second has passed.
    for (role, days) in [("root", 3650), ("intermediate", 1825), ("server", 90)] {
        let left = doc["ca"][role]["days_left"].as_i64().unwrap();
        assert!(left == days || left == days - 1, "{role}: {left} {doc}");
    }
    assert_eq!(out.matches("days left").count(), 3, "{out}");
    // The offline status makes no probe write; the server's does.
    assert_eq!(doc["store"]["probed"], false);
    assert!(doc["audit"]["head_seq"].as_u64().unwrap() > 0);
    assert!(doc["backend"]["specs"]
        .as_array()
        .unwrap()
        .contains(&"ec-p256".into()));

    let server = common::Server::start_in(data, &[]);
    let live = server.admin().get("/v1/status");
    assert_eq!(live.status, 200, "{live:?}");
    let live = live.json();
    assert_eq!(live["store"]["writable"], true);
    assert_eq!(live["ca"]["root"]["serial"], doc["ca"]["root"]["serial"]);
    assert!(
        live["audit"]["head_seq"].as_u64().unwrap() >= doc["audit"]["head_seq"].as_u64().unwrap()
    );
    server.stop();
}

/// Long work shows a spinner on a terminal (run under `script`, a real pty) and nothing when
/// the output is not a terminal.
#[test]
fn progress_is_shown_on_a_terminal_only() {
    let data = Data::new();
    let piped = data.signet(&["key", "create", "quiet", "--spec", "rsa-2048"]);
    assert!(piped.status.success(), "{}", text(&piped));
    let t = text(&piped);
    assert!(!t.contains("generating") && !t.contains('\u{1b}'), "{t:?}");

    let bin = env!("CARGO_BIN_EXE_signet");
    let command = format!(
        "{bin} --data-dir {} key create loud --spec rsa-2048",
        data.path().display()
    );
    let tty = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("SIGNET_LOG", "warn,cryptoki=off")
        .output()
        .unwrap();
    let t = text(&tty);
    assert!(tty.status.success(), "{t}");
    assert!(
        t.contains("generating rsa-2048 key loud in the token"),
        "{t:?}"
    );
    assert!(t.contains("created loud (rsa-2048)"), "{t:?}");
}

/// The shipped systemd unit passes `systemd-analyze verify` without a warning, and the server
/// runs as an unprivileged user of its own, keeping its data directory 0700.
#[test]
fn the_systemd_unit_verifies_and_the_server_runs_unprivileged() {
    let work = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/signet.service"
    ))
    .unwrap()
    .replace("/usr/local/bin/signet", env!("CARGO_BIN_EXE_signet"));
    let path = work.path().join("signet.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        out.stderr.is_empty() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );

    // As `nobody` (uid 65534), the way the unit runs it as `signet`.
    let data = Data::new();
    std::os::unix::fs::chown(data.path(), Some(65534), Some(65534)).unwrap();
    let server = common::Server::start_with(
        data,
        &[],
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &[],
        None,
    );
    assert_eq!(server.admin().get("/healthz").status, 200);
    let meta = |p: &str| std::fs::metadata(server.data.join(p)).unwrap();
    use std::os::unix::fs::MetadataExt;
    for dir in ["softhsm", "db", "audit", "clients", "pin"] {
        assert_eq!(
            meta(dir).uid(),
            65534,
            "{dir} not owned by the service user"
        );
    }
    assert_eq!(
        std::fs::metadata(server.data.path()).unwrap().mode() & 0o777,
        0o700
    );
    for private in ["softhsm", "db", "audit", "clients"] {
        assert_eq!(
            meta(private).mode() & 0o077,
            0,
            "{private} is open to others"
        );
    }
    assert_eq!(meta("pin").mode() & 0o777, 0o600);
    server.stop();
}

/// A token named by a PKCS#11 URI (RFC 7512): the URI GnuTLS's p11tool prints for a token made
/// outside Signet, completed with module-path and pin-source, works as `--hsm-uri` and as
/// `hsm.uri`; one that matches no token, or carries a PIN, is refused clearly.
#[test]
fn a_token_named_by_the_uri_p11tool_prints() {
    let data = Data::new();
    let conf_dir = data.join("hsm");
    std::fs::create_dir_all(conf_dir.join("tokens")).unwrap();
    let conf = conf_dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            conf_dir.join("tokens").display()
        ),
    )
    .unwrap();
    for label in ["decoy", "ops team"] {
        let init = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", "5678", "--pin", "1234"])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        assert!(init.status.success(), "{}", text(&init));
    }
    let module = signet_softhsm::find_module().unwrap();
    let listed = Command::new("p11tool")
        .args(["--provider", module.to_str().unwrap(), "--list-tokens"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    let listing = text(&listed);
    let url = listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("URL: "))
        .find(|u| u.contains("token=ops%20team"))
        .unwrap_or_else(|| panic!("{listing}"))
        .to_string();
    common::write_secret(&data.join("pin.txt"), "1234\n");
    let uri = format!(
        "{url}?module-path={}&pin-source=file:{}",
        module.display(),
        data.join("pin.txt").display()
    );
    let run = |args: &[&str], config: Option<&std::path::Path>| {
        let mut cmd = Command::new(common::BIN);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        cmd.arg("--data-dir")
            .arg(data.join("state"))
            .args(args)
            .env("SOFTHSM2_CONF", &conf)
            .env("SIGNET_LOG", "warn,cryptoki=off")
            .env_remove("SIGNET_CONFIG")
            .output()
            .unwrap()
    };
    // No data directory yet: refused, nothing made (only serve and ca init make one) …
    let out = run(&["--hsm-uri", &uri, "key", "create", "by-uri"], None);
    assert!(
        !out.status.success() && text(&out).contains("no Signet data directory"),
        "{}",
        text(&out)
    );
    assert!(!data.join("state").exists());
    // … until the operator makes it.
    std::fs::create_dir_all(data.join("state")).unwrap();
    let out = run(&["--hsm-uri", &uri, "key", "create", "by-uri"], None);
    assert!(out.status.success(), "{}", text(&out));
    // It went to the token the URI names, not the decoy.
    assert!(
        common::pkcs11_list(&conf, "ops team", "1234", Some("privkey"))
            .contains("signet:key:by-uri")
    );
    assert!(!common::pkcs11_list(&conf, "decoy", "1234", Some("privkey")).contains("by-uri"));
    // The same in a configuration file; status prints the token's URI back.
    let config = data.join("signet.toml");
    std::fs::write(&config, format!("[hsm]\nuri = \"{uri}\"\n")).unwrap();
    let out = run(&["status"], Some(&config));
    assert!(out.status.success(), "{}", text(&out));
    let status = text(&out);
    let printed = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("uri"))
        .unwrap_or_else(|| panic!("{status}"))
        .trim();
    assert_eq!(
        signet_hsm::Pkcs11Uri::parse(printed).unwrap(),
        signet_hsm::Pkcs11Uri::parse(&url).unwrap()
    );

    for (bad, why) in [
        (
            url.replace("ops%20team", "nobody"),
            "no PKCS#11 token matching",
        ),
        (format!("{uri}&pin-value=1234"), "would put the PIN"),
        (
            url.replace("pkcs11:", "pkcs11:object=k;"),
            "names a key object",
        ),
    ] {
        let bad = if bad.contains('?') {
            bad
        } else {
            format!(
                "{bad}?module-path={}&pin-source=file:{}",
                module.display(),
                data.join("pin.txt").display()
            )
        };
        let out = run(&["--hsm-uri", &bad, "key", "list"], None);
        let t = text(&out);
        assert!(!out.status.success(), "{bad}: {t}");
        assert!(t.contains(why), "{bad}: expected {why:?} in {t}");
        assert!(!t.contains("1234"), "the PIN in an error: {t}");
    }
}

/// The break-glass recovery in the README, with the server stopped and only the host's data
/// directory and token PIN: restore an admin principal and issue its bundle, then use it
/// with curl. The principal commands work offline and are audited as the operator.
#[test]
fn break_glass_recovery_restores_an_admin_from_the_host() {
    let server = common::Server::start();
    let data = server.stop();
    // The admin bundle is lost.
    for f in [
        "admin.p12",
        "admin.p12.pass",
        "admin.crt.pem",
        "admin.key.pem",
    ] {
        let _ = std::fs::remove_file(data.join("clients").join(f));
    }
    data.ok(&["principal", "create", "rescue", "--scope", "admin"]);
    let shown = data.ok(&["principal", "show", "rescue"]);
    assert!(shown.contains("admin"), "{shown}");
    let dir = data.join("clients");
    let p12 = dir.join("rescue.p12");
    data.ok(&[
        "cert",
        "issue",
        "--profile",
        "client",
        "--name",
        "rescue",
        "--p12",
        p12.to_str().unwrap(),
    ]);
    // OpenSSL 3 opens the bundle without -legacy.
    let out = openssl(
        &dir,
        &[
            "pkcs12",
            "-in",
            "rescue.p12",
            "-passin",
            "file:rescue.p12.pass",
            "-nodes",
            "-out",
            "rescue.pem",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let server = common::Server::start_in(data, &[]);
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(server.data.join("ca/root.pem"))
        .arg("--cert")
        .arg(server.data.join("clients/rescue.pem"))
        .arg(server.url("/v1/principals"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        text(&out)
    );
    // Listing is offline too (the server must be stopped for sled).
    let data = server.stop();
    let log = std::fs::read_to_string(data.join("audit/audit.log")).unwrap();
    assert!(log.lines().any(|l| {
        let r: serde_json::Value = serde_json::from_str(l).unwrap();
        r["action"] == "principal.create"
            && r["target"] == "rescue"
            && r["principal"].as_str().unwrap().starts_with("cli:")
    }));
    let list = data.ok(&["principal", "list"]);
    assert!(list.contains("rescue") && list.contains("admin"), "{list}");
}

/// `openssl verify -crl_check_all` checks every level: the leaf against the intermediate's
/// CRL and the intermediate against the root's (the ARL), which the root key signs in the
/// token. Both come from `signet crl` (and `GET /v1/ca/crl`, `/v1/ca/arl`).
#[test]
fn every_level_has_a_crl_that_openssl_checks() {
    let data = Data::new();
    data.ok(&["ca", "init"]);
    let dir = data.path();
    common::openssl_csr(dir, "svc", &["-addext", "subjectAltName=DNS:svc.internal"]);
    data.ok(&[
        "cert",
        "issue",
        "--profile",
        "server",
        "--name",
        "svc.internal",
        "--csr",
        dir.join("svc.csr").to_str().unwrap(),
        "--out",
        dir.join("svc.pem").to_str().unwrap(),
    ]);
    let ca = data.join("ca");
    // Written by `ca init`, beside the CRL.
    assert!(std::fs::read_to_string(ca.join("root-crl.pem"))
        .unwrap()
        .contains("BEGIN X509 CRL"));
    data.ok(&["crl", "--out", dir.join("crl.pem").to_str().unwrap()]);
    data.ok(&[
        "crl",
        "--root",
        "--out",
        dir.join("arl.pem").to_str().unwrap(),
    ]);
    let verify = |crls: &[&str]| {
        let mut args = vec![
            "verify",
            "-crl_check_all",
            "-CAfile",
            ca.join("root.pem").to_str().unwrap(),
            "-untrusted",
            ca.join("intermediate.pem").to_str().unwrap(),
        ]
        .into_iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
        for crl in crls {
            args.push("-CRLfile".into());
            args.push(crl.to_string());
        }
        args.push("svc.pem".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        openssl(dir, &args)
    };
    let out = verify(&["crl.pem", "arl.pem"]);
    assert!(out.status.success(), "{}", text(&out));
    // Without the root's CRL the intermediate cannot be checked: what relying parties met.
    let out = verify(&["crl.pem"]);
    assert!(
        !out.status.success() && text(&out).contains("unable to get certificate CRL"),
        "{}",
        text(&out)
    );
    // The ARL is the root's: signed by it, and it verifies against the root alone.
    let out = openssl(
        dir,
        &[
            "crl",
            "-in",
            "arl.pem",
            "-CAfile",
            ca.join("root.pem").to_str().unwrap(),
            "-verify",
            "-noout",
            "-issuer",
        ],
    );
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("verify OK") && t.contains("Root CA"),
        "{t}"
    );
    // Revoked: the leaf fails at its own level, with both CRLs present.
    let list = data.ok(&["cert", "list"]);
    let serial = list
        .lines()
        .find(|l| l.contains("svc.internal"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    data.ok(&["cert", "revoke", &serial]);
    data.ok(&["crl", "--out", dir.join("crl.pem").to_str().unwrap()]);
    let out = verify(&["crl.pem", "arl.pem"]);
    assert!(
        !out.status.success() && text(&out).contains("certificate revoked"),
        "{}",
        text(&out)
    );

    // Over the API, as a relying party with a client certificate fetches them.
    let server = common::Server::start_in(data, &[]);
    let admin = server.admin();
    for path in ["/v1/ca/crl", "/v1/ca/arl"] {
        let reply = admin.get(path);
        assert_eq!(
            (reply.status, reply.content_type.as_str()),
            (200, "application/pkix-crl"),
            "{path}"
        );
    }
}

/// `signet ca show | head -1`: a reader that goes away ends the command as it ends `cat`
/// (status 141, nothing on stderr), not with a panic (status 101).
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let data = Data::new();
    data.ok(&["ca", "init"]);
    for args in [
        &["ca", "show"][..],
        &["cert", "list"][..],
        &["config", "check"][..],
    ] {
        let mut child = Command::new(common::BIN)
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the command writes anything.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// The first-hour path `signet --help` prints works as printed, step by step, offline.
#[test]
fn the_first_hour_path_in_the_help_works_as_printed() {
    let help = Command::new(common::BIN).arg("--help").output().unwrap();
    let help = text(&help);
    let steps: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("First hour"))
        .filter_map(|l| l.trim().strip_prefix("signet "))
        .map(|l| l.split(" # ").next().unwrap_or(l).trim().to_string())
        .collect();
    assert!(steps.len() >= 7, "{help}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("FILE"), b"first hour\n").unwrap();
    let data = dir.path().join("D");
    for step in &steps {
        let mut line = step.replace("--data-dir D", &format!("--data-dir '{}'", data.display()));
        if line.contains("SERIAL") {
            let list = Command::new(common::BIN)
                .arg("--data-dir")
                .arg(&data)
                .args(["cert", "list"])
                .output()
                .unwrap();
            let serial = text(&list)
                .lines()
                .find(|l| l.contains("CN=svc"))
                .and_then(|l| l.split_whitespace().next())
                .unwrap()
                .to_string();
            line = line.replace("SERIAL", &serial);
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("'{}' {line}", common::BIN))
            .current_dir(dir.path())
            .env_remove("SIGNET_CONFIG")
            .env_remove("SIGNET_DATA_DIR")
            .output()
            .unwrap();
        assert!(out.status.success(), "signet {line}: {}", text(&out));
    }
    assert!(dir.path().join("FILE.sig").exists() && dir.path().join("svc.p12").exists());
}

/// Refusals speak the operator's units and names: days for lifetimes, curve names for OIDs;
/// `key list` stays aligned with long names.
#[test]
fn refusals_name_days_and_curves_and_the_key_table_stays_aligned() {
    let data = Data::new();
    data.ok(&["ca", "init"]);
    data.ok(&["principal", "create", "svc", "--scope", "keys:read"]);
    let dir = data.path();
    let out = data.signet(&[
        "cert",
        "issue",
        "--profile",
        "client",
        "--name",
        "svc",
        "--days",
        "9999",
        "--p12",
        dir.join("s.p12").to_str().unwrap(),
    ]);
    assert!(
        !out.status.success()
            && text(&out).contains("9999 days")
            && text(&out).contains("365 days"),
        "{}",
        text(&out)
    );
    let gen = openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "secp521r1",
            "-genkey",
            "-noout",
            "-out",
            "p521.key",
        ],
    );
    assert!(gen.status.success(), "{}", text(&gen));
    let req = openssl(
        dir,
        &[
            "req", "-new", "-key", "p521.key", "-subj", "/CN=svc", "-out", "p521.csr",
        ],
    );
    assert!(req.status.success(), "{}", text(&req));
    let out = data.signet(&[
        "cert",
        "issue",
        "--profile",
        "client",
        "--name",
        "svc",
        "--csr",
        dir.join("p521.csr").to_str().unwrap(),
    ]);
    assert!(
        !out.status.success() && text(&out).contains("P-521"),
        "{}",
        text(&out)
    );
    data.ok(&[
        "key",
        "create",
        "a-much-longer-key-name-than-the-column",
        "--spec",
        "ec-p256",
    ]);
    data.ok(&["key", "create", "k", "--spec", "rsa-2048"]);
    let list = data.ok(&["key", "list"]);
    // Every column starts at the same place on every line.
    let starts = |line: &str| -> Vec<usize> {
        let b = line.as_bytes();
        (0..b.len())
            .filter(|&i| b[i] != b' ' && (i == 0 || b[i - 1] == b' '))
            .take(6)
            .collect()
    };
    let columns: Vec<Vec<usize>> = list.lines().map(starts).collect();
    assert!(
        columns.len() == 3 && columns.windows(2).all(|w| w[0] == w[1]),
        "{list}"
    );
}

/// `config check` refuses what `serve` would (a store URL carrying a password, a token label
/// the URI contradicts) and shows the store and the token the URI names.
#[test]
fn config_check_shows_the_store_and_refuses_what_serve_would() {
    let data = Data::new();
    let check = |text_: &str| {
        let conf = data.join("c.toml");
        std::fs::write(&conf, text_).unwrap();
        data.signet(&["--config", conf.to_str().unwrap(), "config", "check"])
    };
    let out = check(
        "[store]\nkind = \"postgres\"\nurl = \"postgresql://signet:hunter2@db:5432/signet\"\n",
    );
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("carries a password") && !t.contains("hunter2"),
        "{t}"
    );
    let out = check("[store]\nkind = \"postgres\"\nurl = \"postgresql://signet@db1:5432,db2:5432/signet\"\npassword_file = \"/etc/signet/db.password\"\n");
    assert!(
        out.status.success()
            && text(&out)
                .contains("store         PostgreSQL postgresql://signet@db1:5432,db2:5432/signet"),
        "{}",
        text(&out)
    );
    let out = check("");
    assert!(
        out.status.success() && text(&out).contains("store         sled under"),
        "{}",
        text(&out)
    );
    let module = signet_softhsm::find_module().unwrap();
    common::write_secret(&data.join("pin.txt"), "1234\n");
    let uri = format!(
        "pkcs11:token=ops?module-path={}&pin-source=file:{}",
        module.display(),
        data.join("pin.txt").display()
    );
    let out = check(&format!(
        "[hsm]\nuri = \"{uri}\"\ntoken_label = \"other\"\n"
    ));
    assert!(
        !out.status.success() && text(&out).contains("token_label"),
        "{}",
        text(&out)
    );
    let out = check(&format!("[hsm]\nuri = \"{uri}\"\n"));
    assert!(
        out.status.success() && text(&out).contains("(token \"ops\")"),
        "{}",
        text(&out)
    );
}

/// `signet config example` prints a file `config check` accepts, without needing one first.
#[test]
fn the_printed_example_configuration_checks() {
    let data = Data::new();
    let out = Command::new(common::BIN)
        .args(["--config", "/nonexistent.toml", "config", "example"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let file = data.join("example.toml");
    std::fs::write(&file, &out.stdout).unwrap();
    assert!(text(&out).contains("[publish]") && text(&out).contains("public_url"));
    let out = data.signet(&["--config", file.to_str().unwrap(), "config", "check"]);
    assert!(
        out.status.success() && text(&out).contains("configuration is valid"),
        "{}",
        text(&out)
    );
}

/// `signet --remote SETTINGS ARGS…` run in `dir`, with no data directory or configuration
/// from the environment.
fn signet_remote(settings: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(common::BIN)
        .arg("--remote")
        .arg(settings)
        .args(args)
        .current_dir(dir)
        .env_remove("SIGNET_DATA_DIR")
        .env_remove("SIGNET_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn remote_mode_uses_a_running_server_with_a_bundle() {
    let server = common::Server::start();
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("");
    let ca = server.data.join("ca/root.pem");
    let bundle = server.data.join("clients/admin.p12");
    // No data directory in sight: the commands go to the server.
    let remote = |args: &[&str]| {
        Command::new(common::BIN)
            .args(["--server", &url, "--ca"])
            .arg(&ca)
            .arg("--bundle")
            .arg(&bundle)
            .args(args)
            .current_dir(dir.path())
            .env_remove("SIGNET_DATA_DIR")
            .env_remove("SIGNET_CONFIG")
            .output()
            .unwrap()
    };
    let out = remote(&["key", "create", "remote-k", "--spec", "ec-p384"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("created remote-k (ec-p384)"),
        "{}",
        text(&out)
    );
    let out = remote(&["key", "list"]);
    assert!(text(&out).contains("remote-k"), "{}", text(&out));
    let msg = dir.path().join("msg");
    std::fs::write(&msg, b"signed from the remote CLI").unwrap();
    let sig = dir.path().join("msg.sig");
    let out = remote(&[
        "key",
        "sign",
        "remote-k",
        "--in",
        msg.to_str().unwrap(),
        "--out",
        sig.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let public = remote(&["key", "public", "remote-k"]);
    let pem = dir.path().join("remote-k.pem");
    std::fs::write(&pem, &public.stdout).unwrap();
    let verified = openssl(
        dir.path(),
        &[
            "dgst",
            "-sha384",
            "-verify",
            pem.to_str().unwrap(),
            "-signature",
            sig.to_str().unwrap(),
            msg.to_str().unwrap(),
        ],
    );
    assert!(verified.status.success(), "{}", text(&verified));
    // The server recorded them under the bundle's principal, from the CLI.
    let log = server.admin().get("/v1/audit?limit=10000").body;
    let signed: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["action"] == "key.sign" && r["target"] == "remote-k")
        .collect();
    assert_eq!(signed.len(), 1, "{signed:?}");
    assert_eq!(signed[0]["principal"], "admin");
    assert!(signed[0]["details"]["client"]
        .as_str()
        .unwrap()
        .starts_with("signet-cli/"));
    // A principal that may only sign (no `keys:read`) lists the keys it may use.
    let admin = server.admin();
    assert_eq!(
        admin
            .post(
                "/v1/keys",
                &serde_json::json!({"name": "other-k", "spec": "ec-p256"})
            )
            .status,
        201
    );
    common::enrol_principal(&server, &admin, "signer", &["keys:sign:remote-*"]);
    let clients = server.data.join("clients");
    let settings = dir.path().join("signer.toml");
    std::fs::write(
        &settings,
        format!(
            "url = \"{url}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            ca.display(),
            clients.join("signer.crt.pem").display(),
            clients.join("signer.key.pem").display(),
        ),
    )
    .unwrap();
    let out = signet_remote(&settings, dir.path(), &["key", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("remote-k") && listed.contains("ec-p384") && !listed.contains("other-k"),
        "{}",
        text(&out)
    );
    // What cannot be done remotely, and a wrong password, are clear errors.
    let out = remote(&["key", "delete", "remote-k"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("only `key list|create|public|sign`"),
        "{}",
        text(&out)
    );
    let out = remote(&[
        "--bundle-password-file",
        ca.to_str().unwrap(),
        "key",
        "list",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("password is wrong"), "{}", text(&out));
    assert!(!dir.path().join("signet-data").exists());
}

/// `--remote FILE`: the PKCS#11 module's settings file drives the CLI too, with PEM files (the
/// admin's) or an encrypted key whose passphrase is read from the key's `.pass` file; a wrong
/// passphrase is a clear error.
#[test]
fn remote_mode_reads_a_client_settings_file() {
    let server = common::Server::start();
    let dir = tempfile::tempdir().unwrap();
    let clients = server.data.join("clients");
    let settings = |key: &str| {
        let path = dir.path().join(format!("{key}.toml"));
        std::fs::write(
            &path,
            format!(
                "url = \"{}\"\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                server.url(""),
                server.data.join("ca/root.pem").display(),
                clients.join("admin.crt.pem").display(),
                dir.path().join(key).display(),
            ),
        )
        .unwrap();
        path
    };
    let remote = |file: &Path, args: &[&str]| signet_remote(file, dir.path(), args);
    std::fs::copy(clients.join("admin.key.pem"), dir.path().join("plain.pem")).unwrap();
    let out = remote(
        &settings("plain.pem"),
        &["key", "create", "by-file", "--spec", "ec-p256"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = openssl(
        dir.path(),
        &[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            "plain.pem",
            "-out",
            "enc.pem",
            "-passout",
            "pass:open sesame",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    common::write_secret(&dir.path().join("enc.pem.pass"), "open sesame\n");
    let encrypted = settings("enc.pem");
    let out = remote(&encrypted, &["key", "list"]);
    assert!(
        out.status.success() && text(&out).contains("by-file"),
        "{}",
        text(&out)
    );
    common::write_secret(&dir.path().join("enc.pem.pass"), "open sesam\n");
    let out = remote(&encrypted, &["key", "list"]);
    assert!(
        !out.status.success() && text(&out).contains("passphrase is wrong"),
        "{}",
        text(&out)
    );
    // One way to name the server: --remote and --server together are refused.
    let out = remote(
        &encrypted,
        &["--server", "https://localhost:1", "key", "list"],
    );
    assert!(!out.status.success(), "{}", text(&out));
}
