//! Certificate profiles: what a leaf of each kind may say.

use std::fmt;
use std::str::FromStr;

/// The kinds of leaf certificate Signet issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// TLS server: EKU serverAuth, DNS and IP SANs.
    Server,
    /// TLS client: EKU clientAuth, identity as `spiffe://<trust-domain>/<name>` and CN.
    Client,
}

impl Profile {
    /// The profile's name in CLI, config and API.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Server => "server",
            Profile::Client => "client",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "server" => Ok(Profile::Server),
            "client" => Ok(Profile::Client),
            other => Err(crate::Error::Policy(format!(
                "unknown profile {other:?} (expected server or client)"
            ))),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Profile {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl Profile {
    /// Every profile.
    pub const ALL: [Profile; 2] = [Profile::Server, Profile::Client];
}

/// [`valid_client_name`] as a regular expression (for API descriptions).
pub const CLIENT_NAME_PATTERN: &str = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$";

/// Whether `name` is acceptable as a client identity: the last path segment of a SPIFFE ID.
pub fn valid_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
}

/// Whether `name` is a plausible DNS name (letters, digits, hyphens, dots; optional leading `*.`).
/// A name whose last label is all digits is not one (no top-level domain is): `127.0.0.1` is an
/// address, which belongs in an IP SAN, and some clients would match it as one.
pub fn valid_dns_name(name: &str) -> bool {
    let name = name.strip_prefix("*.").unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && !name
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for good in [
            "localhost",
            "api.example.com",
            "*.svc.internal",
            "a-1.b2",
            "x.example",
        ] {
            assert!(valid_dns_name(good), "{good}");
        }
        for bad in [
            "",
            "*",
            "*.",
            "a..b",
            "-a.example",
            "a_b.example",
            "localhost.",
            "127.0.0.1",
            "*.0.0.1",
            "10.1",
            "host.123",
        ] {
            assert!(!valid_dns_name(bad), "{bad}");
        }
    }
}
