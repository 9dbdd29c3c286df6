//! The OpenAPI 3.1 description, generated from the route table ([`super::routes::ROUTES`]):
//! one operation per row (its `operationId`, its action's requirement as the description and
//! `x-signet-scope`, its audit name as `x-signet-audit-action`), the request and answer
//! schemas each row names (the types its handler uses, through utoipa), and the problem types
//! each operation can answer with. Nothing here names an operation.

use std::collections::BTreeMap;

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ComponentsBuilder, ObjectBuilder, Ref, Type};
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder, Paths, Required};
use utoipa::{PartialSchema, ToSchema};

use super::model::ProblemDocument;
use super::problem_type_uri;
use super::problem_types::ProblemType;
use super::routes::{Answer, Doc};

/// The problem types an operation can answer with, by status.
fn problems(io: &Doc, has_path_params: bool) -> BTreeMap<u16, Vec<ProblemType>> {
    use ProblemType::*;
    // Every request: its identity, the limits on its target and header fields, the server.
    let mut kinds = vec![
        Unauthenticated,
        Forbidden,
        UriTooLong,
        HeadersTooLarge,
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
        kinds.extend([
            RequestTimeout,
            PayloadTooLarge,
            UnsupportedMediaType,
            Unprocessable,
        ]);
    }
    // A named resource can be in a state that refuses the request (a key scheduled for
    // deletion asked to sign, a disabled or destroyed version): 409, changing or not; so can
    // the key an operation uses without naming it (the token key).
    if io.changes || has_path_params || io.uses_key {
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

/// The document as this server's configuration bounds it (JSON): the batch size and the
/// token lifetime it enforces are the ones described.
pub fn document_for(config: &crate::config::Config) -> String {
    let Ok(mut doc) = serde_json::to_value(document()) else {
        return "{}".into();
    };
    let schemas = &mut doc["components"]["schemas"];
    for (pointer, rule) in rules(config) {
        if let (Some(field), serde_json::Value::Object(rule)) = (
            schemas
                .pointer_mut(&pointer)
                .and_then(|v| v.as_object_mut()),
            rule,
        ) {
            field.extend(rule);
        }
    }
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The syntax rules the handlers check that the types do not carry, some set by `config`:
/// JSON Schema keywords to add, by the JSON pointer (under `components/schemas`) of the field
/// they apply to.
fn rules(config: &crate::config::Config) -> Vec<(String, serde_json::Value)> {
    use serde_json::json;
    // Standard base64 as the handlers decode it: padded, with no bits left over.
    let base64 =
        r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";
    // RFC 6749 scope tokens separated by spaces: at most 32, of at most 128 characters each.
    let token_scopes = r#"^ *(?:[!#-\[\]-~]{1,128}(?: +[!#-\[\]-~]{1,128}){0,31})? *$"#;
    let mut rules = vec![
        (
            "/BatchRequest/properties/items".to_string(),
            json!({"minItems": 1, "maxItems": config.server.sign_batch_max}),
        ),
        (
            "/IssueBody/properties/ttl".into(),
            json!({"minimum": 1, "maximum": config.tokens.max_ttl_secs}),
        ),
        (
            "/PrincipalRequest/properties/scopes/items".into(),
            json!({"pattern": crate::domain::principals::scope_pattern()}),
        ),
        (
            "/IssueBody/properties/subject".into(),
            json!({"pattern": signet_pki::CLIENT_NAME_PATTERN}),
        ),
        (
            "/IssueBody/properties/scope".into(),
            json!({"pattern": token_scopes}),
        ),
        (
            "/RevokeBody/properties/token".into(),
            json!({"pattern": r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$"}),
        ),
        // Exactly one of token and jti.
        (
            "/RevokeBody".into(),
            json!({
                "anyOf": [
                    {"required": ["token"], "properties": {"token": {"type": "string"}}},
                    {"required": ["jti"], "properties": {"jti": {"type": "string"}}},
                ],
                "not": {
                    "required": ["token", "jti"],
                    "properties": {"token": {"type": "string"}, "jti": {"type": "string"}},
                },
            }),
        ),
        (
            "/RevokeBody/properties/jti".into(),
            json!({"minLength": 1, "maxLength": 128}),
        ),
        (
            "/VerifyRequest/properties/signature".into(),
            json!({"pattern": base64}),
        ),
        (
            "/IssueRequest/properties/ips/items".into(),
            json!({"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}),
        ),
    ];
    for request in ["SignRequest", "VerifyRequest"] {
        let field = |name: &str| format!("/{request}/properties/{name}");
        rules.push((field("input"), json!({"pattern": base64})));
        rules.push((
            field("context"),
            json!({"pattern": base64, "maxLength": signet_hsm::MAX_CONTEXT.div_ceil(3) * 4}),
        ));
        // A key version is a u32 from 1.
        rules.push((
            field("version"),
            json!({"format": "int64", "minimum": 1, "maximum": u32::MAX}),
        ));
    }
    rules
}

/// The document for this server.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    let mut schemas = BTreeMap::new();
    schemas.insert(
        ProblemDocument::name().into_owned(),
        ProblemDocument::schema(),
    );
    for route in super::routes::ROUTES {
        let spec = route.action.spec();
        let io = (route.doc)();
        schemas.extend(io.schemas.iter().cloned());
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
                    .maximum(Some(u32::MAX))
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
            let mut body = RequestBodyBuilder::new()
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
                );
            if io.request_form {
                body = body.content(
                    "application/x-www-form-urlencoded",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(request.clone())))
                        .build(),
                );
            }
            op = op.request_body(Some(body.build()));
        }
        let ok = match &io.answer {
            Answer::Json(schema) => ResponseBuilder::new().description("Success").content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(schema.clone())))
                    .build(),
            ),
            Answer::Other(media, what) => {
                // A JSON document (the JWKS, the metadata, this description) is an object.
                let schema = if media.ends_with("json") {
                    ObjectBuilder::new().schema_type(Type::Object)
                } else {
                    string_schema()
                };
                ResponseBuilder::new()
                    .description(*what)
                    .content(*media, ContentBuilder::new().schema(Some(schema)).build())
            }
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
                            .schema(Some(Ref::from_schema_name(
                                ProblemDocument::name().into_owned(),
                            )))
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
        .schemas_from_iter(schemas)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    /// Every syntax rule lands on a field of the document (a renamed type or field would
    /// otherwise drop its rule without a word).
    #[test]
    fn every_rule_names_a_field_of_the_document() {
        let doc = serde_json::to_value(super::document()).unwrap();
        let schemas = &doc["components"]["schemas"];
        for (pointer, _) in super::rules(&crate::config::Config::default()) {
            assert!(
                schemas.pointer(&pointer).is_some_and(|v| v.is_object()),
                "{pointer} is not in the document"
            );
        }
    }
}
