//! The module's settings: a TOML file named by `SIGNET_PKCS11_CONF`.
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

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use signet_client::Identity;

/// The variable naming the settings file.
pub const ENV: &str = "SIGNET_PKCS11_CONF";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    url: String,
    ca: PathBuf,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    pkcs12: Option<PathBuf>,
    label: Option<String>,
    timeout_seconds: Option<u64>,
    connect_timeout_seconds: Option<u64>,
}

/// Where the client's identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// PEM files. An unencrypted key needs no login (any PIN is accepted); an encrypted one
    /// is opened with the PIN.
    Pem {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
        /// Whether the key file is encrypted (read when the settings are loaded).
        encrypted: bool,
    },
    /// A PKCS#12 bundle; the PIN given to `C_Login` is its password.
    Pkcs12(PathBuf),
}

/// The settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The server.
    pub url: String,
    /// The CA file.
    pub ca: PathBuf,
    /// The identity.
    pub credentials: Credentials,
    /// The token's label.
    pub label: String,
    /// Longest call.
    pub timeout: Duration,
    /// Longest connect.
    pub connect_timeout: Duration,
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
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config =
            Config::parse(&text, base).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Credentials::Pem { key, encrypted, .. } = &mut config.credentials {
            // An unreadable key file is reported when the key is first needed.
            *encrypted = std::fs::read(key)
                .map(|pem| Identity::key_is_encrypted(&zeroize::Zeroizing::new(pem)))
                .unwrap_or(false);
        }
        Ok(config)
    }

    /// Parses settings whose relative paths are under `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Config, String> {
        let f: File = toml::from_str(text).map_err(|e| e.message().to_string())?;
        let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let credentials = match (f.cert, f.key, f.pkcs12) {
            (Some(cert), Some(key), None) => Credentials::Pem {
                cert: at(cert),
                key: at(key),
                encrypted: false,
            },
            (None, None, Some(p12)) => Credentials::Pkcs12(at(p12)),
            _ => {
                return Err(
                    "give either `cert` and `key` (PEM files) or `pkcs12` (a bundle), not both"
                        .into(),
                )
            }
        };
        let label = f.label.unwrap_or_else(|| "signet".into());
        if label.len() > 32 {
            return Err(format!(
                "label {label:?} is longer than a token label's 32 bytes"
            ));
        }
        if !f.url.starts_with("https://") {
            return Err(format!("url must start with https:// (got {:?})", f.url));
        }
        Ok(Config {
            url: f.url,
            ca: at(f.ca),
            credentials,
            label,
            timeout: Duration::from_secs(f.timeout_seconds.unwrap_or(30).max(1)),
            connect_timeout: Duration::from_secs(f.connect_timeout_seconds.unwrap_or(5).max(1)),
        })
    }

    /// Whether `C_Login` is needed before the token shows anything (a PKCS#12 bundle or an
    /// encrypted key is opened with the PIN).
    pub fn login_required(&self) -> bool {
        matches!(
            self.credentials,
            Credentials::Pkcs12(_)
                | Credentials::Pem {
                    encrypted: true,
                    ..
                }
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_file_and_credentials_are_one_kind() {
        let c = Config::parse(
            "url = \"https://h:1\"\nca = \"root.pem\"\ncert = \"/abs/c.pem\"\nkey = \"k.pem\"\n",
            Path::new("/etc/signet"),
        )
        .unwrap();
        assert_eq!(c.ca, Path::new("/etc/signet/root.pem"));
        assert_eq!(
            c.credentials,
            Credentials::Pem {
                cert: "/abs/c.pem".into(),
                key: "/etc/signet/k.pem".into(),
                encrypted: false,
            }
        );
        assert!(!c.login_required());
        let p = Config::parse(
            "url = \"https://h:1\"\nca = \"r\"\npkcs12 = \"a.p12\"\n",
            Path::new("/x"),
        )
        .unwrap();
        assert!(p.login_required());
        for bad in [
            "url = \"https://h:1\"\nca = \"r\"\n",
            "url = \"https://h:1\"\nca = \"r\"\npkcs12 = \"a\"\ncert = \"c\"\nkey = \"k\"\n",
            "url = \"http://h:1\"\nca = \"r\"\npkcs12 = \"a\"\n",
            "url = \"https://h:1\"\nca = \"r\"\npkcs12 = \"a\"\nsurprise = 1\n",
        ] {
            assert!(Config::parse(bad, Path::new("/")).is_err(), "{bad}");
        }
    }
}
