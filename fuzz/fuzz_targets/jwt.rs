//! Token parsing and checking (what introspection does before the store), and JWKS parsing.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use signet::domain::tokens::{jwk, jwt};
use signet_hsm::{KeySpec, PublicKey, SignatureAlgorithm};

fn keys() -> &'static jwt::VerificationKeys {
    static KEYS: OnceLock<jwt::VerificationKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key");
        let public = PublicKey::from_ec_point(KeySpec::EcP256, pair.public_key().as_ref())
            .expect("public key");
        let mut keys = BTreeMap::new();
        keys.insert("k1".to_string(), (SignatureAlgorithm::Es256, public));
        keys
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(parsed) = jwt::parse(text) {
            let _ = jwt::check(
                &parsed,
                keys(),
                "https://issuer",
                Some("api"),
                1_800_000_000,
            );
            let _ = format!("{parsed:?}");
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = jwk::keys_from_jwks(&value);
        let _ = jwk::public_from_jwk(&value);
    }
});
