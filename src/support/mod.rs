//! The leaf of the crate: time, randomness, private files and log-safe text. Nothing here
//! imports from any other module of Signet.

pub mod files;
pub mod logfmt;
pub mod random;
pub mod text;
pub mod time;
