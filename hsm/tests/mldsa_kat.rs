#![allow(clippy::unwrap_used)]
//! Known answers for the software ML-DSA verifier: Wycheproof's ML-DSA-44/65/87 verification
//! vectors (a selection in tests/data, with its source), so that the verifier is checked against
//! published results and not only against signatures made by the token it checks.

use signet_hsm::verify::verify_ml_dsa;
use signet_hsm::{KeySpec, PublicKey};

#[test]
fn wycheproof_ml_dsa_verification_vectors() {
    let text = include_str!("data/mldsa_verify_wycheproof.json");
    let data: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut checked = 0;
    for (name, spec) in [
        ("ML-DSA-44", KeySpec::MlDsa44),
        ("ML-DSA-65", KeySpec::MlDsa65),
        ("ML-DSA-87", KeySpec::MlDsa87),
    ] {
        let set = &data["sets"][name];
        let keys: Vec<Vec<u8>> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| hex::decode(k.as_str().unwrap()).unwrap())
            .collect();
        let (mut valid, mut invalid) = (0, 0);
        for test in set["tests"].as_array().unwrap() {
            let field = |f: &str| hex::decode(test[f].as_str().unwrap()).unwrap();
            let id = &test["tcId"];
            let expected = test["valid"].as_bool().unwrap();
            let key = &keys[test["key"].as_u64().unwrap() as usize];
            let got = match PublicKey::from_ml_dsa(spec, key) {
                Ok(public) => verify_ml_dsa(&public, &field("msg"), &field("ctx"), &field("sig")),
                // A key of the wrong length is refused before any signature is looked at.
                Err(_) => false,
            };
            assert_eq!(got, expected, "{name} tcId {id} {}", test["flags"]);
            if expected {
                valid += 1;
            } else {
                invalid += 1;
            }
            checked += 1;
        }
        assert!(
            valid >= 10 && invalid >= 10,
            "{name}: {valid} valid, {invalid} invalid"
        );
    }
    assert_eq!(checked, 122);
}
