//! The CA as the service runs it: `ca init`, issuance, revocation and the CRL, with records in
//! sled and the public files under `DATA/ca`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use signet_hsm::{HsmSigner, KeyId, KeySpec, Pin, Signer};
use signet_pki::{Ca, Issued, LeafRequest, Profile, RevokedEntry};

use crate::config::spec;
use crate::error::{Error, Result};
use crate::keys::now;
use crate::principals::Principals;
use crate::runtime::Signet;
use crate::store::{CaKey, CaRecord, CertRecord, CertStatus};

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
}

/// What `ca init` made, and how long each step took.
#[derive(Debug, Clone)]
pub struct InitReport {
    /// Lines to print.
    pub lines: Vec<String>,
    /// Timings of the steps.
    pub timings: Vec<(&'static str, Duration)>,
}

fn ca_key_label(role: &str, created: i64) -> String {
    // The suffix keeps labels unique when `--force` runs within the same second.
    format!(
        "signet:ca:{role}:{created}-{}",
        &crate::api::random_id()[..8]
    )
}

fn signer(signet: &Signet, key_id: &str, spec_name: &str) -> Result<Arc<dyn Signer>> {
    let id =
        KeyId::from_hex(key_id).ok_or_else(|| Error::Internal(format!("bad key id {key_id}")))?;
    let alg = spec(spec_name).default_algorithm();
    Ok(Arc::new(HsmSigner::new(signet.backend.clone(), id, alg)?))
}

fn cert_record(issued: &Issued, issued_to: Option<&str>) -> CertRecord {
    CertRecord {
        serial: issued.serial.clone(),
        subject: issued.subject.clone(),
        sans: issued.sans.clone(),
        profile: issued.profile.name().to_string(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        status: CertStatus::Active,
        revoked_at: None,
        reason: None,
        issued_to: issued_to.map(str::to_string),
        der: STANDARD.encode(&issued.der),
    }
}

fn ca_cert_record(der: &[u8], profile: &str) -> Result<CertRecord> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| Error::Internal(format!("own CA certificate does not parse: {e}")))?;
    Ok(CertRecord {
        serial: hex::encode(cert.raw_serial()),
        subject: cert.subject().to_string(),
        sans: vec![],
        profile: profile.to_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        status: CertStatus::Active,
        revoked_at: None,
        reason: None,
        issued_to: None,
        der: STANDARD.encode(der),
    })
}

/// `signet ca init`: root, intermediate and server keys in the token, their certificates, the
/// first admin principal and its bundle, and the public files.
pub fn init(signet: &Signet, opts: &InitOptions) -> Result<InitReport> {
    if let Some(existing) = signet.store.ca()? {
        if !opts.force {
            return Err(Error::Conflict(format!(
                "a CA already exists in {} (created {}, root serial {}); nothing was changed. Use --force to replace it",
                signet.data.0.display(),
                crate::cli::format_time(existing.created),
                existing.root.serial
            )));
        }
    }
    let previous = signet.store.ca()?;
    let mut settings = signet.config.ca_settings();
    if let Some(td) = &opts.trust_domain {
        if !signet_pki::valid_dns_name(td) {
            return Err(Error::BadRequest(format!(
                "trust domain {td:?} is not a DNS-like name"
            )));
        }
        settings.trust_domain = td.clone();
    }
    let admin = opts
        .admin
        .clone()
        .unwrap_or_else(|| signet.config.server.admin.clone());
    if !signet_pki::valid_client_name(&admin) {
        return Err(Error::BadRequest(format!(
            "admin name {admin:?} is not a valid principal name"
        )));
    }
    let (dns, ips) = if opts.server_dns.is_empty() && opts.server_ips.is_empty() {
        (
            signet.config.server.server_dns.clone(),
            signet.config.server.server_ips.clone(),
        )
    } else {
        (opts.server_dns.clone(), opts.server_ips.clone())
    };
    let created = now();
    let mut timings = Vec::new();
    let backend = &signet.backend;
    let cfg = &signet.config.ca;

    let t = Instant::now();
    let root_spec = spec(&cfg.root_key_spec);
    let root_key = backend.generate(&ca_key_label("root", created), root_spec)?;
    let root_signer = signer(signet, &root_key.id.to_hex(), root_spec.name())?;
    let root_der = signet_pki::build_root(&settings, root_signer.clone())?;
    timings.push(("root key + certificate", t.elapsed()));

    let t = Instant::now();
    let int_spec = spec(&cfg.intermediate_key_spec);
    let int_key = backend.generate(&ca_key_label("intermediate", created), int_spec)?;
    let int_signer = signer(signet, &int_key.id.to_hex(), int_spec.name())?;
    let int_der =
        signet_pki::build_intermediate(&settings, int_signer.clone(), &root_der, root_signer)?;
    timings.push(("intermediate key + certificate", t.elapsed()));

    let ca = Ca::new(
        settings.clone(),
        int_signer,
        int_der.clone(),
        root_der.clone(),
    )?;

    let t = Instant::now();
    let server_spec = spec(&cfg.server_key_spec);
    let server_key = backend.generate(&ca_key_label("server-tls", created), server_spec)?;
    let server_public = backend.public_key(&server_key.id)?;
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
    let files = write_ca_files(signet, &ca, &server.der)?;
    let admin_files = write_client_bundle(signet, &ca, &admin, spec(&cfg.client_key_spec), None)?;
    timings.push(("admin bundle + files", t.elapsed()));

    let root_rec = ca_cert_record(&root_der, "root-ca")?;
    let int_rec = ca_cert_record(&int_der, "intermediate-ca")?;
    let record = CaRecord {
        created,
        root: CaKey {
            key_id: root_key.id.to_hex(),
            spec: root_spec.name().into(),
            serial: root_rec.serial.clone(),
        },
        intermediate: CaKey {
            key_id: int_key.id.to_hex(),
            spec: int_spec.name().into(),
            serial: int_rec.serial.clone(),
        },
        server: CaKey {
            key_id: server_key.id.to_hex(),
            spec: server_spec.name().into(),
            serial: server.serial.clone(),
        },
        trust_domain: settings.trust_domain.clone(),
        organization: settings.organization.clone(),
    };
    signet.store.put_cert(&root_rec)?;
    signet.store.put_cert(&int_rec)?;
    signet
        .store
        .put_cert(&cert_record(&server, Some("signet")))?;
    signet
        .store
        .put_cert(&cert_record(&admin_files.issued, Some(&admin)))?;
    signet.store.put_ca(&record)?;
    Principals(&signet.store).put(&admin, vec!["admin".into()], "ca init")?;
    // A fresh CRL (empty for a new CA).
    regenerate_crl(signet, &ca)?;

    // With --force, the old CA keys leave the token only once the new CA is in place.
    if let Some(old) = previous {
        for key in [&old.root, &old.intermediate, &old.server] {
            if let Some(id) = KeyId::from_hex(&key.key_id) {
                let _ = backend.destroy(&id);
            }
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
    Ok(InitReport { lines, timings })
}

fn write_ca_files(signet: &Signet, ca: &Ca, server_der: &[u8]) -> Result<Vec<String>> {
    let dir = signet.data.ca();
    std::fs::create_dir_all(&dir)?;
    let files = [
        ("root.pem", signet_pki::pem_cert(ca.root_der())),
        (
            "intermediate.pem",
            signet_pki::pem_cert(ca.intermediate_der()),
        ),
        ("chain.pem", ca.chain_pem()),
        ("server.pem", signet_pki::pem_cert(server_der)),
    ];
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        written.push(format!("wrote {}", path.display()));
    }
    Ok(written)
}

/// A client bundle written under `DATA/clients` (or `out` for the .p12).
#[derive(Debug)]
pub struct Bundle {
    /// The issued certificate.
    pub issued: Issued,
    /// "wrote …" lines.
    pub paths: Vec<String>,
}

/// Issues a client certificate for a key generated here, and writes `<name>.p12`,
/// `<name>.p12.pass`, `<name>.crt.pem` and `<name>.key.pem` (secrets 0600).
pub fn write_client_bundle(
    signet: &Signet,
    ca: &Ca,
    name: &str,
    key_spec: KeySpec,
    p12_out: Option<&std::path::Path>,
) -> Result<Bundle> {
    let req = LeafRequest {
        profile: Profile::Client,
        name: name.to_string(),
        dns: vec![],
        ips: vec![],
        ttl: None,
    };
    write_bundle(signet, ca, &req, key_spec, p12_out)
}

/// Issues for a key generated here and writes the bundle files.
pub fn write_bundle(
    signet: &Signet,
    ca: &Ca,
    req: &LeafRequest,
    key_spec: KeySpec,
    p12_out: Option<&std::path::Path>,
) -> Result<Bundle> {
    let (issued, pkcs8) = ca.issue_with_new_key(req, key_spec)?;
    let dir = signet.data.clients();
    signet_softhsm::mkdir_private(&dir).map_err(|e| Error::Internal(e.to_string()))?;
    let password = Pin::random(32);
    let p12 = signet_pki::pkcs12::write(
        &req.name,
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
    let key_pem =
        zeroize::Zeroizing::new(pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.to_vec())));
    let write = |path: &std::path::Path, bytes: &[u8]| {
        signet_softhsm::write_private(path, bytes).map_err(|e| Error::Internal(e.to_string()))
    };
    write(&p12_path, &p12)?;
    write(&pass_path, password.expose().as_bytes())?;
    write(&key_path, key_pem.as_bytes())?;
    std::fs::write(
        &crt_path,
        signet_pki::pem_cert(&issued.der) + &ca.chain_pem(),
    )?;
    signet
        .store
        .put_cert(&cert_record(&issued, Some(&req.name)))?;
    Ok(Bundle {
        issued,
        paths: [&p12_path, &pass_path, &crt_path, &key_path]
            .iter()
            .map(|p| format!("wrote {}", p.display()))
            .collect(),
    })
}

/// The CA record, or a clear error when `ca init` has not run.
pub fn record(signet: &Signet) -> Result<CaRecord> {
    signet.store.ca()?.ok_or_else(|| {
        Error::NotFound(
            "no CA yet: run `signet ca init` (or `signet serve`, which does it on first start)"
                .into(),
        )
    })
}

/// The issuing CA over its token key.
pub fn load(signet: &Signet) -> Result<Ca> {
    let record = record(signet)?;
    let der = |serial: &str| -> Result<Vec<u8>> {
        let rec = signet
            .store
            .cert(serial)?
            .ok_or_else(|| Error::Internal(format!("CA certificate {serial} missing")))?;
        STANDARD
            .decode(rec.der)
            .map_err(|e| Error::Internal(e.to_string()))
    };
    let mut settings = signet.config.ca_settings();
    settings.trust_domain = record.trust_domain.clone();
    settings.organization = record.organization.clone();
    let int_signer = signer(
        signet,
        &record.intermediate.key_id,
        &record.intermediate.spec,
    )?;
    Ok(Ca::new(
        settings,
        int_signer,
        der(&record.intermediate.serial)?,
        der(&record.root.serial)?,
    )?)
}

/// Issues from a CSR and records it.
pub fn issue_from_csr(
    signet: &Signet,
    ca: &Ca,
    req: &LeafRequest,
    csr: &[u8],
    issued_to: &str,
) -> Result<Issued> {
    let issued = ca.issue_from_csr(req, csr)?;
    signet
        .store
        .put_cert(&cert_record(&issued, Some(issued_to)))?;
    Ok(issued)
}

/// Revokes a certificate and regenerates the CRL.
pub fn revoke(signet: &Signet, ca: &Ca, serial: &str, reason: Option<&str>) -> Result<CertRecord> {
    let serial = serial
        .trim()
        .to_ascii_lowercase()
        .trim_start_matches("0x")
        .replace(':', "");
    if let Some(r) = reason {
        signet_pki::parse_reason(r)?;
    }
    let mut rec = signet
        .store
        .cert(&serial)?
        .ok_or_else(|| Error::NotFound(format!("no certificate with serial {serial}")))?;
    if rec.profile.ends_with("-ca") {
        return Err(Error::BadRequest(
            "CA certificates are not revoked through this call".into(),
        ));
    }
    if rec.status == CertStatus::Revoked {
        return Err(Error::Conflict(format!(
            "certificate {serial} is already revoked"
        )));
    }
    rec.status = CertStatus::Revoked;
    rec.revoked_at = Some(now());
    rec.reason = reason.map(str::to_string);
    signet.store.put_cert(&rec)?;
    regenerate_crl(signet, ca)?;
    Ok(rec)
}

/// Signs a new CRL with every revoked serial, stores it and writes `DATA/ca/crl.pem`. Returns DER.
pub fn regenerate_crl(signet: &Signet, ca: &Ca) -> Result<Vec<u8>> {
    let revoked: Vec<RevokedEntry> = signet
        .store
        .certs()?
        .into_iter()
        .filter(|c| c.status == CertStatus::Revoked)
        .map(|c| RevokedEntry {
            serial: c.serial,
            revoked_at: c.revoked_at.unwrap_or(0),
            reason: c.reason,
        })
        .collect();
    let number = signet.store.next_counter("crl_number")?;
    let der = ca.crl(&revoked, number)?;
    signet.store.put_meta(
        "crl",
        &CrlRecord {
            number,
            generated: now(),
            der: STANDARD.encode(&der),
        },
    )?;
    std::fs::create_dir_all(signet.data.ca())?;
    std::fs::write(signet.data.ca().join("crl.pem"), signet_pki::pem_crl(&der))?;
    Ok(der)
}

/// The stored CRL.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CrlRecord {
    /// CRL number.
    pub number: u64,
    /// Unix seconds.
    pub generated: i64,
    /// DER, base64.
    pub der: String,
}

/// The current CRL, regenerated when half its validity has passed. Returns DER.
pub fn current_crl(signet: &Signet, ca: &Ca) -> Result<Vec<u8>> {
    let half = (signet.config.ca.crl_validity_days * 24 * 3600 / 2) as i64;
    if let Some(rec) = signet.store.meta::<CrlRecord>("crl")? {
        if now() - rec.generated < half {
            return STANDARD
                .decode(rec.der)
                .map_err(|e| Error::Internal(e.to_string()));
        }
    }
    regenerate_crl(signet, ca)
}

/// Whether a serial is revoked (for the TLS layer).
pub fn is_revoked(signet: &Signet, serial: &str) -> Result<bool> {
    Ok(matches!(signet.store.cert(serial)?, Some(c) if c.status == CertStatus::Revoked))
}
