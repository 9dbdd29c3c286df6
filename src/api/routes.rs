//! The API's routes: for each operation the API serves, its HTTP method and path. The router
//! and the OpenAPI description are built from this table, and the scope-matrix test walks it;
//! HTTP lives here, at the front, not in the service's action table.

use crate::service::Action;

/// One route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The operation it serves.
    pub action: Action,
    /// `GET`, `POST` or `DELETE`.
    pub method: &'static str,
    /// axum path syntax (`/v1/keys/{name}`).
    pub path: &'static str,
    /// The OpenAPI `operationId` (unique: audit names are not, sign and sign-batch both
    /// record `key.sign`).
    pub id: &'static str,
}

const fn route(
    action: Action,
    method: &'static str,
    path: &'static str,
    id: &'static str,
) -> Route {
    Route {
        action,
        method,
        path,
        id,
    }
}

/// The table.
pub const ROUTES: &[Route] = &[
    route(Action::KeyList, "GET", "/v1/keys", "keyList"),
    route(Action::KeyRead, "GET", "/v1/keys/{name}", "keyRead"),
    route(
        Action::KeyAttest,
        "GET",
        "/v1/keys/{name}/attestation",
        "keyAttest",
    ),
    route(Action::KeyCreate, "POST", "/v1/keys", "keyCreate"),
    route(
        Action::KeyRotate,
        "POST",
        "/v1/keys/{name}/rotate",
        "keyRotate",
    ),
    route(
        Action::KeyDisable,
        "POST",
        "/v1/keys/{name}/versions/{version}/disable",
        "keyDisable",
    ),
    route(
        Action::KeyEnable,
        "POST",
        "/v1/keys/{name}/versions/{version}/enable",
        "keyEnable",
    ),
    route(
        Action::KeyScheduleDeletion,
        "DELETE",
        "/v1/keys/{name}",
        "keyScheduleDeletion",
    ),
    route(
        Action::KeyCancelDeletion,
        "POST",
        "/v1/keys/{name}/cancel-deletion",
        "keyCancelDeletion",
    ),
    route(Action::KeySign, "POST", "/v1/keys/{name}/sign", "keySign"),
    route(
        Action::KeySignBatch,
        "POST",
        "/v1/keys/{name}/sign-batch",
        "keySignBatch",
    ),
    route(
        Action::KeyVerify,
        "POST",
        "/v1/keys/{name}/verify",
        "keyVerify",
    ),
    route(Action::CaChain, "GET", "/v1/ca/chain", "caChain"),
    route(Action::CaCrl, "GET", "/v1/ca/crl", "caCrl"),
    route(Action::CertIssue, "POST", "/v1/certificates", "certIssue"),
    route(
        Action::CertRead,
        "GET",
        "/v1/certificates/{serial}",
        "certRead",
    ),
    route(
        Action::CertRevoke,
        "POST",
        "/v1/certificates/{serial}/revoke",
        "certRevoke",
    ),
    route(
        Action::PrincipalList,
        "GET",
        "/v1/principals",
        "principalList",
    ),
    route(
        Action::PrincipalCreate,
        "POST",
        "/v1/principals",
        "principalCreate",
    ),
    route(
        Action::PrincipalDelete,
        "DELETE",
        "/v1/principals/{name}",
        "principalDelete",
    ),
    route(Action::TokenIssue, "POST", "/v1/tokens", "tokenIssue"),
    route(
        Action::TokenIntrospect,
        "POST",
        "/v1/tokens/introspect",
        "tokenIntrospect",
    ),
    route(
        Action::TokenRevoke,
        "POST",
        "/v1/tokens/revoke",
        "tokenRevoke",
    ),
    route(Action::Jwks, "GET", "/.well-known/jwks.json", "jwks"),
    route(Action::Metadata, "GET", "/.well-known/signet", "metadata"),
    route(Action::AuditRead, "GET", "/v1/audit", "auditRead"),
    route(Action::Health, "GET", "/healthz", "health"),
    route(Action::Ready, "GET", "/readyz", "ready"),
    route(Action::Metrics, "GET", "/metrics", "metrics"),
    route(Action::Status, "GET", "/v1/status", "status"),
    route(Action::OpenApi, "GET", "/v1/openapi.json", "openApi"),
    route(
        Action::ProblemRead,
        "GET",
        "/problems/{name}",
        "problemRead",
    ),
];

/// The route that serves `action`, if the API serves it.
pub fn route_of(action: Action) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.action == action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Requirement;
    use std::collections::HashSet;

    #[test]
    fn routes_are_unique_and_never_operator_only() {
        let mut seen = HashSet::new();
        let mut actions = HashSet::new();
        let mut ids = HashSet::new();
        for r in ROUTES {
            assert!(ids.insert(r.id), "{} twice", r.id);
            assert!(seen.insert((r.method, r.path)), "{r:?} twice");
            assert!(actions.insert(r.action), "{:?} routed twice", r.action);
            assert!(matches!(r.method, "GET" | "POST" | "DELETE"));
            // Network clients can never be operators.
            assert_ne!(r.action.spec().requirement, Requirement::Operator, "{r:?}");
        }
    }
}
