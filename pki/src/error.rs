//! The PKI crate's error type.

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while building the chain or issuing certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The CSR cannot be used; the text says why (bad signature, weak key, unwanted extension…).
    #[error("certificate request refused: {0}")]
    CsrRefused(String),
    /// The request asks for something the profile does not allow.
    #[error("request refused: {0}")]
    Policy(String),
    /// A certificate or CRL could not be parsed.
    #[error("cannot parse {what}: {detail}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// The HSM refused to sign or to give a public key.
    #[error(transparent)]
    Hsm(#[from] signet_hsm::Error),
    /// The certificate builder failed.
    #[error("the certificate builder failed")]
    Builder(#[from] rcgen::Error),
    /// The operating system's random number generator failed.
    #[error("the random number generator failed: {0}")]
    Random(String),
    /// PKCS#12 writing failed.
    #[error("PKCS#12: {0}")]
    Pkcs12(String),
    /// A PKCS#12 file cannot be imported; the text says why and what to do.
    #[error("cannot import the PKCS#12 file: {0}")]
    Pkcs12Import(String),
}
