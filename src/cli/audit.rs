//! `signet audit …`: verification of the stored log (against its anchor in the token) or of an
//! exported copy (offline, with the audit public key), and export.

use anyhow::{bail, Context};

use super::AuditCommand;
use crate::config::Config;
use crate::domain::audit::{log_lines, verify_chain, Break, VerifyReport};
use crate::service::{Caller, OpenMode, Service};

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
            // Read only: no checkpoint on the way out.
            let service = Service::open_with(config, OpenMode::Inspect)?;
            let verification = service.verify_audit();
            service.audit().close();
            let verification = verification?;
            if let Some(anchor) = &verification.anchor {
                println!("anchor: checkpoint {} kept in the token", anchor.seq);
            }
            report(verification.result)
        }
        AuditCommand::Reanchor => {
            let service = Service::open_with(config, OpenMode::Inspect)?;
            let result = service.reanchor_audit(&Caller::operator());
            service.close();
            match result? {
                Some(gap) => println!("re-anchored: {gap}; the gap is recorded in the log"),
                None => println!("the log holds its anchored checkpoint; nothing to do"),
            }
            Ok(())
        }
        AuditCommand::Export { out } => {
            let pem_path =
                super::with_service(config, |s| Ok(s.export_audit(&Caller::operator(), &out)?))?;
            println!(
                "exported to {} (audit public key: {})",
                out.display(),
                pem_path.display()
            );
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
