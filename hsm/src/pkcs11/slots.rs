//! The slots that hold a token, listed with a bounded number of tries.
//!
//! cryptoki's listing (`get_slots_with_token` and the others, cryptoki 0.12) asks
//! `C_GetSlotList` again for as long as it answers `CKR_BUFFER_TOO_SMALL`. p11-kit's client
//! (0.24, the remoting Signet uses for network tokens) answers exactly that, forever, when the
//! list is empty: a zero-length buffer reaches its server as "no buffer", whose answer the
//! client turns into `CKR_BUFFER_TOO_SMALL` with a count of zero (p11-kit issue #257). An HSM
//! service that was up but showed no token — a token directory being rewritten while its
//! connection started, a partition not there yet — kept `signet ca init`, `serve` and a node
//! recovering from the service's restart spinning at full CPU instead of answering "no such
//! token". This asks the module itself, through the raw function list, and gives up after a
//! few changes of size.
//!
//! The function list is the module's own: for most modules the one cryptoki's context uses
//! (already initialised), for p11-kit's client a fresh instance with its own connection
//! (`C_GetFunctionList` makes one per call there), which this initialises and finalises again.
#![allow(unsafe_code)]

use std::path::Path;
use std::ptr;

use cryptoki::context::Function;
use cryptoki::error::Rv;
use cryptoki::slot::Slot;
use cryptoki_sys::{
    CKF_OS_LOCKING_OK, CKR_BUFFER_TOO_SMALL, CKR_CRYPTOKI_ALREADY_INITIALIZED, CKR_OK,
    CK_FUNCTION_LIST, CK_RV, CK_SLOT_ID, CK_TRUE, CK_ULONG,
};

use super::error::from_cryptoki;
use crate::error::{Error, Result};

/// How many times the list may change size between the two calls before this gives up.
const TRIES: usize = 4;

/// The slots with a token present, from the module at `path`.
pub(crate) fn list(path: &Path) -> Result<Vec<Slot>> {
    let load_error = |reason: String| Error::ModuleLoad {
        path: path.to_path_buf(),
        reason,
    };
    // SAFETY: loading a PKCS#11 module runs its initialisers, as cryptoki's own load of the
    // same file did; the handle is the one the process already has (dlopen counts references).
    let library =
        unsafe { cryptoki_sys::Pkcs11::new(path) }.map_err(|e| load_error(e.to_string()))?;
    let mut functions: *mut CK_FUNCTION_LIST = ptr::null_mut();
    // SAFETY: C_GetFunctionList writes one pointer to the out-parameter given.
    let rv = unsafe { library.C_GetFunctionList(&mut functions) };
    check(rv, Function::GetFunctionList)?;
    if functions.is_null() {
        return Err(load_error("C_GetFunctionList gave no function list".into()));
    }
    // SAFETY: a module's function list stays valid while the module is loaded, and `library`
    // keeps it loaded until the end of this function.
    let functions = unsafe { &*functions };
    let (Some(initialize), Some(finalize), Some(get_slot_list)) = (
        functions.C_Initialize,
        functions.C_Finalize,
        functions.C_GetSlotList,
    ) else {
        return Err(load_error("the function list lacks C_GetSlotList".into()));
    };
    let mut args = cryptoki_sys::CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: ptr::null_mut(),
    };
    // SAFETY: C_Initialize reads the arguments structure given, which outlives the call.
    let rv = unsafe { initialize(ptr::addr_of_mut!(args).cast()) };
    let ours = match rv {
        CKR_OK => true,
        CKR_CRYPTOKI_ALREADY_INITIALIZED => false,
        other => {
            // Any other code is an error.
            check(other, Function::Initialize)?;
            false
        }
    };
    let listed = bounded(|ids, count| {
        let buffer = ids.map_or(ptr::null_mut(), <[CK_SLOT_ID]>::as_mut_ptr);
        // SAFETY: `buffer` is null or holds `*count` slot ids, as C_GetSlotList expects.
        unsafe { get_slot_list(CK_TRUE, buffer, count) }
    });
    if ours {
        // SAFETY: this instance was initialised above and nothing else uses it.
        let _ = unsafe { finalize(ptr::null_mut()) };
    }
    drop(library);
    listed?
        .into_iter()
        .map(|id| Slot::try_from(id).map_err(from_cryptoki))
        .collect()
}

/// C_GetSlotList's two calls (the count, then the ids), again when the list grew between
/// them, at most [`TRIES`] times; an empty list is an answer, not a reason to ask again.
fn bounded(
    mut call: impl FnMut(Option<&mut [CK_SLOT_ID]>, &mut CK_ULONG) -> CK_RV,
) -> Result<Vec<CK_SLOT_ID>> {
    for _ in 0..TRIES {
        let mut count: CK_ULONG = 0;
        check(call(None, &mut count), Function::GetSlotList)?;
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut ids = vec![0; usize::try_from(count).unwrap_or(0)];
        match call(Some(&mut ids), &mut count) {
            CKR_BUFFER_TOO_SMALL => continue,
            rv => check(rv, Function::GetSlotList)?,
        }
        ids.truncate(usize::try_from(count).unwrap_or(0));
        return Ok(ids);
    }
    Err(Error::Device {
        interface: "PKCS#11",
        function: "C_GetSlotList".into(),
        code: format!("CKR_BUFFER_TOO_SMALL {TRIES} times in a row (the list kept growing)"),
        fault: crate::error::Fault::Busy,
    })
}

/// A return code as cryptoki's error (and so Signet's).
fn check(rv: CK_RV, function: Function) -> Result<()> {
    Rv::from(rv).into_result(function).map_err(from_cryptoki)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// p11-kit's client with an empty list: the count is zero, and asking with a (zero-length)
    /// buffer answers CKR_BUFFER_TOO_SMALL with a zero count, every time. One round, no spin.
    #[test]
    fn an_empty_list_is_an_answer() {
        let mut calls = 0;
        let got = bounded(|ids, count| {
            calls += 1;
            *count = 0;
            if ids.is_some() {
                CKR_BUFFER_TOO_SMALL
            } else {
                CKR_OK
            }
        })
        .unwrap();
        assert!(got.is_empty());
        assert_eq!(calls, 1);
    }

    /// A list that grows between the two calls is asked for again; one that never settles is
    /// a device error after a few rounds.
    #[test]
    fn a_growing_list_is_asked_again_a_few_times() {
        let mut size = 1;
        let got = bounded(|ids, count| match ids {
            None => {
                *count = size;
                CKR_OK
            }
            Some(buffer) if size == 1 => {
                size = 2;
                let _ = buffer;
                *count = 2;
                CKR_BUFFER_TOO_SMALL
            }
            Some(buffer) => {
                buffer.copy_from_slice(&[7, 9]);
                *count = 2;
                CKR_OK
            }
        })
        .unwrap();
        assert_eq!(got, vec![7, 9]);
        let mut calls = 0;
        let err = bounded(|ids, count| {
            calls += 1;
            *count = 3;
            if ids.is_some() {
                CKR_BUFFER_TOO_SMALL
            } else {
                CKR_OK
            }
        })
        .unwrap_err();
        assert!(matches!(err, Error::Device { .. }), "{err}");
        assert_eq!(calls, 2 * TRIES);
    }
}
