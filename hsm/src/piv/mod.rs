//! The YubiKey PIV backend (the `yubikey` crate over PC/SC). The only module that names
//! `yubikey` types.
//!
//! - Each key lives in a PIV slot: Signet's named keys (and their versions) in the retired slots
//!   82–95, the CA, server and audit keys in the slots the configuration names. A key's id is
//!   its slot and the first 16 bytes of the SHA-256 of its public key, so an id never silently
//!   names a later key put in the same slot.
//! - A slot is taken when it holds a certificate: at generation the backend writes a
//!   self-signed certificate (signed on the card) whose common name is the key's label; that also
//!   makes the key visible to ykcs11 and OpenSC. Destroying overwrites the key with a fresh one
//!   and deletes the certificate, so the old key can never sign again and the slot is free.
//! - The card is one exclusive handle: calls are serialised, and a card that was pulled or
//!   reset is opened again (once per call). A wrong PIN is never retried.
//! - Hashing is on the host; RS256 gets its PKCS#1 v1.5 padding (`slots.rs`) for PIV's raw RSA.
//!
//! `config.rs` holds what the backend is told, `error.rs` the error mapping, `slots.rs` the
//! slot, algorithm and key-id rules.

//!
//! The backend needs the `yubikey` cargo feature (on by default; it links libpcsclite); its
//! settings are always there, so a configuration that names it reads the same either way.

#[cfg(feature = "yubikey")]
mod backend;
#[cfg(feature = "yubikey")]
mod cert;
mod config;
#[cfg(feature = "yubikey")]
mod error;
#[cfg(feature = "yubikey")]
mod slots;

#[cfg(feature = "yubikey")]
pub use self::backend::PivBackend;
pub use self::config::{ManagementKey, PinUse, PivConfig, PivSlots, TouchUse};
