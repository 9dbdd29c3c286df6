//! The OpenAPI 3.1 description, generated: one operation per routed row of the action table
//! (the action as `operationId`, its requirement as the description and `x-signet-scope`, its
//! audit name as `x-signet-audit-action`),
//! the request and answer schemas from the types the handlers use (`model.rs` and the request
//! structs, through utoipa), and the problem types each operation can answer with. Nothing here
//! is written by hand but the mapping from action to types, which is an exhaustive match: a new
//! action does not compile until it is described.

use std::collections::BTreeMap;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Paths, RefOr, Required, Schema};
use utoipa::{IntoParams, ToSchema};

use super::model::*;
use super::problem_types::ProblemType;
use super::{keys, ops, pki, problem_type_uri, tokens};
use crate::service::status::Status;
use crate::service::Action;

/// What an operation's answer is.
enum Answer {
    /// JSON of a schema.
    Json(String),
    /// Another media type (text or binary), described.
    Other(&'static str, &'static str),
    /// No body.
    Empty,
}

/// What goes in and comes out of an operation.
struct Io {
    summary: &'static str,
    tag: &'static str,
    request: Option<String>,
    /// The request body may be absent.
    request_optional: bool,
    query: Vec<utoipa::openapi::path::Parameter>,
    status: u16,
    answer: Answer,
    /// It changes state (so 409 and the audit-before-effect 503 apply).
    changes: bool,
}

fn name<T: ToSchema>() -> String {
    T::name().into_owned()
}

fn json<T: ToSchema>() -> Answer {
    Answer::Json(name::<T>())
}

/// The types of each routed action.
fn io(action: Action) -> Option<Io> {
    use Action::*;
    let io = |summary, tag, request: Option<String>, status, answer, changes| Io {
        summary,
        tag,
        request,
        request_optional: false,
        query: Vec::new(),
        status,
        answer,
        changes,
    };
    let keys_tag = "keys";
    Some(match action {
        KeyList => io(
            "List keys",
            keys_tag,
            None,
            200,
            json::<super::model::KeyList>(),
            false,
        ),
        KeyRead => io(
            "Show a key and its versions",
            keys_tag,
            None,
            200,
            json::<KeyView>(),
            false,
        ),
        KeyCreate => io(
            "Create a key (version 1 generated in the token)",
            keys_tag,
            Some(name::<keys::CreateRequest>()),
            201,
            json::<KeyView>(),
            true,
        ),
        KeyRotate => io(
            "Add a version and make it primary",
            keys_tag,
            None,
            200,
            json::<KeyView>(),
            true,
        ),
        KeyDisable => io(
            "Disable a version",
            keys_tag,
            None,
            200,
            json::<KeyView>(),
            true,
        ),
        KeyEnable => io(
            "Enable a version",
            keys_tag,
            None,
            200,
            json::<KeyView>(),
            true,
        ),
        KeyAttest => Io {
            query: keys::VersionQuery::into_params(|| Some(ParameterIn::Query)),
            ..io(
                "A device's attestation of a key version (PIV cards)",
                keys_tag,
                None,
                200,
                json::<super::model::AttestationView>(),
                false,
            )
        },
        KeyScheduleDeletion => Io {
            query: keys::DeleteQuery::into_params(|| Some(ParameterIn::Query)),
            ..io(
                "Schedule the key's destruction",
                keys_tag,
                None,
                200,
                json::<KeyView>(),
                true,
            )
        },
        KeyCancelDeletion => io(
            "Cancel a scheduled destruction",
            keys_tag,
            None,
            200,
            json::<KeyView>(),
            true,
        ),
        KeySign => io(
            "Sign with the key (the signature only once its audit record is durable)",
            keys_tag,
            Some(name::<keys::SignRequest>()),
            200,
            json::<SignatureView>(),
            false,
        ),
        KeySignBatch => io(
            "Sign many inputs, each answered on its own",
            keys_tag,
            Some(name::<keys::BatchRequest>()),
            200,
            json::<BatchView>(),
            false,
        ),
        KeyVerify => io(
            "Verify a signature with the key's public half",
            keys_tag,
            Some(name::<keys::VerifyRequest>()),
            200,
            json::<VerifyView>(),
            false,
        ),
        CaChain => io(
            "The CA chain (intermediate + root)",
            "ca",
            None,
            200,
            Answer::Other("application/pem-certificate-chain", "PEM certificates"),
            false,
        ),
        CaCrl => io(
            "The current CRL (DER; PEM with Accept: application/x-pem-file)",
            "ca",
            None,
            200,
            Answer::Other("application/pkix-crl", "DER CRL"),
            false,
        ),
        CertIssue => io(
            "Issue a certificate from a CSR",
            "certificates",
            Some(name::<pki::IssueRequest>()),
            201,
            json::<IssuedView>(),
            true,
        ),
        CertRead => io(
            "Show a certificate",
            "certificates",
            None,
            200,
            json::<CertView>(),
            false,
        ),
        CertRevoke => Io {
            request_optional: true,
            ..io(
                "Revoke a certificate (refused on the next request of its open connections)",
                "certificates",
                Some(name::<pki::RevokeRequest>()),
                200,
                json::<CertView>(),
                true,
            )
        },
        PrincipalList => io(
            "List principals",
            "principals",
            None,
            200,
            json::<super::model::PrincipalList>(),
            false,
        ),
        PrincipalCreate => io(
            "Create a principal with scopes",
            "principals",
            Some(name::<pki::PrincipalRequest>()),
            201,
            json::<PrincipalView>(),
            true,
        ),
        PrincipalDelete => io(
            "Delete a principal",
            "principals",
            None,
            204,
            Answer::Empty,
            true,
        ),
        TokenIssue => io(
            "Issue an access token (JWT, RFC 9068)",
            "tokens",
            Some(name::<tokens::IssueBody>()),
            200,
            json::<TokenView>(),
            false,
        ),
        TokenIntrospect => io(
            "Introspect a token (RFC 7662)",
            "tokens",
            Some(name::<tokens::IntrospectBody>()),
            200,
            json::<IntrospectionView>(),
            false,
        ),
        TokenRevoke => io(
            "Revoke a token by value or jti",
            "tokens",
            Some(name::<tokens::RevokeBody>()),
            200,
            json::<RevokedView>(),
            true,
        ),
        Jwks => io(
            "The token keys (JWK Set, RFC 7517)",
            "tokens",
            None,
            200,
            Answer::Other("application/jwk-set+json", "JWK Set"),
            false,
        ),
        Metadata => io(
            "Token issuer metadata (RFC 8414 style)",
            "tokens",
            None,
            200,
            Answer::Other("application/json", "issuer metadata"),
            false,
        ),
        AuditRead => Io {
            query: ops::AuditQuery::into_params(|| Some(ParameterIn::Query)),
            ..io(
                "Audit records after a sequence number",
                "operations",
                None,
                200,
                Answer::Other(
                    "application/x-ndjson",
                    "audit records, one JSON object per line",
                ),
                false,
            )
        },
        Health => io(
            "Liveness",
            "operations",
            None,
            200,
            json::<HealthView>(),
            false,
        ),
        Ready => io(
            "Readiness: the HSM answers, the store and the audit log take writes",
            "operations",
            None,
            200,
            json::<ReadyView>(),
            false,
        ),
        Metrics => io(
            "Metrics (OpenMetrics text)",
            "operations",
            None,
            200,
            Answer::Other("application/openmetrics-text", "OpenMetrics"),
            false,
        ),
        Status => io(
            "The status report (as signet status)",
            "operations",
            None,
            200,
            json::<crate::service::status::Status>(),
            false,
        ),
        ProblemRead => io(
            "What a problem type means",
            "operations",
            None,
            200,
            json::<ProblemTypeView>(),
            false,
        ),
        OpenApi => io(
            "This description (OpenAPI 3.1)",
            "operations",
            None,
            200,
            Answer::Other("application/json", "OpenAPI 3.1 document"),
            false,
        ),
        KeyPublic
        | KeyImport
        | KeyDestroy
        | CaInit
        | CaShow
        | CaRotate
        | CertIssueBundle
        | CertList
        | AuditExport
        | AuditReanchor
        | AuditReplayRevocations => return None,
    })
}

/// Every schema the document refers to, with the ones they use.
fn schemas() -> Vec<(String, RefOr<Schema>)> {
    let mut all = Vec::new();
    fn add<T: ToSchema>(all: &mut Vec<(String, RefOr<Schema>)>) {
        all.push((name::<T>(), T::schema()));
        T::schemas(all);
    }
    add::<KeyList>(&mut all);
    add::<KeyView>(&mut all);
    add::<super::model::AttestationView>(&mut all);
    add::<SignatureView>(&mut all);
    add::<BatchView>(&mut all);
    add::<VerifyView>(&mut all);
    add::<CertView>(&mut all);
    add::<IssuedView>(&mut all);
    add::<PrincipalList>(&mut all);
    add::<PrincipalView>(&mut all);
    add::<TokenView>(&mut all);
    add::<IntrospectionView>(&mut all);
    add::<RevokedView>(&mut all);
    add::<HealthView>(&mut all);
    add::<ReadyView>(&mut all);
    add::<ProblemTypeView>(&mut all);
    add::<ProblemDocument>(&mut all);
    add::<Status>(&mut all);
    add::<keys::CreateRequest>(&mut all);
    add::<keys::SignRequest>(&mut all);
    add::<keys::BatchRequest>(&mut all);
    add::<keys::VerifyRequest>(&mut all);
    add::<pki::IssueRequest>(&mut all);
    add::<pki::RevokeRequest>(&mut all);
    add::<pki::PrincipalRequest>(&mut all);
    add::<tokens::IssueBody>(&mut all);
    add::<tokens::IntrospectBody>(&mut all);
    add::<tokens::RevokeBody>(&mut all);
    all
}

/// The problem types an operation can answer with, by status.
fn problems(io: &Io, has_path_params: bool) -> BTreeMap<u16, Vec<ProblemType>> {
    use ProblemType::*;
    let mut kinds = vec![
        Unauthenticated,
        Forbidden,
        Internal,
        HsmUnavailable,
        NotReady,
    ];
    if has_path_params || !io.query.is_empty() || io.request.is_some() {
        kinds.push(BadRequest);
    }
    if has_path_params {
        kinds.push(NotFound);
    }
    if io.request.is_some() {
        kinds.extend([RequestTimeout, PayloadTooLarge, UnsupportedMediaType]);
    }
    if io.changes {
        kinds.push(Conflict);
    }
    if io.changes || matches!(io.answer, Answer::Json(_)) && io.request.is_some() {
        kinds.push(AuditUnavailable);
    }
    let mut by_status: BTreeMap<u16, Vec<ProblemType>> = BTreeMap::new();
    for kind in kinds {
        by_status.entry(kind.status()).or_default().push(kind);
    }
    by_status
}

fn string_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// The document for this server.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for route in super::routes::ROUTES {
        let spec = route.action.spec();
        let Some(io) = io(spec.action) else {
            continue;
        };
        let path_params: Vec<&str> = route
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let requirement = spec.requirement.describe();
        let mut op = OperationBuilder::new()
            .operation_id(Some(route.id))
            .summary(Some(io.summary))
            .description(Some(format!(
                "Requires: {requirement}. Audited as `{}`.",
                spec.name
            )))
            .tag(io.tag)
            .extensions(Some(
                ExtensionsBuilder::new()
                    .add("x-signet-scope", requirement.replace('`', ""))
                    .add("x-signet-audit-action", spec.name)
                    .build(),
            ));
        for p in &path_params {
            let schema = if *p == "version" {
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
            } else {
                string_schema()
            };
            op = op.parameter(
                ParameterBuilder::new()
                    .name(*p)
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(schema)),
            );
        }
        for q in io.query.iter().cloned() {
            op = op.parameter(q);
        }
        if let Some(request) = &io.request {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(if io.request_optional {
                        Required::False
                    } else {
                        Required::True
                    }))
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(request.clone())))
                            .build(),
                    )
                    .build(),
            ));
        }
        let ok = match &io.answer {
            Answer::Json(schema) => ResponseBuilder::new().description("Success").content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema.clone())))
                    .build(),
            ),
            Answer::Other(media, what) => ResponseBuilder::new().description(*what).content(
                *media,
                ContentBuilder::new().schema(Some(string_schema())).build(),
            ),
            Answer::Empty => ResponseBuilder::new().description("Done; no body"),
        };
        let mut responses = ResponsesBuilder::new().response(io.status.to_string(), ok.build());
        for (status, kinds) in problems(&io, !path_params.is_empty()) {
            let types: Vec<String> = kinds
                .iter()
                .map(|k| format!("`{}` ({})", problem_type_uri(*k), k.meaning()))
                .collect();
            responses = responses.response(
                status.to_string(),
                ResponseBuilder::new()
                    .description(types.join("; "))
                    .content(
                        "application/problem+json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(name::<ProblemDocument>())))
                            .build(),
                    )
                    .build(),
            );
        }
        op = op.responses(responses.build());
        let method = match route.method {
            "POST" => HttpMethod::Post,
            "DELETE" => HttpMethod::Delete,
            _ => HttpMethod::Get,
        };
        paths.add_path_operation(route.path, vec![method], op.build());
    }
    let components = ComponentsBuilder::new()
        .schemas_from_iter(schemas())
        .security_scheme(
            "mutualTLS",
            SecurityScheme::MutualTls {
                description: Some(
                    "TLS 1.3 with a client certificate issued by Signet's CA (a leaf alone is \
                     enough); checked, with revocation, at the handshake and on every request"
                        .into(),
                ),
                extensions: None,
            },
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Signet")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Hardware-backed key service: keys that never leave the token, a CA, \
                     signatures and access tokens over mutual TLS. Every error is an RFC 9457 \
                     problem document.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .security(Some(vec![SecurityRequirement::new(
            "mutualTLS",
            Vec::<String>::new(),
        )]))
        .build()
}
