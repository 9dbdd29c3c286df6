//! Bring your own key: PKCS#12 files made by openssl (the OpenSSL 3 default and `-legacy`)
//! imported with `signet key import`, used through the API, and the signatures verified by
//! openssl with the original key. Bad files are refused clearly and change nothing.

#![allow(clippy::unwrap_used)]

mod common;

use common::{b64, embedded_objects, openssl, text, unb64, Data, Server};
use serde_json::json;

/// Makes a key and a self-signed certificate with openssl, and a PKCS#12 file of them;
/// returns (p12 path, password file path, public key PEM path).
fn openssl_p12(
    dir: &std::path::Path,
    name: &str,
    genpkey: &[&str],
    export: &[&str],
) -> (String, String, String) {
    let key = format!("{name}.key.pem");
    let out = openssl(dir, &[&["genpkey"][..], genpkey, &["-out", &key]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let cert = format!("{name}.crt.pem");
    let out = openssl(
        dir,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            &key,
            "-subj",
            "/CN=imported",
            "-days",
            "30",
            "-out",
            &cert,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let pass = format!("{name}.pass");
    std::fs::write(dir.join(&pass), "correct horse battery\n").unwrap();
    let p12 = format!("{name}.p12");
    let out = openssl(
        dir,
        &[
            &[
                "pkcs12",
                "-export",
                "-inkey",
                &key,
                "-in",
                &cert,
                "-out",
                &p12,
                "-passout",
                &format!("file:{pass}"),
            ][..],
            export,
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let public = format!("{name}.pub.pem");
    let out = openssl(dir, &["pkey", "-in", &key, "-pubout", "-out", &public]);
    assert!(out.status.success());
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    (path(&p12), path(&pass), path(&public))
}

#[test]
fn openssl_pkcs12_files_are_imported_and_sign() {
    let data = Data::new();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (modern, pass, ec_pub) = openssl_p12(
        dir,
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        &[],
    );
    // What OpenSSL 3 writes by default: PBES2/AES-256-CBC with a SHA-256 MAC.
    let info = openssl(
        dir,
        &[
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            &modern,
            "-passin",
            &format!("file:{pass}"),
        ],
    );
    // The token-signing key's name is reserved: an imported key (whose material has been
    // outside the token) never becomes the token signer.
    let out = data.signet(&[
        "key",
        "import",
        "token-signer",
        "--p12",
        &modern,
        "--password-file",
        &pass,
    ]);
    assert!(
        !out.status.success() && text(&out).contains("reserved"),
        "{}",
        text(&out)
    );
    assert!(text(&info).contains("PBES2"), "{}", text(&info));
    assert!(text(&info).contains("sha256"), "{}", text(&info));
    let (legacy, legacy_pass, rsa_pub) = openssl_p12(
        dir,
        "rsa",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        &["-legacy"],
    );
    let info = openssl(
        dir,
        &[
            "pkcs12",
            "-info",
            "-noout",
            "-legacy",
            "-in",
            &legacy,
            "-passin",
            &format!("file:{legacy_pass}"),
        ],
    );
    assert!(
        text(&info).contains("pbeWithSHA1And"),
        "not a legacy file: {}",
        text(&info)
    );

    let out = data.ok(&[
        "key",
        "import",
        "byo-ec",
        "--p12",
        &modern,
        "--password-file",
        &pass,
    ]);
    assert!(out.contains("imported byo-ec (ec-p256)"), "{out}");
    data.ok(&[
        "key",
        "import",
        "byo-rsa",
        "--p12",
        &legacy,
        "--password-file",
        &legacy_pass,
    ]);
    // In the token: private and sensitive, not marked as generated there.
    let objects = embedded_objects(&data, Some("privkey"));
    let block = objects
        .split("Private Key Object")
        .find(|b| b.contains("signet:key:byo-ec:v1"))
        .unwrap_or_else(|| panic!("{objects}"));
    assert!(block.contains("sensitive"), "{block}");
    assert!(!block.contains("local"), "{block}");

    let server = Server::start_in(data, &[]);
    let admin = server.admin();
    let shown = admin.get("/v1/keys/byo-ec").json();
    assert_eq!(shown["versions"][0]["origin"], "imported", "{shown}");
    for (key, alg, public) in [("byo-ec", "ES256", &ec_pub), ("byo-rsa", "RS256", &rsa_pub)] {
        let msg = b"signed with a key brought from outside";
        let reply = admin.post(
            &format!("/v1/keys/{key}/sign"),
            &json!({"input": b64(msg), "algorithm": alg}),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        std::fs::write(dir.join("msg"), msg).unwrap();
        std::fs::write(
            dir.join("sig"),
            unb64(reply.json()["signature"].as_str().unwrap()),
        )
        .unwrap();
        let out = openssl(
            dir,
            &[
                "dgst",
                "-sha256",
                "-verify",
                public,
                "-signature",
                "sig",
                "msg",
            ],
        );
        assert!(text(&out).contains("Verified OK"), "{key}: {}", text(&out));
    }
    // Audited as an import, with the file's digest.
    let audit = admin.get("/v1/audit?limit=500").body;
    let line = audit
        .lines()
        .find(|l| l.contains("\"key.import\"") && l.contains("byo-ec") && l.contains("\"ok\""))
        .unwrap_or_else(|| panic!("{audit}"));
    assert!(line.contains("source_sha256"), "{line}");
    server.stop();
}

#[test]
fn bad_pkcs12_files_are_refused_clearly_and_change_nothing() {
    let data = Data::new();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    let (good, pass, _) = openssl_p12(dir, "good", &ec, &[]);
    let (nomac, nomac_pass, _) = openssl_p12(dir, "nomac", &ec, &["-nomac"]);
    let (nokey, nokey_pass, _) = openssl_p12(dir, "nokey", &ec, &["-nokeys"]);
    let (k1, k1_pass, _) = openssl_p12(
        dir,
        "k1",
        &[
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:secp256k1",
        ],
        &[],
    );
    let wrong = dir.join("wrong.pass");
    std::fs::write(&wrong, "not the password\n").unwrap();
    let garbage = dir.join("garbage.p12");
    std::fs::write(&garbage, b"this is not a PKCS#12 file").unwrap();
    let garbage = garbage.to_str().unwrap();
    let wrong = wrong.to_str().unwrap();
    for (file, password, expected) in [
        (good.as_str(), wrong, "password is wrong"),
        (nomac.as_str(), nomac_pass.as_str(), "no MAC"),
        (nokey.as_str(), nokey_pass.as_str(), "no private key"),
        (k1.as_str(), k1_pass.as_str(), "cannot be held by Signet"),
        (garbage, pass.as_str(), "not PKCS#12"),
    ] {
        let out = data.signet(&[
            "key",
            "import",
            "byo",
            "--p12",
            file,
            "--password-file",
            password,
        ]);
        let t = text(&out);
        assert!(!out.status.success(), "{file} was imported: {t}");
        assert!(t.contains(expected), "{file}: expected {expected:?} in {t}");
        assert!(!t.contains("panicked") && !t.contains("CKR_"), "{t}");
        assert!(!t.contains("correct horse"), "a password in an error: {t}");
    }
    // Nothing was made.
    let list = data.ok(&["key", "list"]);
    assert!(!list.contains("byo"), "{list}");
    assert!(!embedded_objects(&data, Some("privkey")).contains("signet:key:byo"));
    // And the good file still imports.
    data.ok(&[
        "key",
        "import",
        "byo",
        "--p12",
        &good,
        "--password-file",
        &pass,
    ]);
}

/// Writes an openssl CA pair: a self-signed root and an intermediate it issues (or, with
/// `foreign_issuer`, one issued by another root), each with its key in a PKCS#12 file.
fn openssl_ca(dir: &std::path::Path, foreign_issuer: bool) -> (String, String, String) {
    let run = |args: &[&str]| {
        let out = openssl(dir, args);
        assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    };
    std::fs::write(
        dir.join("ext.cnf"),
        "[root]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         [int]\nbasicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    for (name, curve) in [("root", "P-384"), ("other", "P-256"), ("int", "P-256")] {
        run(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            &format!("ec_paramgen_curve:{curve}"),
            "-out",
            &format!("{name}.key"),
        ]);
    }
    for root in ["root", "other"] {
        run(&[
            "req",
            "-new",
            "-x509",
            "-key",
            &format!("{root}.key"),
            "-subj",
            // The same name for both roots: only the signature tells them apart.
            "/O=Old Corp/CN=Old root CA",
            "-days",
            "3650",
            "-extensions",
            "root",
            "-config",
            "ext.cnf",
            "-out",
            &format!("{root}.crt"),
        ]);
    }
    run(&[
        "req",
        "-new",
        "-key",
        "int.key",
        "-subj",
        "/O=Old Corp/CN=Old Issuing CA",
        "-out",
        "int.csr",
    ]);
    let issuer = if foreign_issuer { "other" } else { "root" };
    run(&[
        "x509",
        "-req",
        "-in",
        "int.csr",
        "-CA",
        &format!("{issuer}.crt"),
        "-CAkey",
        &format!("{issuer}.key"),
        "-CAcreateserial",
        "-days",
        "1825",
        "-extfile",
        "ext.cnf",
        "-extensions",
        "int",
        "-out",
        "int.crt",
    ]);
    std::fs::write(dir.join("pw"), "ca import password\n").unwrap();
    for name in ["root", "int"] {
        run(&[
            "pkcs12",
            "-export",
            "-inkey",
            &format!("{name}.key"),
            "-in",
            &format!("{name}.crt"),
            "-out",
            &format!("{name}.p12"),
            "-passout",
            "file:pw",
        ]);
    }
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    (path("root.p12"), path("int.p12"), path("pw"))
}

/// `signet ca import` takes over an openssl-made root and intermediate: the server's certificate
/// and every certificate Signet issues chain to the original root, per openssl and curl.
#[test]
fn an_existing_ca_pair_is_imported_and_issues() {
    let data = Data::new();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (root, int, pw) = openssl_ca(dir, false);
    let out = data.ok(&[
        "ca",
        "import",
        "--root-p12",
        &root,
        "--intermediate-p12",
        &int,
        "--password-file",
        &pw,
        "--server-dns",
        "localhost",
    ]);
    assert!(
        out.contains("Old root CA") && out.contains("Old Issuing CA"),
        "{out}"
    );
    let shown = data.ok(&["ca", "show"]);
    assert_eq!(shown.matches("imported").count(), 2, "{shown}");
    // The root file Signet wrote is the one openssl made.
    let original = openssl(dir, &["x509", "-in", "root.crt", "-outform", "DER"]).stdout;
    let written = openssl(
        dir,
        &[
            "x509",
            "-in",
            data.join("ca/root.pem").to_str().unwrap(),
            "-outform",
            "DER",
        ],
    )
    .stdout;
    assert_eq!(original, written);

    let server = Server::start_in(data, &[]);
    // curl trusts only the original root: the server's chain and the admin bundle work.
    let d = &server.data;
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", "--cacert"])
        .arg(dir.join("root.crt"))
        .arg("--cert")
        .arg(d.join("clients/admin.crt.pem"))
        .arg("--key")
        .arg(d.join("clients/admin.key.pem"))
        .arg(server.url("/healthz"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // A certificate issued now verifies with openssl against the original root.
    let admin = server.admin();
    admin.post("/v1/principals", &json!({"name": "svc", "scopes": []}));
    let (_, csr) = common::openssl_csr(dir, "svc", &[]);
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "client", "name": "svc"}),
    );
    assert_eq!(issued.status, 201, "{issued:?}");
    std::fs::write(
        dir.join("svc.pem"),
        issued.json()["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let out = openssl(
        dir,
        &[
            "verify",
            "-CAfile",
            "root.crt",
            "-untrusted",
            "int.crt",
            "svc.pem",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let audit = admin.get("/v1/audit?limit=50").body;
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"ca.init\"") && l.contains("root_source_sha256")),
        "{audit}"
    );
    server.stop();
}

#[test]
fn a_ca_pair_that_does_not_chain_is_refused_and_changes_nothing() {
    let data = Data::new();
    let work = tempfile::tempdir().unwrap();
    let (root, int, pw) = openssl_ca(work.path(), true);
    let out = data.signet(&[
        "ca",
        "import",
        "--root-p12",
        &root,
        "--intermediate-p12",
        &int,
        "--password-file",
        &pw,
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("was not issued by this root"), "{t}");
    assert!(!data.join("ca/root.pem").exists());
    assert!(!embedded_objects(&data, Some("privkey")).contains("signet:ca:"));
    // A root given as the intermediate: not issued by itself... and an intermediate as root.
    let out = data.signet(&[
        "ca",
        "import",
        "--root-p12",
        &int,
        "--intermediate-p12",
        &root,
        "--password-file",
        &pw,
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("not self-signed"), "{}", text(&out));
}
