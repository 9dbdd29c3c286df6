//! The PKCS#11 backend on a remote token of its own (`p11-kit server` over SoftHSM2, the
//! stand-in for a network HSM) whose connection is killed while several threads sign and
//! another asks the module for its state (as readiness checks do): the module is initialised
//! again underneath them and every call succeeds — none meets the gap between `C_Finalize`
//! and `C_Initialize`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::var;
use common::remote::RemoteToken;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use signet_hsm::{
    Backend, EcdsaFormat, KeyRequest, KeySpec, Pin, Pkcs11Backend, Pkcs11Config, SignInput,
    SignatureAlgorithm, TokenSelector,
};

#[test]
fn a_dead_connection_is_recovered_under_concurrent_signing() {
    const THREADS: usize = 6;
    const KILLS: usize = 3;
    let token = RemoteToken::start();
    // p11-kit-client.so reads the address when the module is initialised (this process only:
    // nextest runs each test in its own).
    std::env::set_var(
        "P11_KIT_SERVER_ADDRESS",
        var(&token.env, "P11_KIT_SERVER_ADDRESS"),
    );
    let backend = Arc::new(
        Pkcs11Backend::open(Pkcs11Config {
            module: var(&token.env, "SIGNET_P11KIT_MODULE").into(),
            token: TokenSelector::Label(var(&token.env, "SIGNET_P11KIT_TOKEN").into()),
            pin: Pin::new(var(&token.env, "SIGNET_P11KIT_PIN").to_string()),
            // One session at a time: p11-kit 0.24's client can leave calls that were waiting
            // on a connection blocked for good when that connection dies (README).
            pool_size: 1,
        })
        .unwrap(),
    );
    let key = backend
        .generate(&KeyRequest::named("concurrent", KeySpec::EcP256))
        .unwrap();
    // ring takes the bare point.
    let public = backend.public_key(&key.id).unwrap().raw();

    let stop = Arc::new(AtomicBool::new(false));
    let signed = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (backend, id, public) = (backend.clone(), key.id.clone(), public.clone());
            let (stop, signed, failures) = (stop.clone(), signed.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let message = format!("thread {t} message {n}");
                    match signet_hsm::sign(
                        backend.as_ref(),
                        &id,
                        SignatureAlgorithm::Es256,
                        SignInput::Message(message.as_bytes()),
                        EcdsaFormat::Der,
                    ) {
                        Ok(signature) => {
                            let checked = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &public)
                                .verify(message.as_bytes(), &signature);
                            if checked.is_err() {
                                failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{message}: bad signature"));
                            }
                            signed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.lock().unwrap().push(format!("{message}: {e}")),
                    }
                }
            })
        })
        .collect();

    // Readiness checks ask the module about itself meanwhile, outside any signature.
    let prober = {
        let (backend, stop, failures) = (backend.clone(), stop.clone(), failures.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = backend.info() {
                    failures.lock().unwrap().push(format!("info: {e}"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let wait_for = |count: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while signed.load(Ordering::Relaxed) < count {
            assert!(
                Instant::now() < deadline,
                "signing stopped before {count}: {} signed, failures {:?}",
                signed.load(Ordering::Relaxed),
                failures.lock().unwrap().iter().take(5).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    wait_for(200);
    for _ in 0..KILLS {
        let before = token.connections();
        assert_eq!(
            token.kill_connections().len(),
            1,
            "this process's connection"
        );
        // Signing goes on: on a new connection (a new child of the server).
        wait_for(signed.load(Ordering::Relaxed) + 200);
        let after = token.connections();
        assert_eq!(after.len(), 1, "{after:?}");
        assert_ne!(before, after, "the module connected again");
        // The backend reinitialises at most once a second.
        std::thread::sleep(Duration::from_millis(1100));
    }
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }
    prober.join().unwrap();
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed: {:?}",
        failures.len(),
        signed.load(Ordering::Relaxed) + failures.len() as u64,
        &failures[..failures.len().min(10)]
    );
}

/// An HSM service that is up but shows no token (here `p11-kit server` exporting another
/// token's URI; in production a partition not there yet, or a token directory being rewritten
/// as a connection starts): opening the backend answers "no such token" within seconds. With
/// cryptoki's own slot listing it spun for ever at full CPU, p11-kit's client answering
/// CKR_BUFFER_TOO_SMALL with a count of zero to every retry. Once the service shows the token,
/// the same open succeeds.
#[test]
fn a_service_without_the_token_is_a_clear_error_not_a_spin() {
    let token = RemoteToken::start();
    std::env::set_var(
        "P11_KIT_SERVER_ADDRESS",
        var(&token.env, "P11_KIT_SERVER_ADDRESS"),
    );
    let config = Pkcs11Config {
        module: var(&token.env, "SIGNET_P11KIT_MODULE").into(),
        token: TokenSelector::Label(var(&token.env, "SIGNET_P11KIT_TOKEN").into()),
        pin: Pin::new(var(&token.env, "SIGNET_P11KIT_PIN").to_string()),
        pool_size: 1,
    };
    token.restart_exporting(Duration::ZERO, "pkcs11:token=elsewhere");
    let (done, answer) = std::sync::mpsc::channel();
    let opening = config.clone();
    let started = Instant::now();
    // A thread, so that a spin fails the test instead of hanging it.
    std::thread::spawn(move || {
        let _ = done.send(Pkcs11Backend::open(opening).map(|_| ()));
    });
    let got = answer
        .recv_timeout(Duration::from_secs(20))
        .expect("opening the backend did not return within 20 s");
    let err = got.expect_err("no token is exported");
    assert!(matches!(err, signet_hsm::Error::TokenNotFound(_)), "{err}");
    assert!(
        err.to_string()
            .contains("the module has no initialised token"),
        "{err}"
    );
    eprintln!("refused after {:?}: {err}", started.elapsed());
    token.restart_exporting(Duration::ZERO, "pkcs11:token=remote");
    let backend = Pkcs11Backend::open(config).unwrap();
    assert!(backend.info().is_ok());
}
