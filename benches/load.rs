//! Signet's benchmarks (run through `scripts/bench.sh`):
//!
//! - `hsm`: raw signing throughput through the PKCS#11 backend, per algorithm, 1 and 2 threads.
//! - `api`: a keep-alive mTLS load generator signing through a real `signet serve`, and in the
//!   same run the raw backend rate for the same algorithm and pool size; ops/s, p50/p99, server
//!   RSS and the API/raw ratio, single and batch.
//! - `tokens`: tokens issued and introspected per second through the API, next to raw ES256.
//!
//! Figures are printed as Markdown table rows for BENCHMARKS.md.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use signet_hsm::{Backend, EcdsaFormat, KeySpec, Pkcs11Backend, SignInput, SignatureAlgorithm};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let duration = Duration::from_secs(seconds);
    match args.first().map(String::as_str) {
        Some("hsm") => hsm(duration),
        Some("api") => api(duration),
        Some("tokens") => tokens(duration),
        _ => {
            eprintln!("usage: load hsm|api|tokens   (BENCH_SECONDS, BENCH_CONCURRENCY, SIGNET_BIN)")
        }
    }
}

fn concurrency() -> usize {
    std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8)
}

/// Runs `op` on `threads` threads for `duration`; returns (ops/s, sorted latencies in seconds).
fn drive<S: Send + 'static>(
    threads: usize,
    duration: Duration,
    setup: impl Fn(usize) -> S,
    op: impl Fn(&mut S) -> usize + Send + Sync + 'static,
) -> (f64, Vec<f64>) {
    let op = Arc::new(op);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let mut state = setup(t);
            let op = op.clone();
            std::thread::spawn(move || {
                let mut done = 0usize;
                let mut lat = Vec::new();
                while start.elapsed() < duration {
                    let t0 = Instant::now();
                    done += op(&mut state);
                    lat.push(t0.elapsed().as_secs_f64());
                }
                (done, lat)
            })
        })
        .collect();
    let mut total = 0;
    let mut lat = Vec::new();
    for h in handles {
        let (d, l) = h.join().unwrap();
        total += d;
        lat.extend(l);
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (total as f64 / start.elapsed().as_secs_f64(), lat)
}

fn pct(lat: &[f64], p: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] * 1000.0
}

fn raw_backend(pool: usize) -> (signet_softhsm::TestToken, Arc<dyn Backend>) {
    let token = signet_softhsm::TestToken::new().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(Pkcs11Backend::open(token.config(pool)).unwrap());
    (token, backend)
}

fn raw_rate(
    backend: &Arc<dyn Backend>,
    spec: KeySpec,
    alg: SignatureAlgorithm,
    threads: usize,
    duration: Duration,
) -> (f64, Vec<f64>) {
    let key = backend
        .generate(&signet_hsm::KeyRequest::named(
            format!("bench-{alg}-{threads}-{}", rand_suffix()),
            spec,
        ))
        .unwrap();
    let b = backend.clone();
    drive(
        threads,
        duration,
        |_| (),
        move |_| {
            signet_hsm::sign(
                b.as_ref(),
                &key.id,
                alg,
                SignInput::Message(
                    b"benchmark message of a typical size, 64 bytes long..............",
                ),
                EcdsaFormat::Der,
            )
            .unwrap();
            1
        },
    )
}

fn rand_suffix() -> String {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hsm(duration: Duration) {
    let (_token, backend) = raw_backend(4);
    println!("| algorithm | key | threads | signatures/s |");
    println!("|---|---|---|---|");
    for (alg, spec) in [
        (SignatureAlgorithm::Es256, KeySpec::EcP256),
        (SignatureAlgorithm::EdDsa, KeySpec::Ed25519),
        (SignatureAlgorithm::Rs256, KeySpec::Rsa2048),
        (SignatureAlgorithm::Ps256, KeySpec::Rsa2048),
    ] {
        for threads in [1, 2] {
            let (rate, _) = raw_rate(&backend, spec, alg, threads, duration);
            println!("| {alg} | {spec} | {threads} | {rate:.0} |");
        }
    }
}

/// A `signet serve` on a fresh data dir, for the benchmark.
struct BenchServer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl BenchServer {
    fn start(config: &str) -> Self {
        let bin = std::env::var("SIGNET_BIN").unwrap_or_else(|_| "target/release/signet".into());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("signet.toml"), config).unwrap();
        let mut child = Command::new(&bin)
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--config")
            .arg(dir.path().join("signet.toml"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("SIGNET_LOG", "warn,cryptoki=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let port = loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "server exited");
            if let Some(rest) = line.trim().strip_prefix("listening on https://127.0.0.1:") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in reader.lines() {});
        BenchServer { child, port, dir }
    }

    fn agent(&self) -> ureq::Agent {
        let data = self.dir.path();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_file(data.join("ca/root.pem")).unwrap())
            .unwrap();
        let chain: Vec<_> = CertificateDer::pem_file_iter(data.join("clients/admin.crt.pem"))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(data.join("clients/admin.key.pem")).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        ureq::AgentBuilder::new()
            .tls_config(Arc::new(config))
            .max_idle_connections_per_host(4)
            .build()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Peak resident set of the server, MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Value {
    agent
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(&body.to_string())
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .into_json()
        .unwrap()
}

fn api(duration: Duration) {
    let conc = concurrency();
    let pool = 4;
    let server = BenchServer::start(&format!(
        "[hsm]\npool_size = {pool}\n[server]\nsign_batch_max = 100\n"
    ));
    let admin = server.agent();
    for (name, spec) in [("bench-es256", "ec-p256"), ("bench-rs256", "rsa-2048")] {
        post(
            &admin,
            &server.url("/v1/keys"),
            &json!({"name": name, "spec": spec}),
        );
    }
    let (_token, backend) = raw_backend(pool);
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let msg = b64(b"benchmark message of a typical size, 64 bytes long..............");
    println!("API: {conc} keep-alive mTLS connections; server and raw backend both with a pool of {pool} sessions; {}s per row", duration.as_secs());
    println!();
    println!(
        "| algorithm | mode | API signatures/s | raw signatures/s | API/raw | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (alg, spec, key) in [
        (SignatureAlgorithm::Es256, KeySpec::EcP256, "bench-es256"),
        (SignatureAlgorithm::Rs256, KeySpec::Rsa2048, "bench-rs256"),
    ] {
        let (raw, _) = raw_rate(&backend, spec, alg, conc, duration);
        for batch in [1usize, 32] {
            let url = if batch == 1 {
                server.url(&format!("/v1/keys/{key}/sign"))
            } else {
                server.url(&format!("/v1/keys/{key}/sign-batch"))
            };
            let body = if batch == 1 {
                json!({"input": msg, "algorithm": alg.name()})
            } else {
                json!({"items": (0..batch).map(|_| json!({"input": msg, "algorithm": alg.name()})).collect::<Vec<_>>()})
            };
            let body = Arc::new(body.to_string());
            let (rate, lat) = drive(
                conc,
                duration,
                |_| server.agent(),
                move |agent| {
                    let r = agent
                        .post(&url)
                        .set("Content-Type", "application/json")
                        .send_string(&body)
                        .unwrap();
                    let _ = r.into_string().unwrap();
                    batch
                },
            );
            let mode = if batch == 1 {
                "single".to_string()
            } else {
                format!("batch of {batch}")
            };
            println!(
                "| {alg} | {mode} | {rate:.0} | {raw:.0} | {:.2} | {:.1} | {:.1} |",
                rate / raw,
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
        }
    }
    println!();
    println!("server peak RSS: {:.1} MiB", server.peak_rss_mib());
}

fn tokens(duration: Duration) {
    let conc = concurrency();
    let server = BenchServer::start("[hsm]\npool_size = 4\n");
    let admin = server.agent();
    let (_token, backend) = raw_backend(4);
    let (raw, _) = raw_rate(
        &backend,
        KeySpec::EcP256,
        SignatureAlgorithm::Es256,
        conc,
        duration,
    );
    let url = server.url("/v1/tokens");
    let (issued, lat) = drive(
        conc,
        duration,
        |_| server.agent(),
        move |agent| {
            let _ = agent
                .post(&url)
                .set("Content-Type", "application/json")
                .send_string(r#"{"audience":"bench","scope":"a b","ttl":600}"#)
                .unwrap()
                .into_string()
                .unwrap();
            1
        },
    );
    let token = post(
        &admin,
        &server.url("/v1/tokens"),
        &json!({"audience": "bench"}),
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    let body = Arc::new(json!({"token": token}).to_string());
    let url = server.url("/v1/tokens/introspect");
    let (introspected, ilat) = drive(
        conc,
        duration,
        |_| server.agent(),
        move |agent| {
            let _ = agent
                .post(&url)
                .set("Content-Type", "application/json")
                .send_string(&body)
                .unwrap()
                .into_string()
                .unwrap();
            1
        },
    );
    println!("| operation | per second | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    println!("| raw ES256 signing (backend, {conc} threads) | {raw:.0} | | |");
    println!(
        "| tokens issued (API, ES256, {conc} connections) | {issued:.0} | {:.1} | {:.1} |",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    println!(
        "| introspections (API) | {introspected:.0} | {:.1} | {:.1} |",
        pct(&ilat, 0.5),
        pct(&ilat, 0.99)
    );
    println!();
    println!(
        "issued/raw = {:.2}; server peak RSS {:.1} MiB; data dir {}",
        issued / raw,
        server.peak_rss_mib(),
        PathBuf::from(server.data()).display()
    );
}
