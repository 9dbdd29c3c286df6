//! The one place where PKCS#11 return codes become [`Error`]s: PIN codes get their own variants,
//! every other code keeps the C function that failed and the code's spec name, and a complete
//! match says what each code means for the session.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

use crate::error::{Error, Fault};

const INTERFACE: &str = "PKCS#11";

/// Converts a cryptoki error, keeping the failing function.
pub(crate) fn from_cryptoki(err: CkError) -> Error {
    match err {
        CkError::Pkcs11(RvError::PinIncorrect, _) => Error::PinIncorrect { retries_left: None },
        CkError::Pkcs11(RvError::PinLocked, _) => Error::PinLocked,
        CkError::Pkcs11(rv, function) => device(rv, function),
        CkError::LibraryLoading(e) => Error::Wrapper(format!("PKCS#11 library loading: {e}")),
        other => Error::Wrapper(format!("PKCS#11 wrapper: {other}")),
    }
}

pub(crate) fn device(rv: RvError, function: Function) -> Error {
    Error::Device {
        interface: INTERFACE,
        function: format!("C_{function:?}"),
        code: rv_name(rv),
        fault: fault(rv),
    }
}

/// What a return code means for the session it came from.
fn fault(rv: RvError) -> Fault {
    use RvError::*;
    match rv {
        // The session, the token or the library state is gone: reopen (and log in again). A
        // slot id that is no longer valid means the module's slots were renumbered under it (a
        // restarted HSM service): the module is initialised again and the token found anew.
        SessionHandleInvalid
        | SessionClosed
        | SlotIdInvalid
        | DeviceRemoved
        | TokenNotPresent
        | TokenNotRecognized
        | CryptokiNotInitialized
        | DeviceError => Fault::SessionLost,
        UserNotLoggedIn => Fault::NotLoggedIn,
        KeyHandleInvalid | ObjectHandleInvalid => Fault::StaleHandle,
        HostMemory | DeviceMemory | SessionCount | CantLock | FunctionNotParallel
        | OperationActive => Fault::Busy,
        Cancel
        | GeneralError
        | FunctionFailed
        | ArgumentsBad
        | NoEvent
        | NeedToCreateThreads
        | AttributeReadOnly
        | AttributeSensitive
        | AttributeTypeInvalid
        | AttributeValueInvalid
        | ActionProhibited
        | DataInvalid
        | DataLenRange
        | EncryptedDataInvalid
        | EncryptedDataLenRange
        | FunctionCanceled
        | FunctionNotSupported
        | CurveNotSupported
        | KeySizeRange
        | KeyTypeInconsistent
        | KeyNotNeeded
        | KeyChanged
        | KeyNeeded
        | KeyIndigestible
        | KeyFunctionNotPermitted
        | KeyNotWrappable
        | KeyUnextractable
        | MechanismInvalid
        | MechanismParamInvalid
        | OperationNotInitialized
        | PinIncorrect
        | PinInvalid
        | PinLenRange
        | PinExpired
        | PinLocked
        | SessionParallelNotSupported
        | SessionReadOnly
        | SessionExists
        | SessionReadOnlyExists
        | SessionReadWriteSoExists
        | SignatureInvalid
        | SignatureLenRange
        | TemplateIncomplete
        | TemplateInconsistent
        | TokenWriteProtected
        | UnwrappingKeyHandleInvalid
        | UnwrappingKeySizeRange
        | UnwrappingKeyTypeInconsistent
        | UserAlreadyLoggedIn
        | UserPinNotInitialized
        | UserTypeInvalid
        | UserAnotherAlreadyLoggedIn
        | UserTooManyTypes
        | WrappedKeyInvalid
        | WrappedKeyLenRange
        | WrappingKeyHandleInvalid
        | WrappingKeySizeRange
        | WrappingKeyTypeInconsistent
        | RandomSeedNotSupported
        | RandomNoRng
        | DomainParamsInvalid
        | BufferTooSmall
        | SavedStateInvalid
        | InformationSensitive
        | StateUnsaveable
        | CryptokiAlreadyInitialized
        | MutexBad
        | MutexNotLocked
        | NewPinMode
        | NextOtp
        | ExceededMaxIterations
        | FipsSelfTestFailed
        | LibraryLoadFailed
        | PinTooWeak
        | PublicKeyInvalid
        | FunctionRejected
        | VendorDefined(_)
        | UnknownErrorCode(_) => Fault::Other,
    }
}

/// True when the code says the token has no such mechanism (or cannot use its parameters):
/// the operation is unsupported, not failed.
pub(crate) fn is_mechanism_refusal(err: &CkError) -> bool {
    matches!(
        err,
        CkError::Pkcs11(
            RvError::MechanismInvalid
                | RvError::MechanismParamInvalid
                | RvError::CurveNotSupported
                | RvError::DomainParamsInvalid
                | RvError::KeySizeRange,
            _
        )
    )
}

/// The spec's spelling of a return code (`CKR_SESSION_HANDLE_INVALID`).
pub(crate) fn rv_name(rv: RvError) -> String {
    match rv {
        RvError::VendorDefined(code) => return format!("CKR_VENDOR_DEFINED({code:#x})"),
        RvError::UnknownErrorCode(code) => return format!("CKR_UNKNOWN({code:#x})"),
        _ => {}
    }
    // RvError's Debug is the CamelCase of the CKR_ name; turn it back into the spec's spelling.
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() || (ch.is_ascii_digit() && i > 0) {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_use_spec_names() {
        assert_eq!(
            rv_name(RvError::SessionHandleInvalid),
            "CKR_SESSION_HANDLE_INVALID"
        );
        assert_eq!(rv_name(RvError::DeviceError), "CKR_DEVICE_ERROR");
        assert_eq!(
            rv_name(RvError::VendorDefined(0x8000_0001)),
            "CKR_VENDOR_DEFINED(0x80000001)"
        );
    }

    #[test]
    fn pin_errors_get_their_own_variant_and_others_keep_the_function() {
        let e = from_cryptoki(CkError::Pkcs11(RvError::PinIncorrect, Function::Login));
        assert!(matches!(e, Error::PinIncorrect { .. }));
        let e = from_cryptoki(CkError::Pkcs11(RvError::KeyHandleInvalid, Function::Sign));
        assert_eq!(
            e.to_string(),
            "PKCS#11 C_Sign failed: CKR_KEY_HANDLE_INVALID"
        );
        assert_eq!(e.fault(), Some(Fault::StaleHandle));
        let e = from_cryptoki(CkError::Pkcs11(RvError::DeviceRemoved, Function::Sign));
        assert_eq!(e.fault(), Some(Fault::SessionLost));
    }
}
