//! `C_GenerateKeyPair`: a key pair template becomes a Signet key spec and name. Signet keys are
//! always token objects, sensitive and never extractable, and Signet assigns their id; a
//! template that asks otherwise is refused, not quietly changed.

use cryptoki_sys::*;

use crate::objects::{ED25519 as ED25519_OID, P256, P384};

/// The printable string "edwards25519", which PKCS#11 3.0 also allows for Ed25519.
const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// The key name (the private key's `CKA_LABEL`, else the public key's).
    pub name: String,
    /// Signet's key spec.
    pub spec: &'static str,
}

type Template<'a> = &'a [(CK_ATTRIBUTE_TYPE, Vec<u8>)];

fn find<'a>(template: Template<'a>, t: CK_ATTRIBUTE_TYPE) -> Option<&'a [u8]> {
    template
        .iter()
        .find(|(ty, _)| *ty == t)
        .map(|(_, v)| v.as_slice())
}

fn flag(template: Template<'_>, t: CK_ATTRIBUTE_TYPE) -> Option<bool> {
    find(template, t).map(|v| v.first().is_some_and(|&b| b != CK_FALSE))
}

fn ulong(value: &[u8]) -> Option<CK_ULONG> {
    Some(CK_ULONG::from_ne_bytes(value.try_into().ok()?))
}

/// The key a `C_GenerateKeyPair` call asks for, or the `CKR_*` refusing it.
pub fn new_key(
    mechanism: CK_MECHANISM_TYPE,
    public: Template<'_>,
    private: Template<'_>,
) -> Result<NewKey, CK_RV> {
    // What Signet keys always are.
    for template in [public, private] {
        if flag(template, CKA_TOKEN) == Some(false) {
            return Err(CKR_TEMPLATE_INCONSISTENT);
        }
    }
    if flag(private, CKA_EXTRACTABLE) == Some(true) || flag(private, CKA_SENSITIVE) == Some(false) {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    for t in [CKA_DECRYPT, CKA_UNWRAP, CKA_DERIVE] {
        if flag(private, t) == Some(true) {
            return Err(CKR_ATTRIBUTE_VALUE_INVALID);
        }
    }
    let spec = match mechanism {
        CKM_EC_KEY_PAIR_GEN => match find(public, CKA_EC_PARAMS) {
            Some(p) if p == P256 => "ec-p256",
            Some(p) if p == P384 => "ec-p384",
            Some(_) => return Err(CKR_CURVE_NOT_SUPPORTED),
            None => return Err(CKR_TEMPLATE_INCOMPLETE),
        },
        CKM_EC_EDWARDS_KEY_PAIR_GEN => match find(public, CKA_EC_PARAMS) {
            None => "ed25519",
            Some(p) if p == ED25519_OID || p == ED25519_NAME => "ed25519",
            Some(_) => return Err(CKR_CURVE_NOT_SUPPORTED),
        },
        CKM_RSA_PKCS_KEY_PAIR_GEN => {
            if let Some(e) = find(public, CKA_PUBLIC_EXPONENT) {
                let first = e.iter().position(|&b| b != 0).unwrap_or(e.len());
                if e[first..] != [0x01, 0x00, 0x01] {
                    return Err(CKR_ATTRIBUTE_VALUE_INVALID);
                }
            }
            match find(public, CKA_MODULUS_BITS).and_then(ulong) {
                Some(2048) => "rsa-2048",
                Some(3072) => "rsa-3072",
                Some(4096) => "rsa-4096",
                Some(_) => return Err(CKR_ATTRIBUTE_VALUE_INVALID),
                None => return Err(CKR_TEMPLATE_INCOMPLETE),
            }
        }
        _ => return Err(CKR_MECHANISM_INVALID),
    };
    let label = find(private, CKA_LABEL)
        .or_else(|| find(public, CKA_LABEL))
        .ok_or(CKR_TEMPLATE_INCOMPLETE)?;
    let name = std::str::from_utf8(label).map_err(|_| CKR_ATTRIBUTE_VALUE_INVALID)?;
    if !signet_client::is_key_name(name) {
        return Err(CKR_ATTRIBUTE_VALUE_INVALID);
    }
    Ok(NewKey {
        name: name.to_string(),
        spec,
    })
}

/// The key-generation mechanisms.
pub const MECHANISMS: &[(CK_MECHANISM_TYPE, CK_KEY_TYPE)] = &[
    (CKM_EC_KEY_PAIR_GEN, CKK_EC),
    (CKM_EC_EDWARDS_KEY_PAIR_GEN, CKK_EC_EDWARDS),
    (CKM_RSA_PKCS_KEY_PAIR_GEN, CKK_RSA),
];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn label(name: &str) -> (CK_ATTRIBUTE_TYPE, Vec<u8>) {
        (CKA_LABEL, name.as_bytes().to_vec())
    }

    #[test]
    fn templates_become_specs() {
        let ec = [(CKA_EC_PARAMS, P384.to_vec())];
        assert_eq!(
            new_key(CKM_EC_KEY_PAIR_GEN, &ec, &[label("k1")]),
            Ok(NewKey {
                name: "k1".into(),
                spec: "ec-p384"
            })
        );
        let rsa = [(CKA_MODULUS_BITS, (3072 as CK_ULONG).to_ne_bytes().to_vec())];
        assert_eq!(
            new_key(CKM_RSA_PKCS_KEY_PAIR_GEN, &rsa, &[label("r")])
                .unwrap()
                .spec,
            "rsa-3072"
        );
        assert_eq!(
            new_key(CKM_EC_EDWARDS_KEY_PAIR_GEN, &[], &[label("e")])
                .unwrap()
                .spec,
            "ed25519"
        );
    }

    #[test]
    fn what_signet_keys_cannot_be_is_refused() {
        let ec = [(CKA_EC_PARAMS, P256.to_vec())];
        let refuse = |private: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]| {
            new_key(CKM_EC_KEY_PAIR_GEN, &ec, private).unwrap_err()
        };
        assert_eq!(
            refuse(&[label("k"), (CKA_EXTRACTABLE, vec![CK_TRUE])]),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            refuse(&[label("k"), (CKA_SENSITIVE, vec![CK_FALSE])]),
            CKR_ATTRIBUTE_VALUE_INVALID
        );
        assert_eq!(
            refuse(&[label("k"), (CKA_TOKEN, vec![CK_FALSE])]),
            CKR_TEMPLATE_INCONSISTENT
        );
        assert_eq!(refuse(&[]), CKR_TEMPLATE_INCOMPLETE);
        assert_eq!(refuse(&[label("a/b")]), CKR_ATTRIBUTE_VALUE_INVALID);
        let k1 = [(
            CKA_EC_PARAMS,
            vec![0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
        )];
        assert_eq!(
            new_key(CKM_EC_KEY_PAIR_GEN, &k1, &[label("k")]),
            Err(CKR_CURVE_NOT_SUPPORTED)
        );
        let bits = [(CKA_MODULUS_BITS, (1024 as CK_ULONG).to_ne_bytes().to_vec())];
        assert_eq!(
            new_key(CKM_RSA_PKCS_KEY_PAIR_GEN, &bits, &[label("k")]),
            Err(CKR_ATTRIBUTE_VALUE_INVALID)
        );
    }
}
