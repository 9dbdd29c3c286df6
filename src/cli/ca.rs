//! `signet ca …` and `signet cert …`.

use std::io::Write;

use anyhow::{bail, Context};

use super::{read_input, CaCommand, CaOptions, CertCommand};
use crate::domain::audit::sha256_hex;
use crate::domain::authority::{CaImport, InitOptions, InitReport};
use crate::service::{
    Caller, CertificateRequest, IssueBundle, IssueCertificate, ListCertificates, ReadCa,
    ReadCertificate, RevokeCertificate, Service,
};
use crate::support::time::format_time;

impl CaOptions {
    /// The init options, making new CA keys (`import: None`) or taking over `import`.
    fn init(self, import: Option<std::sync::Arc<CaImport>>) -> InitOptions {
        InitOptions {
            trust_domain: self.trust_domain,
            server_dns: self.server_dns,
            server_ips: self.server_ip,
            admin: self.admin,
            force: self.force,
            root_spec: None,
            intermediate_spec: None,
            import,
        }
    }
}

pub(super) fn run_ca(service: &Service, cmd: CaCommand) -> anyhow::Result<()> {
    let op = Caller::operator();
    match cmd {
        CaCommand::Init {
            root_spec,
            intermediate_spec,
            options,
        } => {
            let opts = InitOptions {
                root_spec,
                intermediate_spec,
                ..options.init(None)
            };
            let spinner =
                super::progress::Spinner::start("generating the CA, server and admin keys");
            let report = service.init_ca(&op, &opts);
            drop(spinner);
            print_report(&report?);
        }
        CaCommand::Import {
            root_p12,
            intermediate_p12,
            password_file,
            root_password_file,
            options,
        } => {
            let password = super::keys::read_password(&password_file)?;
            let root_password = match &root_password_file {
                Some(f) => super::keys::read_password(f)?,
                None => password.clone(),
            };
            let read = |path: &std::path::Path, password: &str, what: &str| {
                let data =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let imported = signet_pki::pkcs12::read(&data, password)
                    .with_context(|| format!("the {what} file {}", path.display()))?;
                anyhow::Ok((imported, sha256_hex(&data)))
            };
            let (root, root_sha) = read(&root_p12, &root_password, "root")?;
            let (intermediate, int_sha) = read(&intermediate_p12, &password, "intermediate")?;
            let opts = options.init(Some(std::sync::Arc::new(CaImport {
                root,
                intermediate,
                sources: [root_sha, int_sha],
            })));
            let spinner =
                super::progress::Spinner::start("importing the CA keys, making the server's");
            let report = service.init_ca(&op, &opts);
            drop(spinner);
            print_report(&report?);
            println!(
                "the software copies are still in {} and {}: keep them offline or delete them",
                root_p12.display(),
                intermediate_p12.display()
            );
        }
        CaCommand::Rotate { intermediate } => {
            for line in service.rotate_ca(&op, intermediate)? {
                println!("{line}");
            }
            println!("running nodes pick this up within seconds, without a restart");
        }
        CaCommand::Show => {
            let record = service.execute(&op, ReadCa).wait()?;
            println!("trust domain  {}", record.trust_domain);
            println!("created       {}", format_time(record.created));
            for (role, key) in [
                ("root", &record.root),
                ("intermediate", &record.intermediate),
                ("server", &record.server),
            ] {
                let cert = service
                    .execute(
                        &op,
                        ReadCertificate {
                            serial: key.serial.clone(),
                        },
                    )
                    .wait()?;
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
                    "  key          {} in the token, id {}, {}",
                    key.spec,
                    key.key_id,
                    match key.origin {
                        crate::store::KeyOrigin::Generated => "generated there",
                        crate::store::KeyOrigin::Imported => "imported",
                    }
                );
                println!("  sha256       {}", sha256_hex(&cert.der));
            }
        }
    }
    Ok(())
}

pub(super) fn run_cert(service: &Service, cmd: CertCommand) -> anyhow::Result<()> {
    let op = Caller::operator();
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
            let mut req = CertificateRequest {
                csr: Vec::new(),
                profile,
                name: name.clone(),
                dns,
                ips: ip,
                ttl: days.map(|d| std::time::Duration::from_secs(d * 24 * 3600)),
            };
            if let Some(csr) = csr {
                req.csr = read_input(&csr)?;
                let issued = service.execute(&op, IssueCertificate(req)).wait()?.issued;
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
                let bundle = service
                    .execute(&op, IssueBundle { request: req, p12 })
                    .wait()?;
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
            for c in service.execute(&op, ListCertificates).wait()? {
                println!(
                    "{:<32} {:<15} {:<8} {:<21} {}",
                    c.serial,
                    c.profile.name(),
                    c.status.name(),
                    format_time(c.not_after),
                    c.subject
                );
            }
        }
        CertCommand::Revoke { serial, reason } => {
            let rec = service
                .execute(&op, RevokeCertificate::new(serial, reason))
                .wait()?;
            println!(
                "revoked {} ({}); CRL regenerated at {}",
                rec.serial,
                rec.subject,
                service.paths().ca().join("crl.pem").display()
            );
        }
    }
    Ok(())
}

fn print_report(report: &InitReport) {
    for line in &report.lines {
        println!("{line}");
    }
    let total: std::time::Duration = report.timings.iter().map(|(_, d)| *d).sum();
    for (step, d) in &report.timings {
        println!("  {step:<38} {:>8.1} ms", d.as_secs_f64() * 1000.0);
    }
    println!("  {:<38} {:>8.1} ms", "total", total.as_secs_f64() * 1000.0);
}
