//! Remote mode (`--server URL`, or `--remote FILE`): the key commands and `status` against a
//! running Signet, over its mutual-TLS API with a client identity, so an operator needs no data
//! directory. Every call is the API's: authorized by the identity's principal and audited
//! there.

use std::path::PathBuf;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use signet_client::settings::{Credentials, Settings};
use signet_client::{Client, InputType, KeySummary, SignRequest};

use super::{read_input, Cli, Command, KeyCommand};

/// The password file for `secret_file` (a bundle or an encrypted key): --bundle-password-file,
/// else the file's name with `.pass` added (what `signet cert issue --p12` writes).
fn password_for(
    cli: &Cli,
    secret_file: &std::path::Path,
) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let password_file = cli.bundle_password_file.clone().unwrap_or_else(|| {
        let mut name = secret_file.as_os_str().to_owned();
        name.push(".pass");
        PathBuf::from(name)
    });
    super::keys::read_password(&password_file).with_context(|| {
        format!(
            "the password of {} (--bundle-password-file, default {})",
            secret_file.display(),
            password_file.display()
        )
    })
}

fn user_agent() -> String {
    format!("signet-cli/{}", env!("CARGO_PKG_VERSION"))
}

/// The settings `--remote FILE` names, or those `--server`, `--ca` and `--bundle` give.
fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    if let Some(path) = &cli.remote {
        return Ok(Settings::load(path)?);
    }
    let Some(ca) = &cli.ca else {
        bail!("--server needs --ca: the server's CA certificate (Signet's DATA/ca/root.pem)");
    };
    let Some(bundle) = &cli.bundle else {
        bail!("--server needs --bundle: a client bundle (PKCS#12), e.g. the admin's clients/admin.p12");
    };
    Ok(Settings::new(
        cli.server.clone().unwrap_or_default(),
        ca.clone(),
        Credentials::Pkcs12(bundle.clone()),
    ))
}

/// The client the settings describe, its identity opened with the password file's secret
/// where it needs one.
fn client(cli: &Cli, settings: &Settings) -> anyhow::Result<Client> {
    let password = if settings.needs_secret() {
        Some(password_for(cli, settings.secret_file())?)
    } else {
        None
    };
    let identity = settings
        .identity(password.as_deref().map(String::as_str))
        .with_context(|| format!("opening {}", settings.secret_file().display()))?;
    Ok(settings
        .builder()?
        .identity(identity)
        .user_agent(user_agent())
        .build()?)
}

/// Runs a command line in remote mode.
pub(super) fn run(cli: Cli) -> anyhow::Result<()> {
    let client = client(&cli, &settings(&cli)?)?;
    match cli.command {
        Command::Key(cmd) => key(&client, cmd),
        // The server's GET /v1/status document (`status:read`), as JSON with or without
        // --json: the line format is the offline command's.
        Command::Status { .. } => {
            let status: Value = client.get("/v1/status")?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }
        _ => bail!(
            "with --server or --remote, only `key list|create|public|sign` and `status` are available; the other commands work on the data directory (omit --server/--remote)"
        ),
    }
}

fn key(client: &Client, cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::List => {
            let keys = match client.keys() {
                Ok(keys) => keys,
                // Without `keys:read`: the keys this client may use, as the PKCS#11 module
                // shows them (`GET /v1/me/keys`).
                Err(e) if e.status() == Some(403) => {
                    eprintln!("(this client may not read every key: the keys it may use)");
                    client
                        .usable_keys()?
                        .into_iter()
                        .map(|u| KeySummary {
                            state: if u.key.deletion.is_some() {
                                "pending_deletion".into()
                            } else {
                                "active".into()
                            },
                            created: u.key.created.unwrap_or_default(),
                            name: u.key.name,
                            spec: u.key.spec,
                            primary_version: u.key.primary_version,
                        })
                        .collect()
                }
                Err(e) => return Err(e.into()),
            };
            let name_w = keys.iter().map(|k| k.name.len()).max().unwrap_or(0).max(4);
            let spec_w = keys.iter().map(|k| k.spec.len()).max().unwrap_or(0).max(4);
            println!(
                "{:<name_w$} {:<spec_w$} {:<3} {:<20} STATE",
                "NAME", "SPEC", "VER", "CREATED"
            );
            for k in keys {
                println!(
                    "{:<name_w$} {:<spec_w$} {:<3} {:<20} {}",
                    k.name, k.spec, k.primary_version, k.created, k.state
                );
            }
        }
        KeyCommand::Create { name, spec } => {
            let key = client.create_key(&name, &spec.to_string())?;
            let id = key.versions.first().map(|v| v.key_id.as_str()).unwrap_or("-");
            println!("created {name} ({spec}) id {id} in the server's token");
        }
        KeyCommand::Public {
            name,
            format,
            version,
        } => {
            let key = client.key(&name)?;
            let wanted = version.unwrap_or(key.primary_version);
            let Some(v) = key.versions.iter().find(|v| v.version == wanted) else {
                bail!("{name} has no version {wanted}");
            };
            if format == "jwk" {
                let Some(jwk) = &v.jwk else {
                    bail!("{name} version {wanted} has no public key (destroyed)");
                };
                println!("{}", serde_json::to_string_pretty(jwk)?);
            } else {
                let Some(pem) = &v.public_key_pem else {
                    bail!("{name} version {wanted} has no public key (destroyed)");
                };
                print!("{pem}");
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
            context,
        } => {
            let data = read_input(&input)?;
            let signature = client.sign(
                &name,
                &SignRequest {
                    input: &data,
                    input_type: if digest {
                        InputType::Digest
                    } else {
                        InputType::Message
                    },
                    algorithm: alg.map(|a| a.name()),
                    version,
                    der: !raw,
                    context: context.as_deref().map(str::as_bytes),
                },
            )?;
            match out {
                Some(path) => std::fs::write(&path, &signature.bytes)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => println!("{}", STANDARD.encode(&signature.bytes)),
            }
        }
        KeyCommand::Import { .. } | KeyCommand::Attest { .. } | KeyCommand::Delete { .. } => bail!(
            "with --server, only `key list|create|public|sign` are available: `key import` and `key delete` (destroy now) are the operator's, on the data directory; over the API a deletion is scheduled (POST /v1/keys/NAME/schedule-deletion)"
        ),
    }
    Ok(())
}
