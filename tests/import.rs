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
