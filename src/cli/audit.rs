//! `signet audit …`: verification of the stored log (against its anchor in the token) or of an
//! exported copy (offline, with the audit public key), and export.

use anyhow::{bail, Context};

use super::AuditCommand;
use crate::config::Config;
use crate::domain::audit::{log_lines, verify_chain, Break, VerifyReport};
use crate::service::{Caller, ExportAudit, OpenMode, ReplayRevocations, Service};

pub(super) fn run(config: Config, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            file: Some(file),
            public_key,
        } => {
            let pem_path = public_key.context("--public-key is required with --file")?;
            let pem = pem::parse(
                std::fs::read(&pem_path)
                    .with_context(|| format!("reading {}", pem_path.display()))?,
            )?;
            let records =
                log_lines(&file).with_context(|| format!("reading {}", file.display()))?;
            let verified = verify_chain(records, pem.contents(), None);
            if let Ok(seen) = &verified {
                // Records after the last checkpoint (or none at all): the copy was cut short.
                if seen.unsigned_tail > 0 || seen.records == 0 {
                    bail!(
                        "audit log broken at seq {}: an export must end with a checkpoint (truncated?)",
                        seen.last_seq + 1
                    );
                }
            }
            report(verified)
        }
        AuditCommand::Verify { file: None, .. } => {
            // Read only: nothing is appended, checkpointed or anchored, whatever is found.
            let service = Service::open_with(config, OpenMode::ReadOnly)?;
            let verification = service.verify_audit()?;
            if let Some(anchor) = &verification.anchor {
                println!("anchor: checkpoint {} kept in the token", anchor.seq);
            }
            report(verification.result)
        }
        AuditCommand::Reanchor => {
            let service = Service::open_with(config, OpenMode::Reanchor)?;
            let result = service.reanchor_audit(&Caller::operator());
            let orphans = service.orphaned_keys();
            service.close();
            match result? {
                Some(gap) => {
                    println!("re-anchored: {gap}; the loss is recorded in the log (audit.reanchor) before the new checkpoint");
                    println!("CRL numbers continue above the current time in seconds, so none issued before is issued again");
                    for key in orphans.unwrap_or_default() {
                        println!(
                            "in the token but unknown to the store: {} ({}, id {}); destroy it if nothing needs it",
                            key.label, key.spec, key.id
                        );
                    }
                    println!("revocations made after the backup are lost with it: re-apply them from an export with `signet audit replay-revocations --file EXPORT --public-key EXPORT.pub.pem`");
                }
                None => println!("the log holds its anchored checkpoint; nothing to do"),
            }
            Ok(())
        }
        AuditCommand::ReplayRevocations { file, public_key } => {
            let pem = pem::parse(
                std::fs::read(&public_key)
                    .with_context(|| format!("reading {}", public_key.display()))?,
            )?;
            let (certs, tokens) = super::with_service(config, |s| {
                let replay = ReplayRevocations::new(file.clone(), pem.contents().to_vec());
                Ok(s.execute(&Caller::operator(), replay).wait()?)
            })?;
            println!(
                "re-applied {certs} certificate revocation(s) (CRL regenerated) and {tokens} token revocation(s) from {}",
                file.display()
            );
            Ok(())
        }
        AuditCommand::Export { out } => {
            let service = Service::open_with(config, OpenMode::ReadOnly)?;
            let export = service
                .execute(&Caller::operator(), ExportAudit { out: out.clone() })
                .wait()?;
            println!(
                "exported {} records to {}, through checkpoint seq {} (audit public key: {})",
                export.records,
                out.display(),
                export.through,
                export.public_key.display()
            );
            if export.left_out > 0 {
                println!(
                    "{} later record(s) are not yet covered by a checkpoint and were left out; export again after the next checkpoint",
                    export.left_out
                );
            }
            Ok(())
        }
    }
}

fn report(result: Result<VerifyReport, Break>) -> anyhow::Result<()> {
    match result {
        Ok(r) => {
            println!(
                "audit log OK: {} records, {} checkpoint signatures verified, last seq {}, {} record(s) after the last checkpoint",
                r.records, r.checkpoints, r.last_seq, r.unsigned_tail
            );
            Ok(())
        }
        Err(b) => bail!("audit log broken at seq {}: {}", b.seq, b.reason),
    }
}
