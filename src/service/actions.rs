//! The one table of operations: for each, the audit action name and what the caller needs.
//! The pipeline authorizes from it; the API's route table (`api::routes`) says which of them
//! are served over HTTP, and the scope-matrix test walks both.

/// What a caller needs for an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// Any enrolled principal (the certificate alone is not enough).
    Enrolled,
    /// A fixed scope.
    Scope(&'static str),
    /// `keys:sign:<pattern>` matching the key.
    SignKey,
    /// Signing rights on the key, `keys:verify[:<pattern>]` or `keys:read`.
    VerifyKey,
    /// `keys:read`, or verifying rights on the key.
    ReadKey,
    /// The token's own subject, or this scope.
    OwnTokenOr(&'static str),
    /// The operator (CLI) or the service itself; never a network client.
    Operator,
}

impl Requirement {
    /// The narrowest scope that meets this requirement for `target`, for documentation and the
    /// scope-matrix test. `None` when no scope is needed (enrolled) or none can be held
    /// (operator-only).
    pub fn scope_for(self, target: &str) -> Option<String> {
        match self {
            Requirement::Enrolled | Requirement::Operator => None,
            Requirement::Scope(s) | Requirement::OwnTokenOr(s) => Some(s.to_string()),
            Requirement::SignKey => Some(format!("keys:sign:{target}")),
            Requirement::VerifyKey => Some(format!("keys:verify:{target}")),
            Requirement::ReadKey => Some("keys:read".into()),
        }
    }

    /// How the README and the API description state it.
    pub fn describe(self) -> String {
        match self {
            Requirement::Enrolled => "any enrolled principal".into(),
            Requirement::Scope(s) => format!("`{s}`"),
            Requirement::SignKey => "`keys:sign:<pattern>`".into(),
            Requirement::VerifyKey => {
                "`keys:verify[:<pattern>]`, `keys:read` or signing rights".into()
            }
            Requirement::ReadKey => "`keys:read` or verifying rights".into(),
            Requirement::OwnTokenOr(s) => format!("the token's subject, or `{s}`"),
            Requirement::Operator => "operator (CLI) only".into(),
        }
    }
}

/// Every operation of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// List keys.
    KeyList,
    /// The keys the caller may use, with their versions' public keys (what a PKCS#11 module
    /// shows as objects).
    KeyListUsable,
    /// Show one key.
    KeyRead,
    /// Print a public key (CLI).
    KeyPublic,
    /// A device's attestation of a key version (PIV cards).
    KeyAttest,
    /// Create a key.
    KeyCreate,
    /// Import a key from a PKCS#12 file (CLI).
    KeyImport,
    /// Add a version.
    KeyRotate,
    /// Disable a version.
    KeyDisable,
    /// Enable a version.
    KeyEnable,
    /// Schedule destruction.
    KeyScheduleDeletion,
    /// Cancel a scheduled destruction.
    KeyCancelDeletion,
    /// Destroy now (CLI; housekeeping when a window passes).
    KeyDestroy,
    /// Sign one input.
    KeySign,
    /// Sign several inputs.
    KeySignBatch,
    /// Verify a signature.
    KeyVerify,
    /// Build the CA.
    CaInit,
    /// Show the CA (CLI).
    CaShow,
    /// Rotate the server certificate, and the intermediate (CLI).
    CaRotate,
    /// The CA chain.
    CaChain,
    /// The CRL.
    CaCrl,
    /// Issue a certificate from a CSR.
    CertIssue,
    /// Issue a certificate with a generated key as PKCS#12 (CLI).
    CertIssueBundle,
    /// Show a certificate.
    CertRead,
    /// List certificates (CLI).
    CertList,
    /// Revoke a certificate.
    CertRevoke,
    /// List principals.
    PrincipalList,
    /// Create or replace a principal.
    PrincipalCreate,
    /// Delete a principal.
    PrincipalDelete,
    /// Issue a token.
    TokenIssue,
    /// Introspect a token.
    TokenIntrospect,
    /// Revoke a token.
    TokenRevoke,
    /// The JWKS.
    Jwks,
    /// The issuer metadata.
    Metadata,
    /// Read the audit log.
    AuditRead,
    /// Export the audit log (CLI).
    AuditExport,
    /// Accept a log behind its anchor and anchor it anew (CLI).
    AuditReanchor,
    /// Re-apply the revocations an exported log holds (after a restore; CLI).
    AuditReplayRevocations,
    /// Liveness.
    Health,
    /// Readiness.
    Ready,
    /// Metrics.
    Metrics,
    /// What a problem type means.
    ProblemRead,
    /// The status report.
    Status,
    /// The API's OpenAPI description.
    OpenApi,
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct ActionSpec {
    /// The operation.
    pub action: Action,
    /// The audit record's `action`.
    pub name: &'static str,
    /// What the caller needs.
    pub requirement: Requirement,
}

const fn row(action: Action, name: &'static str, requirement: Requirement) -> ActionSpec {
    ActionSpec {
        action,
        name,
        requirement,
    }
}

use Requirement::*;

/// The table.
pub const ACTIONS: &[ActionSpec] = &[
    row(Action::KeyList, "key.list", Scope("keys:read")),
    row(Action::KeyListUsable, "key.list-usable", Enrolled),
    row(Action::KeyRead, "key.read", ReadKey),
    row(Action::KeyPublic, "key.public", ReadKey),
    row(Action::KeyAttest, "key.attest", ReadKey),
    row(Action::KeyCreate, "key.create", Scope("keys:create")),
    row(Action::KeyImport, "key.import", Operator),
    row(Action::KeyRotate, "key.rotate", Scope("keys:manage")),
    row(Action::KeyDisable, "key.disable", Scope("keys:manage")),
    row(Action::KeyEnable, "key.enable", Scope("keys:manage")),
    row(
        Action::KeyScheduleDeletion,
        "key.delete-scheduled",
        Scope("keys:manage"),
    ),
    row(
        Action::KeyCancelDeletion,
        "key.cancel-deletion",
        Scope("keys:manage"),
    ),
    row(Action::KeyDestroy, "key.destroy", Operator),
    row(Action::KeySign, "key.sign", SignKey),
    row(Action::KeySignBatch, "key.sign", SignKey),
    row(Action::KeyVerify, "key.verify", VerifyKey),
    row(Action::CaInit, "ca.init", Operator),
    row(Action::CaShow, "ca.read", Operator),
    row(Action::CaRotate, "ca.rotate", Operator),
    row(Action::CaChain, "ca.chain", Enrolled),
    row(Action::CaCrl, "crl.read", Enrolled),
    row(Action::CertIssue, "cert.issue", Scope("certs:issue")),
    row(Action::CertIssueBundle, "cert.issue", Operator),
    row(Action::CertRead, "cert.read", Scope("certs:read")),
    row(Action::CertList, "cert.list", Scope("certs:read")),
    row(Action::CertRevoke, "cert.revoke", Scope("certs:revoke")),
    row(
        Action::PrincipalList,
        "principal.list",
        Scope("principals:manage"),
    ),
    row(
        Action::PrincipalCreate,
        "principal.create",
        Scope("principals:manage"),
    ),
    row(
        Action::PrincipalDelete,
        "principal.delete",
        Scope("principals:manage"),
    ),
    row(Action::TokenIssue, "token.issue", Scope("tokens:issue")),
    row(
        Action::TokenIntrospect,
        "token.introspect",
        Scope("tokens:introspect"),
    ),
    row(
        Action::TokenRevoke,
        "token.revoke",
        OwnTokenOr("tokens:revoke"),
    ),
    row(Action::Jwks, "jwks.read", Enrolled),
    row(Action::Metadata, "metadata.read", Enrolled),
    row(Action::AuditRead, "audit.read", Scope("audit:read")),
    row(Action::AuditExport, "audit.export", Operator),
    row(Action::AuditReanchor, "audit.reanchor", Operator),
    row(
        Action::AuditReplayRevocations,
        "audit.replay-revocations",
        Operator,
    ),
    row(Action::Health, "health", Enrolled),
    row(Action::Ready, "ready", Enrolled),
    row(Action::Metrics, "metrics", Enrolled),
    row(Action::Status, "status.read", Scope("status:read")),
    row(Action::OpenApi, "openapi.read", Enrolled),
    row(Action::ProblemRead, "problem.read", Enrolled),
];

/// What an action without a row would get: the most restrictive requirement. A unit test checks
/// that every action has its row, so this is never used.
const UNLISTED: ActionSpec = row(Action::KeyDestroy, "unlisted", Operator);

impl Action {
    /// Every action.
    pub const ALL: [Action; 44] = [
        Action::KeyList,
        Action::KeyListUsable,
        Action::KeyRead,
        Action::KeyPublic,
        Action::KeyAttest,
        Action::KeyCreate,
        Action::KeyImport,
        Action::KeyRotate,
        Action::KeyDisable,
        Action::KeyEnable,
        Action::KeyScheduleDeletion,
        Action::KeyCancelDeletion,
        Action::KeyDestroy,
        Action::KeySign,
        Action::KeySignBatch,
        Action::KeyVerify,
        Action::CaInit,
        Action::CaShow,
        Action::CaRotate,
        Action::CaChain,
        Action::CaCrl,
        Action::CertIssue,
        Action::CertIssueBundle,
        Action::CertRead,
        Action::CertList,
        Action::CertRevoke,
        Action::PrincipalList,
        Action::PrincipalCreate,
        Action::PrincipalDelete,
        Action::TokenIssue,
        Action::TokenIntrospect,
        Action::TokenRevoke,
        Action::Jwks,
        Action::Metadata,
        Action::AuditRead,
        Action::AuditExport,
        Action::AuditReanchor,
        Action::AuditReplayRevocations,
        Action::Health,
        Action::Ready,
        Action::Metrics,
        Action::ProblemRead,
        Action::Status,
        Action::OpenApi,
    ];

    /// The action's row.
    pub fn spec(self) -> &'static ActionSpec {
        ACTIONS
            .iter()
            .find(|s| s.action == self)
            .unwrap_or(&UNLISTED)
    }

    /// The audit record's `action`.
    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_action_has_one_row() {
        assert_eq!(ACTIONS.len(), Action::ALL.len());
        for action in Action::ALL {
            assert!(
                ACTIONS.iter().filter(|s| s.action == action).count() == 1,
                "{action:?}"
            );
        }
    }

    #[test]
    fn every_row_is_unique() {
        let mut actions = HashSet::new();
        for spec in ACTIONS {
            assert!(actions.insert(spec.action), "{:?} twice", spec.action);
            assert_eq!(spec.action.spec().action, spec.action);
        }
    }
}
