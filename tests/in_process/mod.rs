//! A `Service` in this test process, as `pipeline.rs` and `clock.rs` use it: over a temporary
//! data directory (the embedded SoftHSM2 token, loaded into this process, and sled), with
//! callers made as the API's authentication makes them.

#![allow(dead_code)]

use signet::config::Config;
use signet::service::{prepare_process, Caller, ClientIdentity, Service};
use signet::store::Principal;

/// The service on the default configuration.
pub fn service() -> (tempfile::TempDir, Service) {
    service_with(|_| ())
}

/// [`service`] with a changed configuration.
pub fn service_with(change: impl FnOnce(&mut Config)) -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    change(&mut config);
    prepare_process(&config);
    let service = Service::open(config).unwrap();
    (dir, service)
}

/// A client named `name` holding `scopes`, as the API's authentication makes it.
pub fn client(name: &str, scopes: &[&str]) -> Caller {
    Caller::client(
        ClientIdentity {
            name: name.into(),
            serial: format!("{:02x}", name.len()),
            cert_sha256: vec![0; 32],
            not_after: i64::MAX,
        },
        Some(Principal {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            created: 0,
            created_by: "test".into(),
        }),
        "req-1",
    )
}
