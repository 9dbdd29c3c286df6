//! The CA, certificates and principals.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use signet_pki::{Issued, LeafRequest, Profile};

use super::{Action, Caller, Service};
use crate::domain::authority::{normalize_serial, Bundle, InitOptions, InitReport};
use crate::domain::principals::{self, Principals};
use crate::error::{Error, Result};
use crate::store::{CaRecord, CertRecord, Outcome, Principal};
use crate::support::text::echo;
use crate::support::time::format_time;

/// A certificate asked for with a CSR.
#[derive(Debug, Clone)]
pub struct CertificateRequest {
    /// The CSR (PEM or DER).
    pub csr: Vec<u8>,
    /// Server or client.
    pub profile: Profile,
    /// Client identity, or the server's name.
    pub name: String,
    /// DNS SANs (server; the name when none are given).
    pub dns: Vec<String>,
    /// IP SANs (server).
    pub ips: Vec<IpAddr>,
    /// Lifetime (the profile's maximum when `None`).
    pub ttl: Option<Duration>,
}

impl CertificateRequest {
    fn leaf(&self) -> LeafRequest {
        let dns = if self.profile == Profile::Server && self.dns.is_empty() && self.ips.is_empty() {
            vec![self.name.clone()]
        } else {
            self.dns.clone()
        };
        LeafRequest {
            profile: self.profile,
            name: self.name.clone(),
            dns,
            ips: self.ips.clone(),
            ttl: self.ttl,
        }
    }
}

/// The CA's certificates as PEM.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Intermediate then root.
    pub pem: String,
}

impl Service {
    /// `ca init`: the chain, the server key and certificate, the first admin and its bundle.
    pub fn init_ca(&self, caller: &Caller, opts: &InitOptions) -> Result<InitReport> {
        self.authorize(caller, Action::CaInit, "ca")?;
        let authority = self.authority();
        authority.check_init(opts)?;
        let mut requested = caller
            .event(Action::CaInit.name(), "ca", Outcome::Requested)
            .with("force", opts.force)
            .with(
                "reason",
                if self.store.ca()?.is_some() {
                    "replace"
                } else {
                    "first start"
                },
            );
        if let Some(import) = &opts.import {
            requested = requested
                .with("origin", "imported")
                .with("root_source_sha256", &import.sources[0])
                .with("intermediate_source_sha256", &import.sources[1]);
        }
        let report = self.change(
            requested,
            || {
                let report = authority.init(opts)?;
                Principals(self.store.as_ref()).put(
                    &report.admin,
                    vec![principals::ADMIN.into()],
                    "ca init",
                    true,
                )?;
                Ok(report)
            },
            |r, e| {
                e.with("root_serial", &r.root_serial)
                    .with("admin", &r.admin)
            },
        )?;
        *self.ca.write().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(report)
    }

    /// The CA record (for `ca show`).
    pub fn ca_record(&self, caller: &Caller) -> Result<CaRecord> {
        self.authorize(caller, Action::CaShow, "ca")?;
        self.authority().record()
    }

    /// The chain clients append to a leaf.
    pub fn ca_chain(&self, caller: &Caller) -> Result<Chain> {
        self.authorize(caller, Action::CaChain, "ca")?;
        Ok(Chain {
            pem: self.ca()?.chain_pem(),
        })
    }

    /// The current CRL (DER), regenerated when half its validity has passed.
    pub fn crl(&self, caller: &Caller) -> Result<Vec<u8>> {
        self.authorize(caller, Action::CaCrl, "crl")?;
        self.authority().current_crl(&*self.ca()?)
    }

    /// Issues a certificate from a CSR. A client certificate is only for an existing principal.
    pub fn issue_certificate(&self, caller: &Caller, req: &CertificateRequest) -> Result<Issued> {
        self.authorize(caller, Action::CertIssue, &req.name)?;
        if req.profile == Profile::Client && self.store.principal(&req.name)?.is_none() {
            return Err(Error::BadRequest(format!(
                "no principal named {:?}: create it (POST /v1/principals) before issuing its client certificate",
                echo(&req.name)
            )));
        }
        let ca = self.ca()?;
        let leaf = req.leaf();
        let requested = caller
            .event(Action::CertIssue.name(), &req.name, Outcome::Requested)
            .with("profile", req.profile);
        let issued_to = caller.audit_name();
        self.change(
            requested,
            || {
                self.authority()
                    .issue_from_csr(&ca, &leaf, &req.csr, &issued_to)
            },
            |i, e| {
                e.with("serial", &i.serial)
                    .with("not_after", format_time(i.not_after))
            },
        )
    }

    /// Issues a certificate for a key generated here and writes it as a PKCS#12 bundle.
    pub fn issue_bundle(
        &self,
        caller: &Caller,
        req: &CertificateRequest,
        p12: &Path,
    ) -> Result<Bundle> {
        self.authorize(caller, Action::CertIssueBundle, &req.name)?;
        let ca = self.ca()?;
        let leaf = req.leaf();
        let requested = caller
            .event(
                Action::CertIssueBundle.name(),
                &req.name,
                Outcome::Requested,
            )
            .with("profile", req.profile)
            .with("bundle", "pkcs12");
        self.change(
            requested,
            || {
                self.authority()
                    .write_bundle(&ca, &leaf, self.config.ca.client_key_spec, Some(p12))
            },
            |b, e| e.with("serial", &b.issued.serial),
        )
    }

    /// One certificate.
    pub fn certificate(&self, caller: &Caller, serial: &str) -> Result<CertRecord> {
        self.authorize(caller, Action::CertRead, serial)?;
        let serial = normalize_serial(serial);
        self.store
            .cert(&serial)?
            .ok_or_else(|| Error::NotFound(format!("no certificate with serial {}", echo(&serial))))
    }

    /// Every certificate.
    pub fn certificates(&self, caller: &Caller) -> Result<Vec<CertRecord>> {
        self.authorize(caller, Action::CertList, "*")?;
        self.store.certs()
    }

    /// Revokes a certificate and regenerates the CRL; the TLS layer refuses it at once.
    pub fn revoke_certificate(
        &self,
        caller: &Caller,
        serial: &str,
        reason: Option<&str>,
    ) -> Result<CertRecord> {
        self.authorize(caller, Action::CertRevoke, serial)?;
        let serial = normalize_serial(serial);
        let authority = self.authority();
        let record = authority.check_revoke(&serial, reason)?;
        self.refuse_lockout(&record)?;
        let ca = self.ca()?;
        let requested = caller
            .event(Action::CertRevoke.name(), &serial, Outcome::Requested)
            .with("reason", reason.unwrap_or("unspecified"));
        let record = self.change(
            requested,
            || authority.revoke(&ca, &serial, reason),
            |_, e| e,
        )?;
        self.audit.record(vec![caller
            .event("crl.generate", "crl", Outcome::Ok)
            .with("trigger", "revocation")])?;
        Ok(record)
    }

    /// Refuses a revocation that would lock everyone out: the server's own TLS certificate,
    /// or the last usable client certificate of the last admin.
    fn refuse_lockout(&self, record: &CertRecord) -> Result<()> {
        use crate::store::{CertKind, CertStatus};
        let ca = self.authority().record()?;
        if record.serial == ca.server.serial {
            return Err(Error::Conflict(format!(
                "{} is this server's own TLS certificate: revoked, no client could trust the server any more. It is replaced by `signet ca init --force` (a new CA)",
                record.serial
            )));
        }
        if record.profile != CertKind::Client {
            return Ok(());
        }
        let prefix = format!("URI:spiffe://{}/", ca.trust_domain);
        let holder = |c: &CertRecord| {
            c.sans
                .iter()
                .find_map(|s| s.strip_prefix(&prefix).map(str::to_string))
        };
        let is_admin = |name: &str| -> Result<bool> {
            Ok(self
                .store
                .principal(name)?
                .is_some_and(|p| p.scopes.iter().any(|s| s == principals::ADMIN)))
        };
        let Some(name) = holder(record) else {
            return Ok(());
        };
        if !is_admin(&name)? {
            return Ok(());
        }
        let now = crate::support::time::now();
        for other in self.store.certs()? {
            if other.serial == record.serial
                || other.profile != CertKind::Client
                || other.status != CertStatus::Active
                || other.not_after <= now
            {
                continue;
            }
            if let Some(other_name) = holder(&other) {
                if is_admin(&other_name)? {
                    return Ok(());
                }
            }
        }
        Err(Error::Conflict(format!(
            "{} is the last valid certificate of an admin: revoked, no one could administer Signet over the API. Enrol another admin first (or, on the server host, issue a new bundle with `signet cert issue --profile client --name {name} --p12 FILE`)",
            record.serial
        )))
    }

    /// Every principal.
    pub fn principals(&self, caller: &Caller) -> Result<Vec<Principal>> {
        self.authorize(caller, Action::PrincipalList, "*")?;
        Principals(self.store.as_ref()).list()
    }

    /// Creates or replaces a principal. Only an admin may grant admin.
    pub fn create_principal(
        &self,
        caller: &Caller,
        name: &str,
        scopes: Vec<String>,
    ) -> Result<Principal> {
        self.authorize(caller, Action::PrincipalCreate, name)?;
        principals::check_name(name)?;
        let scopes = principals::check_scopes(scopes)?;
        if scopes.iter().any(|s| s == principals::ADMIN) && !caller.is_admin() {
            let reason = format!(
                "{} lacks the scope admin, which granting admin needs",
                echo(&caller.audit_name())
            );
            self.deny(caller, Action::PrincipalCreate, name, reason)?;
        }
        let requested = caller
            .event(Action::PrincipalCreate.name(), name, Outcome::Requested)
            .with("scopes", scopes.join(" "));
        let by = caller.audit_name();
        self.change(
            requested,
            || Principals(self.store.as_ref()).put(name, scopes.clone(), &by, caller.is_admin()),
            |_, e| e,
        )
    }

    /// Deletes a principal; its certificates lose every right at once. A principal cannot
    /// delete itself.
    pub fn delete_principal(&self, caller: &Caller, name: &str) -> Result<()> {
        self.authorize(caller, Action::PrincipalDelete, name)?;
        if caller.client_name() == Some(name) {
            return Err(Error::Conflict("a principal cannot delete itself".into()));
        }
        if self.store.principal(name)?.is_none() {
            return Err(Error::NotFound(format!(
                "no principal named {:?}",
                echo(name)
            )));
        }
        let requested = caller.event(Action::PrincipalDelete.name(), name, Outcome::Requested);
        self.change(
            requested,
            || Principals(self.store.as_ref()).remove(name, caller.client_name()),
            |_, e| e,
        )
    }
}
