//! The C ABI: `C_GetFunctionList`, `C_GetInterfaceList` and `C_GetInterface` hand out the
//! function lists (PKCS#11 2.40 and 3.0); every entry point checks its pointers, moves data in
//! and out, and calls the safe core in [`crate::token`]. No panic crosses the boundary: each
//! call runs under `catch_unwind` and a panic is `CKR_GENERAL_ERROR`.
//!
//! This is the one place of the workspace with `unsafe`: a PKCS#11 module is called through
//! raw pointers by C programs, and reading and writing through them cannot be safe Rust.
//! Every pointer is checked for null before use, lengths come from the caller as the
//! specification defines them, and nothing is kept beyond the call.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use cryptoki_sys::*;
use zeroize::Zeroizing;

use crate::mechanism::Params;
use crate::objects::Value;
use crate::token::{self, Rv, Signed};

/// The one slot.
pub const SLOT: CK_SLOT_ID = 0;

/// Runs `f`, mapping its error and any panic to a `CKR_*`.
fn guard(name: &str, f: impl FnOnce() -> Rv<()>) -> CK_RV {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => CKR_OK,
        Ok(Err(rv)) => {
            token::debug(format_args!("{name}: {rv:#x}"));
            rv
        }
        Err(_) => {
            token::debug(format_args!("{name} panicked; answered CKR_GENERAL_ERROR"));
            CKR_GENERAL_ERROR
        }
    }
}

/// A blank-padded, unterminated PKCS#11 string.
fn padded<const N: usize>(text: &str) -> [CK_UTF8CHAR; N] {
    let mut out = [b' '; N];
    let mut end = text.len().min(N);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out[..end].copy_from_slice(&text.as_bytes()[..end]);
    out
}

/// Writes `items` to a caller's array in the two-call convention.
///
/// # Safety
/// `list` is null or points to `*count` writable items; `count` is valid.
unsafe fn write_list<T: Copy>(items: &[T], list: *mut T, count: *mut CK_ULONG) -> Rv<()> {
    if count.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let room = *count as usize;
    *count = items.len() as CK_ULONG;
    if list.is_null() {
        return Ok(());
    }
    if room < items.len() {
        return Err(CKR_BUFFER_TOO_SMALL);
    }
    ptr::copy_nonoverlapping(items.as_ptr(), list, items.len());
    Ok(())
}

/// # Safety
/// `data` is null (then `len` must be 0) or points to `len` readable bytes.
unsafe fn bytes<'a>(data: *const CK_BYTE, len: CK_ULONG) -> Rv<&'a [u8]> {
    if data.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(CKR_ARGUMENTS_BAD)
        };
    }
    Ok(std::slice::from_raw_parts(data, len as usize))
}

/// # Safety
/// `template` is null (then `count` must be 0) or points to `count` attributes.
unsafe fn attributes<'a>(
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Rv<&'a mut [CK_ATTRIBUTE]> {
    if template.is_null() {
        return if count == 0 {
            Ok(&mut [])
        } else {
            Err(CKR_ARGUMENTS_BAD)
        };
    }
    Ok(std::slice::from_raw_parts_mut(template, count as usize))
}

extern "C" fn C_Initialize(args: *mut c_void) -> CK_RV {
    guard("C_Initialize", || {
        if !args.is_null() {
            // SAFETY: a non-null argument is a CK_C_INITIALIZE_ARGS by the specification.
            let args = unsafe { ptr::read_unaligned(args as *const CK_C_INITIALIZE_ARGS) };
            if !args.pReserved.is_null() {
                return Err(CKR_ARGUMENTS_BAD);
            }
            let given = [
                args.CreateMutex.is_some(),
                args.DestroyMutex.is_some(),
                args.LockMutex.is_some(),
                args.UnlockMutex.is_some(),
            ];
            if given.iter().any(|&g| g) && !given.iter().all(|&g| g) {
                return Err(CKR_ARGUMENTS_BAD);
            }
            // The module locks with the OS's primitives; it cannot use the caller's instead.
            if given[0] && args.flags & CKF_OS_LOCKING_OK == 0 {
                return Err(CKR_CANT_LOCK);
            }
        }
        token::initialize()
    })
}

extern "C" fn C_Finalize(reserved: *mut c_void) -> CK_RV {
    guard("C_Finalize", || {
        if !reserved.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        token::finalize()
    })
}

extern "C" fn C_GetInfo(info: *mut CK_INFO) -> CK_RV {
    guard("C_GetInfo", || {
        token::initialized()?;
        if info.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let value = CK_INFO {
            cryptokiVersion: CK_VERSION { major: 3, minor: 0 },
            manufacturerID: padded("Signet"),
            flags: 0,
            libraryDescription: padded("Signet network HSM (mutual TLS)"),
            libraryVersion: CK_VERSION { major: 0, minor: 1 },
        };
        // SAFETY: checked non-null; the caller owns a CK_INFO.
        unsafe { ptr::write_unaligned(info, value) };
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    guard("C_GetFunctionList", || {
        if list.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        // SAFETY: checked non-null. The list is static and never written through.
        unsafe { *list = ptr::addr_of!(FUNCTIONS.0) as *mut CK_FUNCTION_LIST };
        Ok(())
    })
}

extern "C" fn C_GetSlotList(
    _present: CK_BBOOL,
    list: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetSlotList", || {
        token::initialized()?;
        // SAFETY: the two-call convention's pointers, checked in write_list.
        unsafe { write_list(&[SLOT], list, count) }
    })
}

extern "C" fn C_GetSlotInfo(slot: CK_SLOT_ID, info: *mut CK_SLOT_INFO) -> CK_RV {
    guard("C_GetSlotInfo", || {
        let t = token::info()?;
        if slot != SLOT {
            return Err(CKR_SLOT_ID_INVALID);
        }
        if info.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let value = CK_SLOT_INFO {
            slotDescription: padded(&format!("Signet at {}", t.url)),
            manufacturerID: padded("Signet"),
            flags: CKF_TOKEN_PRESENT,
            hardwareVersion: CK_VERSION { major: 0, minor: 1 },
            firmwareVersion: CK_VERSION { major: 0, minor: 1 },
        };
        // SAFETY: checked non-null.
        unsafe { ptr::write_unaligned(info, value) };
        Ok(())
    })
}

extern "C" fn C_GetTokenInfo(slot: CK_SLOT_ID, info: *mut CK_TOKEN_INFO) -> CK_RV {
    guard("C_GetTokenInfo", || {
        let t = token::info()?;
        if slot != SLOT {
            return Err(CKR_SLOT_ID_INVALID);
        }
        if info.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        use sha2::Digest;
        let serial = hex::encode(&sha2::Sha256::digest(t.url.as_bytes())[..8]);
        let mut flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
        if t.login_required {
            flags |= CKF_LOGIN_REQUIRED;
        }
        let value = CK_TOKEN_INFO {
            label: padded(&t.label),
            manufacturerID: padded("Signet"),
            model: padded("network HSM"),
            serialNumber: padded(&serial),
            flags,
            ulMaxSessionCount: CK_EFFECTIVELY_INFINITE,
            ulSessionCount: t.sessions as CK_ULONG,
            ulMaxRwSessionCount: CK_EFFECTIVELY_INFINITE,
            ulRwSessionCount: t.rw_sessions as CK_ULONG,
            ulMaxPinLen: 256,
            ulMinPinLen: 0,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: CK_VERSION { major: 0, minor: 1 },
            firmwareVersion: CK_VERSION { major: 0, minor: 1 },
            utcTime: padded(""),
        };
        // SAFETY: checked non-null.
        unsafe { ptr::write_unaligned(info, value) };
        Ok(())
    })
}

extern "C" fn C_GetMechanismList(
    slot: CK_SLOT_ID,
    list: *mut CK_MECHANISM_TYPE,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard("C_GetMechanismList", || {
        token::initialized()?;
        if slot != SLOT {
            return Err(CKR_SLOT_ID_INVALID);
        }
        let types = token::mechanisms();
        // SAFETY: checked in write_list.
        unsafe { write_list(&types, list, count) }
    })
}

extern "C" fn C_GetMechanismInfo(
    slot: CK_SLOT_ID,
    mechanism: CK_MECHANISM_TYPE,
    info: *mut CK_MECHANISM_INFO,
) -> CK_RV {
    guard("C_GetMechanismInfo", || {
        let (min, max, flags) = token::mechanism_info(mechanism)?;
        if slot != SLOT {
            return Err(CKR_SLOT_ID_INVALID);
        }
        if info.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let value = CK_MECHANISM_INFO {
            ulMinKeySize: min,
            ulMaxKeySize: max,
            flags,
        };
        // SAFETY: checked non-null.
        unsafe { ptr::write_unaligned(info, value) };
        Ok(())
    })
}

extern "C" fn C_OpenSession(
    slot: CK_SLOT_ID,
    flags: CK_FLAGS,
    _application: *mut c_void,
    _notify: CK_NOTIFY,
    session: *mut CK_SESSION_HANDLE,
) -> CK_RV {
    guard("C_OpenSession", || {
        token::initialized()?;
        if slot != SLOT {
            return Err(CKR_SLOT_ID_INVALID);
        }
        if session.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let handle = token::open_session(flags)?;
        // SAFETY: checked non-null.
        unsafe { *session = handle };
        Ok(())
    })
}

extern "C" fn C_CloseSession(session: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_CloseSession", || token::close_session(session))
}

extern "C" fn C_CloseAllSessions(slot: CK_SLOT_ID) -> CK_RV {
    guard("C_CloseAllSessions", || {
        token::initialized()?;
        if slot != SLOT {
            return Err(CKR_SLOT_ID_INVALID);
        }
        token::close_all_sessions()
    })
}

extern "C" fn C_GetSessionInfo(session: CK_SESSION_HANDLE, info: *mut CK_SESSION_INFO) -> CK_RV {
    guard("C_GetSessionInfo", || {
        let (state, flags) = token::session_info(session)?;
        if info.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let value = CK_SESSION_INFO {
            slotID: SLOT,
            state,
            flags,
            ulDeviceError: 0,
        };
        // SAFETY: checked non-null.
        unsafe { ptr::write_unaligned(info, value) };
        Ok(())
    })
}

extern "C" fn C_Login(
    session: CK_SESSION_HANDLE,
    user: CK_USER_TYPE,
    pin: *mut CK_UTF8CHAR,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_Login", || {
        // SAFETY: the PIN is `len` bytes (or none, for a protected authentication path).
        let pin = Zeroizing::new(unsafe { bytes(pin, len) }?.to_vec());
        token::login(session, user, pin)
    })
}

extern "C" fn C_Logout(session: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_Logout", || token::logout(session))
}

extern "C" fn C_GetAttributeValue(
    session: CK_SESSION_HANDLE,
    object: CK_OBJECT_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard("C_GetAttributeValue", || {
        // SAFETY: `count` attributes by the specification.
        let template = unsafe { attributes(template, count) }?;
        let types: Vec<_> = template.iter().map(|a| a.type_).collect();
        let values = token::attributes(session, object, &types)?;
        let mut rv = Ok(());
        for (attribute, value) in template.iter_mut().zip(values) {
            match value {
                Value::Bytes(v) => {
                    if attribute.pValue.is_null() {
                        attribute.ulValueLen = v.len() as CK_ULONG;
                    } else if (attribute.ulValueLen as usize) < v.len() {
                        attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                        rv = Err(CKR_BUFFER_TOO_SMALL);
                    } else {
                        // SAFETY: the caller gave ulValueLen ≥ v.len() writable bytes.
                        unsafe {
                            ptr::copy_nonoverlapping(
                                v.as_ptr(),
                                attribute.pValue as *mut u8,
                                v.len(),
                            )
                        };
                        attribute.ulValueLen = v.len() as CK_ULONG;
                    }
                }
                Value::Invalid => {
                    attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = Err(CKR_ATTRIBUTE_TYPE_INVALID);
                }
                Value::Sensitive => {
                    attribute.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                    rv = Err(CKR_ATTRIBUTE_SENSITIVE);
                }
            }
        }
        rv
    })
}

/// # Safety
/// `template` holds `count` attributes, each with `ulValueLen` bytes at `pValue`.
unsafe fn read_template(
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> Rv<Vec<(CK_ATTRIBUTE_TYPE, Vec<u8>)>> {
    let template = attributes(template, count)?;
    let mut out = Vec::with_capacity(template.len());
    for a in template.iter() {
        out.push((
            a.type_,
            bytes(a.pValue as *const u8, a.ulValueLen)?.to_vec(),
        ));
    }
    Ok(out)
}

extern "C" fn C_GenerateKeyPair(
    session: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    public: *mut CK_ATTRIBUTE,
    public_count: CK_ULONG,
    private: *mut CK_ATTRIBUTE,
    private_count: CK_ULONG,
    public_key: *mut CK_OBJECT_HANDLE,
    private_key: *mut CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_GenerateKeyPair", || {
        if mechanism.is_null() || public_key.is_null() || private_key.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        // SAFETY: checked non-null; the templates hold the counts the caller gives.
        let (m, public, private) = unsafe {
            (
                ptr::read_unaligned(mechanism).mechanism,
                read_template(public, public_count)?,
                read_template(private, private_count)?,
            )
        };
        let (p, q) = token::generate_key_pair(session, m, public, private)?;
        // SAFETY: checked non-null.
        unsafe {
            *public_key = p;
            *private_key = q;
        }
        Ok(())
    })
}

extern "C" fn C_FindObjectsInit(
    session: CK_SESSION_HANDLE,
    template: *mut CK_ATTRIBUTE,
    count: CK_ULONG,
) -> CK_RV {
    guard("C_FindObjectsInit", || {
        // SAFETY: `count` attributes, each with `ulValueLen` bytes at `pValue`.
        let wanted = unsafe { read_template(template, count) }?;
        token::find_init(session, wanted)
    })
}

extern "C" fn C_FindObjects(
    session: CK_SESSION_HANDLE,
    objects: *mut CK_OBJECT_HANDLE,
    max: CK_ULONG,
    count: *mut CK_ULONG,
) -> CK_RV {
    guard("C_FindObjects", || {
        if count.is_null() || (objects.is_null() && max > 0) {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let found = token::find(session, max as usize)?;
        // SAFETY: `objects` holds `max` ≥ found.len() handles; `count` checked.
        unsafe {
            ptr::copy_nonoverlapping(found.as_ptr(), objects, found.len());
            *count = found.len() as CK_ULONG;
        }
        Ok(())
    })
}

extern "C" fn C_FindObjectsFinal(session: CK_SESSION_HANDLE) -> CK_RV {
    guard("C_FindObjectsFinal", || token::find_final(session))
}

/// # Safety
/// `m.pParameter` is null or points to `m.ulParameterLen` bytes; for `CKM_ML_DSA` (and
/// `CKM_SLH_DSA` and the hashing pre-hash mechanisms, the same structure), to a
/// `CK_SIGN_ADDITIONAL_CONTEXT` whose `pContext` is null or holds `ulContextLen` bytes.
unsafe fn params(m: &CK_MECHANISM) -> Params {
    let len = m.ulParameterLen as usize;
    if m.pParameter.is_null() || len == 0 {
        return Params::None;
    }
    match m.mechanism {
        CKM_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS
            if len == std::mem::size_of::<CK_RSA_PKCS_PSS_PARAMS>() =>
        {
            let p = ptr::read_unaligned(m.pParameter as *const CK_RSA_PKCS_PSS_PARAMS);
            Params::Pss {
                hash: p.hashAlg,
                mgf: p.mgf,
                salt: p.sLen,
            }
        }
        CKM_HASH_ML_DSA | CKM_HASH_SLH_DSA
            if len == std::mem::size_of::<CK_HASH_SIGN_ADDITIONAL_CONTEXT>() =>
        {
            let p = ptr::read_unaligned(m.pParameter as *const CK_HASH_SIGN_ADDITIONAL_CONTEXT);
            let Some(context) = ml_dsa_context(p.pContext, p.ulContextLen) else {
                return Params::Other;
            };
            Params::HashSign {
                hedge: p.hedgeVariant,
                context,
                hash: p.hash,
            }
        }
        CKM_ML_DSA
        | CKM_HASH_ML_DSA_SHA256
        | CKM_HASH_ML_DSA_SHA384
        | CKM_HASH_ML_DSA_SHA512
        | CKM_SLH_DSA
        | CKM_HASH_SLH_DSA_SHA256
        | CKM_HASH_SLH_DSA_SHA512
            if len == std::mem::size_of::<CK_SIGN_ADDITIONAL_CONTEXT>() =>
        {
            let p = ptr::read_unaligned(m.pParameter as *const CK_SIGN_ADDITIONAL_CONTEXT);
            let Some(context) = ml_dsa_context(p.pContext, p.ulContextLen) else {
                return Params::Other;
            };
            Params::MlDsa {
                hedge: p.hedgeVariant,
                context,
            }
        }
        CKM_EDDSA if len == std::mem::size_of::<CK_EDDSA_PARAMS>() => {
            let p = ptr::read_unaligned(m.pParameter as *const CK_EDDSA_PARAMS);
            Params::EdDsa {
                prehash: p.phFlag != CK_FALSE,
                context: p.ulContextDataLen as usize,
            }
        }
        _ => Params::Other,
    }
}

/// An ML-DSA context string from a mechanism's parameters: empty for none, `None` for a null
/// pointer with a length or one longer than ML-DSA allows (refused, never read).
///
/// # Safety
/// `context` is null or points to `len` readable bytes.
unsafe fn ml_dsa_context(context: *const CK_BYTE, len: CK_ULONG) -> Option<Vec<u8>> {
    match (context.is_null(), len as usize) {
        (_, 0) => Some(Vec::new()),
        (false, n) if n <= 255 => Some(std::slice::from_raw_parts(context, n).to_vec()),
        _ => None,
    }
}

/// The mechanism a caller gives, with its parameters read.
///
/// # Safety
/// `mechanism` is null or points to a `CK_MECHANISM` whose parameter pointer holds
/// `ulParameterLen` bytes.
unsafe fn read_mechanism(mechanism: *const CK_MECHANISM) -> Rv<(CK_MECHANISM_TYPE, Params)> {
    if mechanism.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let m = ptr::read_unaligned(mechanism);
    Ok((m.mechanism, params(&m)))
}

extern "C" fn C_SignInit(
    session: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_SignInit", || {
        // SAFETY: a CK_MECHANISM (or null) by the specification.
        let (m, p) = unsafe { read_mechanism(mechanism) }?;
        token::sign_init(session, m, p, key)
    })
}

/// # Safety
/// `out` is null or holds `*len` bytes; `len` is checked.
unsafe fn finish(
    session: CK_SESSION_HANDLE,
    data: Option<&[u8]>,
    out: *mut CK_BYTE,
    len: *mut CK_ULONG,
) -> Rv<()> {
    if len.is_null() {
        return Err(CKR_ARGUMENTS_BAD);
    }
    let capacity = (!out.is_null()).then_some(*len as usize);
    match token::sign_finish(session, data, capacity)? {
        Signed::Length(n) => {
            *len = n as CK_ULONG;
            Ok(())
        }
        Signed::TooSmall(n) => {
            *len = n as CK_ULONG;
            Err(CKR_BUFFER_TOO_SMALL)
        }
        Signed::Signature(s) => {
            ptr::copy_nonoverlapping(s.as_ptr(), out, s.len());
            *len = s.len() as CK_ULONG;
            Ok(())
        }
    }
}

extern "C" fn C_Sign(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: *mut CK_ULONG,
) -> CK_RV {
    guard("C_Sign", || {
        // SAFETY: `data_len` bytes of data; the output follows the two-call convention.
        unsafe {
            let data = bytes(data, data_len)?;
            finish(session, Some(data), signature, signature_len)
        }
    })
}

extern "C" fn C_SignUpdate(session: CK_SESSION_HANDLE, part: *mut CK_BYTE, len: CK_ULONG) -> CK_RV {
    guard("C_SignUpdate", || {
        // SAFETY: `len` bytes.
        let part = unsafe { bytes(part, len) }?;
        token::sign_update(session, part)
    })
}

extern "C" fn C_SignFinal(
    session: CK_SESSION_HANDLE,
    signature: *mut CK_BYTE,
    len: *mut CK_ULONG,
) -> CK_RV {
    // SAFETY: the two-call convention's pointers, checked in `finish`.
    guard("C_SignFinal", || unsafe {
        finish(session, None, signature, len)
    })
}

extern "C" fn C_VerifyInit(
    session: CK_SESSION_HANDLE,
    mechanism: *mut CK_MECHANISM,
    key: CK_OBJECT_HANDLE,
) -> CK_RV {
    guard("C_VerifyInit", || {
        // SAFETY: a CK_MECHANISM (or null) by the specification.
        let (m, p) = unsafe { read_mechanism(mechanism) }?;
        token::verify_init(session, m, p, key)
    })
}

extern "C" fn C_Verify(
    session: CK_SESSION_HANDLE,
    data: *mut CK_BYTE,
    data_len: CK_ULONG,
    signature: *mut CK_BYTE,
    signature_len: CK_ULONG,
) -> CK_RV {
    guard("C_Verify", || {
        // SAFETY: both buffers are as long as the caller says.
        let (data, signature) =
            unsafe { (bytes(data, data_len)?, bytes(signature, signature_len)?) };
        token::verify_finish(session, Some(data), signature)
    })
}

extern "C" fn C_VerifyUpdate(
    session: CK_SESSION_HANDLE,
    part: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_VerifyUpdate", || {
        // SAFETY: `len` bytes.
        let part = unsafe { bytes(part, len) }?;
        token::verify_update(session, part)
    })
}

extern "C" fn C_VerifyFinal(
    session: CK_SESSION_HANDLE,
    signature: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_VerifyFinal", || {
        // SAFETY: `len` bytes.
        let signature = unsafe { bytes(signature, len) }?;
        token::verify_finish(session, None, signature)
    })
}

extern "C" fn C_GenerateRandom(
    session: CK_SESSION_HANDLE,
    out: *mut CK_BYTE,
    len: CK_ULONG,
) -> CK_RV {
    guard("C_GenerateRandom", || {
        if out.is_null() && len > 0 {
            return Err(CKR_ARGUMENTS_BAD);
        }
        let mut buffer = vec![0u8; len as usize];
        token::random(session, &mut buffer)?;
        // SAFETY: the caller gave `len` writable bytes (checked non-null when len > 0).
        unsafe { ptr::copy_nonoverlapping(buffer.as_ptr(), out, buffer.len()) };
        Ok(())
    })
}

extern "C" fn C_SeedRandom(
    _session: CK_SESSION_HANDLE,
    _seed: *mut CK_BYTE,
    _len: CK_ULONG,
) -> CK_RV {
    CKR_RANDOM_SEED_NOT_SUPPORTED
}

extern "C" fn C_GetFunctionStatus(_session: CK_SESSION_HANDLE) -> CK_RV {
    CKR_FUNCTION_NOT_PARALLEL
}

extern "C" fn C_CancelFunction(_session: CK_SESSION_HANDLE) -> CK_RV {
    CKR_FUNCTION_NOT_PARALLEL
}

/// Entry points this module does not offer: they answer `CKR_FUNCTION_NOT_SUPPORTED`.
macro_rules! unsupported {
    ($($name:ident($($t:ty),*);)*) => {
        $(
            extern "C" fn $name($(_: $t),*) -> CK_RV {
                token::debug(concat!(stringify!($name), ": not supported"));
                CKR_FUNCTION_NOT_SUPPORTED
            }
        )*
    };
}

unsupported! {
    C_InitToken(CK_SLOT_ID, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR);
    C_InitPIN(CK_SESSION_HANDLE, *mut CK_UTF8CHAR, CK_ULONG);
    C_SetPIN(CK_SESSION_HANDLE, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR, CK_ULONG);
    C_GetOperationState(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_SetOperationState(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE);
    C_CreateObject(CK_SESSION_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_CopyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_DestroyObject(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
    C_GetObjectSize(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ULONG);
    C_SetAttributeValue(CK_SESSION_HANDLE, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG);
    C_EncryptInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_Encrypt(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_EncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_EncryptFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_Decrypt(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestInit(CK_SESSION_HANDLE, *mut CK_MECHANISM);
    C_Digest(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG);
    C_DigestKey(CK_SESSION_HANDLE, CK_OBJECT_HANDLE);
    C_DigestFinal(CK_SESSION_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_SignRecoverInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_SignRecover(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_VerifyRecoverInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_VerifyRecover(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DigestEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptDigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_SignEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptVerifyUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_GenerateKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_WrapKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, CK_OBJECT_HANDLE, *mut CK_BYTE, *mut CK_ULONG);
    C_UnwrapKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_DeriveKey(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE, *mut CK_ATTRIBUTE, CK_ULONG, *mut CK_OBJECT_HANDLE);
    C_WaitForSlotEvent(CK_FLAGS, *mut CK_SLOT_ID, *mut c_void);
    C_LoginUser(CK_SESSION_HANDLE, CK_USER_TYPE, *mut CK_UTF8CHAR, CK_ULONG, *mut CK_UTF8CHAR, CK_ULONG);
    C_SessionCancel(CK_SESSION_HANDLE, CK_FLAGS);
    C_MessageEncryptInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_EncryptMessage(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_EncryptMessageBegin(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG);
    C_EncryptMessageNext(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG, CK_FLAGS);
    C_MessageEncryptFinal(CK_SESSION_HANDLE);
    C_MessageDecryptInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_DecryptMessage(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_DecryptMessageBegin(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG);
    C_DecryptMessageNext(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG, CK_FLAGS);
    C_MessageDecryptFinal(CK_SESSION_HANDLE);
    C_MessageSignInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_SignMessage(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_SignMessageBegin(CK_SESSION_HANDLE, *mut c_void, CK_ULONG);
    C_SignMessageNext(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG);
    C_MessageSignFinal(CK_SESSION_HANDLE);
    C_MessageVerifyInit(CK_SESSION_HANDLE, *mut CK_MECHANISM, CK_OBJECT_HANDLE);
    C_VerifyMessage(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, CK_ULONG);
    C_VerifyMessageBegin(CK_SESSION_HANDLE, *mut c_void, CK_ULONG);
    C_VerifyMessageNext(CK_SESSION_HANDLE, *mut c_void, CK_ULONG, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, CK_ULONG);
    C_MessageVerifyFinal(CK_SESSION_HANDLE);
}

/// A function list in a static (the C structs hold raw pointers, which are not `Sync`; the
/// lists are never written after they are built).
#[repr(transparent)]
struct Shared<T>(T);
// SAFETY: the values are read-only for the life of the process.
unsafe impl<T> Sync for Shared<T> {}

static FUNCTIONS: Shared<CK_FUNCTION_LIST> = Shared(CK_FUNCTION_LIST {
    version: CK_VERSION {
        major: 2,
        minor: 40,
    },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
});

static FUNCTIONS_3_0: Shared<CK_FUNCTION_LIST_3_0> = Shared(CK_FUNCTION_LIST_3_0 {
    version: CK_VERSION { major: 3, minor: 0 },
    C_Initialize: Some(C_Initialize),
    C_Finalize: Some(C_Finalize),
    C_GetInfo: Some(C_GetInfo),
    C_GetFunctionList: Some(C_GetFunctionList),
    C_GetSlotList: Some(C_GetSlotList),
    C_GetSlotInfo: Some(C_GetSlotInfo),
    C_GetTokenInfo: Some(C_GetTokenInfo),
    C_GetMechanismList: Some(C_GetMechanismList),
    C_GetMechanismInfo: Some(C_GetMechanismInfo),
    C_InitToken: Some(C_InitToken),
    C_InitPIN: Some(C_InitPIN),
    C_SetPIN: Some(C_SetPIN),
    C_OpenSession: Some(C_OpenSession),
    C_CloseSession: Some(C_CloseSession),
    C_CloseAllSessions: Some(C_CloseAllSessions),
    C_GetSessionInfo: Some(C_GetSessionInfo),
    C_GetOperationState: Some(C_GetOperationState),
    C_SetOperationState: Some(C_SetOperationState),
    C_Login: Some(C_Login),
    C_Logout: Some(C_Logout),
    C_CreateObject: Some(C_CreateObject),
    C_CopyObject: Some(C_CopyObject),
    C_DestroyObject: Some(C_DestroyObject),
    C_GetObjectSize: Some(C_GetObjectSize),
    C_GetAttributeValue: Some(C_GetAttributeValue),
    C_SetAttributeValue: Some(C_SetAttributeValue),
    C_FindObjectsInit: Some(C_FindObjectsInit),
    C_FindObjects: Some(C_FindObjects),
    C_FindObjectsFinal: Some(C_FindObjectsFinal),
    C_EncryptInit: Some(C_EncryptInit),
    C_Encrypt: Some(C_Encrypt),
    C_EncryptUpdate: Some(C_EncryptUpdate),
    C_EncryptFinal: Some(C_EncryptFinal),
    C_DecryptInit: Some(C_DecryptInit),
    C_Decrypt: Some(C_Decrypt),
    C_DecryptUpdate: Some(C_DecryptUpdate),
    C_DecryptFinal: Some(C_DecryptFinal),
    C_DigestInit: Some(C_DigestInit),
    C_Digest: Some(C_Digest),
    C_DigestUpdate: Some(C_DigestUpdate),
    C_DigestKey: Some(C_DigestKey),
    C_DigestFinal: Some(C_DigestFinal),
    C_SignInit: Some(C_SignInit),
    C_Sign: Some(C_Sign),
    C_SignUpdate: Some(C_SignUpdate),
    C_SignFinal: Some(C_SignFinal),
    C_SignRecoverInit: Some(C_SignRecoverInit),
    C_SignRecover: Some(C_SignRecover),
    C_VerifyInit: Some(C_VerifyInit),
    C_Verify: Some(C_Verify),
    C_VerifyUpdate: Some(C_VerifyUpdate),
    C_VerifyFinal: Some(C_VerifyFinal),
    C_VerifyRecoverInit: Some(C_VerifyRecoverInit),
    C_VerifyRecover: Some(C_VerifyRecover),
    C_DigestEncryptUpdate: Some(C_DigestEncryptUpdate),
    C_DecryptDigestUpdate: Some(C_DecryptDigestUpdate),
    C_SignEncryptUpdate: Some(C_SignEncryptUpdate),
    C_DecryptVerifyUpdate: Some(C_DecryptVerifyUpdate),
    C_GenerateKey: Some(C_GenerateKey),
    C_GenerateKeyPair: Some(C_GenerateKeyPair),
    C_WrapKey: Some(C_WrapKey),
    C_UnwrapKey: Some(C_UnwrapKey),
    C_DeriveKey: Some(C_DeriveKey),
    C_SeedRandom: Some(C_SeedRandom),
    C_GenerateRandom: Some(C_GenerateRandom),
    C_GetFunctionStatus: Some(C_GetFunctionStatus),
    C_CancelFunction: Some(C_CancelFunction),
    C_WaitForSlotEvent: Some(C_WaitForSlotEvent),
    C_GetInterfaceList: Some(C_GetInterfaceList),
    C_GetInterface: Some(C_GetInterface),
    C_LoginUser: Some(C_LoginUser),
    C_SessionCancel: Some(C_SessionCancel),
    C_MessageEncryptInit: Some(C_MessageEncryptInit),
    C_EncryptMessage: Some(C_EncryptMessage),
    C_EncryptMessageBegin: Some(C_EncryptMessageBegin),
    C_EncryptMessageNext: Some(C_EncryptMessageNext),
    C_MessageEncryptFinal: Some(C_MessageEncryptFinal),
    C_MessageDecryptInit: Some(C_MessageDecryptInit),
    C_DecryptMessage: Some(C_DecryptMessage),
    C_DecryptMessageBegin: Some(C_DecryptMessageBegin),
    C_DecryptMessageNext: Some(C_DecryptMessageNext),
    C_MessageDecryptFinal: Some(C_MessageDecryptFinal),
    C_MessageSignInit: Some(C_MessageSignInit),
    C_SignMessage: Some(C_SignMessage),
    C_SignMessageBegin: Some(C_SignMessageBegin),
    C_SignMessageNext: Some(C_SignMessageNext),
    C_MessageSignFinal: Some(C_MessageSignFinal),
    C_MessageVerifyInit: Some(C_MessageVerifyInit),
    C_VerifyMessage: Some(C_VerifyMessage),
    C_VerifyMessageBegin: Some(C_VerifyMessageBegin),
    C_VerifyMessageNext: Some(C_VerifyMessageNext),
    C_MessageVerifyFinal: Some(C_MessageVerifyFinal),
});

const NAME: &[u8] = b"PKCS 11\0";

static INTERFACES: Shared<[CK_INTERFACE; 2]> = Shared([
    CK_INTERFACE {
        pInterfaceName: NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: ptr::addr_of!(FUNCTIONS_3_0.0) as *mut c_void,
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: ptr::addr_of!(FUNCTIONS.0) as *mut c_void,
        flags: 0,
    },
]);

#[no_mangle]
pub extern "C" fn C_GetInterfaceList(list: *mut CK_INTERFACE, count: *mut CK_ULONG) -> CK_RV {
    // SAFETY: the two-call convention's pointers, checked in write_list.
    guard("C_GetInterfaceList", || unsafe {
        write_list(&INTERFACES.0, list, count)
    })
}

#[no_mangle]
pub extern "C" fn C_GetInterface(
    name: *mut CK_UTF8CHAR,
    version: *mut CK_VERSION,
    interface: *mut *mut CK_INTERFACE,
    flags: CK_FLAGS,
) -> CK_RV {
    guard("C_GetInterface", || {
        if interface.is_null() {
            return Err(CKR_ARGUMENTS_BAD);
        }
        if !name.is_null() {
            // SAFETY: a NUL-terminated name by the specification.
            let name = unsafe { std::ffi::CStr::from_ptr(name as *const std::ffi::c_char) };
            if name.to_bytes_with_nul() != NAME {
                return Err(CKR_ARGUMENTS_BAD);
            }
        }
        if flags != 0 {
            // No interface has flags (CKF_INTERFACE_FORK_SAFE): a child must call
            // C_Initialize again, which it may.
            return Err(CKR_ARGUMENTS_BAD);
        }
        let index = if version.is_null() {
            0
        } else {
            // SAFETY: checked non-null.
            match unsafe { ptr::read_unaligned(version) } {
                CK_VERSION { major: 3, minor: 0 } => 0,
                CK_VERSION {
                    major: 2,
                    minor: 40,
                } => 1,
                _ => return Err(CKR_ARGUMENTS_BAD),
            }
        };
        // SAFETY: checked non-null; the interfaces are static and read-only.
        unsafe { *interface = ptr::addr_of!(INTERFACES.0[index]) as *mut CK_INTERFACE };
        Ok(())
    })
}
