//! Signet's benchmark driver (run through `scripts/bench.sh`). One run measures:
//!
//! - `raw`: the token's own cost: signatures/s and CPU µs per signature through the backend
//!   on 1 and 2 threads, ES256 and RS256 (the bench process's CPU from /proc);
//! - `api`: a real `signet serve` (and, in the same run, a `bench-unaudited` build when
//!   `SIGNET_BIN_UNAUDITED` is set) under keep-alive mTLS clients at 1, 4, 16 and 64
//!   connections: signatures/s, p50/p99 per request, the server's CPU µs per signature (from
//!   /proc/<pid>/stat), its voluntary context switches per signature (summed over
//!   /proc/<pid>/task/*/status) and its peak RSS per step (VmHWM, reset between steps), ES256 and RS256,
//!   single and batch-32; then a refused-handshake flood and the server's RSS after it;
//! - `journal`: the single-node audit journal alone, one record per append and sync:
//!   appends/s, wall and CPU µs per append (also part of `api`);
//! - `drive`: one step at `BENCH_CONNECTIONS` (for profiling; prints the server pid), ES256
//!   single by default (`BENCH_SPEC=rsa-2048`, `BENCH_BATCH=32`), with audit records per sync
//!   and peak RSS;
//! - `cluster`: 1, 2 and 3 nodes on one PostgreSQL database (`SIGNET_PG_URL`) and one remote
//!   token (p11-kit server over SoftHSM2), 16 connections spread over the nodes: signatures/s,
//!   CPU per signature of the nodes and of the token server, audit transactions/s and records
//!   per transaction; then how long a certificate revoked on one node takes to be refused on
//!   another (p50/p99);
//! - `pkcs11`: ES256 signatures/s on 1 and 8 threads three ways in one run: the raw token
//!   (through the backend), the JSON API (one keep-alive connection per thread), and
//!   `libsignet_pkcs11.so` loaded through cryptoki (one session per thread), with the server's
//!   CPU µs per signature for the last two;
//! - `pqc`: ML-DSA-44/65/87 and ES256 on a token with ML-DSA (kryoptic): key generations/s,
//!   signatures/s through the backend and through the API, server CPU per signature;
//! - `compare BASELINE CURRENT`: every figure's ratio to the baseline, flagging those that moved
//!   by more than the noise margin.
//!
//! Figures are printed as Markdown and written as JSON (`BENCH_JSON`).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use signet_hsm::{
    Backend, EcdsaFormat, KeyRequest, KeySpec, Pkcs11Backend, SignInput, SignatureAlgorithm,
};

#[path = "load/cluster.rs"]
mod cluster;
#[path = "../tests/common/proc.rs"]
mod proc_counts;
use proc_counts::voluntary_switches;
#[path = "load/pqc.rs"]
mod pqc;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seconds: f64 = env_or("BENCH_SECONDS", 4.0);
    let duration = Duration::from_secs_f64(seconds);
    let mut report = Report::default();
    match args.first().map(String::as_str) {
        Some("raw") => raw(&mut report, duration),
        Some("journal") => journal(&mut report, duration),
        Some("api") => {
            raw(&mut report, duration);
            journal(&mut report, duration);
            api(&mut report, duration);
            report.print_ratios();
        }
        Some("drive") => return drive_only(duration, env_or("BENCH_CONNECTIONS", 16usize)),
        Some("cluster") => cluster::run(&mut report, duration),
        Some("pkcs11") => pkcs11(&mut report, duration),
        Some("pqc") => pqc::run(&mut report, duration),
        Some("compare") => {
            return compare(
                Path::new(args.get(1).expect("BASELINE")),
                Path::new(args.get(2).expect("CURRENT")),
            )
        }
        _ => {
            eprintln!("usage: load raw|journal|api|drive|cluster|pkcs11|pqc|compare BASELINE CURRENT   (BENCH_SECONDS, BENCH_CONNECTIONS, SIGNET_BIN, SIGNET_BIN_UNAUDITED, BENCH_JSON, SIGNET_TEST_TOKEN)");
            return;
        }
    }
    if let Ok(path) = std::env::var("BENCH_JSON") {
        std::fs::write(&path, serde_json::to_string_pretty(&report.json()).unwrap()).unwrap();
        println!("\nfigures written to {path}");
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Every figure of a run, by name.
#[derive(Default)]
struct Report {
    figures: BTreeMap<String, f64>,
}

impl Report {
    fn set(&mut self, name: impl Into<String>, value: f64) {
        self.figures.insert(name.into(), value);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.figures.get(name).copied()
    }

    fn json(&self) -> Value {
        json!({
            "machine": machine(),
            "figures": self.figures,
        })
    }

    /// The targets of issue 15, as ratios within this run.
    fn print_ratios(&self) {
        let ratio = |a: &str, b: &str| match (self.get(a), self.get(b)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let rows = [
            (
                "server CPU per ES256 signature at 16 connections / raw CPU per signature",
                ratio("api.audited.ES256.single.c16.cpu_us", "raw.ES256.t1.cpu_us"),
                "≤ 2",
                true,
            ),
            (
                "server CPU per ES256 signature at 1 connection / raw CPU per signature",
                ratio("api.audited.ES256.single.c1.cpu_us", "raw.ES256.t1.cpu_us"),
                "≤ 3",
                true,
            ),
            (
                "saturated ES256 API rate (best of 16/64) / raw two-thread rate",
                ratio("api.audited.ES256.single.best.rate", "raw.ES256.t2.rate"),
                "≥ 0.6",
                false,
            ),
            (
                "ES256 batch-32 API rate (best) / raw two-thread rate",
                ratio("api.audited.ES256.batch32.best.rate", "raw.ES256.t2.rate"),
                "≥ 0.9",
                false,
            ),
            (
                "RS256 single API rate (best) / raw two-thread rate",
                ratio("api.audited.RS256.single.best.rate", "raw.RS256.t2.rate"),
                "≥ 0.9",
                false,
            ),
            (
                "ES256 audited / unaudited rate at 16 connections",
                ratio(
                    "api.audited.ES256.single.c16.rate",
                    "api.unaudited.ES256.single.c16.rate",
                ),
                "≥ 0.9",
                false,
            ),
        ];
        println!("\n## Targets (ratios from this run)\n");
        println!("| figure | measured | target |");
        println!("|---|---|---|");
        for (what, value, target, _) in rows {
            match value {
                Some(v) => println!("| {what} | {v:.2} | {target} |"),
                None => println!("| {what} | (not measured) | {target} |"),
            }
        }
        for (what, name, target) in [
            (
                "one sequential client, p50 ms (audited ES256)",
                "api.audited.ES256.single.c1.p50_ms",
                "≤ 0.3",
            ),
            (
                "peak RSS at 64 connections, MB",
                "api.audited.ES256.single.c64.peak_rss_mb",
                "≤ 100",
            ),
            (
                "RSS after a refused-handshake flood, MB",
                "api.audited.after_flood_rss_mb",
                "≤ 50",
            ),
        ] {
            match self.get(name) {
                Some(v) => println!("| {what} | {v:.2} | {target} |"),
                None => println!("| {what} | (not measured) | {target} |"),
            }
        }
        self.print_ceilings();
    }

    /// What the cores allow: the load client runs on the same cores, so a rate is bounded by
    /// cores / (server CPU + client CPU) per signature. With the cores to itself the server
    /// would reach cores / server CPU per signature; that, over the raw two-thread rate, is the
    /// saturated ratio the server's own cost allows.
    fn print_ceilings(&self) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        println!("\n## What {cores} shared cores allow (16 connections)\n");
        println!("| figure | server CPU µs/signature | client CPU µs/signature | ceiling with the client on the same cores, /s | measured /s | cores / server CPU, /s | that / raw two-thread rate |");
        println!("|---|---|---|---|---|---|---|");
        for (alg, mode, per) in [
            ("ES256", "single", 1.0),
            ("ES256", "batch32", 32.0),
            ("RS256", "single", 1.0),
        ] {
            let key = format!("api.audited.{alg}.{mode}.c16");
            let (Some(server), Some(client), Some(rate), Some(raw)) = (
                self.get(&format!("{key}.cpu_us")),
                self.get(&format!("{key}.client_cpu_us")),
                self.get(&format!("{key}.rate")),
                self.get(&format!("raw.{alg}.t2.rate")),
            ) else {
                continue;
            };
            let client = client / per;
            let shared = cores * 1e6 / (server + client);
            let alone = cores * 1e6 / server;
            println!(
                "| {alg} {mode} | {server:.1} | {client:.1} | {shared:.0} | {rate:.0} | {alone:.0} | {:.2} |",
                alone / raw
            );
        }
    }
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_string();
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// CPU seconds (user + system) of a process, from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime is field 14 and stime 15 of the whole line: 11 and 12 after the ')'.
    let hz = 100.0;
    (ticks(11) + ticks(12)) / hz
}

/// A field of /proc/<pid>/status in MB (VmRSS, VmHWM).
fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Resets the peak RSS of a process (so each step reports its own).
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Runs `op` on `threads` threads for `duration`; returns (ops/s, sorted latencies in seconds).
fn drive<S: Send + 'static>(
    threads: usize,
    duration: Duration,
    setup: impl Fn(usize) -> S,
    op: impl Fn(&mut S) -> usize + Send + Sync + 'static,
) -> (f64, Vec<f64>) {
    let op = Arc::new(op);
    let states: Vec<S> = (0..threads).map(&setup).collect();
    let start = Instant::now();
    let handles: Vec<_> = states
        .into_iter()
        .map(|mut state| {
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

fn rand_suffix() -> String {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const MESSAGE: &[u8] = b"benchmark message of a typical size, 64 bytes long..............";

/// `threads` threads signing MESSAGE with `key` through the backend for `duration`, ECDSA
/// signatures in `format`: signatures/s, latencies and this process's CPU µs per signature.
fn sign_in_backend(
    backend: &Arc<dyn Backend>,
    key: &signet_hsm::KeyId,
    alg: SignatureAlgorithm,
    format: EcdsaFormat,
    threads: usize,
    duration: Duration,
) -> (f64, Vec<f64>, f64) {
    let (b, id) = (backend.clone(), key.clone());
    let cpu0 = cpu_seconds(std::process::id());
    let (rate, lat) = drive(
        threads,
        duration,
        |_| (),
        move |_| {
            signet_hsm::sign(b.as_ref(), &id, alg, SignInput::Message(MESSAGE), format).unwrap();
            1
        },
    );
    let cpu = cpu_seconds(std::process::id()) - cpu0;
    (rate, lat, cpu / (rate * duration.as_secs_f64()) * 1e6)
}

/// `connections` keep-alive clients posting `body` to `url` for `duration` (after a warm-up
/// request each): requests/s, latencies, and the server's CPU µs per request.
fn sign_over_api(
    server: &Server,
    url: &Arc<String>,
    body: &Arc<String>,
    connections: usize,
    duration: Duration,
) -> (f64, Vec<f64>, f64) {
    let agents: Vec<ureq::Agent> = (0..connections).map(|_| server.agent()).collect();
    for a in &agents {
        post(a, url, body);
    }
    let agents = std::sync::Mutex::new(agents);
    let cpu0 = cpu_seconds(server.pid());
    let (url, body) = (url.clone(), body.clone());
    let (rate, lat) = drive(
        connections,
        duration,
        |_| agents.lock().unwrap().pop().unwrap(),
        move |agent| {
            post(agent, &url, &body);
            1
        },
    );
    let cpu_us = (cpu_seconds(server.pid()) - cpu0) / (rate * duration.as_secs_f64()) * 1e6;
    (rate, lat, cpu_us)
}

/// The token's own cost: signatures/s and this process's CPU per signature.
fn raw(report: &mut Report, duration: Duration) {
    let token = signet_softhsm::TestToken::new().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(Pkcs11Backend::open(token.config(4)).unwrap());
    println!(
        "## Raw signing through the backend ({}, pool of 4)\n",
        token.kind.name()
    );
    println!("| algorithm | threads | signatures/s | CPU µs per signature |");
    println!("|---|---|---|---|");
    for (spec, alg) in [
        (KeySpec::EcP256, SignatureAlgorithm::Es256),
        (KeySpec::Rsa2048, SignatureAlgorithm::Rs256),
    ] {
        let key = backend
            .generate(&KeyRequest::named(
                format!("bench-{alg}-{}", rand_suffix()),
                spec,
            ))
            .unwrap();
        for threads in [1, 2] {
            let (rate, _, cpu_us) =
                sign_in_backend(&backend, &key.id, alg, EcdsaFormat::Der, threads, duration);
            println!("| {alg} | {threads} | {rate:.0} | {cpu_us:.1} |");
            report.set(format!("raw.{alg}.t{threads}.rate"), rate);
            report.set(format!("raw.{alg}.t{threads}.cpu_us"), cpu_us);
        }
    }
    println!();
}

/// The audit journal alone: appends of one sign record each, each synced, in three rounds (in
/// the temporary directory, where the servers' data directories go). What one sync costs, apart
/// from the rest of a request.
fn journal(report: &mut Report, duration: Duration) {
    use signet::store::audit_file::FileJournal;
    use signet::store::{Event, Journal, Outcome};
    println!("## The audit journal alone (one record per append, each synced)\n");
    println!("| round | appends/s | wall µs per append | CPU µs per append |");
    println!("|---|---|---|---|");
    let step = duration / 3;
    let (mut wall, mut cpu, mut n) = (0.0, 0.0, 0u32);
    for round in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let journal = FileJournal::open(dir.path()).unwrap();
        let event = || {
            Event::new("bench", "-", "key.sign", "bench-key", Outcome::Ok)
                .with("input_sha256", "0".repeat(64))
                .with("key_id", "0".repeat(32))
        };
        journal.append(vec![event()]).unwrap();
        let (cpu0, start) = (cpu_seconds(std::process::id()), Instant::now());
        let mut appends = 0u32;
        while start.elapsed() < step {
            journal.append(vec![event()]).unwrap();
            appends += 1;
        }
        let round_wall = start.elapsed().as_secs_f64();
        let round_cpu = cpu_seconds(std::process::id()) - cpu0;
        println!(
            "| {round} | {:.0} | {:.1} | {:.1} |",
            f64::from(appends) / round_wall,
            round_wall / f64::from(appends) * 1e6,
            round_cpu / f64::from(appends) * 1e6
        );
        (wall, cpu, n) = (wall + round_wall, cpu + round_cpu, n + appends);
    }
    report.set("journal.append.rate", f64::from(n) / wall);
    report.set("journal.append.wall_us", wall / f64::from(n) * 1e6);
    report.set("journal.append.cpu_us", cpu / f64::from(n) * 1e6);
    println!();
}

/// A running `signet serve` on a fresh data directory.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// Where the CA root and the admin bundle are (the first node's data directory).
    admin_dir: PathBuf,
}

impl Server {
    fn start(bin: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("signet-bench-{}", rand_suffix()));
        // BENCH_GROUP_WAIT_US: the node's `[audit] group_wait_us` (else the default);
        // BENCH_POOL_SIZE: its `[hsm] pool_size` (else the default, one per CPU).
        let mut env = Vec::new();
        let mut toml = String::new();
        if let Ok(wait) = std::env::var("BENCH_GROUP_WAIT_US") {
            toml += &format!("[audit]\ngroup_wait_us = {wait}\n");
        }
        if let Ok(pool) = std::env::var("BENCH_POOL_SIZE") {
            toml += &format!("[hsm]\nbackend = \"pkcs11\"\npool_size = {pool}\n");
        }
        if !toml.is_empty() {
            std::fs::create_dir_all(&dir).unwrap();
            let config = dir.join("bench.toml");
            std::fs::write(&config, toml).unwrap();
            env.push(("SIGNET_CONFIG".to_string(), config.display().to_string()));
        }
        Self::start_node(bin, dir, &env, None)
    }

    /// A node with extra environment (`SIGNET_CONFIG`, the token's), whose bundle is in
    /// `admin_dir` (default its own data directory).
    fn start_node(
        bin: &str,
        dir: PathBuf,
        env: &[(String, String)],
        admin_dir: Option<PathBuf>,
    ) -> Self {
        // BENCH_LOG (a SIGNET_LOG filter, such as the default `info`) logs to a file in the
        // data directory, as a log collector would read it; without it only warnings, dropped.
        let (log, stderr) = match std::env::var("BENCH_LOG") {
            Ok(filter) => {
                std::fs::create_dir_all(&dir).unwrap();
                let file = std::fs::File::create(dir.join("bench-server.log")).unwrap();
                (filter, Stdio::from(file))
            }
            Err(_) => ("warn,cryptoki=off".to_string(), Stdio::null()),
        };
        let mut child = Command::new(bin)
            .arg("--data-dir")
            .arg(&dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("SIGNET_LOG", log)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let port = loop {
            let mut line = String::new();
            assert!(reader.read_line(&mut line).unwrap() > 0, "server exited");
            if let Some(rest) = line.trim().strip_prefix("listening on https://127.0.0.1:") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        std::thread::spawn(move || for _ in reader.lines() {});
        let admin_dir = admin_dir.unwrap_or_else(|| dir.clone());
        Server {
            child,
            port,
            dir,
            admin_dir,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn agent(&self) -> ureq::Agent {
        self.agent_as("admin")
    }

    /// An agent presenting `name`'s bundle from the admin directory.
    fn agent_as(&self, name: &str) -> ureq::Agent {
        let clients = self.admin_dir.join("clients");
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.admin_dir.join("ca/root.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let chain: Vec<_> = CertificateDer::pem_file_iter(clients.join(format!("{name}.crt.pem")))
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(clients.join(format!("{name}.key.pem"))).unwrap();
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
            .timeout(Duration::from_secs(60))
            .build()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &str) -> Value {
    agent
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(body)
        .unwrap()
        .into_json()
        .unwrap()
}

/// The API at each concurrency, for one server build.
fn api_for(report: &mut Report, label: &str, bin: &str, duration: Duration) {
    let server = Server::start(bin);
    let admin = server.agent();
    println!("## API, {label} ({bin})\n");
    println!("| algorithm | mode | connections | signatures/s | p50 ms | p99 ms | server CPU µs per signature | load client CPU µs per request | server voluntary context switches per signature | peak RSS MB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let idle = status_mb(server.pid(), "VmRSS");
    report.set(format!("api.{label}.idle_rss_mb"), idle);
    for (spec, alg) in [("ec-p256", "ES256"), ("rsa-2048", "RS256")] {
        let name = format!("bench-{}", spec);
        post(
            &admin,
            &server.url("/v1/keys"),
            &json!({"name": name, "spec": spec}).to_string(),
        );
        let single =
            json!({"input": base64::engine::general_purpose::STANDARD.encode(MESSAGE)}).to_string();
        let batch = json!({"items": vec![json!({"input": base64::engine::general_purpose::STANDARD.encode(MESSAGE)}); 32]}).to_string();
        for (mode, path, body, per) in [
            (
                "single",
                format!("/v1/keys/{name}/sign"),
                single.clone(),
                1usize,
            ),
            (
                "batch32",
                format!("/v1/keys/{name}/sign-batch"),
                batch.clone(),
                32usize,
            ),
        ] {
            let mut best: f64 = 0.0;
            for connections in [1usize, 4, 16, 64] {
                let url = server.url(&path);
                let body = Arc::new(body.clone());
                // Warm the connections before measuring.
                let agents: Vec<ureq::Agent> = (0..connections).map(|_| server.agent()).collect();
                for a in &agents {
                    post(a, &url, &body);
                }
                reset_peak(server.pid());
                let cpu0 = cpu_seconds(server.pid());
                let switches0 = voluntary_switches(server.pid());
                let client0 = cpu_seconds(std::process::id());
                let agents = Arc::new(std::sync::Mutex::new(agents));
                let (rate, lat) = drive(
                    connections,
                    duration,
                    |_| agents.lock().unwrap().pop().unwrap(),
                    {
                        let url = url.clone();
                        let body = body.clone();
                        move |agent: &mut ureq::Agent| {
                            let r = agent
                                .post(&url)
                                .set("Content-Type", "application/json")
                                .send_string(&body)
                                .unwrap();
                            assert_eq!(r.status(), 200);
                            let _ = r.into_string();
                            per
                        }
                    },
                );
                let cpu = cpu_seconds(server.pid()) - cpu0;
                let switches = voluntary_switches(server.pid()).saturating_sub(switches0);
                let client = cpu_seconds(std::process::id()) - client0;
                let signatures = rate * duration.as_secs_f64();
                let vcsw = switches as f64 / signatures;
                let cpu_us = cpu / signatures * 1e6;
                // The load generator's own CPU (it shares the cores), per request it made.
                let client_us = client / (signatures / per as f64) * 1e6;
                let peak = status_mb(server.pid(), "VmHWM");
                let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
                println!("| {alg} | {mode} | {connections} | {rate:.0} | {p50:.2} | {p99:.2} | {cpu_us:.1} | {client_us:.1} | {vcsw:.2} | {peak:.0} |");
                let key = format!("api.{label}.{alg}.{mode}.c{connections}");
                report.set(format!("{key}.rate"), rate);
                report.set(format!("{key}.p50_ms"), p50);
                report.set(format!("{key}.p99_ms"), p99);
                report.set(format!("{key}.cpu_us"), cpu_us);
                report.set(format!("{key}.client_cpu_us"), client_us);
                report.set(format!("{key}.vcsw"), vcsw);
                report.set(format!("{key}.peak_rss_mb"), peak);
                if connections >= 16 {
                    best = best.max(rate);
                }
            }
            report.set(format!("api.{label}.{alg}.{mode}.best.rate"), best);
        }
    }
    // A flood of refused handshakes (no client certificate), then the RSS once it is over.
    let flood = flood(&server, 2000);
    std::thread::sleep(Duration::from_secs(3));
    let after = status_mb(server.pid(), "VmRSS");
    println!("\nidle RSS {idle:.0} MB; {flood} refused handshakes, then RSS {after:.0} MB\n");
    report.set(format!("api.{label}.after_flood_rss_mb"), after);
}

/// Refused handshakes from 8 threads; returns how many.
fn flood(server: &Server, n: usize) -> usize {
    let root = server.dir.join("ca/root.pem");
    let port = server.port;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_file_iter(&root).unwrap() {
                    roots.add(c.unwrap()).unwrap();
                }
                let config = Arc::new(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider(),
                    ))
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
                );
                let mut refused = 0;
                for _ in 0..n / 8 {
                    use std::io::{Read, Write};
                    let Ok(tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                        continue;
                    };
                    let conn = rustls::ClientConnection::new(
                        config.clone(),
                        "localhost".try_into().unwrap(),
                    )
                    .unwrap();
                    let mut s = rustls::StreamOwned::new(conn, tcp);
                    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
                    let mut buf = [0u8; 16];
                    if !matches!(s.read(&mut buf), Ok(n) if n > 0) {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).sum()
}

fn api(report: &mut Report, duration: Duration) {
    let bin = std::env::var("SIGNET_BIN").unwrap_or_else(|_| "target/release/signet".into());
    api_for(report, "audited", &bin, duration);
    if let Ok(unaudited) = std::env::var("SIGNET_BIN_UNAUDITED") {
        api_for(report, "unaudited", &unaudited, duration);
    }
}

/// A server under steady ES256 load (for profiling): prints its pid, then the rate.
fn drive_only(duration: Duration, connections: usize) {
    let bin = std::env::var("SIGNET_BIN").unwrap_or_else(|_| "target/release/signet".into());
    let server = Server::start(&bin);
    let admin = server.agent();
    let spec = std::env::var("BENCH_SPEC").unwrap_or_else(|_| "ec-p256".into());
    let batch: usize = env_or("BENCH_BATCH", 0);
    post(
        &admin,
        &server.url("/v1/keys"),
        &json!({"name": "p", "spec": spec}).to_string(),
    );
    let item = json!({"input": base64::engine::general_purpose::STANDARD.encode(MESSAGE)});
    let (url, body, per) = match batch {
        0 => (server.url("/v1/keys/p/sign"), item.to_string(), 1),
        n => (
            server.url("/v1/keys/p/sign-batch"),
            json!({ "items": vec![item; n] }).to_string(),
            n,
        ),
    };
    let body = Arc::new(body);
    let agents: Vec<ureq::Agent> = (0..connections).map(|_| server.agent()).collect();
    for a in &agents {
        post(a, &url, &body);
    }
    println!("pid {}", server.pid());
    std::thread::sleep(Duration::from_millis(500));
    let agents = Arc::new(std::sync::Mutex::new(agents));
    let audit0 = audit_counts(&admin, &server);
    let cpu0 = cpu_seconds(server.pid());
    let switches0 = voluntary_switches(server.pid());
    let (rate, lat) = drive(
        connections,
        duration,
        |_| agents.lock().unwrap().pop().unwrap(),
        move |agent: &mut ureq::Agent| {
            let r = agent
                .post(&url)
                .set("Content-Type", "application/json")
                .send_string(&body)
                .unwrap();
            let _ = r.into_string();
            per
        },
    );
    let cpu = cpu_seconds(server.pid()) - cpu0;
    let switches = voluntary_switches(server.pid()).saturating_sub(switches0);
    let audit1 = audit_counts(&admin, &server);
    let peak = status_mb(server.pid(), "VmHWM");
    let (records, batches) = (audit1.0 - audit0.0, (audit1.1 - audit0.1).max(1.0));
    println!(
        "{connections} connections: {rate:.0}/s, p50 {:.2} ms, server CPU {:.1} µs per signature, \
         {:.2} voluntary context switches per signature, {:.1} audit records per sync, \
         peak RSS {peak:.0} MB",
        pct(&lat, 0.5),
        cpu / (rate * duration.as_secs_f64()) * 1e6,
        switches as f64 / (rate * duration.as_secs_f64()),
        records / batches
    );
}

/// The server's audit counters (records, batches) from `/metrics`.
fn audit_counts(admin: &ureq::Agent, server: &Server) -> (f64, f64) {
    let text = admin
        .get(&server.url("/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (value("signet_audit_records"), value("signet_audit_batches"))
}

/// Compares two runs figure by figure (ratios, not absolutes: the machines are shared).
fn compare(baseline: &Path, current: &Path) {
    let load = |p: &Path| -> BTreeMap<String, f64> {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
        serde_json::from_value(v["figures"].clone()).unwrap()
    };
    let (base, now) = (load(baseline), load(current));
    let margin: f64 = env_or("BENCH_NOISE", 0.25);
    println!("| figure | baseline | current | current/baseline | |");
    println!("|---|---|---|---|---|");
    let mut flagged = 0;
    for (name, b) in &base {
        let Some(c) = now.get(name) else { continue };
        if *b == 0.0 {
            continue;
        }
        let r = c / b;
        // For rates and records per audit transaction, lower is worse; for CPU, latency,
        // memory, context switches and transactions per signature, higher is worse.
        let higher_is_better = name.ends_with(".rate") || name.ends_with(".records_per_tx");
        let worse = if higher_is_better {
            r < 1.0 - margin
        } else {
            r > 1.0 + margin
        };
        let better = if higher_is_better {
            r > 1.0 + margin
        } else {
            r < 1.0 - margin
        };
        // Context, not a figure to judge: the load client's own CPU, and audit transactions
        // per second (they follow the rate; per signature is the figure that counts).
        let context = name.ends_with(".client_cpu_us") || name.ends_with(".audit_tx_per_s");
        let flag = if context {
            ""
        } else if worse {
            flagged += 1;
            "**worse**"
        } else if better {
            "better"
        } else {
            ""
        };
        println!("| {name} | {b:.2} | {c:.2} | {r:.2} | {flag} |");
    }
    println!(
        "\n{flagged} figure(s) worse than the baseline by more than {:.0}%",
        margin * 100.0
    );
    if flagged > 0 {
        std::process::exit(1);
    }
}

/// ES256 on 1 and 8 threads: the raw token, the JSON API and the PKCS#11 module, in one run.
fn pkcs11(report: &mut Report, duration: Duration) {
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::object::{Attribute, ObjectClass};

    const THREADS: [usize; 2] = [1, 8];
    println!("## ES256 through the raw token, the JSON API and the PKCS#11 module\n");
    println!("| path | threads | signatures/s | p50 ms | p99 ms | server CPU µs per signature |");
    println!("|---|---|---|---|---|---|");

    let token = signet_softhsm::TestToken::new().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(Pkcs11Backend::open(token.config(8)).unwrap());
    let key = backend
        .generate(&KeyRequest::named(
            format!("bench-p11-{}", rand_suffix()),
            KeySpec::EcP256,
        ))
        .unwrap();
    for threads in THREADS {
        let (rate, lat, _) = sign_in_backend(
            &backend,
            &key.id,
            SignatureAlgorithm::Es256,
            EcdsaFormat::Raw,
            threads,
            duration,
        );
        println!(
            "| raw token | {threads} | {rate:.0} | {:.2} | {:.2} | – |",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        report.set(format!("pkcs11.raw.t{threads}.rate"), rate);
    }

    let bin = std::env::var("SIGNET_BIN").unwrap_or_else(|_| "target/release/signet".into());
    let server = Server::start(&bin);
    let admin = server.agent();
    post(
        &admin,
        &server.url("/v1/keys"),
        &json!({"name": "bench-p11", "spec": "ec-p256"}).to_string(),
    );
    let body = Arc::new(
        json!({"input": base64::engine::general_purpose::STANDARD.encode(MESSAGE)}).to_string(),
    );
    let url = Arc::new(server.url("/v1/keys/bench-p11/sign"));
    for threads in THREADS {
        let (rate, lat, cpu_us) = sign_over_api(&server, &url, &body, threads, duration);
        println!(
            "| JSON API | {threads} | {rate:.0} | {:.2} | {:.2} | {cpu_us:.0} |",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        report.set(format!("pkcs11.api.t{threads}.rate"), rate);
        report.set(format!("pkcs11.api.t{threads}.cpu_us"), cpu_us);
    }

    let module = std::env::var("SIGNET_PKCS11_MODULE")
        .unwrap_or_else(|_| "target/release/libsignet_pkcs11.so".into());
    let conf = server.dir.join("bench-pkcs11.toml");
    std::fs::write(
        &conf,
        format!(
            "url = \"https://localhost:{}\"\nca = \"ca/root.pem\"\ncert = \"clients/admin.crt.pem\"\nkey = \"clients/admin.key.pem\"\n",
            server.port
        ),
    )
    .unwrap();
    // Read by the module's C_Initialize, on this thread, before any other thread exists.
    std::env::set_var("SIGNET_PKCS11_CONF", &conf);
    let ctx = Arc::new(Pkcs11::new(&module).unwrap_or_else(|e| panic!("{module}: {e}")));
    ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .unwrap();
    let slot = ctx.get_slots_with_token().unwrap()[0];
    for threads in THREADS {
        let sessions: Vec<_> = (0..threads)
            .map(|_| {
                let session = ctx.open_ro_session(slot).unwrap();
                let key = session
                    .find_objects(&[
                        Attribute::Class(ObjectClass::PRIVATE_KEY),
                        Attribute::Label(b"bench-p11".to_vec()),
                    ])
                    .unwrap()[0];
                session.sign(&Mechanism::EcdsaSha256, key, MESSAGE).unwrap();
                (session, key)
            })
            .collect();
        let sessions = std::sync::Mutex::new(sessions);
        let cpu0 = cpu_seconds(server.pid());
        let (rate, lat) = drive(
            threads,
            duration,
            |_| sessions.lock().unwrap().pop().unwrap(),
            |(session, key)| {
                session
                    .sign(&Mechanism::EcdsaSha256, *key, MESSAGE)
                    .unwrap();
                1
            },
        );
        let cpu_us = (cpu_seconds(server.pid()) - cpu0) / (rate * duration.as_secs_f64()) * 1e6;
        println!(
            "| PKCS#11 module | {threads} | {rate:.0} | {:.2} | {:.2} | {cpu_us:.0} |",
            pct(&lat, 0.5),
            pct(&lat, 0.99)
        );
        report.set(format!("pkcs11.module.t{threads}.rate"), rate);
        report.set(format!("pkcs11.module.t{threads}.cpu_us"), cpu_us);
    }
    println!();
}
