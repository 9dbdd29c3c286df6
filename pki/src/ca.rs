//! The chain: a self-signed root (pathlen 1), an intermediate it signs (pathlen 0), and leaves
//! the intermediate signs. Every CA signature is made in the HSM.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use signet_hsm::{KeySpec, Signer};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::csr;
use crate::error::{Error, Result};
use crate::profile::{valid_client_name, valid_dns_name, Profile};
use crate::signing::HsmSigningKey;

/// Names and lifetimes of the CA.
#[derive(Debug, Clone)]
pub struct CaSettings {
    /// Organisation (O) in every subject.
    pub organization: String,
    /// SPIFFE trust domain of client identities.
    pub trust_domain: String,
    /// Root validity.
    pub root_validity: Duration,
    /// Intermediate validity.
    pub intermediate_validity: Duration,
    /// Longest lifetime of a server certificate (also its default).
    pub server_max_ttl: Duration,
    /// Longest lifetime of a client certificate (also its default).
    pub client_max_ttl: Duration,
    /// How long a CRL is valid (`nextUpdate - thisUpdate`).
    pub crl_validity: Duration,
    /// Where the CA certificates and CRLs are published (no trailing slash): certificates
    /// then carry CRL distribution points and AIA caIssuers URLs under it (see
    /// [`crate::publication`]).
    pub publication_url: Option<String>,
}

const DAY: u64 = 24 * 3600;

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            organization: "Signet".into(),
            trust_domain: "signet.local".into(),
            root_validity: Duration::from_secs(10 * 365 * DAY),
            intermediate_validity: Duration::from_secs(5 * 365 * DAY),
            server_max_ttl: Duration::from_secs(90 * DAY),
            client_max_ttl: Duration::from_secs(365 * DAY),
            crl_validity: Duration::from_secs(7 * DAY),
            publication_url: None,
        }
    }
}

impl CaSettings {
    /// The longest lifetime of a leaf of this profile.
    pub fn max_ttl(&self, profile: Profile) -> Duration {
        match profile {
            Profile::Server => self.server_max_ttl,
            Profile::Client => self.client_max_ttl,
        }
    }
}

/// What a leaf should say. The profile and these fields decide subject and SANs, never a CSR.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    /// Server or client.
    pub profile: Profile,
    /// Client identity, or the server's common name.
    pub name: String,
    /// DNS SANs (server profile only).
    pub dns: Vec<String>,
    /// IP SANs (server profile only).
    pub ips: Vec<IpAddr>,
    /// Requested lifetime; the profile's maximum when `None`. Longer than the maximum is refused.
    pub ttl: Option<Duration>,
}

/// An issued certificate and the facts kept about it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// Subject, as `O=…, CN=…`.
    pub subject: String,
    /// SANs as `DNS:…`, `IP:…`, `URI:…`.
    pub sans: Vec<String>,
    /// Profile it was issued under.
    pub profile: Profile,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
    /// The certificate, DER.
    pub der: Vec<u8>,
}

/// A revoked certificate as the CRL lists it.
#[derive(Debug, Clone)]
pub struct RevokedEntry {
    /// Serial, lower-case hex.
    pub serial: String,
    /// Unix seconds.
    pub revoked_at: i64,
    /// RFC 5280 reason name (e.g. `keyCompromise`).
    pub reason: Option<String>,
}

/// Random, positive, 128-bit serial number.
pub fn random_serial() -> Result<Vec<u8>> {
    let mut serial = [0u8; 16];
    getrandom::getrandom(&mut serial).map_err(|e| Error::Random(e.to_string()))?;
    serial[0] &= 0x7f;
    if serial[0] == 0 {
        serial[0] = 0x01; // keep all 128 bits significant and DER-minimal
    }
    Ok(serial.to_vec())
}

fn ca_params(
    settings: &CaSettings,
    common_name: &str,
    path_len: u8,
    validity: Duration,
    not_after_cap: Option<OffsetDateTime>,
) -> Result<CertificateParams> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, settings.organization.as_str());
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.serial_number = Some(SerialNumber::from_slice(&random_serial()?));
    params.not_before = now - time::Duration::minutes(1);
    let mut not_after = now + validity;
    if let Some(cap) = not_after_cap {
        not_after = not_after.min(cap);
    }
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.use_authority_key_identifier_extension = true;
    params.key_identifier_method = KeyIdMethod::Sha256;
    Ok(params)
}

/// Builds the self-signed root certificate (pathlen 1) on an HSM key. Returns DER.
pub fn build_root(settings: &CaSettings, root_key: Arc<dyn Signer>) -> Result<Vec<u8>> {
    let key = HsmSigningKey::new(root_key)?;
    let params = ca_params(
        settings,
        &format!("{} Root CA", settings.organization),
        1,
        settings.root_validity,
        None,
    )?;
    let cert = params.self_signed(&key).map_err(|e| key.explain(e))?;
    key.finish_certificate(cert.der().to_vec(), key.unwritten_spki())
}

/// Builds the intermediate (pathlen 0) on an HSM key, signed by the root's HSM key. Returns DER.
pub fn build_intermediate(
    settings: &CaSettings,
    intermediate_key: Arc<dyn Signer>,
    root_der: &[u8],
    root_key: Arc<dyn Signer>,
) -> Result<Vec<u8>> {
    let root_signing = HsmSigningKey::new(root_key)?;
    let root_not_after = not_after_of(root_der)?;
    let issuer = Issuer::from_ca_cert_der(&root_der.to_vec().into(), &root_signing)?;
    let subject = HsmSigningKey::new(intermediate_key)?;
    let mut params = ca_params(
        settings,
        &format!("{} Intermediate CA", settings.organization),
        0,
        settings.intermediate_validity,
        Some(root_not_after),
    )?;
    if let Some(base) = &settings.publication_url {
        crate::publication::point_at_issuer(
            &mut params,
            base,
            crate::publication::ROOT_CERT,
            crate::publication::ROOT_CRL,
        )?;
    }
    let cert = params
        .signed_by(&subject, &issuer)
        .map_err(|e| root_signing.explain(e))?;
    root_signing.finish_certificate(cert.der().to_vec(), subject.unwritten_spki())
}

/// A certificate parsed, or a parse error naming `what` it was.
fn parse_cert<'a>(
    der: &'a [u8],
    what: &'static str,
) -> Result<x509_parser::certificate::X509Certificate<'a>> {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| Error::Parse {
            what,
            detail: e.to_string(),
        })
}

fn not_after_of(der: &[u8]) -> Result<OffsetDateTime> {
    Ok(parse_cert(der, "CA certificate")?
        .validity()
        .not_after
        .to_datetime())
}

/// The issuing CA: the intermediate's HSM key and certificate, with the root above it.
#[derive(Debug)]
pub struct Ca {
    settings: CaSettings,
    key: HsmSigningKey,
    intermediate_der: Vec<u8>,
    root_der: Vec<u8>,
    intermediate_not_after: OffsetDateTime,
    /// The intermediate's serial, lower-case hex (its published files are named by it).
    intermediate_serial: String,
}

/// A key made in software to hand out (bootstrap, enrolment convenience), PKCS#8 DER, wiped on
/// drop.
pub type HandedOutKey = Zeroizing<Vec<u8>>;

impl Ca {
    /// The issuing CA over its HSM key and stored certificates.
    pub fn new(
        settings: CaSettings,
        intermediate_key: Arc<dyn Signer>,
        intermediate_der: Vec<u8>,
        root_der: Vec<u8>,
    ) -> Result<Self> {
        let key = HsmSigningKey::new(intermediate_key)?;
        if key.signer().public_key().spki_der() != spki_of(&intermediate_der)? {
            return Err(Error::Policy(
                "the intermediate certificate does not belong to the intermediate key".into(),
            ));
        }
        Ok(Ca {
            intermediate_not_after: not_after_of(&intermediate_der)?,
            intermediate_serial: serial_of(&intermediate_der)?,
            settings,
            key,
            intermediate_der,
            root_der,
        })
    }

    /// The settings.
    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    /// Intermediate certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate_der
    }

    /// The intermediate's serial, lower-case hex.
    pub fn intermediate_serial(&self) -> &str {
        &self.intermediate_serial
    }

    /// Root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// Intermediate then root, PEM: what a client appends to a leaf.
    pub fn chain_pem(&self) -> String {
        pem_cert(&self.intermediate_der) + &pem_cert(&self.root_der)
    }

    /// The SANs a request will get, in the `DNS:`/`IP:`/`URI:` form.
    pub fn granted_names(&self, req: &LeafRequest) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        match req.profile {
            Profile::Server => {
                names.extend(
                    req.dns
                        .iter()
                        .map(|d| format!("DNS:{}", d.to_ascii_lowercase())),
                );
                names.extend(req.ips.iter().map(|ip| format!("IP:{ip}")));
            }
            Profile::Client => {
                names.insert(format!("URI:{}", self.spiffe_id(&req.name)));
            }
        }
        names
    }

    /// `spiffe://<trust-domain>/<name>`.
    pub fn spiffe_id(&self, name: &str) -> String {
        format!("spiffe://{}/{}", self.settings.trust_domain, name)
    }

    fn check_request(&self, req: &LeafRequest) -> Result<Duration> {
        match req.profile {
            Profile::Client => {
                if !valid_client_name(&req.name) {
                    return Err(Error::Policy(format!(
                        "client name {:?} must be 1-64 of A-Z a-z 0-9 - _ .",
                        req.name
                    )));
                }
                if !req.dns.is_empty() || !req.ips.is_empty() {
                    return Err(Error::Policy(
                        "client certificates carry no DNS or IP names".into(),
                    ));
                }
            }
            Profile::Server => {
                if req.dns.is_empty() && req.ips.is_empty() {
                    return Err(Error::Policy(
                        "a server certificate needs at least one DNS name or IP address".into(),
                    ));
                }
                if let Some(bad) = req.dns.iter().find(|d| !valid_dns_name(d)) {
                    let hint = if bad.parse::<std::net::IpAddr>().is_ok() {
                        " (an IP address goes among the IP addresses)"
                    } else {
                        ""
                    };
                    return Err(Error::Policy(format!(
                        "{bad:?} is not a valid DNS name{hint}"
                    )));
                }
                if req.name.is_empty() || req.name.chars().count() > 64 {
                    return Err(Error::Policy("server name must be 1-64 characters".into()));
                }
            }
        }
        let max = self.settings.max_ttl(req.profile);
        match req.ttl {
            Some(ttl) if ttl > max => Err(Error::Policy(format!(
                "a lifetime of {} exceeds the {} profile's maximum of {}",
                span(ttl),
                req.profile,
                span(max)
            ))),
            Some(ttl) if ttl < Duration::from_secs(60) => {
                Err(Error::Policy("ttl must be at least 60s".into()))
            }
            Some(ttl) => Ok(ttl),
            None => Ok(max),
        }
    }

    /// Issues a leaf for a public key (SubjectPublicKeyInfo DER).
    pub fn issue(&self, req: &LeafRequest, spki_der: &[u8]) -> Result<Issued> {
        let ttl = self.check_request(req)?;
        let public = SubjectKey::parse(spki_der)?;
        let now = OffsetDateTime::now_utc();
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::OrganizationName,
            self.settings.organization.as_str(),
        );
        // A server certificate's CN, when it has one, is one of its SANs (the CA/Browser
        // Forum rule, which linters apply): a name that is not among them is left out.
        let cn = match req.profile {
            Profile::Client => true,
            Profile::Server => {
                req.dns.iter().any(|d| d.eq_ignore_ascii_case(&req.name))
                    || req.ips.iter().any(|ip| ip.to_string() == req.name)
            }
        };
        if cn {
            dn.push(DnType::CommonName, req.name.as_str());
        }
        params.distinguished_name = dn;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = (now + ttl).min(self.intermediate_not_after);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;
        let mut sans = Vec::new();
        match req.profile {
            Profile::Server => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                for dns in &req.dns {
                    params
                        .subject_alt_names
                        .push(SanType::DnsName(dns.to_ascii_lowercase().try_into()?));
                    sans.push(format!("DNS:{}", dns.to_ascii_lowercase()));
                }
                for ip in &req.ips {
                    params.subject_alt_names.push(SanType::IpAddress(*ip));
                    sans.push(format!("IP:{ip}"));
                }
            }
            Profile::Client => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                let uri = self.spiffe_id(&req.name);
                params
                    .subject_alt_names
                    .push(SanType::URI(uri.as_str().try_into()?));
                sans.push(format!("URI:{uri}"));
            }
        }
        if let Some(base) = &self.settings.publication_url {
            crate::publication::point_at_issuer(
                &mut params,
                base,
                &crate::publication::intermediate_cert(&self.intermediate_serial),
                &crate::publication::intermediate_crl(&self.intermediate_serial),
            )?;
        }
        let issuer = Issuer::from_ca_cert_der(&self.intermediate_der.clone().into(), &self.key)?;
        let der = match &public {
            SubjectKey::Known(public) => {
                let cert = params
                    .signed_by(public, &issuer)
                    .map_err(|e| self.key.explain(e))?;
                self.key.finish_certificate(cert.der().to_vec(), None)?
            }
            SubjectKey::MlDsa(stand_in) => {
                let cert = params
                    .signed_by(stand_in, &issuer)
                    .map_err(|e| self.key.explain(e))?;
                self.key
                    .finish_certificate(cert.der().to_vec(), Some(&stand_in.spki))?
            }
        };
        let subject = if cn {
            format!("O={}, CN={}", self.settings.organization, req.name)
        } else {
            format!("O={}", self.settings.organization)
        };
        Ok(Issued {
            serial: hex::encode(&serial),
            subject,
            sans,
            profile: req.profile,
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
            der,
        })
    }

    /// Issues from a CSR: checks its signature and key, refuses anything it asks beyond the
    /// profile, and takes only its public key.
    pub fn issue_from_csr(&self, req: &LeafRequest, csr_input: &[u8]) -> Result<Issued> {
        self.check_request(req)?;
        let checked = csr::check(csr_input, req.profile, &self.granted_names(req))?;
        self.issue(req, &checked.spki_der)
    }

    /// Issues for a key generated here in software to be handed to its holder (as PKCS#12). The
    /// returned PKCS#8 is wiped when dropped.
    pub fn issue_with_new_key(
        &self,
        req: &LeafRequest,
        spec: KeySpec,
    ) -> Result<(Issued, HandedOutKey)> {
        self.check_request(req)?;
        let alg = match spec {
            KeySpec::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeySpec::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeySpec::Ed25519 => &rcgen::PKCS_ED25519,
            other => {
                return Err(Error::Policy(format!(
                    "{other} keys are not generated for handing out; send a CSR instead"
                )))
            }
        };
        let pair = rcgen::KeyPair::generate_for(alg)?;
        let pkcs8 = Zeroizing::new(pair.serialize_der());
        let spki = rcgen::PublicKeyData::subject_public_key_info(&pair);
        drop(pair);
        let issued = self.issue(req, &spki)?;
        Ok((issued, pkcs8))
    }

    /// A v2 CRL with CRL number and AKI, signed by the intermediate in the HSM. Returns DER.
    pub fn crl(&self, revoked: &[RevokedEntry], crl_number: u64) -> Result<Vec<u8>> {
        signed_crl(
            &self.intermediate_der,
            &self.key,
            revoked,
            crl_number,
            self.settings.crl_validity,
        )
    }
}

/// The root's CRL (the ARL: the CA certificates the root revoked), signed by the root's HSM
/// key: what a relying party checking every level (`openssl verify -crl_check_all`) needs for
/// the intermediate. Returns DER.
pub fn build_arl(
    settings: &CaSettings,
    root_der: &[u8],
    root_key: Arc<dyn Signer>,
    revoked: &[RevokedEntry],
    crl_number: u64,
) -> Result<Vec<u8>> {
    build_crl(settings, "root", root_der, root_key, revoked, crl_number)
}

/// A CRL issued by the CA certificate `issuer_der` (named `what` in errors) with its HSM key:
/// the root's (see [`build_arl`]) or an intermediate's that is no longer the issuing one, for
/// the leaves it issued while it was. Returns DER.
pub fn build_crl(
    settings: &CaSettings,
    what: &str,
    issuer_der: &[u8],
    issuer_key: Arc<dyn Signer>,
    revoked: &[RevokedEntry],
    crl_number: u64,
) -> Result<Vec<u8>> {
    let key = HsmSigningKey::new(issuer_key)?;
    if key.signer().public_key().spki_der() != spki_of(issuer_der)? {
        return Err(Error::Policy(format!(
            "the {what} certificate does not belong to the {what} key"
        )));
    }
    signed_crl(issuer_der, &key, revoked, crl_number, settings.crl_validity)
}

/// Whether the certificate `der` was signed by the key of the certificate `issuer_der` (false
/// when either does not parse).
pub fn issued_by(der: &[u8], issuer_der: &[u8]) -> bool {
    match (
        parse_cert(der, "certificate"),
        parse_cert(issuer_der, "issuer"),
    ) {
        (Ok(cert), Ok(issuer)) => signed_with(&cert, issuer.public_key()),
        _ => false,
    }
}

/// Whether `cert` carries a valid signature by `key`: ML-DSA with Signet's verifier (pure, empty
/// context, RFC 9881; x509-parser's verification has no ML-DSA), the others with x509-parser's.
pub fn signed_with(
    cert: &x509_parser::certificate::X509Certificate<'_>,
    key: &x509_parser::x509::SubjectPublicKeyInfo<'_>,
) -> bool {
    match csr::ml_dsa_spec(&key.algorithm.algorithm.to_id_string()) {
        Some(spec) => {
            csr::names_ml_dsa(&cert.signature_algorithm, spec)
                && signet_hsm::PublicKey::from_ml_dsa(spec, &key.subject_public_key.data).is_ok_and(
                    |public| {
                        signet_hsm::verify::verify_ml_dsa(
                            &public,
                            cert.tbs_certificate.as_ref(),
                            &[],
                            &cert.signature_value.data,
                        )
                    },
                )
        }
        None => cert.verify_signature(Some(key)).is_ok(),
    }
}

/// A v2 CRL with CRL number and AKI, issued by the CA certificate `issuer_der` whose key is
/// `key`, valid for `validity`.
fn signed_crl(
    issuer_der: &[u8],
    key: &HsmSigningKey,
    revoked: &[RevokedEntry],
    crl_number: u64,
    validity: Duration,
) -> Result<Vec<u8>> {
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for entry in revoked {
        let serial = hex::decode(&entry.serial).map_err(|_| Error::Parse {
            what: "serial",
            detail: entry.serial.clone(),
        })?;
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&serial),
            revocation_time: OffsetDateTime::from_unix_timestamp(entry.revoked_at).unwrap_or(now),
            reason_code: entry.reason.as_deref().map(parse_reason).transpose()?,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now - time::Duration::minutes(1),
        next_update: now + validity,
        crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let issuer = Issuer::from_ca_cert_der(&issuer_der.to_vec().into(), key)?;
    let crl = params.signed_by(&issuer).map_err(|e| key.explain(e))?;
    key.finish_crl(crl.der().to_vec())
}

/// A lifetime as an operator reads it: days when it is whole days, else seconds.
fn span(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= DAY && secs % DAY == 0 {
        format!("{} days", secs / DAY)
    } else {
        format!("{secs}s")
    }
}

/// The reason names accepted for revocation, as RFC 5280 spells them.
pub const REVOCATION_REASONS: &[&str] = &[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "privilegeWithdrawn",
];

/// Parses an RFC 5280 revocation reason name.
pub fn parse_reason(name: &str) -> Result<RevocationReason> {
    Ok(match name {
        "unspecified" => RevocationReason::Unspecified,
        "keyCompromise" => RevocationReason::KeyCompromise,
        "cACompromise" => RevocationReason::CaCompromise,
        "affiliationChanged" => RevocationReason::AffiliationChanged,
        "superseded" => RevocationReason::Superseded,
        "cessationOfOperation" => RevocationReason::CessationOfOperation,
        "certificateHold" => RevocationReason::CertificateHold,
        "privilegeWithdrawn" => RevocationReason::PrivilegeWithdrawn,
        other => {
            return Err(Error::Policy(format!(
                "unknown revocation reason {other:?} (one of {})",
                REVOCATION_REASONS.join(", ")
            )))
        }
    })
}

/// A certificate's serial as its DER bytes in lower-case hex (as Signet's records name it).
pub fn serial_of(der: &[u8]) -> Result<String> {
    Ok(hex::encode(parse_cert(der, "certificate")?.raw_serial()))
}

/// A certificate's SubjectPublicKeyInfo, DER.
pub fn spki_of(der: &[u8]) -> Result<Vec<u8>> {
    Ok(parse_cert(der, "certificate")?.public_key().raw.to_vec())
}

/// A certificate as PEM.
pub fn pem_cert(der: &[u8]) -> String {
    pem_encode("CERTIFICATE", der)
}

/// A CRL as PEM.
pub fn pem_crl(der: &[u8]) -> String {
    pem_encode("X509 CRL", der)
}

/// PEM with LF line endings (the `pem` crate's default is CRLF, which tools on Unix show as
/// stray `^M` and which some compare byte for byte).
pub fn pem_encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The key a leaf certifies. rcgen (with ring) names only the key types it can sign with, so an
/// ML-DSA key goes through it under a stand-in algorithm and is put in place afterwards.
enum SubjectKey {
    Known(SubjectPublicKeyInfo),
    MlDsa(MlDsaStandIn),
}

impl SubjectKey {
    fn parse(spki_der: &[u8]) -> Result<Self> {
        use x509_parser::prelude::FromDer;
        let (_, spki) =
            x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
                Error::Parse {
                    what: "the public key",
                    detail: e.to_string(),
                }
            })?;
        match csr::ml_dsa_spec(&spki.algorithm.algorithm.to_id_string()) {
            Some(spec) => {
                signet_hsm::PublicKey::from_ml_dsa(spec, &spki.subject_public_key.data)?;
                Ok(SubjectKey::MlDsa(MlDsaStandIn {
                    spki: spki_der.to_vec(),
                    key: spki.subject_public_key.data.to_vec(),
                }))
            }
            None => Ok(SubjectKey::Known(SubjectPublicKeyInfo::from_der(spki_der)?)),
        }
    }
}

/// An ML-DSA subject key as rcgen sees it: its key bytes under Ed25519's algorithm identifier
/// (so rcgen writes every extension as for any leaf, the subject key identifier over the real
/// SubjectPublicKeyInfo), then [`HsmSigningKey::finish_certificate`] replaces the
/// SubjectPublicKeyInfo with the real one (RFC 9881) and signs the certificate again with the
/// same CA key. Under a classic CA key the first signature is discarded: one more signature in
/// the token per ML-DSA leaf.
struct MlDsaStandIn {
    spki: Vec<u8>,
    key: Vec<u8>,
}

impl rcgen::PublicKeyData for MlDsaStandIn {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.spki.clone()
    }

    fn der_bytes(&self) -> &[u8] {
        &self.key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}
