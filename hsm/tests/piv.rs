#![cfg(feature = "yubikey")]
#![allow(clippy::unwrap_used)]
//! The PIV backend on the virtual PIV card (`scripts/virtual-piv.sh start`; the tests need
//! `SIGNET_PIV_ROOT` from it): the real `yubikey` crate over real PC/SC, a card process speaking
//! ISO 7816. The card is one for the whole machine, so the tests run one at a time
//! (`--test-threads 1` in scripts/test.sh) and each frees the slots it took.

use ring::signature::{self as rs, UnparsedPublicKey};
use signet_hsm::{
    Backend, EcdsaFormat, Error, KeyRequest, KeySpec, ManagementKey, Pin, PinUse, PivBackend,
    PivConfig, PivSlots, SignInput, SignatureAlgorithm, TouchUse,
};

const DEFAULT_MANAGEMENT_KEY: &str = "010203040506070801020304050607080102030405060708";

fn config() -> PivConfig {
    PivConfig {
        serial: None,
        pin: Pin::new("123456".into()),
        management_key: ManagementKey::from_hex(DEFAULT_MANAGEMENT_KEY).unwrap(),
        slots: PivSlots::default(),
        pin_use: PinUse::Once,
        touch: TouchUse::Never,
    }
}

fn card() -> PivBackend {
    assert!(
        std::env::var_os("SIGNET_PIV_ROOT").is_some(),
        "start the virtual card first: eval \"$(scripts/virtual-piv.sh start)\""
    );
    PivBackend::open(config()).expect("open the virtual card")
}

fn verify(spec: KeySpec, alg: SignatureAlgorithm, public: &[u8], msg: &[u8], sig: &[u8]) {
    let params: &dyn rs::VerificationAlgorithm = match (spec, alg) {
        (KeySpec::EcP256, _) => &rs::ECDSA_P256_SHA256_FIXED,
        (KeySpec::EcP384, _) => &rs::ECDSA_P384_SHA384_FIXED,
        _ => &rs::RSA_PKCS1_2048_8192_SHA256,
    };
    UnparsedPublicKey::new(params, public)
        .verify(msg, sig)
        .unwrap_or_else(|_| panic!("{spec} {alg}: ring refuses the signature"));
}

#[test]
fn every_spec_signs_and_ring_verifies_then_destroy_frees_the_slot() {
    let hsm = card();
    for (spec, alg) in [
        (KeySpec::EcP256, SignatureAlgorithm::Es256),
        (KeySpec::EcP384, SignatureAlgorithm::Es384),
        (KeySpec::Rsa2048, SignatureAlgorithm::Rs256),
    ] {
        let key = hsm
            .generate(&KeyRequest::named(format!("piv-{spec}"), spec))
            .unwrap();
        assert_eq!(key.spec, spec);
        let found = hsm.find(&key.id).unwrap();
        assert_eq!(found.label, format!("piv-{spec}"));
        let public = hsm.public_key(&key.id).unwrap();
        let msg = b"signed on the virtual PIV card";
        let sig = signet_hsm::sign(
            &hsm,
            &key.id,
            alg,
            SignInput::Message(msg),
            EcdsaFormat::Raw,
        )
        .unwrap();
        verify(spec, alg, &public.raw(), msg, &sig);
        let protection = hsm.protection(&key.id).unwrap();
        assert_eq!(protection.generated_on_device, Some(true));
        assert!(protection.is_locked_in(), "{protection:?}");
        hsm.destroy(&key.id).unwrap();
        assert!(matches!(hsm.find(&key.id), Err(Error::KeyNotFound(_))));
        assert!(signet_hsm::sign(
            &hsm,
            &key.id,
            alg,
            SignInput::Message(msg),
            EcdsaFormat::Raw
        )
        .is_err());
    }
}

fn openssl_verify(
    dir: &std::path::Path,
    root: &str,
    leaf: &[u8],
    intermediate: &[u8],
) -> std::process::Output {
    let pem = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
    std::fs::write(dir.join("leaf.pem"), pem("CERTIFICATE", leaf)).unwrap();
    std::fs::write(dir.join("f9.pem"), pem("CERTIFICATE", intermediate)).unwrap();
    std::process::Command::new("openssl")
        .args(["verify", "-CAfile", root, "-untrusted"])
        .arg(dir.join("f9.pem"))
        .arg(dir.join("leaf.pem"))
        .output()
        .unwrap()
}

#[test]
fn attestation_chains_to_the_card_root_and_names_the_key() {
    let hsm = card();
    let key = hsm
        .generate(&KeyRequest::named("attested", KeySpec::EcP256))
        .unwrap();
    let attestation = hsm.attest(&key.id).unwrap();
    let (leaf, intermediate) = (attestation.certificate, attestation.intermediate);
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::var("SIGNET_PIV_ROOT").unwrap();
    let out = openssl_verify(dir.path(), &root, &leaf, &intermediate);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The attested public key is the key's.
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let public = hsm.public_key(&key.id).unwrap();
    assert_eq!(cert.public_key().raw, public.spki_der().as_slice());
    // A foreign root does not verify it.
    let foreign = dir.path().join("foreign.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=foreign",
            "-keyout",
        ])
        .arg(dir.path().join("foreign.key"))
        .arg("-out")
        .arg(&foreign)
        .output()
        .unwrap();
    assert!(made.status.success());
    let out = openssl_verify(dir.path(), foreign.to_str().unwrap(), &leaf, &intermediate);
    assert!(!out.status.success());
    hsm.destroy(&key.id).unwrap();
    assert!(hsm.attest(&key.id).is_err());
}

#[test]
fn a_wrong_pin_is_refused_once_with_the_retries_left_and_never_retried() {
    let mut wrong = config();
    wrong.pin = Pin::new("999999".into());
    match PivBackend::open(wrong) {
        Err(Error::PinIncorrect {
            retries_left: Some(n),
        }) => assert_eq!(n, 2),
        other => panic!("{other:?}"),
    }
    // The right PIN resets the counter: the card is not left closer to locking.
    let hsm = card();
    let info = hsm.info().unwrap();
    let retries = info
        .details
        .iter()
        .find(|(k, _)| k == "pin_retries")
        .unwrap();
    assert_eq!(retries.1, "3");
    assert_eq!(info.kind, "yubikey");
}

#[test]
fn a_full_card_is_a_clear_error_and_unsupported_specs_are_refused() {
    let hsm = card();
    assert!(matches!(
        hsm.generate(&KeyRequest::named("ed", KeySpec::Ed25519)),
        Err(Error::SpecUnsupported { .. })
    ));
    // ML-DSA and SLH-DSA: the typed refusal, saying what a token would need.
    for spec in KeySpec::ALL.into_iter().filter(|s| s.is_post_quantum()) {
        let err = hsm.generate(&KeyRequest::named("pq", spec)).unwrap_err();
        assert!(matches!(err, Error::SpecUnsupported { .. }), "{err}");
        assert!(
            err.to_string().contains("needs a PKCS#11 3.2 token"),
            "{err}"
        );
    }
    // Other tests (and the service test) may have left keys on the card.
    let retired = |hsm: &PivBackend| {
        hsm.list()
            .unwrap()
            .into_iter()
            .filter(|k| (0x82..=0x95).contains(&k.id.0[0]))
            .count()
    };
    let before = retired(&hsm);
    let mut made = Vec::new();
    let full = loop {
        match hsm.generate(&KeyRequest::named(
            format!("fill-{}", made.len()),
            KeySpec::EcP256,
        )) {
            Ok(key) => made.push(key),
            Err(e) => break e,
        }
        assert!(made.len() <= 20, "more keys than retired slots");
    };
    assert_eq!(made.len(), 20 - before);
    assert!(matches!(full, Error::Full(_)), "{full:?}");
    assert!(full.to_string().contains("82 to 95"), "{full}");
    assert_eq!(retired(&hsm), 20);
    for key in &made {
        hsm.destroy(&key.id).unwrap();
    }
    assert_eq!(retired(&hsm), before);
}

#[test]
fn a_pulled_card_fails_calls_and_is_used_again_once_it_is_back() {
    let hsm = card();
    let key = hsm
        .generate(&KeyRequest::named("pulled", KeySpec::EcP256))
        .unwrap();
    let msg = b"before and after";
    let sign = |hsm: &PivBackend| {
        signet_hsm::sign(
            hsm,
            &key.id,
            SignatureAlgorithm::Es256,
            SignInput::Message(msg),
            EcdsaFormat::Raw,
        )
    };
    sign(&hsm).unwrap();
    let removed =
        std::path::Path::new(&std::env::var("SIGNET_PIV_CONTROL").unwrap()).join("removed");
    std::fs::write(&removed, b"").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = sign(&hsm);
    std::fs::remove_file(&removed).unwrap();
    let error = out.expect_err("no card in the reader");
    assert!(!error.to_string().is_empty());
    // Back in the reader: the same backend opens it again, logs in, and signs.
    let signature = sign(&hsm).unwrap();
    let public = hsm.public_key(&key.id).unwrap();
    verify(
        KeySpec::EcP256,
        SignatureAlgorithm::Es256,
        &public.raw(),
        msg,
        &signature,
    );
    hsm.destroy(&key.id).unwrap();
}

/// ykcs11 (Yubico's PKCS#11 module) on the same card: the keys the PIV backend made, with their
/// certificates, are seen and used through Signet's PKCS#11 backend too.
#[test]
fn keys_made_on_the_card_sign_through_ykcs11_and_the_pkcs11_backend() {
    let module = [
        "/usr/lib/x86_64-linux-gnu/libykcs11.so",
        "/usr/lib/aarch64-linux-gnu/libykcs11.so",
    ]
    .into_iter()
    .find(|p| std::path::Path::new(p).exists())
    .expect("ykcs11 (scripts/setup.sh installs it)");
    let piv = card();
    let made: Vec<_> = [KeySpec::EcP256, KeySpec::EcP384, KeySpec::Rsa2048]
        .into_iter()
        .map(|spec| {
            piv.generate(&KeyRequest::named(format!("ykcs11-{spec}"), spec))
                .unwrap()
        })
        .collect();
    let serial = piv.serial();
    drop(piv);

    let p11 = signet_hsm::Pkcs11Backend::open(signet_hsm::Pkcs11Config {
        module: module.into(),
        token: signet_hsm::TokenSelector::Label(format!("YubiKey PIV #{serial}")),
        pin: Pin::new("123456".into()),
        pool_size: 1,
    })
    .expect("ykcs11 opens the virtual card");
    let info = p11.info().unwrap();
    assert!(info.library.contains("Yubico"), "{info:?}");
    let keys = p11.list().unwrap();
    let piv = card();
    for key in &made {
        let public = piv.public_key(&key.id).unwrap();
        // The same key pair, found by its public key.
        let through = keys
            .iter()
            .find(|k| {
                p11.public_key(&k.id)
                    .map(|p| p.spki_der() == public.spki_der())
                    .unwrap_or(false)
            })
            .unwrap_or_else(|| panic!("ykcs11 does not show {}: {keys:?}", key.label));
        assert_eq!(through.spec, key.spec);
        let alg = key.spec.default_algorithm();
        let msg = b"signed through ykcs11";
        let sig = signet_hsm::sign(
            &p11,
            &through.id,
            alg,
            SignInput::Message(msg),
            EcdsaFormat::Raw,
        )
        .unwrap_or_else(|e| panic!("{}: {e}", key.spec));
        verify(key.spec, alg, &public.raw(), msg, &sig);
    }
    drop(p11);
    for key in &made {
        piv.destroy(&key.id).unwrap();
    }
}

/// Takes the card out of the reader and puts it back (the backend's handle goes stale).
fn pull_and_reinsert() {
    let removed =
        std::path::Path::new(&std::env::var("SIGNET_PIV_CONTROL").unwrap()).join("removed");
    std::fs::write(&removed, b"").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::fs::remove_file(&removed).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
}

fn pin_retries(yk: &mut yubikey::YubiKey) -> u8 {
    let pin = yubikey::piv::SlotId::try_from(0x80u8).unwrap();
    yubikey::piv::metadata(yk, pin)
        .unwrap()
        .retries
        .unwrap()
        .remaining_count
}

#[test]
fn a_pin_changed_underneath_is_offered_once_and_never_again() {
    let hsm = card();
    let key = hsm
        .generate(&KeyRequest::named("pin-changed", KeySpec::EcP256))
        .unwrap();
    // Another tool changes the PIN; the card is then pulled and put back, so the backend has
    // to open it and log in again.
    let mut other = yubikey::YubiKey::open().unwrap();
    other.change_pin(b"123456", b"654321").unwrap();
    drop(other);
    pull_and_reinsert();
    let sign = || {
        signet_hsm::sign(
            &hsm,
            &key.id,
            SignatureAlgorithm::Es256,
            SignInput::Message(b"m"),
            EcdsaFormat::Raw,
        )
    };
    match sign() {
        Err(Error::PinIncorrect { retries_left }) => assert_eq!(retries_left, Some(2)),
        other => panic!("{other:?}"),
    }
    for _ in 0..4 {
        let again = sign().unwrap_err();
        assert!(
            again.to_string().contains("does not offer it again"),
            "{again}"
        );
    }
    // The card still has two attempts left: the PIN was offered once.
    let mut other = yubikey::YubiKey::open().unwrap();
    assert_eq!(pin_retries(&mut other), 2);
    other.change_pin(b"654321", b"123456").unwrap();
    assert_eq!(pin_retries(&mut other), 3);
    drop(other);
    drop(hsm);
    card().destroy(&key.id).unwrap();
}
