//! From a PKCS#11 signing mechanism to one Signet signature: which algorithm, what input, and
//! what is hashed here. Mechanisms that hash (`CKM_ECDSA_SHA256`, `CKM_SHA256_RSA_PKCS`, …)
//! hash in the module and send the digest, so a multi-part signature never buffers its data.

use cryptoki_sys::*;
use sha2::{Digest, Sha256, Sha384, Sha512};
use signet_client::InputType;

use crate::objects::KeyKind;

/// A hash the module computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }

    fn of_mechanism(m: CK_MECHANISM_TYPE) -> Option<Hash> {
        match m {
            CKM_SHA256 => Some(Hash::Sha256),
            CKM_SHA384 => Some(Hash::Sha384),
            CKM_SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }

    /// The DER of the hash's OID (NIST's 2.16.840.1.101.3.4.2.1, .2, .3), as HashML-DSA's M'
    /// names it.
    fn oid(self) -> [u8; 11] {
        let last = match self {
            Hash::Sha256 => 0x01,
            Hash::Sha384 => 0x02,
            Hash::Sha512 => 0x03,
        };
        [
            0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, last,
        ]
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => Sha256::digest(data).to_vec(),
            Hash::Sha384 => Sha384::digest(data).to_vec(),
            Hash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn mgf(self) -> CK_RSA_PKCS_MGF_TYPE {
        match self {
            Hash::Sha256 => CKG_MGF1_SHA256,
            Hash::Sha384 => CKG_MGF1_SHA384,
            Hash::Sha512 => CKG_MGF1_SHA512,
        }
    }
}

/// A mechanism's parameters, read from the caller's `CK_MECHANISM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Params {
    /// None given.
    None,
    /// `CK_RSA_PKCS_PSS_PARAMS`.
    Pss {
        /// `hashAlg`.
        hash: CK_MECHANISM_TYPE,
        /// `mgf`.
        mgf: CK_RSA_PKCS_MGF_TYPE,
        /// `sLen`.
        salt: CK_ULONG,
    },
    /// `CK_EDDSA_PARAMS`.
    EdDsa {
        /// Pre-hash (Ed25519ph).
        prehash: bool,
        /// Context length.
        context: usize,
    },
    /// `CK_HASH_SIGN_ADDITIONAL_CONTEXT` (`CKM_HASH_ML_DSA`, `CKM_HASH_SLH_DSA`).
    HashSign {
        /// `hedgeVariant`.
        hedge: CK_ULONG,
        /// The context string.
        context: Vec<u8>,
        /// `hash`: the mechanism of the hash the digest was made with.
        hash: CK_MECHANISM_TYPE,
    },
    /// `CK_SIGN_ADDITIONAL_CONTEXT` (ML-DSA, SLH-DSA and their hashing pre-hash mechanisms).
    MlDsa {
        /// `hedgeVariant`.
        hedge: CK_ULONG,
        /// The context string.
        context: Vec<u8>,
    },
    /// Parameters of another shape (refused).
    Other,
}

/// How a mechanism becomes a Signet signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `CKM_ECDSA`: the input is a hash, fitted to the curve's size.
    Ecdsa,
    /// `CKM_ECDSA_SHA*`: hash here, then as `Ecdsa`.
    EcdsaHash(Hash),
    /// `CKM_EDDSA`: the message.
    EdDsa,
    /// `CKM_RSA_PKCS`: the input is a DigestInfo.
    RsaPkcs,
    /// `CKM_SHA*_RSA_PKCS`.
    RsaPkcsHash(Hash),
    /// `CKM_RSA_PKCS_PSS`: the input is the digest of this hash.
    Pss(Hash),
    /// `CKM_SHA*_RSA_PKCS_PSS`.
    PssHash(Hash),
    /// `CKM_ML_DSA`: the message, with this context string (FIPS 204 `ctx`, maybe empty).
    MlDsa(Vec<u8>),
    /// `CKM_HASH_ML_DSA` or `CKM_HASH_SLH_DSA` with this hash named in its parameters
    /// (HashML-DSA or HashSLH-DSA, by the key): the input is the digest (no context string:
    /// Signet takes one with a message only).
    PreHash(Hash),
    /// `CKM_HASH_ML_DSA_SHA256/384/512`, `CKM_HASH_SLH_DSA_SHA256/512` without a context: hash
    /// here, send the digest.
    PreHashHash(Hash),
    /// The same with a context string: the message goes to Signet, which hashes.
    PreHashHashContext(Hash, Vec<u8>),
    /// `CKM_SLH_DSA`: the message, with this context string (FIPS 205 `ctx`, maybe empty).
    SlhDsa(Vec<u8>),
}

/// The signing mechanisms the module offers, for each key type.
pub const MECHANISMS: &[(CK_MECHANISM_TYPE, CK_KEY_TYPE)] = &[
    (CKM_ECDSA, CKK_EC),
    (CKM_ECDSA_SHA256, CKK_EC),
    (CKM_ECDSA_SHA384, CKK_EC),
    (CKM_ECDSA_SHA512, CKK_EC),
    (CKM_EDDSA, CKK_EC_EDWARDS),
    (CKM_SHA256_RSA_PKCS, CKK_RSA),
    (CKM_SHA384_RSA_PKCS, CKK_RSA),
    (CKM_SHA512_RSA_PKCS, CKK_RSA),
    (CKM_RSA_PKCS, CKK_RSA),
    (CKM_RSA_PKCS_PSS, CKK_RSA),
    (CKM_SHA256_RSA_PKCS_PSS, CKK_RSA),
    (CKM_SHA384_RSA_PKCS_PSS, CKK_RSA),
    (CKM_SHA512_RSA_PKCS_PSS, CKK_RSA),
    (CKM_ML_DSA, CKK_ML_DSA),
    (CKM_HASH_ML_DSA, CKK_ML_DSA),
    (CKM_HASH_ML_DSA_SHA256, CKK_ML_DSA),
    (CKM_HASH_ML_DSA_SHA384, CKK_ML_DSA),
    (CKM_HASH_ML_DSA_SHA512, CKK_ML_DSA),
    (CKM_SLH_DSA, CKK_SLH_DSA),
    (CKM_HASH_SLH_DSA, CKK_SLH_DSA),
    (CKM_HASH_SLH_DSA_SHA256, CKK_SLH_DSA),
    (CKM_HASH_SLH_DSA_SHA512, CKK_SLH_DSA),
];

/// Key sizes (bits) each key type comes in on Signet.
pub fn key_sizes(key_type: CK_KEY_TYPE) -> (CK_ULONG, CK_ULONG) {
    match key_type {
        CKK_EC => (256, 384),
        CKK_EC_EDWARDS => (256, 256),
        CKK_ML_DSA => (1312, 2592),
        CKK_SLH_DSA => (32, 32),
        _ => (2048, 4096),
    }
}

/// The plan for `mechanism` on a key of `kind`, or the `CKR_*` refusing it.
pub fn plan(mechanism: CK_MECHANISM_TYPE, params: &Params, kind: &KeyKind) -> Result<Plan, CK_RV> {
    let Some(&(_, key_type)) = MECHANISMS.iter().find(|(m, _)| *m == mechanism) else {
        return Err(CKR_MECHANISM_INVALID);
    };
    if key_type != kind.key_type() {
        return Err(CKR_KEY_TYPE_INCONSISTENT);
    }
    let no_params = |plan: Plan| match params {
        Params::None => Ok(plan),
        _ => Err(CKR_MECHANISM_PARAM_INVALID),
    };
    match mechanism {
        CKM_ECDSA => no_params(Plan::Ecdsa),
        CKM_ECDSA_SHA256 => no_params(Plan::EcdsaHash(Hash::Sha256)),
        CKM_ECDSA_SHA384 => no_params(Plan::EcdsaHash(Hash::Sha384)),
        CKM_ECDSA_SHA512 => no_params(Plan::EcdsaHash(Hash::Sha512)),
        CKM_EDDSA => match params {
            Params::None
            | Params::EdDsa {
                prehash: false,
                context: 0,
            } => Ok(Plan::EdDsa),
            _ => Err(CKR_MECHANISM_PARAM_INVALID),
        },
        CKM_RSA_PKCS => no_params(Plan::RsaPkcs),
        CKM_SHA256_RSA_PKCS => no_params(Plan::RsaPkcsHash(Hash::Sha256)),
        CKM_SHA384_RSA_PKCS => no_params(Plan::RsaPkcsHash(Hash::Sha384)),
        CKM_SHA512_RSA_PKCS => no_params(Plan::RsaPkcsHash(Hash::Sha512)),
        CKM_RSA_PKCS_PSS => pss(params, None).map(Plan::Pss),
        CKM_SHA256_RSA_PKCS_PSS => pss(params, Some(Hash::Sha256)).map(Plan::PssHash),
        CKM_SHA384_RSA_PKCS_PSS => pss(params, Some(Hash::Sha384)).map(Plan::PssHash),
        CKM_SHA512_RSA_PKCS_PSS => pss(params, Some(Hash::Sha512)).map(Plan::PssHash),
        // Signet's ML-DSA is hedged; a caller who requires deterministic signatures is refused.
        CKM_ML_DSA => match params {
            Params::None => Ok(Plan::MlDsa(Vec::new())),
            Params::MlDsa { hedge, context } if hedged(*hedge) && context.len() <= 255 => {
                Ok(Plan::MlDsa(context.clone()))
            }
            _ => Err(CKR_MECHANISM_PARAM_INVALID),
        },
        // SLH-DSA, pure and randomized (hedged) like Signet's: the same parameters as ML-DSA's.
        CKM_SLH_DSA => match params {
            Params::None => Ok(Plan::SlhDsa(Vec::new())),
            Params::MlDsa { hedge, context } if hedged(*hedge) && context.len() <= 255 => {
                Ok(Plan::SlhDsa(context.clone()))
            }
            _ => Err(CKR_MECHANISM_PARAM_INVALID),
        },
        // HashML-DSA (FIPS 204 §5.4) with SHA-256, SHA-384 or SHA-512, and HashSLH-DSA (FIPS
        // 205 §10.2) with SHA-256 or SHA-512 (Signet has no HashSLH-DSA with SHA-384), hedged.
        CKM_HASH_ML_DSA | CKM_HASH_SLH_DSA => match params {
            Params::HashSign {
                hedge,
                context,
                hash,
            } if hedged(*hedge) && context.is_empty() => Hash::of_mechanism(*hash)
                .filter(|h| mechanism == CKM_HASH_ML_DSA || *h != Hash::Sha384)
                .map(Plan::PreHash)
                .ok_or(CKR_MECHANISM_PARAM_INVALID),
            _ => Err(CKR_MECHANISM_PARAM_INVALID),
        },
        CKM_HASH_ML_DSA_SHA256
        | CKM_HASH_ML_DSA_SHA384
        | CKM_HASH_ML_DSA_SHA512
        | CKM_HASH_SLH_DSA_SHA256
        | CKM_HASH_SLH_DSA_SHA512 => {
            let hash = match mechanism {
                CKM_HASH_ML_DSA_SHA256 | CKM_HASH_SLH_DSA_SHA256 => Hash::Sha256,
                CKM_HASH_ML_DSA_SHA384 => Hash::Sha384,
                _ => Hash::Sha512,
            };
            match params {
                Params::None => Ok(Plan::PreHashHash(hash)),
                Params::MlDsa { hedge, context } if hedged(*hedge) && context.is_empty() => {
                    Ok(Plan::PreHashHash(hash))
                }
                Params::MlDsa { hedge, context } if hedged(*hedge) && context.len() <= 255 => {
                    Ok(Plan::PreHashHashContext(hash, context.clone()))
                }
                _ => Err(CKR_MECHANISM_PARAM_INVALID),
            }
        }
        _ => Err(CKR_MECHANISM_INVALID),
    }
}

/// Whether a hedge variant is one Signet's (hedged) ML-DSA signatures satisfy.
fn hedged(hedge: CK_ULONG) -> bool {
    matches!(hedge, CKH_HEDGE_PREFERRED | CKH_HEDGE_REQUIRED)
}

/// Signet's PSS is MGF1 with the message hash and a salt as long as the hash (RFC 8017's
/// recommendation, what TLS 1.3 and JOSE use); other parameters are refused, not ignored.
fn pss(params: &Params, fixed: Option<Hash>) -> Result<Hash, CK_RV> {
    let Params::Pss { hash, mgf, salt } = *params else {
        return Err(CKR_MECHANISM_PARAM_INVALID);
    };
    let hash = Hash::of_mechanism(hash).ok_or(CKR_MECHANISM_PARAM_INVALID)?;
    if fixed.is_some_and(|f| f != hash) || mgf != hash.mgf() || salt as usize != hash.len() {
        return Err(CKR_MECHANISM_PARAM_INVALID);
    }
    Ok(hash)
}

/// The data of a signature in progress.
#[derive(Debug, Clone)]
pub enum Data {
    /// Kept as given (the mechanism takes a digest or a whole message).
    Buffer(Vec<u8>),
    /// Hashed as it comes.
    Sha256(Sha256),
    /// Hashed as it comes.
    Sha384(Sha384),
    /// Hashed as it comes.
    Sha512(Sha512),
}

impl Plan {
    /// The hash of a pre-hash plan (HashML-DSA, HashSLH-DSA), whatever input it takes
    /// (`None`: not a pre-hash one).
    pub fn pre_hash(&self) -> Option<Hash> {
        match *self {
            Plan::PreHash(h) | Plan::PreHashHash(h) | Plan::PreHashHashContext(h, _) => Some(h),
            _ => None,
        }
    }

    /// Whether the mechanism takes its data in parts (those that hash here); the others take
    /// one digest or one message (PKCS#11 lists them as single-part).
    pub fn multi_part(&self) -> bool {
        matches!(
            self,
            Plan::EcdsaHash(_) | Plan::RsaPkcsHash(_) | Plan::PssHash(_) | Plan::PreHashHash(_)
        )
    }
}

impl Data {
    /// Empty data for `plan`.
    pub fn new(plan: &Plan) -> Data {
        let hash = match *plan {
            Plan::EcdsaHash(h) | Plan::RsaPkcsHash(h) | Plan::PssHash(h) | Plan::PreHashHash(h) => {
                h
            }
            Plan::Ecdsa
            | Plan::EdDsa
            | Plan::RsaPkcs
            | Plan::Pss(_)
            | Plan::MlDsa(_)
            | Plan::PreHash(_)
            | Plan::PreHashHashContext(..)
            | Plan::SlhDsa(_) => return Data::Buffer(Vec::new()),
        };
        match hash {
            Hash::Sha256 => Data::Sha256(Sha256::new()),
            Hash::Sha384 => Data::Sha384(Sha384::new()),
            Hash::Sha512 => Data::Sha512(Sha512::new()),
        }
    }

    /// Adds a part.
    pub fn update(&mut self, part: &[u8]) {
        match self {
            Data::Buffer(b) => b.extend_from_slice(part),
            Data::Sha256(h) => h.update(part),
            Data::Sha384(h) => h.update(part),
            Data::Sha512(h) => h.update(part),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Data::Buffer(b) => b,
            Data::Sha256(h) => h.finalize().to_vec(),
            Data::Sha384(h) => h.finalize().to_vec(),
            Data::Sha512(h) => h.finalize().to_vec(),
        }
    }
}

/// What to ask Signet for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The input.
    pub input: Vec<u8>,
    /// Message or digest.
    pub input_type: InputType,
    /// The JOSE algorithm name.
    pub algorithm: &'static str,
    /// ML-DSA's context string (empty: none).
    pub context: Vec<u8>,
}

/// DigestInfo prefixes (RFC 8017 §9.2 note 1), with and without the NULL parameters.
const DIGEST_INFOS: &[(Hash, &[u8])] = &[
    (
        Hash::Sha256,
        &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
    ),
    (
        Hash::Sha384,
        &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
    ),
    (
        Hash::Sha512,
        &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    ),
    (
        Hash::Sha256,
        &[
            0x30, 0x2f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x04, 0x20,
        ],
    ),
    (
        Hash::Sha384,
        &[
            0x30, 0x3f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x04, 0x30,
        ],
    ),
    (
        Hash::Sha512,
        &[
            0x30, 0x4f, 0x30, 0x0b, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x04, 0x40,
        ],
    ),
];

/// The request for a finished signature's data.
pub fn request(plan: &Plan, kind: &KeyKind, data: Data) -> Result<Request, CK_RV> {
    let input = data.finish();
    let digest = |input: Vec<u8>, algorithm| Request {
        input,
        input_type: InputType::Digest,
        algorithm,
        context: Vec::new(),
    };
    match plan {
        Plan::Ecdsa | Plan::EcdsaHash(_) => {
            let KeyKind::Ec { size, .. } = kind else {
                return Err(CKR_KEY_TYPE_INCONSISTENT);
            };
            if input.is_empty() {
                return Err(CKR_DATA_LEN_RANGE);
            }
            // ECDSA signs the leftmost bits of the hash as long as the order (FIPS 186-5
            // 6.4.1): a longer hash is cut, a shorter one is the same integer padded with
            // zeros. Either way the server gets the curve's own digest length.
            let mut fitted = vec![0u8; size.saturating_sub(input.len())];
            fitted.extend_from_slice(&input[..input.len().min(*size)]);
            Ok(digest(fitted, if *size == 32 { "ES256" } else { "ES384" }))
        }
        Plan::EdDsa => Ok(Request {
            input,
            input_type: InputType::Message,
            algorithm: "EdDSA",
            context: Vec::new(),
        }),
        Plan::MlDsa(context) | Plan::PreHashHashContext(_, context) => {
            if input.is_empty() {
                return Err(CKR_DATA_LEN_RANGE);
            }
            let algorithm = match (kind, plan.pre_hash()) {
                (_, Some(hash)) => pre_hash_algorithm(kind, hash)?,
                (KeyKind::MlDsa { set, .. }, None) => crate::objects::ml_dsa(*set).4,
                _ => return Err(CKR_KEY_TYPE_INCONSISTENT),
            };
            Ok(Request {
                input,
                input_type: InputType::Message,
                algorithm,
                context: context.clone(),
            })
        }
        Plan::SlhDsa(context) => {
            let KeyKind::SlhDsa { set, .. } = kind else {
                return Err(CKR_KEY_TYPE_INCONSISTENT);
            };
            if input.is_empty() {
                return Err(CKR_DATA_LEN_RANGE);
            }
            Ok(Request {
                input,
                input_type: InputType::Message,
                algorithm: crate::objects::slh_dsa(*set).4,
                context: context.clone(),
            })
        }
        Plan::PreHash(hash) | Plan::PreHashHash(hash) => {
            let algorithm = pre_hash_algorithm(kind, *hash)?;
            if input.len() != hash.len() {
                return Err(CKR_DATA_LEN_RANGE);
            }
            Ok(digest(input, algorithm))
        }
        Plan::RsaPkcs => {
            let (hash, prefix) = DIGEST_INFOS
                .iter()
                .find(|(h, p)| input.len() == p.len() + h.len() && input.starts_with(p))
                .ok_or(CKR_DATA_INVALID)?;
            Ok(digest(input[prefix.len()..].to_vec(), rs(*hash)))
        }
        Plan::RsaPkcsHash(h) => Ok(digest(input, rs(*h))),
        Plan::Pss(h) => {
            if input.len() != h.len() {
                return Err(CKR_DATA_LEN_RANGE);
            }
            Ok(digest(input, ps(*h)))
        }
        Plan::PssHash(h) => Ok(digest(input, ps(*h))),
    }
}

/// Checks `signature` over the finished data with the public key, in software: what `C_Verify`
/// answers. `CKR_SIGNATURE_LEN_RANGE` for a signature of the wrong length,
/// `CKR_SIGNATURE_INVALID` for one that does not verify.
pub fn verify(plan: &Plan, kind: &KeyKind, data: Data, signature: &[u8]) -> Result<(), CK_RV> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    if signature.len() != kind.signature_len() {
        return Err(CKR_SIGNATURE_LEN_RANGE);
    }
    let request = request(plan, kind, data)?;
    let valid = match (kind, request.algorithm) {
        (KeyKind::Ec { point, .. }, "ES256") => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| CKR_KEY_HANDLE_INVALID)?;
            p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_prehash(&request.input, &s).is_ok())
        }
        (KeyKind::Ec { point, .. }, _) => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point)
                .map_err(|_| CKR_KEY_HANDLE_INVALID)?;
            p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify_prehash(&request.input, &s).is_ok())
        }
        (KeyKind::Ed25519 { point }, _) => {
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, point)
                .verify(&request.input, signature)
                .is_ok()
        }
        (KeyKind::Rsa { modulus, exponent }, algorithm) => {
            let key = rsa::RsaPublicKey::new(
                rsa::BigUint::from_bytes_be(modulus),
                rsa::BigUint::from_bytes_be(exponent),
            )
            .map_err(|_| CKR_KEY_HANDLE_INVALID)?;
            let input = &request.input;
            let result = match algorithm {
                "RS256" => key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), input, signature),
                "RS384" => key.verify(rsa::Pkcs1v15Sign::new::<Sha384>(), input, signature),
                "RS512" => key.verify(rsa::Pkcs1v15Sign::new::<Sha512>(), input, signature),
                "PS256" => key.verify(rsa::Pss::new_with_salt::<Sha256>(32), input, signature),
                "PS384" => key.verify(rsa::Pss::new_with_salt::<Sha384>(48), input, signature),
                _ => key.verify(rsa::Pss::new_with_salt::<Sha512>(64), input, signature),
            };
            result.is_ok()
        }
        (KeyKind::MlDsa { set, public }, _) => match plan.pre_hash() {
            Some(hash) => {
                let digest = match request.input_type {
                    InputType::Digest => request.input.clone(),
                    _ => hash.digest(&request.input),
                };
                verify_hash_ml_dsa(*set, public, hash, &digest, &request.context, signature)
            }
            None => verify_ml_dsa(*set, public, &request.input, &request.context, signature),
        },
        (KeyKind::SlhDsa { set, public }, _) => {
            let set = match *set {
                CKP_SLH_DSA_SHA2_128S => signet_mldsa::slh::ParameterSet::Sha2_128s,
                _ => signet_mldsa::slh::ParameterSet::Sha2_128f,
            };
            let (input, context) = (&request.input, &request.context);
            match plan.pre_hash() {
                Some(hash) => {
                    let digest = match request.input_type {
                        InputType::Digest => input.clone(),
                        _ => hash.digest(input),
                    };
                    signet_mldsa::slh::verify_prehashed(
                        set,
                        public,
                        &hash.oid(),
                        &digest,
                        context,
                        signature,
                    )
                }
                None => signet_mldsa::slh::verify(set, public, input, context, signature),
            }
        }
    };
    if valid {
        Ok(())
    } else {
        Err(CKR_SIGNATURE_INVALID)
    }
}

/// The ML-DSA parameter set of a `CKA_PARAMETER_SET` value (`None` for an unknown one).
fn parameter_set(set: CK_ULONG) -> Option<signet_mldsa::ParameterSet> {
    use signet_mldsa::ParameterSet;
    match set {
        CKP_ML_DSA_44 => Some(ParameterSet::MlDsa44),
        CKP_ML_DSA_65 => Some(ParameterSet::MlDsa65),
        CKP_ML_DSA_87 => Some(ParameterSet::MlDsa87),
        _ => None,
    }
}

/// ML-DSA.Verify (FIPS 204, algorithm 3).
fn verify_ml_dsa(set: CK_ULONG, key: &[u8], message: &[u8], ctx: &[u8], sig: &[u8]) -> bool {
    parameter_set(set).is_some_and(|set| signet_mldsa::verify(set, key, message, ctx, sig))
}

/// HashML-DSA.Verify (FIPS 204, algorithm 5): ML-DSA's internal verification of
/// M' = 1 ‖ |ctx| ‖ ctx ‖ DER(OID of the hash) ‖ digest.
fn verify_hash_ml_dsa(
    set: CK_ULONG,
    key: &[u8],
    hash: Hash,
    digest: &[u8],
    ctx: &[u8],
    sig: &[u8],
) -> bool {
    digest.len() == hash.len()
        && parameter_set(set).is_some_and(|set| {
            signet_mldsa::verify_prehashed(set, key, &hash.oid(), digest, ctx, sig)
        })
}

/// Signet's name for the pre-hash algorithm with `hash` on a key of `kind`: HashML-DSA on an
/// ML-DSA key, HashSLH-DSA (SHA-256 or SHA-512) on an SLH-DSA key.
fn pre_hash_algorithm(kind: &KeyKind, hash: Hash) -> Result<&'static str, CK_RV> {
    match (kind, hash) {
        (KeyKind::MlDsa { set, .. }, _) => Ok(hash_ml_dsa(*set, hash)),
        (KeyKind::SlhDsa { set, .. }, Hash::Sha256) if *set == CKP_SLH_DSA_SHA2_128S => {
            Ok("HashSLH-DSA-SHA2-128s-SHA256")
        }
        (KeyKind::SlhDsa { set, .. }, Hash::Sha512) if *set == CKP_SLH_DSA_SHA2_128S => {
            Ok("HashSLH-DSA-SHA2-128s-SHA512")
        }
        (KeyKind::SlhDsa { .. }, Hash::Sha256) => Ok("HashSLH-DSA-SHA2-128f-SHA256"),
        (KeyKind::SlhDsa { .. }, Hash::Sha512) => Ok("HashSLH-DSA-SHA2-128f-SHA512"),
        _ => Err(CKR_KEY_TYPE_INCONSISTENT),
    }
}

/// Signet's name for HashML-DSA with `hash` on a parameter set.
fn hash_ml_dsa(set: CK_ULONG, hash: Hash) -> &'static str {
    match (set, hash) {
        (CKP_ML_DSA_44, Hash::Sha256) => "HashML-DSA-44-SHA256",
        (CKP_ML_DSA_44, Hash::Sha384) => "HashML-DSA-44-SHA384",
        (CKP_ML_DSA_44, Hash::Sha512) => "HashML-DSA-44-SHA512",
        (CKP_ML_DSA_87, Hash::Sha256) => "HashML-DSA-87-SHA256",
        (CKP_ML_DSA_87, Hash::Sha384) => "HashML-DSA-87-SHA384",
        (CKP_ML_DSA_87, Hash::Sha512) => "HashML-DSA-87-SHA512",
        (_, Hash::Sha256) => "HashML-DSA-65-SHA256",
        (_, Hash::Sha384) => "HashML-DSA-65-SHA384",
        (_, Hash::Sha512) => "HashML-DSA-65-SHA512",
    }
}

fn rs(h: Hash) -> &'static str {
    match h {
        Hash::Sha256 => "RS256",
        Hash::Sha384 => "RS384",
        Hash::Sha512 => "RS512",
    }
}

fn ps(h: Hash) -> &'static str {
    match h {
        Hash::Sha256 => "PS256",
        Hash::Sha384 => "PS384",
        Hash::Sha512 => "PS512",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ec(size: usize) -> KeyKind {
        KeyKind::Ec {
            size,
            params: vec![],
            point: vec![],
        }
    }

    fn rsa() -> KeyKind {
        KeyKind::Rsa {
            modulus: vec![0xc5; 256],
            exponent: vec![1, 0, 1],
        }
    }

    fn sign(
        mechanism: CK_MECHANISM_TYPE,
        params: Params,
        kind: &KeyKind,
        parts: &[&[u8]],
    ) -> Result<Request, CK_RV> {
        let plan = plan(mechanism, &params, kind)?;
        let mut data = Data::new(&plan);
        for p in parts {
            data.update(p);
        }
        request(&plan, kind, data)
    }

    #[test]
    fn ml_dsa_takes_the_message_and_its_context_and_stays_hedged() {
        let kind = KeyKind::MlDsa {
            set: CKP_ML_DSA_65,
            public: vec![0; 1952],
        };
        let r = sign(CKM_ML_DSA, Params::None, &kind, &[b"hello"]).unwrap();
        assert_eq!(
            (
                r.input.as_slice(),
                r.input_type,
                r.algorithm,
                r.context.len()
            ),
            (&b"hello"[..], InputType::Message, "ML-DSA-65", 0)
        );
        let ctx = Params::MlDsa {
            hedge: CKH_HEDGE_REQUIRED,
            context: b"ctx".to_vec(),
        };
        let r = sign(CKM_ML_DSA, ctx, &kind, &[b"hello"]).unwrap();
        assert_eq!(r.context, b"ctx");
        let deterministic = Params::MlDsa {
            hedge: CKH_DETERMINISTIC_REQUIRED,
            context: Vec::new(),
        };
        assert_eq!(
            sign(CKM_ML_DSA, deterministic, &kind, &[b"x"]),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
        let long = Params::MlDsa {
            hedge: CKH_HEDGE_PREFERRED,
            context: vec![0; 256],
        };
        assert_eq!(
            sign(CKM_ML_DSA, long, &kind, &[b"x"]),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
        assert_eq!(
            sign(CKM_ML_DSA, Params::None, &ec(32), &[b"x"]),
            Err(CKR_KEY_TYPE_INCONSISTENT)
        );
        assert_eq!(
            sign(CKM_ML_DSA, Params::None, &kind, &[]),
            Err(CKR_DATA_LEN_RANGE)
        );
        assert!(!Plan::MlDsa(Vec::new()).multi_part());
    }

    /// HashML-DSA: `CKM_HASH_ML_DSA` takes a digest of the hash its parameters name (SHA-256,
    /// SHA-384 or SHA-512; no context), `CKM_HASH_ML_DSA_SHA256/384/512` hash here in parts, or
    /// with a context string send the message for Signet to hash.
    #[test]
    fn hash_ml_dsa_takes_a_digest_or_hashes_here() {
        let kind = KeyKind::MlDsa {
            set: CKP_ML_DSA_87,
            public: vec![0; 2592],
        };
        let hash_params = |hash, context: &[u8]| Params::HashSign {
            hedge: CKH_HEDGE_PREFERRED,
            context: context.to_vec(),
            hash,
        };
        for (hash, named, hashing, algorithm) in [
            (
                Hash::Sha256,
                CKM_SHA256,
                CKM_HASH_ML_DSA_SHA256,
                "HashML-DSA-87-SHA256",
            ),
            (
                Hash::Sha384,
                CKM_SHA384,
                CKM_HASH_ML_DSA_SHA384,
                "HashML-DSA-87-SHA384",
            ),
            (
                Hash::Sha512,
                CKM_SHA512,
                CKM_HASH_ML_DSA_SHA512,
                "HashML-DSA-87-SHA512",
            ),
        ] {
            let digest = hash.digest(b"hello");
            let r = sign(CKM_HASH_ML_DSA, hash_params(named, b""), &kind, &[&digest]).unwrap();
            assert_eq!(
                (r.input.as_slice(), r.input_type, r.algorithm),
                (digest.as_slice(), InputType::Digest, algorithm)
            );
            // A digest of another length is not this hash's.
            assert_eq!(
                sign(
                    CKM_HASH_ML_DSA,
                    hash_params(named, b""),
                    &kind,
                    &[&digest[..digest.len() - 1]]
                ),
                Err(CKR_DATA_LEN_RANGE)
            );
            let r = sign(hashing, Params::None, &kind, &[b"hel", b"lo"]).unwrap();
            assert_eq!(
                (r.input.as_slice(), r.input_type, r.algorithm),
                (digest.as_slice(), InputType::Digest, algorithm)
            );
            assert!(Plan::PreHashHash(hash).multi_part());
            let ctx = Params::MlDsa {
                hedge: CKH_HEDGE_REQUIRED,
                context: b"ctx".to_vec(),
            };
            let r = sign(hashing, ctx, &kind, &[b"hello"]).unwrap();
            assert_eq!(
                (
                    r.input.as_slice(),
                    r.input_type,
                    r.context.as_slice(),
                    r.algorithm
                ),
                (&b"hello"[..], InputType::Message, &b"ctx"[..], algorithm)
            );
        }
        let digest = Hash::Sha512.digest(b"hello");
        for refused in [
            hash_params(CKM_SHA_1, b""),
            hash_params(CKM_SHA3_512, b""),
            hash_params(CKM_SHA512, b"ctx"),
            Params::None,
        ] {
            assert_eq!(
                sign(CKM_HASH_ML_DSA, refused, &kind, &[&digest]),
                Err(CKR_MECHANISM_PARAM_INVALID)
            );
        }
        let deterministic = Params::MlDsa {
            hedge: CKH_DETERMINISTIC_REQUIRED,
            context: Vec::new(),
        };
        assert_eq!(
            sign(CKM_HASH_ML_DSA_SHA256, deterministic, &kind, &[b"hello"]),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
        assert_eq!(
            sign(
                CKM_HASH_ML_DSA,
                hash_params(CKM_SHA512, b""),
                &ec(32),
                &[&digest]
            ),
            Err(CKR_KEY_TYPE_INCONSISTENT)
        );
    }

    /// HashSLH-DSA: `CKM_HASH_SLH_DSA` takes a SHA-256 or SHA-512 digest (SHA-384, which
    /// Signet's HashSLH-DSA lacks, is refused), `CKM_HASH_SLH_DSA_SHA256/512` hash here in parts
    /// or send the message with a context string; named by the key's parameter set. The ML-DSA
    /// and SLH-DSA pre-hash mechanisms do not cross key types.
    #[test]
    fn hash_slh_dsa_takes_a_digest_or_hashes_here() {
        let slh = |set| KeyKind::SlhDsa {
            set,
            public: vec![0; 32],
        };
        let hash_params = |hash, context: &[u8]| Params::HashSign {
            hedge: CKH_HEDGE_PREFERRED,
            context: context.to_vec(),
            hash,
        };
        for (set, name) in [
            (CKP_SLH_DSA_SHA2_128S, "HashSLH-DSA-SHA2-128s"),
            (CKP_SLH_DSA_SHA2_128F, "HashSLH-DSA-SHA2-128f"),
        ] {
            let kind = slh(set);
            for (hash, named, hashing, suffix) in [
                (Hash::Sha256, CKM_SHA256, CKM_HASH_SLH_DSA_SHA256, "SHA256"),
                (Hash::Sha512, CKM_SHA512, CKM_HASH_SLH_DSA_SHA512, "SHA512"),
            ] {
                let algorithm = format!("{name}-{suffix}");
                let digest = hash.digest(b"hello");
                let r = sign(CKM_HASH_SLH_DSA, hash_params(named, b""), &kind, &[&digest]).unwrap();
                assert_eq!(
                    (r.input.as_slice(), r.input_type, r.algorithm),
                    (digest.as_slice(), InputType::Digest, algorithm.as_str())
                );
                let r = sign(hashing, Params::None, &kind, &[b"he", b"llo"]).unwrap();
                assert_eq!(
                    (r.input.as_slice(), r.input_type, r.algorithm),
                    (digest.as_slice(), InputType::Digest, algorithm.as_str())
                );
                let ctx = Params::MlDsa {
                    hedge: CKH_HEDGE_PREFERRED,
                    context: b"ctx".to_vec(),
                };
                let r = sign(hashing, ctx, &kind, &[b"hello"]).unwrap();
                assert_eq!(
                    (r.input.as_slice(), r.input_type, r.context.as_slice()),
                    (&b"hello"[..], InputType::Message, &b"ctx"[..])
                );
                assert_eq!(r.algorithm, algorithm);
            }
            let d384 = Hash::Sha384.digest(b"hello");
            assert_eq!(
                sign(
                    CKM_HASH_SLH_DSA,
                    hash_params(CKM_SHA384, b""),
                    &kind,
                    &[&d384]
                ),
                Err(CKR_MECHANISM_PARAM_INVALID)
            );
            assert_eq!(
                sign(CKM_HASH_ML_DSA_SHA256, Params::None, &kind, &[b"x"]),
                Err(CKR_KEY_TYPE_INCONSISTENT)
            );
        }
        let ml_dsa = KeyKind::MlDsa {
            set: CKP_ML_DSA_44,
            public: vec![0; 1312],
        };
        assert_eq!(
            sign(CKM_HASH_SLH_DSA_SHA512, Params::None, &ml_dsa, &[b"x"]),
            Err(CKR_KEY_TYPE_INCONSISTENT)
        );
    }

    #[test]
    fn ecdsa_digests_are_fitted_to_the_curve() {
        let d32 = [7u8; 32];
        let r = sign(CKM_ECDSA, Params::None, &ec(32), &[&d32]).unwrap();
        assert_eq!((r.input.as_slice(), r.algorithm), (&d32[..], "ES256"));
        // A SHA-384 digest on P-256 is cut to its leftmost 32 bytes.
        let d48: Vec<u8> = (0..48).collect();
        let r = sign(CKM_ECDSA, Params::None, &ec(32), &[&d48]).unwrap();
        assert_eq!(r.input, &d48[..32]);
        // A SHA-256 digest on P-384 is the same integer in 48 bytes.
        let r = sign(CKM_ECDSA, Params::None, &ec(48), &[&d32]).unwrap();
        assert_eq!(r.input.len(), 48);
        assert_eq!(&r.input[..16], &[0; 16]);
        assert_eq!(r.algorithm, "ES384");
        assert_eq!(
            sign(CKM_ECDSA, Params::None, &ec(32), &[]),
            Err(CKR_DATA_LEN_RANGE)
        );
    }

    #[test]
    fn hashing_mechanisms_hash_here_in_parts() {
        let whole = sign(CKM_ECDSA_SHA256, Params::None, &ec(32), &[b"hello world"]).unwrap();
        let parts = sign(
            CKM_ECDSA_SHA256,
            Params::None,
            &ec(32),
            &[b"hello", b" ", b"world"],
        )
        .unwrap();
        assert_eq!(whole, parts);
        assert_eq!(whole.input, Sha256::digest(b"hello world").to_vec());
        assert_eq!(whole.input_type, InputType::Digest);
        let r = sign(CKM_SHA384_RSA_PKCS, Params::None, &rsa(), &[b"m"]).unwrap();
        assert_eq!((r.input.len(), r.algorithm), (48, "RS384"));
    }

    #[test]
    fn rsa_pkcs_takes_a_digest_info() {
        let mut info = DIGEST_INFOS[0].1.to_vec();
        info.extend([9u8; 32]);
        let r = sign(CKM_RSA_PKCS, Params::None, &rsa(), &[&info]).unwrap();
        assert_eq!((r.input, r.algorithm), (vec![9u8; 32], "RS256"));
        // A bare digest, or SHA-1's DigestInfo, is not something Signet signs.
        assert_eq!(
            sign(CKM_RSA_PKCS, Params::None, &rsa(), &[&[9u8; 32]]),
            Err(CKR_DATA_INVALID)
        );
        let sha1 = [
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ];
        let mut info = sha1.to_vec();
        info.extend([1u8; 20]);
        assert_eq!(
            sign(CKM_RSA_PKCS, Params::None, &rsa(), &[&info]),
            Err(CKR_DATA_INVALID)
        );
    }

    #[test]
    fn pss_parameters_are_checked() {
        let good = Params::Pss {
            hash: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            salt: 32,
        };
        let r = sign(CKM_RSA_PKCS_PSS, good.clone(), &rsa(), &[&[1u8; 32]]).unwrap();
        assert_eq!(r.algorithm, "PS256");
        let r = sign(CKM_SHA256_RSA_PKCS_PSS, good, &rsa(), &[b"m"]).unwrap();
        assert_eq!(r.algorithm, "PS256");
        for bad in [
            Params::None,
            Params::Pss {
                hash: CKM_SHA256,
                mgf: CKG_MGF1_SHA256,
                salt: 20,
            },
            Params::Pss {
                hash: CKM_SHA256,
                mgf: CKG_MGF1_SHA384,
                salt: 32,
            },
            Params::Pss {
                hash: CKM_SHA_1,
                mgf: CKG_MGF1_SHA1,
                salt: 20,
            },
        ] {
            assert_eq!(
                plan(CKM_RSA_PKCS_PSS, &bad, &rsa()),
                Err(CKR_MECHANISM_PARAM_INVALID),
                "{bad:?}"
            );
        }
        let sha384 = Params::Pss {
            hash: CKM_SHA384,
            mgf: CKG_MGF1_SHA384,
            salt: 48,
        };
        assert_eq!(
            plan(CKM_SHA256_RSA_PKCS_PSS, &sha384, &rsa()),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
        // The digest must be the hash's length.
        let ok = Params::Pss {
            hash: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            salt: 32,
        };
        assert_eq!(
            sign(CKM_RSA_PKCS_PSS, ok, &rsa(), &[&[1u8; 31]]),
            Err(CKR_DATA_LEN_RANGE)
        );
    }

    #[test]
    fn mechanisms_must_fit_the_key() {
        assert_eq!(
            plan(CKM_ECDSA, &Params::None, &rsa()),
            Err(CKR_KEY_TYPE_INCONSISTENT)
        );
        assert_eq!(
            plan(CKM_RSA_X_509, &Params::None, &rsa()),
            Err(CKR_MECHANISM_INVALID)
        );
        let ed = KeyKind::Ed25519 { point: vec![] };
        assert_eq!(plan(CKM_EDDSA, &Params::None, &ed), Ok(Plan::EdDsa));
        assert_eq!(
            plan(
                CKM_EDDSA,
                &Params::EdDsa {
                    prehash: true,
                    context: 0
                },
                &ed
            ),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
        assert_eq!(
            plan(CKM_ECDSA, &Params::Other, &ec(32)),
            Err(CKR_MECHANISM_PARAM_INVALID)
        );
    }
}
