//! The async client (`signet_client::AsyncClient`, feature `async`) against a live server:
//! concurrent signatures on one client, each checked with ring against the key's public half;
//! problem answers as typed errors; a certificate from another CA refused in the handshake.

#![allow(clippy::unwrap_used)]

mod common;

use common::Server;
use serde_json::json;
use signet_client::{AsyncClient, Client, Error, Identity, InputType, SignRequest};

fn client_for(server: &Server, cert: &std::path::Path, key: &std::path::Path) -> AsyncClient {
    Client::builder(server.url(""))
        .root_pem(&std::fs::read(server.data.join("ca/root.pem")).unwrap())
        .unwrap()
        .identity(
            Identity::from_pem(&std::fs::read(cert).unwrap(), &std::fs::read(key).unwrap())
                .unwrap(),
        )
        .build_async()
        .unwrap()
}

#[test]
fn the_async_client_signs_concurrently_and_types_its_errors() {
    let server = Server::start();
    let admin = server.admin();
    let created = admin.post("/v1/keys", &json!({"name": "async-k", "spec": "ec-p256"}));
    assert_eq!(created.status, 201, "{created:?}");
    let clients = server.data.join("clients");
    let client = client_for(
        &server,
        &clients.join("admin.crt.pem"),
        &clients.join("admin.key.pem"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        client.health().await.unwrap();
        let key = client.key("async-k").await.unwrap();
        let pem = key.versions[0].public_key_pem.clone().unwrap();
        let spki = pem::parse(pem).unwrap();
        let (_, spki) = <x509_parser::x509::SubjectPublicKeyInfo as x509_parser::prelude::FromDer<
            '_,
            _,
        >>::from_der(spki.contents())
        .unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            spki.subject_public_key.data.to_vec(),
        );
        // 32 signatures in flight at once on one client (and its few connections).
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move {
                    let message = format!("message {i}");
                    let signature = client
                        .sign(
                            "async-k",
                            &SignRequest::new(message.as_bytes(), InputType::Message),
                        )
                        .await;
                    (message, signature)
                })
            })
            .collect();
        for task in tasks {
            let (message, signature) = task.await.unwrap();
            let signature = signature.unwrap();
            assert_eq!(
                (signature.version, signature.algorithm.as_str()),
                (1, "ES256")
            );
            public
                .verify(message.as_bytes(), &signature.bytes)
                .unwrap_or_else(|_| panic!("{message}: the signature does not verify"));
        }
        // Problems are typed: a read of nothing, a signature the key refuses.
        match client.key("no-such-key").await {
            Err(Error::Problem(p)) => assert_eq!((p.status, p.name()), (404, "not-found")),
            other => panic!("{other:?}"),
        }
        let mut wrong = SignRequest::new(b"x", InputType::Message);
        wrong.algorithm = Some("RS256");
        match client.sign("async-k", &wrong).await {
            Err(Error::Problem(p)) => {
                assert_eq!(p.status, 422, "{p:?}");
                assert!(p.detail.contains("does not fit"), "{p:?}");
            }
            other => panic!("{other:?}"),
        }
        // A name that is not a key name is refused before anything is sent.
        assert!(matches!(
            client.key("../admin").await,
            Err(Error::Config(_))
        ));
    });

    // A certificate from a CA the server does not trust: refused in the handshake.
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = common::openssl_self_signed(dir.path(), "stranger", "/CN=stranger", &[]);
    let stranger = client_for(&server, &cert, &key);
    let refused = runtime.block_on(stranger.health());
    assert!(
        matches!(refused, Err(Error::CertificateRefused { .. })),
        "{refused:?}"
    );
    server.stop();
}
