//! Principals (the identities in client certificates) and their scopes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{all_json, get_json, put_json, Store};

/// The scopes a principal can hold. `keys:sign:<pattern>` and `keys:verify:<pattern>` take a
/// key-name pattern where `*` matches any run of characters; `tokens:scope:<pattern>` bounds the
/// scope values a principal may put in the tokens it asks for.
pub const FIXED_SCOPES: &[&str] = &[
    "admin",
    "keys:create",
    "keys:manage",
    "keys:read",
    "keys:verify",
    "certs:issue",
    "certs:revoke",
    "certs:read",
    "principals:manage",
    "tokens:issue",
    "tokens:issue-on-behalf",
    "tokens:introspect",
    "tokens:revoke",
    "tokens:admin",
    "audit:read",
];

/// A principal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Principal {
    /// Name (the last segment of its SPIFFE ID).
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created: i64,
    /// Who created it.
    pub created_by: String,
}

/// Checks a scope's syntax.
pub fn valid_scope(scope: &str) -> bool {
    if FIXED_SCOPES.contains(&scope) {
        return true;
    }
    for (prefix, extra) in [
        ("keys:sign:", &b""[..]),
        ("keys:verify:", &b""[..]),
        // Token scopes are free-form values such as `orders:read` or `api/v2`.
        ("tokens:scope:", &b":/"[..]),
    ] {
        if let Some(pattern) = scope.strip_prefix(prefix) {
            return !pattern.is_empty()
                && pattern.len() <= 64
                && pattern.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'-' | b'_' | b'.' | b'*')
                        || extra.contains(&b)
                });
        }
    }
    false
}

/// Glob match with `*` only.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            let Some(rest) = name.strip_prefix(head) else {
                return false;
            };
            // Try every split point for the remaining pattern.
            (0..=rest.len()).any(|i| rest.is_char_boundary(i) && pattern_matches(tail, &rest[i..]))
        }
    }
}

/// Principal storage.
#[derive(Debug, Clone, Copy)]
pub struct Principals<'a>(pub &'a Store);

impl Principals<'_> {
    /// A principal.
    pub fn get(&self, name: &str) -> Result<Option<Principal>> {
        Ok(get_json(self.0.principals_tree(), "principals", name)?)
    }

    /// All principals.
    pub fn list(&self) -> Result<Vec<Principal>> {
        Ok(all_json(self.0.principals_tree(), "principals")?)
    }

    /// Creates or replaces a principal, durably.
    pub fn put(&self, name: &str, scopes: Vec<String>, created_by: &str) -> Result<Principal> {
        if !signet_pki::valid_client_name(name) {
            return Err(Error::BadRequest(format!(
                "principal name {name:?} must be 1-64 of A-Z a-z 0-9 - _ ."
            )));
        }
        if let Some(bad) = scopes.iter().find(|s| !valid_scope(s)) {
            return Err(Error::BadRequest(format!(
                "unknown scope {bad:?}; scopes are {} and keys:sign:<pattern>, keys:verify:<pattern>, tokens:scope:<pattern>",
                FIXED_SCOPES.join(", ")
            )));
        }
        let mut scopes = scopes;
        scopes.sort();
        scopes.dedup();
        let principal = Principal {
            name: name.to_string(),
            scopes,
            created: crate::keys::now(),
            created_by: created_by.to_string(),
        };
        put_json(self.0.principals_tree(), name, &principal)?;
        self.0.flush()?;
        Ok(principal)
    }

    /// Removes a principal. Returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let existed = self
            .0
            .principals_tree()
            .remove(name)
            .map_err(crate::store::StoreError::from)?
            .is_some();
        self.0.flush()?;
        Ok(existed)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("billing-*", "billing-eu"));
        assert!(!pattern_matches("billing-*", "payroll"));
        assert!(pattern_matches("a*c*e", "abcde"));
        assert!(!pattern_matches("a*c*e", "abcd"));
        assert!(pattern_matches("exact", "exact"));
        assert!(!pattern_matches("exact", "exactly"));
    }

    #[test]
    fn scopes() {
        assert!(valid_scope("admin"));
        assert!(valid_scope("keys:sign:billing-*"));
        assert!(!valid_scope("keys:sign:"));
        assert!(!valid_scope("root"));
        assert!(!valid_scope("keys:sign:a/b"));
        assert!(valid_scope("tokens:scope:orders:*"));
        assert!(valid_scope("tokens:scope:api/v2"));
    }
}
