//! The CA as the service runs it: building the chain (`ca init`), issuance, revocation and the
//! CRL, with records in the store and the public files under `DATA/ca`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use signet_hsm::{Backend, HsmSigner, KeyId, KeyRequest, KeyRole, KeySpec, Pin, Signer};
use signet_pki::{Ca, Issued, LeafRequest, Profile, RevokedEntry};

use crate::config::{Config, DataDir};
use crate::error::{Error, Result};
use crate::store::{
    CaKey, CaRecord, CertKind, CertRecord, CertStatus, CrlRecord, KeyOrigin, Store,
};
use crate::support::files::{mkdir_private, write_private, write_public};
use crate::support::text::echo;
use crate::support::time::{format_time, now};

/// What `ca init` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Overrides `ca.trust_domain`.
    pub trust_domain: Option<String>,
    /// Server certificate DNS names (config's when empty).
    pub server_dns: Vec<String>,
    /// Server certificate IPs (config's when empty and no DNS given).
    pub server_ips: Vec<IpAddr>,
    /// Admin principal name (config's when `None`).
    pub admin: Option<String>,
    /// Replace an existing CA.
    pub force: bool,
    /// Overrides `ca.root_key_spec` (new keys only).
    pub root_spec: Option<KeySpec>,
    /// Overrides `ca.intermediate_key_spec` (new keys only; a later `ca rotate --intermediate`
    /// follows the configuration).
    pub intermediate_spec: Option<KeySpec>,
    /// Take over an existing root and intermediate instead of making new ones (`ca import`).
    pub import: Option<Arc<CaImport>>,
}

/// An existing CA pair to import: each file's one key and the certificate of that key.
#[derive(Debug)]
pub struct CaImport {
    /// The root: a self-signed CA certificate and its key.
    pub root: signet_pki::pkcs12::Imported,
    /// The intermediate: a CA certificate issued by the root, and its key.
    pub intermediate: signet_pki::pkcs12::Imported,
    /// SHA-256 of the two files, for the audit record.
    pub sources: [String; 2],
}

/// What `ca init` made, and how long each step took.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// Lines to print.
    pub lines: Vec<String>,
    /// Timings of the steps.
    pub timings: Vec<(&'static str, Duration)>,
    /// The admin principal to enrol.
    pub admin: String,
    /// The root's serial.
    pub root_serial: String,
}

/// A client bundle written under `DATA/clients` (or beside the .p12 asked for).
#[derive(Debug)]
pub struct Bundle {
    /// The issued certificate.
    pub issued: Issued,
    /// "wrote …" lines.
    pub paths: Vec<String>,
}

/// The CA operations over a backend, a store and the data directory.
#[derive(Debug, Clone, Copy)]
pub struct Authority<'a> {
    /// The key store.
    pub backend: &'a Arc<dyn Backend>,
    /// The metadata store.
    pub store: &'a dyn Store,
    /// The configuration.
    pub config: &'a Config,
    /// The published files as last read (for the publication listener).
    pub published: &'a super::published::PublishedFiles,
}

/// How long a key replaced by a rotation stays in the token for nodes still using it.
const RETIRED_KEY_GRACE_SECS: i64 = 3600;

fn cert_record(issued: &Issued, issued_to: Option<&str>) -> CertRecord {
    CertRecord {
        serial: issued.serial.clone(),
        subject: issued.subject.clone(),
        sans: issued.sans.clone(),
        profile: issued.profile.into(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        status: CertStatus::Active,
        revoked_at: None,
        reason: None,
        issued_to: issued_to.map(str::to_string),
        der: issued.der.clone(),
    }
}

fn ca_cert_record(der: &[u8], kind: CertKind) -> Result<CertRecord> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| Error::Internal(format!("own CA certificate does not parse: {e}")))?;
    Ok(CertRecord {
        serial: hex::encode(cert.raw_serial()),
        subject: cert.subject().to_string(),
        sans: vec![],
        profile: kind,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        status: CertStatus::Active,
        revoked_at: None,
        reason: None,
        issued_to: None,
        der: der.to_vec(),
    })
}

/// Normalises a serial as people type it (`0x`, colons, upper case).
pub fn normalize_serial(serial: &str) -> String {
    serial
        .trim()
        .to_ascii_lowercase()
        .trim_start_matches("0x")
        .replace(':', "")
}

impl Authority<'_> {
    fn paths(&self) -> DataDir {
        self.config.paths()
    }

    fn signer(&self, key_id: &KeyId, spec: KeySpec) -> Result<Arc<dyn Signer>> {
        Ok(Arc::new(HsmSigner::new(
            self.backend.clone(),
            key_id.clone(),
            spec.default_algorithm(),
        )?))
    }

    fn generate(&self, role: KeyRole, name: &str, spec: KeySpec, created: i64) -> Result<KeyId> {
        // The suffix keeps labels unique when `--force` runs within the same second.
        let suffix = &crate::support::random::hex_id()?[..8];
        Ok(self
            .backend
            .generate(&KeyRequest {
                label: format!("signet:ca:{name}:{created}-{suffix}"),
                spec,
                role,
            })?
            .id)
    }

    fn import_key(
        &self,
        role: KeyRole,
        name: &str,
        key: &signet_hsm::KeyMaterial,
        created: i64,
    ) -> Result<KeyId> {
        let suffix = &crate::support::random::hex_id()?[..8];
        Ok(self
            .backend
            .import(
                &KeyRequest {
                    label: format!("signet:ca:{name}:{created}-{suffix}"),
                    spec: key.spec(),
                    role,
                },
                key,
            )?
            .id)
    }

    /// Checks an import before anything is written: both certificates present, CAs, in their
    /// validity, the intermediate issued by the root (its signature checked), both key specs
    /// held by the backend.
    fn check_import(&self, import: &CaImport) -> Result<()> {
        use x509_parser::prelude::FromDer;
        let refuse = |m: String| Error::BadRequest(format!("cannot import this CA: {m}"));
        let root_der = import
            .root
            .certificate
            .as_deref()
            .ok_or_else(|| refuse("the root file has no certificate for its key".into()))?;
        let int_der =
            import.intermediate.certificate.as_deref().ok_or_else(|| {
                refuse("the intermediate file has no certificate for its key".into())
            })?;
        fn parse<'a>(
            der: &'a [u8],
            what: &str,
        ) -> Result<x509_parser::certificate::X509Certificate<'a>> {
            x509_parser::certificate::X509Certificate::from_der(der)
                .map(|(_, c)| c)
                .map_err(|e| {
                    Error::BadRequest(format!(
                        "cannot import this CA: the {what} certificate cannot be parsed: {e}"
                    ))
                })
        }
        let root = parse(root_der, "root")?;
        let int = parse(int_der, "intermediate")?;
        for (cert, what) in [(&root, "root"), (&int, "intermediate")] {
            let ca = cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|b| b.value.ca);
            if !ca {
                return Err(refuse(format!(
                    "the {what} certificate ({}) is not a CA certificate (basicConstraints CA:TRUE)",
                    cert.subject()
                )));
            }
            if !cert.validity().is_valid() {
                return Err(refuse(format!(
                    "the {what} certificate ({}) is not valid now (valid {} to {})",
                    cert.subject(),
                    cert.validity().not_before,
                    cert.validity().not_after
                )));
            }
        }
        if root.subject() != root.issuer() || !signet_pki::signed_with(&root, root.public_key()) {
            return Err(refuse(format!(
                "the root certificate ({}) is not self-signed",
                root.subject()
            )));
        }
        if int.issuer() != root.subject() || !signet_pki::signed_with(&int, root.public_key()) {
            return Err(refuse(format!(
                "the intermediate ({}) was not issued by this root ({})",
                int.subject(),
                root.subject()
            )));
        }
        let specs = self.backend.info()?.specs;
        for (key, what) in [
            (&import.root.key, "root"),
            (&import.intermediate.key, "intermediate"),
        ] {
            if !specs.contains(&key.spec()) {
                return Err(refuse(format!(
                    "the token cannot hold the {what} key ({})",
                    key.spec()
                )));
            }
        }
        Ok(())
    }

    /// Refuses `ca init` over an existing CA unless forced; checks the options.
    pub fn check_init(&self, opts: &InitOptions) -> Result<()> {
        if let Some(existing) = self.store.ca()? {
            if !opts.force {
                return Err(Error::Conflict(format!(
                    "a CA already exists in the {} store (created {}, root serial {}); nothing was changed. Use --force to replace it",
                    self.store.engine(),
                    format_time(existing.created),
                    existing.root.serial
                )));
            }
        }
        if let Some(td) = &opts.trust_domain {
            if !signet_pki::valid_dns_name(td) {
                return Err(Error::BadRequest(format!(
                    "trust domain {:?} is not a DNS-like name",
                    echo(td)
                )));
            }
        }
        if let Some(admin) = &opts.admin {
            crate::domain::principals::check_name(admin)?;
            if crate::domain::rights::RESERVED_PRINCIPALS.contains(&admin.as_str()) {
                return Err(Error::BadRequest(format!(
                    "{admin:?} is reserved for the service's own records: choose another admin name"
                )));
            }
        }
        if let Some(import) = &opts.import {
            self.check_import(import)?;
        }
        let asked = [
            ("root", opts.root_spec),
            ("intermediate", opts.intermediate_spec),
        ];
        if asked.iter().any(|(_, spec)| spec.is_some()) {
            let specs = self.backend.info()?.specs;
            for (what, spec) in asked {
                match spec {
                    Some(spec) if spec.is_slh_dsa() => {
                        return Err(Error::BadRequest(format!(
                            "the {what} key cannot be {spec}: Signet signs no certificate with SLH-DSA; nothing was changed"
                        )));
                    }
                    Some(spec) if !specs.contains(&spec) => {
                        return Err(Error::BadRequest(format!(
                            "this token cannot make the {what} key ({spec}); nothing was changed"
                        )));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// `ca init`: root, intermediate and server keys in the token, their certificates, the
    /// first admin's bundle, and the public files. The caller enrols the admin principal.
    pub fn init(&self, opts: &InitOptions) -> Result<InitReport> {
        self.check_init(opts)?;
        let previous = self.store.ca()?;
        let mut settings = self.config.ca_settings();
        if let Some(td) = &opts.trust_domain {
            settings.trust_domain = td.clone();
        }
        let admin = opts
            .admin
            .clone()
            .unwrap_or_else(|| self.config.server.admin.clone());
        let (dns, ips) = if opts.server_dns.is_empty() && opts.server_ips.is_empty() {
            (
                self.config.server.server_dns.clone(),
                self.config.server.server_ips.clone(),
            )
        } else {
            (opts.server_dns.clone(), opts.server_ips.clone())
        };
        let created = now();
        let mut timings = Vec::new();
        let cfg = &self.config.ca;

        let (root_id, root_spec, root_der, int_id, int_spec, int_der, int_signer, origin) =
            match &opts.import {
                None => {
                    let t = Instant::now();
                    let root_spec = opts.root_spec.unwrap_or(cfg.root_key_spec);
                    let root_id = self.generate(KeyRole::RootCa, "root", root_spec, created)?;
                    let root_signer = self.signer(&root_id, root_spec)?;
                    let root_der = signet_pki::build_root(&settings, root_signer.clone())?;
                    timings.push(("root key + certificate", t.elapsed()));

                    let t = Instant::now();
                    let int_spec = opts.intermediate_spec.unwrap_or(cfg.intermediate_key_spec);
                    let int_id =
                        self.generate(KeyRole::IntermediateCa, "intermediate", int_spec, created)?;
                    let int_signer = self.signer(&int_id, int_spec)?;
                    let int_der = signet_pki::build_intermediate(
                        &settings,
                        int_signer.clone(),
                        &root_der,
                        root_signer,
                    )?;
                    timings.push(("intermediate key + certificate", t.elapsed()));
                    let origin = KeyOrigin::Generated;
                    (
                        root_id, root_spec, root_der, int_id, int_spec, int_der, int_signer, origin,
                    )
                }
                Some(import) => {
                    // check_init has checked both certificates and specs.
                    let t = Instant::now();
                    let root_id =
                        self.import_key(KeyRole::RootCa, "root", &import.root.key, created)?;
                    let int_id = match self.import_key(
                        KeyRole::IntermediateCa,
                        "intermediate",
                        &import.intermediate.key,
                        created,
                    ) {
                        Ok(id) => id,
                        Err(e) => {
                            let _ = self.backend.destroy(&root_id);
                            return Err(e);
                        }
                    };
                    let int_spec = import.intermediate.key.spec();
                    let int_signer = self.signer(&int_id, int_spec)?;
                    timings.push(("root + intermediate keys imported", t.elapsed()));
                    (
                        root_id,
                        import.root.key.spec(),
                        import.root.certificate.clone().unwrap_or_default(),
                        int_id,
                        int_spec,
                        import.intermediate.certificate.clone().unwrap_or_default(),
                        int_signer,
                        KeyOrigin::Imported,
                    )
                }
            };

        let ca = Ca::new(
            settings.clone(),
            int_signer,
            int_der.clone(),
            root_der.clone(),
        )?;

        let t = Instant::now();
        let server_spec = cfg.server_key_spec;
        let server_id = self.generate(KeyRole::ServerTls, "server-tls", server_spec, created)?;
        let server_public = self.backend.public_key(&server_id)?;
        let server_req = LeafRequest {
            profile: Profile::Server,
            name: dns.first().cloned().unwrap_or_else(|| "signet".into()),
            dns: dns.clone(),
            ips: ips.clone(),
            ttl: None,
        };
        let server = ca.issue(&server_req, &server_public.spki_der())?;
        timings.push(("server key (in token) + certificate", t.elapsed()));

        let t = Instant::now();
        let files = self.write_ca_files(&ca, &server.der)?;
        let admin_files = self.write_client_bundle(&ca, &admin, cfg.client_key_spec, None)?;
        timings.push(("admin bundle + files", t.elapsed()));

        let root_rec = ca_cert_record(&root_der, CertKind::RootCa)?;
        let int_rec = ca_cert_record(&int_der, CertKind::IntermediateCa)?;
        let record = CaRecord {
            created,
            root: CaKey {
                key_id: root_id,
                spec: root_spec,
                serial: root_rec.serial.clone(),
                origin,
            },
            intermediate: CaKey {
                key_id: int_id,
                spec: int_spec,
                serial: int_rec.serial.clone(),
                origin,
            },
            server: CaKey {
                key_id: server_id,
                spec: server_spec,
                serial: server.serial.clone(),
                origin: KeyOrigin::Generated,
            },
            trust_domain: settings.trust_domain.clone(),
            organization: settings.organization.clone(),
            previous_intermediates: Vec::new(),
            retired: Vec::new(),
            generation: previous.as_ref().map_or(0, |p| p.generation + 1),
        };
        self.store.put_cert(&root_rec)?;
        self.store.put_cert(&int_rec)?;
        self.store.put_cert(&cert_record(&server, Some("signet")))?;
        self.store.put_ca(&record)?;
        // A fresh CRL (empty for a new CA), and the root's (the ARL).
        self.regenerate_crl(&ca)?;
        self.regenerate_arl()?;

        // With --force, the old CA keys leave the token only once the new CA is in place.
        if let Some(old) = previous {
            let rotated = old
                .previous_intermediates
                .iter()
                .chain(old.retired.iter().map(|(k, _)| k));
            for key in [&old.root, &old.intermediate, &old.server]
                .into_iter()
                .chain(rotated)
            {
                let _ = self.backend.destroy(&key.key_id);
            }
        }

        let mut lines = vec![
            format!(
                "root CA          {}  serial {}  ({})",
                root_rec.subject, root_rec.serial, root_spec
            ),
            format!(
                "intermediate CA  {}  serial {}  ({})",
                int_rec.subject, int_rec.serial, int_spec
            ),
            format!(
                "server cert      {}  serial {}  ({}, key in token)",
                server.sans.join(" "),
                server.serial,
                server_spec
            ),
            format!(
                "admin client     spiffe://{}/{}  serial {}",
                settings.trust_domain, admin, admin_files.issued.serial
            ),
        ];
        lines.extend(files);
        lines.extend(admin_files.paths);
        Ok(InitReport {
            lines,
            timings,
            admin,
            root_serial: root_rec.serial,
        })
    }

    fn write_ca_files(&self, ca: &Ca, server_der: &[u8]) -> Result<Vec<String>> {
        let dir = self.paths().ca();
        std::fs::create_dir_all(&dir)?;
        let files = [
            ("root.pem", signet_pki::pem_cert(ca.root_der())),
            (
                "intermediate.pem",
                signet_pki::pem_cert(ca.intermediate_der()),
            ),
            ("chain.pem", ca.chain_pem()),
            ("server.pem", signet_pki::pem_cert(server_der)),
            (
                "server.crt.pem",
                signet_pki::pem_cert(server_der) + &signet_pki::pem_cert(ca.intermediate_der()),
            ),
        ];
        let mut written = Vec::new();
        for (name, text) in files {
            let path = dir.join(name);
            write_public(&path, text.as_bytes())?;
            written.push(format!("wrote {}", path.display()));
        }
        Ok(written)
    }

    /// Issues a client certificate for a key generated here, and writes its bundle.
    pub fn write_client_bundle(
        &self,
        ca: &Ca,
        name: &str,
        key_spec: KeySpec,
        p12_out: Option<&Path>,
    ) -> Result<Bundle> {
        let req = LeafRequest {
            profile: Profile::Client,
            name: name.to_string(),
            dns: vec![],
            ips: vec![],
            ttl: None,
        };
        self.write_bundle(ca, &req, key_spec, p12_out)
    }

    /// Issues for a key generated here and writes `<name>.p12`, `<name>.p12.pass`,
    /// `<name>.crt.pem` (leaf + chain) and `<name>.key.pem` (secrets 0600).
    pub fn write_bundle(
        &self,
        ca: &Ca,
        req: &LeafRequest,
        key_spec: KeySpec,
        p12_out: Option<&Path>,
    ) -> Result<Bundle> {
        let (issued, pkcs8) = ca.issue_with_new_key(req, key_spec)?;
        let dir = self.paths().clients();
        mkdir_private(&dir)?;
        let password = Pin::random(32)?;
        let p12 = signet_pki::pkcs12::write(
            &pkcs8,
            &issued.der,
            &[ca.intermediate_der(), ca.root_der()],
            password.expose(),
        )?;
        let p12_path = p12_out
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| dir.join(format!("{}.p12", req.name)));
        let pass_path = p12_path.with_extension("p12.pass");
        let base = p12_path.with_extension("");
        let crt_path = base.with_extension("crt.pem");
        let key_path = base.with_extension("key.pem");
        let key_pem = zeroize::Zeroizing::new(signet_pki::pem_encode("PRIVATE KEY", &pkcs8));
        write_private(&p12_path, &p12)?;
        write_private(&pass_path, password.expose().as_bytes())?;
        write_private(&key_path, key_pem.as_bytes())?;
        write_public(
            &crt_path,
            (signet_pki::pem_cert(&issued.der) + &ca.chain_pem()).as_bytes(),
        )?;
        self.store
            .put_cert(&cert_record(&issued, Some(&req.name)))?;
        Ok(Bundle {
            issued,
            paths: [&p12_path, &pass_path, &crt_path, &key_path]
                .iter()
                .map(|p| format!("wrote {}", p.display()))
                .collect(),
        })
    }

    /// Rotates the server's TLS key and certificate, and with `intermediate` the intermediate
    /// first (a new key in the token, certified by the root): the new ones issue from now on,
    /// the previous intermediate stays trusted (and in the chain) until it expires, and the
    /// previous server key stays in the token for an hour, while running nodes pick the
    /// rotation up (they compare the record's generation every few seconds).
    pub fn rotate(&self, intermediate: bool) -> Result<Vec<String>> {
        let mut record = self.record()?;
        let created = now();
        let cfg = &self.config.ca;
        let mut settings = self.config.ca_settings();
        settings.trust_domain = record.trust_domain.clone();
        settings.organization = record.organization.clone();
        let root_der = self.cert_der(&record.root.serial)?;
        let mut lines = Vec::new();
        if intermediate {
            let root_signer = self.signer(&record.root.key_id, record.root.spec)?;
            let int_spec = cfg.intermediate_key_spec;
            let int_id =
                self.generate(KeyRole::IntermediateCa, "intermediate", int_spec, created)?;
            let int_signer = self.signer(&int_id, int_spec)?;
            let int_der =
                signet_pki::build_intermediate(&settings, int_signer, &root_der, root_signer)?;
            let int_rec = ca_cert_record(&int_der, CertKind::IntermediateCa)?;
            self.store.put_cert(&int_rec)?;
            lines.push(format!(
                "intermediate CA  {}  serial {}  ({}); the previous one ({}) stays trusted until it expires",
                int_rec.subject, int_rec.serial, int_spec, record.intermediate.serial
            ));
            let previous = std::mem::replace(
                &mut record.intermediate,
                CaKey {
                    key_id: int_id,
                    spec: int_spec,
                    serial: int_rec.serial,
                    origin: KeyOrigin::Generated,
                },
            );
            record.previous_intermediates.insert(0, previous);
        }
        let int_signer = self.signer(&record.intermediate.key_id, record.intermediate.spec)?;
        let ca = Ca::new(
            settings,
            int_signer,
            self.cert_der(&record.intermediate.serial)?,
            root_der,
        )?;
        let old_server = self
            .store
            .cert(&record.server.serial)?
            .ok_or_else(|| Error::Internal("the server certificate's record is missing".into()))?;
        let dns: Vec<String> = old_server
            .sans
            .iter()
            .filter_map(|s| s.strip_prefix("DNS:").map(str::to_string))
            .collect();
        let ips: Vec<std::net::IpAddr> = old_server
            .sans
            .iter()
            .filter_map(|s| s.strip_prefix("IP:").and_then(|ip| ip.parse().ok()))
            .collect();
        let server_spec = cfg.server_key_spec;
        let server_id = self.generate(KeyRole::ServerTls, "server-tls", server_spec, created)?;
        let server_public = self.backend.public_key(&server_id)?;
        let server = ca.issue(
            &LeafRequest {
                profile: Profile::Server,
                name: dns.first().cloned().unwrap_or_else(|| "signet".into()),
                dns,
                ips,
                ttl: None,
            },
            &server_public.spki_der(),
        )?;
        self.store.put_cert(&cert_record(&server, Some("signet")))?;
        lines.push(format!(
            "server cert      {}  serial {}  ({}, key in token)",
            server.sans.join(" "),
            server.serial,
            server_spec
        ));
        let previous_server = std::mem::replace(
            &mut record.server,
            CaKey {
                key_id: server_id,
                spec: server_spec,
                serial: server.serial.clone(),
                origin: KeyOrigin::Generated,
            },
        );
        record
            .retired
            .push((previous_server, created + RETIRED_KEY_GRACE_SECS));
        record.generation += 1;
        self.store.put_ca(&record)?;
        lines.extend(self.write_ca_files(&ca, &server.der)?);
        self.regenerate_crl(&ca)?;
        Ok(lines)
    }

    /// Destroys keys a rotation retired once their grace has passed, and forgets previous
    /// intermediates whose certificates have expired (their keys too). Returns what it did.
    pub fn prune_rotated(&self) -> Result<Vec<String>> {
        let Some(mut record) = self.store.ca()? else {
            return Ok(Vec::new());
        };
        let at = now();
        let mut done = Vec::new();
        let (due, kept): (Vec<_>, Vec<_>) = record
            .retired
            .drain(..)
            .partition(|(_, after)| *after <= at);
        record.retired = kept;
        for (key, _) in &due {
            let _ = self.backend.destroy(&key.key_id);
            done.push(format!(
                "destroyed the retired key of certificate {}",
                key.serial
            ));
        }
        let mut kept = Vec::new();
        for int in record.previous_intermediates.drain(..) {
            match self.store.cert(&int.serial)? {
                Some(c) if c.not_after <= at => {
                    let _ = self.backend.destroy(&int.key_id);
                    done.push(format!("destroyed the expired intermediate {}", int.serial));
                }
                _ => kept.push(int),
            }
        }
        record.previous_intermediates = kept;
        if !done.is_empty() {
            self.store.put_ca(&record)?;
        }
        Ok(done)
    }

    /// The certificates (DER) of every intermediate still trusted: the current one first.
    pub fn intermediates(&self) -> Result<Vec<Vec<u8>>> {
        let record = self.record()?;
        let mut out = vec![self.cert_der(&record.intermediate.serial)?];
        let at = now();
        for int in &record.previous_intermediates {
            if let Some(c) = self.store.cert(&int.serial)? {
                if c.not_after > at {
                    out.push(c.der);
                }
            }
        }
        Ok(out)
    }

    /// The CA record, or a clear error when `ca init` has not run.
    pub fn record(&self) -> Result<CaRecord> {
        self.store.ca()?.ok_or_else(|| {
            Error::NotFound(
                "no CA yet: run `signet ca init` (or `signet serve`, which does it on first start)"
                    .into(),
            )
        })
    }

    /// The serial of the CA certificate whose CRL lists `cert` once revoked: the root's for a
    /// CA certificate; for a leaf, the previous intermediate that issued it, else the current
    /// intermediate's (as `build_crl` sorts them).
    pub fn crl_issuer(&self, cert: &CertRecord) -> Result<String> {
        let record = self.record()?;
        if cert.profile.is_ca() {
            return Ok(record.root.serial);
        }
        let previous = self.previous_intermediates(&record)?;
        Ok(match issuing_previous(&previous, &cert.der) {
            Some(i) => previous[i].0.serial.clone(),
            None => record.intermediate.serial,
        })
    }

    /// The intermediates replaced by rotations, with their certificates' DER.
    fn previous_intermediates<'r>(
        &self,
        record: &'r CaRecord,
    ) -> Result<Vec<(&'r CaKey, Vec<u8>)>> {
        record
            .previous_intermediates
            .iter()
            .map(|k| Ok((k, self.cert_der(&k.serial)?)))
            .collect()
    }

    /// A certificate's DER from its record.
    pub fn cert_der(&self, serial: &str) -> Result<Vec<u8>> {
        Ok(self
            .store
            .cert(serial)?
            .ok_or_else(|| Error::Internal(format!("CA certificate {serial} missing")))?
            .der)
    }

    /// The issuing CA over its token key.
    pub fn load(&self) -> Result<Ca> {
        let record = self.record()?;
        let mut settings = self.config.ca_settings();
        settings.trust_domain = record.trust_domain.clone();
        settings.organization = record.organization.clone();
        let int_signer = self.signer(&record.intermediate.key_id, record.intermediate.spec)?;
        Ok(Ca::new(
            settings,
            int_signer,
            self.cert_der(&record.intermediate.serial)?,
            self.cert_der(&record.root.serial)?,
        )?)
    }

    /// Issues from a CSR and records it.
    pub fn issue_from_csr(
        &self,
        ca: &Ca,
        req: &LeafRequest,
        csr: &[u8],
        issued_to: &str,
    ) -> Result<Issued> {
        let issued = ca.issue_from_csr(req, csr)?;
        self.store
            .put_cert(&cert_record(&issued, Some(issued_to)))?;
        Ok(issued)
    }

    /// Checks that `serial` can be revoked (before anything changes); returns its record.
    pub fn check_revoke(&self, serial: &str, reason: Option<&str>) -> Result<CertRecord> {
        if let Some(r) = reason {
            signet_pki::parse_reason(r)?;
        }
        let rec = self.store.cert(serial)?.ok_or_else(|| {
            Error::NotFound(format!("no certificate with serial {}", echo(serial)))
        })?;
        if rec.profile.is_ca() {
            return Err(Error::Unprocessable(
                "CA certificates are not revoked through this call".into(),
            ));
        }
        if rec.status == CertStatus::Revoked {
            return Err(Error::Conflict(format!(
                "certificate {serial} is already revoked"
            )));
        }
        Ok(rec)
    }

    /// Revokes a certificate and regenerates the CRL.
    pub fn revoke(&self, ca: &Ca, serial: &str, reason: Option<&str>) -> Result<CertRecord> {
        self.check_revoke(serial, reason)?;
        let revoked_at = now();
        let rec = self.store.update_cert(serial, &mut |rec| {
            if rec.status == CertStatus::Revoked {
                return Err(Error::Conflict(format!(
                    "certificate {serial} is already revoked"
                )));
            }
            rec.status = CertStatus::Revoked;
            rec.revoked_at = Some(revoked_at);
            rec.reason = reason.map(str::to_string);
            Ok(())
        })?;
        self.regenerate_crl(ca)?;
        Ok(rec)
    }

    /// Revokes several certificates (those already revoked are left as they are) and
    /// regenerates the CRL once; returns the records revoked now.
    pub fn revoke_all(
        &self,
        ca: &Ca,
        serials: &[String],
        reason: Option<&str>,
    ) -> Result<Vec<CertRecord>> {
        if let Some(r) = reason {
            signet_pki::parse_reason(r)?;
        }
        let revoked_at = now();
        let mut revoked = Vec::new();
        for serial in serials {
            let mut changed = false;
            let rec = self.store.update_cert(serial, &mut |rec| {
                changed = rec.status != CertStatus::Revoked;
                if changed {
                    rec.status = CertStatus::Revoked;
                    rec.revoked_at = Some(revoked_at);
                    rec.reason = reason.map(str::to_string);
                }
                Ok(())
            })?;
            if changed {
                revoked.push(rec);
            }
        }
        if !revoked.is_empty() {
            self.regenerate_crl(ca)?;
        }
        Ok(revoked)
    }

    /// Signs a new CRL with every revoked serial, stores it and writes `DATA/ca/crl.pem`.
    /// Returns DER. Nodes sharing a database take turns (a cluster lock): each CRL is built
    /// from the revocations committed before its turn, so the last one stored holds them all
    /// (two builds at once could otherwise store, last, the one that missed the other's
    /// revocation).
    pub fn regenerate_crl(&self, ca: &Ca) -> Result<Vec<u8>> {
        crate::store::serialized(
            self.store,
            "crl",
            std::time::Duration::from_secs(30),
            || self.build_crl(ca),
        )?
    }

    /// The revoked certificates the root (`ca == true`: CA certificates) or the intermediates
    /// (leaves) list, with their DER (which intermediate issued a leaf is read from it).
    fn revoked(&self, ca: bool) -> Result<Vec<(RevokedEntry, Vec<u8>)>> {
        Ok(self
            .store
            .certs()?
            .into_iter()
            .filter(|c| c.status == CertStatus::Revoked && c.profile.is_ca() == ca)
            .map(|c| {
                let entry = RevokedEntry {
                    serial: c.serial,
                    revoked_at: c.revoked_at.unwrap_or(0),
                    reason: c.reason,
                };
                (entry, c.der)
            })
            .collect())
    }

    fn build_crl(&self, ca: &Ca) -> Result<Vec<u8>> {
        let record = self.record()?;
        // The leaves a previous intermediate issued go on its own CRL, signed with its key
        // (still in the token until its leaves expire), at the URL they name; the rest (the
        // current intermediate's, and any whose issuer is not found) on this one.
        let previous = self.previous_intermediates(&record)?;
        let mut theirs: Vec<Vec<RevokedEntry>> = vec![Vec::new(); previous.len()];
        let mut ours = Vec::new();
        for (entry, der) in self.revoked(false)? {
            match issuing_previous(&previous, &der) {
                Some(i) => theirs[i].push(entry),
                None => ours.push(entry),
            }
        }
        for ((key, der), entries) in previous.iter().zip(&theirs) {
            // A previous intermediate whose CRL cannot be signed must not keep the current one
            // from being made.
            if let Err(e) = self.build_previous_crl(key, der, entries) {
                tracing::warn!(intermediate = %key.serial, error = %e, "the CRL of a previous intermediate could not be made");
            }
        }
        let number = self.store.next_crl_number()?;
        let der = ca.crl(&ours, number)?;
        self.keep_crl(false, number, der)
    }

    /// Signs and stores the CRL of the previous intermediate `key` (certificate `der`).
    fn build_previous_crl(&self, key: &CaKey, der: &[u8], revoked: &[RevokedEntry]) -> Result<()> {
        let number = self.store.next_crl_number()?;
        let crl = signet_pki::build_crl(
            &self.config.ca_settings(),
            "previous intermediate",
            der,
            self.signer(&key.key_id, key.spec)?,
            revoked,
            number,
        )?;
        self.store.put_previous_crl(
            &key.serial,
            &CrlRecord {
                number,
                generated: now(),
                der: crl,
            },
        )
    }

    /// The stored CRL's DER while it is younger than half its validity (`None`: make another).
    fn fresh(&self, record: Option<CrlRecord>) -> Option<Vec<u8>> {
        let half = (self.config.ca.crl_validity_days * 24 * 3600 / 2) as i64;
        record
            .filter(|rec| now() - rec.generated < half)
            .map(|rec| rec.der)
    }

    /// Signs a new root CRL (ARL) in the token with the root key, stores it and writes
    /// `DATA/ca/root-crl.pem`. Returns DER. Taken in turns like the CRL.
    pub fn regenerate_arl(&self) -> Result<Vec<u8>> {
        crate::store::serialized(
            self.store,
            "crl",
            std::time::Duration::from_secs(30),
            || self.build_arl(),
        )?
    }

    fn build_arl(&self) -> Result<Vec<u8>> {
        let record = self
            .store
            .ca()?
            .ok_or_else(|| Error::NotFound("no CA yet: run `signet ca init`".into()))?;
        let root_der = self.cert_der(&record.root.serial)?;
        let root_key = self.signer(&record.root.key_id, record.root.spec)?;
        let number = self.store.next_crl_number()?;
        let der = signet_pki::build_arl(
            &self.config.ca_settings(),
            &root_der,
            root_key,
            &self
                .revoked(true)?
                .into_iter()
                .map(|(entry, _)| entry)
                .collect::<Vec<_>>(),
            number,
        )?;
        self.keep_crl(true, number, der)
    }

    /// Stores a CRL just signed (the root's when `root`), writes it under `DATA/ca` and to
    /// the publication directory. Returns it.
    fn keep_crl(&self, root: bool, number: u64, der: Vec<u8>) -> Result<Vec<u8>> {
        let record = CrlRecord {
            number,
            generated: now(),
            der,
        };
        if root {
            self.store.put_arl(&record)?;
        } else {
            self.store.put_crl(&record)?;
        }
        let dir = self.paths().ca();
        std::fs::create_dir_all(&dir)?;
        let file = if root { "root-crl.pem" } else { "crl.pem" };
        write_public(&dir.join(file), signet_pki::pem_crl(&record.der).as_bytes())?;
        self.write_published()?;
        Ok(record.der)
    }

    /// Every file published now (see [`signet_pki::publication`]), by name: the root and
    /// intermediate certificates (the current one and previous ones still kept) and the
    /// stored CRLs (the root's, the current intermediate's and the previous intermediates').
    fn publications(record: &CaRecord) -> Vec<(String, Published<'_>)> {
        use signet_pki::publication as p;
        let mut out = vec![
            (
                p::ROOT_CERT.to_string(),
                Published::Cert(&record.root.serial),
            ),
            (p::ROOT_CRL.to_string(), Published::Arl),
            (
                p::intermediate_crl(&record.intermediate.serial),
                Published::Crl,
            ),
        ];
        let intermediates =
            std::iter::once(&record.intermediate).chain(&record.previous_intermediates);
        out.extend(intermediates.map(|int| {
            (
                p::intermediate_cert(&int.serial),
                Published::Cert(&int.serial),
            )
        }));
        out.extend(record.previous_intermediates.iter().map(|int| {
            (
                p::intermediate_crl(&int.serial),
                Published::PreviousCrl(&int.serial),
            )
        }));
        out
    }

    fn fetch(&self, what: &Published<'_>) -> Result<Option<Vec<u8>>> {
        match what {
            Published::Cert(serial) => self.cert_der(serial).map(Some),
            Published::Crl => Ok(self.store.crl()?.map(|r| r.der)),
            Published::PreviousCrl(serial) => Ok(self.store.previous_crl(serial)?.map(|r| r.der)),
            Published::Arl => Ok(self.store.arl()?.map(|r| r.der)),
        }
    }

    /// The file published as `name`, DER; `None` for any other name.
    pub fn published(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let files = self.published.get(|| self.read_published())?;
        Ok(files.get(name).cloned())
    }

    /// Every published file, read from the store now.
    fn read_published(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut files = BTreeMap::new();
        let Some(record) = self.store.ca()? else {
            return Ok(files);
        };
        for (name, what) in Self::publications(&record) {
            if let Some(der) = self.fetch(&what)? {
                files.insert(name, der);
            }
        }
        Ok(files)
    }

    /// Writes every published file to `publish.dir` (when configured), replacing those that
    /// changed, for a web server to serve.
    pub fn write_published(&self) -> Result<()> {
        self.published.changed();
        let Some(dir) = &self.config.publish.dir else {
            return Ok(());
        };
        let files = self.read_published()?;
        if files.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        for (name, der) in files {
            let path = dir.join(&name);
            if std::fs::read(&path).ok().as_deref() != Some(der.as_slice()) {
                write_public(&path, &der)?;
            }
        }
        Ok(())
    }

    /// The current root CRL (ARL), made when there is none and regenerated when half its
    /// validity has passed. Returns DER.
    pub fn current_arl(&self) -> Result<Vec<u8>> {
        match self.fresh(self.store.arl()?) {
            Some(der) => Ok(der),
            None => self.regenerate_arl(),
        }
    }

    /// The current CRL, regenerated when half its validity has passed. Returns DER.
    pub fn current_crl(&self, ca: &Ca) -> Result<Vec<u8>> {
        match self.fresh(self.store.crl()?) {
            Some(der) => Ok(der),
            None => self.regenerate_crl(ca),
        }
    }
}

/// Where a published file's contents come from.
#[derive(Debug, Clone, Copy)]
enum Published<'a> {
    /// A CA certificate, by serial.
    Cert(&'a str),
    /// The intermediate's stored CRL.
    Crl,
    /// A previous intermediate's stored CRL, by its serial.
    PreviousCrl(&'a str),
    /// The root's stored CRL (ARL).
    Arl,
}

/// Which of the previous intermediates (as `Authority::previous_intermediates` gives them)
/// issued the leaf `der`, if one did: that one's CRL lists it.
fn issuing_previous(previous: &[(&CaKey, Vec<u8>)], der: &[u8]) -> Option<usize> {
    previous
        .iter()
        .position(|(_, int)| signet_pki::issued_by(der, int))
}
