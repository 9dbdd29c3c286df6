//! Failure modes that must lose or forge nothing: a full disk (a real tmpfs, filled), floods
//! of refused handshakes, a cut log tail after kill -9, log-line injection, lockouts.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{b64, text, Client, Data, Server, Tmpfs};
use serde_json::{json, Value};

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn log_records(data: &Data) -> Vec<Value> {
    std::fs::read_to_string(data.join("audit/audit.log"))
        .unwrap()
        .trim_end_matches('\0') // the log's preallocated space, while the server runs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Handshakes without a client certificate, each refused.
fn refused_handshakes(server: &Server, n: usize) {
    let anonymous = Client::new(&server.data.join("ca/root.pem"), None, server);
    for _ in 0..n {
        assert!(anonymous.try_get("/healthz").is_err());
    }
}

#[test]
fn a_full_disk_refuses_loses_nothing_and_recovers_by_itself() {
    let fs = Tmpfs::mount("48m");
    let server = Server::start_in(Data::new_in(fs.path()), &[]);
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    let mut answered = BTreeSet::new();
    let mut refused = BTreeSet::new();
    let sign = |admin: &Client, input: &str| {
        admin.post("/v1/keys/k/sign", &json!({"input": b64(input.as_bytes())}))
    };
    assert_eq!(sign(&admin, "before").status, 200);
    answered.insert("before".to_string());

    let filler = fs.fill();
    // The log's preallocated space (64 KiB, ~200 records) fills first.
    for i in 0..2000 {
        let input = format!("while full {i}");
        let reply = sign(&admin, &input);
        match reply.status {
            200 => {
                answered.insert(input);
            }
            503 => {
                assert_eq!(
                    reply.json()["type"],
                    "/problems/audit-unavailable",
                    "{reply:?}"
                );
                refused.insert(input);
            }
            other => panic!("unexpected {other}: {reply:?}"),
        }
        if refused.len() >= 5 {
            break;
        }
    }
    assert!(refused.len() >= 5, "the disk never filled");
    // Refused handshakes while full: counted, and written later as summaries.
    refused_handshakes(&server, 30);
    let ready = admin.get("/readyz");
    assert_eq!(ready.status, 503, "{ready:?}");
    assert!(
        ready.json()["detail"]
            .as_str()
            .unwrap()
            .contains("audit log: not writable"),
        "{ready:?}"
    );

    std::fs::remove_file(filler).unwrap();
    // Ready again without a restart, within a few seconds.
    let started = Instant::now();
    loop {
        let ready = admin.get("/readyz");
        if ready.status == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still not ready after space returned: {ready:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(sign(&admin, "after").status, 200);
    answered.insert("after".to_string());
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "k2", "spec": "ec-p256"}))
            .status,
        201
    );
    let data = server.stop();

    let out = data.signet(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = log_records(&data);
    let signed: BTreeSet<String> = log
        .iter()
        .filter(|r| r["action"] == "key.sign" && r["outcome"] == "ok")
        .map(|r| r["details"]["input_sha256"].as_str().unwrap().to_string())
        .collect();
    for input in &answered {
        assert!(
            signed.contains(&sha256_hex(input.as_bytes())),
            "answered {input:?} has no record"
        );
    }
    for input in &refused {
        assert!(
            !signed.contains(&sha256_hex(input.as_bytes())),
            "refused {input:?} is recorded as signed"
        );
    }
    let outage = log
        .iter()
        .find(|r| r["action"] == "audit.unavailable")
        .expect("the outage is not in the log");
    let refused_records: usize = outage["details"]["refused_records"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(refused_records >= refused.len(), "{outage}");
    assert!(log
        .iter()
        .any(|r| r["action"] == "tls.handshake" || r["action"] == "tls.handshake.summary"));
    drop(fs);
}

/// The anchored checkpoint's seq as `signet status --json` reports it (`None`: none).
fn anchored_seq(data: &Data) -> Option<u64> {
    let out = data.signet(&["status", "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    status["audit"]["last_checkpoint"]["seq"].as_u64()
}

/// A full disk under the token while checkpoints are anchored, then kill -9: the anchor in the
/// token survives (the old one is destroyed only after the new one is read back), and a tail
/// then cut from the log is refused by `audit verify` and `serve` alike.
#[test]
fn a_full_disk_then_a_crash_keeps_the_anchor_and_a_cut_tail_is_refused() {
    let fs = Tmpfs::mount("48m");
    let server = Server::start_in(Data::new_in(fs.path()), &[]);
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    for i in 0..5 {
        let input = format!("before {i}");
        let reply = admin.post("/v1/keys/k/sign", &json!({"input": b64(input.as_bytes())}));
        assert_eq!(reply.status, 200);
    }
    // The default checkpoint interval (1 s) anchors them.
    admin.wait_anchored();
    let before_full = log_records(&server.data).len();
    let filler = fs.fill();
    // Records still fit the log's preallocated space; their checkpoints are anchored in a
    // token whose disk is full.
    for i in 0..20 {
        let input = format!("while full {i}");
        admin.post("/v1/keys/k/sign", &json!({"input": b64(input.as_bytes())}));
        std::thread::sleep(Duration::from_millis(150));
    }
    std::thread::sleep(Duration::from_millis(2500));
    std::process::Command::new("kill")
        .args(["-9", &server.child.id().to_string()])
        .status()
        .unwrap();
    let data = server.stop();
    std::fs::remove_file(filler).unwrap();

    let anchored = anchored_seq(&data);
    assert!(
        anchored.is_some_and(|seq| seq as usize >= before_full.min(1)),
        "the anchor was lost to the full disk: {anchored:?}"
    );
    // Cut the log back to before the first anchored checkpoint.
    let log = data.join("audit/audit.log");
    let records = log_records(&data);
    let first_checkpoint = records
        .iter()
        .position(|r| r["action"] == "audit.checkpoint")
        .unwrap();
    let text_now = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text_now.lines().take(first_checkpoint).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();

    let out = data.signet(&["audit", "verify"]);
    assert!(!out.status.success(), "a cut log verified: {}", text(&out));
    let status = data.signet(&["status"]);
    assert!(!status.status.success(), "{}", text(&status));
    let start = data.signet(&["serve", "--listen", "127.0.0.1:0"]);
    let t = text(&start);
    assert!(!start.status.success(), "serve started on a cut log: {t}");
    assert!(t.contains("reanchor"), "{t}");
    drop(fs);
}

/// A log with checkpoints whose anchor is gone from the token is refused at start, by
/// `audit verify` and by `status`, until `audit reanchor` records it.
#[test]
fn a_log_with_checkpoints_but_no_anchor_is_refused_until_reanchored() {
    let server = Server::start();
    server
        .admin()
        .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    let data = server.stop();
    assert!(anchored_seq(&data).is_some());
    // Delete the anchor object from the token with an independent tool.
    let pin = std::fs::read_to_string(data.join("pin")).unwrap();
    let conf = data.join("softhsm/softhsm2.conf");
    let objects = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "signet",
        ])
        .args([
            "--login",
            "--pin",
            pin.trim(),
            "--list-objects",
            "--type",
            "data",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&objects.stdout).into_owned();
    let label = listing
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("label:")
                .map(|l| l.trim().trim_matches('\'').to_string())
        })
        .filter(|l| l.starts_with("signet:audit:anchor"))
        .unwrap_or_else(|| panic!("no anchor object: {listing}"));
    let out = std::process::Command::new("pkcs11-tool")
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "signet",
        ])
        .args([
            "--login",
            "--pin",
            pin.trim(),
            "--delete-object",
            "--type",
            "data",
        ])
        .args(["--label", &label])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(anchored_seq(&data), None);

    let out = data.signet(&["audit", "verify"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("no checkpoint is anchored"),
        "{t}"
    );
    let out = data.signet(&["status"]);
    assert!(!out.status.success(), "{}", text(&out));
    let start = data.signet(&["serve", "--listen", "127.0.0.1:0"]);
    let t = text(&start);
    assert!(
        !start.status.success() && t.contains("anchor was lost"),
        "{t}"
    );
    let out = data.ok(&["audit", "reanchor"]);
    assert!(out.contains("re-anchored"), "{out}");
    let log = log_records(&data);
    let reanchor = log
        .iter()
        .find(|r| r["action"] == "audit.reanchor")
        .unwrap();
    assert_eq!(reanchor["details"]["kind"], "anchor-missing");
    assert!(data.signet(&["audit", "verify"]).status.success());
    assert!(anchored_seq(&data).is_some());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_cut_tail_after_kill_9_is_detected_even_with_the_database_rolled_back() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    admin.wait_anchored();
    // What someone holding the disk keeps: the database as it was a moment ago.
    let snapshot = tempfile::tempdir().unwrap();
    copy_dir(&server.data.join("db"), &snapshot.path().join("db"));
    let lines_before = std::fs::read_to_string(server.data.join("audit/audit.log"))
        .unwrap()
        .trim_end_matches('\0') // the log's preallocated space
        .lines()
        .count();
    for i in 0..10 {
        let reply = admin.post(
            "/v1/keys/k/sign",
            &json!({"input": b64(format!("answered {i}").as_bytes())}),
        );
        assert_eq!(reply.status, 200);
    }
    // The default checkpoint interval (1 s) anchors them in the token.
    admin.wait_anchored();
    std::process::Command::new("kill")
        .args(["-9", &server.child.id().to_string()])
        .status()
        .unwrap();
    let data = server.stop();

    // Cut every record made since the snapshot, and roll the database back to it.
    let log = data.join("audit/audit.log");
    let text_now = std::fs::read_to_string(&log).unwrap();
    let kept: Vec<&str> = text_now.lines().take(lines_before).collect();
    std::fs::write(&log, kept.join("\n") + "\n").unwrap();
    std::fs::remove_dir_all(data.join("db")).unwrap();
    copy_dir(&snapshot.path().join("db"), &data.join("db"));

    let out = data.signet(&["audit", "verify"]);
    let t = text(&out);
    assert!(!out.status.success(), "a cut log verified: {t}");
    assert!(
        t.contains("tail truncated") && t.contains("kept outside"),
        "{t}"
    );
    // The service refuses to start on it, and says why.
    let start = data.signet(&["serve", "--listen", "127.0.0.1:0"]);
    let t = text(&start);
    assert!(!start.status.success(), "{t}");
    assert!(
        t.contains("anchored in the token") && t.contains("reanchor"),
        "{t}"
    );
    // The operator can accept the loss; that is recorded, and the log verifies again.
    let out = data.ok(&["audit", "reanchor"]);
    assert!(out.contains("re-anchored"), "{out}");
    let out = data.signet(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    let log = log_records(&data);
    assert!(log.iter().any(|r| r["action"] == "audit.reanchor"));
}

#[test]
fn a_start_after_an_unclean_stop_checkpoints_at_once_and_says_so() {
    let (data, conf) = {
        let data = Data::new();
        let conf = data.join("signet.toml");
        // Checkpoints far apart, so the kill leaves an unsigned tail.
        std::fs::write(&conf, "[audit]\ncheckpoint_interval_secs = 3600\n").unwrap();
        let conf = conf.to_str().unwrap().to_string();
        (data, conf)
    };
    let server = Server::start_in(data, &[("SIGNET_CONFIG", &conf)]);
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    admin.post("/v1/keys/k/sign", &json!({"input": b64(b"x")}));
    std::process::Command::new("kill")
        .args(["-9", &server.child.id().to_string()])
        .status()
        .unwrap();
    let data = server.stop();
    let server = Server::start_in(data, &[("SIGNET_CONFIG", &conf)]);
    let data = server.stop();
    let log = log_records(&data);
    let recovered = log
        .iter()
        .position(|r| r["action"] == "service.recovered")
        .expect("the unclean stop is not recorded");
    assert_eq!(log[recovered + 1]["action"], "audit.checkpoint");
    let out = data.signet(&["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_handshake_flood_leaves_a_bounded_log_that_still_counts_it() {
    let data = Data::new();
    let conf = data.join("signet.toml");
    std::fs::write(
        &conf,
        "[server]\nrefusals_audited_per_sec = 5\nrefusal_summary_secs = 1\n",
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    let server = Server::start_in(data, &[("SIGNET_CONFIG", &conf)]);
    let before = log_records(&server.data).len();
    let started = Instant::now();
    let per_thread = 150;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let root = server.data.join("ca/root.pem");
            let port = server.port;
            std::thread::spawn(move || {
                let config = std::sync::Arc::new(common::tls_config(&root, None));
                let mut refused = 0;
                for _ in 0..per_thread {
                    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    let conn = rustls::ClientConnection::new(
                        config.clone(),
                        "localhost".try_into().unwrap(),
                    )
                    .unwrap();
                    let mut s = rustls::StreamOwned::new(conn, tcp);
                    use std::io::{Read, Write};
                    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
                    let mut buf = [0u8; 64];
                    if !matches!(s.read(&mut buf), Ok(n) if n > 0) {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let refused: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(refused, 4 * per_thread);
    // Let the last summary be written.
    std::thread::sleep(Duration::from_millis(2500));
    let data = server.stop();
    let log = log_records(&data);
    let added: Vec<&Value> = log[before..]
        .iter()
        .filter(|r| r["action"] == "tls.handshake" || r["action"] == "tls.handshake.summary")
        .collect();
    let individual = added
        .iter()
        .filter(|r| r["action"] == "tls.handshake")
        .count();
    let counted: usize = added
        .iter()
        .filter(|r| r["action"] == "tls.handshake.summary")
        .map(|r| {
            r["details"]["count"]
                .as_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    // Every refusal is accounted for …
    assert_eq!(individual + counted, refused, "{added:#?}");
    // … in a number of records bounded by the budget, not by the flood: at most 5 one by
    // one per second, plus one summary per reason and source per interval.
    let bound = ((seconds + 3.0) * (5.0 + 2.0)) as usize;
    assert!(
        added.len() <= bound,
        "{} records for {refused} refusals in {seconds:.1}s (bound {bound})",
        added.len()
    );
    assert!(added.len() * 10 < refused, "{} records", added.len());
}
