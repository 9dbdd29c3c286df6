#![allow(clippy::unwrap_used)]
//! The backend suite, through the real PKCS#11 ABI, on whichever token `SIGNET_TEST_TOKEN`
//! names: SoftHSM2 (default), kryoptic, or a SoftHSM2 token remoted by p11-kit (shared by every
//! test process, as a network HSM is). The suite asks the backend what it supports and expects a
//! typed "unsupported" answer for the rest. Signatures are checked by ring (an independent
//! implementation) and, for a sample, by the openssl command line.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use ring::signature::{self as rs, UnparsedPublicKey};
use signet_hsm::{
    Backend, EcdsaFormat, Error, HsmSigner, KeyId, KeyInfo, KeyRequest, KeySpec, Pin,
    Pkcs11Backend, PublicKey, SignInput, SignatureAlgorithm, Signer, TokenSelector,
};
use signet_softhsm::TestToken;

fn backend(pool: usize) -> (TestToken, Pkcs11Backend) {
    let token = TestToken::new().expect("test token");
    let backend = Pkcs11Backend::open(token.config(pool)).expect("open backend");
    (token, backend)
}

fn generate(token: &TestToken, hsm: &Pkcs11Backend, name: &str, spec: KeySpec) -> KeyInfo {
    hsm.generate(&KeyRequest::named(token.unique(name), spec))
        .unwrap_or_else(|e| panic!("{} {spec}: {e}", token.kind.name()))
}

/// This test's keys (all keys, on a token of its own).
fn own_keys(token: &TestToken, hsm: &Pkcs11Backend) -> Vec<KeyInfo> {
    hsm.list()
        .unwrap()
        .into_iter()
        .filter(|k| token.owns(&k.label))
        .collect()
}

fn sign(
    hsm: &dyn Backend,
    id: &KeyId,
    alg: SignatureAlgorithm,
    input: SignInput<'_>,
    format: EcdsaFormat,
) -> signet_hsm::Result<Vec<u8>> {
    signet_hsm::sign(hsm, id, alg, input, format)
}

/// Verifies with ring. `raw_ecdsa` selects the fixed-size ECDSA form.
fn ring_verify(
    key: &PublicKey,
    alg: SignatureAlgorithm,
    raw_ecdsa: bool,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    use SignatureAlgorithm::*;
    let params: &dyn rs::VerificationAlgorithm = match (alg, raw_ecdsa) {
        (Es256, false) => &rs::ECDSA_P256_SHA256_ASN1,
        (Es256, true) => &rs::ECDSA_P256_SHA256_FIXED,
        (Es384, false) => &rs::ECDSA_P384_SHA384_ASN1,
        (Es384, true) => &rs::ECDSA_P384_SHA384_FIXED,
        (EdDsa, _) => &rs::ED25519,
        (Rs256, _) => &rs::RSA_PKCS1_2048_8192_SHA256,
        (Rs384, _) => &rs::RSA_PKCS1_2048_8192_SHA384,
        (Rs512, _) => &rs::RSA_PKCS1_2048_8192_SHA512,
        (Ps256, _) => &rs::RSA_PSS_2048_8192_SHA256,
        (Ps384, _) => &rs::RSA_PSS_2048_8192_SHA384,
        (Ps512, _) => &rs::RSA_PSS_2048_8192_SHA512,
        _ => panic!("no ring verifier for {alg}"),
    };
    UnparsedPublicKey::new(params, key.raw())
        .verify(msg, sig)
        .is_ok()
}

/// Verifies a signature with `openssl` on the exported PEM.
fn openssl_verify(
    dir: &Path,
    key: &PublicKey,
    alg: SignatureAlgorithm,
    msg: &[u8],
    sig: &[u8],
) -> bool {
    std::fs::write(dir.join("key.pem"), key.spki_pem()).unwrap();
    std::fs::write(dir.join("msg"), msg).unwrap();
    std::fs::write(dir.join("sig"), sig).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir);
    match alg {
        SignatureAlgorithm::EdDsa => {
            cmd.args([
                "pkeyutl", "-verify", "-pubin", "-inkey", "key.pem", "-rawin", "-in", "msg",
                "-sigfile", "sig",
            ]);
        }
        _ => {
            let digest = format!("-sha{}", alg.hash().unwrap().len() * 8);
            cmd.args(["dgst", &digest, "-verify", "key.pem", "-signature", "sig"]);
            if alg.name().starts_with("PS") {
                cmd.args([
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-sigopt",
                    "rsa_pss_saltlen:digest",
                ]);
            }
            cmd.arg("msg");
        }
    }
    let out = cmd.output().expect("run openssl");
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
        || (alg == SignatureAlgorithm::EdDsa
            && String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"))
}

/// For a spec the token supports: signs with every algorithm the spec allows and the token
/// offers, over a message and over a digest, and checks each signature with ring; a sample also
/// with openssl; a tampered message fails. For a spec it does not: a typed refusal that lists
/// what it does support.
fn every_algorithm_of(spec: KeySpec) {
    let (token, hsm) = backend(2);
    let info = hsm.info().unwrap();
    if !info.specs.contains(&spec) {
        let err = hsm
            .generate(&KeyRequest::named(token.unique("unsupported"), spec))
            .unwrap_err();
        match &err {
            Error::SpecUnsupported { spec: s, supported } => {
                assert_eq!(*s, spec);
                assert_eq!(supported, &info.specs);
            }
            other => panic!("{}: {spec} refused with {other}", token.kind.name()),
        }
        assert!(
            err.to_string()
                .contains(&format!("does not support {spec}")),
            "{err}"
        );
        if spec.is_post_quantum() {
            assert!(
                err.to_string().contains("needs a PKCS#11 3.2 token"),
                "{err}"
            );
        }
        eprintln!(
            "{}: {spec} unsupported, as it says: {err}",
            token.kind.name()
        );
        return;
    }
    let key = generate(&token, &hsm, &format!("k-{spec}"), spec);
    assert_eq!(key.spec, spec);
    let public = hsm.public_key(&key.id).unwrap();
    assert_eq!(public.spec(), spec);
    let tmp = tempfile::tempdir().unwrap();
    let msg = b"the quick brown fox signs in the token";
    let mut signed = 0;
    for &alg in spec.algorithms() {
        if !info.algorithms.contains(&alg) {
            let err = sign(
                &hsm,
                &key.id,
                alg,
                SignInput::Message(msg),
                EcdsaFormat::Der,
            )
            .unwrap_err();
            assert!(
                matches!(err, Error::AlgorithmUnsupported { .. }),
                "{spec} {alg}: {err}"
            );
            continue;
        }
        if alg.is_pre_hash() {
            pre_hash_signs(&hsm, &key.id, &public, alg, msg);
            signed += 1;
            continue;
        }
        if alg.is_ml_dsa() {
            ml_dsa_signs(&hsm, &key.id, &public, alg, msg);
            signed += 1;
            continue;
        }
        if alg.is_slh_dsa() {
            slh_dsa_signs(&hsm, &key.id, &public, alg, msg);
            signed += 1;
            continue;
        }
        for format in [EcdsaFormat::Der, EcdsaFormat::Raw] {
            let sig = sign(&hsm, &key.id, alg, SignInput::Message(msg), format).unwrap();
            let raw = format == EcdsaFormat::Raw && alg.is_ecdsa();
            assert!(
                ring_verify(&public, alg, raw, msg, &sig),
                "{spec} {alg} {format:?}"
            );
            assert!(!ring_verify(&public, alg, raw, b"another message", &sig));
            if let Some(hash) = alg.hash() {
                let digest = hash.digest(msg);
                let sig = sign(&hsm, &key.id, alg, SignInput::Digest(&digest), format).unwrap();
                assert!(
                    ring_verify(&public, alg, raw, msg, &sig),
                    "{spec} {alg} digest"
                );
            }
        }
        let sig = sign(
            &hsm,
            &key.id,
            alg,
            SignInput::Message(msg),
            EcdsaFormat::Der,
        )
        .unwrap();
        assert!(
            openssl_verify(tmp.path(), &public, alg, msg, &sig),
            "openssl {spec} {alg}"
        );
        signed += 1;
    }
    assert!(signed > 0, "{spec}: no algorithm offered");
    // A key of this spec refuses every algorithm it does not fit.
    for alg in SignatureAlgorithm::ALL {
        if !spec.allows(alg) {
            let err = sign(
                &hsm,
                &key.id,
                alg,
                SignInput::Message(msg),
                EcdsaFormat::Der,
            )
            .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::AlgorithmMismatch { .. }
                        | Error::AlgorithmUnsupported { .. }
                        | Error::Unsupported(_)
                ),
                "{spec} {alg}: {err}"
            );
        }
    }
    hsm.destroy(&key.id).unwrap();
}

/// FIPS 204's signature sizes.
fn ml_dsa_signature_len(spec: KeySpec) -> usize {
    match spec {
        KeySpec::MlDsa44 => 2420,
        KeySpec::MlDsa65 => 3309,
        _ => 4627,
    }
}

/// FIPS 205's signature sizes.
fn slh_dsa_signature_len(spec: KeySpec) -> usize {
    match spec {
        KeySpec::SlhDsaSha2_128s => 7856,
        _ => 17088,
    }
}

/// HashML-DSA with SHA-256, SHA-384 or SHA-512 (FIPS 204 §5.4) and HashSLH-DSA with SHA-256
/// or SHA-512 (FIPS 205 §10.2): the token builds M' from the digest Signet makes (or is given)
/// and signs it; Signet's verifier builds M' on its own and checks it with RustCrypto's ML-DSA
/// or SLH-DSA, so the two constructions must agree byte for byte.
fn pre_hash_signs(
    hsm: &Pkcs11Backend,
    id: &KeyId,
    public: &PublicKey,
    alg: SignatureAlgorithm,
    msg: &[u8],
) {
    use signet_hsm::verify::{verify_ml_dsa, verify_pre_hashed};
    // The pure verification of the key's scheme: a pre-hash signature must fail it.
    let verify_pure = |sig: &[u8]| {
        if alg.is_slh_dsa() {
            signet_hsm::verify::verify_slh_dsa(public, msg, &[], sig)
        } else {
            verify_ml_dsa(public, msg, &[], sig)
        }
    };
    let size = if alg.is_slh_dsa() {
        slh_dsa_signature_len(public.spec())
    } else {
        ml_dsa_signature_len(public.spec())
    };
    let hash = alg.hash().unwrap();
    let digest = hash.digest(msg);
    let sig = sign(hsm, id, alg, SignInput::Message(msg), EcdsaFormat::Der).unwrap();
    assert_eq!(sig.len(), size, "{alg}");
    assert!(verify_pre_hashed(public, hash, &digest, &[], &sig), "{alg}");
    for input in [SignInput::Message(msg), SignInput::Digest(&digest)] {
        assert!(hsm.verify(id, alg, input, &sig, EcdsaFormat::Der).unwrap());
    }
    // Not a pure signature, and a pure one is not a pre-hash one (M' starts 0x01 here, 0x00
    // there).
    assert!(!verify_pure(&sig));
    let pure_alg = public.spec().default_algorithm();
    let pure = sign(hsm, id, pure_alg, SignInput::Message(msg), EcdsaFormat::Der).unwrap();
    assert!(!verify_pre_hashed(public, hash, &digest, &[], &pure));
    // A digest made elsewhere signs the same way; another digest does not verify.
    let from_digest = sign(hsm, id, alg, SignInput::Digest(&digest), EcdsaFormat::Der).unwrap();
    assert!(verify_pre_hashed(public, hash, &digest, &[], &from_digest));
    let other = hash.digest(b"another message");
    assert!(!verify_pre_hashed(public, hash, &other, &[], &from_digest));
    assert!(!hsm
        .verify(
            id,
            alg,
            SignInput::Digest(&other),
            &from_digest,
            EcdsaFormat::Der
        )
        .unwrap());
    let mut bad = from_digest.clone();
    bad[100] ^= 1;
    assert!(!verify_pre_hashed(public, hash, &digest, &[], &bad));
    // Another hash's digest (of another length) is refused, saying the length expected.
    let wrong = match hash {
        signet_hsm::Hash::Sha512 => signet_hsm::Hash::Sha256,
        _ => signet_hsm::Hash::Sha512,
    }
    .digest(msg);
    let err = sign(hsm, id, alg, SignInput::Digest(&wrong), EcdsaFormat::Der).unwrap_err();
    assert!(
        matches!(err, Error::DigestLength { expected, .. } if expected == hash.len()),
        "{alg}: {err}"
    );
    // A signature made with one hash does not verify as another's.
    for other_hash in [
        signet_hsm::Hash::Sha256,
        signet_hsm::Hash::Sha384,
        signet_hsm::Hash::Sha512,
    ] {
        if other_hash != hash {
            let d = other_hash.digest(msg);
            assert!(
                !verify_pre_hashed(public, other_hash, &d, &[], &sig),
                "{alg} as {other_hash:?}"
            );
        }
    }
    // A context string is bound in too.
    let ctx = b"signet test context";
    let with_ctx = signet_hsm::sign_with_context(hsm, id, alg, msg, ctx).unwrap();
    assert!(verify_pre_hashed(public, hash, &digest, ctx, &with_ctx));
    assert!(!verify_pre_hashed(public, hash, &digest, &[], &with_ctx));
    assert!(hsm
        .verify(
            id,
            alg,
            SignInput::MessageWithContext(msg, ctx),
            &with_ctx,
            EcdsaFormat::Der
        )
        .unwrap());
}

/// ML-DSA: signatures of the FIPS 204 size, checked by the software verifier (RustCrypto's
/// ml-dsa; checked itself against NIST's vectors in the crate's unit tests), hedged (two
/// signatures of one message differ), bound to the message and the key; a digest is refused.
/// pyca/cryptography checks them again in tests/pqc.rs.
fn ml_dsa_signs(
    hsm: &Pkcs11Backend,
    id: &KeyId,
    public: &PublicKey,
    alg: SignatureAlgorithm,
    msg: &[u8],
) {
    let size = ml_dsa_signature_len(public.spec());
    let sig = sign(hsm, id, alg, SignInput::Message(msg), EcdsaFormat::Der).unwrap();
    assert_eq!(sig.len(), size, "{alg}");
    assert!(signet_hsm::verify::verify_ml_dsa(public, msg, &[], &sig));
    assert!(hsm
        .verify(id, alg, SignInput::Message(msg), &sig, EcdsaFormat::Der)
        .unwrap());
    assert!(!signet_hsm::verify::verify_ml_dsa(
        public,
        b"another message",
        &[],
        &sig
    ));
    assert!(!signet_hsm::verify::verify_ml_dsa(
        public,
        msg,
        b"a context",
        &sig
    ));
    let mut bad = sig.clone();
    bad[100] ^= 1;
    assert!(!signet_hsm::verify::verify_ml_dsa(public, msg, &[], &bad));
    let again = sign(hsm, id, alg, SignInput::Message(msg), EcdsaFormat::Der).unwrap();
    assert_ne!(sig, again, "{alg}: hedged signatures should differ");
    assert!(signet_hsm::verify::verify_ml_dsa(public, msg, &[], &again));
    // A context string (FIPS 204 ctx) binds the signature to it.
    let ctx = b"signet test context";
    let with_ctx = signet_hsm::sign_with_context(hsm, id, alg, msg, ctx).unwrap();
    assert!(signet_hsm::verify::verify_ml_dsa(
        public, msg, ctx, &with_ctx
    ));
    assert!(!signet_hsm::verify::verify_ml_dsa(
        public,
        msg,
        &[],
        &with_ctx
    ));
    assert!(!signet_hsm::verify::verify_ml_dsa(
        public,
        msg,
        b"another context",
        &with_ctx
    ));
    let long = [7u8; 256];
    let err = signet_hsm::sign_with_context(hsm, id, alg, msg, &long).unwrap_err();
    assert!(err.to_string().contains("at most 255"), "{err}");
    let max = [7u8; 255];
    let sig = signet_hsm::sign_with_context(hsm, id, alg, msg, &max).unwrap();
    assert!(signet_hsm::verify::verify_ml_dsa(public, msg, &max, &sig));
    let digest = signet_hsm::Hash::Sha256.digest(msg);
    let err = sign(hsm, id, alg, SignInput::Digest(&digest), EcdsaFormat::Der).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{alg}: {err}");
    // The SPKI is RFC 9881's: the algorithm OID alone, then the FIPS 204 key.
    let spki = public.spki_der();
    let tail = &spki[spki.len() - public.raw().len()..];
    assert_eq!(tail, public.raw().as_slice());
    assert_eq!(public.jwk()["kty"], "AKP");
    assert_eq!(public.jwk()["alg"], alg.name());
}

/// SLH-DSA: signatures of the FIPS 205 size, checked by the software verifier (RustCrypto's
/// slh-dsa), randomized (two signatures of one message differ), bound to the message, the
/// context and the key; a digest and a context over 255 bytes are refused. pyca/cryptography
/// has no SLH-DSA: the `slhdsa` package from PyPI checks them again in tests/pqc.rs.
fn slh_dsa_signs(
    hsm: &Pkcs11Backend,
    id: &KeyId,
    public: &PublicKey,
    alg: SignatureAlgorithm,
    msg: &[u8],
) {
    use signet_hsm::verify::verify_slh_dsa;
    let size = slh_dsa_signature_len(public.spec());
    let sig = sign(hsm, id, alg, SignInput::Message(msg), EcdsaFormat::Der).unwrap();
    assert_eq!(sig.len(), size, "{alg}");
    assert!(verify_slh_dsa(public, msg, &[], &sig));
    assert!(hsm
        .verify(id, alg, SignInput::Message(msg), &sig, EcdsaFormat::Der)
        .unwrap());
    assert!(!verify_slh_dsa(public, b"another message", &[], &sig));
    assert!(!verify_slh_dsa(public, msg, b"a context", &sig));
    let mut bad = sig.clone();
    bad[size / 2] ^= 1;
    assert!(!verify_slh_dsa(public, msg, &[], &bad));
    let again = sign(hsm, id, alg, SignInput::Message(msg), EcdsaFormat::Der).unwrap();
    assert_ne!(sig, again, "{alg}: randomized signatures should differ");
    assert!(verify_slh_dsa(public, msg, &[], &again));
    let ctx = b"signet test context";
    let with_ctx = signet_hsm::sign_with_context(hsm, id, alg, msg, ctx).unwrap();
    assert!(verify_slh_dsa(public, msg, ctx, &with_ctx));
    assert!(!verify_slh_dsa(public, msg, &[], &with_ctx));
    let err = signet_hsm::sign_with_context(hsm, id, alg, msg, &[7u8; 256]).unwrap_err();
    assert!(err.to_string().contains("at most 255"), "{err}");
    let digest = signet_hsm::Hash::Sha256.digest(msg);
    let err = sign(hsm, id, alg, SignInput::Digest(&digest), EcdsaFormat::Der).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{alg}: {err}");
    // The SPKI is RFC 9909's: the algorithm OID alone (2.16.840.1.101.3.4.3.20 or .21), then
    // the FIPS 205 key (PK.seed || PK.root, 32 bytes).
    let spki = public.spki_der();
    let last = if public.spec() == KeySpec::SlhDsaSha2_128s {
        20
    } else {
        21
    };
    assert_eq!(
        &spki[..15],
        &[
            0x30, 0x30, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x03,
            last
        ]
    );
    assert_eq!(&spki[spki.len() - 32..], public.raw().as_slice());
    assert_eq!(public.jwk()["kty"], "AKP");
    assert_eq!(public.jwk()["alg"], alg.name());
}

#[test]
fn slh_dsa_sha2_128s_signs_and_verifies() {
    every_algorithm_of(KeySpec::SlhDsaSha2_128s);
}

#[test]
fn slh_dsa_sha2_128f_signs_and_verifies() {
    every_algorithm_of(KeySpec::SlhDsaSha2_128f);
}

#[test]
fn ml_dsa_44_signs_and_verifies() {
    every_algorithm_of(KeySpec::MlDsa44);
}

#[test]
fn ml_dsa_65_signs_and_verifies() {
    every_algorithm_of(KeySpec::MlDsa65);
}

#[test]
fn ml_dsa_87_signs_and_verifies() {
    every_algorithm_of(KeySpec::MlDsa87);
}

#[test]
fn ec_p256_signs_and_verifies() {
    every_algorithm_of(KeySpec::EcP256);
}

#[test]
fn ec_p384_signs_and_verifies() {
    every_algorithm_of(KeySpec::EcP384);
}

#[test]
fn ed25519_signs_and_verifies() {
    every_algorithm_of(KeySpec::Ed25519);
}

#[test]
fn rsa_2048_signs_and_verifies() {
    every_algorithm_of(KeySpec::Rsa2048);
}

#[test]
fn rsa_3072_signs_and_verifies() {
    every_algorithm_of(KeySpec::Rsa3072);
}

#[test]
fn rsa_4096_signs_and_verifies() {
    every_algorithm_of(KeySpec::Rsa4096);
}

#[test]
fn the_backend_says_what_it_supports() {
    let (token, hsm) = backend(1);
    let info = hsm.info().unwrap();
    eprintln!(
        "{}: {} | specs {:?} | algorithms {:?}",
        token.kind.name(),
        info.library,
        info.specs,
        info.algorithms
    );
    assert_eq!(info.kind, "pkcs11");
    assert_eq!(info.token_label, token.label);
    assert!(info.specs.contains(&KeySpec::EcP256), "{info:?}");
    for spec in &info.specs {
        assert!(
            spec.algorithms()
                .iter()
                .any(|a| info.algorithms.contains(a)),
            "{spec} offered without an algorithm"
        );
    }
}

#[test]
fn public_key_exports_are_consistent() {
    let (token, hsm) = backend(1);
    let key = generate(&token, &hsm, "jwk", KeySpec::EcP256);
    let public = hsm.public_key(&key.id).unwrap();
    let jwk = public.jwk();
    assert_eq!(jwk["kty"], "EC");
    assert_eq!(jwk["crv"], "P-256");
    // openssl reads the PEM and agrees on the curve.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("k.pem"), public.spki_pem()).unwrap();
    let out = Command::new("openssl")
        .args(["pkey", "-pubin", "-in", "k.pem", "-text", "-noout"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("prime256v1") || text.contains("P-256"),
        "{text}"
    );
    let info = hsm.info().unwrap();
    if info.specs.contains(&KeySpec::Ed25519) {
        let ed = generate(&token, &hsm, "ed", KeySpec::Ed25519);
        let ed_jwk = hsm.public_key(&ed.id).unwrap().jwk();
        assert_eq!(
            (ed_jwk["kty"].as_str(), ed_jwk["crv"].as_str()),
            (Some("OKP"), Some("Ed25519"))
        );
    }
    let rsa = generate(&token, &hsm, "rsa", KeySpec::Rsa2048);
    assert_eq!(hsm.public_key(&rsa.id).unwrap().jwk()["e"], "AQAB");
}

#[test]
fn private_keys_cannot_be_read() {
    use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
    let (token, hsm) = backend(1);
    let ec = generate(&token, &hsm, "secret-ec", KeySpec::EcP256);
    let rsa = generate(&token, &hsm, "secret-rsa", KeySpec::Rsa2048);
    for key in [&ec, &rsa] {
        let p = hsm.protection(&key.id).unwrap();
        assert!(p.is_locked_in(), "{p:?}");
        assert_eq!(p.generated_on_device, Some(true), "{p:?}");
    }
    // A second, independent PKCS#11 handle on the same token asks for the private values.
    let ctx = cryptoki::context::Pkcs11::new(&token.module).unwrap();
    let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
        cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
    ));
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == token.label)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    // Without the PIN (another process: login is per process), neither half of a key is
    // visible; public key labels carry key names.
    let listing = std::process::Command::new("pkcs11-tool")
        .arg("--module")
        .arg(&token.module)
        .args(["--token-label", &token.label, "--list-objects"])
        .envs(token.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.status.success(), "{listed}");
    for key in [&ec, &rsa] {
        assert!(
            !listed.contains(&key.label),
            "{} visible without login:\n{listed}",
            key.label
        );
    }
    let _ = session.login(
        cryptoki::session::UserType::User,
        Some(&token.pin.expose().into()),
    );
    for key in [&ec, &rsa] {
        // Both halves are unmodifiable: anyone with the PIN cannot relabel a key or change the
        // CKA_ID Signet finds it by.
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let handle = session
                .find_objects(&[Attribute::Class(class), Attribute::Id(key.id.0.clone())])
                .unwrap()[0];
            let modifiable = session
                .get_attributes(handle, &[AttributeType::Modifiable])
                .unwrap();
            assert_eq!(modifiable, vec![Attribute::Modifiable(false)], "{class:?}");
            assert!(session
                .update_attributes(handle, &[Attribute::Label(b"renamed".to_vec())])
                .is_err());
            assert!(session
                .update_attributes(handle, &[Attribute::Id(vec![1, 2, 3])])
                .is_err());
        }
    }
    for (key, secret) in [
        (&ec, AttributeType::Value),
        (&rsa, AttributeType::PrivateExponent),
    ] {
        let handle = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Id(key.id.0.clone()),
            ])
            .unwrap()[0];
        let info = session.get_attribute_info(handle, &[secret]).unwrap();
        assert!(matches!(info[0], AttributeInfo::Sensitive), "{info:?}");
        assert!(session
            .get_attributes(handle, &[secret])
            .unwrap()
            .is_empty());
        // Flags as the token reports them to anyone.
        let flags = session
            .get_attributes(
                handle,
                &[
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Decrypt,
                ],
            )
            .unwrap();
        assert!(flags.contains(&Attribute::Extractable(false)));
        assert!(flags.contains(&Attribute::NeverExtractable(true)));
        assert!(flags.contains(&Attribute::Decrypt(false)));
    }
}

#[test]
fn concurrent_signing_with_a_small_pool() {
    let (token, hsm) = backend(2);
    let hsm = Arc::new(hsm);
    let key = generate(&token, &hsm, "busy", KeySpec::EcP256);
    let public = hsm.public_key(&key.id).unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let hsm = hsm.clone();
            let id = key.id.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let msg = format!("thread {t} message {i}").into_bytes();
                        let sig = sign(
                            &*hsm,
                            &id,
                            SignatureAlgorithm::Es256,
                            SignInput::Message(&msg),
                            EcdsaFormat::Der,
                        )
                        .unwrap();
                        (msg, sig)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut checked = 0;
    for t in threads {
        for (msg, sig) in t.join().unwrap() {
            assert!(ring_verify(
                &public,
                SignatureAlgorithm::Es256,
                false,
                &msg,
                &sig
            ));
            checked += 1;
        }
    }
    assert_eq!(checked, 400);
    let info = hsm.info().unwrap();
    assert!(
        info.sessions_open <= 2,
        "pool grew to {}",
        info.sessions_open
    );
}

/// Calls `C_CloseAllSessions` / `C_Logout` through a second load of the module, as another
/// handle in the process (an operator tool, a library) would. Through the function list, since
/// some modules (kryoptic) export no other `C_*` symbol.
#[allow(unsafe_code)]
mod underneath {
    use std::path::Path;

    use cryptoki_sys::{CKR_OK, CK_FUNCTION_LIST_PTR, CK_RV, CK_SESSION_HANDLE, CK_SLOT_ID};

    fn slot_of(module: &Path, label: &str) -> CK_SLOT_ID {
        let ctx = cryptoki::context::Pkcs11::new(module).unwrap();
        let _ = ctx.initialize(cryptoki::context::CInitializeArgs::new(
            cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
        ));
        let slot = ctx
            .get_slots_with_token()
            .unwrap()
            .into_iter()
            .find(|s| ctx.get_token_info(*s).unwrap().label().trim_end() == label)
            .unwrap()
            .id() as CK_SLOT_ID;
        // Dropping the context would C_Finalize the module for the whole process (the
        // backend's handle included): this helper only looks.
        std::mem::forget(ctx);
        slot
    }

    /// The module's function list (the library stays loaded: the process holds it already).
    fn functions(module: &Path) -> &'static cryptoki_sys::CK_FUNCTION_LIST {
        // SAFETY: the module is a PKCS#11 library already loaded and initialised in this
        // process; C_GetFunctionList has this signature in every PKCS#11 module, and the list
        // it returns lives as long as the library, which is never unloaded here.
        unsafe {
            let lib = Box::leak(Box::new(libloading::Library::new(module).unwrap()));
            let get: libloading::Symbol<unsafe extern "C" fn(*mut CK_FUNCTION_LIST_PTR) -> CK_RV> =
                lib.get(b"C_GetFunctionList\0").unwrap();
            let mut list: CK_FUNCTION_LIST_PTR = std::ptr::null_mut();
            assert_eq!(get(&mut list), CKR_OK);
            let list = &*list;
            // Most modules hand back the instance the process already initialised (this says
            // CKR_CRYPTOKI_ALREADY_INITIALIZED); p11-kit's client hands out an instance of its
            // own, an independent client of the remote token.
            let rv = (list.C_Initialize.unwrap())(std::ptr::null_mut());
            assert!(
                rv == CKR_OK || rv == cryptoki_sys::CKR_CRYPTOKI_ALREADY_INITIALIZED,
                "C_Initialize: {rv:#x}"
            );
            list
        }
    }

    pub fn close_all_sessions(module: &Path, label: &str) {
        let slot = slot_of(module, label);
        let f = functions(module);
        // SAFETY: C_CloseAllSessions takes a plain slot id.
        let rv = unsafe { (f.C_CloseAllSessions.unwrap())(slot) };
        assert_eq!(rv, CKR_OK);
    }

    pub fn logout(module: &Path, label: &str) {
        let slot = slot_of(module, label);
        let f = functions(module);
        // SAFETY: the handle is written by C_OpenSession before use and closed afterwards.
        unsafe {
            let mut session: CK_SESSION_HANDLE = 0;
            let rv = (f.C_OpenSession.unwrap())(
                slot,
                cryptoki_sys::CKF_SERIAL_SESSION,
                std::ptr::null_mut(),
                None,
                &mut session,
            );
            assert_eq!(rv, CKR_OK);
            assert_eq!((f.C_Logout.unwrap())(session), CKR_OK);
            (f.C_CloseSession.unwrap())(session);
        }
    }
}

#[test]
fn sessions_closed_underneath_are_replaced() {
    let (token, hsm) = backend(3);
    let key = generate(&token, &hsm, "survivor", KeySpec::EcP256);
    let public = hsm.public_key(&key.id).unwrap();
    let sign = |m: &[u8]| {
        sign(
            &hsm,
            &key.id,
            SignatureAlgorithm::Es256,
            SignInput::Message(m),
            EcdsaFormat::Der,
        )
    };
    sign(b"before").unwrap();
    underneath::close_all_sessions(&token.module, &token.label);
    let sig = sign(b"after close-all").expect("sign after C_CloseAllSessions");
    assert!(ring_verify(
        &public,
        SignatureAlgorithm::Es256,
        false,
        b"after close-all",
        &sig
    ));
    underneath::logout(&token.module, &token.label);
    let sig = sign(b"after logout").expect("sign after C_Logout");
    assert!(ring_verify(
        &public,
        SignatureAlgorithm::Es256,
        false,
        b"after logout",
        &sig
    ));
    assert!(own_keys(&token, &hsm)
        .iter()
        .any(|k| k.label == token.unique("survivor")));
}

#[test]
fn bad_input_gets_typed_errors() {
    let (token, hsm) = backend(1);
    let ec = generate(&token, &hsm, "ec", KeySpec::EcP256);
    let rsa = generate(&token, &hsm, "rsa", KeySpec::Rsa2048);
    let msg = SignInput::Message(b"m");
    let der = EcdsaFormat::Der;

    let unknown = KeyId(vec![9; 16]);
    assert!(matches!(
        sign(&hsm, &unknown, SignatureAlgorithm::Es256, msg, der),
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        hsm.public_key(&unknown),
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(
        hsm.find_by_label(&token.unique("nope")),
        Err(Error::KeyNotFound(_))
    ));
    assert!(matches!(hsm.destroy(&unknown), Err(Error::KeyNotFound(_))));
    assert!(matches!(
        sign(&hsm, &ec.id, SignatureAlgorithm::Es384, msg, der),
        Err(Error::AlgorithmMismatch { .. })
    ));
    assert!(matches!(
        sign(
            &hsm,
            &ec.id,
            SignatureAlgorithm::Es256,
            SignInput::Digest(&[0; 20]),
            der
        ),
        Err(Error::DigestLength {
            expected: 32,
            actual: 20,
            ..
        })
    ));
    assert!(matches!(
        sign(
            &hsm,
            &ec.id,
            SignatureAlgorithm::Es256,
            SignInput::Message(b""),
            der
        ),
        Err(Error::EmptyInput)
    ));
    assert!(matches!(
        sign(
            &hsm,
            &rsa.id,
            SignatureAlgorithm::EdDsa,
            SignInput::Digest(&[0; 32]),
            der
        ),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        hsm.generate(&KeyRequest::named(token.unique("ec"), KeySpec::EcP256)),
        Err(Error::KeyExists(_))
    ));
    assert!(HsmSigner::new(Arc::new(hsm), ec.id.clone(), SignatureAlgorithm::Rs256).is_err());

    // A wrong PIN is refused clearly, and the token is unchanged: the right PIN still sees the keys.
    let mut wrong = token.config(1);
    wrong.pin = Pin::new("not-the-pin".into());
    let err = Pkcs11Backend::open(wrong).unwrap_err();
    assert!(matches!(err, Error::PinIncorrect { .. }), "{err}");
    assert!(!err.to_string().contains("not-the-pin"));
    let again = Pkcs11Backend::open(token.config(1)).unwrap();
    assert_eq!(own_keys(&token, &again).len(), 2);

    let mut missing = token.config(1);
    missing.module = "/nonexistent/libpkcs11.so".into();
    assert!(matches!(
        Pkcs11Backend::open(missing),
        Err(Error::ModuleLoad { .. })
    ));
    let mut no_token = token.config(1);
    no_token.token = TokenSelector::Label("no-such-token".into());
    let err = Pkcs11Backend::open(no_token).unwrap_err();
    assert!(matches!(err, Error::TokenNotFound(_)), "{err}");
    // The answer names what the module does have (the label usually differs by a letter).
    assert!(
        err.to_string().contains("no-such-token") && err.to_string().contains("the module has \""),
        "{err}"
    );
}

#[test]
fn signer_and_destroy() {
    let (token, hsm) = backend(1);
    let key = generate(&token, &hsm, "signer", KeySpec::EcP384);
    let hsm: Arc<dyn Backend> = Arc::new(hsm);
    let signer = HsmSigner::new(hsm.clone(), key.id.clone(), SignatureAlgorithm::Es384).unwrap();
    let sig = signer.sign(b"hello").unwrap();
    assert!(ring_verify(
        signer.public_key(),
        SignatureAlgorithm::Es384,
        false,
        b"hello",
        &sig
    ));
    assert_eq!(hsm.find(&key.id).unwrap().label, token.unique("signer"));
    hsm.destroy(&key.id).unwrap();
    assert!(matches!(hsm.find(&key.id), Err(Error::KeyNotFound(_))));
    assert!(!hsm.list().unwrap().iter().any(|k| k.id == key.id));
    // No half is left behind: neither the private nor the public key.
    assert!(matches!(
        hsm.public_key(&key.id),
        Err(Error::KeyNotFound(_))
    ));
}

#[test]
fn token_verification_accepts_good_and_refuses_bad_signatures() {
    let (token, hsm) = backend(1);
    let info = hsm.info().unwrap();
    for spec in [KeySpec::EcP256, KeySpec::Ed25519, KeySpec::Rsa2048] {
        if !info.specs.contains(&spec) {
            continue;
        }
        let key = generate(&token, &hsm, &format!("v-{spec}"), spec);
        for &alg in spec.algorithms() {
            if !info.algorithms.contains(&alg) {
                continue;
            }
            for format in [EcdsaFormat::Der, EcdsaFormat::Raw] {
                let msg = SignInput::Message(b"verify me");
                let sig = sign(&hsm, &key.id, alg, msg, format).unwrap();
                assert!(
                    hsm.verify(&key.id, alg, msg, &sig, format).unwrap(),
                    "{spec} {alg}"
                );
                assert!(!hsm
                    .verify(&key.id, alg, SignInput::Message(b"other"), &sig, format)
                    .unwrap());
                assert!(!hsm
                    .verify(&key.id, alg, msg, &sig[..sig.len() - 1], format)
                    .unwrap());
                if let Some(hash) = alg.hash() {
                    let d = hash.digest(b"verify me");
                    assert!(hsm
                        .verify(&key.id, alg, SignInput::Digest(&d), &sig, format)
                        .unwrap());
                }
            }
        }
    }
}

#[test]
fn records_in_the_token_replace_each_other() {
    let (token, hsm) = backend(1);
    let name = token.unique("record");
    assert!(hsm.read_records(&name).unwrap().is_empty());
    hsm.write_record(&name, b"one", &|_| true).unwrap();
    hsm.write_record(&name, b"two", &|_| true).unwrap();
    assert_eq!(hsm.read_records(&name).unwrap(), vec![b"two".to_vec()]);
    // A value the writer does not supersede (another writer's newer one) stays.
    hsm.write_record(&name, b"three", &|v| v != b"two").unwrap();
    let mut values = hsm.read_records(&name).unwrap();
    values.sort();
    assert_eq!(values, vec![b"three".to_vec(), b"two".to_vec()]);
}

/// Bring your own key: openssl makes each kind of key the token holds, the backend imports its
/// PKCS#8 form, signs, and openssl verifies with the original key's public half. The token
/// reports the imported private key sensitive and non-extractable, and not generated inside.
#[test]
fn imported_keys_sign_and_stay_in_the_token() {
    use signet_hsm::KeyMaterial;
    let (token, hsm) = backend(1);
    let info = hsm.info().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kinds: [(KeySpec, &[&str], SignatureAlgorithm); 4] = [
        (
            KeySpec::EcP256,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            SignatureAlgorithm::Es256,
        ),
        (
            KeySpec::EcP384,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            SignatureAlgorithm::Es384,
        ),
        (
            KeySpec::Ed25519,
            &["-algorithm", "ED25519"],
            SignatureAlgorithm::EdDsa,
        ),
        (
            KeySpec::Rsa2048,
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            SignatureAlgorithm::Rs256,
        ),
    ];
    let mut imported = 0;
    for (spec, genargs, alg) in kinds {
        let out = Command::new("openssl")
            .current_dir(dir.path())
            .args(["genpkey"])
            .args(genargs)
            .args(["-out", "key.pem"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        // PKCS#8, as a PKCS#12 file holds it (genpkey's DER for EC is SEC1).
        let out = Command::new("openssl")
            .current_dir(dir.path())
            .args([
                "pkcs8", "-topk8", "-nocrypt", "-in", "key.pem", "-outform", "DER",
            ])
            .args(["-out", "key.der"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let der = std::fs::read(dir.path().join("key.der")).unwrap();
        let material = KeyMaterial::from_pkcs8(&der).unwrap();
        assert_eq!(material.spec(), spec);
        let request = KeyRequest::named(token.unique(&format!("imported-{spec}")), spec);
        if !info.specs.contains(&spec) {
            let err = hsm.import(&request, &material).unwrap_err();
            assert!(matches!(err, Error::SpecUnsupported { .. }), "{err}");
            continue;
        }
        let key = hsm
            .import(&request, &material)
            .unwrap_or_else(|e| panic!("{} {spec}: {e}", token.kind.name()));
        assert_eq!(
            hsm.public_key(&key.id).unwrap().spki_der(),
            material.public_key().spki_der()
        );
        // The original public key, from openssl, verifies what the token signed.
        let out = Command::new("openssl")
            .current_dir(dir.path())
            .args([
                "pkey", "-inform", "DER", "-in", "key.der", "-pubout", "-out", "pub.pem",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        let msg = b"signed by an imported key";
        let sig = sign(
            &hsm,
            &key.id,
            alg,
            SignInput::Message(msg),
            EcdsaFormat::Der,
        )
        .unwrap();
        std::fs::write(dir.path().join("msg"), msg).unwrap();
        std::fs::write(dir.path().join("sig"), &sig).unwrap();
        let mut verify = Command::new("openssl");
        verify.current_dir(dir.path());
        if alg == SignatureAlgorithm::EdDsa {
            verify.args([
                "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "msg",
                "-sigfile", "sig",
            ]);
        } else {
            let digest = format!("-sha{}", alg.hash().unwrap().len() * 8);
            verify.args([
                "dgst",
                &digest,
                "-verify",
                "pub.pem",
                "-signature",
                "sig",
                "msg",
            ]);
        }
        let out = verify.output().unwrap();
        assert!(
            out.status.success(),
            "{spec}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let p = hsm.protection(&key.id).unwrap();
        assert_eq!(p.sensitive, Some(true), "{p:?}");
        assert_eq!(p.extractable, Some(false), "{p:?}");
        assert_eq!(p.persistent, Some(true), "{p:?}");
        assert_eq!(p.needs_login, Some(true), "{p:?}");
        assert_eq!(p.generated_on_device, Some(false), "{p:?}");
        assert!(!p.is_locked_in(), "an imported key was outside once: {p:?}");
        // The same label twice is refused.
        assert!(matches!(
            hsm.import(&request, &material),
            Err(Error::KeyExists(_))
        ));
        imported += 1;
    }
    assert!(imported >= 3, "{}", token.kind.name());
}
