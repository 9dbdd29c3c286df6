//! The token's objects: for every enabled version of every key the principal may use, a
//! private key (sign only, sensitive, never extractable) and its public key, with the
//! attributes tools ask for.

use cryptoki_sys::*;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as Parsed;
use x509_parser::x509::SubjectPublicKeyInfo;

/// DER of the named curves' OIDs, as `CKA_EC_PARAMS` holds them.
pub(crate) const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
pub(crate) const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// id-Ed25519 (RFC 8410), which PKCS#11 3.0 accepts in `CKA_EC_PARAMS` for Edwards keys.
pub(crate) const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// A key's type and public values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on a NIST curve.
    Ec {
        /// The curve's order in bytes (32 for P-256, 48 for P-384).
        size: usize,
        /// `CKA_EC_PARAMS`.
        params: Vec<u8>,
        /// The uncompressed point.
        point: Vec<u8>,
    },
    /// Ed25519.
    Ed25519 {
        /// The 32-byte public key.
        point: Vec<u8>,
    },
    /// RSA.
    Rsa {
        /// Big-endian, without leading zeros.
        modulus: Vec<u8>,
        /// Big-endian.
        exponent: Vec<u8>,
    },
    /// ML-DSA (PKCS#11 3.2 `CKK_ML_DSA`).
    MlDsa {
        /// `CKA_PARAMETER_SET`: `CKP_ML_DSA_44`, `_65` or `_87`.
        set: CK_ULONG,
        /// The FIPS 204 encoded public key (`CKA_VALUE` of the public key).
        public: Vec<u8>,
    },
    /// SLH-DSA (PKCS#11 3.2 `CKK_SLH_DSA`).
    SlhDsa {
        /// `CKA_PARAMETER_SET`: `CKP_SLH_DSA_SHA2_128S` or `_128F`.
        set: CK_ULONG,
        /// The FIPS 205 public key, PK.seed ‖ PK.root (`CKA_VALUE` of the public key).
        public: Vec<u8>,
    },
}

/// The SLH-DSA parameter sets Signet makes keys for, as [`ML_DSA`]'s rows: SPKI OID (RFC
/// 9909), `CKA_PARAMETER_SET`, public key and signature lengths (FIPS 205), algorithm name.
pub(crate) const SLH_DSA: [ParameterRow; 2] = [
    (
        "2.16.840.1.101.3.4.3.20",
        CKP_SLH_DSA_SHA2_128S,
        32,
        7856,
        "SLH-DSA-SHA2-128s",
    ),
    (
        "2.16.840.1.101.3.4.3.21",
        CKP_SLH_DSA_SHA2_128F,
        32,
        17088,
        "SLH-DSA-SHA2-128f",
    ),
];

/// The row of [`SLH_DSA`] for a parameter set.
pub(crate) fn slh_dsa(set: CK_ULONG) -> ParameterRow {
    row(&SLH_DSA, set)
}

/// A row of [`ML_DSA`] or [`SLH_DSA`].
pub(crate) type ParameterRow = (&'static str, CK_ULONG, usize, usize, &'static str);

/// The row of `table` for a parameter set (its last row for an unknown one: the module only
/// makes objects for keys it found a row for).
fn row(table: &[ParameterRow], set: CK_ULONG) -> ParameterRow {
    table
        .iter()
        .copied()
        .find(|row| row.1 == set)
        .unwrap_or(table[table.len() - 1])
}

/// The ML-DSA parameter sets: SPKI OID (RFC 9881), `CKA_PARAMETER_SET`, public key and
/// signature lengths (FIPS 204), Signet's algorithm name.
pub(crate) const ML_DSA: [ParameterRow; 3] = [
    (
        "2.16.840.1.101.3.4.3.17",
        CKP_ML_DSA_44,
        1312,
        2420,
        "ML-DSA-44",
    ),
    (
        "2.16.840.1.101.3.4.3.18",
        CKP_ML_DSA_65,
        1952,
        3309,
        "ML-DSA-65",
    ),
    (
        "2.16.840.1.101.3.4.3.19",
        CKP_ML_DSA_87,
        2592,
        4627,
        "ML-DSA-87",
    ),
];

/// The row of [`ML_DSA`] for a parameter set.
pub(crate) fn ml_dsa(set: CK_ULONG) -> ParameterRow {
    row(&ML_DSA, set)
}

impl KeyKind {
    /// From a SubjectPublicKeyInfo PEM.
    pub fn from_spki_pem(pem_text: &str) -> Result<(KeyKind, Vec<u8>), String> {
        let block = pem::parse(pem_text).map_err(|e| format!("public key is not PEM: {e}"))?;
        let der = block.into_contents();
        let (_, spki) = SubjectPublicKeyInfo::from_der(&der)
            .map_err(|e| format!("public key is not a SubjectPublicKeyInfo: {e}"))?;
        let oid = spki.algorithm.algorithm.to_id_string();
        let kind = if let Some(&(_, set, len, _, _)) = ML_DSA.iter().find(|row| row.0 == oid) {
            let public = spki.subject_public_key.data.to_vec();
            if public.len() != len {
                return Err(format!("an ML-DSA public key of {} bytes", public.len()));
            }
            KeyKind::MlDsa { set, public }
        } else if let Some(&(_, set, len, _, _)) = SLH_DSA.iter().find(|row| row.0 == oid) {
            let public = spki.subject_public_key.data.to_vec();
            if public.len() != len {
                return Err(format!("an SLH-DSA public key of {} bytes", public.len()));
            }
            KeyKind::SlhDsa { set, public }
        } else if oid == "1.3.101.112" {
            KeyKind::Ed25519 {
                point: spki.subject_public_key.data.to_vec(),
            }
        } else {
            match spki.parsed() {
                Ok(Parsed::EC(point)) => {
                    let curve = spki
                        .algorithm
                        .parameters
                        .as_ref()
                        .and_then(|p| p.as_oid().ok())
                        .map(|o| o.to_id_string())
                        .unwrap_or_default();
                    let (size, params) = match curve.as_str() {
                        "1.2.840.10045.3.1.7" => (32, P256),
                        "1.3.132.0.34" => (48, P384),
                        other => return Err(format!("unsupported curve {other}")),
                    };
                    KeyKind::Ec {
                        size,
                        params: params.to_vec(),
                        point: point.data().to_vec(),
                    }
                }
                Ok(Parsed::RSA(rsa)) => KeyKind::Rsa {
                    modulus: strip(rsa.modulus),
                    exponent: strip(rsa.exponent),
                },
                _ => return Err(format!("unsupported public key algorithm {oid}")),
            }
        };
        Ok((kind, der))
    }

    /// `CKA_KEY_TYPE`.
    pub fn key_type(&self) -> CK_KEY_TYPE {
        match self {
            KeyKind::Ec { .. } => CKK_EC,
            KeyKind::Ed25519 { .. } => CKK_EC_EDWARDS,
            KeyKind::Rsa { .. } => CKK_RSA,
            KeyKind::MlDsa { .. } => CKK_ML_DSA,
            KeyKind::SlhDsa { .. } => CKK_SLH_DSA,
        }
    }

    /// The length of a signature.
    pub fn signature_len(&self) -> usize {
        match self {
            KeyKind::Ec { size, .. } => 2 * size,
            KeyKind::Ed25519 { .. } => 64,
            KeyKind::Rsa { modulus, .. } => modulus.len(),
            KeyKind::MlDsa { set, .. } => ml_dsa(*set).3,
            KeyKind::SlhDsa { set, .. } => slh_dsa(*set).3,
        }
    }

    /// The key size in bits, as `CK_MECHANISM_INFO` counts it (ML-DSA and SLH-DSA: the public
    /// key's bytes, as kryoptic reports it).
    pub fn bits(&self) -> usize {
        match self {
            KeyKind::Ec { size, .. } => size * 8,
            KeyKind::Ed25519 { .. } => 256,
            KeyKind::Rsa { modulus, .. } => modulus.len() * 8,
            KeyKind::MlDsa { public, .. } | KeyKind::SlhDsa { public, .. } => public.len(),
        }
    }

    fn ec_params(&self) -> Option<Vec<u8>> {
        match self {
            KeyKind::Ec { params, .. } => Some(params.clone()),
            KeyKind::Ed25519 { .. } => Some(ED25519.to_vec()),
            KeyKind::Rsa { .. } | KeyKind::MlDsa { .. } | KeyKind::SlhDsa { .. } => None,
        }
    }

    /// `CKA_EC_POINT`: the point as a DER OCTET STRING.
    fn ec_point(&self) -> Option<Vec<u8>> {
        let point = match self {
            KeyKind::Ec { point, .. } | KeyKind::Ed25519 { point } => point,
            KeyKind::Rsa { .. } | KeyKind::MlDsa { .. } | KeyKind::SlhDsa { .. } => return None,
        };
        let mut der = vec![0x04];
        if point.len() < 0x80 {
            der.push(point.len() as u8);
        } else {
            der.extend([0x81, point.len() as u8]);
        }
        der.extend_from_slice(point);
        Some(der)
    }
}

fn strip(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[first..].to_vec()
}

/// An X.509 certificate object's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The certificate, DER (`CKA_VALUE`).
    pub der: Vec<u8>,
    /// Its subject name, DER (`CKA_SUBJECT`).
    pub subject: Vec<u8>,
    /// Its issuer name, DER (`CKA_ISSUER`).
    pub issuer: Vec<u8>,
    /// Its serial as a DER INTEGER (`CKA_SERIAL_NUMBER`).
    pub serial: Vec<u8>,
}

impl Certificate {
    /// From PEM; `None` if it is not a certificate.
    pub fn from_pem(text: &str) -> Option<Certificate> {
        let der = pem::parse(text).ok()?.into_contents();
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
        let tbs = &cert.tbs_certificate;
        let raw_serial = tbs.raw_serial();
        let mut serial = vec![0x02, raw_serial.len() as u8];
        serial.extend_from_slice(raw_serial);
        Some(Certificate {
            subject: tbs.subject.as_raw().to_vec(),
            issuer: tbs.issuer.as_raw().to_vec(),
            serial,
            der: der.clone(),
        })
    }
}

/// A private key, public key or certificate object.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its handle (stable for the life of the module).
    pub handle: CK_OBJECT_HANDLE,
    /// `CKO_PRIVATE_KEY` or `CKO_PUBLIC_KEY`.
    pub class: CK_OBJECT_CLASS,
    /// The key's name in Signet (the label).
    pub name: String,
    /// The version.
    pub version: u32,
    /// Signet's key id of the version (`CKA_ID`).
    pub id: Vec<u8>,
    /// The principal may sign with it (`CKA_SIGN`).
    pub may_sign: bool,
    /// Public values.
    pub kind: KeyKind,
    /// The SubjectPublicKeyInfo DER (`CKA_PUBLIC_KEY_INFO`).
    pub spki: Vec<u8>,
    /// For a `CKO_CERTIFICATE`: the certificate Signet issued for the version's public key.
    pub certificate: Option<Certificate>,
}

/// What reading one attribute gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Value {
    /// The bytes.
    Bytes(Vec<u8>),
    /// The object has no such attribute.
    Invalid,
    /// The attribute exists but is never revealed.
    Sensitive,
}

fn ulong(v: CK_ULONG) -> Value {
    Value::Bytes(v.to_ne_bytes().to_vec())
}

fn bool(v: bool) -> Value {
    Value::Bytes(vec![if v { CK_TRUE } else { CK_FALSE }])
}

impl Object {
    /// The value of attribute `t`.
    pub fn attribute(&self, t: CK_ATTRIBUTE_TYPE) -> Value {
        if let Some(cert) = &self.certificate {
            return self.certificate_attribute(cert, t);
        }
        let private = self.class == CKO_PRIVATE_KEY;
        let optional = |v: Option<Vec<u8>>| v.map(Value::Bytes).unwrap_or(Value::Invalid);
        match t {
            CKA_CLASS => ulong(self.class),
            CKA_TOKEN => bool(true),
            CKA_PRIVATE => bool(private),
            CKA_MODIFIABLE | CKA_COPYABLE | CKA_DESTROYABLE => bool(false),
            CKA_LABEL => Value::Bytes(self.name.as_bytes().to_vec()),
            CKA_ID => Value::Bytes(self.id.clone()),
            CKA_KEY_TYPE => ulong(self.kind.key_type()),
            CKA_LOCAL => bool(true),
            CKA_DERIVE => bool(false),
            CKA_START_DATE | CKA_END_DATE => Value::Bytes(Vec::new()),
            CKA_SUBJECT => Value::Bytes(Vec::new()),
            CKA_PUBLIC_KEY_INFO => Value::Bytes(self.spki.clone()),
            CKA_EC_PARAMS => optional(self.kind.ec_params()),
            CKA_EC_POINT => optional(self.kind.ec_point()),
            CKA_MODULUS => match &self.kind {
                KeyKind::Rsa { modulus, .. } => Value::Bytes(modulus.clone()),
                _ => Value::Invalid,
            },
            CKA_PUBLIC_EXPONENT => match &self.kind {
                KeyKind::Rsa { exponent, .. } => Value::Bytes(exponent.clone()),
                _ => Value::Invalid,
            },
            CKA_PARAMETER_SET => match &self.kind {
                KeyKind::MlDsa { set, .. } | KeyKind::SlhDsa { set, .. } => ulong(*set),
                _ => Value::Invalid,
            },
            CKA_VALUE if !private => match &self.kind {
                KeyKind::MlDsa { public, .. } | KeyKind::SlhDsa { public, .. } => {
                    Value::Bytes(public.clone())
                }
                _ => Value::Invalid,
            },
            CKA_MODULUS_BITS if !private => match &self.kind {
                KeyKind::Rsa { .. } => ulong(self.kind.bits() as CK_ULONG),
                _ => Value::Invalid,
            },
            // Private keys: they sign, if the principal may, and nothing more.
            CKA_SIGN if private => bool(self.may_sign),
            CKA_SIGN_RECOVER | CKA_DECRYPT | CKA_UNWRAP if private => bool(false),
            CKA_SENSITIVE | CKA_ALWAYS_SENSITIVE | CKA_NEVER_EXTRACTABLE if private => bool(true),
            CKA_EXTRACTABLE | CKA_ALWAYS_AUTHENTICATE | CKA_WRAP_WITH_TRUSTED if private => {
                bool(false)
            }
            CKA_VALUE | CKA_PRIVATE_EXPONENT | CKA_PRIME_1 | CKA_PRIME_2 | CKA_EXPONENT_1
            | CKA_EXPONENT_2 | CKA_COEFFICIENT
                if private =>
            {
                Value::Sensitive
            }
            // Public keys verify (in the application; this module does not).
            CKA_VERIFY if !private => bool(true),
            CKA_VERIFY_RECOVER | CKA_ENCRYPT | CKA_WRAP | CKA_TRUSTED if !private => bool(false),
            _ => Value::Invalid,
        }
    }

    fn certificate_attribute(&self, cert: &Certificate, t: CK_ATTRIBUTE_TYPE) -> Value {
        match t {
            CKA_CLASS => ulong(CKO_CERTIFICATE),
            CKA_TOKEN => bool(true),
            CKA_PRIVATE | CKA_MODIFIABLE | CKA_COPYABLE | CKA_DESTROYABLE | CKA_TRUSTED => {
                bool(false)
            }
            CKA_LABEL => Value::Bytes(self.name.as_bytes().to_vec()),
            CKA_ID => Value::Bytes(self.id.clone()),
            CKA_CERTIFICATE_TYPE => ulong(CKC_X_509),
            // 1: a token user's own certificate.
            CKA_CERTIFICATE_CATEGORY => ulong(1),
            CKA_VALUE => Value::Bytes(cert.der.clone()),
            CKA_SUBJECT => Value::Bytes(cert.subject.clone()),
            CKA_ISSUER => Value::Bytes(cert.issuer.clone()),
            CKA_SERIAL_NUMBER => Value::Bytes(cert.serial.clone()),
            CKA_PUBLIC_KEY_INFO => Value::Bytes(self.spki.clone()),
            _ => Value::Invalid,
        }
    }

    /// Whether every attribute of a search template matches.
    pub fn matches(&self, template: &[(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> bool {
        template
            .iter()
            .all(|(t, want)| matches!(self.attribute(*t), Value::Bytes(v) if &v == want))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 | openssl pkey -pubout`
    const EC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8xdmGZYYp3mUY8beVtpH+RhJwlzO
e2HZEBp20MHqBK8vWHZefHJdkj5tvCc/fGJTD6P2tyQRdsVX/ELvXnVE7g==
-----END PUBLIC KEY-----";
    const ED: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAr1Z2IEgkm/hq0k1EGgMPgy7Gacg5xc5o9m1fEQyfxAM=
-----END PUBLIC KEY-----";

    fn object(class: CK_OBJECT_CLASS, pem: &str, may_sign: bool) -> Object {
        let (kind, spki) = KeyKind::from_spki_pem(pem).unwrap();
        Object {
            handle: 1,
            class,
            name: "k".into(),
            version: 1,
            id: vec![0xab; 16],
            may_sign,
            kind,
            spki,
            certificate: None,
        }
    }

    #[test]
    fn ec_keys_show_their_curve_and_point_and_never_their_secret() {
        let key = object(CKO_PRIVATE_KEY, EC, true);
        assert_eq!(key.attribute(CKA_EC_PARAMS), Value::Bytes(P256.to_vec()));
        let Value::Bytes(point) = key.attribute(CKA_EC_POINT) else {
            panic!()
        };
        assert_eq!(&point[..3], &[0x04, 65, 0x04]);
        assert_eq!(point.len(), 67);
        assert_eq!(key.attribute(CKA_VALUE), Value::Sensitive);
        assert_eq!(key.attribute(CKA_EXTRACTABLE), bool(false));
        assert_eq!(key.attribute(CKA_SENSITIVE), bool(true));
        assert_eq!(key.attribute(CKA_SIGN), bool(true));
        assert_eq!(key.attribute(CKA_MODULUS), Value::Invalid);
        assert_eq!(key.kind.signature_len(), 64);
        let reader = object(CKO_PRIVATE_KEY, EC, false);
        assert_eq!(reader.attribute(CKA_SIGN), bool(false));
    }

    #[test]
    fn ed25519_keys_are_edwards_keys() {
        let key = object(CKO_PUBLIC_KEY, ED, true);
        assert_eq!(key.attribute(CKA_KEY_TYPE), ulong(CKK_EC_EDWARDS));
        assert_eq!(key.attribute(CKA_EC_PARAMS), Value::Bytes(ED25519.to_vec()));
        let Value::Bytes(point) = key.attribute(CKA_EC_POINT) else {
            panic!()
        };
        assert_eq!(&point[..2], &[0x04, 32]);
        assert_eq!(key.attribute(CKA_VERIFY), bool(true));
        assert_eq!(key.attribute(CKA_SIGN), Value::Invalid);
    }

    #[test]
    fn templates_match_on_bytes() {
        let key = object(CKO_PRIVATE_KEY, EC, true);
        let class = CKO_PRIVATE_KEY.to_ne_bytes().to_vec();
        assert!(key.matches(&[(CKA_CLASS, class.clone()), (CKA_LABEL, b"k".to_vec())]));
        assert!(!key.matches(&[(CKA_CLASS, class), (CKA_LABEL, b"other".to_vec())]));
        assert!(!key.matches(&[(CKA_VALUE, vec![1])]));
        assert!(key.matches(&[]));
    }
}
