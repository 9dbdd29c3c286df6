//! The `signet` command line: operates on the configured token and store directly (no server
//! needed), as the operator, through the same use-case methods as the API; and starts the
//! server. Nothing imports from here.

mod audit;
mod ca;
mod keys;
mod principals;
mod progress;
mod remote;
mod status;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use signet_hsm::{KeySpec, SignatureAlgorithm};
use signet_pki::Profile;

use crate::config::Config;
use crate::service::{OpenMode, Service};

/// The order an operator follows, each step one command that works offline.
const FIRST_HOUR: &str = "\
First hour (offline, on one data directory; `signet serve` then answers the same over mTLS):
  signet --data-dir D ca init                                   # root, intermediate, server key, admin bundle
  signet --data-dir D principal create svc --scope 'keys:sign:svc-*'
  signet --data-dir D cert issue --profile client --name svc --p12 svc.p12
  signet --data-dir D key create svc-signing --spec ec-p256
  signet --data-dir D key sign svc-signing --alg ES256 --in FILE --out FILE.sig
  signet --data-dir D ca rotate --intermediate                  # a new intermediate, same root
  signet --data-dir D cert revoke SERIAL --reason keyCompromise
  signet --data-dir D audit verify                              # reads only
";

/// Signet: a hardware-backed key service.
#[derive(Debug, Parser)]
#[command(name = "signet", version, about, after_help = FIRST_HOUR)]
pub struct Cli {
    /// Data directory: the embedded token, the database, the CA files [default: data_dir in
    /// the config, else ./signet-data].
    #[arg(long, global = true, value_name = "DIR", env = "SIGNET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (TOML); `signet config example` prints an annotated one.
    #[arg(long, global = true, value_name = "FILE", env = "SIGNET_CONFIG")]
    pub config: Option<PathBuf>,
    /// The token as a PKCS#11 URI (RFC 7512), e.g.
    /// "pkcs11:token=ops?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/signet/pin".
    /// Overrides hsm.uri.
    #[arg(long, global = true, value_name = "URI", env = "SIGNET_HSM_URI")]
    pub hsm_uri: Option<String>,
    /// A running Signet to call instead of opening the data directory (remote mode: `key
    /// list|create|public|sign` and `status`), e.g. `https://signet.example:8443`.
    #[arg(long, global = true, value_name = "URL", env = "SIGNET_SERVER")]
    pub server: Option<String>,
    /// Remote mode from a client settings file instead of --server/--ca/--bundle: the PKCS#11
    /// module's format (url, ca, cert + key or pkcs12, timeouts); the password of a bundle or
    /// an encrypted key is read from --bundle-password-file [default: that file's name with
    /// `.pass` added].
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "SIGNET_REMOTE",
        conflicts_with = "server"
    )]
    pub remote: Option<PathBuf>,
    /// Remote mode: the client bundle (PKCS#12, as `signet cert issue --p12` writes it).
    #[arg(long, global = true, value_name = "FILE", env = "SIGNET_BUNDLE")]
    pub bundle: Option<PathBuf>,
    /// Remote mode: the file holding the bundle's password [default: the bundle's name with
    /// `.pass` added, as `signet cert issue --p12` writes it].
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "SIGNET_BUNDLE_PASSWORD_FILE"
    )]
    pub bundle_password_file: Option<PathBuf>,
    /// Remote mode: the server's CA (Signet's root, DATA/ca/root.pem).
    #[arg(long, global = true, value_name = "FILE", env = "SIGNET_CA")]
    pub ca: Option<PathBuf>,
    /// Log format on stderr: text or json.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the mutual-TLS API (bootstraps the CA on first start).
    Serve(ServeArgs),
    /// Keys in the token.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Certificates issued by the CA.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Write the current CRL (the intermediate's; `--root` the root's, the ARL).
    Crl {
        /// Output file (PEM; DER if the name ends in .der or .crl). Stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The root's CRL (ARL) instead: what `openssl verify -crl_check_all` needs for the
        /// intermediate.
        #[arg(long)]
        root: bool,
    },
    /// Configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Signed tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Principals (the identities in client certificates) and their scopes, offline.
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// What an operator looks at first: backend and token, store, CA validity, CRL, audit head
    /// and last checkpoint (offline; a running server answers the same at GET /v1/status).
    Status {
        /// The JSON document instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// `signet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Seed a few principals (demo-signer, demo-reader), keys (demo-es256, demo-rsa) and their
    /// client bundles where missing, and print a curl line for each, to explore the API.
    #[arg(long)]
    pub demo: bool,
}

/// `signet key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a key pair in the token.
    Create {
        /// Key name.
        name: String,
        /// ec-p256, ec-p384, ed25519, rsa-2048, rsa-3072 or rsa-4096.
        #[arg(long, default_value = "ec-p256")]
        spec: KeySpec,
    },
    /// Import a private key from a PKCS#12 file into the token (bring your own key).
    Import {
        /// Name of the new key.
        name: String,
        /// The PKCS#12 file (OpenSSL 3 default, legacy RC2/3DES, or unencrypted; it must have
        /// a MAC).
        #[arg(long, value_name = "FILE")]
        p12: PathBuf,
        /// File holding the PKCS#12 password (one line).
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
    },
    /// List keys: name, spec, id, created.
    List,
    /// Print a key version's attestation (PIV cards): the key's attestation certificate and
    /// the card's (slot f9), PEM, leaf first; what they say goes to stderr.
    Attest {
        /// Key name.
        name: String,
        /// Version (default: primary).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Print a public key.
    Public {
        /// Key name.
        name: String,
        /// pem or jwk.
        #[arg(long, default_value = "pem", value_parser = ["pem", "jwk"])]
        format: String,
        /// Version (default: primary).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Sign a file.
    Sign {
        /// Key name.
        name: String,
        /// ES256, ES384, EdDSA, RS256/384/512, PS256/384/512, ML-DSA-44/65/87 (default: the
        /// key's first).
        #[arg(long)]
        alg: Option<SignatureAlgorithm>,
        /// Input file (- for stdin).
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
        /// ML-DSA and SLH-DSA only: a context string (its UTF-8 bytes, at most 255) the signature is bound to.
        #[arg(long)]
        context: Option<String>,
        /// Write raw signature bytes here instead of base64 to stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The input is already a digest of the algorithm's hash.
        #[arg(long)]
        digest: bool,
        /// ECDSA as raw r||s instead of DER.
        #[arg(long)]
        raw: bool,
        /// Version (default: primary).
        #[arg(long)]
        version: Option<u32>,
    },
    /// Destroy a key in the token now, with all its versions.
    Delete {
        /// Key name.
        name: String,
    },
}

/// What `ca init` and `ca import` share: the server certificate, the admin, and `--force`.
#[derive(Debug, clap::Args)]
pub struct CaOptions {
    /// SPIFFE trust domain.
    #[arg(long)]
    trust_domain: Option<String>,
    /// DNS name for the server certificate (repeatable).
    #[arg(long = "server-dns")]
    server_dns: Vec<String>,
    /// IP address for the server certificate (repeatable).
    #[arg(long = "server-ip")]
    server_ip: Vec<IpAddr>,
    /// Name of the first admin principal.
    #[arg(long)]
    admin: Option<String>,
    /// Replace an existing CA.
    #[arg(long)]
    force: bool,
}

/// `signet ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create root and intermediate CA keys and certificates, the server key and certificate,
    /// and the first admin client bundle.
    Init {
        /// The root's key spec, instead of `[ca] root_key_spec` (ml-dsa-87 for an ML-DSA CA,
        /// on a token with ML-DSA).
        #[arg(long, value_name = "SPEC")]
        root_spec: Option<KeySpec>,
        /// The intermediate's key spec, instead of `[ca] intermediate_key_spec`; a later
        /// `ca rotate --intermediate` follows the configuration.
        #[arg(long, value_name = "SPEC")]
        intermediate_spec: Option<KeySpec>,
        #[command(flatten)]
        options: CaOptions,
    },
    /// Take over an existing root and intermediate (keys and certificates from PKCS#12 files)
    /// instead of making new ones; then as `init`: server key and certificate, admin bundle.
    Import {
        /// The root's PKCS#12 file (its key and self-signed certificate).
        #[arg(long, value_name = "FILE")]
        root_p12: PathBuf,
        /// The intermediate's PKCS#12 file (its key and the certificate the root issued).
        #[arg(long, value_name = "FILE")]
        intermediate_p12: PathBuf,
        /// File holding the password of both files (one line)…
        #[arg(long, value_name = "FILE")]
        password_file: PathBuf,
        /// …or of the root's alone, when they differ.
        #[arg(long, value_name = "FILE")]
        root_password_file: Option<PathBuf>,
        #[command(flatten)]
        options: CaOptions,
    },
    /// Show the CA: subjects, serials, validity, key specs, fingerprints.
    Show,
    /// A new server key and certificate (and with --intermediate a new intermediate first),
    /// picked up by running nodes within seconds; certificates issued before stay valid.
    Rotate {
        /// Also replace the intermediate (the previous one stays trusted until it expires).
        #[arg(long)]
        intermediate: bool,
    },
}

/// `signet cert …`.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate from a CSR, or with a generated key as a PKCS#12 bundle.
    Issue {
        /// client or server.
        #[arg(long)]
        profile: Profile,
        /// Client identity or server name.
        #[arg(long)]
        name: String,
        /// CSR file (PEM or DER).
        #[arg(long, conflicts_with = "p12", required_unless_present = "p12")]
        csr: Option<PathBuf>,
        /// Generate a key and write a PKCS#12 bundle here (password beside it, .pass).
        #[arg(long)]
        p12: Option<PathBuf>,
        /// DNS SAN (server profile; repeatable). Default: the name.
        #[arg(long)]
        dns: Vec<String>,
        /// IP SAN (server profile; repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Lifetime in days (default: the profile's maximum).
        #[arg(long)]
        days: Option<u64>,
        /// Where to write the certificate (PEM) for --csr; stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List issued certificates.
    List,
    /// Revoke a certificate and regenerate the CRL.
    Revoke {
        /// Serial (hex).
        serial: String,
        /// RFC 5280 reason (keyCompromise, superseded, cessationOfOperation, …).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `signet principal …`.
#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// List principals and their scopes.
    List,
    /// Show a principal, its scopes and its certificates.
    Show {
        /// Principal name.
        name: String,
    },
    /// Create a principal (refused if the name exists).
    Create {
        /// Principal name (1-64 of A-Z a-z 0-9 - _ .).
        name: String,
        /// Scopes (admin, keys:create, `keys:sign:<pattern>`, …; repeatable).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// Add scopes to a principal.
    Grant {
        /// Principal name.
        name: String,
        /// Scopes to add.
        #[arg(required = true)]
        scopes: Vec<String>,
    },
    /// Remove scopes from a principal.
    RevokeScope {
        /// Principal name.
        name: String,
        /// Scopes to remove.
        #[arg(required = true)]
        scopes: Vec<String>,
    },
    /// Delete a principal and revoke its certificates.
    Delete {
        /// Principal name.
        name: String,
    },
}

/// `signet config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values.
    Check,
    /// Print an annotated configuration file with every setting and its default.
    Example,
}

/// `signet token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Check a token offline against a JWKS file (or the data dir's token key) and print its claims.
    Verify {
        /// The compact JWS.
        token: String,
        /// JWKS file; without it the data directory's token key is used.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Expected audience.
        #[arg(long)]
        audience: Option<String>,
    },
}

/// `signet audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the hash chain and every checkpoint signature.
    Verify {
        /// Verify an exported JSON-lines file instead of the database.
        #[arg(long, requires = "public_key")]
        file: Option<PathBuf>,
        /// The audit key's public key (PEM) for --file.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// Export the log as JSON lines.
    Export {
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Accept a log that is behind the checkpoint anchored in the token (its tail was cut or
    /// the disk rolled back): record the gap and anchor the log as it now is.
    Reanchor,
    /// After a restore: re-apply the certificate and token revocations an exported log
    /// (`audit export`, taken before the restore) holds that the store has lost.
    ReplayRevocations {
        /// The exported log (JSON lines).
        #[arg(long)]
        file: PathBuf,
        /// The audit public key (PEM) the export was written with.
        #[arg(long)]
        public_key: PathBuf,
    },
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(
        cli.config.as_deref(),
        cli.data_dir.as_deref(),
        cli.hsm_uri.as_deref(),
    )?)
}

/// Runs `f` on an opened service, closing it (and checkpointing what it recorded) afterwards.
fn with_service<T>(
    config: Config,
    f: impl FnOnce(&Service) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    require_data_dir(&config)?;
    creating_service(config, f)
}

/// Only `serve` and `ca init`/`ca import` make a data directory: any other command run where
/// there is none (a forgotten `--data-dir`, another working directory) says so instead of
/// creating an empty token and store there.
fn require_data_dir(config: &Config) -> anyhow::Result<()> {
    if !config.data_dir.is_dir() {
        anyhow::bail!(
            "there is no Signet data directory at {}: give --data-dir (or SIGNET_DATA_DIR) where `signet serve` or `signet ca init` made one (only those create one; to start an empty one there, make the directory first)",
            config.data_dir.display()
        );
    }
    Ok(())
}

/// As [`with_service`], allowed to create the data directory (`ca init`, `ca import`).
fn creating_service<T>(
    config: Config,
    f: impl FnOnce(&Service) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let service = Service::open(config)?;
    let result = f(&service);
    service.close();
    result
}

/// Runs `f` on a service opened to inspect only (see [`OpenMode::ReadOnly`]): nothing is
/// created, appended, checkpointed or anchored.
fn inspecting<T>(
    config: Config,
    f: impl FnOnce(&Service) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    require_data_dir(&config)?;
    let service = Service::open_with(config, OpenMode::ReadOnly)?;
    f(&service)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // Needs no configuration (it is what one starts from).
    if matches!(cli.command, Command::Config(ConfigCommand::Example)) {
        print!("{}", crate::config::EXAMPLE);
        return Ok(());
    }
    if cli.server.is_some() || cli.remote.is_some() {
        return remote::run(cli);
    }
    let config = load_config(&cli)?;
    // While this is the process's only thread: what the PKCS#11 module reads from the
    // environment (the embedded token's SoftHSM2 configuration).
    crate::service::prepare_process(&config);
    match cli.command {
        Command::Serve(args) => crate::api::serve_blocking(config, args.listen, args.demo),
        // Answered before the configuration is loaded.
        Command::Config(ConfigCommand::Example) => Ok(()),
        Command::Config(ConfigCommand::Check) => {
            println!("configuration is valid");
            println!("data_dir      {}", config.data_dir.display());
            println!("hsm           {}", config.hsm_summary());
            match &config.store {
                // Validated above: the URL holds no password.
                crate::config::StoreConfig::Postgres(pg) => {
                    println!("store         PostgreSQL {}", pg.url)
                }
                _ => println!(
                    "store         sled under {}",
                    config.paths().0.join("db").display()
                ),
            }
            println!("listen        {}", config.server.listen);
            println!("trust domain  {}", config.ca.trust_domain);
            Ok(())
        }
        Command::Token(TokenCommand::Verify {
            token,
            jwks,
            audience,
        }) => keys::verify_token(config, &token, jwks.as_deref(), audience.as_deref()),
        Command::Audit(cmd) => {
            require_data_dir(&config)?;
            audit::run(config, cmd)
        }
        Command::Key(
            cmd @ (KeyCommand::List | KeyCommand::Public { .. } | KeyCommand::Attest { .. }),
        ) => inspecting(config, |s| keys::run(s, cmd)),
        Command::Key(cmd) => with_service(config, |s| keys::run(s, cmd)),
        Command::Ca(cmd @ CaCommand::Show) => inspecting(config, |s| ca::run_ca(s, cmd)),
        Command::Ca(cmd @ (CaCommand::Init { .. } | CaCommand::Import { .. })) => {
            creating_service(config, |s| ca::run_ca(s, cmd))
        }
        Command::Ca(cmd) => with_service(config, |s| ca::run_ca(s, cmd)),
        Command::Cert(cmd @ CertCommand::List) => inspecting(config, |s| ca::run_cert(s, cmd)),
        Command::Cert(cmd) => with_service(config, |s| ca::run_cert(s, cmd)),
        Command::Principal(cmd @ (PrincipalCommand::List | PrincipalCommand::Show { .. })) => {
            inspecting(config, |s| principals::run(s, cmd))
        }
        Command::Principal(cmd) => with_service(config, |s| principals::run(s, cmd)),
        Command::Status { json } => inspecting(config, |s| {
            let status = s
                .execute(
                    &crate::service::Caller::operator(),
                    crate::service::ReadStatus,
                )
                .wait()?;
            status::print(&status, json)
        }),
        Command::Crl { out, root } => with_service(config, |s| {
            let which = if root {
                crate::service::ReadCrl::Root
            } else {
                crate::service::ReadCrl::Intermediate
            };
            let der = s
                .execute(&crate::service::Caller::operator(), which)
                .wait()?;
            write_der_or_pem(out.as_deref(), &der, signet_pki::pem_crl(&der))
        }),
    }
}

fn write_der_or_pem(out: Option<&Path>, der: &[u8], pem: String) -> anyhow::Result<()> {
    match out {
        Some(path) if path.extension().is_some_and(|e| e == "der" || e == "crl") => {
            std::fs::write(path, der)?;
        }
        Some(path) => std::fs::write(path, pem)?,
        None => print!("{pem}"),
    }
    Ok(())
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    use std::io::Read;
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}
