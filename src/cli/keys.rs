//! `signet key …` and `signet token verify`.

use std::path::Path;

use anyhow::{bail, Context};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use signet_hsm::EcdsaFormat;

use super::{read_input, KeyCommand};
use crate::config::Config;
use crate::domain::keys::KeyName;
use crate::domain::tokens::{jwk, jwt};
use crate::service::{
    AttestKey, Caller, CreateKey, DestroyKey, ImportKey, ListKeys, ReadPublicKey, Service, Sign,
    SignItem,
};
use crate::support::time::{format_time, now};

pub(super) fn run(service: &Service, cmd: KeyCommand) -> anyhow::Result<()> {
    let op = Caller::operator();
    match cmd {
        KeyCommand::Create { name, spec } => {
            let spinner = super::progress::Spinner::start(format!(
                "generating {spec} key {name} in the token"
            ));
            let detail = service
                .execute(
                    &op,
                    CreateKey {
                        name: KeyName::parse(&name)?,
                        spec,
                    },
                )
                .wait();
            drop(spinner);
            let detail = detail?;
            let v = &detail.record.versions[0];
            println!("created {name} ({spec}) id {} in the token", v.key_id);
        }
        KeyCommand::Import {
            name,
            p12,
            password_file,
        } => {
            let data = std::fs::read(&p12).with_context(|| format!("reading {}", p12.display()))?;
            let password = read_password(&password_file)?;
            let detail = service
                .execute(&op, ImportKey::new(KeyName::parse(&name)?, data, password))
                .wait()?;
            let v = &detail.record.versions[0];
            println!(
                "imported {name} ({}) id {} into the token: sensitive, non-extractable, origin imported",
                detail.record.spec, v.key_id
            );
            println!(
                "the software copy is still in {}: delete it once you no longer need it",
                p12.display()
            );
        }
        KeyCommand::List => {
            let keys = service.execute(&op, ListKeys).wait()?;
            // Columns as wide as their longest value, so long names keep the table aligned.
            let name_w = keys.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
            let spec_w = keys
                .iter()
                .map(|r| r.spec.to_string().len())
                .max()
                .unwrap_or(0)
                .max(4);
            println!(
                "{:<name_w$} {:<spec_w$} {:<32} {:<3} {:<20} STATE",
                "NAME", "SPEC", "ID", "VER", "CREATED"
            );
            for r in keys {
                let primary = r.version(r.primary);
                let state = if r.deletion.is_some() {
                    "pending-deletion"
                } else {
                    primary.map(|v| v.state.name()).unwrap_or_default()
                };
                println!(
                    "{:<name_w$} {:<spec_w$} {:<32} {:<3} {:<20} {}",
                    r.name,
                    r.spec.to_string(),
                    primary
                        .map(|v| v.key_id.to_hex())
                        .unwrap_or_else(|| "-".into()),
                    r.primary,
                    format_time(r.created),
                    state
                );
            }
        }
        KeyCommand::Attest { name, version } => {
            let a = service
                .execute(
                    &op,
                    AttestKey {
                        name: name.clone(),
                        version,
                    },
                )
                .wait()?;
            let view = crate::api::model::AttestationView::from(&a);
            print!("{}", view.chain_pem);
            let o = &a.origin;
            let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
            eprintln!(
                "key {} version {}: generated on the device, serial {}, firmware {}, PIN policy {}, touch policy {}; {}",
                a.name,
                a.version,
                o.serial.map_or("unknown".into(), |s| s.to_string()),
                or_unknown(&o.firmware),
                or_unknown(&o.pin_policy),
                or_unknown(&o.touch_policy),
                match &o.verified_by {
                    Some(root) => format!("chain verified against {root}"),
                    None => "no attestation root configured: the device's word alone".into(),
                }
            );
        }
        KeyCommand::Public {
            name,
            format,
            version,
        } => {
            let public = service
                .execute(
                    &op,
                    ReadPublicKey {
                        name: name.clone(),
                        version,
                    },
                )
                .wait()?;
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
            context,
        } => {
            let item = SignItem {
                context: context.map(String::into_bytes),
                input: read_input(&input)?,
                digest,
                algorithm: alg,
                version,
                format: if raw {
                    EcdsaFormat::Raw
                } else {
                    EcdsaFormat::Der
                },
            };
            let sig = service
                .execute(
                    &op,
                    Sign {
                        name: name.clone(),
                        item,
                    },
                )
                .wait()?;
            match out {
                Some(path) => std::fs::write(&path, &sig.bytes)?,
                None => println!("{}", STANDARD.encode(&sig.bytes)),
            }
        }
        KeyCommand::Delete { name } => {
            let record = service
                .execute(
                    &op,
                    DestroyKey {
                        name: name.clone(),
                        forget: true,
                        trigger: "operator".into(),
                    },
                )
                .wait()?;
            println!(
                "destroyed {name} ({} version(s)) in the token",
                record.versions.len()
            );
        }
    }
    Ok(())
}

/// `signet token verify`: offline check against a JWKS file or the data dir's token key.
pub(super) fn verify_token(
    config: Config,
    token: &str,
    jwks_file: Option<&Path>,
    audience: Option<&str>,
) -> anyhow::Result<()> {
    // Parsed once; a token that does not parse is reported after the keys are read, as before.
    let parsed = jwt::parse(token);
    let (jwks, issuer) = match jwks_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            (
                serde_json::from_str::<Value>(&text).context("the JWKS is not JSON")?,
                None,
            )
        }
        None => {
            // The issuer when one is configured; else the server's default comes from the
            // address it listened on, which this command cannot know: the token's own `iss`
            // (its signature is still checked against this deployment's keys).
            let configured = config.server.public_url.is_some() || !config.tokens.issuer.is_empty();
            let mut config = config;
            config.resolve();
            let issuer = configured.then(|| config.tokens.issuer.clone());
            let jti = parsed
                .as_ref()
                .map(|p| p.claims.jti.clone())
                .unwrap_or_default();
            let (jwks, revoked) = super::with_service(config, |s| {
                let op = Caller::operator();
                let jwks = s.execute(&op, crate::service::ReadJwks).wait()?.0;
                let revoked = s
                    .execute(&op, crate::service::TokenRevoked { jti })
                    .wait()?;
                Ok((jwks, revoked))
            })?;
            if revoked {
                bail!("invalid token: it has been revoked");
            }
            (jwks, issuer)
        }
    };
    let keys = jwk::keys_from_jwks(&jwks)?;
    let parsed = parsed.map_err(|e| anyhow::anyhow!("invalid token: {e}"))?;
    let issuer = issuer.unwrap_or_else(|| parsed.claims.iss.clone());
    match jwt::check(&parsed, &keys, &issuer, audience, now()) {
        Ok((kid, claims)) => {
            if jwks_file.is_some() {
                println!(
                    "valid token (kid {kid}); revocation not checked: a JWKS file cannot say (verify on the data directory, or POST /v1/tokens/introspect)"
                );
            } else {
                println!("valid token (kid {kid}), not revoked");
            }
            println!("{}", serde_json::to_string_pretty(&claims)?);
            Ok(())
        }
        Err(e) => bail!("invalid token: {e}"),
    }
}

/// A password from a file: its first line, without the line ending, in a zeroizing string.
pub(super) fn read_password(path: &Path) -> anyhow::Result<zeroize::Zeroizing<String>> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("");
    Ok(zeroize::Zeroizing::new(line.to_string()))
}
