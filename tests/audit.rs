//! The audit log: every action recorded with its principal and outcome, tampering detected with
//! the sequence number named, durability across kill -9, and the audit key locked in the token.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::{b64, openssl_csr, text, Data, Server};
use serde_json::{json, Value};
use signet::audit::AuditRecord;

fn with_config(checkpoint_every: u64) -> (Data, String) {
    let data = Data::new();
    let conf = data.join("signet.toml");
    std::fs::write(
        &conf,
        format!("[audit]\ncheckpoint_every = {checkpoint_every}\n"),
    )
    .unwrap();
    let conf = conf.to_str().unwrap().to_string();
    (data, conf)
}

fn records(body: &str) -> Vec<Value> {
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn every_action_is_recorded_with_principal_and_outcome() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    admin.post("/v1/keys/k/sign", &json!({"input": b64(b"secret message")}));
    admin.post(
        "/v1/keys/k/verify",
        &json!({"input": b64(b"x"), "signature": b64(b"y")}),
    );
    admin.post("/v1/keys/k/rotate", &json!({}));
    admin.post("/v1/keys/k/versions/1/disable", &json!({}));
    admin.post("/v1/keys/k/versions/1/enable", &json!({}));
    admin.post("/v1/keys/k/schedule-deletion", &json!({"pending_days": 2}));
    admin.post("/v1/keys/k/cancel-deletion", &json!({}));
    admin.post(
        "/v1/principals",
        &json!({"name": "reader", "scopes": ["keys:read"]}),
    );
    let dir = server.data.join("clients");
    let (key, csr) = openssl_csr(&dir, "reader", &[]);
    let issued = admin
        .post(
            "/v1/certificates",
            &json!({"csr": csr, "profile": "client", "name": "reader"}),
        )
        .json();
    std::fs::write(
        dir.join("reader.crt.pem"),
        format!(
            "{}{}",
            issued["certificate"].as_str().unwrap(),
            issued["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(key, dir.join("reader.key.pem")).unwrap();
    let reader = server.client("reader");
    assert_eq!(
        reader
            .post("/v1/keys/k/sign", &json!({"input": b64(b"nope")}))
            .status,
        403
    );
    let serial = issued["serial"].as_str().unwrap();
    admin.post(&format!("/v1/certificates/{serial}/revoke"), &json!({}));
    admin.delete("/v1/principals/reader");
    let anonymous = common::Client::new(&server.data.join("ca/root.pem"), None, &server);
    assert!(anonymous.try_get("/healthz").is_err());

    // A refused handshake is recorded without holding the connection (the record is queued),
    // so it may land a moment after the client has seen the refusal: wait for it, bounded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let log = records(&admin.get("/v1/audit?limit=10000").body);
        let seen = log
            .iter()
            .any(|r| r["action"] == "tls.handshake" && r["outcome"] == "denied");
        if seen || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let find = |action: &str, principal: &str, outcome: &str| {
        log.iter()
            .find(|r| {
                r["action"] == action && r["principal"] == principal && r["outcome"] == outcome
            })
            .unwrap_or_else(|| panic!("no {action} by {principal} with {outcome} in {log:#?}"))
            .clone()
    };
    for action in ["service.start", "config.loaded", "ca.init"] {
        find(action, "signet", "ok");
    }
    for action in [
        "key.create",
        "key.sign",
        "key.verify",
        "key.rotate",
        "key.disable",
        "key.enable",
        "key.delete-scheduled",
        "key.cancel-deletion",
        "principal.create",
        "cert.issue",
        "cert.revoke",
        "crl.generate",
        "principal.delete",
    ] {
        find(action, "admin", "ok");
    }
    let denied = find("key.sign", "reader", "denied");
    assert!(
        denied["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("keys:sign:k"),
        "{denied}"
    );
    let refused = find("tls.handshake", "-", "denied");
    assert_eq!(refused["details"]["reason"], "no-client-certificate");

    // A signature's record names key, version and algorithm and holds the input's digest, never the input.
    let sign = find("key.sign", "admin", "ok");
    assert_eq!(sign["target"], "k");
    assert_eq!(sign["details"]["version"], "1");
    assert_eq!(sign["details"]["algorithm"], "ES256");
    assert_eq!(
        sign["details"]["input_sha256"],
        sha256_hex(b"secret message")
    );
    assert!(!log
        .iter()
        .any(|r| r.to_string().contains(&b64(b"secret message"))));
    // Request ids tie records to responses; sequence numbers have no gaps.
    assert_eq!(sign["request_id"].as_str().unwrap().len(), 32);
    for (i, r) in log.iter().enumerate() {
        assert_eq!(r["seq"], i as u64 + 1);
    }
    // after/limit page through the log.
    let page = records(&admin.get("/v1/audit?after=2&limit=3").body);
    assert_eq!(
        page.iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 4, 5]
    );
}

/// Stops a server with checkpoints every 4 records after some activity; returns its data dir.
fn busy_log() -> Data {
    let (data, conf) = with_config(4);
    let server = Server::start_in(data, &[("SIGNET_CONFIG", &conf)]);
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    for i in 0..12 {
        admin.post(
            "/v1/keys/k/sign",
            &json!({"input": b64(format!("m{i}").as_bytes())}),
        );
    }
    server.stop()
}

fn verify(data: &Data) -> (bool, String) {
    let out = data.signet(&["audit", "verify"]);
    (out.status.success(), text(&out))
}

fn log_path(data: &Data) -> std::path::PathBuf {
    data.join("audit/audit.log")
}

/// Rewrites the log file's lines (records are lines; line i holds seq i + 1).
fn edit_log(data: &Data, f: impl FnOnce(&mut Vec<String>)) {
    let path = log_path(data);
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    f(&mut lines);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

fn record(line: &str) -> AuditRecord {
    serde_json::from_str(line).unwrap()
}

fn checkpoint_seqs(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| record(l))
        .filter(|r| r.action == "audit.checkpoint")
        .map(|r| r.seq)
        .collect()
}

#[test]
fn tampering_with_the_stored_log_is_detected() {
    let data = busy_log();
    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
    assert!(out.contains("checkpoint signatures verified"), "{out}");
    let copy = |data: &Data| {
        let d = Data::new();
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", data.path().display()))
            .arg(d.path())
            .status()
            .unwrap();
        d
    };

    // Change one byte of a stored record.
    let d = copy(&data);
    edit_log(&d, |lines| {
        let line = &mut lines[6];
        let at = line.find("\"target\":\"").unwrap() + 10;
        let mut bytes = line.clone().into_bytes();
        bytes[at] ^= 0x01;
        *line = String::from_utf8(bytes).unwrap();
    });
    let (ok, out) = verify(&d);
    assert!(!ok && out.contains("broken at seq 7"), "{out}");

    // Delete a record.
    let d = copy(&data);
    edit_log(&d, |lines| {
        lines.remove(8);
    });
    let (ok, out) = verify(&d);
    assert!(!ok && out.contains("broken at seq 9"), "{out}");

    // Reorder two records.
    let d = copy(&data);
    edit_log(&d, |lines| lines.swap(4, 5));
    let (ok, out) = verify(&d);
    assert!(!ok && out.contains("broken at seq 5"), "{out}");

    // Rewrite a record *and* its hash consistently: the chain breaks at the next record.
    let d = copy(&data);
    edit_log(&d, |lines| {
        let mut r = record(&lines[5]);
        r.principal = "someone-else".into();
        r.hash = r.compute_hash();
        lines[5] = serde_json::to_string(&r).unwrap();
    });
    let (ok, out) = verify(&d);
    assert!(!ok && out.contains("broken at seq 7"), "{out}");

    // Truncate the tail after a checkpoint.
    let d = copy(&data);
    let mut cut = 0;
    edit_log(&d, |lines| {
        let cps = checkpoint_seqs(lines);
        assert!(cps.len() >= 2, "{cps:?}");
        cut = cps[cps.len() - 2];
        lines.truncate(cut as usize);
    });
    let (ok, out) = verify(&d);
    assert!(
        !ok && out.contains(&format!("broken at seq {}", cut + 1)) && out.contains("truncated"),
        "{out}"
    );

    // A forged checkpoint (a signature the audit key did not make) is refused.
    let d = copy(&data);
    edit_log(&d, |lines| {
        let cp = checkpoint_seqs(lines)[0];
        let mut r = record(&lines[cp as usize - 1]);
        r.details.insert(
            "signature".into(),
            b64(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
        );
        r.hash = r.compute_hash();
        lines[cp as usize - 1] = serde_json::to_string(&r).unwrap();
    });
    let (ok, out) = verify(&d);
    assert!(
        !ok && out.contains("checkpoint signature does not verify"),
        "{out}"
    );
}

/// The bytes of every file under `dir` (the data directory: log, token objects, CA files), but
/// for the files the engines rewrite on their own when merely opened: sled's (it has no
/// read-only mode and writes its snapshot at open) and SoftHSM2's token file (login state).
fn tree_bytes(dir: &std::path::Path) -> BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if !path.ends_with("db") {
                    stack.push(path);
                }
            } else if !path.ends_with("token.object") {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// A log cut back to a record that is not a checkpoint is refused by `audit verify` (twice:
/// the first verify changes nothing), by `status` and by `serve`; no inspecting command
/// writes a byte anywhere in the data directory; only `audit reanchor` accepts the loss, and
/// it records which records were lost before anchoring anew.
#[test]
fn a_log_cut_at_any_record_stays_refused_and_inspecting_commands_write_nothing() {
    let data = busy_log();
    let mut cut = 0;
    let mut anchored = 0;
    edit_log(&data, |lines| {
        let cps = checkpoint_seqs(lines);
        anchored = *cps.last().unwrap();
        // A record that is not a checkpoint, before the last two checkpoints.
        cut = cps[cps.len() - 2] - 1;
        assert!(!cps.contains(&cut), "{cps:?}");
        lines.truncate(cut as usize);
    });
    let before = tree_bytes(data.path());

    for round in 0..2 {
        let (ok, out) = verify(&data);
        assert!(!ok, "verify #{round} passed a cut log: {out}");
        assert!(
            out.contains(&format!("broken at seq {}", cut + 1)) && out.contains("truncated"),
            "verify #{round}: {out}"
        );
    }
    let status = data.signet(&["status"]);
    let t = text(&status);
    assert!(!status.status.success(), "status passed a cut log: {t}");
    assert!(
        t.contains("BROKEN") && t.contains(&format!("records {}-{anchored}", cut + 1)),
        "{t}"
    );
    // The anchored checkpoint is still named (not "none anchored yet"), and the log is not
    // reported as taking records.
    assert!(
        t.contains(&format!(
            "checkpoint    seq {anchored} anchored in the token"
        )),
        "{t}"
    );
    let json: Value = serde_json::from_slice(&data.signet(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json["audit"]["last_checkpoint"]["seq"], anchored, "{json}");
    assert_eq!(json["audit"]["writable"], false, "{json}");
    for args in [
        &["key", "list"][..],
        &["ca", "show"],
        &["cert", "list"],
        &["key", "public", "k"],
    ] {
        let _ = data.signet(args);
    }
    let export = tempfile::tempdir().unwrap();
    let out = data.signet(&[
        "audit",
        "export",
        "--out",
        export.path().join("copy.jsonl").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Not one byte changed: no checkpoint, no repair record, no anchor, no database write.
    let after = tree_bytes(data.path());
    let changed: Vec<_> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(changed.is_empty(), "inspecting commands wrote {changed:?}");

    let start = data.signet(&["serve", "--listen", "127.0.0.1:0"]);
    let t = text(&start);
    assert!(!start.status.success(), "serve started on a cut log: {t}");
    assert!(
        t.contains("anchored in the token") && t.contains("reanchor"),
        "{t}"
    );

    // The one way on: reanchor, which records the loss first.
    let out = data.ok(&["audit", "reanchor"]);
    assert!(out.contains("re-anchored"), "{out}");
    let lines: Vec<String> = std::fs::read_to_string(log_path(&data))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let reanchor = record(&lines[cut as usize]);
    assert_eq!(reanchor.action, "audit.reanchor");
    assert_eq!(reanchor.details["lost_from"], (cut + 1).to_string());
    assert_eq!(reanchor.details["lost_to"], anchored.to_string());
    assert_eq!(
        reanchor.details["lost_records"],
        (anchored - cut).to_string()
    );
    assert_eq!(record(&lines[cut as usize + 1]).action, "audit.checkpoint");
    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
    let server = Server::start_in(data, &[]);
    assert_eq!(server.admin().get("/healthz").status, 200);
}

#[test]
fn exported_copies_verify_offline_and_tampering_is_detected() {
    let data = busy_log();
    let export = data.join("audit.jsonl");
    let out = data.ok(&["audit", "export", "--out", export.to_str().unwrap()]);
    assert!(out.contains("exported"), "{out}");
    let public = data.join("audit.pub.pem");
    let check = |lines: &[String]| {
        let file = data.join("t.jsonl");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let out = data.signet(&[
            "audit",
            "verify",
            "--file",
            file.to_str().unwrap(),
            "--public-key",
            public.to_str().unwrap(),
        ]);
        (out.status.success(), text(&out))
    };
    let lines: Vec<String> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(lines.last().unwrap().contains("audit.checkpoint"));
    let (ok, out) = check(&lines);
    assert!(ok, "{out}");

    let mut edited = lines.clone();
    edited[3] = edited[3].replacen("\"outcome\":\"ok\"", "\"outcome\":\"denied\"", 1);
    assert_ne!(edited[3], lines[3]);
    let (ok, out) = check(&edited);
    assert!(!ok && out.contains("broken at seq 4"), "{out}");

    let mut deleted = lines.clone();
    deleted.remove(5);
    let (ok, out) = check(&deleted);
    assert!(!ok && out.contains("broken at seq 6"), "{out}");

    let mut swapped = lines.clone();
    swapped.swap(7, 8);
    let (ok, out) = check(&swapped);
    assert!(!ok && out.contains("broken at seq 8"), "{out}");

    // A copy cut after a record that is not a checkpoint. (A copy cut exactly at one of its
    // checkpoints cannot be told from a shorter export offline: the stored log is checked
    // against the anchor in the token for that.)
    let truncated = lines[..lines.len() - 1].to_vec();
    let (ok, out) = check(&truncated);
    assert!(!ok && out.contains("truncated"), "{out}");

    // The wrong public key fails every checkpoint.
    let other = Data::new();
    std::fs::write(other.join("m"), b"x").unwrap();
    other.ok(&["key", "create", "x", "--spec", "ec-p256"]);
    let pem = other.ok(&["key", "public", "x"]);
    std::fs::write(&public, pem).unwrap();
    let (ok, out) = check(&lines);
    assert!(
        !ok && out.contains("checkpoint signature does not verify"),
        "{out}"
    );
}

#[test]
fn kill_9_under_load_loses_no_answered_signature() {
    let (data, conf) = with_config(25);
    let server = Server::start_in(data, &[("SIGNET_CONFIG", &conf)]);
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "load", "spec": "ec-p256"}));
    let received = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..6)
        .map(|t| {
            let client = server.admin();
            let received = received.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let input = format!("worker {t} item {i}");
                    i += 1;
                    match client.try_post(
                        "/v1/keys/load/sign",
                        &json!({"input": b64(input.as_bytes())}),
                    ) {
                        Ok(r) if r.status == 200 => {
                            received.lock().unwrap().push(sha256_hex(input.as_bytes()))
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let pid = server.child.id();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    let data = server.stop();
    let received = received.lock().unwrap().clone();
    assert!(received.len() > 20, "too little load: {}", received.len());

    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
    let log: Vec<AuditRecord> = signet::audit::read_log(&log_path(&data))
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    let signed: BTreeMap<String, u64> = log
        .iter()
        .filter(|r| r.action == "key.sign" && r.outcome == signet::audit::Outcome::Ok)
        .map(|r| (r.details["input_sha256"].clone(), r.seq))
        .collect();
    let missing: Vec<_> = received
        .iter()
        .filter(|d| !signed.contains_key(*d))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered signatures have no record",
        missing.len(),
        received.len()
    );
}

#[test]
fn the_audit_key_is_locked_in_the_token_and_not_for_clients() {
    let server = Server::start();
    let admin = server.admin();
    let keys = admin.get("/v1/keys").json();
    let names: Vec<&str> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["token-signer"],
        "the audit key must not be a client-visible key"
    );
    let data = server.stop();
    let t = common::embedded_objects(&data, Some("privkey"));
    let block = t
        .split("Private Key Object")
        .find(|b| b.contains("signet:audit:"))
        .unwrap_or_else(|| panic!("no audit key: {t}"));
    assert!(
        block.contains("never extractable") && block.contains("sensitive"),
        "{block}"
    );
    assert!(
        block.contains("Usage:") && block.contains("sign") && !block.contains("decrypt"),
        "{block}"
    );
    // Clients cannot name it: it is not a key record, and its label is not a valid key name.
    let server = Server::start_in(data, &[]);
    let label = block
        .lines()
        .find(|l| l.contains("label:"))
        .unwrap()
        .split("label:")
        .nth(1)
        .unwrap()
        .trim()
        .to_string();
    let reply = server.admin().post(
        &format!("/v1/keys/{label}/sign"),
        &json!({"input": b64(b"forge a checkpoint")}),
    );
    assert_eq!(reply.status, 404, "{reply:?}");
}

#[test]
fn a_signature_whose_record_cannot_be_written_is_not_returned() {
    let server = Server::start();
    let admin = server.admin();
    admin.post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}));
    assert_eq!(
        admin
            .post("/v1/keys/k/sign", &json!({"input": b64(b"before")}))
            .status,
        200
    );
    // Make the open log file refuse writes (immutable), as a full or failing disk would.
    let log = server.data.join("audit/audit.log");
    let chattr = Command::new("chattr").arg("+i").arg(&log).output().unwrap();
    assert!(
        chattr.status.success(),
        "this test needs chattr on an ext4-like file system: {}",
        text(&chattr)
    );
    let refused = admin.post("/v1/keys/k/sign", &json!({"input": b64(b"during")}));
    let single = admin.post(
        "/v1/keys/k/sign-batch",
        &json!({"items": [{"input": b64(b"batch")}]}),
    );
    Command::new("chattr").arg("-i").arg(&log).status().unwrap();
    assert_eq!(refused.status, 503, "{refused:?}");
    let doc = refused.json();
    assert_eq!(doc["type"], "/problems/audit-unavailable");
    assert!(doc.get("signature").is_none() && !refused.body.contains("signature\""));
    assert_eq!(single.status, 503, "{single:?}");
    // Once the log can be written again, service resumes and the chain is intact.
    assert_eq!(
        admin
            .post("/v1/keys/k/sign", &json!({"input": b64(b"after")}))
            .status,
        200
    );
    let data = server.stop();
    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
    let records = signet::audit::read_log(&log_path(&data)).unwrap();
    let signed: Vec<String> = records
        .into_iter()
        .map(|r| r.unwrap())
        .filter(|r| r.action == "key.sign")
        .map(|r| r.details["input_sha256"].clone())
        .collect();
    assert!(signed.contains(&sha256_hex(b"before")) && signed.contains(&sha256_hex(b"after")));
    assert!(!signed.contains(&sha256_hex(b"during")));
}

/// Names of the private keys in a stopped server's embedded token, per pkcs11-tool.
fn token_private_keys(data: &Data) -> Vec<String> {
    common::embedded_objects(data, Some("privkey"))
        .lines()
        .filter_map(|l| l.split("label:").nth(1))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn state_changes_whose_record_cannot_be_written_change_nothing() {
    let server = Server::start();
    let admin = server.admin();
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "base", "spec": "ec-p256"}))
            .status,
        201
    );
    let data = server.stop();
    let keys_before = token_private_keys(&data);
    let certs_before = data.ok(&["cert", "list"]);
    let server = Server::start_in(data, &[]);
    let admin = server.admin();
    let (_, csr) = openssl_csr(
        &server.data.join("clients"),
        "web503",
        &["-addext", "subjectAltName=DNS:web503.local"],
    );

    let log = server.data.join("audit/audit.log");
    let chattr = Command::new("chattr").arg("+i").arg(&log).output().unwrap();
    assert!(chattr.status.success(), "{}", text(&chattr));
    let replies = [
        admin.post("/v1/keys", &json!({"name": "k503", "spec": "ec-p256"})),
        admin.post("/v1/keys/base/rotate", &json!({})),
        admin.post(
            "/v1/principals",
            &json!({"name": "p503", "scopes": ["keys:read"]}),
        ),
        admin.post(
            "/v1/certificates",
            &json!({"csr": csr, "profile": "server", "name": "web503.local"}),
        ),
    ];
    Command::new("chattr").arg("-i").arg(&log).status().unwrap();
    for reply in &replies {
        assert_eq!(reply.status, 503, "{reply:?}");
        assert_eq!(reply.json()["type"], "/problems/audit-unavailable");
    }
    // Nothing changed: not in the store …
    let keys = admin.get("/v1/keys").body;
    assert!(!keys.contains("k503"), "{keys}");
    assert_eq!(admin.get("/v1/keys/base").json()["primary_version"], 1);
    let principals = admin.get("/v1/principals").body;
    assert!(!principals.contains("p503"), "{principals}");
    let data = server.stop();
    assert_eq!(data.ok(&["cert", "list"]), certs_before);
    // … and not in the token.
    assert_eq!(token_private_keys(&data), keys_before);
    let (ok, out) = verify(&data);
    assert!(ok, "{out}");
}
