//! PINs: zeroized on drop, never printed, exposed only at the PKCS#11 call.

use std::fmt;
use std::path::Path;

use zeroize::Zeroizing;

/// A token PIN. Its `Debug` prints nothing of the value; it is wiped from memory on drop.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wraps a PIN held in a string (the string is moved, not copied).
    pub fn new(pin: String) -> Self {
        Pin(Zeroizing::new(pin))
    }

    /// Reads a PIN from a file, dropping one trailing newline.
    ///
    /// Refused, as ssh refuses an unprotected private key, when the file is readable or
    /// writable by group or others: a PIN anyone on the host can read protects nothing.
    pub fn from_file(path: &Path) -> std::io::Result<Self> {
        check_private(path)?;
        let mut text = Zeroizing::new(std::fs::read_to_string(path)?);
        while text.ends_with('\n') || text.ends_with('\r') {
            text.pop();
        }
        Ok(Pin::new(std::mem::take(&mut *text)))
    }

    /// Reads a PIN from an environment variable.
    pub fn from_env(var: &str) -> Option<Self> {
        std::env::var(var).ok().map(Pin::new)
    }

    /// A random PIN of `len` characters from an unambiguous alphabet (for generated tokens).
    pub fn random(len: usize) -> crate::Result<Self> {
        const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        getrandom::getrandom(&mut bytes).map_err(|e| crate::Error::Random(e.to_string()))?;
        let text: String = bytes
            .iter()
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect();
        Ok(Pin::new(text))
    }

    /// The PIN's characters, for writing it to a 0600 file. Callers must not log this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Refuses a secret file that group or others may read or write (mode `& 0o066`).
pub fn check_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o066 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is readable or writable by group or others (mode {:04o}): a secret file must be the owner's alone; run chmod 600 on it",
                path.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let pin = Pin::new("123456".into());
        assert_eq!(format!("{pin:?}"), "Pin(<redacted>)");
        assert!(!format!("{pin:?}").contains("123456"));
    }

    #[test]
    fn random_pins_differ() {
        let a = Pin::random(24).unwrap();
        let b = Pin::random(24).unwrap();
        assert_eq!(a.expose().len(), 24);
        assert_ne!(a.expose(), b.expose());
    }
}
