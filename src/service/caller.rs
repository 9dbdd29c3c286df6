//! Who is calling. A network caller's identity comes only from its verified client
//! certificate; its scopes from the principal's record, read on every request so a change takes
//! effect at once. The CLI calls as the operator, the service itself as `signet`.

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::actions::Requirement;
use crate::domain::principals::{Scopes, ADMIN};
use crate::store::{Event, Outcome, Principal};
use crate::support::text::echo;

/// The identity of a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Principal name from the certificate.
    pub name: String,
    /// Certificate serial, lower-case hex.
    pub serial: String,
    /// SHA-256 of the certificate DER (RFC 8705 `x5t#S256`).
    pub cert_sha256: Vec<u8>,
    /// The certificate's notAfter (unix seconds): checked on every request, not only at the
    /// handshake, so a long-lived connection stops working when its certificate expires.
    pub not_after: i64,
}

impl ClientIdentity {
    /// The identity a certificate carries for `trust_domain`: its
    /// `spiffe://<trust-domain>/<name>` URI SAN, or its CN when it has none.
    pub fn from_certificate(der: &[u8], trust_domain: &str) -> Option<Self> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
        let serial = hex::encode(cert.raw_serial());
        let cert_sha256 = Sha256::digest(der).to_vec();
        let not_after = cert.validity().not_after.timestamp();
        let prefix = format!("spiffe://{trust_domain}/");
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::URI(uri) = name {
                    if let Some(rest) = uri.strip_prefix(&prefix) {
                        if signet_pki::valid_client_name(rest) {
                            return Some(ClientIdentity {
                                name: rest.to_string(),
                                serial,
                                cert_sha256,
                                not_after,
                            });
                        }
                    }
                }
            }
        }
        let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
        signet_pki::valid_client_name(cn).then(|| ClientIdentity {
            name: cn.to_string(),
            serial,
            cert_sha256,
            not_after,
        })
    }
}

/// Who a call is from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A network client with a verified certificate, and its principal record if it has one.
    Client(ClientIdentity, Option<Principal>),
    /// An operator on the command line (who holds the token PIN anyway).
    Operator(String),
    /// The service itself (start-up, housekeeping).
    System,
}

/// A caller and the request it makes.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub identity: Identity,
    /// The request id (`-` outside requests).
    pub request_id: String,
    /// The program the request came from, as its `User-Agent` names it (the PKCS#11 module
    /// sends `signet-pkcs11/<version> (<process>)`); printable ASCII, at most 128 characters.
    /// Audit records of the request carry it as `client`.
    pub agent: Option<String>,
}

impl Caller {
    /// A network client.
    pub fn client(
        identity: ClientIdentity,
        principal: Option<Principal>,
        request_id: &str,
    ) -> Self {
        Caller {
            identity: Identity::Client(identity, principal),
            request_id: request_id.to_string(),
            agent: None,
        }
    }

    /// The operator running the CLI (named after `$USER`).
    pub fn operator() -> Self {
        let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
        Caller {
            identity: Identity::Operator(user),
            request_id: "-".into(),
            agent: None,
        }
    }

    /// The service itself.
    pub fn system() -> Self {
        Caller {
            identity: Identity::System,
            request_id: "-".into(),
            agent: None,
        }
    }

    /// The name audit records carry: the principal, `cli:<user>`, or `signet`.
    pub fn audit_name(&self) -> String {
        match &self.identity {
            Identity::Client(id, _) => id.name.clone(),
            Identity::Operator(user) => format!("cli:{user}"),
            Identity::System => crate::domain::audit::SERVICE.into(),
        }
    }

    /// The principal's name, for a network client.
    pub fn client_name(&self) -> Option<&str> {
        match &self.identity {
            Identity::Client(id, _) => Some(&id.name),
            _ => None,
        }
    }

    /// The client's certificate identity.
    pub fn client_identity(&self) -> Option<&ClientIdentity> {
        match &self.identity {
            Identity::Client(id, _) => Some(id),
            _ => None,
        }
    }

    fn scopes(&self) -> Option<&[String]> {
        match &self.identity {
            Identity::Client(_, Some(p)) => Some(&p.scopes),
            _ => None,
        }
    }

    /// Operators and the service hold every scope.
    fn is_operator(&self) -> bool {
        matches!(self.identity, Identity::Operator(_) | Identity::System)
    }

    /// The caller as the cross-principal rules see it (an enrolled client with no record
    /// holds nothing).
    pub fn actor(&self) -> crate::domain::rights::Actor<'_> {
        use crate::domain::rights::Actor;
        match &self.identity {
            Identity::Client(id, principal) => Actor::Principal {
                name: &id.name,
                scopes: principal.as_ref().map_or(&[][..], |p| p.scopes.as_slice()),
            },
            Identity::Operator(_) | Identity::System => Actor::Operator,
        }
    }

    /// Holds `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.is_operator() || self.scopes().is_some_and(|s| Scopes(s).has(scope))
    }

    /// Holds admin.
    pub fn is_admin(&self) -> bool {
        self.has(ADMIN)
    }

    /// May put `scope` in a token.
    pub fn can_request_token_scope(&self, scope: &str) -> bool {
        self.is_operator()
            || self
                .scopes()
                .is_some_and(|s| Scopes(s).can_request_token_scope(scope))
    }

    /// Whether the caller meets `requirement` on `target`; `None` when it does, else the reason.
    pub fn refusal(&self, requirement: Requirement, target: &str) -> Option<String> {
        if self.is_operator() {
            return None;
        }
        let name = self.client_name().unwrap_or("-");
        let Some(scopes) = self.scopes() else {
            return Some(format!("{} is not an enrolled principal", echo(name)));
        };
        let s = Scopes(scopes);
        let allowed = match requirement {
            Requirement::Enrolled => true,
            Requirement::Scope(scope) | Requirement::OwnTokenOr(scope) => s.has(scope),
            Requirement::SignKey => s.can_sign(target),
            Requirement::VerifyKey => s.can_verify(target),
            Requirement::ReadKey => s.has("keys:read") || s.can_verify(target),
            Requirement::Operator => false,
        };
        if allowed {
            return None;
        }
        let needed = requirement
            .scope_for(target)
            .unwrap_or_else(|| "operator".into());
        Some(format!("{} lacks the scope {}", echo(name), echo(&needed)))
    }

    /// An audit event for this caller and request.
    pub fn event(&self, action: &str, target: &str, outcome: Outcome) -> Event {
        let event = Event::new(
            &self.audit_name(),
            &self.request_id,
            action,
            target,
            outcome,
        );
        match &self.agent {
            Some(agent) => event.with("client", agent.as_str()),
            None => event,
        }
    }

    /// The same caller, naming the program it calls from (see [`Caller::agent`]): kept only
    /// when printable ASCII, cut to 128 characters.
    pub fn with_agent(mut self, agent: Option<&str>) -> Self {
        self.agent = agent
            .map(|a| a.chars().take(128).collect::<String>())
            .filter(|a| !a.is_empty() && a.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        self
    }
}
