//! Signet: a hardware-backed key service. Private keys are generated in a PKCS#11 token and never
//! leave it; Signet signs with them, runs a three-level CA on them, and exposes both over a
//! TLS 1.3, mutual-TLS-only HTTP API.
//!
//! A request's path: [`api`] (axum routes, problem documents) → [`authz`] (principal and scopes
//! from the verified client certificate) → [`keys`] / [`authority`] → `signet-hsm` (the token),
//! with metadata in [`store`] and every decision in [`audit`].

pub mod api;
pub mod audit;
pub mod authority;
pub mod authz;
pub mod cli;
pub mod config;
pub mod error;
pub mod keys;
pub mod principals;
pub mod runtime;
pub mod store;
pub mod tls;
pub mod tokens;
