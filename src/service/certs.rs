//! The CA, certificates and principals.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use signet_pki::{Issued, LeafRequest, Profile};

use super::{Action, Caller, Service};
use crate::domain::authority::{normalize_serial, Bundle, InitOptions, InitReport};
use crate::domain::principals::{self, Principals};
use crate::domain::rights;
use crate::error::{Error, Result};
use crate::store::{CaRecord, CertKind, CertRecord, CertStatus, Outcome, Principal};
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
    /// Nodes and processes sharing a database take turns (the bootstrap lock `serve` takes):
    /// of two at once, one makes the CA and the other finds it and changes nothing.
    pub fn init_ca(&self, caller: &Caller, opts: &InitOptions) -> Result<InitReport> {
        crate::store::serialized(
            self.store.as_ref(),
            "bootstrap",
            super::open::BOOTSTRAP_PATIENCE,
            || self.init_ca_locked(caller, opts),
        )?
    }

    /// [`Service::init_ca`] once the bootstrap lock is held.
    pub(super) fn init_ca_locked(&self, caller: &Caller, opts: &InitOptions) -> Result<InitReport> {
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

    /// The chain clients append to a leaf: every intermediate still trusted (the current one
    /// first; after a rotation the previous one too, until it expires), then the root.
    pub fn ca_chain(&self, caller: &Caller) -> Result<Chain> {
        self.authorize(caller, Action::CaChain, "ca")?;
        let ca = self.ca()?;
        let mut pem = String::new();
        for der in self.authority().intermediates()? {
            pem.push_str(&signet_pki::pem_cert(&der));
        }
        pem.push_str(&signet_pki::pem_cert(ca.root_der()));
        Ok(Chain { pem })
    }

    /// Writes the CA's public certificates (root, intermediates, chain) under this node's
    /// data directory when they are missing or stale (another node made or rotated the CA).
    pub fn write_public_ca_files(&self) -> Result<()> {
        let ca = self.ca()?;
        let dir = self.paths().ca();
        std::fs::create_dir_all(&dir)?;
        let mut chain = String::new();
        for der in self.authority().intermediates()? {
            chain.push_str(&signet_pki::pem_cert(&der));
        }
        chain.push_str(&signet_pki::pem_cert(ca.root_der()));
        for (name, text) in [
            ("root.pem", signet_pki::pem_cert(ca.root_der())),
            (
                "intermediate.pem",
                signet_pki::pem_cert(ca.intermediate_der()),
            ),
            ("chain.pem", chain),
        ] {
            let path = dir.join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                crate::support::files::write_public(&path, text.as_bytes())?;
            }
        }
        Ok(())
    }

    /// `ca rotate`: a new server key and certificate, and with `intermediate` a new
    /// intermediate first; running nodes pick it up within seconds, without a restart.
    pub fn rotate_ca(&self, caller: &Caller, intermediate: bool) -> Result<Vec<String>> {
        crate::store::serialized(
            self.store.as_ref(),
            "bootstrap",
            super::open::BOOTSTRAP_PATIENCE,
            || {
                self.authorize(caller, Action::CaRotate, "ca")?;
                let requested = caller
                    .event(Action::CaRotate.name(), "ca", Outcome::Requested)
                    .with("intermediate", intermediate);
                let lines = self.change(
                    requested,
                    || self.authority().rotate(intermediate),
                    |_, e| e,
                )?;
                self.forget_ca();
                let record = self.authority().record()?;
                self.audit.record(vec![caller
                    .event("ca.rotated", "ca", Outcome::Ok)
                    .with("intermediate_serial", &record.intermediate.serial)
                    .with("server_serial", &record.server.serial)
                    .with("generation", record.generation)])?;
                Ok(lines)
            },
        )?
    }

    /// The current CRL (DER), regenerated when half its validity has passed.
    pub fn crl(&self, caller: &Caller) -> Result<Vec<u8>> {
        self.authorize(caller, Action::CaCrl, "crl")?;
        self.authority().current_crl(&*self.ca()?)
    }

    /// Issues a certificate from a CSR. A client certificate is only for an existing principal
    /// whose every scope the caller holds; a server certificate for a name the service answers
    /// on is for admin only.
    pub fn issue_certificate(&self, caller: &Caller, req: &CertificateRequest) -> Result<Issued> {
        self.authorize(caller, Action::CertIssue, &req.name)?;
        self.check_issue_rights(caller, Action::CertIssue, req)?;
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

    /// The cross-principal rules of issuing `req` (see [`rights`]): refused and audited.
    fn check_issue_rights(
        &self,
        caller: &Caller,
        action: Action,
        req: &CertificateRequest,
    ) -> Result<()> {
        let refused = match req.profile {
            Profile::Client => {
                let Some(principal) = self.store.principal(&req.name)? else {
                    return Err(Error::BadRequest(format!(
                        "no principal named {:?}: create it first (signet principal create, or the principals API) before issuing its client certificate",
                        echo(&req.name)
                    )));
                };
                rights::may_issue_client_certificate(caller.actor(), &principal).err()
            }
            Profile::Server => {
                let leaf = req.leaf();
                rights::may_issue_server_certificate(
                    caller.actor(),
                    &leaf.dns,
                    &leaf.ips,
                    &self.own_server_names()?,
                )
                .err()
            }
        };
        match refused {
            Some(reason) => self.deny(caller, action, &req.name, reason),
            None => Ok(()),
        }
    }

    /// The names this service answers on: its own TLS certificate's SANs.
    fn own_server_names(&self) -> Result<Vec<String>> {
        let Some(ca) = self.store.ca()? else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .cert(&ca.server.serial)?
            .map(|c| c.sans)
            .unwrap_or_default())
    }

    /// Issues a certificate for a key generated here and writes it as a PKCS#12 bundle.
    pub fn issue_bundle(
        &self,
        caller: &Caller,
        req: &CertificateRequest,
        p12: &Path,
    ) -> Result<Bundle> {
        self.authorize(caller, Action::CertIssueBundle, &req.name)?;
        self.check_issue_rights(caller, Action::CertIssueBundle, req)?;
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
        self.refuse_lockout(caller, &record)?;
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

    /// Refuses (409, audited) a revocation that would lock everyone out: the server's own
    /// TLS certificate, or what leaves no usable admin (see [`rights::usable_admins`]).
    fn refuse_lockout(&self, caller: &Caller, record: &CertRecord) -> Result<()> {
        let ca = self.authority().record()?;
        if record.serial == ca.server.serial {
            return Err(Error::Conflict(format!(
                "{} is this server's own TLS certificate: revoked, no client could trust the server any more. It is replaced by `signet ca init --force` (a new CA)",
                record.serial
            )));
        }
        let mut after = self.store.certs()?;
        for cert in after.iter_mut().filter(|c| c.serial == record.serial) {
            cert.status = CertStatus::Revoked;
        }
        self.keep_an_admin(
            caller,
            Action::CertRevoke,
            &record.serial,
            &format!("revoking {}", record.serial),
            self.store.principals()?,
            after,
        )
    }

    /// Refuses (409, audited) a change after which the principals and certificates `after`
    /// would leave no usable admin where there is one now.
    fn keep_an_admin(
        &self,
        caller: &Caller,
        action: Action,
        target: &str,
        change: &str,
        principals_after: Vec<Principal>,
        certs_after: Vec<CertRecord>,
    ) -> Result<()> {
        let trust_domain = self.authority().record()?.trust_domain;
        let now = crate::support::time::now();
        let before = rights::usable_admins(
            &self.store.principals()?,
            &self.store.certs()?,
            &trust_domain,
            now,
        );
        let after = rights::usable_admins(&principals_after, &certs_after, &trust_domain, now);
        match rights::keeps_an_admin(&before, &after, change) {
            Ok(()) => Ok(()),
            Err(reason) => self.refuse_conflict(caller, action, target, reason),
        }
    }

    /// Every principal.
    pub fn principals(&self, caller: &Caller) -> Result<Vec<Principal>> {
        self.authorize(caller, Action::PrincipalList, "*")?;
        Principals(self.store.as_ref()).list()
    }

    /// One principal and the client certificates that name it.
    pub fn principal(&self, caller: &Caller, name: &str) -> Result<(Principal, Vec<CertRecord>)> {
        self.authorize(caller, Action::PrincipalList, name)?;
        let principal = self
            .store
            .principal(name)?
            .ok_or_else(|| Error::NotFound(format!("no principal named {:?}", echo(name))))?;
        let certs = match self.store.ca()? {
            Some(ca) => self
                .store
                .certs()?
                .into_iter()
                .filter(|c| {
                    c.profile == CertKind::Client
                        && rights::certificate_holder(c, &ca.trust_domain).as_deref() == Some(name)
                })
                .collect(),
            None => Vec::new(),
        };
        Ok((principal, certs))
    }

    /// Creates or replaces a principal. The caller must hold every scope it grants and every
    /// scope the principal holds now, may not change its own, and may not leave the service
    /// without a usable admin.
    pub fn create_principal(
        &self,
        caller: &Caller,
        name: &str,
        scopes: Vec<String>,
    ) -> Result<Principal> {
        self.authorize(caller, Action::PrincipalCreate, name)?;
        principals::check_name(name)?;
        let scopes = principals::check_scopes(scopes)?;
        let current = self.store.principal(name)?;
        if let Err(reason) =
            rights::may_put_principal(caller.actor(), name, current.as_ref(), &scopes)
        {
            self.deny(caller, Action::PrincipalCreate, name, reason)?;
        }
        if current.is_some() && self.store.ca()?.is_some() {
            let mut after = self.store.principals()?;
            for p in after.iter_mut().filter(|p| p.name == name) {
                p.scopes = scopes.clone();
            }
            self.keep_an_admin(
                caller,
                Action::PrincipalCreate,
                name,
                &format!("changing the scopes of {}", echo(name)),
                after,
                self.store.certs()?,
            )?;
        }
        let requested = caller
            .event(Action::PrincipalCreate.name(), name, Outcome::Requested)
            .with("scopes", scopes.join(" "))
            .with(
                "previous_scopes",
                current.as_ref().map_or("-".into(), |p| p.scopes.join(" ")),
            );
        let by = caller.audit_name();
        self.change(
            requested,
            || Principals(self.store.as_ref()).put(name, scopes.clone(), &by),
            |_, e| e,
        )
    }

    /// Deletes a principal and revokes its certificates (recorded, and in the CRL at once),
    /// so re-creating the name later revives nothing. Refused for oneself, without every scope
    /// the principal holds, and when it would leave no usable admin.
    pub fn delete_principal(&self, caller: &Caller, name: &str) -> Result<()> {
        self.authorize(caller, Action::PrincipalDelete, name)?;
        let Some(principal) = self.store.principal(name)? else {
            return Err(Error::NotFound(format!(
                "no principal named {:?}",
                echo(name)
            )));
        };
        if let Err(reason) = rights::may_delete_principal(caller.actor(), &principal) {
            self.deny(caller, Action::PrincipalDelete, name, reason)?;
        }
        let held = match self.store.ca()? {
            Some(ca) => self
                .store
                .certs()?
                .into_iter()
                .filter(|c| {
                    c.profile == CertKind::Client
                        && c.status == CertStatus::Active
                        && rights::certificate_holder(c, &ca.trust_domain).as_deref() == Some(name)
                })
                .map(|c| c.serial)
                .collect::<Vec<_>>(),
            None => Vec::new(),
        };
        if self.store.ca()?.is_some() {
            let after = self
                .store
                .principals()?
                .into_iter()
                .filter(|p| p.name != name)
                .collect();
            self.keep_an_admin(
                caller,
                Action::PrincipalDelete,
                name,
                &format!("deleting {}", echo(name)),
                after,
                self.store.certs()?,
            )?;
        }
        let requested = caller
            .event(Action::PrincipalDelete.name(), name, Outcome::Requested)
            .with("scopes", principal.scopes.join(" "))
            .with("revokes", held.join(" "));
        let revoked = self.change(
            requested,
            || {
                let revoked = if held.is_empty() {
                    Vec::new()
                } else {
                    let ca = self.ca()?;
                    self.authority()
                        .revoke_all(&ca, &held, Some("cessationOfOperation"))?
                };
                Principals(self.store.as_ref()).remove(name)?;
                Ok(revoked)
            },
            |r, e| e.with("revoked", r.len()),
        )?;
        if !revoked.is_empty() {
            self.audit.record(vec![caller
                .event("crl.generate", "crl", Outcome::Ok)
                .with("trigger", "principal deleted")
                .with("revoked", revoked.len())])?;
        }
        Ok(())
    }
}
