//! The module's settings: the client settings file ([`signet_client::settings`]) named by
//! `SIGNET_PKCS11_CONF`, plus the token's label.
//!
//! ```toml
//! url = "https://signet.example:8443"
//! ca = "root.pem"              # Signet's root (DATA/ca/root.pem)
//! cert = "app.crt.pem"         # the client certificate (and chain) …
//! key = "app.key.pem"          # … and its key: if encrypted (PKCS#8 ENCRYPTED PRIVATE KEY),
//!                              # the PIN given to C_Login is its passphrase; if not, any PIN is
//!                              # accepted
//! # pkcs12 = "app.p12"         # or a bundle whose password is the PIN given to C_Login
//! label = "signet"             # the token's label (32 bytes at most)
//! timeout_seconds = 30
//! connect_timeout_seconds = 5
//! ```
//!
//! Relative paths are taken from the file's own directory.

use std::path::Path;

use signet_client::settings::Settings;

/// The variable naming the settings file.
pub const ENV: &str = "SIGNET_PKCS11_CONF";

/// The settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Server, CA, identity and timeouts.
    pub settings: Settings,
    /// The token's label.
    pub label: String,
}

impl Config {
    /// Reads the file `SIGNET_PKCS11_CONF` names.
    pub fn from_env() -> Result<Config, String> {
        let path = std::env::var_os(ENV)
            .ok_or_else(|| format!("{ENV} is not set: name the module's settings file"))?;
        Config::load(Path::new(&path))
    }

    /// Reads `path`.
    pub fn load(path: &Path) -> Result<Config, String> {
        let settings = Settings::load(path).map_err(|e| e.to_string())?;
        Config::of(settings).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The module's view of client settings: their label checked (`signet` by default).
    pub fn of(settings: Settings) -> Result<Config, String> {
        let label = settings.label.clone().unwrap_or_else(|| "signet".into());
        if label.len() > 32 {
            return Err(format!(
                "label {label:?} is longer than a token label's 32 bytes"
            ));
        }
        Ok(Config { settings, label })
    }

    /// Whether `C_Login` is needed before the token shows anything (a PKCS#12 bundle or an
    /// encrypted key is opened with the PIN).
    pub fn login_required(&self) -> bool {
        self.settings.needs_secret()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_default_and_are_bounded() {
        let settings = |label: &str| {
            Settings::parse(
                &format!("url = \"https://h:1\"\nca = \"r\"\npkcs12 = \"a.p12\"\n{label}"),
                Path::new("/x"),
            )
            .unwrap()
        };
        let c = Config::of(settings("")).unwrap();
        assert_eq!(c.label, "signet");
        assert!(c.login_required());
        assert_eq!(
            Config::of(settings("label = \"ops\"\n")).unwrap().label,
            "ops"
        );
        let long = format!("label = \"{}\"\n", "x".repeat(33));
        assert!(Config::of(settings(&long))
            .unwrap_err()
            .contains("32 bytes"));
    }
}
