#![allow(clippy::unwrap_used)]
//! The CA on real SoftHSM2 keys, checked with OpenSSL and x509-parser.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use signet_hsm::{Backend, HsmSigner, KeySpec, Pkcs11Backend, Signer};
use signet_pki::{
    build_intermediate, build_root, pem_cert, pem_crl, Ca, CaSettings, Error, LeafRequest, Profile,
    RevokedEntry,
};
use signet_softhsm::TestToken;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

struct Fixture {
    _token: TestToken,
    hsm: Arc<dyn Backend>,
    ca: Ca,
    dir: tempfile::TempDir,
}

fn signer(hsm: &Arc<dyn Backend>, label: &str, spec: KeySpec) -> Arc<dyn Signer> {
    let key = hsm
        .generate(&signet_hsm::KeyRequest::named(label, spec))
        .unwrap();
    Arc::new(HsmSigner::new(hsm.clone(), key.id, spec.default_algorithm()).unwrap())
}

fn fixture(spec: KeySpec) -> Fixture {
    let token = TestToken::new().unwrap();
    let hsm: Arc<dyn Backend> = Arc::new(Pkcs11Backend::open(token.config(2)).unwrap());
    let settings = CaSettings {
        organization: "Test Org".into(),
        trust_domain: "test.example".into(),
        ..CaSettings::default()
    };
    let root_key = signer(&hsm, "root", spec);
    let root = build_root(&settings, root_key.clone()).unwrap();
    let int_key = signer(&hsm, "intermediate", spec);
    let intermediate = build_intermediate(&settings, int_key.clone(), &root, root_key).unwrap();
    let ca = Ca::new(settings, int_key, intermediate, root).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), pem_cert(ca.root_der())).unwrap();
    std::fs::write(
        dir.path().join("intermediate.pem"),
        pem_cert(ca.intermediate_der()),
    )
    .unwrap();
    std::fs::write(dir.path().join("chain.pem"), ca.chain_pem()).unwrap();
    Fixture {
        _token: token,
        hsm,
        ca,
        dir,
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn server_request() -> LeafRequest {
    LeafRequest {
        profile: Profile::Server,
        name: "api.test.example".into(),
        dns: vec!["api.test.example".into(), "localhost".into()],
        ips: vec!["127.0.0.1".parse::<IpAddr>().unwrap()],
        ttl: None,
    }
}

fn client_request(name: &str) -> LeafRequest {
    LeafRequest {
        profile: Profile::Client,
        name: name.into(),
        dns: vec![],
        ips: vec![],
        ttl: None,
    }
}

fn verify_leaf(f: &Fixture, leaf_der: &[u8], file: &str) -> Output {
    std::fs::write(f.dir.path().join(file), pem_cert(leaf_der)).unwrap();
    openssl(
        f.dir.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            file,
        ],
    )
}

fn chain_verifies_for(spec: KeySpec) {
    let f = fixture(spec);
    let (server, _key) =
        f.ca.issue_with_new_key(&server_request(), KeySpec::EcP256)
            .unwrap();
    let out = verify_leaf(&f, &server.der, "server.pem");
    assert!(out.status.success(), "{spec}: {}", text(&out));
    let (client, _key) =
        f.ca.issue_with_new_key(&client_request("alice"), KeySpec::Ed25519)
            .unwrap();
    let out = verify_leaf(&f, &client.der, "client.pem");
    assert!(out.status.success(), "{spec}: {}", text(&out));
    // Purpose checks: the server leaf is good for sslserver, not sslclient.
    let out = openssl(
        f.dir.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "-purpose",
            "sslserver",
            "server.pem",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = openssl(
        f.dir.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "-purpose",
            "sslclient",
            "server.pem",
        ],
    );
    assert!(
        !out.status.success(),
        "server cert accepted as client: {}",
        text(&out)
    );
}

#[test]
fn chain_verifies_with_openssl_ec_p384() {
    chain_verifies_for(KeySpec::EcP384);
}

#[test]
fn chain_verifies_with_openssl_ec_p256() {
    chain_verifies_for(KeySpec::EcP256);
}

#[test]
fn chain_verifies_with_openssl_ed25519() {
    chain_verifies_for(KeySpec::Ed25519);
}

#[test]
fn chain_verifies_with_openssl_rsa_3072() {
    chain_verifies_for(KeySpec::Rsa3072);
}

#[test]
fn leaf_from_an_unrelated_ca_fails() {
    let ours = fixture(KeySpec::EcP384);
    let theirs = fixture(KeySpec::EcP384);
    let (foreign, _k) = theirs
        .ca
        .issue_with_new_key(&client_request("mallory"), KeySpec::EcP256)
        .unwrap();
    let out = verify_leaf(&ours, &foreign.der, "foreign.pem");
    assert!(
        !out.status.success(),
        "foreign leaf verified: {}",
        text(&out)
    );
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

#[test]
fn extensions_follow_the_profiles() {
    let f = fixture(KeySpec::EcP384);
    let root = parse(f.ca.root_der());
    let int = parse(f.ca.intermediate_der());
    let bc = root.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca && bc.path_len_constraint == Some(1));
    let bc = int.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca && bc.path_len_constraint == Some(0));
    for ca in [&root, &int] {
        let ku = ca.key_usage().unwrap().unwrap().value;
        assert!(ku.key_cert_sign() && ku.crl_sign());
    }
    let ski = |c: &X509Certificate| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .expect("SKI present")
    };
    let aki = |c: &X509Certificate| {
        c.extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .expect("AKI present")
    };
    assert_eq!(aki(&int), ski(&root));
    assert_eq!(aki(&root), ski(&root));
    assert!(root.validity().not_after > int.validity().not_after);

    let (server, _) =
        f.ca.issue_with_new_key(&server_request(), KeySpec::EcP256)
            .unwrap();
    let s = parse(&server.der);
    assert_eq!(aki(&s), ski(&int));
    assert!(!s.basic_constraints().unwrap().unwrap().value.ca);
    let eku = s.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    let sans: Vec<String> = s
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .map(|n| format!("{n}"))
        .collect();
    assert!(
        sans.iter().any(|n| n.contains("api.test.example")),
        "{sans:?}"
    );
    assert!(sans.iter().any(|n| n.contains("7f:00:00:01")), "{sans:?}");
    assert_eq!(
        server.sans,
        vec!["DNS:api.test.example", "DNS:localhost", "IP:127.0.0.1"]
    );
    // Serials: positive, 128 bits.
    assert_eq!(s.raw_serial().len(), 16);
    assert!(s.raw_serial()[0] & 0x80 == 0 && s.raw_serial()[0] != 0);

    let (client, _) =
        f.ca.issue_with_new_key(&client_request("billing"), KeySpec::EcP256)
            .unwrap();
    let c = parse(&client.der);
    let eku = c.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    let names = &c
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(
        matches!(
            names[..],
            [GeneralName::URI("spiffe://test.example/billing")]
        ),
        "{names:?}"
    );
    assert_eq!(
        c.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "billing"
    );
    // Client TTL defaults to the profile maximum, capped by the intermediate.
    assert!(client.not_after - client.not_before <= 365 * 24 * 3600 + 120);
}

#[test]
fn ca_keys_are_in_the_token_and_never_extractable() {
    let f = fixture(KeySpec::EcP384);
    let keys = f.hsm.list().unwrap();
    let labels: Vec<_> = keys.iter().map(|k| k.label.as_str()).collect();
    assert_eq!(labels, ["intermediate", "root"]);
    for key in keys {
        assert!(f.hsm.protection(&key.id).unwrap().is_locked_in());
    }
}

/// Makes a CSR with rcgen (a software key) from `params`.
fn csr_for(params: rcgen::CertificateParams) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn csr_issuance_takes_only_the_key() {
    let f = fixture(KeySpec::EcP384);
    // An honest CSR that repeats the granted name.
    let csr = csr_for(rcgen::CertificateParams::new(vec!["api.test.example".into()]).unwrap());
    let issued =
        f.ca.issue_from_csr(&server_request(), csr.as_bytes())
            .unwrap();
    let out = verify_leaf(&f, &issued.der, "from-csr.pem");
    assert!(out.status.success(), "{}", text(&out));
    // A CSR with a subject of its own: the subject still comes from the request.
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "root-of-all-evil");
    let issued =
        f.ca.issue_from_csr(&client_request("bob"), csr_for(params).as_bytes())
            .unwrap();
    assert_eq!(
        parse(&issued.der)
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "bob"
    );
}

#[test]
fn csr_attacks_are_refused() {
    let f = fixture(KeySpec::EcP384);
    let refused = |req: &LeafRequest, csr: &[u8]| match f.ca.issue_from_csr(req, csr) {
        Err(Error::CsrRefused(why)) => why,
        other => panic!("accepted or wrong error: {other:?}"),
    };

    let extra = csr_for(
        rcgen::CertificateParams::new(vec!["api.test.example".into(), "bank.example".into()])
            .unwrap(),
    );
    assert!(refused(&server_request(), extra.as_bytes()).contains("bank.example"));

    let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    assert!(refused(&client_request("c"), csr_for(ca_params).as_bytes()).contains("CA"));

    let mut eku_params = rcgen::CertificateParams::new(vec![]).unwrap();
    eku_params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        rcgen::ExtendedKeyUsagePurpose::CodeSigning,
    ];
    assert!(
        refused(&client_request("c"), csr_for(eku_params).as_bytes())
            .contains("extended key usage")
    );

    // Bad self-signature: flip a bit in the signature of a good CSR.
    let good = csr_for(rcgen::CertificateParams::new(vec![]).unwrap());
    let mut der = pem::parse(good.as_bytes()).unwrap().into_contents();
    let last = der.len() - 3;
    der[last] ^= 0x01;
    assert!(refused(&client_request("c"), &der).contains("self-signature"));

    // RSA-1024, made by openssl.
    let dir = f.dir.path();
    let out = openssl(
        dir,
        &[
            "req", "-new", "-newkey", "rsa:1024", "-nodes", "-keyout", "weak.key", "-subj",
            "/CN=weak", "-out", "weak.csr",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let weak = std::fs::read(dir.join("weak.csr")).unwrap();
    assert!(refused(&client_request("c"), &weak).contains("1024"));

    assert!(refused(
        &client_request("c"),
        b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n"
    )
    .contains("PEM"));
    assert!(refused(&client_request("c"), b"\x30\x03garbage").contains("PKCS#10"));

    // A request for an SLH-DSA key (RFC 9909's id-slh-dsa-sha2-128s), written out by hand:
    // refused for what it is, before its (junk) self-signature is looked at.
    let tlv = |tag: u8, content: &[u8]| {
        let mut out = vec![tag, u8::try_from(content.len()).unwrap()];
        out.extend_from_slice(content);
        out
    };
    let oid = tlv(
        0x06,
        &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03, 0x14],
    );
    let algorithm = tlv(0x30, &oid);
    let key = tlv(0x03, &[[0u8].as_slice(), &[7u8; 32]].concat());
    let spki = tlv(0x30, &[algorithm.clone(), key].concat());
    let info = tlv(
        0x30,
        &[tlv(0x02, &[0]), tlv(0x30, &[]), spki, tlv(0xa0, &[])].concat(),
    );
    let signature = tlv(0x03, &[0u8; 17]);
    let slh_dsa = tlv(0x30, &[info, algorithm, signature].concat());
    let why = refused(&client_request("c"), &slh_dsa);
    assert!(
        why.contains("SLH-DSA") && why.contains("2.16.840.1.101.3.4.3.20"),
        "{why}"
    );
    assert!(
        refused(&client_request("c"), pem_cert(f.ca.root_der()).as_bytes()).contains("CERTIFICATE")
    );
}

#[test]
fn policy_errors_are_clear() {
    let f = fixture(KeySpec::EcP256);
    let mut too_long = client_request("c");
    too_long.ttl = Some(std::time::Duration::from_secs(10 * 365 * 24 * 3600));
    assert!(
        matches!(f.ca.issue_with_new_key(&too_long, KeySpec::EcP256), Err(Error::Policy(m)) if m.contains("exceeds"))
    );
    assert!(matches!(
        f.ca.issue_with_new_key(&client_request("../etc"), KeySpec::EcP256),
        Err(Error::Policy(_))
    ));
    let mut no_names = server_request();
    no_names.dns.clear();
    no_names.ips.clear();
    assert!(matches!(
        f.ca.issue_with_new_key(&no_names, KeySpec::EcP256),
        Err(Error::Policy(_))
    ));
    assert!(matches!(
        f.ca.issue_with_new_key(&client_request("c"), KeySpec::Rsa2048),
        Err(Error::Policy(_))
    ));
}

#[test]
fn crl_verifies_and_lists_revoked_serials() {
    let f = fixture(KeySpec::EcP384);
    let (victim, _) =
        f.ca.issue_with_new_key(&client_request("victim"), KeySpec::EcP256)
            .unwrap();
    let revoked = [RevokedEntry {
        serial: victim.serial.clone(),
        revoked_at: 1_700_000_000,
        reason: Some("keyCompromise".into()),
    }];
    let crl = f.ca.crl(&revoked, 7).unwrap();
    std::fs::write(f.dir.path().join("crl.pem"), pem_crl(&crl)).unwrap();
    let out = openssl(
        f.dir.path(),
        &[
            "crl",
            "-in",
            "crl.pem",
            "-CAfile",
            "chain.pem",
            "-verify",
            "-noout",
            "-text",
        ],
    );
    let t = text(&out);
    assert!(out.status.success() && t.contains("verify OK"), "{t}");
    assert!(
        t.to_ascii_lowercase()
            .contains(&victim.serial.to_ascii_lowercase()),
        "{t}"
    );
    assert!(t.contains("Key Compromise"), "{t}");
    assert!(
        t.contains("X509v3 CRL Number") && t.contains("X509v3 Authority Key Identifier"),
        "{t}"
    );
    // openssl verify with CRL checking now refuses the revoked leaf.
    std::fs::write(f.dir.path().join("victim.pem"), pem_cert(&victim.der)).unwrap();
    let out = openssl(
        f.dir.path(),
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "intermediate.pem",
            "-CRLfile",
            "crl.pem",
            "victim.pem",
        ],
    );
    assert!(
        !out.status.success() && text(&out).contains("revoked"),
        "{}",
        text(&out)
    );
    assert!(matches!(
        f.ca.crl(
            &[RevokedEntry {
                reason: Some("bored".into()),
                ..revoked[0].clone()
            }],
            8
        ),
        Err(Error::Policy(_))
    ));
}

#[test]
fn pkcs12_opens_in_openssl3_without_legacy() {
    let f = fixture(KeySpec::EcP384);
    let (issued, key) =
        f.ca.issue_with_new_key(&client_request("admin"), KeySpec::EcP256)
            .unwrap();
    let bundle = signet_pki::pkcs12::write(
        &key,
        &issued.der,
        &[f.ca.intermediate_der(), f.ca.root_der()],
        "correct horse",
    )
    .unwrap();
    std::fs::write(f.dir.path().join("admin.p12"), bundle).unwrap();
    let out = openssl(
        f.dir.path(),
        &[
            "pkcs12",
            "-info",
            "-in",
            "admin.p12",
            "-noenc",
            "-passin",
            "pass:correct horse",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("PBES2") && t.contains("AES-256-CBC"), "{t}");
    assert!(t.contains("MAC: sha256"), "{t}");
    assert_eq!(t.matches("BEGIN CERTIFICATE").count(), 3, "{t}");
    assert!(t.contains("BEGIN PRIVATE KEY"), "{t}");
    // The key and its certificate (the bags with a localKeyId) have one friendly name.
    let names: Vec<&str> = t
        .split("Bag Attributes")
        .filter(|bag| bag.contains("localKeyID"))
        .filter_map(|bag| {
            bag.lines()
                .find_map(|l| l.trim().strip_prefix("friendlyName: "))
        })
        .collect();
    assert_eq!(names.len(), 2, "{t}");
    assert_eq!(names[0], names[1], "{t}");
    assert!(names[0].contains("CN=admin"), "{t}");
    // NSS reads it too, and names the key as it names the certificate.
    std::fs::write(f.dir.path().join("pw"), "correct horse").unwrap();
    let out = Command::new("pk12util")
        .args(["-l", "admin.p12", "-w", "pw"])
        .current_dir(f.dir.path())
        .output()
        .expect("pk12util (libnss3-tools; scripts/setup.sh installs it) runs");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let name_after = |heading: &str| {
        t.split(heading)
            .nth(1)
            .and_then(|rest| {
                rest.lines()
                    .find_map(|l| l.trim().strip_prefix("Friendly Name: "))
            })
            .unwrap_or_else(|| panic!("no {heading} in {t}"))
            .to_string()
    };
    assert_eq!(name_after("Key(shrouded):"), names[0], "{t}");
    assert_eq!(name_after("Certificate(has private key):"), names[0], "{t}");
    // Java's keytool sees one private-key entry under that name (Java lowercases aliases), with
    // the whole chain.
    let out = Command::new("keytool")
        .args([
            "-list",
            "-v",
            "-storetype",
            "PKCS12",
            "-keystore",
            "admin.p12",
        ])
        .args(["-storepass", "correct horse"])
        .current_dir(f.dir.path())
        .output()
        .expect("keytool (a JRE; scripts/setup.sh installs one) runs");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("Your keystore contains 1 entry"), "{t}");
    assert!(
        t.contains(&format!("Alias name: {}\n", names[0].to_lowercase())),
        "{t}"
    );
    assert!(t.contains("Entry type: PrivateKeyEntry"), "{t}");
    assert!(t.contains("Certificate chain length: 3"), "{t}");
    let out = openssl(
        f.dir.path(),
        &[
            "pkcs12",
            "-info",
            "-in",
            "admin.p12",
            "-noenc",
            "-passin",
            "pass:wrong",
        ],
    );
    assert!(!out.status.success());
}
