//! Signet's HSM boundary. Every private-key operation in Signet happens through this crate, and
//! only its backend modules talk to devices.
//!
//! - [`Backend`] is the small trait a key store implements: [`Pkcs11Backend`] on cryptoki
//!   (SoftHSM2, kryoptic, network HSMs, YubiKeys through ykcs11).
//! - [`sign`] is the one function every signature goes through: input checks, host hashing
//!   where the device cannot hash, low-S ECDSA, raw `r || s` <-> DER.
//! - [`Signer`] is the object-safe "sign with this key and algorithm" handle that the TLS stack
//!   and the certificate builder adapt to.
//! - Keys are generated in the device sensitive and never extractable; PINs live in [`Pin`].

mod backend;
pub mod der;
mod error;
mod import;
mod input;
mod pin;
pub mod piv;
pub mod pkcs11;
mod public;
mod signing;
mod spec;
pub mod verify;

pub use backend::{
    Attestation, Backend, BackendInfo, KeyId, KeyInfo, KeyRequest, KeyRole, Protection,
};
pub use error::{Error, Fault, Result};
pub use import::KeyMaterial;
pub use input::{EcdsaFormat, Payload, SignInput};
pub use pin::{check_private, Pin};
#[cfg(feature = "yubikey")]
pub use piv::PivBackend;
pub use piv::{ManagementKey, PinUse, PivConfig, PivSlots, TouchUse};
pub use pkcs11::{Pkcs11Backend, Pkcs11Config, Pkcs11Uri, TokenSelector, UriError};
pub use public::PublicKey;
pub use signing::{sign, sign_with_context, HsmSigner, Signer, MAX_CONTEXT};
pub use spec::{Family, Hash, KeySpec, SignatureAlgorithm, UnknownAlgorithm, UnknownSpec};
