//! The PKCS#11 backend (cryptoki): SoftHSM2, network HSMs, and YubiKeys through ykcs11.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;

use crate::backend::{Backend, BackendInfo, EcdsaFormat, KeyId, KeyInfo, Protection, SignInput};
use crate::der::{self, oid};
use crate::error::{Error, Result};
use crate::pin::Pin;
use crate::public::PublicKey;
use crate::spec::{Hash, KeySpec, SignatureAlgorithm};

/// Which token in the module to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token whose label is this (the usual choice; SoftHSM2 renumbers slots).
    Label(String),
    /// The slot with this id.
    Slot(u64),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "labelled {l:?}"),
            TokenSelector::Slot(s) => write!(f, "in slot {s}"),
        }
    }
}

/// How to reach a token. The PIN's `Debug` is redacted, so this can be logged.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`libsofthsm2.so`, `libykcs11.so`, …).
    pub module: PathBuf,
    /// Which token.
    pub token: TokenSelector,
    /// The user PIN.
    pub pin: Pin,
    /// Upper bound on concurrently open sessions (at least 1).
    pub pool_size: usize,
}

/// A backend over one token of a PKCS#11 module.
pub struct Pkcs11Backend {
    ctx: Pkcs11,
    slot: Slot,
    pin: Pin,
    token_label: String,
    mechanisms: Vec<MechanismType>,
    pool: SessionPool,
    /// Private-key handle and spec by `CKA_ID`: a signature then costs one PKCS#11 call instead of
    /// a search and two attribute reads. Token-object handles outlive sessions; a stale entry
    /// (key destroyed elsewhere) is dropped on `CKR_KEY_HANDLE_INVALID` and looked up again.
    handles: Mutex<std::collections::HashMap<Vec<u8>, (ObjectHandle, KeySpec)>>,
}

impl fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("slot", &self.slot.id())
            .field("token_label", &self.token_label)
            .field("pool_size", &self.pool.max)
            .finish_non_exhaustive()
    }
}

/// Loads a module and initialises it, tolerating another handle having done so already.
fn load_module(path: &Path) -> Result<Pkcs11> {
    if !path.is_file() {
        return Err(Error::ModuleLoad {
            path: path.to_path_buf(),
            reason: "no such file".into(),
        });
    }
    let ctx = Pkcs11::new(path).map_err(|e| Error::ModuleLoad {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(e.into()),
    }
}

fn find_slot(ctx: &Pkcs11, token: &TokenSelector) -> Result<(Slot, String)> {
    for slot in ctx.get_slots_with_initialized_token()? {
        let info = ctx.get_token_info(slot)?;
        let found = match token {
            TokenSelector::Label(label) => info.label().trim_end() == label,
            TokenSelector::Slot(id) => slot.id() == *id,
        };
        if found {
            return Ok((slot, info.label().trim_end().to_string()));
        }
    }
    Err(Error::TokenNotFound(token.to_string()))
}

/// Initialises a fresh token in the first slot with an uninitialised one, and sets its user PIN.
/// This is what `softhsm2-util --init-token --free` does, through the PKCS#11 ABI, so PINs never
/// appear on a command line.
pub fn init_token(module: &Path, label: &str, so_pin: &Pin, user_pin: &Pin) -> Result<()> {
    let ctx = load_module(module)?;
    if find_slot(&ctx, &TokenSelector::Label(label.to_string())).is_ok() {
        return Err(Error::KeyExists(format!("token {label}")));
    }
    let mut free = None;
    for slot in ctx.get_slots_with_token()? {
        if !ctx.get_token_info(slot)?.token_initialized() {
            free = Some(slot);
            break;
        }
    }
    let slot =
        free.ok_or_else(|| Error::TokenNotFound("with a free (uninitialised) slot".into()))?;
    ctx.init_token(slot, &so_pin.auth_pin(), label)?;
    // SoftHSM2 moves a newly initialised token to a new slot id: look it up again.
    let (slot, _) = find_slot(&ctx, &TokenSelector::Label(label.to_string()))?;
    let session = ctx.open_rw_session(slot)?;
    session.login(UserType::So, Some(&so_pin.auth_pin()))?;
    session.init_pin(&user_pin.auth_pin())?;
    session.logout()?;
    Ok(())
}

impl Pkcs11Backend {
    /// Loads the module, finds the token, logs in (which checks the PIN) and learns the token's
    /// mechanisms.
    pub fn open(config: Pkcs11Config) -> Result<Self> {
        let ctx = load_module(&config.module)?;
        let (slot, token_label) = find_slot(&ctx, &config.token)?;
        let mechanisms = ctx.get_mechanism_list(slot)?;
        let backend = Pkcs11Backend {
            pool: SessionPool::new(config.pool_size.max(1)),
            ctx,
            slot,
            pin: config.pin,
            token_label,
            mechanisms,
            handles: Mutex::new(std::collections::HashMap::new()),
        };
        // Open the first session now so a wrong PIN fails here, clearly, and not on first use.
        let session = backend.pool.acquire(|| backend.open_session())?;
        backend.pool.release(session, true);
        Ok(backend)
    }

    fn open_session(&self) -> Result<Session> {
        let session = self.ctx.open_rw_session(self.slot)?;
        self.ensure_login(&session)?;
        Ok(session)
    }

    /// PKCS#11 login is per token and application, not per session: log in only when the token
    /// says this application is not logged in.
    fn ensure_login(&self, session: &Session) -> Result<()> {
        let state = session.get_session_info()?.session_state();
        if matches!(state, SessionState::RoPublic | SessionState::RwPublic) {
            match session.login(UserType::User, Some(&self.pin.auth_pin())) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Runs `op` on a pooled session. A session lost underneath is dropped with every idle one (a
    /// `C_CloseAllSessions` or token reset takes them all); a lost login is redone. When `retry`
    /// is true the operation is tried once more on a fresh session — only for operations that
    /// change nothing or cannot have happened.
    fn with_session<T>(&self, retry: bool, op: impl Fn(&Session) -> Result<T>) -> Result<T> {
        let mut attempts = if retry { 2 } else { 1 };
        loop {
            attempts -= 1;
            let session = self.pool.acquire(|| self.open_session())?;
            let result = op(&session);
            match result {
                Err(e) if e.is_session_lost() => {
                    tracing::warn!(error = %e, "PKCS#11 session lost; reopening");
                    self.pool.discard(session);
                    self.pool.discard_idle();
                    if attempts == 0 {
                        return Err(e);
                    }
                }
                // Private objects are invisible to a session that lost its login, so a key that
                // is "not found" may only be hidden: check the session state before believing it.
                Err(e @ Error::KeyNotFound(_)) if !self.is_logged_in(&session) => {
                    tracing::warn!("PKCS#11 login lost (key hidden); logging in again");
                    let relogged = self.ensure_login(&session);
                    self.pool.release(session, relogged.is_ok());
                    relogged?;
                    if attempts == 0 {
                        return Err(e);
                    }
                }
                Err(e) if e.is_not_logged_in() => {
                    tracing::warn!("PKCS#11 login lost; logging in again");
                    let relogged = self.ensure_login(&session);
                    self.pool.release(session, relogged.is_ok());
                    relogged?;
                    if attempts == 0 {
                        return Err(e);
                    }
                }
                other => {
                    self.pool.release(session, true);
                    return other;
                }
            }
        }
    }

    fn is_logged_in(&self, session: &Session) -> bool {
        session
            .get_session_info()
            .map(|info| {
                matches!(
                    info.session_state(),
                    SessionState::RoUser | SessionState::RwUser
                )
            })
            .unwrap_or(false)
    }

    /// The private key's handle and spec, from the cache or the token.
    fn cached_private(&self, session: &Session, id: &KeyId) -> Result<(ObjectHandle, KeySpec)> {
        if let Some(hit) = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id.0)
        {
            return Ok(*hit);
        }
        let handle = Self::private_handle(session, id)?;
        let spec = Self::key_info(session, handle)?.spec;
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.0.clone(), (handle, spec));
        Ok((handle, spec))
    }

    fn forget(&self, id: &KeyId) {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id.0);
    }

    fn has(&self, mechanism: MechanismType) -> bool {
        self.mechanisms.contains(&mechanism)
    }

    fn private_handle(session: &Session, id: &KeyId) -> Result<ObjectHandle> {
        let found = session.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(id.0.clone()),
        ])?;
        found
            .first()
            .copied()
            .ok_or_else(|| Error::KeyNotFound(id.to_hex()))
    }

    fn key_info(session: &Session, handle: ObjectHandle) -> Result<KeyInfo> {
        let attrs = session.get_attributes(
            handle,
            &[
                AttributeType::Id,
                AttributeType::Label,
                AttributeType::KeyType,
            ],
        )?;
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
            Some(t) if t == KeyType::EC || t == KeyType::EC_EDWARDS || t == KeyType::RSA => {
                Self::public_key_of(session, &id, t)?.spec()
            }
            _ => {
                return Err(Error::Unsupported(format!(
                    "key {label:?} of an unsupported type"
                )))
            }
        };
        Ok(KeyInfo { id, label, spec })
    }

    fn public_handle(session: &Session, id: &KeyId) -> Result<ObjectHandle> {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(id.0.clone()),
            ])?
            .first()
            .copied()
            .ok_or_else(|| Error::KeyNotFound(format!("{} (public half)", id.to_hex())))
    }

    fn public_key_of(session: &Session, id: &KeyId, key_type: KeyType) -> Result<PublicKey> {
        let handle = Self::public_handle(session, id)?;
        if key_type == KeyType::RSA {
            let attrs = session.get_attributes(
                handle,
                &[AttributeType::Modulus, AttributeType::PublicExponent],
            )?;
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
        let attrs =
            session.get_attributes(handle, &[AttributeType::EcParams, AttributeType::EcPoint])?;
        let (mut params, mut point) = (Vec::new(), Vec::new());
        for attr in attrs {
            match attr {
                Attribute::EcParams(v) => params = v,
                Attribute::EcPoint(v) => point = v,
                _ => {}
            }
        }
        let spec = if params == oid::P256 {
            KeySpec::EcP256
        } else if params == oid::P384 {
            KeySpec::EcP384
        } else if params == oid::ED25519 || params == der::tlv(0x13, b"edwards25519") {
            KeySpec::Ed25519
        } else {
            return Err(Error::Unsupported("EC key on an unsupported curve".into()));
        };
        PublicKey::from_ec_point(spec, &point)
    }

    fn templates(label: &str, id: &KeyId, spec: KeySpec) -> (Vec<Attribute>, Vec<Attribute>) {
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Id(id.0.clone()),
                Attribute::Label(label.as_bytes().to_vec()),
            ]
        };
        let mut public = common(false);
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
            KeySpec::EcP256 => public.push(Attribute::EcParams(oid::P256.to_vec())),
            KeySpec::EcP384 => public.push(Attribute::EcParams(oid::P384.to_vec())),
            KeySpec::Ed25519 => public.push(Attribute::EcParams(oid::ED25519.to_vec())),
            _ => {
                let bits = spec.rsa_bits().unwrap_or(2048);
                public.push(Attribute::ModulusBits(u64::from(bits).into()));
                public.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
            }
        }
        (public, private)
    }

    /// Picks the mechanism and the bytes to give it. ECDSA and RSA are hashed by the token when it
    /// has the combined mechanism, else on the host (SoftHSM2 2.6.1 has no CKM_ECDSA_SHA256).
    fn sign_request(
        &self,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
    ) -> Result<(Mechanism<'static>, Vec<u8>)> {
        if let SignInput::Message(m) = input {
            if m.is_empty() {
                return Err(Error::EmptyInput);
            }
        }
        let Some(hash) = algorithm.hash() else {
            // EdDSA signs the message itself.
            return match input {
                SignInput::Message(m) => Ok((
                    Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                    m.to_vec(),
                )),
                SignInput::Digest(_) => Err(Error::Unsupported(
                    "EdDSA signs the whole message; a precomputed digest cannot be signed".into(),
                )),
            };
        };
        let digest = match input {
            SignInput::Digest(d) => {
                if d.len() != hash.len() {
                    return Err(Error::DigestLength {
                        algorithm,
                        expected: hash.len(),
                        actual: d.len(),
                    });
                }
                Some(d.to_vec())
            }
            SignInput::Message(_) => None,
        };
        let message = |m: SignInput<'_>| match m {
            SignInput::Message(m) => m.to_vec(),
            SignInput::Digest(d) => d.to_vec(),
        };
        let (hash_mech, mgf) = match hash {
            Hash::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
            Hash::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
            Hash::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
        };
        let pss = PkcsPssParams {
            hash_alg: hash_mech,
            mgf,
            s_len: (hash.len() as u64).into(),
        };
        use SignatureAlgorithm::*;
        Ok(match (algorithm, digest) {
            (Es256 | Es384, Some(d)) => (Mechanism::Ecdsa, d),
            (Es256, None) if self.has(MechanismType::ECDSA_SHA256) => {
                (Mechanism::EcdsaSha256, message(input))
            }
            (Es384, None) if self.has(MechanismType::ECDSA_SHA384) => {
                (Mechanism::EcdsaSha384, message(input))
            }
            (Es256 | Es384, None) => (Mechanism::Ecdsa, hash.digest(&message(input))),
            (Rs256 | Rs384 | Rs512, Some(d)) => (
                Mechanism::RsaPkcs,
                [der::rsa_digest_info_prefix(hash), &d].concat(),
            ),
            (Rs256, None) if self.has(MechanismType::SHA256_RSA_PKCS) => {
                (Mechanism::Sha256RsaPkcs, message(input))
            }
            (Rs384, None) if self.has(MechanismType::SHA384_RSA_PKCS) => {
                (Mechanism::Sha384RsaPkcs, message(input))
            }
            (Rs512, None) if self.has(MechanismType::SHA512_RSA_PKCS) => {
                (Mechanism::Sha512RsaPkcs, message(input))
            }
            (Rs256 | Rs384 | Rs512, None) => (
                Mechanism::RsaPkcs,
                [
                    der::rsa_digest_info_prefix(hash),
                    &hash.digest(&message(input)),
                ]
                .concat(),
            ),
            (Ps256 | Ps384 | Ps512, Some(d)) => (Mechanism::RsaPkcsPss(pss), d),
            (Ps256, None) if self.has(MechanismType::SHA256_RSA_PKCS_PSS) => {
                (Mechanism::Sha256RsaPkcsPss(pss), message(input))
            }
            (Ps384, None) if self.has(MechanismType::SHA384_RSA_PKCS_PSS) => {
                (Mechanism::Sha384RsaPkcsPss(pss), message(input))
            }
            (Ps512, None) if self.has(MechanismType::SHA512_RSA_PKCS_PSS) => {
                (Mechanism::Sha512RsaPkcsPss(pss), message(input))
            }
            (Ps256 | Ps384 | Ps512, None) => {
                (Mechanism::RsaPkcsPss(pss), hash.digest(&message(input)))
            }
            (EdDsa, _) => unreachable_eddsa()?,
        })
    }

    /// The algorithms this token can do, judged by its mechanism list.
    pub fn supported_algorithms(&self) -> Vec<SignatureAlgorithm> {
        use SignatureAlgorithm::*;
        SignatureAlgorithm::ALL
            .into_iter()
            .filter(|alg| match alg {
                Es256 | Es384 => self.has(MechanismType::ECDSA),
                EdDsa => self.has(MechanismType::EDDSA),
                Rs256 | Rs384 | Rs512 => self.has(MechanismType::RSA_PKCS),
                Ps256 | Ps384 | Ps512 => self.has(MechanismType::RSA_PKCS_PSS),
            })
            .collect()
    }
}

fn unreachable_eddsa<T>() -> Result<T> {
    Err(Error::Unsupported("EdDSA has no hash".into()))
}

impl Backend for Pkcs11Backend {
    fn info(&self) -> Result<BackendInfo> {
        let library = self.ctx.get_library_info()?;
        let token = self.ctx.get_token_info(self.slot)?;
        // Touch a session so readiness means "a session can be had and used".
        self.with_session(true, |s| Ok(s.get_session_info()?.session_state()))?;
        Ok(BackendInfo {
            library: format!(
                "{} {} {}.{}",
                library.manufacturer_id().trim_end(),
                library.library_description().trim_end(),
                library.library_version().major(),
                library.library_version().minor()
            ),
            token_label: self.token_label.clone(),
            token_model: format!(
                "{} {}",
                token.model().trim_end(),
                token.serial_number().trim_end()
            ),
            algorithms: self.supported_algorithms(),
            pool_size: self.pool.max,
            sessions_open: self.pool.open(),
        })
    }

    fn generate(&self, label: &str, spec: KeySpec) -> Result<KeyInfo> {
        if label.is_empty() {
            return Err(Error::Unsupported("an empty key label".into()));
        }
        if self.find_by_label(label).is_ok() {
            return Err(Error::KeyExists(label.to_string()));
        }
        let mut raw_id = vec![0u8; 16];
        getrandom::getrandom(&mut raw_id).map_err(|e| Error::Wrapper(format!("random id: {e}")))?;
        let id = KeyId(raw_id);
        let (public, private) = Self::templates(label, &id, spec);
        let mechanism = match spec {
            KeySpec::EcP256 | KeySpec::EcP384 => Mechanism::EccKeyPairGen,
            KeySpec::Ed25519 => Mechanism::EccEdwardsKeyPairGen,
            _ => Mechanism::RsaPkcsKeyPairGen,
        };
        // Not retried: a generation that reached the token may have created the pair.
        self.with_session(false, |s| {
            s.generate_key_pair(&mechanism, &public, &private)?;
            Ok(())
        })?;
        tracing::info!(label, spec = %spec, id = %id, "generated key pair in the token");
        Ok(KeyInfo {
            id,
            label: label.to_string(),
            spec,
        })
    }

    fn find(&self, id: &KeyId) -> Result<KeyInfo> {
        self.with_session(true, |s| {
            let handle = Self::private_handle(s, id)?;
            Self::key_info(s, handle)
        })
    }

    fn find_by_label(&self, label: &str) -> Result<KeyInfo> {
        self.with_session(true, |s| {
            let found = s.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])?;
            let handle = found
                .first()
                .copied()
                .ok_or_else(|| Error::KeyNotFound(label.to_string()))?;
            Self::key_info(s, handle)
        })
    }

    fn list(&self) -> Result<Vec<KeyInfo>> {
        self.with_session(true, |s| {
            let handles = s.find_objects(&[Attribute::Class(ObjectClass::PRIVATE_KEY)])?;
            let mut keys = Vec::with_capacity(handles.len());
            for handle in handles {
                match Self::key_info(s, handle) {
                    Ok(info) => keys.push(info),
                    // Keys of other types (e.g. made by other tools) are not Signet's to list.
                    Err(Error::Unsupported(_)) | Err(Error::KeyNotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            keys.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(keys)
        })
    }

    fn public_key(&self, id: &KeyId) -> Result<PublicKey> {
        self.with_session(true, |s| {
            let handle = Self::private_handle(s, id)?;
            let key_type = s
                .get_attributes(handle, &[AttributeType::KeyType])?
                .into_iter()
                .find_map(|a| match a {
                    Attribute::KeyType(t) => Some(t),
                    _ => None,
                })
                .ok_or_else(|| Error::Malformed("key without CKA_KEY_TYPE".into()))?;
            Self::public_key_of(s, id, key_type)
        })
    }

    fn sign(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
        format: EcdsaFormat,
    ) -> Result<Vec<u8>> {
        let (mechanism, data) = self.sign_request(algorithm, input)?;
        // Signing changes nothing in the token, so a lost session is retried once.
        let signature = self.with_session(true, |s| {
            let (handle, spec) = self.cached_private(s, id)?;
            if !spec.allows(algorithm) {
                return Err(Error::AlgorithmMismatch { algorithm, spec });
            }
            match s.sign(&mechanism, handle, &data) {
                Err(CkError::Pkcs11(
                    RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid,
                    _,
                )) => {
                    // Destroyed or replaced underneath: forget the handle and look again.
                    self.forget(id);
                    let (handle, _) = self.cached_private(s, id)?;
                    Ok(s.sign(&mechanism, handle, &data)?)
                }
                other => Ok(other?),
            }
        })?;
        if algorithm.is_ecdsa() && format == EcdsaFormat::Der {
            return der::ecdsa_raw_to_der(&signature);
        }
        Ok(signature)
    }

    fn verify(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
        signature: &[u8],
        format: EcdsaFormat,
    ) -> Result<bool> {
        let (mechanism, data) = self.sign_request(algorithm, input)?;
        let signature = match (algorithm, format) {
            (SignatureAlgorithm::Es256, EcdsaFormat::Der) => {
                match der::ecdsa_der_to_raw(signature, 32) {
                    Ok(raw) => raw,
                    Err(_) => return Ok(false),
                }
            }
            (SignatureAlgorithm::Es384, EcdsaFormat::Der) => {
                match der::ecdsa_der_to_raw(signature, 48) {
                    Ok(raw) => raw,
                    Err(_) => return Ok(false),
                }
            }
            _ => signature.to_vec(),
        };
        self.with_session(true, |s| {
            let handle = Self::public_handle(s, id)?;
            let (_, spec) = self.cached_private(s, id)?;
            if !spec.allows(algorithm) {
                return Err(Error::AlgorithmMismatch { algorithm, spec });
            }
            match s.verify(&mechanism, handle, &data, &signature) {
                Ok(()) => Ok(true),
                Err(CkError::Pkcs11(RvError::SignatureInvalid | RvError::SignatureLenRange, _)) => {
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn protection(&self, id: &KeyId) -> Result<Protection> {
        self.with_session(true, |s| {
            let handle = Self::private_handle(s, id)?;
            let attrs = s.get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::AlwaysSensitive,
                    AttributeType::Extractable,
                    AttributeType::NeverExtractable,
                    AttributeType::Token,
                    AttributeType::Private,
                ],
            )?;
            let mut p = Protection {
                sensitive: false,
                always_sensitive: false,
                extractable: true,
                never_extractable: false,
                token: false,
                private: false,
            };
            for attr in attrs {
                match attr {
                    Attribute::Sensitive(v) => p.sensitive = v,
                    Attribute::AlwaysSensitive(v) => p.always_sensitive = v,
                    Attribute::Extractable(v) => p.extractable = v,
                    Attribute::NeverExtractable(v) => p.never_extractable = v,
                    Attribute::Token(v) => p.token = v,
                    Attribute::Private(v) => p.private = v,
                    _ => {}
                }
            }
            Ok(p)
        })
    }

    fn destroy(&self, id: &KeyId) -> Result<()> {
        self.forget(id);
        self.with_session(true, |s| {
            let handles = s.find_objects(&[Attribute::Id(id.0.clone())])?;
            if handles.is_empty() {
                return Err(Error::KeyNotFound(id.to_hex()));
            }
            for handle in handles {
                s.destroy_object(handle)?;
            }
            Ok(())
        })
    }
}

/// A bounded set of logged-in sessions. Callers block (on a blocking thread, never an async
/// worker) when every session is in use.
struct SessionPool {
    max: usize,
    state: Mutex<PoolState>,
    freed: Condvar,
}

struct PoolState {
    idle: Vec<Session>,
    open: usize,
}

impl SessionPool {
    fn new(max: usize) -> Self {
        SessionPool {
            max,
            state: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic while holding this lock cannot leave the state inconsistent (plain pushes and
        // counters), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn acquire(&self, open: impl FnOnce() -> Result<Session>) -> Result<Session> {
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(session);
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return open().inspect_err(|_| {
                    self.lock().open -= 1;
                    self.freed.notify_one();
                });
            }
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn release(&self, session: Session, healthy: bool) {
        if healthy {
            self.lock().idle.push(session);
        } else {
            self.discard(session);
            return;
        }
        self.freed.notify_one();
    }

    fn discard(&self, session: Session) {
        drop(session);
        self.lock().open -= 1;
        self.freed.notify_one();
    }

    fn discard_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        drop(idle);
        self.freed.notify_all();
    }

    fn open(&self) -> usize {
        self.lock().open
    }
}
