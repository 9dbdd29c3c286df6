//! Every JSON request body through the real router, on a real service (SoftHSM2 token in a
//! temporary directory), as an enrolled principal who may sign, verify and use tokens. The first
//! byte picks the route. A panic, or a 500 for what is only bad input, is a finding.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use signet::api::{router, AppState, RequestId};
use signet::config::Config;
use signet::domain::keys::KeyName;
use signet::service::{prepare_process, Caller, ClientIdentity, CreateKey, PutPrincipal, Service};
use tower::ServiceExt;

const ROUTES: &[&str] = &[
    "/v1/keys/k/sign",
    "/v1/keys/k/sign-batch",
    "/v1/keys/k/verify",
    "/v1/keys/r/sign",
    "/v1/keys/r/verify",
    "/v1/keys",
    "/v1/certificates",
    "/v1/principals",
    "/v1/tokens",
    "/v1/tokens/introspect",
    "/v1/tokens/revoke",
    "/v1/certificates/00/revoke",
];

fn setup() -> &'static (tokio::runtime::Runtime, Router) {
    static STATE: OnceLock<(tokio::runtime::Runtime, Router)> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir").keep();
        let config = Config {
            data_dir: dir.join("data"),
            ..Config::default()
        };
        prepare_process(&config);
        let service = Arc::new(Service::open(config).expect("service"));
        service
            .bootstrap("127.0.0.1:0".parse().expect("address"))
            .expect("bootstrap");
        let op = Caller::operator();
        for (name, spec) in [
            ("k", signet_hsm::KeySpec::EcP256),
            ("r", signet_hsm::KeySpec::Rsa2048),
        ] {
            let name = KeyName::parse(name).expect("name");
            service
                .execute(&op, CreateKey { name, spec })
                .wait()
                .expect("key");
        }
        service
            .execute(
                &op,
                PutPrincipal::new(
                    "fuzzer".into(),
                    [
                        "keys:sign:*",
                        "keys:read",
                        "tokens:issue",
                        "tokens:introspect",
                        "tokens:revoke",
                        "certs:issue",
                        "tokens:scope:*",
                    ]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                ),
            )
            .wait()
            .expect("principal");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        (runtime, router(AppState::new(service).expect("workers")))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let (runtime, app) = setup();
    let path = ROUTES[first as usize % ROUTES.len()];
    let request = Request::post(path)
        .header("content-type", "application/json")
        .extension(ClientIdentity {
            name: "fuzzer".into(),
            serial: "00".into(),
            cert_sha256: vec![0; 32],
            not_after: i64::MAX,
        })
        .extension(RequestId("fuzz".into()))
        .body(Body::from(body.to_vec()))
        .expect("request");
    let response = runtime
        .block_on(app.clone().oneshot(request))
        .expect("infallible");
    assert_ne!(
        response.status(),
        StatusCode::INTERNAL_SERVER_ERROR,
        "500 for {path} with {:?}",
        String::from_utf8_lossy(body)
    );
});
