//! `pqc`: ML-DSA-44/65/87 and SLH-DSA-SHA2-128s/128f next to ES256 on one token with them (kryoptic built by
//! scripts/kryoptic.sh, `SIGNET_TEST_TOKEN=kryoptic`): key generations/s and signatures/s
//! through the backend, then through the JSON API of a `signet serve` on the same token (one
//! and two keep-alive connections), with the server's CPU µs per signature; and the pre-hash
//! variants (HashML-DSA with SHA-512, HashSLH-DSA with SHA-256) through the backend, next to
//! the pure algorithm on the same key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;
use signet_hsm::{Backend, EcdsaFormat, KeyRequest, KeySpec, Pkcs11Backend, SignInput};

use super::{pct, post, rand_suffix, sign_in_backend, sign_over_api, Report, Server, MESSAGE};

const SPECS: [KeySpec; 6] = [
    KeySpec::EcP256,
    KeySpec::MlDsa44,
    KeySpec::MlDsa65,
    KeySpec::MlDsa87,
    KeySpec::SlhDsaSha2_128s,
    KeySpec::SlhDsaSha2_128f,
];

pub fn run(report: &mut Report, duration: Duration) {
    let token = signet_softhsm::TestToken::new().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(Pkcs11Backend::open(token.config(4)).unwrap());
    let info = backend.info().unwrap();
    assert!(
        info.specs.contains(&KeySpec::MlDsa65),
        "{} has no ML-DSA: run with SIGNET_TEST_TOKEN=kryoptic (scripts/bench.sh pqc)",
        token.kind.name()
    );
    println!(
        "## ML-DSA, SLH-DSA and ES256 on {} ({})\n",
        token.kind.name(),
        info.library
    );
    println!("| spec | raw keygen/s | raw sign/s, 1 thread | raw sign/s, 2 threads | API sign/s, 1 conn | API sign/s, 2 conns | server CPU µs per signature (2 conns) | API p50 ms (1 conn) | signature bytes |");
    println!("|---|---|---|---|---|---|---|---|---|");

    // The server on the same token (its own data directory; the token's environment).
    let dir = std::env::temp_dir().join(format!("signet-bench-pqc-{}", rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let pin = dir.join("hsm.pin");
    std::fs::write(&pin, token.pin.expose()).unwrap();
    // Signet refuses a PIN file others can read.
    std::fs::set_permissions(&pin, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let config = dir.join("signet.toml");
    std::fs::write(
        &config,
        format!(
            "[hsm]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\n",
            token.module.display(),
            token.label,
            pin.display()
        ),
    )
    .unwrap();
    let mut env = token.env.clone();
    env.push(("SIGNET_CONFIG".into(), config.display().to_string()));
    let bin = std::env::var("SIGNET_BIN").unwrap_or_else(|_| "target/release/signet".into());
    let server = Server::start_node(&bin, dir.join("data"), &env, None);
    let body = Arc::new(
        json!({"input": base64::engine::general_purpose::STANDARD.encode(MESSAGE)}).to_string(),
    );

    let mut prehash = Vec::new();
    for spec in SPECS {
        let alg = spec.default_algorithm();
        // Key generation: as many pairs as fit in the step, each destroyed again.
        let start = Instant::now();
        let mut made = 0;
        while start.elapsed() < duration || made == 0 {
            let key = generate(&backend, format!("bench-pqc-gen-{}", rand_suffix()), spec);
            made += 1;
            backend.destroy(&key.id).unwrap();
        }
        let keygen = made as f64 / start.elapsed().as_secs_f64();
        report.set(format!("pqc.raw.{spec}.keygen"), keygen);

        let key = generate(&backend, format!("bench-pqc-{}", rand_suffix()), spec);
        let mut raw = Vec::new();
        let mut sig_len = 0;
        for threads in [1, 2] {
            let (rate, _, _) =
                sign_in_backend(&backend, &key.id, alg, EcdsaFormat::Der, threads, duration);
            report.set(format!("pqc.raw.{spec}.t{threads}.rate"), rate);
            raw.push(rate);
        }
        if let Some(&hash_alg) = spec.algorithms().iter().find(|a| a.is_pre_hash()) {
            let (rate, _, _) =
                sign_in_backend(&backend, &key.id, hash_alg, EcdsaFormat::Der, 1, duration);
            report.set(format!("pqc.raw.{spec}.hash.t1.rate"), rate);
            prehash.push((hash_alg, raw[0], rate));
        }
        sig_len = sig_len.max(
            signet_hsm::sign(
                backend.as_ref(),
                &key.id,
                alg,
                SignInput::Message(MESSAGE),
                EcdsaFormat::Raw,
            )
            .unwrap()
            .len(),
        );
        backend.destroy(&key.id).unwrap();

        let name = format!("bench-pqc-{spec}");
        let admin = server.agent();
        post(
            &admin,
            &server.url("/v1/keys"),
            &json!({"name": name, "spec": spec.name()}).to_string(),
        );
        let url = Arc::new(server.url(&format!("/v1/keys/{name}/sign")));
        let mut api = Vec::new();
        let mut cpu_us = 0.0;
        let mut p50 = 0.0;
        for conns in [1, 2] {
            let (rate, lat, cpu) = sign_over_api(&server, &url, &body, conns, duration);
            report.set(format!("pqc.api.{spec}.c{conns}.rate"), rate);
            report.set(format!("pqc.api.{spec}.c{conns}.cpu_us"), cpu);
            if conns == 1 {
                p50 = pct(&lat, 0.5);
            }
            cpu_us = cpu;
            api.push(rate);
        }
        println!(
            "| {spec} ({alg}) | {keygen:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {cpu_us:.0} | {p50:.2} | {sig_len} |",
            raw[0], raw[1], api[0], api[1]
        );
    }
    println!();
    println!("| pre-hash algorithm | raw sign/s, 1 thread | pure raw sign/s, 1 thread, same key |");
    println!("|---|---|---|");
    for (alg, pure, rate) in prehash {
        println!("| {alg} | {rate:.0} | {pure:.0} |");
    }
    println!();
}

/// A key pair, tried again a few times: the server on the same kryoptic token writes to the
/// token's SQLite store too (its audit anchor), and kryoptic reports the store being busy as
/// CKR_DEVICE_MEMORY.
fn generate(backend: &Arc<dyn Backend>, label: String, spec: KeySpec) -> signet_hsm::KeyInfo {
    let mut tries = 0;
    loop {
        match backend.generate(&KeyRequest::named(label.clone(), spec)) {
            Ok(key) => return key,
            Err(e) if tries < 20 => {
                tries += 1;
                eprintln!("key generation refused ({e}), trying again");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e}"),
        }
    }
}
