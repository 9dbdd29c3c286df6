//! Signet's certificate authority: a root and an intermediate whose keys live in the HSM, leaf
//! profiles, CSR checks, CRLs and PKCS#12 bundles.
//!
//! This crate never sees PKCS#11: it signs through [`signet_hsm::Signer`], adapted to the
//! certificate builder by [`HsmSigningKey`]. It stores nothing; the service keeps the records.

pub mod attestation;
mod ca;
pub mod csr;
mod error;
pub mod pkcs12;
mod profile;
pub mod publication;
mod signing;

pub use ca::{
    build_arl, build_crl, build_intermediate, build_root, issued_by, parse_reason, pem_cert,
    pem_crl, pem_encode, random_serial, serial_of, signed_with, spki_of, Ca, CaSettings,
    HandedOutKey, Issued, LeafRequest, RevokedEntry, REVOCATION_REASONS,
};
pub use error::{Error, Result};
pub use profile::{valid_client_name, valid_dns_name, Profile, CLIENT_NAME_PATTERN};
pub use signing::{rcgen_algorithm, HsmSigningKey};
