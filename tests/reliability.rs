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
    for i in 0..400 {
        let input = format!("while full {i}");
        let reply = sign(&admin, &input);
        match reply.status {
            200 => {
                answered.insert(input);
            }
            503 => {
                assert_eq!(
                    reply.json()["type"],
                    "https://signet.dev/problems/audit-unavailable",
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
