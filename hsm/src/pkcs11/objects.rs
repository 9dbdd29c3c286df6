//! Key objects in the token: generation templates, lookups by id and label, attribute reading,
//! public keys, protection facts, and destruction.

use cryptoki::object::{
    Attribute, AttributeType, KeyType, MlDsaParameterSetType, ObjectClass, ObjectHandle,
    ParameterSetType, SlhDsaParameterSetType,
};
use cryptoki::session::Session;

use super::error::from_cryptoki;
use crate::backend::{KeyId, KeyInfo, Protection};
use crate::der;
use crate::error::{Error, Result};
use crate::public::PublicKey;
use crate::spec::KeySpec;

/// Generation templates for a pair: both halves persistent with the same id and label, private
/// (invisible without the PIN: the labels carry key names) and unmodifiable (nobody holding
/// the PIN can relabel a key or change the `CKA_ID` Signet finds it by); the private half
/// sensitive, never extractable, and able to sign only.
pub(crate) fn templates(
    label: &str,
    id: &KeyId,
    spec: KeySpec,
) -> (Vec<Attribute>, Vec<Attribute>) {
    let common = |private: bool| {
        vec![
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Modifiable(false),
            Attribute::Id(id.0.clone()),
            Attribute::Label(label.as_bytes().to_vec()),
        ]
    };
    let mut public = common(true);
    public.push(Attribute::Verify(true));
    public.push(Attribute::Encrypt(false));
    public.push(Attribute::Wrap(false));
    let mut private = common(true);
    private.extend([
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        // SoftHSM2 defaults these to true on private keys; a signing key does nothing else.
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
    ]);
    match spec {
        KeySpec::EcP256 | KeySpec::EcP384 | KeySpec::Ed25519 => {
            public.extend(der::ec_params(spec).map(Attribute::EcParams));
        }
        KeySpec::Rsa2048 | KeySpec::Rsa3072 | KeySpec::Rsa4096 => {
            let bits = spec.rsa_bits().unwrap_or(2048);
            public.push(Attribute::ModulusBits(u64::from(bits).into()));
            public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
        }
        KeySpec::MlDsa44
        | KeySpec::MlDsa65
        | KeySpec::MlDsa87
        | KeySpec::SlhDsaSha2_128s
        | KeySpec::SlhDsaSha2_128f => {
            if let Some(set) = parameter_set(spec) {
                public.push(Attribute::ParameterSet(set));
            }
        }
    }
    (public, private)
}

/// The PKCS#11 3.2 parameter set (`CKA_PARAMETER_SET`) of an ML-DSA or SLH-DSA spec.
fn parameter_set(spec: KeySpec) -> Option<ParameterSetType> {
    match spec {
        KeySpec::MlDsa44 => Some(MlDsaParameterSetType::ML_DSA_44.into()),
        KeySpec::MlDsa65 => Some(MlDsaParameterSetType::ML_DSA_65.into()),
        KeySpec::MlDsa87 => Some(MlDsaParameterSetType::ML_DSA_87.into()),
        KeySpec::SlhDsaSha2_128s => Some(SlhDsaParameterSetType::SHA2_128S.into()),
        KeySpec::SlhDsaSha2_128f => Some(SlhDsaParameterSetType::SHA2_128F.into()),
        _ => None,
    }
}

/// The public half's template as a token gets it when it refuses the strict one (some tokens
/// keep public keys public, or refuse `CKA_MODIFIABLE` on them): public, modifiable by default.
pub(crate) fn relaxed_public(public: &[Attribute]) -> Vec<Attribute> {
    public
        .iter()
        .filter(|a| !matches!(a, Attribute::Modifiable(_)))
        .map(|a| match a {
            Attribute::Private(_) => Attribute::Private(false),
            other => other.clone(),
        })
        .collect()
}

/// Whether a token refused a template (rather than the mechanism or the session).
pub(crate) fn is_template_refusal(err: &cryptoki::error::Error) -> bool {
    use cryptoki::error::{Error as CkError, RvError};
    matches!(
        err,
        CkError::Pkcs11(
            RvError::AttributeValueInvalid
                | RvError::AttributeTypeInvalid
                | RvError::TemplateInconsistent
                | RvError::AttributeReadOnly,
            _
        )
    )
}

/// A template holding secret values, wiped when dropped (cryptoki's attributes are plain
/// vectors).
pub(crate) struct SecretTemplate(pub Vec<Attribute>);

impl Drop for SecretTemplate {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for attr in &mut self.0 {
            match attr {
                Attribute::Value(v)
                | Attribute::PrivateExponent(v)
                | Attribute::Prime1(v)
                | Attribute::Prime2(v)
                | Attribute::Exponent1(v)
                | Attribute::Exponent2(v)
                | Attribute::Coefficient(v) => v.zeroize(),
                _ => {}
            }
        }
    }
}

/// Object templates for an imported pair: the same attributes as a generated one (persistent,
/// same id and label, the private half sensitive, non-extractable, private, signing only), plus
/// the key values. The token sets `CKA_LOCAL` false: not generated inside.
pub(crate) fn import_templates(
    label: &str,
    id: &KeyId,
    key: &crate::KeyMaterial,
) -> Result<(Vec<Attribute>, SecretTemplate)> {
    use crate::import::Secret;
    let (mut public, private) = templates(label, id, key.spec());
    // Generation-only attributes are not valid in C_CreateObject.
    public.retain(|a| !matches!(a, Attribute::ModulusBits(_) | Attribute::PublicExponent(_)));
    let mut private = SecretTemplate(private);
    public.push(Attribute::Class(ObjectClass::PUBLIC_KEY));
    private.0.push(Attribute::Class(ObjectClass::PRIVATE_KEY));
    let ec_params = der::ec_params(key.spec());
    match (key.secret(), key.public_key().rsa_parts()) {
        (Secret::Rsa(rsa), Some((n, e))) => {
            for t in [&mut public, &mut private.0] {
                t.push(Attribute::KeyType(KeyType::RSA));
                t.push(Attribute::Modulus(n.to_vec()));
                t.push(Attribute::PublicExponent(e.to_vec()));
            }
            private.0.extend([
                Attribute::PrivateExponent(rsa.d.to_vec()),
                Attribute::Prime1(rsa.p.to_vec()),
                Attribute::Prime2(rsa.q.to_vec()),
                Attribute::Exponent1(rsa.dp.to_vec()),
                Attribute::Exponent2(rsa.dq.to_vec()),
                Attribute::Coefficient(rsa.qinv.to_vec()),
            ]);
        }
        (Secret::Ec(scalar) | Secret::Ed25519(scalar), _) => {
            let key_type = if key.spec() == KeySpec::Ed25519 {
                KeyType::EC_EDWARDS
            } else {
                KeyType::EC
            };
            let params = ec_params.unwrap_or_default();
            // public already carries CKA_EC_PARAMS from the generation template.
            public.push(Attribute::KeyType(key_type));
            public.push(Attribute::EcPoint(der::octet_string(
                &key.public_key().raw(),
            )?));
            private.0.push(Attribute::KeyType(key_type));
            private.0.push(Attribute::EcParams(params));
            private.0.push(Attribute::Value(scalar.to_vec()));
        }
        (Secret::Rsa(_), None) => {}
    }
    Ok((public, private))
}

fn find_one(session: &Session, template: &[Attribute]) -> Result<Option<ObjectHandle>> {
    Ok(session
        .find_objects(template)
        .map_err(from_cryptoki)?
        .first()
        .copied())
}

/// The private half with this id.
pub(crate) fn private_handle(session: &Session, id: &KeyId) -> Result<ObjectHandle> {
    find_one(
        session,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id.0.clone()),
        ],
    )?
    .ok_or_else(|| Error::KeyNotFound(id.to_hex()))
}

/// The private half with this label.
pub(crate) fn private_handle_by_label(session: &Session, label: &str) -> Result<ObjectHandle> {
    find_one(
        session,
        &[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ],
    )?
    .ok_or_else(|| Error::KeyNotFound(label.to_string()))
}

/// The public half with this id.
pub(crate) fn public_handle(session: &Session, id: &KeyId) -> Result<ObjectHandle> {
    find_one(
        session,
        &[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::Id(id.0.clone()),
        ],
    )?
    .ok_or_else(|| Error::KeyNotFound(format!("{} (public half)", id.to_hex())))
}

/// Every private key handle in the token.
pub(crate) fn private_handles(session: &Session) -> Result<Vec<ObjectHandle>> {
    session
        .find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])
        .map_err(from_cryptoki)
}

fn key_type(session: &Session, handle: ObjectHandle) -> Result<KeyType> {
    session
        .get_attributes(handle, &[AttributeType::KeyType])
        .map_err(from_cryptoki)?
        .into_iter()
        .find_map(|a| match a {
            Attribute::KeyType(t) => Some(t),
            _ => None,
        })
        .ok_or_else(|| Error::Malformed("key without CKA_KEY_TYPE".into()))
}

/// Id, label and spec of the private key `handle`.
pub(crate) fn key_info(session: &Session, handle: ObjectHandle) -> Result<KeyInfo> {
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::Id,
                AttributeType::Label,
                AttributeType::KeyType,
            ],
        )
        .map_err(from_cryptoki)?;
    let mut id = None;
    let mut label = String::new();
    let mut key_type = None;
    for attr in attrs {
        match attr {
            Attribute::Id(v) => id = Some(KeyId(v)),
            Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
            Attribute::KeyType(t) => key_type = Some(t),
            _ => {}
        }
    }
    let id = id.ok_or_else(|| Error::Malformed("key without CKA_ID".into()))?;
    let spec = match key_type {
        Some(t)
            if t == KeyType::EC
                || t == KeyType::EC_EDWARDS
                || t == KeyType::RSA
                || t == KeyType::ML_DSA
                || t == KeyType::SLH_DSA =>
        {
            public_key_of_type(session, &id, t)?.spec()
        }
        _ => {
            return Err(Error::Unsupported(format!(
                "key {label:?} of an unsupported type"
            )))
        }
    };
    Ok(KeyInfo { id, label, spec })
}

/// The public key of the pair `id`, read from its public half.
pub(crate) fn public_key(session: &Session, id: &KeyId) -> Result<PublicKey> {
    let t = key_type(session, private_handle(session, id)?)?;
    public_key_of_type(session, id, t)
}

fn public_key_of_type(session: &Session, id: &KeyId, key_type: KeyType) -> Result<PublicKey> {
    let handle = public_handle(session, id)?;
    if key_type == KeyType::RSA {
        let attrs = session
            .get_attributes(
                handle,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )
            .map_err(from_cryptoki)?;
        let (mut n, mut e) = (Vec::new(), Vec::new());
        for attr in attrs {
            match attr {
                Attribute::Modulus(v) => n = v,
                Attribute::PublicExponent(v) => e = v,
                _ => {}
            }
        }
        let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
        let spec = match bits {
            2048 => KeySpec::Rsa2048,
            3072 => KeySpec::Rsa3072,
            4096 => KeySpec::Rsa4096,
            other => return Err(Error::Unsupported(format!("RSA key of {other} bits"))),
        };
        return PublicKey::from_rsa(spec, n, e);
    }
    if key_type == KeyType::ML_DSA || key_type == KeyType::SLH_DSA {
        let attrs = session
            .get_attributes(handle, &[AttributeType::ParameterSet, AttributeType::Value])
            .map_err(from_cryptoki)?;
        let (mut set, mut value) = (None, Vec::new());
        for attr in attrs {
            match attr {
                Attribute::ParameterSet(p) => set = Some(p),
                Attribute::Value(v) => value = v,
                _ => {}
            }
        }
        let ml_dsa = key_type == KeyType::ML_DSA;
        let spec = KeySpec::ALL
            .into_iter()
            .filter(|spec| {
                if ml_dsa {
                    spec.is_ml_dsa()
                } else {
                    spec.is_slh_dsa()
                }
            })
            .find(|spec| set.is_some() && parameter_set(*spec) == set)
            .ok_or_else(|| {
                Error::Unsupported(format!(
                    "an {} key of a parameter set Signet does not use",
                    if ml_dsa { "ML-DSA" } else { "SLH-DSA" }
                ))
            })?;
        return if ml_dsa {
            PublicKey::from_ml_dsa(spec, &value)
        } else {
            PublicKey::from_slh_dsa(spec, &value)
        };
    }
    let attrs = session
        .get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(from_cryptoki)?;
    let (mut params, mut point) = (Vec::new(), Vec::new());
    for attr in attrs {
        match attr {
            Attribute::EcParams(v) => params = v,
            Attribute::EcPoint(v) => point = v,
            _ => {}
        }
    }
    let spec = der::spec_of_ec_params(&params)
        .ok_or_else(|| Error::Unsupported("EC key on an unsupported curve".into()))?;
    PublicKey::from_ec_point(spec, &point)
}

/// The protection flags of the private half, as the token reports them.
pub(crate) fn protection(session: &Session, id: &KeyId) -> Result<Protection> {
    let handle = private_handle(session, id)?;
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::Sensitive,
                AttributeType::AlwaysSensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
                AttributeType::Token,
                AttributeType::Private,
                AttributeType::Local,
            ],
        )
        .map_err(from_cryptoki)?;
    let mut p = Protection::default();
    for attr in attrs {
        match attr {
            Attribute::Sensitive(v) => p.sensitive = Some(v),
            Attribute::AlwaysSensitive(v) => p.always_sensitive = Some(v),
            Attribute::Extractable(v) => p.extractable = Some(v),
            Attribute::NeverExtractable(v) => p.never_extractable = Some(v),
            Attribute::Token(v) => p.persistent = Some(v),
            Attribute::Private(v) => p.needs_login = Some(v),
            Attribute::Local(v) => p.generated_on_device = Some(v),
            _ => {}
        }
    }
    Ok(p)
}

/// Destroys the pair `id`: the private half first, so that a failure part-way can leave at most
/// a public key behind, never a private key no record points at.
pub(crate) fn destroy(session: &Session, id: &KeyId) -> Result<()> {
    let private = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id.0.clone()),
        ])
        .map_err(from_cryptoki)?;
    let rest = session
        .find_objects(&[Attribute::Id(id.0.clone())])
        .map_err(from_cryptoki)?;
    if private.is_empty() && rest.is_empty() {
        return Err(Error::KeyNotFound(id.to_hex()));
    }
    for handle in &private {
        session.destroy_object(*handle).map_err(from_cryptoki)?;
    }
    for handle in rest.iter().filter(|h| !private.contains(h)) {
        session.destroy_object(*handle).map_err(from_cryptoki)?;
    }
    Ok(())
}

/// The application name on Signet's data objects.
const APPLICATION: &[u8] = b"signet";

fn data_objects(session: &Session, name: &str) -> Result<Vec<ObjectHandle>> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Application(APPLICATION.to_vec()),
            Attribute::Label(name.as_bytes().to_vec()),
        ])
        .map_err(from_cryptoki)
}

/// The data objects named `name` with their values.
pub(crate) fn data_values(session: &Session, name: &str) -> Result<Vec<(ObjectHandle, Vec<u8>)>> {
    let mut values = Vec::new();
    for handle in data_objects(session, name)? {
        let attributes = match session.get_attributes(handle, &[AttributeType::Value]) {
            Ok(attributes) => attributes,
            // Destroyed since it was found, by another process sharing the token (a node
            // replacing the record): it is no longer one of the values.
            Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::ObjectHandleInvalid,
                _,
            )) => continue,
            Err(e) => return Err(from_cryptoki(e)),
        };
        let value = attributes.into_iter().find_map(|a| match a {
            Attribute::Value(v) => Some(v),
            _ => None,
        });
        values.extend(value.map(|v| (handle, v)));
    }
    Ok(values)
}

/// Adds a private, persistent, unmodifiable data object (`CKO_DATA`) named `name` holding
/// `data`, and returns it. Tokens may refuse to change `CKA_VALUE` (SoftHSM2 does), so a record
/// is replaced by adding the new object and destroying the old ones only once the new one
/// has been read back (see the backend's `write_record`).
pub(crate) fn create_data(session: &Session, name: &str, data: &[u8]) -> Result<ObjectHandle> {
    session
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Modifiable(false),
            Attribute::Application(APPLICATION.to_vec()),
            Attribute::Label(name.as_bytes().to_vec()),
            Attribute::Value(data.to_vec()),
        ])
        .map_err(from_cryptoki)
}

/// Destroys data objects, ignoring those already gone (another writer's replacement).
pub(crate) fn destroy_data(session: &Session, handles: &[ObjectHandle]) -> Result<()> {
    for handle in handles {
        match session.destroy_object(*handle) {
            Ok(())
            | Err(cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::ObjectHandleInvalid,
                _,
            )) => {}
            Err(e) => return Err(from_cryptoki(e)),
        }
    }
    Ok(())
}

/// Every value stored under `name` (normally one; two after an interrupted replacement).
pub(crate) fn read_data(session: &Session, name: &str) -> Result<Vec<Vec<u8>>> {
    Ok(data_values(session, name)?
        .into_iter()
        .map(|(_, v)| v)
        .collect())
}
