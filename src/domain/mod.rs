//! The domain: keys, principals, the certificate authority, tokens and the audit log. Each
//! module holds its rules; none knows about HTTP, the command line, or which database engine
//! or key store is behind the traits it uses.

pub mod audit;
pub mod authority;
pub mod keys;
pub mod principals;
pub mod published;
pub mod rights;
pub mod tokens;
