//! Publication: the names of the CA files relying parties fetch (certificates and CRLs, DER)
//! and the extensions that point certificates at them — CRL distribution points (RFC 5280
//! 4.2.1.13) and the authority information access `caIssuers` URL (4.2.2.1).

use rcgen::{CertificateParams, CrlDistributionPoint, CustomExtension};
use x509_cert::der::asn1::Ia5String;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Encode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};

use crate::error::{Error, Result};

/// The root certificate's file.
pub const ROOT_CERT: &str = "root.crt";
/// The root's CRL (the ARL).
pub const ROOT_CRL: &str = "root.crl";

/// An intermediate certificate's file (by serial: a rotation makes another one, and the
/// leaves of the previous one keep pointing at their issuer).
pub fn intermediate_cert(serial_hex: &str) -> String {
    format!("intermediate-{serial_hex}.crt")
}

/// An intermediate's CRL.
pub fn intermediate_crl(serial_hex: &str) -> String {
    format!("intermediate-{serial_hex}.crl")
}

/// `id-ad-caIssuers`.
const CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");
/// `id-pe-authorityInfoAccess`.
const AIA: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];

/// Points `params` at its issuer's CRL and certificate under `base` (no trailing slash).
pub fn point_at_issuer(
    params: &mut CertificateParams,
    base: &str,
    issuer_cert: &str,
    issuer_crl: &str,
) -> Result<()> {
    params.crl_distribution_points = vec![CrlDistributionPoint {
        uris: vec![format!("{base}/{issuer_crl}")],
    }];
    let uri = format!("{base}/{issuer_cert}");
    let location = Ia5String::new(&uri).map_err(|e| Error::Policy(format!("{uri:?}: {e}")))?;
    let aia = AuthorityInfoAccessSyntax(vec![AccessDescription {
        access_method: CA_ISSUERS,
        access_location: GeneralName::UniformResourceIdentifier(location),
    }]);
    let der = aia
        .to_der()
        .map_err(|e| Error::Policy(format!("encoding the AIA extension: {e}")))?;
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(AIA, der));
    Ok(())
}
