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
}

const fn route(action: Action, method: &'static str, path: &'static str) -> Route {
    Route {
        action,
        method,
        path,
    }
}

/// The table.
pub const ROUTES: &[Route] = &[
    route(Action::KeyList, "GET", "/v1/keys"),
    route(Action::KeyRead, "GET", "/v1/keys/{name}"),
    route(Action::KeyAttest, "GET", "/v1/keys/{name}/attestation"),
    route(Action::KeyCreate, "POST", "/v1/keys"),
    route(Action::KeyRotate, "POST", "/v1/keys/{name}/rotate"),
    route(
        Action::KeyDisable,
        "POST",
        "/v1/keys/{name}/versions/{version}/disable",
    ),
    route(
        Action::KeyEnable,
        "POST",
        "/v1/keys/{name}/versions/{version}/enable",
    ),
    route(Action::KeyScheduleDeletion, "DELETE", "/v1/keys/{name}"),
    route(
        Action::KeyCancelDeletion,
        "POST",
        "/v1/keys/{name}/cancel-deletion",
    ),
    route(Action::KeySign, "POST", "/v1/keys/{name}/sign"),
    route(Action::KeySignBatch, "POST", "/v1/keys/{name}/sign-batch"),
    route(Action::KeyVerify, "POST", "/v1/keys/{name}/verify"),
    route(Action::CaChain, "GET", "/v1/ca/chain"),
    route(Action::CaCrl, "GET", "/v1/ca/crl"),
    route(Action::CertIssue, "POST", "/v1/certificates"),
    route(Action::CertRead, "GET", "/v1/certificates/{serial}"),
    route(
        Action::CertRevoke,
        "POST",
        "/v1/certificates/{serial}/revoke",
    ),
    route(Action::PrincipalList, "GET", "/v1/principals"),
    route(Action::PrincipalCreate, "POST", "/v1/principals"),
    route(Action::PrincipalDelete, "DELETE", "/v1/principals/{name}"),
    route(Action::TokenIssue, "POST", "/v1/tokens"),
    route(Action::TokenIntrospect, "POST", "/v1/tokens/introspect"),
    route(Action::TokenRevoke, "POST", "/v1/tokens/revoke"),
    route(Action::Jwks, "GET", "/.well-known/jwks.json"),
    route(Action::Metadata, "GET", "/.well-known/signet"),
    route(Action::AuditRead, "GET", "/v1/audit"),
    route(Action::Health, "GET", "/healthz"),
    route(Action::Ready, "GET", "/readyz"),
    route(Action::Metrics, "GET", "/metrics"),
    route(Action::Status, "GET", "/v1/status"),
    route(Action::OpenApi, "GET", "/v1/openapi.json"),
    route(Action::ProblemRead, "GET", "/problems/{name}"),
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
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "{r:?} twice");
            assert!(actions.insert(r.action), "{:?} routed twice", r.action);
            assert!(matches!(r.method, "GET" | "POST" | "DELETE"));
            // Network clients can never be operators.
            assert_ne!(r.action.spec().requirement, Requirement::Operator, "{r:?}");
        }
    }
}
