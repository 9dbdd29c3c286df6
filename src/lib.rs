//! Signet: a hardware-backed key service. Private keys are generated in a key store (a PKCS#11
//! token) and never leave it; Signet signs with them, runs a three-level CA on them, issues
//! tokens, and exposes all of it over a TLS 1.3, mutual-TLS-only HTTP API.
//!
//! The modules are layers that only point down:
//!
//! | layer | modules |
//! |---|---|
//! | front | [`api`] (axum routes, problem documents), [`tls`] (rustls), [`cli`] |
//! | use cases | [`service`]: one method per operation, the [`service::ACTIONS`] table, audit, metrics |
//! | domain | [`domain`]: keys, principals, authority (CA), tokens (JWT/JWKS), audit |
//! | store | [`store`]: traits per aggregate, typed records, sled and the audit journal |
//! | config, errors | [`config`], [`error`] |
//! | support | [`support`]: time, randomness, private files, log-safe text |

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod service;
pub mod store;
pub mod support;
pub mod tls;

pub use domain::audit;
