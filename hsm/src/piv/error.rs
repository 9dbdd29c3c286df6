//! `yubikey` errors in the boundary's terms.

use crate::error::{Error, Fault};

const INTERFACE: &str = "PIV";

/// What went wrong, in the boundary's terms; `function` names the PIV operation.
pub(super) fn device(function: &str, e: yubikey::Error) -> Error {
    use yubikey::Error as Y;
    match e {
        Y::WrongPin { tries } => Error::PinIncorrect {
            retries_left: Some(tries),
        },
        Y::PinLocked => Error::PinLocked,
        Y::NotFound => {
            Error::TokenNotFound("no YubiKey found (no PIV card in any PC/SC reader)".into())
        }
        other => {
            let fault = match other {
                Y::PcscError { .. } | Y::AppletNotFound { .. } => Fault::SessionLost,
                _ => Fault::Other,
            };
            Error::Device {
                interface: INTERFACE,
                function: function.into(),
                code: code_name(&other),
                fault,
            }
        }
    }
}

/// A stable name for a `yubikey` error (its variant), never its data nor its Debug text.
fn code_name(e: &yubikey::Error) -> String {
    use yubikey::Error as E;
    match e {
        E::AlgorithmError => "AlgorithmError",
        E::AppletError => "AppletError",
        E::AppletNotFound { .. } => "AppletNotFound",
        E::ArgumentError => "ArgumentError",
        E::AuthenticationError => "AuthenticationError",
        E::GenericError => "GenericError",
        E::InvalidObject => "InvalidObject",
        E::KeyError => "KeyError",
        E::MemoryError => "MemoryError",
        E::NotSupported => "NotSupported",
        E::NotFound => "NotFound",
        E::ParseError => "ParseError",
        E::PcscError { .. } => "PcscError",
        E::PinLocked => "PinLocked",
        E::RangeError => "RangeError",
        E::SizeError => "SizeError",
        E::WrongPin { .. } => "WrongPin",
        _ => "Error",
    }
    .into()
}
