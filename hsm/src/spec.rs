//! Key specs and signature algorithms, with the names used on the CLI, in config and on the wire.

use std::fmt;
use std::str::FromStr;

/// The kinds of key pair Signet generates in a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeySpec {
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// EdDSA on Curve25519.
    Ed25519,
    /// RSA, 2048-bit modulus.
    Rsa2048,
    /// RSA, 3072-bit modulus.
    Rsa3072,
    /// RSA, 4096-bit modulus.
    Rsa4096,
    /// ML-DSA-44 (FIPS 204, security category 2).
    MlDsa44,
    /// ML-DSA-65 (FIPS 204, security category 3).
    MlDsa65,
    /// ML-DSA-87 (FIPS 204, security category 5).
    MlDsa87,
    /// SLH-DSA-SHA2-128s (FIPS 205, security category 1, small signatures, slow to sign).
    SlhDsaSha2_128s,
    /// SLH-DSA-SHA2-128f (FIPS 205, security category 1, fast to sign, larger signatures).
    SlhDsaSha2_128f,
}

impl KeySpec {
    /// Every spec, in a stable order.
    pub const ALL: [KeySpec; 11] = [
        KeySpec::EcP256,
        KeySpec::EcP384,
        KeySpec::Ed25519,
        KeySpec::Rsa2048,
        KeySpec::Rsa3072,
        KeySpec::Rsa4096,
        KeySpec::MlDsa44,
        KeySpec::MlDsa65,
        KeySpec::MlDsa87,
        KeySpec::SlhDsaSha2_128s,
        KeySpec::SlhDsaSha2_128f,
    ];

    /// The name used in config, CLI and API (`ec-p256`, …).
    pub fn name(self) -> &'static str {
        match self {
            KeySpec::EcP256 => "ec-p256",
            KeySpec::EcP384 => "ec-p384",
            KeySpec::Ed25519 => "ed25519",
            KeySpec::Rsa2048 => "rsa-2048",
            KeySpec::Rsa3072 => "rsa-3072",
            KeySpec::Rsa4096 => "rsa-4096",
            KeySpec::MlDsa44 => "ml-dsa-44",
            KeySpec::MlDsa65 => "ml-dsa-65",
            KeySpec::MlDsa87 => "ml-dsa-87",
            KeySpec::SlhDsaSha2_128s => "slh-dsa-sha2-128s",
            KeySpec::SlhDsaSha2_128f => "slh-dsa-sha2-128f",
        }
    }

    /// True for the ML-DSA specs.
    pub fn is_ml_dsa(self) -> bool {
        matches!(self, KeySpec::MlDsa44 | KeySpec::MlDsa65 | KeySpec::MlDsa87)
    }

    /// True for the SLH-DSA specs.
    pub fn is_slh_dsa(self) -> bool {
        matches!(self, KeySpec::SlhDsaSha2_128s | KeySpec::SlhDsaSha2_128f)
    }

    /// True for the post-quantum specs (ML-DSA, SLH-DSA): their keys sign the whole message,
    /// with an optional context string.
    pub fn is_post_quantum(self) -> bool {
        self.is_ml_dsa() || self.is_slh_dsa()
    }

    /// What a token needs to offer this spec, when that is more than the usual mechanisms: the
    /// clause a "not supported" answer names.
    pub fn needs(self) -> Option<&'static str> {
        if self.is_ml_dsa() {
            Some("needs a PKCS#11 3.2 token with CKM_ML_DSA_KEY_PAIR_GEN and CKM_ML_DSA")
        } else if self.is_slh_dsa() {
            Some("needs a PKCS#11 3.2 token with CKM_SLH_DSA_KEY_PAIR_GEN and CKM_SLH_DSA")
        } else {
            None
        }
    }

    /// RSA modulus size in bits, for RSA specs.
    pub fn rsa_bits(self) -> Option<u32> {
        match self {
            KeySpec::Rsa2048 => Some(2048),
            KeySpec::Rsa3072 => Some(3072),
            KeySpec::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    /// Whether `alg` may be used with a key of this spec.
    pub fn allows(self, alg: SignatureAlgorithm) -> bool {
        use SignatureAlgorithm::*;
        match self {
            KeySpec::EcP256 => alg == Es256,
            KeySpec::EcP384 => alg == Es384,
            KeySpec::Ed25519 => alg == EdDsa,
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                matches!(alg, Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512)
            }
            KeySpec::MlDsa44
            | KeySpec::MlDsa65
            | KeySpec::MlDsa87
            | KeySpec::SlhDsaSha2_128s
            | KeySpec::SlhDsaSha2_128f => self.algorithms().contains(&alg),
        }
    }

    /// The algorithms usable with this spec; the first is the default.
    pub fn algorithms(self) -> &'static [SignatureAlgorithm] {
        use SignatureAlgorithm::*;
        match self {
            KeySpec::EcP256 => &[Es256],
            KeySpec::EcP384 => &[Es384],
            KeySpec::Ed25519 => &[EdDsa],
            KeySpec::MlDsa44 => &[
                MlDsa44,
                HashMlDsa44Sha512,
                HashMlDsa44Sha256,
                HashMlDsa44Sha384,
            ],
            KeySpec::MlDsa65 => &[
                MlDsa65,
                HashMlDsa65Sha512,
                HashMlDsa65Sha256,
                HashMlDsa65Sha384,
            ],
            KeySpec::MlDsa87 => &[
                MlDsa87,
                HashMlDsa87Sha512,
                HashMlDsa87Sha256,
                HashMlDsa87Sha384,
            ],
            KeySpec::SlhDsaSha2_128s => &[
                SlhDsaSha2_128s,
                HashSlhDsaSha2_128sSha256,
                HashSlhDsaSha2_128sSha512,
            ],
            KeySpec::SlhDsaSha2_128f => &[
                SlhDsaSha2_128f,
                HashSlhDsaSha2_128fSha256,
                HashSlhDsaSha2_128fSha512,
            ],
            KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
                &[Rs256, Rs384, Rs512, Ps256, Ps384, Ps512]
            }
        }
    }

    /// The algorithm to use when the caller names none.
    pub fn default_algorithm(self) -> SignatureAlgorithm {
        self.algorithms()[0]
    }

    /// `wanted` where this spec allows it, else the default (an ML-DSA key has exactly one).
    pub fn algorithm_or_default(self, wanted: SignatureAlgorithm) -> SignatureAlgorithm {
        if self.allows(wanted) {
            wanted
        } else {
            self.default_algorithm()
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key spec name that is not one of [`KeySpec::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key spec {0:?} (expected one of {names})", names = names(KeySpec::ALL.map(KeySpec::name)))]
pub struct UnknownSpec(pub String);

/// `a, b, c`.
fn names<const N: usize>(all: [&str; N]) -> String {
    all.join(", ")
}

impl FromStr for KeySpec {
    type Err = UnknownSpec;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeySpec::ALL
            .into_iter()
            .find(|spec| spec.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownSpec(s.to_string()))
    }
}

/// Signature algorithms, named as in JOSE (RFC 7518 / RFC 8037).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// ECDSA P-384 with SHA-384.
    Es384,
    /// Ed25519 (pure EdDSA).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt.
    Ps256,
    /// RSASSA-PSS with SHA-384, MGF1-SHA-384, 48-byte salt.
    Ps384,
    /// RSASSA-PSS with SHA-512, MGF1-SHA-512, 64-byte salt.
    Ps512,
    /// ML-DSA-44 (FIPS 204), pure: the token signs the message itself.
    MlDsa44,
    /// ML-DSA-65 (FIPS 204), pure.
    MlDsa65,
    /// ML-DSA-87 (FIPS 204), pure.
    MlDsa87,
    /// HashML-DSA-44 with SHA-512 (FIPS 204 §5.4): the token signs a SHA-512 digest of the
    /// message, so a precomputed digest can be signed.
    HashMlDsa44Sha512,
    /// HashML-DSA-65 with SHA-512.
    HashMlDsa65Sha512,
    /// HashML-DSA-87 with SHA-512.
    HashMlDsa87Sha512,
    /// HashML-DSA-44 with SHA-256.
    HashMlDsa44Sha256,
    /// HashML-DSA-65 with SHA-256.
    HashMlDsa65Sha256,
    /// HashML-DSA-87 with SHA-256.
    HashMlDsa87Sha256,
    /// HashML-DSA-44 with SHA-384.
    HashMlDsa44Sha384,
    /// HashML-DSA-65 with SHA-384.
    HashMlDsa65Sha384,
    /// HashML-DSA-87 with SHA-384.
    HashMlDsa87Sha384,
    /// SLH-DSA-SHA2-128s (FIPS 205), pure: the token signs the message itself.
    SlhDsaSha2_128s,
    /// SLH-DSA-SHA2-128f (FIPS 205), pure.
    SlhDsaSha2_128f,
    /// HashSLH-DSA-SHA2-128s with SHA-256 (FIPS 205 §10.2): the token signs a SHA-256 digest
    /// of the message, so a precomputed digest can be signed.
    HashSlhDsaSha2_128sSha256,
    /// HashSLH-DSA-SHA2-128s with SHA-512.
    HashSlhDsaSha2_128sSha512,
    /// HashSLH-DSA-SHA2-128f with SHA-256.
    HashSlhDsaSha2_128fSha256,
    /// HashSLH-DSA-SHA2-128f with SHA-512.
    HashSlhDsaSha2_128fSha512,
}

/// What kind of signature an algorithm makes (see [`SignatureAlgorithm::family`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// ECDSA (`ES256`, `ES384`).
    Ecdsa,
    /// Pure EdDSA.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 (`RS*`).
    RsaPkcs1,
    /// RSASSA-PSS (`PS*`).
    RsaPss,
    /// Pure ML-DSA (FIPS 204).
    MlDsa,
    /// HashML-DSA (FIPS 204 §5.4).
    HashMlDsa,
    /// Pure SLH-DSA (FIPS 205).
    SlhDsa,
    /// HashSLH-DSA (FIPS 205 §10.2).
    HashSlhDsa,
}

/// The hash an algorithm signs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    /// Output length in bytes.
    pub fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    /// Never empty; present for clippy's `len_without_is_empty`.
    pub fn is_empty(self) -> bool {
        false
    }

    /// The hash's object identifier (NIST's, as the `sha2` crate gives it): what HashML-DSA
    /// binds into its signature and PKCS#1 v1.5 into its DigestInfo.
    pub fn oid(self) -> der::oid::ObjectIdentifier {
        use der::oid::AssociatedOid;
        match self {
            Hash::Sha256 => sha2::Sha256::OID,
            Hash::Sha384 => sha2::Sha384::OID,
            Hash::Sha512 => sha2::Sha512::OID,
        }
    }

    /// Hashes `data` on the host.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

impl SignatureAlgorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [SignatureAlgorithm; 27] = [
        SignatureAlgorithm::Es256,
        SignatureAlgorithm::Es384,
        SignatureAlgorithm::EdDsa,
        SignatureAlgorithm::Rs256,
        SignatureAlgorithm::Rs384,
        SignatureAlgorithm::Rs512,
        SignatureAlgorithm::Ps256,
        SignatureAlgorithm::Ps384,
        SignatureAlgorithm::Ps512,
        SignatureAlgorithm::MlDsa44,
        SignatureAlgorithm::MlDsa65,
        SignatureAlgorithm::MlDsa87,
        SignatureAlgorithm::HashMlDsa44Sha512,
        SignatureAlgorithm::HashMlDsa65Sha512,
        SignatureAlgorithm::HashMlDsa87Sha512,
        SignatureAlgorithm::HashMlDsa44Sha256,
        SignatureAlgorithm::HashMlDsa65Sha256,
        SignatureAlgorithm::HashMlDsa87Sha256,
        SignatureAlgorithm::HashMlDsa44Sha384,
        SignatureAlgorithm::HashMlDsa65Sha384,
        SignatureAlgorithm::HashMlDsa87Sha384,
        SignatureAlgorithm::SlhDsaSha2_128s,
        SignatureAlgorithm::SlhDsaSha2_128f,
        SignatureAlgorithm::HashSlhDsaSha2_128sSha256,
        SignatureAlgorithm::HashSlhDsaSha2_128sSha512,
        SignatureAlgorithm::HashSlhDsaSha2_128fSha256,
        SignatureAlgorithm::HashSlhDsaSha2_128fSha512,
    ];

    /// JOSE name (`ES256`, `EdDSA`, …).
    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::Es256 => "ES256",
            SignatureAlgorithm::Es384 => "ES384",
            SignatureAlgorithm::EdDsa => "EdDSA",
            SignatureAlgorithm::Rs256 => "RS256",
            SignatureAlgorithm::Rs384 => "RS384",
            SignatureAlgorithm::Rs512 => "RS512",
            SignatureAlgorithm::Ps256 => "PS256",
            SignatureAlgorithm::Ps384 => "PS384",
            SignatureAlgorithm::Ps512 => "PS512",
            SignatureAlgorithm::MlDsa44 => "ML-DSA-44",
            SignatureAlgorithm::MlDsa65 => "ML-DSA-65",
            SignatureAlgorithm::MlDsa87 => "ML-DSA-87",
            SignatureAlgorithm::HashMlDsa44Sha512 => "HashML-DSA-44-SHA512",
            SignatureAlgorithm::HashMlDsa65Sha512 => "HashML-DSA-65-SHA512",
            SignatureAlgorithm::HashMlDsa87Sha512 => "HashML-DSA-87-SHA512",
            SignatureAlgorithm::HashMlDsa44Sha256 => "HashML-DSA-44-SHA256",
            SignatureAlgorithm::HashMlDsa65Sha256 => "HashML-DSA-65-SHA256",
            SignatureAlgorithm::HashMlDsa87Sha256 => "HashML-DSA-87-SHA256",
            SignatureAlgorithm::HashMlDsa44Sha384 => "HashML-DSA-44-SHA384",
            SignatureAlgorithm::HashMlDsa65Sha384 => "HashML-DSA-65-SHA384",
            SignatureAlgorithm::HashMlDsa87Sha384 => "HashML-DSA-87-SHA384",
            SignatureAlgorithm::SlhDsaSha2_128s => "SLH-DSA-SHA2-128s",
            SignatureAlgorithm::SlhDsaSha2_128f => "SLH-DSA-SHA2-128f",
            SignatureAlgorithm::HashSlhDsaSha2_128sSha256 => "HashSLH-DSA-SHA2-128s-SHA256",
            SignatureAlgorithm::HashSlhDsaSha2_128sSha512 => "HashSLH-DSA-SHA2-128s-SHA512",
            SignatureAlgorithm::HashSlhDsaSha2_128fSha256 => "HashSLH-DSA-SHA2-128f-SHA256",
            SignatureAlgorithm::HashSlhDsaSha2_128fSha512 => "HashSLH-DSA-SHA2-128f-SHA512",
        }
    }

    /// The hash signed over; `None` for EdDSA and pure ML-DSA, which sign the message itself.
    pub fn hash(self) -> Option<Hash> {
        use SignatureAlgorithm::*;
        match self {
            Es256 | Rs256 | Ps256 => Some(Hash::Sha256),
            Es384 | Rs384 | Ps384 => Some(Hash::Sha384),
            Rs512 | Ps512 => Some(Hash::Sha512),
            HashMlDsa44Sha256 | HashMlDsa65Sha256 | HashMlDsa87Sha256 => Some(Hash::Sha256),
            HashMlDsa44Sha384 | HashMlDsa65Sha384 | HashMlDsa87Sha384 => Some(Hash::Sha384),
            HashMlDsa44Sha512 | HashMlDsa65Sha512 | HashMlDsa87Sha512 => Some(Hash::Sha512),
            HashSlhDsaSha2_128sSha256 | HashSlhDsaSha2_128fSha256 => Some(Hash::Sha256),
            HashSlhDsaSha2_128sSha512 | HashSlhDsaSha2_128fSha512 => Some(Hash::Sha512),
            EdDsa | MlDsa44 | MlDsa65 | MlDsa87 | SlhDsaSha2_128s | SlhDsaSha2_128f => None,
        }
    }

    /// The family the algorithm belongs to; each variant is named here once, and what
    /// follows from the family (the mechanism, the input, the verifier) is decided from it.
    pub fn family(self) -> Family {
        use SignatureAlgorithm::*;
        match self {
            Es256 | Es384 => Family::Ecdsa,
            EdDsa => Family::EdDsa,
            Rs256 | Rs384 | Rs512 => Family::RsaPkcs1,
            Ps256 | Ps384 | Ps512 => Family::RsaPss,
            MlDsa44 | MlDsa65 | MlDsa87 => Family::MlDsa,
            HashMlDsa44Sha256 | HashMlDsa65Sha256 | HashMlDsa87Sha256 | HashMlDsa44Sha384
            | HashMlDsa65Sha384 | HashMlDsa87Sha384 | HashMlDsa44Sha512 | HashMlDsa65Sha512
            | HashMlDsa87Sha512 => Family::HashMlDsa,
            SlhDsaSha2_128s | SlhDsaSha2_128f => Family::SlhDsa,
            HashSlhDsaSha2_128sSha256
            | HashSlhDsaSha2_128sSha512
            | HashSlhDsaSha2_128fSha256
            | HashSlhDsaSha2_128fSha512 => Family::HashSlhDsa,
        }
    }

    /// True for the ECDSA algorithms (whose signatures have a DER and a raw form).
    pub fn is_ecdsa(self) -> bool {
        self.family() == Family::Ecdsa
    }

    /// True for the ML-DSA algorithms, pure and pre-hash (which take an optional context
    /// string).
    pub fn is_ml_dsa(self) -> bool {
        matches!(self.family(), Family::MlDsa | Family::HashMlDsa)
    }

    /// True for HashML-DSA (FIPS 204 §5.4: ML-DSA over a digest, with the hash's OID bound in).
    pub fn is_hash_ml_dsa(self) -> bool {
        self.family() == Family::HashMlDsa
    }

    /// True for the SLH-DSA algorithms, pure and pre-hash (which take an optional context
    /// string).
    pub fn is_slh_dsa(self) -> bool {
        matches!(self.family(), Family::SlhDsa | Family::HashSlhDsa)
    }

    /// True for the pre-hash post-quantum algorithms (HashML-DSA, HashSLH-DSA): the token signs
    /// M' = 0x01 ‖ |ctx| ‖ ctx ‖ OID(hash) ‖ digest, and the caller may send the digest.
    pub fn is_pre_hash(self) -> bool {
        matches!(self.family(), Family::HashMlDsa | Family::HashSlhDsa)
    }

    /// True for the post-quantum algorithms (ML-DSA, HashML-DSA, SLH-DSA), which take an
    /// optional context string of at most 255 bytes.
    pub fn is_post_quantum(self) -> bool {
        self.is_ml_dsa() || self.is_slh_dsa()
    }

    /// Whether JOSE names this algorithm (a JWS `alg`): all but HashML-DSA, which has no JOSE
    /// or X.509 use (RFC 9881 and the JOSE draft define pure ML-DSA only), and SLH-DSA, whose
    /// JOSE registration is still a draft: Signet signs no token with it.
    pub fn is_jose(self) -> bool {
        !self.is_hash_ml_dsa() && !self.is_slh_dsa()
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An algorithm name that is not one of [`SignatureAlgorithm::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature algorithm {0:?} (expected one of {names})", names = names(SignatureAlgorithm::ALL.map(SignatureAlgorithm::name)))]
pub struct UnknownAlgorithm(pub String);

impl FromStr for SignatureAlgorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SignatureAlgorithm::ALL
            .into_iter()
            .find(|alg| alg.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAlgorithm(s.to_string()))
    }
}

/// Both enums are stored and configured by name (`"ec-p256"`, `"ES256"`).
macro_rules! serde_by_name {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                name.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_by_name!(KeySpec);
serde_by_name!(SignatureAlgorithm);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for spec in KeySpec::ALL {
            assert_eq!(spec.name().parse::<KeySpec>(), Ok(spec));
            for alg in spec.algorithms() {
                assert!(spec.allows(*alg));
            }
        }
        for alg in SignatureAlgorithm::ALL {
            assert_eq!(alg.name().parse::<SignatureAlgorithm>(), Ok(alg));
        }
        assert!("rsa-1024".parse::<KeySpec>().is_err());
        let json = serde_json::to_string(&KeySpec::Rsa3072).unwrap();
        assert_eq!(json, "\"rsa-3072\"");
        assert_eq!(
            serde_json::from_str::<SignatureAlgorithm>("\"PS384\"").unwrap(),
            SignatureAlgorithm::Ps384
        );
        assert!(serde_json::from_str::<KeySpec>("\"dsa\"").is_err());
        assert!("none".parse::<SignatureAlgorithm>().is_err());
    }

    #[test]
    fn curves_are_strict() {
        assert!(!KeySpec::EcP256.allows(SignatureAlgorithm::Es384));
        assert!(!KeySpec::Ed25519.allows(SignatureAlgorithm::Es256));
        assert!(!KeySpec::Rsa2048.allows(SignatureAlgorithm::EdDsa));
        assert!(!KeySpec::MlDsa44.allows(SignatureAlgorithm::MlDsa65));
        assert!(!KeySpec::MlDsa87.allows(SignatureAlgorithm::EdDsa));
        assert_eq!("ML-DSA-65".parse(), Ok(SignatureAlgorithm::MlDsa65));
        assert_eq!("ml-dsa-87".parse(), Ok(KeySpec::MlDsa87));
        assert_eq!("slh-dsa-sha2-128s".parse(), Ok(KeySpec::SlhDsaSha2_128s));
        assert!(!KeySpec::SlhDsaSha2_128s.allows(SignatureAlgorithm::SlhDsaSha2_128f));
        assert!(!SignatureAlgorithm::SlhDsaSha2_128f.is_jose());
        // HashSLH-DSA goes with its own parameter set only, and is no JWS algorithm either.
        let hashed = SignatureAlgorithm::HashSlhDsaSha2_128sSha256;
        assert!(KeySpec::SlhDsaSha2_128s.allows(hashed));
        assert!(!KeySpec::SlhDsaSha2_128f.allows(hashed));
        assert!(hashed.is_slh_dsa() && hashed.is_pre_hash() && !hashed.is_jose());
        assert_eq!(hashed.hash(), Some(Hash::Sha256));
        assert_eq!(
            "hashslh-dsa-sha2-128f-sha512".parse(),
            Ok(SignatureAlgorithm::HashSlhDsaSha2_128fSha512)
        );
        // The refusals list every name there is.
        let unknown = "dsa".parse::<KeySpec>().unwrap_err().to_string();
        assert!(
            unknown.contains("ml-dsa-87, slh-dsa-sha2-128s, slh-dsa-sha2-128f"),
            "{unknown}"
        );
        let unknown = "x".parse::<SignatureAlgorithm>().unwrap_err().to_string();
        assert!(
            unknown.contains("HashML-DSA-87-SHA384, SLH-DSA-SHA2-128s"),
            "{unknown}"
        );
    }
}
