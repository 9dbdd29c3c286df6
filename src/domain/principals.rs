//! Principals (the identities in client certificates), their scopes, and what a set of scopes
//! allows. Domain rules about who may grant what live here.

use crate::error::{Error, Result};
use crate::store::{Principal, Store};
use crate::support::text::echo;

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
    "status:read",
];

/// The scope that holds every scope.
pub const ADMIN: &str = "admin";

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

/// [`valid_scope`] as a regular expression (ECMA-262, for the API description).
pub fn scope_pattern() -> String {
    format!(
        "^(?:{}|keys:(?:sign|verify):[A-Za-z0-9._*-]{{1,64}}|tokens:scope:[A-Za-z0-9._*:/-]{{1,64}})$",
        FIXED_SCOPES.join("|")
    )
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

/// What a set of scopes allows.
#[derive(Debug, Clone, Copy)]
pub struct Scopes<'a>(pub &'a [String]);

impl Scopes<'_> {
    /// Holds `scope` (admin holds every scope).
    pub fn has(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == ADMIN || s == scope)
    }

    /// May sign with the key `name`.
    pub fn can_sign(&self, key: &str) -> bool {
        self.0.iter().any(|s| {
            s == ADMIN
                || s.strip_prefix("keys:sign:")
                    .is_some_and(|p| pattern_matches(p, key))
        })
    }

    /// May verify with the key `name` (signing rights include verifying).
    pub fn can_verify(&self, key: &str) -> bool {
        self.can_sign(key)
            || self.0.iter().any(|s| {
                s == "keys:read"
                    || s == "keys:verify"
                    || s.strip_prefix("keys:verify:")
                        .is_some_and(|p| pattern_matches(p, key))
            })
    }

    /// May put `scope` in a token it asks for.
    pub fn can_request_token_scope(&self, scope: &str) -> bool {
        self.0.iter().any(|s| {
            s == ADMIN
                || s.strip_prefix("tokens:scope:")
                    .is_some_and(|p| pattern_matches(p, scope))
        })
    }
}

/// A valid principal name: the last path segment of a SPIFFE ID.
pub fn check_name(name: &str) -> Result<()> {
    if signet_pki::valid_client_name(name) {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "principal name {:?} must be 1-64 of A-Z a-z 0-9 - _ .",
            echo(name)
        )))
    }
}

/// Checks and normalises scopes (sorted, without duplicates).
pub fn check_scopes(scopes: Vec<String>) -> Result<Vec<String>> {
    if let Some(bad) = scopes.iter().find(|s| !valid_scope(s)) {
        return Err(Error::BadRequest(format!(
            "unknown scope {:?}; scopes are {} and keys:sign:<pattern>, keys:verify:<pattern>, tokens:scope:<pattern>",
            echo(bad),
            FIXED_SCOPES.join(", ")
        )));
    }
    let mut scopes = scopes;
    scopes.sort();
    scopes.dedup();
    Ok(scopes)
}

/// Principal operations over a store.
#[derive(Debug, Clone, Copy)]
pub struct Principals<'a>(pub &'a dyn Store);

impl Principals<'_> {
    /// A principal.
    pub fn get(&self, name: &str) -> Result<Option<Principal>> {
        self.0.principal(name)
    }

    /// All principals.
    pub fn list(&self) -> Result<Vec<Principal>> {
        self.0.principals()
    }

    /// Creates or replaces a principal (who may do so is the service's question, answered by
    /// [`super::rights`]).
    pub fn put(&self, name: &str, scopes: Vec<String>, created_by: &str) -> Result<Principal> {
        check_name(name)?;
        let scopes = check_scopes(scopes)?;
        let principal = Principal {
            name: name.to_string(),
            scopes,
            created: crate::support::time::now(),
            created_by: created_by.to_string(),
        };
        self.0.put_principal(&principal)?;
        Ok(principal)
    }

    /// Removes a principal.
    pub fn remove(&self, name: &str) -> Result<()> {
        if self.0.remove_principal(name)? {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "no principal named {:?}",
                echo(name)
            )))
        }
    }
}

#[cfg(test)]
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
        let held = vec!["keys:sign:m-*".to_string()];
        let s = Scopes(&held);
        assert!(s.can_sign("m-1") && s.can_verify("m-1") && !s.can_sign("other"));
        assert!(!s.has("keys:read"));
    }
}
