//! What the PIV backend is told: which card, its PIN and management key, the slots of
//! Signet's own keys and the policies of the keys it makes.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::pin::Pin;

/// A PIV management key (24 bytes of 3DES, given as 48 hex digits). Zeroised on drop; its
/// `Debug` prints nothing of it.
#[derive(Clone)]
pub struct ManagementKey(
    #[cfg_attr(not(feature = "yubikey"), allow(dead_code))] Zeroizing<Vec<u8>>,
);

impl ManagementKey {
    /// Parses 48 hex digits (surrounding white space ignored).
    pub fn from_hex(text: &str) -> Result<Self> {
        let text = Zeroizing::new(text.trim().to_string());
        let bytes = Zeroizing::new(hex::decode(text.as_bytes()).map_err(|_| {
            Error::Wrapper("the PIV management key is not hex (48 hex digits expected)".into())
        })?);
        if bytes.len() != 24 {
            return Err(Error::Wrapper(format!(
                "the PIV management key has {} bytes; a 3DES key has 24 (48 hex digits)",
                bytes.len()
            )));
        }
        Ok(ManagementKey(bytes))
    }

    #[cfg(feature = "yubikey")]
    pub(super) fn mgm(&self) -> Result<yubikey::MgmKey> {
        yubikey::MgmKey::from_bytes(self.0.as_slice())
            .map_err(|_| Error::Wrapper("the PIV management key is a weak 3DES key".into()))
    }
}

impl fmt::Debug for ManagementKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ManagementKey(<redacted>)")
    }
}

/// When a key's use needs the PIN (PIV PIN policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinUse {
    /// Once per session (the backend verifies the PIN when it opens the card).
    Once,
    /// Before every operation (the backend verifies it each time).
    Always,
}

/// When a key's use needs a touch of the card (PIV touch policy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchUse {
    /// Never.
    Never,
    /// Every time.
    Always,
    /// At most every 15 seconds.
    Cached,
}

/// Which slot holds each of Signet's own keys (PIV slot numbers, e.g. 0x9c).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PivSlots {
    /// The root CA key.
    pub root_ca: u8,
    /// The intermediate CA key.
    pub intermediate_ca: u8,
    /// The server's TLS key.
    pub server_tls: u8,
    /// The audit checkpoint key.
    pub audit: u8,
}

impl Default for PivSlots {
    fn default() -> Self {
        PivSlots {
            root_ca: 0x9c,
            intermediate_ca: 0x9d,
            server_tls: 0x9a,
            audit: 0x9e,
        }
    }
}

/// How to reach a YubiKey and what to put on it.
#[derive(Clone, Debug)]
pub struct PivConfig {
    /// Which card, when several are plugged in.
    pub serial: Option<u32>,
    /// The PIV PIN.
    pub pin: Pin,
    /// The management key (needed to generate keys and write certificates).
    pub management_key: ManagementKey,
    /// The slots of Signet's own keys.
    pub slots: PivSlots,
    /// PIN policy of the keys Signet generates.
    pub pin_use: PinUse,
    /// Touch policy of the keys Signet generates.
    pub touch: TouchUse,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn management_keys_are_checked_and_never_printed() {
        let key =
            ManagementKey::from_hex("010203040506070801020304050607080102030405060708").unwrap();
        assert_eq!(format!("{key:?}"), "ManagementKey(<redacted>)");
        assert!(ManagementKey::from_hex("0102").is_err());
        assert!(ManagementKey::from_hex("zz").is_err());
    }
}
