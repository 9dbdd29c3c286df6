//! Signet's HSM boundary. Every private-key operation in Signet happens through this crate, and
//! only this crate talks to PKCS#11.
//!
//! - [`Backend`] is the small trait a key store implements; [`Pkcs11Backend`] implements it on
//!   cryptoki (SoftHSM2, network HSMs, YubiKeys through ykcs11).
//! - [`Signer`] is the object-safe "sign with this key and algorithm" handle that the TLS stack and
//!   the certificate builder adapt to.
//! - Keys are generated in the token sensitive and never extractable; PINs live in [`Pin`].

mod backend;
pub mod der;
mod error;
mod pin;
pub mod pkcs11;
mod public;
mod spec;

pub use backend::{
    Backend, BackendInfo, EcdsaFormat, HsmSigner, KeyId, KeyInfo, Protection, SignInput, Signer,
};
pub use error::{Error, Result};
pub use pin::Pin;
pub use pkcs11::{Pkcs11Backend, Pkcs11Config, TokenSelector};
pub use public::PublicKey;
pub use spec::{Hash, KeySpec, SignatureAlgorithm, UnknownAlgorithm, UnknownSpec};
