//! A client settings file (TOML): how to reach one Signet server and as whom. The PKCS#11
//! module reads it (named by `SIGNET_PKCS11_CONF`), and so does the CLI's remote mode
//! (`signet --remote FILE`), so one file serves both.
//!
//! ```toml
//! url = "https://signet.example:8443"
//! ca = "root.pem"              # Signet's root (DATA/ca/root.pem)
//! cert = "app.crt.pem"         # the client certificate (and chain) …
//! key = "app.key.pem"          # … and its key; if encrypted (PKCS#8 ENCRYPTED PRIVATE KEY),
//!                              # opening it takes its passphrase
//! # pkcs12 = "app.p12"         # or a bundle, opened with its password
//! label = "signet"             # the PKCS#11 token's label (32 bytes at most; the module's)
//! timeout_seconds = 30
//! connect_timeout_seconds = 5
//! ```
//!
//! Relative paths are taken from the file's own directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::{Builder, Client, Error, Identity, Result, DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT};

/// A file's bytes, or an error naming it.
fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))
}

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
    /// PEM files. An unencrypted key needs no secret; an encrypted one its passphrase.
    Pem {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
        /// Whether the key file is encrypted (read when the settings are loaded).
        encrypted: bool,
    },
    /// A PKCS#12 bundle, opened with its password.
    Pkcs12(PathBuf),
}

/// The settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The server.
    pub url: String,
    /// The CA file.
    pub ca: PathBuf,
    /// The identity.
    pub credentials: Credentials,
    /// The PKCS#11 token's label, if given (the module's default is `signet`).
    pub label: Option<String>,
    /// Longest call.
    pub timeout: Duration,
    /// Longest connect.
    pub connect_timeout: Duration,
}

impl Settings {
    /// Settings for `url` trusting `ca`, with the default timeouts and no label (what the
    /// CLI's `--server`, `--ca` and `--bundle` give).
    pub fn new(url: impl Into<String>, ca: PathBuf, credentials: Credentials) -> Settings {
        Settings {
            url: url.into(),
            ca,
            credentials,
            label: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Reads `path`; an encrypted key file is noticed here.
    pub fn load(path: &Path) -> Result<Settings> {
        let text = String::from_utf8(read(path)?)
            .map_err(|_| Error::Config(format!("{} is not UTF-8 text", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut settings = Settings::parse(&text, base)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if let Credentials::Pem { key, encrypted, .. } = &mut settings.credentials {
            // An unreadable key file is reported when the key is first needed.
            *encrypted = std::fs::read(key)
                .map(|pem| Identity::key_is_encrypted(&Zeroizing::new(pem)))
                .unwrap_or(false);
        }
        Ok(settings)
    }

    /// Parses settings whose relative paths are under `base` (the key is taken as
    /// unencrypted: [`Settings::load`] looks).
    pub fn parse(text: &str, base: &Path) -> Result<Settings> {
        let f: File = toml::from_str(text).map_err(|e| Error::Config(e.message().to_string()))?;
        let at = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let credentials = match (f.cert, f.key, f.pkcs12) {
            (Some(cert), Some(key), None) => Credentials::Pem {
                cert: at(cert),
                key: at(key),
                encrypted: false,
            },
            (None, None, Some(p12)) => Credentials::Pkcs12(at(p12)),
            _ => {
                return Err(Error::Config(
                    "give either `cert` and `key` (PEM files) or `pkcs12` (a bundle), not both"
                        .into(),
                ))
            }
        };
        if !f.url.starts_with("https://") {
            return Err(Error::Config(format!(
                "url must start with https:// (got {:?})",
                f.url
            )));
        }
        Ok(Settings {
            url: f.url,
            ca: at(f.ca),
            credentials,
            label: f.label,
            timeout: f
                .timeout_seconds
                .map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs(s.max(1))),
            connect_timeout: f
                .connect_timeout_seconds
                .map_or(DEFAULT_CONNECT_TIMEOUT, |s| Duration::from_secs(s.max(1))),
        })
    }

    /// Whether opening the identity takes a secret (a bundle's password, an encrypted key's
    /// passphrase).
    pub fn needs_secret(&self) -> bool {
        matches!(
            self.credentials,
            Credentials::Pkcs12(_)
                | Credentials::Pem {
                    encrypted: true,
                    ..
                }
        )
    }

    /// The file the secret opens (the bundle or the key), for naming a password file after.
    pub fn secret_file(&self) -> &Path {
        match &self.credentials {
            Credentials::Pkcs12(path) => path,
            Credentials::Pem { key, .. } => key,
        }
    }

    /// Reads the identity's files and opens them, with `secret` where one is needed (a wrong
    /// one is [`Error::WrongPassword`]).
    pub fn identity(&self, secret: Option<&str>) -> Result<Identity> {
        let secret = || {
            secret.ok_or_else(|| {
                Error::Config(format!(
                    "{} needs its password to be opened",
                    self.secret_file().display()
                ))
            })
        };
        match &self.credentials {
            Credentials::Pkcs12(path) => Identity::from_pkcs12(&read(path)?, secret()?),
            Credentials::Pem {
                cert,
                key,
                encrypted: false,
            } => Identity::from_pem(&read(cert)?, &Zeroizing::new(read(key)?)),
            Credentials::Pem { cert, key, .. } => {
                Identity::from_encrypted_pem(&read(cert)?, &Zeroizing::new(read(key)?), secret()?)
            }
        }
    }

    /// A client builder for the server, trusting the CA file, with the timeouts (the identity
    /// and user agent are the caller's to add).
    pub fn builder(&self) -> Result<Builder> {
        Ok(Client::builder(self.url.clone())
            .root_pem(&read(&self.ca)?)?
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_file_and_credentials_are_one_kind() {
        let c = Settings::parse(
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
        assert!(!c.needs_secret());
        let p = Settings::parse(
            "url = \"https://h:1\"\nca = \"r\"\npkcs12 = \"a.p12\"\n",
            Path::new("/x"),
        )
        .unwrap();
        assert!(p.needs_secret());
        assert_eq!(p.secret_file(), Path::new("/x/a.p12"));
        for bad in [
            "url = \"https://h:1\"\nca = \"r\"\n",
            "url = \"https://h:1\"\nca = \"r\"\npkcs12 = \"a\"\ncert = \"c\"\nkey = \"k\"\n",
            "url = \"http://h:1\"\nca = \"r\"\npkcs12 = \"a\"\n",
            "url = \"https://h:1\"\nca = \"r\"\npkcs12 = \"a\"\nsurprise = 1\n",
        ] {
            assert!(Settings::parse(bad, Path::new("/")).is_err(), "{bad}");
        }
    }
}
