//! The `signet` command line: operates on the configured token and store directly (no server
//! needed), and starts the server.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::{Args, Parser, Subcommand};
use signet_hsm::{EcdsaFormat, KeySpec, SignInput, SignatureAlgorithm};
use signet_pki::{LeafRequest, Profile};

use crate::authority;
use crate::config::Config;
use crate::keys::Keys;
use crate::runtime::Signet;

/// Signet: a hardware-backed key service.
#[derive(Debug, Parser)]
#[command(name = "signet", version, about)]
pub struct Cli {
    /// Data directory of the embedded default (token, database, CA files).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (TOML); see src/signet.example.toml.
    #[arg(long, global = true, value_name = "FILE", env = "SIGNET_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// Write the current CRL.
    Crl {
        /// Output file (PEM; DER if the name ends in .der or .crl). Stdout when absent.
        #[arg(long)]
        out: Option<PathBuf>,
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
}

/// `signet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
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
    /// List keys: name, spec, id, created.
    List,
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
        /// ES256, ES384, EdDSA, RS256/384/512, PS256/384/512 (default: the key's first).
        #[arg(long)]
        alg: Option<SignatureAlgorithm>,
        /// Input file (- for stdin).
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
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

/// `signet ca …`.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create root and intermediate CA keys and certificates, the server key and certificate,
    /// and the first admin client bundle.
    Init {
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
    },
    /// Show the CA: subjects, serials, validity, key specs, fingerprints.
    Show,
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

/// `signet config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values.
    Check,
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
}

/// Now, RFC 3339 UTC with milliseconds (audit records).
pub fn format_time_precise() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// RFC 3339 UTC from unix seconds.
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(
        cli.config.as_deref(),
        cli.data_dir.as_deref(),
    )?)
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli)?;
    match cli.command {
        Command::Serve(args) => crate::api::serve_blocking(config, args.listen),
        Command::Config(ConfigCommand::Check) => {
            println!("configuration is valid");
            println!("data_dir      {}", config.data_dir.display());
            match &config.hsm.module {
                Some(m) => println!(
                    "hsm           {} (token {:?})",
                    m.display(),
                    config.hsm.token_label
                ),
                None => println!(
                    "hsm           embedded SoftHSM2 token under {}/softhsm",
                    config.data_dir.display()
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
        }) => crate::tokens::cli_verify(&config, &token, jwks.as_deref(), audience.as_deref()),
        Command::Audit(cmd) => crate::audit::cli(&config, cmd),
        Command::Key(cmd) => key_command(&Signet::open(config)?, cmd),
        Command::Ca(cmd) => ca_command(&Signet::open(config)?, cmd),
        Command::Cert(cmd) => cert_command(&Signet::open(config)?, cmd),
        Command::Crl { out } => {
            let signet = Signet::open(config)?;
            let ca = authority::load(&signet)?;
            let der = authority::current_crl(&signet, &ca)?;
            write_der_or_pem(out.as_deref(), &der, signet_pki::pem_crl(&der))
        }
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

fn key_command(signet: &Signet, cmd: KeyCommand) -> anyhow::Result<()> {
    let keys = Keys(signet);
    match cmd {
        KeyCommand::Create { name, spec } => {
            let record = keys.create(&name, spec)?;
            let v = &record.versions[0];
            crate::audit::record_cli(
                signet,
                "key.create",
                &name,
                &format!("spec={spec} version=1"),
            );
            println!("created {name} ({spec}) id {} in the token", v.key_id);
        }
        KeyCommand::List => {
            let records = keys.list()?;
            println!(
                "{:<24} {:<9} {:<32} {:<3} {:<21} STATE",
                "NAME", "SPEC", "ID", "VER", "CREATED"
            );
            for r in records {
                let primary = r.version(r.primary);
                let state = if r.deletion.is_some() {
                    "pending-deletion".to_string()
                } else {
                    primary
                        .map(|v| format!("{:?}", v.state).to_lowercase())
                        .unwrap_or_default()
                };
                println!(
                    "{:<24} {:<9} {:<32} {:<3} {:<21} {}",
                    r.name,
                    r.spec,
                    primary.map(|v| v.key_id.as_str()).unwrap_or("-"),
                    r.primary,
                    format_time(r.created),
                    state
                );
            }
        }
        KeyCommand::Public {
            name,
            format,
            version,
        } => {
            let record = keys.get(&name)?;
            let wanted = version.unwrap_or(record.primary);
            let v = record
                .version(wanted)
                .with_context(|| format!("key {name:?} has no version {wanted}"))?;
            let public = keys.public_key(v)?;
            if format == "jwk" {
                let mut jwk = public.jwk();
                jwk["kid"] = public.jwk_thumbprint().into();
                println!("{}", serde_json::to_string_pretty(&jwk)?);
            } else {
                print!("{}", public.spki_pem());
            }
        }
        KeyCommand::Sign {
            name,
            alg,
            input,
            out,
            digest,
            raw,
            version,
        } => {
            let data = read_input(&input)?;
            let input = if digest {
                SignInput::Digest(&data)
            } else {
                SignInput::Message(&data)
            };
            let format = if raw {
                EcdsaFormat::Raw
            } else {
                EcdsaFormat::Der
            };
            let result = keys.sign(&name, version, alg, input, format);
            let sig = match result {
                Ok(sig) => sig,
                Err(e) => {
                    crate::audit::record_cli(signet, "key.sign", &name, &format!("denied: {e}"));
                    return Err(e.into());
                }
            };
            crate::audit::record_cli(
                signet,
                "key.sign",
                &name,
                &format!(
                    "version={} alg={} input_sha256={}",
                    sig.version,
                    sig.algorithm,
                    crate::audit::sha256_hex(&data)
                ),
            );
            match out {
                Some(path) => std::fs::write(&path, &sig.bytes)?,
                None => println!("{}", STANDARD.encode(&sig.bytes)),
            }
        }
        KeyCommand::Delete { name } => {
            let record = keys.delete_now(&name)?;
            crate::audit::record_cli(
                signet,
                "key.destroy",
                &name,
                &format!("versions={}", record.versions.len()),
            );
            println!(
                "destroyed {name} ({} version(s)) in the token",
                record.versions.len()
            );
        }
    }
    Ok(())
}

fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn ca_command(signet: &Signet, cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init {
            trust_domain,
            server_dns,
            server_ip,
            admin,
            force,
        } => {
            let opts = authority::InitOptions {
                trust_domain,
                server_dns,
                server_ips: server_ip,
                admin,
                force,
            };
            let report = authority::init(signet, &opts)?;
            crate::audit::record_cli(signet, "ca.init", "ca", &format!("force={force}"));
            for line in &report.lines {
                println!("{line}");
            }
            let total: std::time::Duration = report.timings.iter().map(|(_, d)| *d).sum();
            for (step, d) in &report.timings {
                println!("  {step:<38} {:>8.1} ms", d.as_secs_f64() * 1000.0);
            }
            println!("  {:<38} {:>8.1} ms", "total", total.as_secs_f64() * 1000.0);
        }
        CaCommand::Show => {
            let record = authority::record(signet)?;
            println!("trust domain  {}", record.trust_domain);
            println!("created       {}", format_time(record.created));
            for (role, key) in [
                ("root", &record.root),
                ("intermediate", &record.intermediate),
                ("server", &record.server),
            ] {
                let cert = signet
                    .store
                    .cert(&key.serial)?
                    .context("certificate record missing")?;
                let der = STANDARD.decode(&cert.der)?;
                let fingerprint = crate::audit::sha256_hex(&der);
                println!("{role}");
                println!("  subject      {}", cert.subject);
                if !cert.sans.is_empty() {
                    println!("  sans         {}", cert.sans.join(", "));
                }
                println!("  serial       {}", cert.serial);
                println!(
                    "  valid        {} .. {}",
                    format_time(cert.not_before),
                    format_time(cert.not_after)
                );
                println!(
                    "  key          {} in the token, id {}",
                    key.spec, key.key_id
                );
                println!("  sha256       {fingerprint}");
            }
        }
    }
    Ok(())
}

fn cert_command(signet: &Signet, cmd: CertCommand) -> anyhow::Result<()> {
    match cmd {
        CertCommand::Issue {
            profile,
            name,
            csr,
            p12,
            dns,
            ip,
            days,
            out,
        } => {
            let ca = authority::load(signet)?;
            let dns = if profile == Profile::Server && dns.is_empty() && ip.is_empty() {
                vec![name.clone()]
            } else {
                dns
            };
            let req = LeafRequest {
                profile,
                name: name.clone(),
                dns,
                ips: ip,
                ttl: days.map(|d| std::time::Duration::from_secs(d * 24 * 3600)),
            };
            if let Some(csr) = csr {
                let input = read_input(&csr)?;
                let issued = authority::issue_from_csr(signet, &ca, &req, &input, "cli")?;
                crate::audit::record_cli(
                    signet,
                    "cert.issue",
                    &issued.serial,
                    &format!("profile={profile} name={name}"),
                );
                let pem = signet_pki::pem_cert(&issued.der);
                match out {
                    Some(path) => std::fs::write(&path, pem)?,
                    None => std::io::stdout().write_all(pem.as_bytes())?,
                }
                eprintln!(
                    "issued serial {} to {name} ({profile}), valid until {}",
                    issued.serial,
                    format_time(issued.not_after)
                );
            } else if let Some(p12) = p12 {
                let spec = crate::config::spec(&signet.config.ca.client_key_spec);
                let bundle = authority::write_bundle(signet, &ca, &req, spec, Some(&p12))?;
                crate::audit::record_cli(
                    signet,
                    "cert.issue",
                    &bundle.issued.serial,
                    &format!("profile={profile} name={name} bundle"),
                );
                println!(
                    "issued serial {} to {name} ({profile})",
                    bundle.issued.serial
                );
                for line in bundle.paths {
                    println!("{line}");
                }
            } else {
                bail!("give --csr FILE or --p12 OUT");
            }
        }
        CertCommand::List => {
            println!(
                "{:<32} {:<15} {:<8} {:<21} SUBJECT",
                "SERIAL", "PROFILE", "STATUS", "NOT AFTER"
            );
            for c in signet.store.certs()? {
                println!(
                    "{:<32} {:<15} {:<8} {:<21} {}",
                    c.serial,
                    c.profile,
                    format!("{:?}", c.status).to_lowercase(),
                    format_time(c.not_after),
                    c.subject
                );
            }
        }
        CertCommand::Revoke { serial, reason } => {
            let ca = authority::load(signet)?;
            let rec = authority::revoke(signet, &ca, &serial, reason.as_deref())?;
            crate::audit::record_cli(
                signet,
                "cert.revoke",
                &rec.serial,
                reason.as_deref().unwrap_or("unspecified"),
            );
            println!(
                "revoked {} ({}); CRL regenerated at {}",
                rec.serial,
                rec.subject,
                signet.data.ca().join("crl.pem").display()
            );
        }
    }
    Ok(())
}
