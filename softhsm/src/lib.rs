//! Isolated SoftHSM2 tokens: find the module, give a token its own directory and `softhsm2.conf`,
//! and initialise it through the PKCS#11 ABI. Used by Signet's embedded default, its tests and
//! its scripts, so none of them touch a system-wide token.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, when the module is first initialised in a process: call
//! [`TokenDir::activate`] before anything opens the module.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use signet_hsm::{Pin, Pkcs11Config, TokenSelector};

/// The environment variable that overrides where the PKCS#11 module is.
pub const MODULE_ENV: &str = "SIGNET_PKCS11_MODULE";

/// Where Debian and friends install SoftHSM2's module.
pub const MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No SoftHSM2 module was found.
    #[error("SoftHSM2 module not found: set {MODULE_ENV} or install softhsm2 (tried {tried})")]
    ModuleNotFound {
        /// The paths looked at.
        tried: String,
    },
    /// A file or directory could not be made.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The process already uses another SoftHSM2 configuration.
    #[error("this process already uses SOFTHSM2_CONF={active}; SoftHSM2 reads it only once")]
    ConfigConflict {
        /// The configuration already active.
        active: String,
    },
    /// Token initialisation failed.
    #[error(transparent)]
    Hsm(#[from] signet_hsm::Error),
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Finds `libsofthsm2.so`: `SIGNET_PKCS11_MODULE` first, then the usual install paths.
pub fn find_module() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(MODULE_ENV) {
        return Ok(PathBuf::from(path));
    }
    MODULE_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| Error::ModuleNotFound {
            tried: format!("${MODULE_ENV}, {}", MODULE_PATHS.join(", ")),
        })
}

/// A directory holding SoftHSM2 token files and the configuration that points at them.
#[derive(Debug, Clone)]
pub struct TokenDir {
    root: PathBuf,
}

impl TokenDir {
    /// Creates (or reuses) `root/tokens` and `root/softhsm2.conf`, both private to the owner.
    pub fn create(root: &Path) -> Result<Self> {
        let tokens = root.join("tokens");
        mkdir_private(&tokens)?;
        let conf = root.join("softhsm2.conf");
        let text = format!(
            "# Written by Signet: an isolated SoftHSM2 token store.\n\
             directories.tokendir = {}\n\
             objectstore.backend = file\n\
             log.level = ERROR\n\
             slots.removable = false\n",
            tokens.canonicalize().unwrap_or(tokens.clone()).display()
        );
        write_private(&conf, text.as_bytes())?;
        Ok(TokenDir {
            root: root.to_path_buf(),
        })
    }

    /// The configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("softhsm2.conf")
    }

    /// True when a token has been initialised here already.
    pub fn has_tokens(&self) -> bool {
        std::fs::read_dir(self.root.join("tokens"))
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(false)
    }

    /// Points this process's SoftHSM2 at this directory. Must happen before the module is first
    /// initialised; a second, different directory in the same process is refused.
    pub fn activate(&self) -> Result<()> {
        static ACTIVE: OnceLock<PathBuf> = OnceLock::new();
        let conf = self.config_file();
        let active = ACTIVE.get_or_init(|| {
            // Edition 2021: set_var is safe; it runs before any PKCS#11 thread exists.
            std::env::set_var("SOFTHSM2_CONF", &conf);
            conf.clone()
        });
        if *active != conf {
            return Err(Error::ConfigConflict {
                active: active.display().to_string(),
            });
        }
        Ok(())
    }
}

/// Initialises a token labelled `label` in the active SoftHSM2 configuration.
pub fn init_token(module: &Path, label: &str, so_pin: &Pin, user_pin: &Pin) -> Result<()> {
    signet_hsm::pkcs11::init_token(module, label, so_pin, user_pin)?;
    Ok(())
}

/// A fresh token for one test: its own label in a token directory private to this process.
#[derive(Debug)]
pub struct TestToken {
    /// The module path.
    pub module: PathBuf,
    /// The token label.
    pub label: String,
    /// The user PIN.
    pub pin: Pin,
    /// The SO PIN.
    pub so_pin: Pin,
    /// The token directory.
    pub dir: PathBuf,
}

impl TestToken {
    /// Creates and initialises a new token. Works under `cargo nextest` (a process per test) and
    /// `cargo test` (threads sharing one directory: each test still gets its own token).
    pub fn new() -> Result<Self> {
        static DIR: OnceLock<std::result::Result<TokenDir, String>> = OnceLock::new();
        let dir = DIR
            .get_or_init(|| {
                let root = std::env::temp_dir().join(format!("signet-test-{}", std::process::id()));
                let dir = TokenDir::create(&root).map_err(|e| e.to_string())?;
                dir.activate().map_err(|e| e.to_string())?;
                Ok(dir)
            })
            .as_ref()
            .map_err(|e| Error::Io {
                what: "creating test token directory",
                path: std::env::temp_dir(),
                source: std::io::Error::other(e.clone()),
            })?;
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let label = format!("test-{n}");
        let module = find_module()?;
        let pin = Pin::random(16)?;
        let so_pin = Pin::random(16)?;
        init_token(&module, &label, &so_pin, &pin)?;
        Ok(TestToken {
            module,
            label,
            pin,
            so_pin,
            dir: dir.root.clone(),
        })
    }

    /// Configuration for a backend on this token.
    pub fn config(&self, pool_size: usize) -> Pkcs11Config {
        Pkcs11Config {
            module: self.module.clone(),
            token: TokenSelector::Label(self.label.clone()),
            pin: self.pin.clone(),
            pool_size,
        }
    }
}

/// Makes a directory (and parents) readable only by its owner.
fn mkdir_private(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| Error::Io {
        what: "creating directory",
        path: path.to_path_buf(),
        source,
    })?;
    set_mode(path, 0o700)
}

/// Writes the token configuration, readable only by its owner (mode 0600 from creation).
fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    set_mode(path, 0o600)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        Error::Io {
            what: "setting permissions on",
            path: path.to_path_buf(),
            source,
        }
    })
}
