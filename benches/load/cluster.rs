//! `load cluster`: several nodes on one PostgreSQL database and one remote token, all on this
//! machine (so the nodes, the token server, PostgreSQL and the load client share its cores:
//! the figures say what one more node costs, not what a second machine would add).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

use super::{cpu_seconds, drive, pct, post, rand_suffix, Report, Server, MESSAGE};

#[path = "../../tests/common/pg.rs"]
mod pg;
use pg::{psql, script, var};

/// Writes a secret file as its owner's alone (0600), as Signet requires of PIN files.
fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// PostgreSQL transactions (committed and rolled back) of the database `url` names, as its
/// statistics count them (every statement outside an explicit transaction is one). The
/// statistics are flushed by backends when they go idle: read after a pause.
fn transactions(url: &str, password: &Path) -> f64 {
    psql(
        url,
        password,
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    .trim()
    .parse()
    .unwrap_or(0.0)
}

/// Of the database's backends running a statement, the share waiting for a lock (the audit
/// chain's head row, mostly), sampled every 100 ms until `stop`.
fn lock_wait_share(url: &str, password: &Path, stop: &std::sync::atomic::AtomicBool) -> f64 {
    let (mut waiting, mut active) = (0.0, 0.0);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let line = psql(
            url,
            password,
            "SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') || ' ' || count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND application_name = 'signet'",
        );
        let mut parts = line
            .split_whitespace()
            .map(|p| p.parse::<f64>().unwrap_or(0.0));
        waiting += parts.next().unwrap_or(0.0);
        active += parts.next().unwrap_or(0.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    waiting / active.max(1.0)
}

/// CPU seconds of the p11-kit server and its children (one per connected node).
fn token_cpu(server_pid: &str) -> f64 {
    let children = Command::new("pgrep")
        .args(["-P", server_pid])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    children
        .split_whitespace()
        .chain(std::iter::once(server_pid))
        .filter_map(|p| p.parse::<u32>().ok())
        .map(cpu_seconds)
        .sum()
}

pub fn run(report: &mut Report, duration: Duration) {
    let bin = std::env::var("SIGNET_BIN").unwrap_or_else(|_| "target/release/signet".into());
    let pg_url = std::env::var("SIGNET_PG_URL")
        .expect("SIGNET_PG_URL: start PostgreSQL with `eval \"$(scripts/postgres.sh start)\"`");
    let pg_password = std::env::var("SIGNET_PG_PASSWORD_FILE").unwrap();
    let root = std::env::temp_dir().join(format!("signet-bench-cluster-{}", rand_suffix()));
    std::fs::create_dir_all(&root).unwrap();
    let token_dir = root.join("token");
    let token = script("remote-token.sh", &["start", token_dir.to_str().unwrap()]);
    let token_pid = std::fs::read_to_string(token_dir.join("server.pid"))
        .unwrap()
        .trim()
        .to_string();
    let db = format!("bench_{}", rand_suffix());
    psql(
        &pg_url,
        Path::new(&pg_password),
        &format!("CREATE DATABASE {db}"),
    );
    let url = pg::with_database(&pg_url, &db);

    // `[audit] group_wait_us` of every node (BENCH_GROUP_WAIT_US; the default's when unset).
    let group_wait: u64 = std::env::var("BENCH_GROUP_WAIT_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(signet::config::AuditConfig::default().group_wait_us);
    let mut nodes: Vec<Server> = Vec::new();
    for name in ["a", "b", "c"] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let pin = dir.join("hsm.pin");
        write_secret(&pin, var(&token, "SIGNET_P11KIT_PIN"));
        let config = dir.join("signet.toml");
        std::fs::write(
            &config,
            format!(
                "[hsm]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\npool_size = 1\n\
                 [store]\nkind = \"postgres\"\nurl = \"{url}\"\npassword_file = \"{pg_password}\"\nnode = \"{name}\"\n\
                 [audit]\ngroup_wait_us = {group_wait}\n",
                var(&token, "SIGNET_P11KIT_MODULE"),
                var(&token, "SIGNET_P11KIT_TOKEN"),
                pin.display(),
            ),
        )
        .unwrap();
        let env = vec![
            (
                "P11_KIT_SERVER_ADDRESS".to_string(),
                var(&token, "P11_KIT_SERVER_ADDRESS").to_string(),
            ),
            ("SIGNET_CONFIG".to_string(), config.display().to_string()),
        ];
        let admin_dir: Option<PathBuf> = nodes.first().map(|n| n.dir.clone());
        nodes.push(Server::start_node(&bin, dir.join("data"), &env, admin_dir));
    }
    let admin = nodes[0].agent();
    post(
        &admin,
        &nodes[0].url("/v1/keys"),
        &json!({"name": "bench", "spec": "ec-p256"}).to_string(),
    );
    let body = Arc::new(
        json!({"input": base64::engine::general_purpose::STANDARD.encode(MESSAGE)}).to_string(),
    );

    println!("## Several nodes on one PostgreSQL and one remote token (ES256, 16 connections)\n");
    println!("| nodes | signatures/s | p50 ms | p99 ms | node CPU µs per signature | token server CPU µs per signature | audit transactions/s | records per transaction | PostgreSQL transactions per signature | lock-wait share |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let connections = 16;
    for n in 1..=3 {
        let targets: Vec<(String, ureq::Agent)> = (0..connections)
            .map(|i| {
                let node = &nodes[i % n];
                (node.url("/v1/keys/bench/sign"), node.agent())
            })
            .collect();
        for (url, agent) in &targets {
            post(agent, url, &body);
        }
        let admins: Vec<ureq::Agent> = nodes.iter().map(|s| s.agent()).collect();
        let audit0: Vec<(f64, f64)> = nodes
            .iter()
            .zip(&admins)
            .map(|(s, a)| super::audit_counts(a, s))
            .collect();
        std::thread::sleep(Duration::from_millis(1200));
        let xact0 = transactions(&url, Path::new(&pg_password));
        let cpu0: f64 = nodes.iter().map(|s| cpu_seconds(s.pid())).sum();
        let tcpu0 = token_cpu(&token_pid);
        let targets = Arc::new(std::sync::Mutex::new(targets));
        let body = body.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (url, password, stop) = (url.clone(), pg_password.clone(), stop.clone());
            std::thread::spawn(move || lock_wait_share(&url, Path::new(&password), &stop))
        };
        let (rate, lat) = drive(
            connections,
            duration,
            |_| targets.lock().unwrap().pop().unwrap(),
            move |(url, agent): &mut (String, ureq::Agent)| {
                let r = agent
                    .post(url)
                    .set("Content-Type", "application/json")
                    .send_string(&body)
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.into_string();
                1
            },
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let lock_share = sampler.join().unwrap();
        let cpu: f64 = nodes.iter().map(|s| cpu_seconds(s.pid())).sum::<f64>() - cpu0;
        let tcpu = token_cpu(&token_pid) - tcpu0;
        let audit1: Vec<(f64, f64)> = nodes
            .iter()
            .zip(&admins)
            .map(|(s, a)| super::audit_counts(a, s))
            .collect();
        let records: f64 = audit1.iter().zip(&audit0).map(|(b, a)| b.0 - a.0).sum();
        let batches: f64 = audit1.iter().zip(&audit0).map(|(b, a)| b.1 - a.1).sum();
        let signatures = rate * duration.as_secs_f64();
        std::thread::sleep(Duration::from_millis(1200));
        // The samples' own queries and the admin reads around the step are in this count
        // too (a few dozen against thousands of signatures).
        let xact_per_sig = (transactions(&url, Path::new(&pg_password)) - xact0) / signatures;
        let (p50, p99) = (pct(&lat, 0.5), pct(&lat, 0.99));
        let cpu_us = cpu / signatures * 1e6;
        let tcpu_us = tcpu / signatures * 1e6;
        let tx_rate = batches / duration.as_secs_f64();
        let per_tx = records / batches.max(1.0);
        println!("| {n} | {rate:.0} | {p50:.2} | {p99:.2} | {cpu_us:.1} | {tcpu_us:.1} | {tx_rate:.0} | {per_tx:.1} | {xact_per_sig:.2} | {:.0}% |", lock_share * 100.0);
        let key = format!("cluster.n{n}");
        report.set(format!("{key}.rate"), rate);
        report.set(format!("{key}.p50_ms"), p50);
        report.set(format!("{key}.p99_ms"), p99);
        report.set(format!("{key}.node_cpu_us"), cpu_us);
        report.set(format!("{key}.token_cpu_us"), tcpu_us);
        report.set(format!("{key}.audit_tx_per_s"), tx_rate);
        report.set(format!("{key}.records_per_tx"), per_tx);
        report.set(format!("{key}.pg_tx_per_signature"), xact_per_sig);
        report.set(format!("{key}.lock_wait_share"), lock_share);
    }

    revocation(report, &nodes, &root);

    drop(nodes);
    script("remote-token.sh", &["stop", token_dir.to_str().unwrap()]);
    psql(
        &pg_url,
        Path::new(&pg_password),
        &format!("DROP DATABASE {db}"),
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// Client certificates revoked on node A: the time from the revocation's answer until node B
/// has refused a request on the client's open connection.
fn revocation(report: &mut Report, nodes: &[Server], root: &Path) {
    let rounds = 40;
    let admin = nodes[0].agent();
    let clients = nodes[0].dir.join("clients");
    let mut times = Vec::new();
    post(
        &admin,
        &nodes[0].url("/v1/principals"),
        &json!({"name": "revoked", "scopes": ["keys:read"]}).to_string(),
    );
    for i in 0..rounds {
        let key = root.join(format!("r{i}.key"));
        let csr = root.join(format!("r{i}.csr"));
        let made = Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-subj",
                "/CN=revoked",
                "-keyout",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&csr)
            .output()
            .unwrap();
        assert!(made.status.success());
        let doc = post(
            &admin,
            &nodes[0].url("/v1/certificates"),
            &json!({"csr": std::fs::read_to_string(&csr).unwrap(), "profile": "client", "name": "revoked"}).to_string(),
        );
        let name = format!("revoked-{i}");
        std::fs::write(
            clients.join(format!("{name}.crt.pem")),
            doc["certificate_chain"].as_str().unwrap(),
        )
        .unwrap();
        std::fs::copy(&key, clients.join(format!("{name}.key.pem"))).unwrap();
        let serial = doc["serial"].as_str().unwrap().to_string();
        let on_b = nodes[1].agent_as(&name);
        let probe = nodes[1].url("/v1/keys");
        assert_eq!(on_b.get(&probe).call().unwrap().status(), 200);
        post(
            &admin,
            &nodes[0].url(&format!("/v1/certificates/{serial}/revoke")),
            "{}",
        );
        let answered = Instant::now();
        loop {
            match on_b.get(&probe).call() {
                Ok(_) => {}
                Err(ureq::Error::Status(401, _)) => break,
                Err(e) => panic!("{e}"),
            }
            assert!(answered.elapsed() < Duration::from_secs(30));
        }
        times.push(answered.elapsed().as_secs_f64());
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (p50, p99) = (pct(&times, 0.5), pct(&times, 0.99));
    println!("\nrevocation on node A refused on node B's open connection: p50 {p50:.2} ms, p99 {p99:.2} ms over {rounds} certificates (the time of B's next request, which reads the certificate's state or, served from B's cache, finds it changed in its audit transaction and runs again)\n");
    report.set("cluster.revocation.p50_ms", p50);
    report.set("cluster.revocation.p99_ms", p99);
}
