//! The token's state and every operation on it, in safe Rust: the FFI layer only moves
//! pointers in and out. One global state behind a mutex; calls to the server are made with
//! the mutex released, so threads sign in parallel.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use signet_client::{Client, Error as ClientError, Identity, SignRequest, UsableKey};
use zeroize::Zeroizing;

use crate::config::Config;
use crate::mechanism::{self, Data, Params, Plan};
use crate::objects::{KeyKind, Object};

/// How long the object list is reused before it is asked for again.
const FRESH: Duration = Duration::from_secs(2);

/// Result of an operation: a `CKR_*` on failure.
pub type Rv<T> = Result<T, CK_RV>;

/// A signature in progress.
#[derive(Debug)]
struct SignOp {
    object: Object,
    plan: Plan,
    data: Data,
}

#[derive(Debug)]
struct Session {
    flags: CK_FLAGS,
    found: Option<Vec<CK_OBJECT_HANDLE>>,
    sign: Option<SignOp>,
    /// A verification in progress (the same shape: the key, the plan, the data so far).
    verify: Option<SignOp>,
}

/// The module's state between `C_Initialize` and `C_Finalize`.
#[derive(Debug)]
pub struct Token {
    config: Config,
    /// The process that initialised it: a child after `fork` must initialise again.
    pid: u32,
    client: Option<Client>,
    logged_in: bool,
    sessions: HashMap<CK_SESSION_HANDLE, Session>,
    next_session: CK_SESSION_HANDLE,
    objects: Vec<Object>,
    handles: HashMap<(Vec<u8>, CK_OBJECT_CLASS), CK_OBJECT_HANDLE>,
    next_handle: CK_OBJECT_HANDLE,
    loaded: Option<Instant>,
}

static TOKEN: Mutex<Option<Token>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<Token>> {
    TOKEN.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes a line to stderr when `SIGNET_PKCS11_DEBUG` is set. Never given a PIN or a key.
pub fn debug(message: impl std::fmt::Display) {
    if std::env::var_os("SIGNET_PKCS11_DEBUG").is_some() {
        eprintln!("signet-pkcs11: {message}");
    }
}

/// Runs `f` on the initialised token.
fn with<T>(f: impl FnOnce(&mut Token) -> Rv<T>) -> Rv<T> {
    let mut guard = lock();
    match guard.as_mut() {
        Some(t) if t.pid == std::process::id() => f(t),
        _ => Err(CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

/// `C_Initialize`: reads the settings. A child of `fork` starts afresh.
pub fn initialize() -> Rv<()> {
    let mut guard = lock();
    if guard.as_ref().is_some_and(|t| t.pid == std::process::id()) {
        return Err(CKR_CRYPTOKI_ALREADY_INITIALIZED);
    }
    if let Some(inherited) = guard.take() {
        // A child of `fork`: the parent's connections are shared sockets. Dropping them here
        // could close or shut down what the parent still uses, so the child's copy is left
        // alone (a little memory, once per fork) and the child starts afresh.
        std::mem::forget(inherited);
    }
    let config = Config::from_env().map_err(|e| {
        // Settings errors name files and fields, never secrets; without them nobody could
        // tell why the module refuses to start.
        eprintln!("signet-pkcs11: {e}");
        CKR_GENERAL_ERROR
    })?;
    *guard = Some(Token {
        config,
        pid: std::process::id(),
        client: None,
        logged_in: false,
        sessions: HashMap::new(),
        next_session: 1,
        objects: Vec::new(),
        handles: HashMap::new(),
        next_handle: 1,
        loaded: None,
    });
    Ok(())
}

/// `C_Finalize`.
pub fn finalize() -> Rv<()> {
    let mut guard = lock();
    match guard.as_ref() {
        Some(t) if t.pid == std::process::id() => {
            *guard = None;
            Ok(())
        }
        _ => Err(CKR_CRYPTOKI_NOT_INITIALIZED),
    }
}

/// What `C_GetTokenInfo` and `C_GetSlotInfo` say.
#[derive(Debug)]
pub struct Info {
    /// The token label.
    pub label: String,
    /// The server.
    pub url: String,
    /// Whether `C_Login` is needed.
    pub login_required: bool,
    /// Open sessions.
    pub sessions: usize,
    /// Open read-write sessions.
    pub rw_sessions: usize,
}

/// The token's description.
pub fn info() -> Rv<Info> {
    with(|t| {
        Ok(Info {
            label: t.config.label.clone(),
            url: t.config.settings.url.clone(),
            login_required: t.config.login_required(),
            sessions: t.sessions.len(),
            rw_sessions: t
                .sessions
                .values()
                .filter(|s| s.flags & CKF_RW_SESSION != 0)
                .count(),
        })
    })
}

/// Checks the library is initialised.
pub fn initialized() -> Rv<()> {
    with(|_| Ok(()))
}

/// `C_OpenSession`.
pub fn open_session(flags: CK_FLAGS) -> Rv<CK_SESSION_HANDLE> {
    with(|t| {
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(CKR_SESSION_PARALLEL_NOT_SUPPORTED);
        }
        let handle = t.next_session;
        t.next_session += 1;
        t.sessions.insert(
            handle,
            Session {
                flags,
                found: None,
                sign: None,
                verify: None,
            },
        );
        Ok(handle)
    })
}

/// `C_CloseSession`.
pub fn close_session(session: CK_SESSION_HANDLE) -> Rv<()> {
    with(|t| {
        t.sessions
            .remove(&session)
            .map(drop)
            .ok_or(CKR_SESSION_HANDLE_INVALID)?;
        if t.sessions.is_empty() {
            // The login state belongs to the application's sessions; the last one ends it.
            t.logout();
        }
        Ok(())
    })
}

/// `C_CloseAllSessions`.
pub fn close_all_sessions() -> Rv<()> {
    with(|t| {
        t.sessions.clear();
        t.logout();
        Ok(())
    })
}

/// `C_GetSessionInfo`: (state, flags).
pub fn session_info(session: CK_SESSION_HANDLE) -> Rv<(CK_STATE, CK_FLAGS)> {
    with(|t| {
        let s = t.sessions.get(&session).ok_or(CKR_SESSION_HANDLE_INVALID)?;
        let rw = s.flags & CKF_RW_SESSION != 0;
        let state = match (t.logged_in, rw) {
            (true, true) => CKS_RW_USER_FUNCTIONS,
            (true, false) => CKS_RO_USER_FUNCTIONS,
            (false, true) => CKS_RW_PUBLIC_SESSION,
            (false, false) => CKS_RO_PUBLIC_SESSION,
        };
        Ok((state, s.flags))
    })
}

impl Token {
    fn logout(&mut self) {
        self.logged_in = false;
        if self.config.login_required() {
            // The bundle was opened with the PIN: without a login there is no identity.
            self.client = None;
            self.objects.clear();
            self.loaded = None;
        }
    }

    fn session(&mut self, handle: CK_SESSION_HANDLE) -> Rv<&mut Session> {
        self.sessions
            .get_mut(&handle)
            .ok_or(CKR_SESSION_HANDLE_INVALID)
    }

    fn object(&self, handle: CK_OBJECT_HANDLE) -> Rv<&Object> {
        self.objects
            .iter()
            .find(|o| o.handle == handle)
            .ok_or(CKR_OBJECT_HANDLE_INVALID)
    }

    /// The client, built from PEM files on first use; `None` until `C_Login` for a bundle or
    /// an encrypted key.
    fn client(&mut self) -> Rv<Option<Client>> {
        if self.client.is_none() && !self.config.login_required() {
            let identity = self.config.settings.identity(None).map_err(|e| {
                eprintln!("signet-pkcs11: {e}");
                CKR_GENERAL_ERROR
            })?;
            self.client = Some(build(&self.config, identity)?);
        }
        Ok(self.client.clone())
    }

    /// Replaces the objects with those the server lists, keeping each one's handle.
    fn install(&mut self, keys: Vec<UsableKey>) {
        let mut objects = Vec::new();
        for usable in keys {
            objects.extend(self.objects_of(&usable));
        }
        self.objects = objects;
        self.loaded = Some(Instant::now());
    }

    /// The objects of one key: a private and a public key per enabled version.
    fn objects_of(&mut self, usable: &UsableKey) -> Vec<Object> {
        let mut objects = Vec::new();
        if usable.key.deletion.is_none() {
            for v in &usable.key.versions {
                let (Some(pem), Ok(id)) = (&v.public_key_pem, hex::decode(&v.key_id)) else {
                    continue;
                };
                if v.state != "enabled" {
                    continue;
                }
                let (kind, spki) = match KeyKind::from_spki_pem(pem) {
                    Ok(k) => k,
                    Err(e) => {
                        debug(format!(
                            "key {} version {}: {e}",
                            usable.key.name, v.version
                        ));
                        continue;
                    }
                };
                let certificate = usable
                    .certificates
                    .iter()
                    .find(|c| c.version == v.version)
                    .and_then(|c| crate::objects::Certificate::from_pem(&c.certificate_pem));
                let classes: &[CK_OBJECT_CLASS] = if certificate.is_some() {
                    &[CKO_PRIVATE_KEY, CKO_PUBLIC_KEY, CKO_CERTIFICATE]
                } else {
                    &[CKO_PRIVATE_KEY, CKO_PUBLIC_KEY]
                };
                for &class in classes {
                    let next = &mut self.next_handle;
                    let handle = *self.handles.entry((id.clone(), class)).or_insert_with(|| {
                        *next += 1;
                        *next - 1
                    });
                    objects.push(Object {
                        handle,
                        class,
                        name: usable.key.name.clone(),
                        version: v.version,
                        id: id.clone(),
                        may_sign: usable.may_sign,
                        kind: kind.clone(),
                        spki: spki.clone(),
                        certificate: (class == CKO_CERTIFICATE)
                            .then(|| certificate.clone())
                            .flatten(),
                    });
                }
            }
        }
        objects
    }
}

fn build(config: &Config, identity: Identity) -> Rv<Client> {
    let process = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    config
        .settings
        .builder()
        .and_then(|b| {
            b.identity(identity)
                .user_agent(format!(
                    "signet-pkcs11/{} ({})",
                    env!("CARGO_PKG_VERSION"),
                    process.trim()
                ))
                .build()
        })
        .map_err(|e| {
            eprintln!("signet-pkcs11: {e}");
            CKR_GENERAL_ERROR
        })
}

/// The `CKR_*` for a failed call to the server.
pub fn from_client(e: &ClientError) -> CK_RV {
    debug(e);
    match e {
        ClientError::Problem(p) => match p.status {
            403 | 409 => CKR_KEY_FUNCTION_NOT_PERMITTED,
            404 => CKR_KEY_HANDLE_INVALID,
            400 | 422 => CKR_DATA_INVALID,
            413 => CKR_DATA_LEN_RANGE,
            401 => CKR_USER_NOT_LOGGED_IN,
            _ => CKR_DEVICE_ERROR,
        },
        ClientError::CertificateRefused { .. } | ClientError::Unreachable { .. } => {
            CKR_DEVICE_ERROR
        }
        ClientError::Decode { .. } => CKR_DEVICE_ERROR,
        _ => CKR_GENERAL_ERROR,
    }
}

/// Asks the server for the objects when they are older than [`FRESH`] (or `force`).
fn refresh(force: bool) -> Rv<()> {
    let client = with(|t| {
        let fresh = t.loaded.is_some_and(|l| l.elapsed() < FRESH);
        if fresh && !force {
            return Ok(None);
        }
        t.client()
    })?;
    let Some(client) = client else {
        return Ok(());
    };
    let keys = client.usable_keys().map_err(|e| from_client(&e))?;
    with(|t| {
        t.install(keys);
        Ok(())
    })
}

/// `C_Login` as the user. With an unencrypted PEM key any PIN is accepted (the key file is the
/// secret); with a bundle the PIN is its password, with an encrypted key its passphrase. Either
/// way the server must accept the certificate: a revoked one fails here.
pub fn login(session: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: Zeroizing<Vec<u8>>) -> Rv<()> {
    let (config, client) = with(|t| {
        t.session(session)?;
        if user != CKU_USER {
            return Err(if user == CKU_SO || user == CKU_CONTEXT_SPECIFIC {
                CKR_USER_TYPE_INVALID
            } else {
                CKR_ARGUMENTS_BAD
            });
        }
        if t.logged_in {
            return Err(CKR_USER_ALREADY_LOGGED_IN);
        }
        Ok((t.config.clone(), t.client()?))
    })?;
    let client = match client {
        Some(c) => c,
        None => {
            let password =
                Zeroizing::new(String::from_utf8(pin.to_vec()).map_err(|_| CKR_PIN_INCORRECT)?);
            let identity = config
                .settings
                .identity(Some(&password))
                .map_err(|e| match e {
                    ClientError::WrongPassword(_) => {
                        debug(&e);
                        CKR_PIN_INCORRECT
                    }
                    // A file that cannot be read at all is the settings' fault, not the PIN's.
                    other => {
                        eprintln!("signet-pkcs11: {other}");
                        CKR_GENERAL_ERROR
                    }
                })?;
            build(&config, identity)?
        }
    };
    match client.health() {
        Ok(()) => {}
        // The server no longer takes this certificate (revoked or expired: a refused
        // handshake, or 401 on a connection made before): this identity cannot log in.
        Err(ClientError::CertificateRefused { alert }) => {
            debug(format!("the server refused the certificate ({alert})"));
            return Err(CKR_PIN_LOCKED);
        }
        Err(ClientError::Problem(p)) if p.status == 401 => {
            debug(format!("the server refused the certificate ({p})"));
            return Err(CKR_PIN_LOCKED);
        }
        Err(e) => return Err(from_client(&e)),
    }
    with(|t| {
        t.client = Some(client);
        t.logged_in = true;
        Ok(())
    })?;
    refresh(true)
}

/// `C_Logout`.
pub fn logout(session: CK_SESSION_HANDLE) -> Rv<()> {
    with(|t| {
        t.session(session)?;
        if !t.logged_in {
            return Err(CKR_USER_NOT_LOGGED_IN);
        }
        t.logout();
        Ok(())
    })
}

/// `C_FindObjectsInit`.
pub fn find_init(
    session: CK_SESSION_HANDLE,
    template: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
) -> Rv<()> {
    with(|t| {
        let s = t.session(session)?;
        if s.found.is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        Ok(())
    })?;
    refresh(false)?;
    with(|t| {
        let found = t
            .objects
            .iter()
            .filter(|o| o.matches(&template))
            .map(|o| o.handle)
            .collect();
        t.session(session)?.found = Some(found);
        Ok(())
    })
}

/// `C_FindObjects`: up to `max` more handles.
pub fn find(session: CK_SESSION_HANDLE, max: usize) -> Rv<Vec<CK_OBJECT_HANDLE>> {
    with(|t| {
        let found = t
            .session(session)?
            .found
            .as_mut()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        let n = max.min(found.len());
        Ok(found.drain(..n).collect())
    })
}

/// `C_FindObjectsFinal`.
pub fn find_final(session: CK_SESSION_HANDLE) -> Rv<()> {
    with(|t| {
        t.session(session)?
            .found
            .take()
            .map(drop)
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)
    })
}

/// `C_GetAttributeValue`, one value per asked type.
pub fn attributes(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    types: &[CK_ATTRIBUTE_TYPE],
) -> Rv<Vec<crate::objects::Value>> {
    with(|t| {
        t.session(session)?;
        let o = t.object(object)?;
        Ok(types.iter().map(|&ty| o.attribute(ty)).collect())
    })
}

/// Which operation of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sign,
    Verify,
}

impl Session {
    fn op(&mut self, kind: Kind) -> &mut Option<SignOp> {
        match kind {
            Kind::Sign => &mut self.sign,
            Kind::Verify => &mut self.verify,
        }
    }
}

/// `C_SignInit` and `C_VerifyInit`: the key, the plan for its mechanism, empty data.
fn start(
    kind: Kind,
    session: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    params: Params,
    key: CK_OBJECT_HANDLE,
) -> Rv<()> {
    with(|t| {
        if t.session(session)?.op(kind).is_some() {
            return Err(CKR_OPERATION_ACTIVE);
        }
        let object = t
            .objects
            .iter()
            .find(|o| o.handle == key)
            .ok_or(CKR_KEY_HANDLE_INVALID)?
            .clone();
        // Only a private key the principal may sign with signs; any key object verifies.
        if kind == Kind::Sign && (object.class != CKO_PRIVATE_KEY || !object.may_sign) {
            return Err(CKR_KEY_FUNCTION_NOT_PERMITTED);
        }
        let plan = mechanism::plan(mechanism, &params, &object.kind)?;
        *t.session(session)?.op(kind) = Some(SignOp {
            object,
            data: Data::new(&plan),
            plan,
        });
        Ok(())
    })
}

/// `C_SignUpdate` and `C_VerifyUpdate`.
fn update(kind: Kind, session: CK_SESSION_HANDLE, part: &[u8]) -> Rv<()> {
    with(|t| {
        let slot = t.session(session)?.op(kind);
        let op = slot.as_mut().ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        if !op.plan.multi_part() {
            // An error ends the operation (PKCS#11 5.13).
            *slot = None;
            return Err(CKR_FUNCTION_NOT_SUPPORTED);
        }
        op.data.update(part);
        Ok(())
    })
}

/// `C_SignInit`.
pub fn sign_init(
    session: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    params: Params,
    key: CK_OBJECT_HANDLE,
) -> Rv<()> {
    start(Kind::Sign, session, mechanism, params, key)
}

/// `C_SignUpdate`.
pub fn sign_update(session: CK_SESSION_HANDLE, part: &[u8]) -> Rv<()> {
    update(Kind::Sign, session, part)
}

/// What finishing a signature gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Signed {
    /// Only the length was asked for (the operation goes on).
    Length(usize),
    /// The caller's buffer is too small (the operation goes on).
    TooSmall(usize),
    /// The signature (the operation is over).
    Signature(Vec<u8>),
}

/// `C_Sign` (with `data`) or `C_SignFinal` (without); `capacity` is the caller's buffer, `None`
/// when it asks for the length.
pub fn sign_finish(
    session: CK_SESSION_HANDLE,
    data: Option<&[u8]>,
    capacity: Option<usize>,
) -> Rv<Signed> {
    let op = with(|t| {
        let s = t.session(session)?;
        let op = s.sign.as_ref().ok_or(CKR_OPERATION_NOT_INITIALIZED)?;
        let len = op.object.kind.signature_len();
        match capacity {
            None => return Ok(Err(Signed::Length(len))),
            Some(c) if c < len => return Ok(Err(Signed::TooSmall(len))),
            Some(_) => {}
        }
        Ok(Ok((
            s.sign.take().ok_or(CKR_OPERATION_NOT_INITIALIZED)?,
            t.client()?,
        )))
    })?;
    let (mut op, client) = match op {
        Ok(x) => x,
        Err(answer) => return Ok(answer),
    };
    let client = client.ok_or(CKR_USER_NOT_LOGGED_IN)?;
    if let Some(data) = data {
        op.data.update(data);
    }
    let request = mechanism::request(&op.plan, &op.object.kind, op.data)?;
    let signature = client
        .sign(
            &op.object.name,
            &SignRequest {
                input: &request.input,
                input_type: request.input_type,
                algorithm: Some(request.algorithm),
                version: Some(op.object.version),
                der: false,
                context: (!request.context.is_empty()).then_some(request.context.as_slice()),
            },
        )
        .map_err(|e| from_client(&e))?;
    if signature.bytes.len() != op.object.kind.signature_len() {
        debug(format!(
            "the server's signature is {} bytes, not {}",
            signature.bytes.len(),
            op.object.kind.signature_len()
        ));
        return Err(CKR_DEVICE_ERROR);
    }
    Ok(Signed::Signature(signature.bytes))
}

/// `C_VerifyInit`: with a public or private key object; checked here, from the public key.
pub fn verify_init(
    session: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    params: Params,
    key: CK_OBJECT_HANDLE,
) -> Rv<()> {
    start(Kind::Verify, session, mechanism, params, key)
}

/// `C_VerifyUpdate`.
pub fn verify_update(session: CK_SESSION_HANDLE, part: &[u8]) -> Rv<()> {
    update(Kind::Verify, session, part)
}

/// `C_Verify` (with `data`) or `C_VerifyFinal`: the operation ends either way.
pub fn verify_finish(session: CK_SESSION_HANDLE, data: Option<&[u8]>, signature: &[u8]) -> Rv<()> {
    let mut op = with(|t| {
        t.session(session)?
            .verify
            .take()
            .ok_or(CKR_OPERATION_NOT_INITIALIZED)
    })?;
    if let Some(data) = data {
        op.data.update(data);
    }
    mechanism::verify(&op.plan, &op.object.kind, op.data, signature)
}

/// `C_GenerateRandom`: from the operating system's generator (Signet's token is not asked).
pub fn random(session: CK_SESSION_HANDLE, out: &mut [u8]) -> Rv<()> {
    with(|t| t.session(session).map(drop))?;
    getrandom::getrandom(out).map_err(|_| CKR_DEVICE_ERROR)
}

/// `C_GenerateKeyPair`: creates a Signet key (the principal needs `keys:create`) named by the
/// template's `CKA_LABEL`; answers the (public, private) handles of its first version.
pub fn generate_key_pair(
    session: CK_SESSION_HANDLE,
    mechanism: CK_MECHANISM_TYPE,
    public: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
    private: Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>,
) -> Rv<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
    let client = with(|t| {
        if t.session(session)?.flags & CKF_RW_SESSION == 0 {
            return Err(CKR_SESSION_READ_ONLY);
        }
        t.client()
    })?
    .ok_or(CKR_USER_NOT_LOGGED_IN)?;
    let new = crate::generate::new_key(mechanism, &public, &private)?;
    let key = client
        .create_key(&new.name, new.spec)
        .map_err(|e| match &e {
            // The name is taken, or the server refuses it.
            ClientError::Problem(p) if matches!(p.status, 400 | 409 | 422) => {
                debug(&e);
                CKR_ATTRIBUTE_VALUE_INVALID
            }
            _ => from_client(&e),
        })?;
    refresh(true)?;
    let id = key
        .versions
        .first()
        .and_then(|v| hex::decode(&v.key_id).ok())
        .ok_or(CKR_DEVICE_ERROR)?;
    with(|t| {
        let handle = |t: &Token, class| {
            t.objects
                .iter()
                .find(|o| o.id == id && o.class == class)
                .map(|o| o.handle)
        };
        if handle(t, CKO_PUBLIC_KEY).is_none() {
            // Created, but not among the keys this principal may use (it may create without
            // reading or signing): shown for this session's life, and it cannot sign.
            let objects = t.objects_of(&UsableKey {
                key: key.clone(),
                may_sign: false,
                certificates: Vec::new(),
            });
            t.objects.extend(objects);
        }
        match (handle(t, CKO_PUBLIC_KEY), handle(t, CKO_PRIVATE_KEY)) {
            (Some(p), Some(q)) => Ok((p, q)),
            _ => Err(CKR_DEVICE_ERROR),
        }
    })
}

/// `C_GetMechanismInfo`: (min bits, max bits) of the key type a signing mechanism takes.
pub fn mechanism_info(mechanism: CK_MECHANISM_TYPE) -> Rv<(CK_ULONG, CK_ULONG, CK_FLAGS)> {
    initialized()?;
    // Signatures are made by the server's token (hardware); verification is done here in
    // software; keys are generated in the server's token.
    if let Some((_, key_type)) = mechanism::MECHANISMS.iter().find(|(m, _)| *m == mechanism) {
        let (min, max) = mechanism::key_sizes(*key_type);
        return Ok((min, max, CKF_SIGN | CKF_VERIFY | CKF_HW));
    }
    if let Some((_, key_type)) = crate::generate::MECHANISMS
        .iter()
        .find(|(m, _)| *m == mechanism)
    {
        let (min, max) = mechanism::key_sizes(*key_type);
        let mut flags = CKF_GENERATE_KEY_PAIR | CKF_HW;
        if *key_type == CKK_EC {
            flags |= CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;
        }
        return Ok((min, max, flags));
    }
    Err(CKR_MECHANISM_INVALID)
}

/// Every mechanism, for `C_GetMechanismList`.
pub fn mechanisms() -> Vec<CK_MECHANISM_TYPE> {
    mechanism::MECHANISMS
        .iter()
        .chain(crate::generate::MECHANISMS)
        .map(|(m, _)| *m)
        .collect()
}
