//! Certificate signing requests: parsed, their self-signature checked, and held to the profile.
//! The CSR contributes its public key and nothing else; what it asks for beyond that is refused
//! rather than silently dropped, so a client learns its request was wrong.

use std::collections::BTreeSet;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;

use signet_hsm::{KeySpec, PublicKey};

use crate::error::{Error, Result};
use crate::profile::Profile;

/// The largest CSR accepted (a 4096-bit RSA request is about 1.7 KB in PEM).
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// A checked CSR: its SubjectPublicKeyInfo, ready for issuance.
#[derive(Debug, Clone)]
pub struct CheckedCsr {
    /// SubjectPublicKeyInfo DER.
    pub spki_der: Vec<u8>,
    /// A description of the key, e.g. `ec-p256` or `rsa-3072`.
    pub key_description: String,
}

/// Decodes PEM (`CERTIFICATE REQUEST` / `NEW CERTIFICATE REQUEST`) or DER.
pub fn decode(input: &[u8]) -> Result<Vec<u8>> {
    if input.len() > MAX_CSR_BYTES {
        return Err(Error::CsrRefused(format!(
            "larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    let trimmed = input.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let pem =
            pem::parse(trimmed).map_err(|e| Error::CsrRefused(format!("not valid PEM: {e}")))?;
        if !matches!(pem.tag(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST") {
            return Err(Error::CsrRefused(format!(
                "PEM block is {:?}, expected CERTIFICATE REQUEST",
                pem.tag()
            )));
        }
        Ok(pem.into_contents())
    } else {
        Ok(input.to_vec())
    }
}

/// The ML-DSA parameter set of an SPKI algorithm OID (RFC 9881), `None` for anything else.
pub(crate) fn ml_dsa_spec(oid: &str) -> Option<KeySpec> {
    match oid {
        "2.16.840.1.101.3.4.3.17" => Some(KeySpec::MlDsa44),
        "2.16.840.1.101.3.4.3.18" => Some(KeySpec::MlDsa65),
        "2.16.840.1.101.3.4.3.19" => Some(KeySpec::MlDsa87),
        _ => None,
    }
}

/// Whether a signature algorithm identifier is RFC 9881's for `spec`: the parameter set's OID,
/// no parameters.
pub(crate) fn names_ml_dsa(
    algorithm: &x509_parser::x509::AlgorithmIdentifier<'_>,
    spec: KeySpec,
) -> bool {
    ml_dsa_spec(&algorithm.algorithm.to_id_string()) == Some(spec) && algorithm.parameters.is_none()
}

/// An ML-DSA CSR's self-signature: made with the same parameter set as its key (RFC 9881, the
/// algorithm identifier without parameters), pure ML-DSA with an empty context over the DER of
/// the CertificationRequestInfo.
fn verify_ml_dsa_csr(csr: &X509CertificationRequest<'_>, public: &PublicKey) -> Result<()> {
    let info = &csr.certification_request_info;
    let spec = public.spec();
    if !names_ml_dsa(&csr.signature_algorithm, spec) {
        return Err(Error::CsrRefused(format!(
            "a {spec} key's request signed with algorithm {}",
            csr.signature_algorithm.algorithm.to_id_string()
        )));
    }
    if !signet_hsm::verify::verify_ml_dsa(public, info.raw, &[], &csr.signature_value.data) {
        return Err(Error::CsrRefused(
            "its self-signature does not verify".into(),
        ));
    }
    Ok(())
}

/// Parses and checks a CSR for `profile`. `granted` are the SANs the profile will write (as
/// `DNS:x`, `IP:x`, `URI:x`): a CSR may repeat them, never add to them.
pub fn check(input: &[u8], profile: Profile, granted: &BTreeSet<String>) -> Result<CheckedCsr> {
    let der = decode(input)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| Error::CsrRefused(format!("not a PKCS#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::CsrRefused("trailing data after the request".into()));
    }
    let info = &csr.certification_request_info;
    let key_oid = info.subject_pki.algorithm.algorithm.to_id_string();
    // An ML-DSA key, read once: RFC 9881 has no parameters, and the key is FIPS 204's encoding.
    let ml_dsa_key = match ml_dsa_spec(&key_oid) {
        Some(spec) => {
            if info.subject_pki.algorithm.parameters.is_some() {
                return Err(Error::CsrRefused(format!(
                    "{spec} key with algorithm parameters (RFC 9881: absent)"
                )));
            }
            Some(
                PublicKey::from_ml_dsa(spec, &info.subject_pki.subject_public_key.data)
                    .map_err(|e| Error::CsrRefused(e.to_string()))?,
            )
        }
        None => None,
    };
    let key_description = match (&ml_dsa_key, info.subject_pki.parsed()) {
        (Some(public), _) => public.spec().name().to_string(),
        (None, Ok(ParsedKey::EC(point))) => {
            let curve = info
                .subject_pki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match (curve.as_deref(), point.key_size()) {
                (Some("1.2.840.10045.3.1.7"), _) => "ec-p256".to_string(),
                (Some("1.3.132.0.34"), _) => "ec-p384".to_string(),
                (other, _) => {
                    let oid = other.unwrap_or("(none)");
                    let name = match oid {
                        "1.3.132.0.35" => "P-521 (secp521r1)",
                        "1.3.132.0.10" => "secp256k1",
                        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
                        "1.3.36.3.3.2.8.1.1.11" => "brainpoolP384r1",
                        "1.3.36.3.3.2.8.1.1.13" => "brainpoolP512r1",
                        _ => "",
                    };
                    let named = if name.is_empty() {
                        oid.to_string()
                    } else {
                        format!("{name}, OID {oid}")
                    };
                    return Err(Error::CsrRefused(format!(
                        "EC key on an unsupported curve: {named} (supported: P-256, P-384)"
                    )));
                }
            }
        }
        (None, Ok(ParsedKey::RSA(rsa))) => {
            let bits = rsa.key_size();
            if bits < 2048 {
                return Err(Error::CsrRefused(format!(
                    "RSA key of {bits} bits is too weak (2048 at least)"
                )));
            }
            format!("rsa-{bits}")
        }
        (None, _) if key_oid == "1.3.101.112" => "ed25519".to_string(),
        // RFC 9909's SLH-DSA OIDs (2.16.840.1.101.3.4.3.20 to .31).
        (None, _)
            if key_oid
                .strip_prefix("2.16.840.1.101.3.4.3.")
                .and_then(|arc| arc.parse::<u8>().ok())
                .is_some_and(|arc| (20..=31).contains(&arc)) =>
        {
            return Err(Error::CsrRefused(format!(
                "an SLH-DSA key ({key_oid}): Signet issues no certificate for SLH-DSA keys"
            )))
        }
        _ => {
            return Err(Error::CsrRefused(format!(
                "unsupported key algorithm {key_oid}"
            )))
        }
    };

    // After the key check: the verifier refuses weak keys too, and the key's own error is clearer.
    match &ml_dsa_key {
        // x509-parser verifies with ring, which has no ML-DSA: signet-hsm's verifier does.
        Some(public) => verify_ml_dsa_csr(&csr, public)?,
        None => csr
            .verify_signature()
            .map_err(|_| Error::CsrRefused("its self-signature does not verify".into()))?,
    }

    if let Some(extensions) = csr.requested_extensions() {
        for ext in extensions {
            match ext {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for name in &san.general_names {
                        let wanted = match name {
                            GeneralName::DNSName(d) => format!("DNS:{}", d.to_ascii_lowercase()),
                            GeneralName::URI(u) => format!("URI:{u}"),
                            GeneralName::IPAddress(b) => match b.len() {
                                4 => format!(
                                    "IP:{}",
                                    std::net::Ipv4Addr::from(
                                        <[u8; 4]>::try_from(*b).unwrap_or_default()
                                    )
                                ),
                                16 => format!(
                                    "IP:{}",
                                    std::net::Ipv6Addr::from(
                                        <[u8; 16]>::try_from(*b).unwrap_or_default()
                                    )
                                ),
                                _ => "IP:(malformed)".into(),
                            },
                            other => format!("{other:?}"),
                        };
                        if !granted.contains(&wanted) {
                            return Err(Error::CsrRefused(format!(
                                "it asks for the name {wanted}, which the {profile} profile does not grant (granted: {})",
                                granted.iter().cloned().collect::<Vec<_>>().join(", ")
                            )));
                        }
                    }
                }
                ParsedExtension::BasicConstraints(bc) if bc.ca => {
                    return Err(Error::CsrRefused("it asks to be a CA (CA:TRUE)".into()));
                }
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    let allowed = match profile {
                        Profile::Server => eku.server_auth,
                        Profile::Client => eku.client_auth,
                    };
                    let extra = eku.any
                        || eku.code_signing
                        || eku.email_protection
                        || eku.time_stamping
                        || eku.ocsp_signing
                        || !eku.other.is_empty()
                        || (profile == Profile::Server && eku.client_auth)
                        || (profile == Profile::Client && eku.server_auth);
                    if extra || !allowed {
                        return Err(Error::CsrRefused(format!(
                            "it asks for extended key usages the {profile} profile does not grant"
                        )));
                    }
                }
                ParsedExtension::KeyUsage(ku) if ku.key_cert_sign() || ku.crl_sign() => {
                    return Err(Error::CsrRefused(
                        "it asks for certificate or CRL signing key usage".into(),
                    ));
                }
                _ => {}
            }
        }
    }

    Ok(CheckedCsr {
        spki_der: info.subject_pki.raw.to_vec(),
        key_description,
    })
}
