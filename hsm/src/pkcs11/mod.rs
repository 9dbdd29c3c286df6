//! The PKCS#11 backend (cryptoki): SoftHSM2, kryoptic, network HSMs (their vendor's module, or
//! p11-kit remoting), and YubiKeys through ykcs11. The only module that names cryptoki types.

mod error;
mod gate;
mod mechanisms;
mod module;
mod objects;
mod pool;
mod slots;
mod uri;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::ObjectHandle;
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;

pub use module::init_token;
pub use uri::{Pkcs11Uri, UriError};

use self::error::{from_cryptoki, is_mechanism_refusal};
use self::mechanisms::Mechanisms;
use self::pool::SessionPool;
use crate::backend::{Backend, BackendInfo, KeyId, KeyInfo, KeyRequest, Protection};
use crate::error::{Error, Fault, Result};
use crate::input::{EcdsaFormat, Payload, SignInput};
use crate::pin::Pin;
use crate::public::PublicKey;
use crate::spec::{KeySpec, SignatureAlgorithm};

/// Which token in the module to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token whose label is this (the usual choice; SoftHSM2 renumbers slots).
    Label(String),
    /// The slot with this id.
    Slot(u64),
    /// The token with this serial number.
    Serial(String),
    /// The token with this label and serial number.
    LabelAndSerial(String, String),
    /// The token matching every attribute of a PKCS#11 URI (RFC 7512).
    Uri(Pkcs11Uri),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "labelled {l:?}"),
            TokenSelector::Slot(s) => write!(f, "in slot {s}"),
            TokenSelector::Serial(s) => write!(f, "with serial {s:?}"),
            TokenSelector::LabelAndSerial(l, s) => write!(f, "labelled {l:?} with serial {s:?}"),
            TokenSelector::Uri(u) => write!(f, "matching {u}"),
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
    /// The token's slot: found again by the token selector after the module is reinitialised
    /// (a restarted HSM service, a p11-kit server, renumbers its slots).
    slot: std::sync::RwLock<Slot>,
    pin: Pin,
    token_label: String,
    mechanisms: Mechanisms,
    pool: SessionPool,
    /// Private-key handle and spec by id: a signature then costs one PKCS#11 call instead of a
    /// search and two attribute reads. Token-object handles outlive sessions; a stale entry (key
    /// destroyed elsewhere) is dropped on `CKR_KEY_HANDLE_INVALID` and looked up again.
    handles: Mutex<HashMap<KeyId, (ObjectHandle, KeySpec)>>,
    /// Specs the token listed a mechanism for but refused to generate (a remote token whose
    /// protocol cannot carry the mechanism): no longer offered.
    refused: Mutex<HashSet<KeySpec>>,
    /// Which token (to find it again after the module is reinitialised).
    token: TokenSelector,
    /// The module's file, whose slot list is read directly (see `slots`).
    module: std::path::PathBuf,
    /// Who may call into the module, and its reinitialisation (see `gate`).
    gate: gate::Gate,
}

/// A failure of the module or device as a whole, not of one session.
fn module_failure(error: &Error) -> bool {
    matches!(error, Error::Device { code, .. } if matches!(
        code.as_str(),
        "CKR_DEVICE_ERROR" | "CKR_DEVICE_REMOVED" | "CKR_TOKEN_NOT_PRESENT" | "CKR_CRYPTOKI_NOT_INITIALIZED" | "CKR_SLOT_ID_INVALID"
    ))
}

impl fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("slot", &self.slot().id())
            .field("token_label", &self.token_label)
            .field("pool_size", &self.pool.max())
            .finish_non_exhaustive()
    }
}

/// The PIN as cryptoki's secret type, made only at the call that needs it.
fn auth_pin(pin: &Pin) -> cryptoki::types::AuthPin {
    cryptoki::types::AuthPin::from(pin.expose())
}

/// How an operation may be retried after a failure.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Once more on a fresh session after a lost session: the operation changes nothing, or
    /// cannot have happened.
    Safe,
    /// Only after a lost login (then the operation cannot have happened).
    LoginOnly,
}

impl Pkcs11Backend {
    /// Loads the module, finds the token, logs in (which checks the PIN) and learns the token's
    /// mechanisms. A start that fails for a passing reason — a device error, or no token yet
    /// (SoftHSM2 misreads its token directory while another process starts on it; a network
    /// HSM's client may not be connected yet) — is tried again with a fresh module state, a few
    /// times over about two seconds. A refused PIN is never retried.
    pub fn open(config: Pkcs11Config) -> Result<Self> {
        let mut delay = std::time::Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match Self::open_once(&config) {
                Err(e @ (Error::Device { .. } | Error::TokenNotFound(_))) if attempt < 6 => {
                    // A token not there yet is common at start (a network HSM's client still
                    // connecting): only the final answer is worth a line; a device error is.
                    if matches!(e, Error::TokenNotFound(_)) {
                        tracing::debug!(error = %e, attempt, "no such token yet; trying again");
                    } else {
                        tracing::warn!(error = %e, attempt, "opening the token failed; trying again");
                    }
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn open_once(config: &Pkcs11Config) -> Result<Self> {
        let config = config.clone();
        let ctx = module::load(&config.module)?;
        let (slot, token_label) = module::find_slot(&ctx, &config.module, &config.token)?;
        let mechanisms = Mechanisms::new(ctx.get_mechanism_list(slot).map_err(from_cryptoki)?);
        let backend = Pkcs11Backend {
            pool: SessionPool::new(config.pool_size),
            ctx,
            slot: std::sync::RwLock::new(slot),
            pin: config.pin,
            token_label,
            mechanisms,
            handles: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashSet::new()),
            token: config.token.clone(),
            module: config.module.clone(),
            gate: gate::Gate::default(),
        };
        // Open the first session now so a wrong PIN fails here, clearly, and not on first use.
        let session = backend.pool.acquire(|| backend.open_session())?;
        backend.pool.release(session, true);
        Ok(backend)
    }

    /// The token's slot now.
    fn slot(&self) -> Slot {
        *self.slot.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads record `name` on a session opened for the purpose (not a pooled one, so no state
    /// of the session that wrote it is reused) and checks that `data` is among its values.
    fn read_back(&self, name: &str, data: &[u8]) -> Result<()> {
        let _pass = self.gate.enter();
        let session = self.open_session()?;
        let values = objects::read_data(&session, name)?;
        drop(session);
        if values.iter().any(|v| v.as_slice() == data) {
            Ok(())
        } else {
            Err(Error::Wrapper(format!(
                "the token answered CKR_OK to C_CreateObject for {name:?}, but a new session does not find the object: it was not kept (a full disk under the token?)"
            )))
        }
    }

    fn open_session(&self) -> Result<Session> {
        let session = self
            .ctx
            .open_rw_session(self.slot())
            .map_err(from_cryptoki)?;
        self.ensure_login(&session)?;
        Ok(session)
    }

    /// Finalises and initialises the module again (`C_Finalize`, `C_Initialize`: a remote
    /// module reconnects), forgetting every session and handle, once the token is found again
    /// in the same slot. Whether the caller should try again: at once when another caller has
    /// reinitialised since `seen`; otherwise at most once a second, and only when it worked.
    fn reinitialise(&self, seen: u64, cause: &Error) -> bool {
        let reinit = match self.gate.close(seen) {
            Ok(reinit) => reinit,
            Err(try_again) => return try_again,
        };
        tracing::warn!(error = %cause, "PKCS#11 module state lost; initialising the module again");
        if !reinit.drain() {
            tracing::warn!("PKCS#11 calls still in the module; finalising it under them");
        }
        // Close the idle sessions while their handles still mean them, before the module hands
        // the numbers out again.
        self.pool.discard_idle();
        self.handles_lock().clear();
        if let Err(e) = self.ctx.clone().finalize() {
            tracing::debug!(error = %from_cryptoki(e), "C_Finalize before reinitialising");
        }
        // Calls that C_Finalize woke leave (and close their sessions) before C_Initialize.
        if !reinit.drain() {
            tracing::warn!("PKCS#11 calls did not return after C_Finalize");
        }
        match self.ctx.initialize(cryptoki::context::CInitializeArgs::new(
            cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
        )) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => {
                tracing::error!(error = %from_cryptoki(e), "reinitialising the PKCS#11 module failed");
                return false;
            }
        }
        match module::find_slot(&self.ctx, &self.module, &self.token) {
            Ok((slot, _)) if slot.id() == self.slot().id() => true,
            Ok((slot, _)) if matches!(self.token, TokenSelector::Slot(_)) => {
                tracing::error!(
                    was = self.slot().id(),
                    now = slot.id(),
                    "the configured slot now holds another token"
                );
                false
            }
            Ok((slot, _)) => {
                tracing::warn!(
                    was = self.slot().id(),
                    now = slot.id(),
                    token = %self.token,
                    "the token is in another slot after reinitialising; following it"
                );
                *self.slot.write().unwrap_or_else(|p| p.into_inner()) = slot;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "the token is not there after reinitialising");
                false
            }
        }
    }

    /// PKCS#11 login is per token and application, not per session: log in only when the token
    /// says this application is not logged in.
    fn ensure_login(&self, session: &Session) -> Result<()> {
        if !self.is_logged_in(session)? {
            match session.login(UserType::User, Some(&auth_pin(&self.pin))) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(from_cryptoki(e)),
            }
        }
        Ok(())
    }

    fn is_logged_in(&self, session: &Session) -> Result<bool> {
        let state = session
            .get_session_info()
            .map_err(from_cryptoki)?
            .session_state();
        Ok(matches!(state, SessionState::RoUser | SessionState::RwUser))
    }

    /// Runs `op` on a pooled session, recovering from what other handles and the token do
    /// underneath: a session lost underneath is dropped with every idle one (a
    /// `C_CloseAllSessions` or token reset takes them all); a lost login is redone whatever code
    /// the token chose to report it with (SoftHSM2 says CKR_USER_NOT_LOGGED_IN or hides the key,
    /// kryoptic says CKR_GENERAL_ERROR), then the operation runs once more.
    ///
    /// When not even a new session can be opened, the module's own state is gone (a network
    /// HSM client whose connection died answers CKR_DEVICE_ERROR to everything until it is
    /// initialised again): the module is reinitialised, once, and the operation tried again.
    fn with_session<T>(&self, retry: Retry, op: impl Fn(&Session) -> Result<T>) -> Result<T> {
        let mut attempts = 2;
        let mut reinitialised = false;
        loop {
            let pass = self.gate.enter();
            let session = match self.pool.acquire(|| self.open_session()) {
                Ok(session) => session,
                Err(e) if e.fault() == Some(Fault::SessionLost) && !reinitialised => {
                    let seen = pass.generation;
                    drop(pass);
                    reinitialised = true;
                    if self.reinitialise(seen, &e) {
                        continue;
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            attempts -= 1;
            let error = match op(&session) {
                Ok(v) => {
                    self.pool.release(session, true);
                    return Ok(v);
                }
                Err(e) => e,
            };
            let lost = error.fault() == Some(Fault::SessionLost);
            let logged_in = if lost {
                None
            } else {
                self.is_logged_in(&session).ok()
            };
            match logged_in {
                None => {
                    tracing::warn!(error = %error, "PKCS#11 session lost; reopening");
                    self.pool.discard(session);
                    self.pool.discard_idle();
                    // The module itself failed (a remote module whose connection died): other
                    // calls on that connection may never return until C_Finalize, so the
                    // module is reinitialised now rather than when opening a session fails.
                    if module_failure(&error) && !reinitialised {
                        let seen = pass.generation;
                        drop(pass);
                        reinitialised = true;
                        self.reinitialise(seen, &error);
                    }
                    if attempts == 0 || retry != Retry::Safe {
                        return Err(error);
                    }
                }
                Some(false) => {
                    // Private objects are invisible to a session without the login, so a key
                    // "not found" may only be hidden: log in again and look once more.
                    tracing::warn!(error = %error, "PKCS#11 login lost; logging in again");
                    let relogged = self.ensure_login(&session);
                    self.pool.release(session, relogged.is_ok());
                    relogged?;
                    if attempts == 0 {
                        return Err(error);
                    }
                }
                Some(true) => {
                    self.pool.release(session, true);
                    return Err(error);
                }
            }
        }
    }

    /// The private key's handle and spec, from the cache or the token.
    fn cached_private(&self, session: &Session, id: &KeyId) -> Result<(ObjectHandle, KeySpec)> {
        if let Some(hit) = self.handles_lock().get(id) {
            return Ok(*hit);
        }
        let handle = objects::private_handle(session, id)?;
        let spec = objects::key_info(session, handle)?.spec;
        self.handles_lock().insert(id.clone(), (handle, spec));
        Ok((handle, spec))
    }

    fn handles_lock(&self) -> std::sync::MutexGuard<'_, HashMap<KeyId, (ObjectHandle, KeySpec)>> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn forget(&self, id: &KeyId) {
        self.handles_lock().remove(id);
    }

    /// The specs this token can generate.
    pub fn supported_specs(&self) -> Vec<KeySpec> {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        KeySpec::ALL
            .into_iter()
            .filter(|spec| self.mechanisms.keygen(*spec).is_some() && !refused.contains(spec))
            .filter(|spec| {
                spec.algorithms()
                    .iter()
                    .any(|alg| self.mechanisms.signs(*alg))
            })
            .collect()
    }

    /// The algorithms this token can do, judged by its mechanism list.
    pub fn supported_algorithms(&self) -> Vec<SignatureAlgorithm> {
        let specs = self.supported_specs();
        SignatureAlgorithm::ALL
            .into_iter()
            .filter(|alg| self.mechanisms.signs(*alg))
            .filter(|alg| specs.iter().any(|s| s.allows(*alg)))
            .collect()
    }

    fn unsupported_spec(&self, spec: KeySpec) -> Error {
        Error::SpecUnsupported {
            spec,
            supported: self.supported_specs(),
        }
    }
}

impl Backend for Pkcs11Backend {
    fn info(&self) -> Result<BackendInfo> {
        // Touch a session so readiness means "a session can be had and used".
        let (library, token) = self.with_session(Retry::Safe, |s| {
            s.get_session_info().map_err(from_cryptoki)?;
            let library = self.ctx.get_library_info().map_err(from_cryptoki)?;
            let token = self
                .ctx
                .get_token_info(self.slot())
                .map_err(from_cryptoki)?;
            Ok((library, token))
        })?;
        Ok(BackendInfo {
            kind: "pkcs11",
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
            specs: self.supported_specs(),
            algorithms: self.supported_algorithms(),
            sessions_open: self.pool.open(),
            sessions_max: self.pool.max(),
            details: vec![
                ("slot".into(), self.slot().id().to_string()),
                ("mechanisms".into(), self.mechanisms.len().to_string()),
                (
                    "manufacturer".into(),
                    token.manufacturer_id().trim_end().to_string(),
                ),
                (
                    "uri".into(),
                    Pkcs11Uri::for_token(
                        &self.token_label,
                        token.serial_number().trim_end(),
                        token.manufacturer_id().trim_end(),
                        token.model().trim_end(),
                    ),
                ),
            ],
        })
    }

    fn generate(&self, request: &KeyRequest) -> Result<KeyInfo> {
        let KeyRequest { label, spec, .. } = request;
        if label.is_empty() {
            return Err(Error::Unsupported("an empty key label".into()));
        }
        if !self.supported_specs().contains(spec) {
            return Err(self.unsupported_spec(*spec));
        }
        let mechanism = self
            .mechanisms
            .keygen(*spec)
            .ok_or_else(|| self.unsupported_spec(*spec))?;
        if self.find_by_label(label).is_ok() {
            return Err(Error::KeyExists(label.clone()));
        }
        let mut raw_id = vec![0u8; 16];
        getrandom::getrandom(&mut raw_id).map_err(|e| Error::Random(e.to_string()))?;
        let id = KeyId(raw_id);
        let (public, private) = objects::templates(label, &id, *spec);
        // Not retried on a lost session: a generation that reached the token may have created
        // the pair.
        let generated = self.with_session(Retry::LoginOnly, |s| {
            let first = match s.generate_key_pair(&mechanism, &public, &private) {
                Err(e) if objects::is_template_refusal(&e) => {
                    // A token that keeps public keys public (or refuses CKA_MODIFIABLE on
                    // them): the private half stays as strict as ever.
                    tracing::warn!(error = %from_cryptoki(e), "the token refused a private, unmodifiable public key; generating it public");
                    s.generate_key_pair(&mechanism, &objects::relaxed_public(&public), &private)
                }
                other => other,
            };
            match first {
                Ok(_) => Ok(Ok(())),
                Err(e) if is_mechanism_refusal(&e) => Ok(Err(e)),
                Err(e) => Err(from_cryptoki(e)),
            }
        })?;
        if let Err(e) = generated {
            tracing::warn!(spec = %spec, error = %from_cryptoki(e), "the token refused to generate this spec; no longer offering it");
            self.refused
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*spec);
            return Err(self.unsupported_spec(*spec));
        }
        tracing::info!(label = %label, spec = %spec, id = %id, "generated key pair in the token");
        Ok(KeyInfo {
            id,
            label: label.clone(),
            spec: *spec,
        })
    }

    fn import(&self, request: &KeyRequest, key: &crate::KeyMaterial) -> Result<KeyInfo> {
        let KeyRequest { label, .. } = request;
        let spec = key.spec();
        if label.is_empty() {
            return Err(Error::Unsupported("an empty key label".into()));
        }
        if !self.supported_specs().contains(&spec) {
            return Err(self.unsupported_spec(spec));
        }
        if self.find_by_label(label).is_ok() {
            return Err(Error::KeyExists(label.clone()));
        }
        let mut raw_id = vec![0u8; 16];
        getrandom::getrandom(&mut raw_id).map_err(|e| Error::Random(e.to_string()))?;
        let id = KeyId(raw_id);
        let (public, private) = objects::import_templates(label, &id, key)?;
        // Not retried on a lost session: a creation that reached the token may have happened.
        self.with_session(Retry::LoginOnly, |s| {
            let public_handle = s.create_object(&public).map_err(from_cryptoki)?;
            if let Err(e) = s.create_object(&private.0) {
                let _ = s.destroy_object(public_handle);
                return Err(from_cryptoki(e));
            }
            Ok(())
        })?;
        drop(private);
        tracing::info!(label = %label, spec = %spec, id = %id, "imported a key pair into the token");
        Ok(KeyInfo {
            id,
            label: label.clone(),
            spec,
        })
    }

    fn find(&self, id: &KeyId) -> Result<KeyInfo> {
        self.with_session(Retry::Safe, |s| {
            objects::key_info(s, objects::private_handle(s, id)?)
        })
    }

    fn find_by_label(&self, label: &str) -> Result<KeyInfo> {
        self.with_session(Retry::Safe, |s| {
            objects::key_info(s, objects::private_handle_by_label(s, label)?)
        })
    }

    fn list(&self) -> Result<Vec<KeyInfo>> {
        self.with_session(Retry::Safe, |s| {
            let mut keys = Vec::new();
            for handle in objects::private_handles(s)? {
                match objects::key_info(s, handle) {
                    Ok(info) => keys.push(info),
                    // Keys of other types (e.g. made by other tools) are not Signet's to list.
                    Err(Error::Unsupported(_)) | Err(Error::KeyNotFound(_)) => {}
                    // Destroyed by another client of the token since the search: gone.
                    Err(e) if e.fault() == Some(Fault::StaleHandle) => {}
                    Err(e) => return Err(e),
                }
            }
            keys.sort_by(|a, b| a.label.cmp(&b.label));
            Ok(keys)
        })
    }

    fn public_key(&self, id: &KeyId) -> Result<PublicKey> {
        self.with_session(Retry::Safe, |s| objects::public_key(s, id))
    }

    fn hashes_in_device(&self, algorithm: SignatureAlgorithm) -> bool {
        self.mechanisms.hashes(algorithm)
    }

    fn sign_payload(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        payload: Payload<'_>,
    ) -> Result<Vec<u8>> {
        self.sign_in_token(id, algorithm, payload, &[])
    }

    fn sign_with_context_string(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        message: &[u8],
        context: &[u8],
    ) -> Result<Vec<u8>> {
        let payload = if algorithm.is_pre_hash() {
            Payload::Digest(message)
        } else {
            Payload::Message(message)
        };
        self.sign_in_token(id, algorithm, payload, context)
    }

    /// Messages are verified in software from the public key; a precomputed digest, which no
    /// software verifier here takes, in the token (`C_Verify`).
    fn verify(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
        signature: &[u8],
        format: EcdsaFormat,
    ) -> Result<bool> {
        self.verify_in_token(id, algorithm, input, signature, format)
    }

    fn protection(&self, id: &KeyId) -> Result<Protection> {
        self.with_session(Retry::Safe, |s| objects::protection(s, id))
    }

    fn destroy(&self, id: &KeyId) -> Result<()> {
        self.forget(id);
        self.with_session(Retry::Safe, |s| objects::destroy(s, id))
    }

    /// Adds the new value, reads it back on a session of its own (a token that answered
    /// `CKR_OK` without keeping the object — SoftHSM2 on a full disk leaves an empty object
    /// file — fails here), and only then destroys the older values. A failure at any step
    /// leaves the older values in place: never none.
    fn write_record(
        &self,
        name: &str,
        data: &[u8],
        superseded: &dyn Fn(&[u8]) -> bool,
    ) -> Result<()> {
        self.with_session(Retry::Safe, |s| objects::create_data(s, name, data))?;
        let kept = self.read_back(name, data);
        if let Err(e) = kept {
            // Leave no unconfirmed object behind to be mistaken for the record later.
            let _ = self.with_session(Retry::Safe, |s| {
                let unconfirmed: Vec<ObjectHandle> = objects::data_values(s, name)?
                    .into_iter()
                    .filter(|(_, v)| v.as_slice() == data)
                    .map(|(h, _)| h)
                    .collect();
                objects::destroy_data(s, &unconfirmed)
            });
            return Err(e);
        }
        self.with_session(Retry::Safe, |s| {
            let older: Vec<ObjectHandle> = objects::data_values(s, name)?
                .into_iter()
                .filter(|(_, v)| v.as_slice() != data && superseded(v))
                .map(|(h, _)| h)
                .collect();
            objects::destroy_data(s, &older)
        })
    }

    fn read_records(&self, name: &str) -> Result<Vec<Vec<u8>>> {
        self.with_session(Retry::Safe, |s| objects::read_data(s, name))
    }
}

impl Pkcs11Backend {
    /// `C_Sign` with the key `id`, after the mechanism checks; `context` as in
    /// [`mechanisms::for_signature`].
    fn sign_in_token(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        payload: Payload<'_>,
        context: &[u8],
    ) -> Result<Vec<u8>> {
        if !self.mechanisms.signs(algorithm) {
            return Err(Error::AlgorithmUnsupported {
                algorithm,
                supported: self.supported_algorithms(),
            });
        }
        let (mechanism, data) = mechanisms::for_signature(algorithm, payload, context)?;
        // Signing changes nothing in the token, so a lost session is retried once.
        self.with_session(Retry::Safe, |s| {
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
                    s.sign(&mechanism, handle, &data).map_err(from_cryptoki)
                }
                Err(e) if is_mechanism_refusal(&e) => Err(Error::AlgorithmUnsupported {
                    algorithm,
                    supported: self.supported_algorithms(),
                }),
                other => other.map_err(from_cryptoki),
            }
        })
    }

    fn verify_in_token(
        &self,
        id: &KeyId,
        algorithm: SignatureAlgorithm,
        input: SignInput<'_>,
        signature: &[u8],
        format: EcdsaFormat,
    ) -> Result<bool> {
        let digest = match input {
            SignInput::Digest(d) if !algorithm.is_pre_hash() => d,
            // Messages, and HashML-DSA and HashSLH-DSA digests too: the software verifier
            // takes them.
            _ => {
                let public = self.public_key(id)?;
                return crate::verify::verify(&public, algorithm, input, signature, format);
            }
        };
        let hash = algorithm.hash().ok_or_else(|| {
            Error::Unsupported(format!(
                "{algorithm} verifies the whole message, not a digest"
            ))
        })?;
        if digest.len() != hash.len() {
            return Err(Error::DigestLength {
                algorithm,
                expected: hash.len(),
                actual: digest.len(),
            });
        }
        let (mechanism, data) = mechanisms::for_signature(algorithm, Payload::Digest(digest), &[])?;
        let signature = match (algorithm.is_ecdsa(), format) {
            (true, EcdsaFormat::Der) => {
                let field = if algorithm == SignatureAlgorithm::Es256 {
                    32
                } else {
                    48
                };
                match crate::der::ecdsa_der_to_raw(signature, field) {
                    Ok(raw) => raw,
                    Err(_) => return Ok(false),
                }
            }
            _ => signature.to_vec(),
        };
        self.with_session(Retry::Safe, |s| {
            let (_, spec) = self.cached_private(s, id)?;
            if !spec.allows(algorithm) {
                return Err(Error::AlgorithmMismatch { algorithm, spec });
            }
            let handle = objects::public_handle(s, id)?;
            match s.verify(&mechanism, handle, &data, &signature) {
                Ok(()) => Ok(true),
                Err(CkError::Pkcs11(RvError::SignatureInvalid | RvError::SignatureLenRange, _)) => {
                    Ok(false)
                }
                Err(e) => Err(from_cryptoki(e)),
            }
        })
    }
}
