//! Rights never grow by an operation. The rules that relate a caller to *another* principal —
//! who may issue a certificate for whom, grant what, change or delete whom, and which changes
//! would leave nobody able to administer the service — in one place, as pure functions over
//! the records involved. The service asks them before any change is made (and audits their
//! refusals); nothing else decides these questions.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::principals::{pattern_matches, ADMIN};
use crate::store::{CertKind, CertRecord, CertStatus, Principal};
use crate::support::text::echo;

/// A certificate counts towards a usable admin only while it has this long to live: a
/// certificate about to expire does not keep the service administrable (a 60-second admin
/// certificate cannot stand in for the long-lived one being revoked).
pub const ADMIN_MARGIN_SECS: i64 = 24 * 3600;

/// Principal names the service keeps for itself: `signet` signs the service's own audit
/// records.
pub const RESERVED_PRINCIPALS: &[&str] = &[super::audit::SERVICE];

/// Who is acting, as far as rights go.
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    /// The operator on the host (CLI) or the service itself: holds every right.
    Operator,
    /// A network principal, with the scopes it holds now.
    Principal {
        /// Its name.
        name: &'a str,
        /// Its scopes.
        scopes: &'a [String],
    },
}

impl Actor<'_> {
    fn scopes(&self) -> Option<&[String]> {
        match self {
            Actor::Operator => None,
            Actor::Principal { scopes, .. } => Some(scopes),
        }
    }

    fn name(&self) -> &str {
        match self {
            Actor::Operator => "the operator",
            Actor::Principal { name, .. } => name,
        }
    }

    fn is_admin(&self) -> bool {
        self.scopes()
            .is_none_or(|s| s.iter().any(|scope| scope == ADMIN))
    }
}

/// Whether holding `held` gives at least what `wanted` gives. Admin covers everything; a
/// pattern scope covers another when every key name (or token scope) the other matches, it
/// matches too: equal patterns, `*`, or a `prefix*` whose prefix starts the other.
pub fn covers(held: &str, wanted: &str) -> bool {
    if held == ADMIN || held == wanted {
        return true;
    }
    for family in ["keys:sign:", "keys:verify:", "tokens:scope:"] {
        if let (Some(h), Some(w)) = (held.strip_prefix(family), wanted.strip_prefix(family)) {
            return pattern_covers(h, w);
        }
    }
    // `keys:verify` (any key) covers `keys:verify:<pattern>`.
    held == "keys:verify" && wanted.starts_with("keys:verify:")
}

/// Every name `wanted` matches, `held` matches (conservatively: `held` is `*`, equal, or a
/// single trailing `*` whose prefix starts `wanted` before any of its own `*`).
fn pattern_covers(held: &str, wanted: &str) -> bool {
    if held == "*" || held == wanted {
        return true;
    }
    match held.strip_suffix('*') {
        Some(prefix) if !prefix.contains('*') => {
            let literal = wanted.split('*').next().unwrap_or("");
            literal.starts_with(prefix) || (!wanted.contains('*') && pattern_matches(held, wanted))
        }
        _ => false,
    }
}

/// The scopes of `wanted` that `actor` does not cover (empty: it covers them all).
pub fn uncovered(actor: Actor<'_>, wanted: &[String]) -> Vec<String> {
    let Some(held) = actor.scopes() else {
        return Vec::new();
    };
    wanted
        .iter()
        .filter(|w| !held.iter().any(|h| covers(h, w)))
        .cloned()
        .collect()
}

fn refusal(actor: Actor<'_>, missing: &[String], what: &str) -> String {
    format!(
        "{} lacks {} {}, which {what} needs: no operation gives a caller more rights than it holds",
        echo(actor.name()),
        if missing.len() == 1 {
            "the scope"
        } else {
            "the scopes"
        },
        missing
            .iter()
            .map(|s| echo(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// May `actor` issue a client certificate for `principal` (whose holder then acts with its
/// scopes)? Only with every scope the principal holds.
pub fn may_issue_client_certificate(actor: Actor<'_>, principal: &Principal) -> Result<(), String> {
    let missing = uncovered(actor, &principal.scopes);
    if missing.is_empty() {
        return Ok(());
    }
    Err(refusal(
        actor,
        &missing,
        &format!("a certificate for {}", echo(&principal.name)),
    ))
}

/// May `actor` issue a server certificate for these names? The names the service itself
/// answers on (its own certificate's SANs) are reserved to admin: anyone else could
/// impersonate the server to its clients. A name is taken by the service when a client that
/// connects to the service by one of its names would accept it: the same name (case and a
/// final dot aside), a wildcard covering it or covered by the service's own wildcard, or the
/// same address written as an IPv4-mapped IPv6 one (which some clients compare equal).
pub fn may_issue_server_certificate(
    actor: Actor<'_>,
    dns: &[String],
    ips: &[IpAddr],
    own_sans: &[String],
) -> Result<(), String> {
    if actor.is_admin() {
        return Ok(());
    }
    let own_dns: Vec<String> = own_sans
        .iter()
        .filter_map(|s| s.strip_prefix("DNS:").or_else(|| s.strip_prefix("dns:")))
        .map(dns_key)
        .collect();
    let own_ips: Vec<IpAddr> = own_sans
        .iter()
        .filter_map(|s| s.strip_prefix("IP:").or_else(|| s.strip_prefix("ip:")))
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    let taken = dns
        .iter()
        .find(|d| {
            let d = dns_key(d);
            own_dns
                .iter()
                .any(|own| dns_covers(own, &d) || dns_covers(&d, own))
        })
        .cloned()
        .or_else(|| {
            ips.iter()
                .find(|ip| own_ips.contains(&ip.to_canonical()))
                .map(ToString::to_string)
        });
    match taken {
        Some(name) => Err(format!(
            "{} is a name this service answers on: a server certificate for it is issued to admin only",
            echo(&name)
        )),
        None => Ok(()),
    }
}

/// A DNS name as clients compare it: lower case, without a final dot.
fn dns_key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a certificate for `pattern` (a name, or `*.` and a name) is accepted for `name`.
fn dns_covers(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

/// May `actor` create principal `name` with `scopes`, or replace `current` with them? It must
/// cover both what the principal would hold and what it holds now (no demoting someone with
/// more rights), may not change its own scopes, and may not take a reserved name.
pub fn may_put_principal(
    actor: Actor<'_>,
    name: &str,
    current: Option<&Principal>,
    scopes: &[String],
) -> Result<(), String> {
    if RESERVED_PRINCIPALS.contains(&name) {
        return Err(format!(
            "{} is reserved for the service's own records",
            echo(name)
        ));
    }
    if let Actor::Principal { name: own, .. } = actor {
        if own == name {
            return Err("a principal cannot change its own scopes".into());
        }
    }
    let missing = uncovered(actor, scopes);
    if !missing.is_empty() {
        return Err(refusal(actor, &missing, "granting them"));
    }
    if let Some(current) = current {
        let missing = uncovered(actor, &current.scopes);
        if !missing.is_empty() {
            return Err(refusal(
                actor,
                &missing,
                &format!("changing {}", echo(&current.name)),
            ));
        }
    }
    Ok(())
}

/// May `actor` delete `principal`? Not itself, and only with every scope it holds.
pub fn may_delete_principal(actor: Actor<'_>, principal: &Principal) -> Result<(), String> {
    if let Actor::Principal { name, .. } = actor {
        if name == principal.name {
            return Err("a principal cannot delete itself".into());
        }
    }
    let missing = uncovered(actor, &principal.scopes);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(refusal(
            actor,
            &missing,
            &format!("deleting {}", echo(&principal.name)),
        ))
    }
}

/// The principal a client certificate names, from its `spiffe://<trust-domain>/<name>` SAN.
pub fn certificate_holder(cert: &CertRecord, trust_domain: &str) -> Option<String> {
    let prefix = format!("URI:spiffe://{trust_domain}/");
    cert.sans
        .iter()
        .find_map(|s| s.strip_prefix(&prefix).map(str::to_string))
}

/// The admins who can still reach the API: principals holding admin with at least one active
/// client certificate valid for more than [`ADMIN_MARGIN_SECS`] after `now`.
pub fn usable_admins(
    principals: &[Principal],
    certs: &[CertRecord],
    trust_domain: &str,
    now: i64,
) -> BTreeSet<String> {
    let admins: BTreeSet<&str> = principals
        .iter()
        .filter(|p| p.scopes.iter().any(|s| s == ADMIN))
        .map(|p| p.name.as_str())
        .collect();
    certs
        .iter()
        .filter(|c| {
            c.profile == CertKind::Client
                && c.status == CertStatus::Active
                && c.not_after > now + ADMIN_MARGIN_SECS
        })
        .filter_map(|c| certificate_holder(c, trust_domain))
        .filter(|holder| admins.contains(holder.as_str()))
        .collect()
}

/// Refuses a change that would leave no usable admin where there is one now. `before` and
/// `after` are [`usable_admins`] without and with the change.
pub fn keeps_an_admin(
    before: &BTreeSet<String>,
    after: &BTreeSet<String>,
    change: &str,
) -> Result<(), String> {
    if after.is_empty() && !before.is_empty() {
        return Err(format!(
            "{change} would leave no admin with a certificate valid for more than {} hours: no one could administer Signet over the API. Enrol another admin first (or see the README's break-glass recovery)",
            ADMIN_MARGIN_SECS / 3600
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(name: &str, scopes: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created: 0,
            created_by: "t".into(),
        }
    }

    fn actor<'a>(name: &'a str, scopes: &'a [String]) -> Actor<'a> {
        Actor::Principal { name, scopes }
    }

    fn cert(name: &str, not_after: i64, status: CertStatus) -> CertRecord {
        CertRecord {
            serial: format!("{name}-{not_after}"),
            subject: format!("CN={name}"),
            sans: vec![format!("URI:spiffe://td/{name}")],
            profile: CertKind::Client,
            not_before: 0,
            not_after,
            status,
            revoked_at: None,
            reason: None,
            issued_to: None,
            der: vec![],
        }
    }

    #[test]
    fn coverage_of_scopes_and_patterns() {
        assert!(covers("admin", "keys:sign:x"));
        assert!(covers("keys:sign:*", "keys:sign:billing-*"));
        assert!(covers("keys:sign:billing-*", "keys:sign:billing-eu"));
        assert!(covers("keys:sign:billing-*", "keys:sign:billing-eu-*"));
        assert!(!covers("keys:sign:billing-*", "keys:sign:*"));
        assert!(!covers("keys:sign:billing-*", "keys:sign:b*"));
        assert!(!covers("keys:sign:a*c", "keys:sign:a*"));
        assert!(!covers("keys:sign:x", "keys:verify:x"));
        assert!(covers("keys:verify", "keys:verify:anything"));
        assert!(!covers("certs:issue", "admin"));
        assert!(!covers("principals:manage", "certs:issue"));
    }

    #[test]
    fn nobody_issues_or_grants_beyond_what_they_hold() {
        let issuer = vec!["certs:issue".to_string()];
        let admin = principal("admin", &["admin"]);
        assert!(may_issue_client_certificate(actor("i", &issuer), &admin).is_err());
        let svc = principal("svc", &["certs:issue"]);
        assert!(may_issue_client_certificate(actor("i", &issuer), &svc).is_ok());
        assert!(may_issue_client_certificate(Actor::Operator, &admin).is_ok());

        let manager = vec!["principals:manage".to_string(), "keys:read".to_string()];
        let m = actor("m", &manager);
        assert!(may_put_principal(m, "new", None, &["keys:read".into()]).is_ok());
        assert!(may_put_principal(m, "new", None, &["certs:issue".into()]).is_err());
        assert!(may_put_principal(m, "m", None, &["keys:read".into()]).is_err());
        assert!(may_put_principal(m, "admin", Some(&admin), &["keys:read".into()]).is_err());
        assert!(may_delete_principal(m, &admin).is_err());
        assert!(may_delete_principal(m, &principal("r", &["keys:read"])).is_ok());
        assert!(may_put_principal(Actor::Operator, "signet", None, &[]).is_err());
    }

    #[test]
    fn the_service_names_are_for_admin() {
        let issuer = vec!["certs:issue".to_string()];
        let own = vec!["DNS:localhost".to_string(), "IP:127.0.0.1".to_string()];
        let i = actor("i", &issuer);
        assert!(may_issue_server_certificate(i, &["LocalHost.".into()], &[], &own).is_err());
        assert!(may_issue_server_certificate(
            i,
            &[],
            &[std::net::Ipv4Addr::LOCALHOST.into()],
            &own
        )
        .is_err());
        assert!(may_issue_server_certificate(i, &["api.example".into()], &[], &own).is_ok());
        // The same names in other spellings clients accept for them.
        let mapped = IpAddr::V6(std::net::Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert!(may_issue_server_certificate(i, &[], &[mapped], &own).is_err());
        let own = vec![
            "DNS:signet.example.com".to_string(),
            "DNS:*.svc.internal".into(),
        ];
        assert!(may_issue_server_certificate(i, &["*.example.com".into()], &[], &own).is_err());
        assert!(may_issue_server_certificate(i, &["api.svc.internal".into()], &[], &own).is_err());
        assert!(may_issue_server_certificate(i, &["*.SVC.internal".into()], &[], &own).is_err());
        assert!(
            may_issue_server_certificate(i, &["*.signet.example.com".into()], &[], &own).is_ok()
        );
        assert!(may_issue_server_certificate(i, &["a.b.svc.internal".into()], &[], &own).is_ok());
        assert!(may_issue_server_certificate(i, &["example.com".into()], &[], &own).is_ok());
        let admin = vec!["admin".to_string()];
        assert!(
            may_issue_server_certificate(actor("a", &admin), &["localhost".into()], &[], &own)
                .is_ok()
        );
    }

    #[test]
    fn the_last_admin_stays() {
        let now = 1_000_000;
        let principals = vec![
            principal("admin", &["admin"]),
            principal("r", &["keys:read"]),
        ];
        let long = cert("admin", now + 30 * 24 * 3600, CertStatus::Active);
        let short = cert("admin", now + 60, CertStatus::Active);
        let before = usable_admins(&principals, &[long.clone(), short.clone()], "td", now);
        assert_eq!(before.len(), 1);
        // Revoking the long-lived certificate leaves only a 60-second one: refused.
        let mut revoked = long.clone();
        revoked.status = CertStatus::Revoked;
        let after = usable_admins(&principals, &[revoked, short], "td", now);
        assert!(keeps_an_admin(&before, &after, "revoking").is_err());
        // Demoting the admin: refused.
        let demoted = vec![principal("admin", &["keys:read"])];
        let after = usable_admins(&demoted, std::slice::from_ref(&long), "td", now);
        assert!(keeps_an_admin(&before, &after, "demoting").is_err());
        // With a second admin, fine.
        let two = vec![
            principal("admin", &["keys:read"]),
            principal("b", &["admin"]),
        ];
        let after = usable_admins(
            &two,
            &[long, cert("b", now + 40 * 24 * 3600, CertStatus::Active)],
            "td",
            now,
        );
        assert!(keeps_an_admin(&before, &after, "demoting").is_ok());
    }
}
