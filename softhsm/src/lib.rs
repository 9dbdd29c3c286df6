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
        set_mode(root, 0o700)?;
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

    /// A token directory made earlier by [`TokenDir::create`], used as it is: nothing is
    /// written (for commands that only inspect).
    pub fn existing(root: &Path) -> Result<Self> {
        let conf = root.join("softhsm2.conf");
        if !conf.is_file() {
            return Err(io_error(
                "opening the token directory",
                &conf,
                "no SoftHSM2 configuration here",
            ));
        }
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
    /// initialised; a second, different directory in the same process is refused. A process
    /// that knows its directory at start calls [`point_process_at`] first, while it has one
    /// thread; this then only checks.
    pub fn activate(&self) -> Result<()> {
        let conf = self.config_file();
        let conf = std::path::absolute(&conf).unwrap_or(conf);
        let active = ACTIVE.get_or_init(|| {
            // Only reached when `point_process_at` was not called (test helpers, which run it
            // first thing in their test).
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

/// The SoftHSM2 configuration this process uses, once chosen.
static ACTIVE: OnceLock<PathBuf> = OnceLock::new();

/// Points this process's SoftHSM2 at the token directory `root` (its `softhsm2.conf`, which
/// may not exist yet). SoftHSM2 reads `SOFTHSM2_CONF` from the environment, so this sets it:
/// call it at process start, before any other thread exists (setting the environment while
/// other threads may read it is undefined behaviour).
pub fn point_process_at(root: &Path) {
    let conf = root.join("softhsm2.conf");
    let conf = std::path::absolute(&conf).unwrap_or(conf);
    ACTIVE.get_or_init(|| {
        std::env::set_var("SOFTHSM2_CONF", &conf);
        conf.clone()
    });
}

/// Initialises a token labelled `label` in the active SoftHSM2 configuration.
pub fn init_token(module: &Path, label: &str, so_pin: &Pin, user_pin: &Pin) -> Result<()> {
    signet_hsm::pkcs11::init_token(module, label, so_pin, user_pin)?;
    Ok(())
}

/// The kinds of token the test suites run on, chosen by `SIGNET_TEST_TOKEN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// SoftHSM2 (the default): a token of its own per test.
    SoftHsm,
    /// kryoptic (`SIGNET_KRYOPTIC_MODULE`): a sqlite token of its own per test.
    Kryoptic,
    /// A SoftHSM2 token exported by `p11-kit server` and reached through `p11-kit-client.so`
    /// (`P11_KIT_SERVER_ADDRESS`, `SIGNET_P11KIT_TOKEN`, `SIGNET_P11KIT_PIN`): one token that
    /// every test process shares, as nodes share a network HSM.
    P11Kit,
}

impl TokenKind {
    /// From `SIGNET_TEST_TOKEN` (`softhsm`, `kryoptic`, `p11kit`); SoftHSM2 when unset.
    pub fn from_env() -> Self {
        match std::env::var("SIGNET_TEST_TOKEN").as_deref() {
            Ok("kryoptic") => TokenKind::Kryoptic,
            Ok("p11kit") => TokenKind::P11Kit,
            _ => TokenKind::SoftHsm,
        }
    }

    /// The name used in test output and `SIGNET_TEST_TOKEN`.
    pub fn name(self) -> &'static str {
        match self {
            TokenKind::SoftHsm => "softhsm",
            TokenKind::Kryoptic => "kryoptic",
            TokenKind::P11Kit => "p11kit",
        }
    }
}

/// Where p11-kit's client module is on Debian and friends.
pub const P11KIT_CLIENT_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
    "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
    "/usr/lib64/pkcs11/p11-kit-client.so",
];

/// A token for one test. Private tokens (SoftHSM2, kryoptic) are made fresh; the p11-kit
/// token is shared, so tests name their keys with [`TestToken::unique`].
#[derive(Debug)]
pub struct TestToken {
    /// Which kind.
    pub kind: TokenKind,
    /// The module path.
    pub module: PathBuf,
    /// The token label.
    pub label: String,
    /// The user PIN.
    pub pin: Pin,
    /// The SO PIN (for tokens made here).
    pub so_pin: Option<Pin>,
    /// A directory private to this test process.
    pub dir: PathBuf,
    /// Environment a child process needs to reach the same token (SOFTHSM2_CONF, …).
    pub env: Vec<(String, String)>,
    prefix: String,
}

fn io_error(what: &'static str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// This process's private directory for test tokens.
fn process_dir(kind: TokenKind) -> Result<PathBuf> {
    static CLAIMED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let root = std::env::temp_dir().join(format!(
        "signet-test-{}-{}",
        std::process::id(),
        kind.name()
    ));
    let mut claimed = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
    if !claimed.contains(&kind.name()) {
        // Found before this process made it: left by an earlier process that had the same id
        // (a run stopped before its cleanup). Its tokens are not ours; reusing them made a
        // test's first key collide with one already there (KeyExists).
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(|e| Error::Io {
                what: "removing a stale test token directory",
                path: root.clone(),
                source: e,
            })?;
        }
        claimed.push(kind.name());
    }
    mkdir_private(&root)?;
    Ok(root)
}

impl TestToken {
    /// A token of the kind `SIGNET_TEST_TOKEN` names. Works under `cargo nextest` (a process
    /// per test) and `cargo test` (threads sharing one directory: each test still gets its own
    /// token, but one per process for the shared kind).
    pub fn new() -> Result<Self> {
        Self::of(TokenKind::from_env())
    }

    /// A token of `kind`.
    pub fn of(kind: TokenKind) -> Result<Self> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match kind {
            TokenKind::SoftHsm => Self::softhsm(n),
            TokenKind::Kryoptic => Self::kryoptic(n),
            TokenKind::P11Kit => Self::p11kit(n),
        }
    }

    fn softhsm(n: usize) -> Result<Self> {
        static DIR: OnceLock<std::result::Result<TokenDir, String>> = OnceLock::new();
        let dir = DIR
            .get_or_init(|| {
                let root = process_dir(TokenKind::SoftHsm).map_err(|e| e.to_string())?;
                let dir = TokenDir::create(&root).map_err(|e| e.to_string())?;
                dir.activate().map_err(|e| e.to_string())?;
                Ok(dir)
            })
            .as_ref()
            .map_err(|e| io_error("creating test token directory", &std::env::temp_dir(), e))?;
        let label = format!("test-{n}");
        let module = find_module()?;
        let pin = Pin::random(16)?;
        let so_pin = Pin::random(16)?;
        init_token(&module, &label, &so_pin, &pin)?;
        Ok(TestToken {
            kind: TokenKind::SoftHsm,
            module,
            label,
            pin,
            so_pin: Some(so_pin),
            env: vec![(
                "SOFTHSM2_CONF".into(),
                dir.config_file().display().to_string(),
            )],
            dir: dir.root.clone(),
            prefix: String::new(),
        })
    }

    /// kryoptic has a fixed list of slots, one token each, and initialising one does not add
    /// a free slot: the configuration names several, and each test takes the next.
    fn kryoptic(n: usize) -> Result<Self> {
        const SLOTS: usize = 8;
        static CONF: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
        let conf = CONF
            .get_or_init(|| {
                let root = process_dir(TokenKind::Kryoptic).map_err(|e| e.to_string())?;
                let mut text = String::from("# Written by the Signet test fixture.\n");
                for slot in 1..=SLOTS {
                    text.push_str(&format!(
                        "[[slots]]\nslot = {slot}\ndbtype = \"sqlite\"\ndbargs = \"{}\"\n",
                        root.join(format!("token-{slot}.sql")).display()
                    ));
                }
                let conf = root.join("kryoptic.conf");
                write_private(&conf, text.as_bytes()).map_err(|e| e.to_string())?;
                // Read once, when the module is first initialised in this process.
                std::env::set_var("KRYOPTIC_CONF", &conf);
                Ok(conf)
            })
            .as_ref()
            .map_err(|e| {
                io_error(
                    "writing the kryoptic configuration",
                    &std::env::temp_dir(),
                    e,
                )
            })?;
        let module =
            PathBuf::from(std::env::var_os("SIGNET_KRYOPTIC_MODULE").ok_or_else(|| {
                Error::ModuleNotFound {
                    tried: "$SIGNET_KRYOPTIC_MODULE (build it with scripts/kryoptic.sh)".into(),
                }
            })?);
        let label = format!("test-{n}");
        // kryoptic wants PINs of at least 8 characters.
        let pin = Pin::random(16)?;
        let so_pin = Pin::random(16)?;
        init_token(&module, &label, &so_pin, &pin)?;
        Ok(TestToken {
            kind: TokenKind::Kryoptic,
            module,
            label,
            pin,
            so_pin: Some(so_pin),
            env: vec![("KRYOPTIC_CONF".into(), conf.display().to_string())],
            dir: conf.parent().map(Path::to_path_buf).unwrap_or_default(),
            prefix: String::new(),
        })
    }

    fn p11kit(n: usize) -> Result<Self> {
        let module = match std::env::var_os("SIGNET_P11KIT_MODULE") {
            Some(m) => PathBuf::from(m),
            None => P11KIT_CLIENT_PATHS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| Error::ModuleNotFound {
                    tried: P11KIT_CLIENT_PATHS.join(", "),
                })?,
        };
        let var = |name: &str| {
            std::env::var(name).map_err(|_| Error::ModuleNotFound {
                tried: format!("${name} (start the server with scripts/remote-token.sh)"),
            })
        };
        let address = var("P11_KIT_SERVER_ADDRESS")?;
        Ok(TestToken {
            kind: TokenKind::P11Kit,
            module,
            label: var("SIGNET_P11KIT_TOKEN")?,
            pin: Pin::new(var("SIGNET_P11KIT_PIN")?),
            so_pin: None,
            dir: process_dir(TokenKind::P11Kit)?,
            env: vec![("P11_KIT_SERVER_ADDRESS".into(), address)],
            // Unique across every process sharing the token.
            prefix: format!("p{}-{n}-", std::process::id()),
        })
    }

    /// True when other test processes use the same token.
    pub fn shared(&self) -> bool {
        self.kind == TokenKind::P11Kit
    }

    /// A label unique to this test on this token.
    pub fn unique(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether a label was made by this test (always true on a private token).
    pub fn owns(&self, label: &str) -> bool {
        label.starts_with(&self.prefix)
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
