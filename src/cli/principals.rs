//! `signet principal …`: the principals and their scopes, offline on the store, as the
//! operator, through the same use-case methods (and audit records) as the API.

use anyhow::bail;

use super::PrincipalCommand;
use crate::service::{
    Caller, DeletePrincipal, ListPrincipals, PutPrincipal, ReadPrincipal, Service,
};
use crate::support::time::format_time;

pub(super) fn run(service: &Service, cmd: PrincipalCommand) -> anyhow::Result<()> {
    let op = Caller::operator();
    match cmd {
        PrincipalCommand::List => {
            for p in service.execute(&op, ListPrincipals).wait()? {
                println!("{:<24} {}", p.name, p.scopes.join(" "));
            }
        }
        PrincipalCommand::Show { name } => {
            let (principal, certs) = service.execute(&op, ReadPrincipal { name }).wait()?;
            println!("name          {}", principal.name);
            println!("scopes        {}", principal.scopes.join(" "));
            println!(
                "created       {} by {}",
                format_time(principal.created),
                principal.created_by
            );
            for c in certs {
                println!(
                    "certificate   {}  {}  until {}",
                    c.serial,
                    c.status.name(),
                    format_time(c.not_after)
                );
            }
        }
        PrincipalCommand::Create { name, scopes } => {
            if service
                .execute(&op, ListPrincipals)
                .wait()?
                .iter()
                .any(|p| p.name == name)
            {
                bail!("a principal named {name} exists: change its scopes with `signet principal grant` or `revoke-scope`");
            }
            let p = service
                .execute(&op, PutPrincipal::new(name, scopes))
                .wait()?;
            println!("created {} with {}", p.name, p.scopes.join(" "));
        }
        PrincipalCommand::Grant { name, scopes } => {
            let (current, _) = service
                .execute(&op, ReadPrincipal { name: name.clone() })
                .wait()?;
            let mut all = current.scopes;
            all.extend(scopes);
            let p = service.execute(&op, PutPrincipal::new(name, all)).wait()?;
            println!("{} now holds {}", p.name, p.scopes.join(" "));
        }
        PrincipalCommand::RevokeScope { name, scopes } => {
            let (current, _) = service
                .execute(&op, ReadPrincipal { name: name.clone() })
                .wait()?;
            let missing: Vec<&String> = scopes
                .iter()
                .filter(|s| !current.scopes.contains(s))
                .collect();
            if !missing.is_empty() {
                bail!(
                    "{name} does not hold {}; it holds {}",
                    missing
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    current.scopes.join(" ")
                );
            }
            let kept = current
                .scopes
                .into_iter()
                .filter(|s| !scopes.contains(s))
                .collect();
            let p = service.execute(&op, PutPrincipal::new(name, kept)).wait()?;
            println!("{} now holds {}", p.name, p.scopes.join(" "));
        }
        PrincipalCommand::Delete { name } => {
            service
                .execute(&op, DeletePrincipal::new(name.clone()))
                .wait()?;
            println!("deleted {name}; its certificates are revoked");
        }
    }
    Ok(())
}
