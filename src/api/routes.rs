//! The API's routes, one row per operation: the action it runs (its scope and audit name),
//! its HTTP method and path, its OpenAPI `operationId`, its handler and what goes in and
//! out of it. The router, the OpenAPI document and the scope-matrix test are built from this
//! table, so serving a new operation is one row here (plus its use-case type in the service
//! and an example in `tests/actions.rs`). HTTP lives here, at the front.

use axum::routing::{on, MethodFilter, MethodRouter};
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, ToSchema};

use super::model::*;
use super::{keys, ops, pki, tokens, AppState};
use crate::service::Action;

/// One route.
#[derive(Clone, Copy)]
pub struct Route {
    /// The operation's action: who may call it and how it is audited. Several routes may
    /// share one (two views of the same read).
    pub action: Action,
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// axum path syntax (`/v1/keys/{name}`).
    pub path: &'static str,
    /// The OpenAPI `operationId`, unique.
    pub id: &'static str,
    /// The handler, on the route's method.
    pub handler: fn(MethodFilter) -> MethodRouter<AppState>,
    /// What goes in and comes out, for the OpenAPI document.
    pub doc: fn() -> Doc,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.method, self.path, self.id)
    }
}

impl Route {
    /// The handler, routed on this row's method.
    pub fn method_router(&self) -> MethodRouter<AppState> {
        let filter = match self.method {
            "POST" => MethodFilter::POST,
            "DELETE" => MethodFilter::DELETE,
            _ => MethodFilter::GET,
        };
        (self.handler)(filter)
    }
}

/// What an operation's answer is.
#[derive(Debug)]
pub enum Answer {
    /// JSON of the named schema.
    Json(String),
    /// Another media type (text or binary), described.
    Other(&'static str, &'static str),
    /// No body.
    Empty,
}

/// What goes in and comes out of an operation, for its OpenAPI description.
pub struct Doc {
    /// One line.
    pub summary: &'static str,
    /// Its group.
    pub tag: &'static str,
    /// The JSON request body's schema.
    pub request: Option<String>,
    /// The request body may be absent.
    pub request_optional: bool,
    /// The request body may also be a form (`application/x-www-form-urlencoded`).
    pub request_form: bool,
    /// Query parameters.
    pub query: Vec<Parameter>,
    /// The status of success.
    pub status: u16,
    /// The answer.
    pub answer: Answer,
    /// It changes state (so 409 and the audit-before-effect 503 apply).
    pub changes: bool,
    /// It uses a key its path does not name, whose state may refuse it (409).
    pub uses_key: bool,
    /// The schemas it names, with the ones they use.
    pub schemas: Vec<(String, RefOr<Schema>)>,
}

impl std::fmt::Debug for Doc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doc")
            .field("summary", &self.summary)
            .field("status", &self.status)
            .field("answer", &self.answer)
            .finish_non_exhaustive()
    }
}

impl Doc {
    /// A 200 with no body yet.
    fn new(summary: &'static str, tag: &'static str) -> Self {
        Doc {
            summary,
            tag,
            request: None,
            request_optional: false,
            request_form: false,
            query: Vec::new(),
            status: 200,
            answer: Answer::Empty,
            changes: false,
            uses_key: false,
            schemas: Vec::new(),
        }
    }

    fn schema<T: ToSchema>(&mut self) -> String {
        let name = T::name().into_owned();
        self.schemas.push((name.clone(), T::schema()));
        T::schemas(&mut self.schemas);
        name
    }

    /// Answers JSON of `T`.
    fn json<T: ToSchema>(mut self) -> Self {
        self.answer = Answer::Json(self.schema::<T>());
        self
    }

    /// Answers another media type.
    fn other(mut self, media: &'static str, what: &'static str) -> Self {
        self.answer = Answer::Other(media, what);
        self
    }

    /// Takes a JSON body of `T`.
    fn request<T: ToSchema>(mut self) -> Self {
        self.request = Some(self.schema::<T>());
        self
    }

    /// Takes a body of `T` as JSON or as a form.
    fn json_or_form_request<T: ToSchema>(self) -> Self {
        Doc {
            request_form: true,
            ..self.request::<T>()
        }
    }

    /// Takes a JSON body of `T`, or none.
    fn optional_request<T: ToSchema>(self) -> Self {
        Doc {
            request_optional: true,
            ..self.request::<T>()
        }
    }

    /// Takes the query parameters of `Q`.
    fn query<Q: IntoParams>(mut self) -> Self {
        self.query = Q::into_params(|| Some(ParameterIn::Query));
        self
    }

    /// Succeeds with `status`.
    fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Changes state.
    fn changes(mut self) -> Self {
        self.changes = true;
        self
    }

    /// Uses a key its path does not name.
    fn uses_key(mut self) -> Self {
        self.uses_key = true;
        self
    }
}

const KEYS: &str = "keys";
const CA: &str = "ca";
const CERTS: &str = "certificates";
const PRINCIPALS: &str = "principals";
const TOKENS: &str = "tokens";
const OPS: &str = "operations";

const fn get(
    action: Action,
    path: &'static str,
    id: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
    doc: fn() -> Doc,
) -> Route {
    Route {
        action,
        method: "GET",
        path,
        id,
        handler,
        doc,
    }
}

const fn post(
    action: Action,
    path: &'static str,
    id: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
    doc: fn() -> Doc,
) -> Route {
    Route {
        method: "POST",
        ..get(action, path, id, handler, doc)
    }
}

const fn delete(
    action: Action,
    path: &'static str,
    id: &'static str,
    handler: fn(MethodFilter) -> MethodRouter<AppState>,
    doc: fn() -> Doc,
) -> Route {
    Route {
        method: "DELETE",
        ..get(action, path, id, handler, doc)
    }
}

/// The table.
/// Whether the route at `path` (as matched) takes a form body as well as JSON (only reading
/// routes do: see `JsonOrForm` in `problem.rs`).
pub fn takes_form(method: &str, path: &str) -> bool {
    static FORMS: std::sync::LazyLock<Vec<(&'static str, &'static str)>> =
        std::sync::LazyLock::new(|| {
            ROUTES
                .iter()
                .filter(|r| {
                    let doc = (r.doc)();
                    doc.request_form && !doc.changes
                })
                .map(|r| (r.method, r.path))
                .collect()
        });
    FORMS.iter().any(|&(m, p)| m == method && p == path)
}

pub const ROUTES: &[Route] = &[
    get(
        Action::KeyList,
        "/v1/keys",
        "keyList",
        |f| on(f, keys::list),
        || Doc::new("List keys", KEYS).json::<KeyList>(),
    ),
    get(
        Action::KeyListUsable,
        "/v1/me/keys",
        "keyListUsable",
        |f| on(f, keys::usable),
        || {
            Doc::new(
                "The keys the caller may read, verify or sign with, each with its versions' key ids and public keys (what the PKCS#11 module shows as objects)",
                KEYS,
            )
            .json::<UsableKeyList>()
        },
    ),
    get(
        Action::KeyRead,
        "/v1/keys/{name}",
        "keyRead",
        |f| on(f, keys::show),
        || Doc::new("Show a key and its versions", KEYS).json::<KeyView>(),
    ),
    get(
        Action::KeyRead,
        "/v1/keys/{name}/versions",
        "keyVersions",
        |f| on(f, keys::versions),
        || {
            Doc::new("A key's versions, or only those in one state", KEYS)
                .query::<keys::VersionsQuery>()
                .json::<KeyVersionList>()
        },
    ),
    get(
        Action::KeyAttest,
        "/v1/keys/{name}/attestation",
        "keyAttest",
        |f| on(f, keys::attestation),
        || {
            Doc::new("A device's attestation of a key version (PIV cards)", KEYS)
                .query::<keys::VersionQuery>()
                .json::<AttestationView>()
        },
    ),
    post(
        Action::KeyCreate,
        "/v1/keys",
        "keyCreate",
        |f| on(f, keys::create),
        || {
            Doc::new("Create a key (version 1 generated in the token)", KEYS)
                .request::<keys::CreateRequest>()
                .status(201)
                .json::<KeyView>()
                .changes()
        },
    ),
    post(
        Action::KeyRotate,
        "/v1/keys/{name}/rotate",
        "keyRotate",
        |f| on(f, keys::rotate),
        || {
            Doc::new("Add a version and make it primary", KEYS)
                .optional_request::<keys::RotateRequest>()
                .json::<KeyView>()
                .changes()
        },
    ),
    post(
        Action::KeyDisable,
        "/v1/keys/{name}/versions/{version}/disable",
        "keyDisable",
        |f| on(f, keys::disable),
        || {
            Doc::new("Disable a version", KEYS)
                .json::<KeyView>()
                .changes()
        },
    ),
    post(
        Action::KeyEnable,
        "/v1/keys/{name}/versions/{version}/enable",
        "keyEnable",
        |f| on(f, keys::enable),
        || {
            Doc::new("Enable a version", KEYS)
                .json::<KeyView>()
                .changes()
        },
    ),
    post(
        Action::KeyScheduleDeletion,
        "/v1/keys/{name}/schedule-deletion",
        "keyScheduleDeletion",
        |f| on(f, keys::schedule_deletion),
        || {
            Doc::new(
                "Schedule the key's destruction (202: it stays, readable and unusable, until then; cancel-deletion undoes it)",
                KEYS,
            )
            .optional_request::<keys::ScheduleDeletionRequest>()
            .status(202)
            .json::<KeyView>()
            .changes()
        },
    ),
    post(
        Action::KeyCancelDeletion,
        "/v1/keys/{name}/cancel-deletion",
        "keyCancelDeletion",
        |f| on(f, keys::cancel_deletion),
        || {
            Doc::new("Cancel a scheduled destruction", KEYS)
                .json::<KeyView>()
                .changes()
        },
    ),
    post(
        Action::KeySign,
        "/v1/keys/{name}/sign",
        "keySign",
        |f| on(f, keys::sign),
        || {
            Doc::new(
                "Sign with the key (the signature only once its audit record is durable)",
                KEYS,
            )
            .request::<keys::SignRequest>()
            .json::<SignatureView>()
        },
    ),
    post(
        Action::KeySignBatch,
        "/v1/keys/{name}/sign-batch",
        "keySignBatch",
        |f| on(f, keys::sign_batch),
        || {
            Doc::new("Sign many inputs, each answered on its own", KEYS)
                .request::<keys::BatchRequest>()
                .json::<BatchView>()
        },
    ),
    post(
        Action::KeyVerify,
        "/v1/keys/{name}/verify",
        "keyVerify",
        |f| on(f, keys::verify),
        || {
            Doc::new("Verify a signature with the key's public half", KEYS)
                .request::<keys::VerifyRequest>()
                .json::<VerifyView>()
        },
    ),
    get(
        Action::CaChain,
        "/v1/ca/chain",
        "caChain",
        |f| on(f, pki::chain),
        || {
            Doc::new("The CA chain (intermediate + root)", CA)
                .other("application/pem-certificate-chain", "PEM certificates")
        },
    ),
    get(
        Action::CaCrl,
        "/v1/ca/crl",
        "caCrl",
        |f| on(f, pki::crl),
        || {
            Doc::new(
                "The current CRL (DER; PEM with Accept: application/x-pem-file)",
                CA,
            )
            .other("application/pkix-crl", "DER CRL")
        },
    ),
    get(
        Action::CaCrl,
        "/v1/ca/arl",
        "caArl",
        |f| on(f, pki::arl),
        || {
            Doc::new(
                "The root's CRL, the ARL: the CA certificates it revoked (DER; PEM with Accept: application/x-pem-file)",
                CA,
            )
            .other("application/pkix-crl", "DER CRL")
        },
    ),
    post(
        Action::CertIssue,
        "/v1/certificates",
        "certIssue",
        |f| on(f, pki::issue),
        || {
            Doc::new("Issue a certificate from a CSR", CERTS)
                .request::<pki::IssueRequest>()
                .status(201)
                .json::<IssuedView>()
                .changes()
        },
    ),
    get(
        Action::CertRead,
        "/v1/certificates/{serial}",
        "certRead",
        |f| on(f, pki::show),
        || Doc::new("Show a certificate", CERTS).json::<CertView>(),
    ),
    post(
        Action::CertRevoke,
        "/v1/certificates/{serial}/revoke",
        "certRevoke",
        |f| on(f, pki::revoke),
        || {
            Doc::new(
                "Revoke a certificate (refused on the next request of its open connections)",
                CERTS,
            )
            .optional_request::<pki::RevokeRequest>()
            .json::<CertView>()
            .changes()
        },
    ),
    get(
        Action::PrincipalList,
        "/v1/principals",
        "principalList",
        |f| on(f, pki::list_principals),
        || Doc::new("List principals", PRINCIPALS).json::<PrincipalList>(),
    ),
    post(
        Action::PrincipalCreate,
        "/v1/principals",
        "principalCreate",
        |f| on(f, pki::create_principal),
        || {
            Doc::new("Create a principal with scopes", PRINCIPALS)
                .request::<pki::PrincipalRequest>()
                .status(201)
                .json::<PrincipalView>()
                .changes()
        },
    ),
    delete(
        Action::PrincipalDelete,
        "/v1/principals/{name}",
        "principalDelete",
        |f| on(f, pki::delete_principal),
        || {
            Doc::new("Delete a principal", PRINCIPALS)
                .status(204)
                .changes()
        },
    ),
    post(
        Action::TokenIssue,
        "/v1/tokens",
        "tokenIssue",
        |f| on(f, tokens::issue),
        || {
            Doc::new("Issue an access token (JWT, RFC 9068)", TOKENS)
                .request::<tokens::IssueBody>()
                .uses_key()
                .json::<TokenView>()
        },
    ),
    post(
        Action::TokenIntrospect,
        "/v1/tokens/introspect",
        "tokenIntrospect",
        |f| on(f, tokens::introspect),
        || {
            Doc::new("Introspect a token (RFC 7662)", TOKENS)
                .json_or_form_request::<tokens::IntrospectBody>()
                .json::<IntrospectionView>()
        },
    ),
    post(
        Action::TokenRevoke,
        "/v1/tokens/revoke",
        "tokenRevoke",
        |f| on(f, tokens::revoke),
        || {
            Doc::new("Revoke a token by value or jti", TOKENS)
                .request::<tokens::RevokeBody>()
                .json::<RevokedView>()
                .changes()
        },
    ),
    get(
        Action::Jwks,
        "/.well-known/jwks.json",
        "jwks",
        |f| on(f, tokens::jwks),
        || {
            Doc::new("The token keys (JWK Set, RFC 7517)", TOKENS)
                .other("application/jwk-set+json", "JWK Set")
        },
    ),
    get(
        Action::Metadata,
        "/.well-known/signet",
        "metadata",
        |f| on(f, tokens::metadata),
        || {
            Doc::new("Token issuer metadata (RFC 8414 style)", TOKENS)
                .other("application/json", "issuer metadata")
        },
    ),
    get(
        Action::Metadata,
        "/.well-known/oauth-authorization-server",
        "oauthMetadata",
        |f| on(f, tokens::oauth_metadata),
        || {
            Doc::new("Authorization server metadata (RFC 8414)", TOKENS)
                .other("application/json", "authorization server metadata")
        },
    ),
    get(
        Action::AuditRead,
        "/v1/audit",
        "auditRead",
        |f| on(f, ops::audit),
        || {
            Doc::new("Audit records after a sequence number", OPS)
                .query::<ops::AuditQuery>()
                .other(
                    "application/x-ndjson",
                    "audit records, one JSON object per line",
                )
        },
    ),
    get(
        Action::Health,
        "/healthz",
        "health",
        |f| on(f, ops::healthz),
        || Doc::new("Liveness", OPS).json::<HealthView>(),
    ),
    get(
        Action::Ready,
        "/readyz",
        "ready",
        |f| on(f, ops::readyz),
        || {
            Doc::new(
                "Readiness: the HSM answers, the store and the audit log take writes",
                OPS,
            )
            .json::<ReadyView>()
        },
    ),
    get(
        Action::Metrics,
        "/metrics",
        "metrics",
        |f| on(f, ops::metrics),
        || {
            Doc::new(
                "Metrics: Prometheus text 0.0.4; OpenMetrics with Accept: application/openmetrics-text",
                OPS,
            )
            .other("text/plain", "Prometheus text format 0.0.4")
        },
    ),
    get(
        Action::Status,
        "/v1/status",
        "status",
        |f| on(f, ops::status),
        || {
            Doc::new("The status report (as signet status)", OPS)
                .json::<crate::service::status::Status>()
        },
    ),
    get(
        Action::OpenApi,
        "/v1/openapi.json",
        "openApi",
        |f| on(f, ops::openapi),
        || {
            Doc::new("This description (OpenAPI 3.1)", OPS)
                .other("application/json", "OpenAPI 3.1 document")
        },
    ),
    get(
        Action::ProblemRead,
        "/problems/{name}",
        "problemRead",
        |f| on(f, ops::problem),
        || Doc::new("What a problem type means", OPS).json::<ProblemTypeView>(),
    ),
];

/// Whether the API serves `action` on some route.
pub fn routed(action: Action) -> bool {
    ROUTES.iter().any(|r| r.action == action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Requirement;
    use std::collections::HashSet;

    #[test]
    fn routes_are_unique_and_never_operator_only() {
        let mut seen = HashSet::new();
        let mut ids = HashSet::new();
        for r in ROUTES {
            assert!(ids.insert(r.id), "{} twice", r.id);
            assert!(seen.insert((r.method, r.path)), "{r:?} twice");
            assert!(matches!(r.method, "GET" | "POST" | "DELETE"));
            // Network clients can never be operators.
            assert_ne!(r.action.spec().requirement, Requirement::Operator, "{r:?}");
            // Every row describes itself.
            let doc = (r.doc)();
            assert!(!doc.summary.is_empty(), "{r:?}");
        }
    }
}
