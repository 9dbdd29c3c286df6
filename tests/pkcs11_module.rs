//! libsignet_pkcs11.so against a real server on loopback, driven by unmodified PKCS#11
//! applications (OpenSC's pkcs11-tool, GnuTLS's p11tool, OpenSSH's ssh-keygen) and by the
//! cryptoki crate through the C ABI; every signature is checked by OpenSSL or ring against the
//! public key the server's API gives (not the module's).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    enrol_principal, free_port, pkcs11_module as module, pkcs11_settings as settings, Client,
    Server,
};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use serde_json::{json, Value};

fn run(program: &str, conf: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .env("SIGNET_PKCS11_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    (out.status.success(), common::text(&out))
}

fn public_pem(admin: &Client, key: &str, dir: &Path) -> PathBuf {
    let view = admin.get(&format!("/v1/keys/{key}")).json();
    let path = dir.join(format!("{key}.pub.pem"));
    std::fs::write(
        &path,
        view["versions"][0]["public_key_pem"].as_str().unwrap(),
    )
    .unwrap();
    path
}

fn key_id(admin: &Client, key: &str) -> String {
    admin.get(&format!("/v1/keys/{key}")).json()["versions"][0]["key_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn openssl_ok(args: &[&str]) {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        common::text(&out)
    );
}

/// Keys of every type, a principal that may sign with some and only verify with one, and a key
/// it may not see.
fn setup() -> (Server, Client) {
    let server = Server::start();
    let admin = server.admin();
    for (name, spec) in [
        ("ec", "ec-p256"),
        ("ec384", "ec-p384"),
        ("rsa", "rsa-2048"),
        ("ed", "ed25519"),
        ("other", "ec-p256"),
        ("hidden", "ec-p256"),
    ] {
        let r = admin.post("/v1/keys", &json!({"name": name, "spec": spec}));
        assert_eq!(r.status, 201, "{r:?}");
    }
    enrol_principal(
        &server,
        &admin,
        "app",
        &[
            "keys:sign:ec*",
            "keys:sign:rsa",
            "keys:sign:ed",
            "keys:verify:other",
        ],
    );
    (server, admin)
}

#[test]
fn unmodified_tools_list_the_keys_and_their_signatures_verify() {
    let (server, admin) = setup();
    let conf = settings(&server, "app");
    let m = module();
    let m = m.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_str().unwrap().to_string();

    // The slot and token.
    let (ok, out) = run("pkcs11-tool", &conf, &["--module", m, "-L"]);
    assert!(ok, "{out}");
    assert!(out.contains("token label        : signet"), "{out}");
    assert!(out.contains("token model        : network HSM"), "{out}");

    // The objects: a private and a public key per key the principal may use, never `hidden`.
    let (ok, out) = run("pkcs11-tool", &conf, &["--module", m, "-O"]);
    assert!(ok, "{out}");
    for name in ["ec", "ec384", "rsa", "ed", "other"] {
        assert_eq!(
            out.matches(&format!("label:      {name}\n")).count(),
            2,
            "{name}: {out}"
        );
    }
    assert!(!out.contains("hidden"), "{out}");
    assert!(
        out.contains("Access:     sensitive, always sensitive, never extractable, local"),
        "{out}"
    );

    // What /v1/me/keys told the module: the principal may sign with all but `other`.
    let me = server.client("app").get("/v1/me/keys").json();
    let may: Vec<(String, bool)> = me["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_string(),
                k["may_sign"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(may.contains(&("other".into(), false)), "{may:?}");
    assert!(may.contains(&("rsa".into(), true)), "{may:?}");
    assert_eq!(may.len(), 5, "{may:?}");

    let msg = d("msg");
    std::fs::write(&msg, b"signed through the PKCS#11 module").unwrap();
    let sign = |mechanism: &str, key: &str, input: &str, extra: &[&str]| {
        let out_file = d(&format!("{key}-{mechanism}.sig"));
        let id = key_id(&admin, key);
        let mut args = vec![
            "--module", m, "--sign", "-m", mechanism, "--id", &id, "-i", input, "-o", &out_file,
        ];
        args.extend_from_slice(extra);
        let (ok, out) = run("pkcs11-tool", &conf, &args);
        assert!(ok, "{mechanism} with {key}: {out}");
        out_file
    };
    let ec = public_pem(&admin, "ec", dir.path());
    let ec384 = public_pem(&admin, "ec384", dir.path());
    let rsa = public_pem(&admin, "rsa", dir.path());
    let ed = public_pem(&admin, "ed", dir.path());
    let (ec, ec384, rsa, ed) = (
        ec.to_str().unwrap(),
        ec384.to_str().unwrap(),
        rsa.to_str().unwrap(),
        ed.to_str().unwrap(),
    );

    // ECDSA over the message, hashed in the module.
    let sig = sign(
        "ECDSA-SHA256",
        "ec",
        &msg,
        &["--signature-format", "openssl"],
    );
    openssl_ok(&["dgst", "-sha256", "-verify", ec, "-signature", &sig, &msg]);
    // ECDSA over a digest the application made (what OpenSSL and ssh send).
    let digest = d("msg.sha384");
    std::fs::write(&digest, {
        use sha2::Digest;
        sha2::Sha384::digest(std::fs::read(&msg).unwrap())
    })
    .unwrap();
    let sig = sign(
        "ECDSA",
        "ec384",
        &digest,
        &["--signature-format", "openssl"],
    );
    openssl_ok(&[
        "dgst",
        "-sha384",
        "-verify",
        ec384,
        "-signature",
        &sig,
        &msg,
    ]);
    // RSA PKCS#1 v1.5 and PSS.
    let sig = sign("SHA256-RSA-PKCS", "rsa", &msg, &[]);
    openssl_ok(&["dgst", "-sha256", "-verify", rsa, "-signature", &sig, &msg]);
    let sig = sign("SHA256-RSA-PKCS-PSS", "rsa", &msg, &[]);
    openssl_ok(&[
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
        "-verify",
        rsa,
        "-signature",
        &sig,
        &msg,
    ]);
    // Ed25519 over the message.
    let sig = sign("EDDSA", "ed", &msg, &[]);
    openssl_ok(&[
        "pkeyutl", "-verify", "-pubin", "-inkey", ed, "-rawin", "-in", &msg, "-sigfile", &sig,
    ]);

    // The module verifies in software: RSA PKCS#1, PSS and Ed25519 signatures check out, and a
    // PSS signature is not a PKCS#1 v1.5 one.
    let verify = |mechanism: &str, key: &str, sig: &str| {
        let id = key_id(&admin, key);
        let (ok, out) = run(
            "pkcs11-tool",
            &conf,
            &[
                "--module",
                m,
                "--verify",
                "-m",
                mechanism,
                "--id",
                &id,
                "-i",
                &msg,
                "--signature-file",
                sig,
            ],
        );
        ok && out.contains("Signature is valid")
    };
    let rsa_sig = d("rsa-SHA256-RSA-PKCS.sig");
    let pss_sig = d("rsa-SHA256-RSA-PKCS-PSS.sig");
    assert!(verify("SHA256-RSA-PKCS", "rsa", &rsa_sig));
    assert!(verify("SHA256-RSA-PKCS-PSS", "rsa", &pss_sig));
    assert!(verify("EDDSA", "ed", &d("ed-EDDSA.sig")));
    assert!(!verify("SHA256-RSA-PKCS", "rsa", &pss_sig));

    // A key the principal may only verify with: the module refuses to start a signature.
    let id = key_id(&admin, "other");
    let (ok, out) = run(
        "pkcs11-tool",
        &conf,
        &[
            "--module",
            m,
            "--sign",
            "-m",
            "ECDSA-SHA256",
            "--id",
            &id,
            "-i",
            &msg,
            "-o",
            &d("no.sig"),
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("CKR_KEY_FUNCTION_NOT_PERMITTED"), "{out}");

    // Key generation creates a Signet key in the server's token, for a principal holding
    // keys:create only; a template asking for what Signet keys cannot be is refused.
    let keygen = |conf: &Path, label: &str, extra: &[&str]| {
        let mut args = vec![
            "--module",
            m,
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            label,
        ];
        args.extend_from_slice(extra);
        run("pkcs11-tool", conf, &args)
    };
    let (ok, out) = keygen(&conf, "by-app", &["--usage-sign"]);
    assert!(
        !ok && out.contains("CKR_KEY_FUNCTION_NOT_PERMITTED"),
        "{out}"
    );
    let admin_conf = settings(&server, "admin");
    // pkcs11-tool asks for decrypt and derive rights by default.
    let (ok, out) = keygen(&admin_conf, "by-module", &[]);
    assert!(!ok && out.contains("CKR_ATTRIBUTE_VALUE_INVALID"), "{out}");
    let (ok, out) = keygen(&admin_conf, "by-module", &["--usage-sign"]);
    assert!(ok, "{out}");
    assert!(out.contains("label:      by-module"), "{out}");
    let made = admin.get("/v1/keys/by-module").json();
    assert_eq!(made["spec"], "ec-p256", "{made}");
    assert!(
        out.contains(made["versions"][0]["key_id"].as_str().unwrap()),
        "{out}"
    );
    let (ok, out) = keygen(&admin_conf, "by-module", &["--usage-sign"]);
    assert!(
        !ok && out.contains("CKR_ATTRIBUTE_VALUE_INVALID"),
        "a second key of one name: {out}"
    );

    // GnuTLS lists the objects by PKCS#11 URI and signs and verifies with them.
    let (ok, out) = run(
        "p11tool",
        &conf,
        &["--provider", m, "--list-all", "pkcs11:token=signet"],
    );
    assert!(ok, "{out}");
    assert!(out.contains("object=ec;type=private"), "{out}");
    for key in ["ec", "rsa"] {
        let uri = format!("pkcs11:token=signet;object={key};type=private");
        let (ok, out) = run("p11tool", &conf, &["--provider", m, "--test-sign", &uri]);
        assert!(ok, "{key}: {out}");
        assert!(
            out.contains("Verifying against public key in the token... ok"),
            "{out}"
        );
    }

    // OpenSSH reads the public keys through the module; they are the server's keys.
    let (ok, out) = run("ssh-keygen", &conf, &["-D", m]);
    assert!(out.contains("ecdsa-sha2-nistp256 "), "{ok} {out}");
    assert!(out.contains("ssh-rsa "), "{out}");
    let converted = Command::new("ssh-keygen")
        .args(["-i", "-m", "PKCS8", "-f", ec])
        .output()
        .unwrap();
    let line = String::from_utf8(converted.stdout).unwrap();
    let blob = line.split_whitespace().nth(1).unwrap();
    assert!(out.contains(blob), "{blob} not in {out}");

    // Every signature is in the audit log under the principal; the refused one was never sent.
    let log = admin.audit_records();
    let signed: Vec<&Value> = log
        .iter()
        .filter(|r| r["action"] == "key.sign" && r["principal"] == "app" && r["outcome"] == "ok")
        .collect();
    // 5 from pkcs11-tool, and p11tool's two test signatures.
    assert_eq!(signed.len(), 7, "{signed:#?}");
    assert!(signed.iter().any(|r| r["target"] == "ed"));
    // Each names the module and the application that called it.
    let client = |r: &Value| r["details"]["client"].as_str().unwrap_or("").to_string();
    assert_eq!(
        signed
            .iter()
            .filter(
                |r| client(r).starts_with("signet-pkcs11/") && client(r).ends_with("(pkcs11-tool)")
            )
            .count(),
        5,
        "{signed:#?}"
    );
    assert!(
        signed.iter().any(|r| client(r).ends_with("(p11tool)")),
        "{signed:#?}"
    );
}

fn open(module: &Path) -> Pkcs11 {
    let ctx = Pkcs11::new(module).unwrap();
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    ctx
}

fn verify_p256(public_pem: &str, message: &[u8], signature: &[u8]) -> bool {
    let der = pem::parse(public_pem).unwrap().into_contents();
    // The SubjectPublicKeyInfo's last 65 bytes are the uncompressed point.
    let point = &der[der.len() - 65..];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(message, signature)
        .is_ok()
}

#[test]
fn applications_sign_in_parts_from_threads_and_survive_a_server_restart() {
    let (server, admin) = setup();
    let conf = settings(&server, "app");
    std::env::set_var("SIGNET_PKCS11_CONF", &conf);
    let ctx = open(&module());
    let slot = ctx.get_slots_with_token().unwrap()[0];
    let info = ctx.get_token_info(slot).unwrap();
    assert_eq!(info.label(), "signet");
    assert!(!info.login_required());
    let session = ctx.open_ro_session(slot).unwrap();
    let find = |session: &cryptoki::session::Session, label: &str| {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .unwrap()
    };
    let keys = find(&session, "ec");
    assert_eq!(keys.len(), 1);
    let key = keys[0];
    let public = admin.get("/v1/keys/ec").json()["versions"][0]["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();

    // Multi-part: hashed in the module as the parts come.
    session.sign_init(&Mechanism::EcdsaSha256, key).unwrap();
    session.sign_update(b"in ").unwrap();
    session.sign_update(b"three ").unwrap();
    session.sign_update(b"parts").unwrap();
    let signature = session.sign_final().unwrap();
    assert!(verify_p256(&public, b"in three parts", &signature));
    // The module verifies in software, with the public key object.
    let public_key = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Label(b"ec".to_vec()),
        ])
        .unwrap()[0];
    session
        .verify(
            &Mechanism::EcdsaSha256,
            public_key,
            b"in three parts",
            &signature,
        )
        .unwrap();
    let err = session.verify(
        &Mechanism::EcdsaSha256,
        public_key,
        b"in two parts",
        &signature,
    );
    assert!(
        matches!(err, Err(P11Error::Pkcs11(RvError::SignatureInvalid, _))),
        "{err:?}"
    );
    // Single-part mechanisms take no parts.
    session.sign_init(&Mechanism::Ecdsa, key).unwrap();
    let err = session.sign_update(b"part");
    assert!(
        matches!(err, Err(P11Error::Pkcs11(RvError::FunctionNotSupported, _))),
        "{err:?}"
    );
    // Sensitive attributes are refused, not read.
    let err = session
        .get_attributes(key, &[cryptoki::object::AttributeType::Value])
        .map(|a| a.len());
    assert!(
        matches!(
            err,
            Ok(0) | Err(P11Error::Pkcs11(RvError::AttributeSensitive, _))
        ),
        "{err:?}"
    );

    // Eight threads, each in its own session, at once.
    std::thread::scope(|s| {
        for t in 0..8 {
            let ctx = &ctx;
            let public = &public;
            s.spawn(move || {
                let session = ctx.open_ro_session(slot).unwrap();
                for i in 0..5 {
                    let message = format!("thread {t} message {i}");
                    let sig = session
                        .sign(&Mechanism::EcdsaSha256, key, message.as_bytes())
                        .unwrap();
                    assert!(verify_p256(public, message.as_bytes(), &sig), "{message}");
                }
            });
        }
    });

    // The server goes away: the next call is a device error, and once it is back the one
    // after that works, with the same handles.
    let port = server.port;
    let data = server.stop();
    let err = session.sign(&Mechanism::EcdsaSha256, key, b"while down");
    assert!(
        matches!(err, Err(P11Error::Pkcs11(RvError::DeviceError, _))),
        "{err:?}"
    );
    let server = Server::start_on(data, port);
    let sig = session
        .sign(&Mechanism::EcdsaSha256, key, b"back again")
        .unwrap();
    assert!(verify_p256(&public, b"back again", &sig));

    // Logging in checks the certificate; once it is revoked, the login fails.
    session
        .login(UserType::User, Some(&AuthPin::new("any".into())))
        .unwrap();
    session.logout().unwrap();
    let admin = server.admin();
    let pem_text = std::fs::read_to_string(server.data.join("clients/app.crt.pem")).unwrap();
    let der = pem::parse(&pem_text).unwrap().into_contents();
    let serial = {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        hex::encode(cert.raw_serial())
    };
    let r = admin.post(&format!("/v1/certificates/{serial}/revoke"), &json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    let err = session.login(UserType::User, Some(&AuthPin::new("any".into())));
    assert!(
        matches!(err, Err(P11Error::Pkcs11(RvError::PinLocked, _))),
        "{err:?}"
    );
    drop(session);
    drop(server);
}

/// Waits until something listens on `port`.
fn wait_for(port: u16, child: &mut std::process::Child) {
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited before listening on {port}: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("nothing listens on {port}");
}

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn openssl_and_openssh_use_keys_held_by_signet() {
    let (server, admin) = setup();
    // Debian 12's libp11 (0.4.12) stops enumerating a token at its first Ed25519 key (fixed
    // in 0.4.13), so this principal reaches the ECDSA and RSA keys only.
    enrol_principal(&server, &admin, "tls", &["keys:sign:ec", "keys:sign:rsa"]);
    let conf = settings(&server, "tls");
    let m = module();
    let m = m.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let engine = d("engine.cnf");
    std::fs::write(
        &engine,
        format!(
            "openssl_conf = conf\n[conf]\nengines = engines\n[engines]\npkcs11 = pkcs11\n\
             [pkcs11]\nengine_id = pkcs11\nMODULE_PATH = {m}\ninit = 0\n\
             [req]\ndistinguished_name = dn\n[dn]\n"
        ),
    )
    .unwrap();
    let root = server.data.join("ca/root.pem");
    let root = root.to_str().unwrap();

    for (key, peer_signature) in [("ec", "ECDSA"), ("rsa", "RSA-PSS")] {
        let uri = format!("pkcs11:token=signet;object={key};type=private");
        let name = format!("{key}.svc.example");
        // A CSR signed through the engine, issued by Signet.
        let csr = d(&format!("{key}.csr"));
        let out = Command::new("openssl")
            .args([
                "req", "-new", "-engine", "pkcs11", "-keyform", "engine", "-key", &uri,
            ])
            .args(["-subj", &format!("/CN={name}"), "-out", &csr])
            .env("OPENSSL_CONF", &engine)
            .env("SIGNET_PKCS11_CONF", &conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{key}: {}", common::text(&out));
        openssl_ok(&["req", "-in", &csr, "-noout", "-verify"]);
        let issued = admin.post(
            "/v1/certificates",
            &json!({
                "csr": std::fs::read_to_string(&csr).unwrap(),
                "profile": "server",
                "name": name,
                "dns": [name],
            }),
        );
        assert_eq!(issued.status, 201, "{issued:?}");
        let issued = issued.json();
        let cert = d(&format!("{key}.crt.pem"));
        let chain = d(&format!("{key}.chain.pem"));
        std::fs::write(&cert, issued["certificate"].as_str().unwrap()).unwrap();
        std::fs::write(&chain, issued["chain"].as_str().unwrap()).unwrap();
        // The token now holds the certificate beside the key, with the key's id.
        let (ok, exported) = run(
            "p11tool",
            &conf,
            &[
                "--provider",
                m,
                "--export",
                &format!("pkcs11:token=signet;object={key};type=cert"),
            ],
        );
        assert!(ok, "{exported}");
        let issued_der = pem::parse(issued["certificate"].as_str().unwrap())
            .unwrap()
            .into_contents();
        let exported_der = pem::parse(exported.trim()).unwrap().into_contents();
        assert_eq!(exported_der, issued_der, "{key}");

        // A TLS 1.3 server whose key stays in Signet; a client verifies it.
        let port = free_port();
        let mut s_server = Killed(
            Command::new("openssl")
                .args([
                    "s_server", "-engine", "pkcs11", "-keyform", "engine", "-key", &uri,
                ])
                .args(["-cert", &cert, "-cert_chain", &chain, "-tls1_3", "-www"])
                .args(["-accept", &format!("127.0.0.1:{port}")])
                .env("OPENSSL_CONF", &engine)
                .env("SIGNET_PKCS11_CONF", &conf)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for(port, &mut s_server.0);
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo | openssl s_client -connect 127.0.0.1:{port} -verify_hostname {name} \
                 -CAfile {root} -verify_return_error -tls1_3"
            ))
            .output()
            .unwrap();
        let text = common::text(&out);
        assert!(out.status.success(), "{key}: {text}");
        assert!(text.contains("Verification: OK"), "{text}");
        assert!(text.contains("TLSv1.3"), "{text}");
        assert!(
            text.contains(&format!("Peer signature type: {peer_signature}")),
            "{text}"
        );
    }

    // OpenSSH: sshd on a loopback port takes each key, offered by `ssh -I`.
    let (_, listed) = run("ssh-keygen", &conf, &["-D", m]);
    let host_key = d("host_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", &host_key])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    std::fs::create_dir_all("/run/sshd").unwrap();
    let authorized = d("authorized_keys");
    let port = free_port();
    let sshd_config = d("sshd_config");
    std::fs::write(
        &sshd_config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n\
             AuthorizedKeysFile {authorized}\nStrictModes no\nUsePAM no\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\nPidFile {}\n",
            d("sshd.pid")
        ),
    )
    .unwrap();
    let mut sshd = Killed(
        Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", &sshd_config])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(port, &mut sshd.0);
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    for kind in ["ecdsa-sha2-nistp256 ", "ssh-rsa "] {
        let line = listed
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap_or_else(|| panic!("no {kind} in {listed}"));
        std::fs::write(&authorized, format!("{line}\n")).unwrap();
        let (ok, out) = run(
            "ssh",
            &conf,
            &[
                "-I",
                m,
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-p",
                &port.to_string(),
                &format!("{}@127.0.0.1", user.trim()),
                "echo logged-in",
            ],
        );
        assert!(ok && out.contains("logged-in"), "{kind}: {out}");
    }
    drop(sshd);

    // Each handshake and login above was signed by Signet, under the principal.
    let signed = admin
        .get("/v1/audit?limit=10000")
        .body
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["action"] == "key.sign" && r["principal"] == "tls" && r["outcome"] == "ok")
        .count();
    // Two CSRs, two TLS handshakes, two SSH logins.
    assert!(signed >= 6, "{signed}");
}

#[test]
fn a_pkcs12_bundle_is_opened_with_the_pin() {
    let (server, _admin) = setup();
    let conf = server.data.join("p12-pkcs11.toml");
    std::fs::write(
        &conf,
        format!(
            "url = \"https://localhost:{}\"\nca = \"ca/root.pem\"\npkcs12 = \"clients/admin.p12\"\nlabel = \"signet-p12\"\n",
            server.port
        ),
    )
    .unwrap();
    let password = std::fs::read_to_string(server.data.join("clients/admin.p12.pass")).unwrap();
    std::env::set_var("SIGNET_PKCS11_CONF", &conf);
    let ctx = open(&module());
    let slot = ctx.get_slots_with_token().unwrap()[0];
    let info = ctx.get_token_info(slot).unwrap();
    assert_eq!(info.label(), "signet-p12");
    assert!(info.login_required());
    let session = ctx.open_ro_session(slot).unwrap();
    // Nothing is visible before the login: without the PIN there is no identity.
    assert!(session.find_objects(&[]).unwrap().is_empty());
    let err = session.login(UserType::User, Some(&AuthPin::new("wrong".into())));
    assert!(
        matches!(err, Err(P11Error::Pkcs11(RvError::PinIncorrect, _))),
        "{err:?}"
    );
    session
        .login(UserType::User, Some(&AuthPin::new(password.trim().into())))
        .unwrap();
    let keys = session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .unwrap();
    // The admin sees every key, the service's own token signer too.
    assert!(keys.len() >= 6, "{keys:?}");
    let key = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(b"ec".to_vec()),
        ])
        .unwrap()[0];
    let sig = session
        .sign(&Mechanism::EcdsaSha256, key, b"by the admin")
        .unwrap();
    assert_eq!(sig.len(), 64);
    session.logout().unwrap();
    assert!(session.find_objects(&[]).unwrap().is_empty());
    let err = session.sign(&Mechanism::EcdsaSha256, key, b"after logout");
    assert!(err.is_err(), "{err:?}");
}

/// A PEM key encrypted as OpenSSL 3 writes it (PKCS#8, PBES2 with PBKDF2 and AES-256-CBC) is
/// opened with the PIN: pkcs11-tool sees no private key before the login, is refused a wrong PIN,
/// and signs with the right one; OpenSSL verifies the signature.
#[test]
fn an_encrypted_pem_key_is_opened_with_the_pin() {
    let (server, admin) = setup();
    let clients = server.data.join("clients");
    let (plain, encrypted) = (clients.join("app.key.pem"), clients.join("app.enc.pem"));
    let passphrase = "open sesame";
    openssl_ok(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        plain.to_str().unwrap(),
        "-out",
        encrypted.to_str().unwrap(),
        "-passout",
        &format!("pass:{passphrase}"),
    ]);
    let conf = server.data.join("enc-pkcs11.toml");
    std::fs::write(
        &conf,
        format!(
            "url = \"https://localhost:{}\"\nca = \"ca/root.pem\"\ncert = \"clients/app.crt.pem\"\nkey = \"clients/app.enc.pem\"\n",
            server.port
        ),
    )
    .unwrap();
    let m = module();
    let m = m.to_str().unwrap();
    let (ok, out) = run("pkcs11-tool", &conf, &["--module", m, "-T"]);
    assert!(ok && out.contains("login required"), "{out}");
    let (ok, out) = run("pkcs11-tool", &conf, &["--module", m, "-O"]);
    assert!(ok && !out.contains("Private Key Object"), "{out}");
    let (ok, out) = run(
        "pkcs11-tool",
        &conf,
        &["--module", m, "--login", "--pin", "open sesam", "-O"],
    );
    assert!(!ok && out.contains("CKR_PIN_INCORRECT"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let (msg, sig) = (dir.path().join("msg"), dir.path().join("sig"));
    std::fs::write(&msg, b"signed with a key opened by the PIN").unwrap();
    let id = key_id(&admin, "ec");
    let (ok, out) = run(
        "pkcs11-tool",
        &conf,
        &[
            "--module",
            m,
            "--login",
            "--pin",
            passphrase,
            "--sign",
            "-m",
            "ECDSA-SHA256",
            "--id",
            &id,
            "-i",
            msg.to_str().unwrap(),
            "-o",
            sig.to_str().unwrap(),
            "--signature-format",
            "openssl",
        ],
    );
    assert!(ok, "{out}");
    let ec = public_pem(&admin, "ec", dir.path());
    openssl_ok(&[
        "dgst",
        "-sha256",
        "-verify",
        ec.to_str().unwrap(),
        "-signature",
        sig.to_str().unwrap(),
        msg.to_str().unwrap(),
    ]);
}

#[test]
fn a_forked_child_initializes_again_and_signs() {
    let (server, _admin) = setup();
    let conf = settings(&server, "app");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tools/pkcs11_fork.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(module())
        .arg("ec")
        .env("SIGNET_PKCS11_CONF", &conf)
        .output()
        .unwrap();
    let text = common::text(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        "child: C_GetSlotList before C_Initialize 0x190",
        "child: C_Initialize 0x0",
        "child: signed (64 bytes)",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    // The parent signed before and after the fork, on its own connection.
    assert_eq!(
        text.matches("parent: signed (64 bytes)").count(),
        2,
        "{text}"
    );
}
