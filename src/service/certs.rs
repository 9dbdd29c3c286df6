//! The CA, certificates and principals.

use std::net::IpAddr;
use std::time::Duration;

use signet_pki::{Issued, LeafRequest, Profile};

use super::pipeline::{Operation, Recording, Refusal};
use super::{Action, Caller, Service};
use crate::domain::authority::{normalize_serial, Bundle, InitOptions, InitReport};
use crate::domain::principals::{self, Principals};
use crate::domain::rights;
use crate::error::{Error, Result};
use crate::store::{CaRecord, CertKind, CertRecord, CertStatus, Event, Outcome, Principal};
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

    /// The cross-principal rules of issuing `req` (see [`rights`]).
    fn issue_rights(&self, caller: &Caller, req: &CertificateRequest) -> Result<Option<Refusal>> {
        let refused = match req.profile {
            Profile::Client => {
                let Some(principal) = self.store.principal(&req.name)? else {
                    return Err(Error::Unprocessable(format!(
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
        Ok(refused.map(Refusal::Forbidden))
    }

    /// A conflict when the principals and certificates `after` a change would leave no usable
    /// admin where there is one now.
    fn last_admin(
        &self,
        change: &str,
        principals_after: Vec<Principal>,
        certs_after: Vec<CertRecord>,
    ) -> Result<Option<Refusal>> {
        let trust_domain = self.authority().record()?.trust_domain;
        let now = crate::support::time::now();
        let before = rights::usable_admins(
            &self.store.principals()?,
            &self.store.certs()?,
            &trust_domain,
            now,
        );
        let after = rights::usable_admins(&principals_after, &certs_after, &trust_domain, now);
        Ok(rights::keeps_an_admin(&before, &after, change)
            .err()
            .map(Refusal::Conflict))
    }

    /// The client certificates that name principal `name`.
    fn certificates_of(&self, name: &str) -> Result<Vec<CertRecord>> {
        let Some(ca) = self.store.ca()? else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .certs()?
            .into_iter()
            .filter(|c| {
                c.profile == CertKind::Client
                    && rights::certificate_holder(c, &ca.trust_domain).as_deref() == Some(name)
            })
            .collect())
    }

    /// `ca init` from the CLI: [`InitCa`] under the bootstrap lock `serve` takes, so that of
    /// several at once (nodes or processes sharing a database) one makes the CA and the others
    /// find it and change nothing.
    pub fn init_ca(&self, caller: &Caller, opts: &InitOptions) -> Result<InitReport> {
        crate::store::serialized(
            self.store.as_ref(),
            "bootstrap",
            super::open::BOOTSTRAP_PATIENCE,
            || self.execute(caller, InitCa(opts.clone())).wait(),
        )?
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
        self.authority().write_published()
    }

    /// `ca rotate`: [`RotateCa`] under the bootstrap lock.
    pub fn rotate_ca(&self, caller: &Caller, intermediate: bool) -> Result<Vec<String>> {
        crate::store::serialized(
            self.store.as_ref(),
            "bootstrap",
            super::open::BOOTSTRAP_PATIENCE,
            || self.execute(caller, RotateCa { intermediate }).wait(),
        )?
    }
}

/// `ca init`: the chain, the server key and certificate, the first admin and its bundle (run
/// under the bootstrap lock: [`Service::init_ca`], and `serve`'s first start).
#[derive(Debug, Clone)]
pub struct InitCa(pub InitOptions);

impl Operation for InitCa {
    type Output = InitReport;
    fn action(&self) -> Action {
        Action::CaInit
    }
    fn target(&self) -> String {
        "ca".into()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        let opts = &self.0;
        s.authority().check_init(opts)?;
        let mut event = event.with("force", opts.force).with(
            "reason",
            if s.store.ca()?.is_some() {
                "replace"
            } else {
                "first start"
            },
        );
        if let Some(import) = &opts.import {
            event = event
                .with("origin", "imported")
                .with("root_source_sha256", &import.sources[0])
                .with("intermediate_source_sha256", &import.sources[1]);
        }
        Ok(event)
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let report = s.authority().init(&self.0)?;
        Principals(s.store.as_ref()).put(
            &report.admin,
            vec![principals::ADMIN.into()],
            "ca init",
        )?;
        s.forget_ca();
        Ok(report)
    }
    fn describe(&self, r: &InitReport, event: Event) -> Event {
        event
            .with("root_serial", &r.root_serial)
            .with("admin", &r.admin)
    }
}

/// `ca rotate`: a new server key and certificate, and with `intermediate` a new intermediate
/// first; running nodes pick it up within seconds, without a restart.
#[derive(Debug, Clone)]
pub struct RotateCa {
    /// Rotate the intermediate too.
    pub intermediate: bool,
}

impl Operation for RotateCa {
    type Output = Vec<String>;
    fn action(&self) -> Action {
        Action::CaRotate
    }
    fn target(&self) -> String {
        "ca".into()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        s.authority().record()?;
        Ok(event.with("intermediate", self.intermediate))
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let lines = s.authority().rotate(self.intermediate)?;
        s.forget_ca();
        Ok(lines)
    }
    fn followups(&self, caller: &Caller, _: &Vec<String>) -> Vec<Event> {
        // The new serials, read back (a rotation that did not store them says so here).
        vec![caller.event("ca.rotated", "ca", Outcome::Ok)]
    }
}

/// The CA record (for `ca show`).
#[derive(Debug, Clone)]
pub struct ReadCa;

impl Operation for ReadCa {
    type Output = CaRecord;
    fn action(&self) -> Action {
        Action::CaShow
    }
    fn target(&self) -> String {
        "ca".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        s.authority().record()
    }
}

/// The chain clients append to a leaf: every intermediate still trusted (the current one
/// first; after a rotation the previous one too, until it expires), then the root.
#[derive(Debug, Clone)]
pub struct ReadChain;

impl Operation for ReadChain {
    type Output = Chain;
    fn action(&self) -> Action {
        Action::CaChain
    }
    fn target(&self) -> String {
        "ca".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let ca = s.ca()?;
        let mut pem = String::new();
        for der in s.authority().intermediates()? {
            pem.push_str(&signet_pki::pem_cert(&der));
        }
        pem.push_str(&signet_pki::pem_cert(ca.root_der()));
        Ok(Chain { pem })
    }
}

/// A current CRL (DER), regenerated when half its validity has passed: the intermediate's
/// (the leaves it revoked) or the root's (the ARL: the CA certificates it revoked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCrl {
    /// The intermediate's CRL.
    Intermediate,
    /// The root's CRL (ARL).
    Root,
}

impl Operation for ReadCrl {
    type Output = Vec<u8>;
    fn action(&self) -> Action {
        Action::CaCrl
    }
    fn target(&self) -> String {
        match self {
            ReadCrl::Intermediate => "crl".into(),
            ReadCrl::Root => "arl".into(),
        }
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        match self {
            ReadCrl::Intermediate => s.authority().current_crl(&*s.ca()?),
            ReadCrl::Root => {
                s.ca()?;
                s.authority().current_arl()
            }
        }
    }
}

/// Issues a certificate from a CSR. A client certificate is only for an existing principal
/// whose every scope the caller holds; a server certificate for a name the service answers on
/// is for admin only.
#[derive(Debug, Clone)]
pub struct IssueCertificate(pub CertificateRequest);

/// An issued certificate with the chain a client appends to it.
#[derive(Debug, Clone)]
pub struct IssuedWithChain {
    /// The certificate.
    pub issued: Issued,
    /// The issuing intermediate and the root, PEM.
    pub chain: String,
    /// The issuing intermediate, PEM.
    pub intermediate: String,
}

impl Operation for IssueCertificate {
    type Output = IssuedWithChain;
    fn action(&self) -> Action {
        Action::CertIssue
    }
    fn target(&self) -> String {
        self.0.name.clone()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn rules(&self, s: &Service, caller: &Caller) -> Result<Option<Refusal>> {
        s.issue_rights(caller, &self.0)
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        s.ca()?;
        Ok(event.with("profile", self.0.profile))
    }
    fn run(&mut self, s: &Service, caller: &Caller) -> Result<Self::Output> {
        let ca = s.ca()?;
        let issued =
            s.authority()
                .issue_from_csr(&ca, &self.0.leaf(), &self.0.csr, &caller.audit_name())?;
        Ok(IssuedWithChain {
            issued,
            chain: ca.chain_pem(),
            intermediate: signet_pki::pem_cert(ca.intermediate_der()),
        })
    }
    fn describe(&self, i: &IssuedWithChain, event: Event) -> Event {
        event
            .with("serial", &i.issued.serial)
            .with("not_after", format_time(i.issued.not_after))
    }
}

/// Issues a certificate for a key generated here and writes it as a PKCS#12 bundle (CLI).
#[derive(Debug, Clone)]
pub struct IssueBundle {
    /// What to issue.
    pub request: CertificateRequest,
    /// Where to write the bundle.
    pub p12: std::path::PathBuf,
}

impl Operation for IssueBundle {
    type Output = Bundle;
    fn action(&self) -> Action {
        Action::CertIssueBundle
    }
    fn target(&self) -> String {
        self.request.name.clone()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn rules(&self, s: &Service, caller: &Caller) -> Result<Option<Refusal>> {
        s.issue_rights(caller, &self.request)
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        s.ca()?;
        Ok(event
            .with("profile", self.request.profile)
            .with("bundle", "pkcs12"))
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let ca = s.ca()?;
        s.authority().write_bundle(
            &ca,
            &self.request.leaf(),
            s.config.ca.client_key_spec,
            Some(&self.p12),
        )
    }
    fn describe(&self, b: &Bundle, event: Event) -> Event {
        event.with("serial", &b.issued.serial)
    }
}

/// One certificate.
#[derive(Debug, Clone)]
pub struct ReadCertificate {
    /// Its serial (hex, any case, colons allowed).
    pub serial: String,
}

impl Operation for ReadCertificate {
    type Output = CertRecord;
    fn action(&self) -> Action {
        Action::CertRead
    }
    fn target(&self) -> String {
        normalize_serial(&self.serial)
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let serial = normalize_serial(&self.serial);
        s.store
            .cert(&serial)?
            .ok_or_else(|| Error::NotFound(format!("no certificate with serial {}", echo(&serial))))
    }
}

/// Every certificate (CLI).
#[derive(Debug, Clone)]
pub struct ListCertificates;

impl Operation for ListCertificates {
    type Output = Vec<CertRecord>;
    fn action(&self) -> Action {
        Action::CertList
    }
    fn target(&self) -> String {
        "*".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        s.store.certs()
    }
}

/// Revokes a certificate and regenerates the CRL; the TLS layer refuses it at once. Refused:
/// the server's own TLS certificate, and what would leave no usable admin.
#[derive(Debug, Clone)]
pub struct RevokeCertificate {
    serial: String,
    reason: Option<String>,
    /// The serial of the CA whose CRL now lists it (for the `crl.generate` record).
    crl_issuer: Option<String>,
}

impl RevokeCertificate {
    /// Revokes `serial` for the RFC 5280 `reason`.
    pub fn new(serial: String, reason: Option<String>) -> Self {
        RevokeCertificate {
            serial,
            reason,
            crl_issuer: None,
        }
    }
}

impl Operation for RevokeCertificate {
    type Output = CertRecord;
    fn action(&self) -> Action {
        Action::CertRevoke
    }
    fn target(&self) -> String {
        normalize_serial(&self.serial)
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn rules(&self, s: &Service, _: &Caller) -> Result<Option<Refusal>> {
        let serial = self.target();
        let record = s
            .authority()
            .check_revoke(&serial, self.reason.as_deref())?;
        let ca = s.authority().record()?;
        if record.serial == ca.server.serial {
            return Err(Error::Conflict(format!(
                "{} is this server's own TLS certificate: revoked, no client could trust the server any more. Rotate it instead (`signet ca rotate`)",
                record.serial
            )));
        }
        let mut after = s.store.certs()?;
        for cert in after.iter_mut().filter(|c| c.serial == record.serial) {
            cert.status = CertStatus::Revoked;
        }
        s.last_admin(
            &format!("revoking {}", record.serial),
            s.store.principals()?,
            after,
        )
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        s.ca()?;
        Ok(event.with("reason", self.reason.as_deref().unwrap_or("unspecified")))
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let ca = s.ca()?;
        let revoked = s
            .authority()
            .revoke(&ca, &self.target(), self.reason.as_deref())?;
        self.crl_issuer = s.authority().crl_issuer(&revoked).ok();
        Ok(revoked)
    }
    fn followups(&self, caller: &Caller, _: &CertRecord) -> Vec<Event> {
        let event = caller
            .event("crl.generate", "crl", Outcome::Ok)
            .with("trigger", "revocation");
        vec![match &self.crl_issuer {
            Some(issuer) => event.with("issuer", issuer.as_str()),
            None => event,
        }]
    }
}

/// Every principal.
#[derive(Debug, Clone)]
pub struct ListPrincipals;

impl Operation for ListPrincipals {
    type Output = Vec<Principal>;
    fn action(&self) -> Action {
        Action::PrincipalList
    }
    fn target(&self) -> String {
        "*".into()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        Principals(s.store.as_ref()).list()
    }
}

/// One principal and the client certificates that name it.
#[derive(Debug, Clone)]
pub struct ReadPrincipal {
    /// Its name.
    pub name: String,
}

impl Operation for ReadPrincipal {
    type Output = (Principal, Vec<CertRecord>);
    fn action(&self) -> Action {
        Action::PrincipalList
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let principal = s
            .store
            .principal(&self.name)?
            .ok_or_else(|| Error::NotFound(format!("no principal named {:?}", echo(&self.name))))?;
        Ok((principal, s.certificates_of(&self.name)?))
    }
}

/// Creates or replaces a principal. The caller must hold every scope it grants and every
/// scope the principal holds now, may not change its own, and may not leave the service
/// without a usable admin.
#[derive(Debug, Clone)]
pub struct PutPrincipal {
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: Vec<String>,
    current: Option<Principal>,
}

impl PutPrincipal {
    /// `name` with `scopes` (checked when it runs).
    pub fn new(name: String, scopes: Vec<String>) -> Self {
        PutPrincipal {
            name,
            scopes,
            current: None,
        }
    }
}

impl Operation for PutPrincipal {
    type Output = Principal;
    fn action(&self) -> Action {
        Action::PrincipalCreate
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn rules(&self, s: &Service, caller: &Caller) -> Result<Option<Refusal>> {
        principals::check_name(&self.name)?;
        let scopes = principals::check_scopes(self.scopes.clone())?;
        let current = s.store.principal(&self.name)?;
        if let Err(reason) =
            rights::may_put_principal(caller.actor(), &self.name, current.as_ref(), &scopes)
        {
            return Ok(Some(Refusal::Forbidden(reason)));
        }
        if current.is_some() && s.store.ca()?.is_some() {
            let mut after = s.store.principals()?;
            for p in after.iter_mut().filter(|p| p.name == self.name) {
                p.scopes = scopes.clone();
            }
            return s.last_admin(
                &format!("changing the scopes of {}", echo(&self.name)),
                after,
                s.store.certs()?,
            );
        }
        Ok(None)
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        self.scopes = principals::check_scopes(std::mem::take(&mut self.scopes))?;
        self.current = s.store.principal(&self.name)?;
        Ok(event.with("scopes", self.scopes.join(" ")).with(
            "previous_scopes",
            self.current
                .as_ref()
                .map_or("-".into(), |p| p.scopes.join(" ")),
        ))
    }
    fn run(&mut self, s: &Service, caller: &Caller) -> Result<Self::Output> {
        Principals(s.store.as_ref()).put(&self.name, self.scopes.clone(), &caller.audit_name())
    }
}

/// Deletes a principal and revokes its certificates (recorded, and in the CRL at once), so
/// re-creating the name later revives nothing. Refused for oneself, without every scope the
/// principal holds, and when it would leave no usable admin.
#[derive(Debug, Clone)]
pub struct DeletePrincipal {
    /// Its name.
    pub name: String,
    held: Vec<String>,
}

impl DeletePrincipal {
    /// The deletion of `name`.
    pub fn new(name: String) -> Self {
        DeletePrincipal {
            name,
            held: Vec::new(),
        }
    }
}

impl Operation for DeletePrincipal {
    type Output = usize;
    fn action(&self) -> Action {
        Action::PrincipalDelete
    }
    fn target(&self) -> String {
        self.name.clone()
    }
    fn recording(&self) -> Recording {
        Recording::Change
    }
    fn rules(&self, s: &Service, caller: &Caller) -> Result<Option<Refusal>> {
        let Some(principal) = s.store.principal(&self.name)? else {
            return Err(Error::NotFound(format!(
                "no principal named {:?}",
                echo(&self.name)
            )));
        };
        if let Err(reason) = rights::may_delete_principal(caller.actor(), &principal) {
            return Ok(Some(Refusal::Forbidden(reason)));
        }
        if s.store.ca()?.is_none() {
            return Ok(None);
        }
        let after = s
            .store
            .principals()?
            .into_iter()
            .filter(|p| p.name != self.name)
            .collect();
        s.last_admin(
            &format!("deleting {}", echo(&self.name)),
            after,
            s.store.certs()?,
        )
    }
    fn requested(&mut self, s: &Service, event: Event) -> Result<Event> {
        let principal = s
            .store
            .principal(&self.name)?
            .ok_or_else(|| Error::NotFound(format!("no principal named {:?}", echo(&self.name))))?;
        self.held = s
            .certificates_of(&self.name)?
            .into_iter()
            .filter(|c| c.status == CertStatus::Active)
            .map(|c| c.serial)
            .collect();
        Ok(event
            .with("scopes", principal.scopes.join(" "))
            .with("revokes", self.held.join(" ")))
    }
    fn run(&mut self, s: &Service, _: &Caller) -> Result<Self::Output> {
        let revoked = if self.held.is_empty() {
            Vec::new()
        } else {
            let ca = s.ca()?;
            s.authority()
                .revoke_all(&ca, &self.held, Some("cessationOfOperation"))?
        };
        Principals(s.store.as_ref()).remove(&self.name)?;
        Ok(revoked.len())
    }
    fn describe(&self, revoked: &usize, event: Event) -> Event {
        event.with("revoked", revoked)
    }
    fn followups(&self, caller: &Caller, revoked: &usize) -> Vec<Event> {
        if *revoked == 0 {
            return Vec::new();
        }
        vec![caller
            .event("crl.generate", "crl", Outcome::Ok)
            .with("trigger", "principal deleted")
            .with("revoked", revoked)]
    }
}
