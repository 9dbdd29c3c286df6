//! `libsignet_pkcs11.so`: Signet as a network HSM. Applications that speak PKCS#11 (OpenSSL
//! through its engine or provider, OpenSSH, GnuTLS, NSS, Java, pkcs11-tool) load this module
//! and see one token whose objects are the keys their client certificate may use on a Signet
//! server; every signature is made by the server in its real token, authorized by the
//! certificate's scopes and written to Signet's audit log. Keys never reach the application
//! or the module.
//!
//! Settings come from the file `SIGNET_PKCS11_CONF` names ([`config`]).

#![allow(non_snake_case)] // the PKCS#11 entry points keep their C names

pub mod config;
#[allow(unsafe_code)]
mod ffi;
pub mod generate;
pub mod mechanism;
pub mod objects;
pub mod token;

pub use ffi::SLOT;
