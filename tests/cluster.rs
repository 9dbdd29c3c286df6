//! Several `signet serve` nodes on one PostgreSQL database and one remote token (p11-kit server
//! over one SoftHSM2 token, each node with its own p11-kit-client.so), all real processes on
//! loopback. A key made on one node signs on the others, a revocation on one bites on the
//! others at the next request, concurrent signing on all of them makes one chain that
//! `signet audit verify` accepts, and crashes end in recovery or a refusal, never in an
//! answered signature missing from the chain; a node cut off from the database refuses while
//! the others go on.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pg::{script, var, with_database};
use common::remote::RemoteToken;
use common::{b64, text, unb64, Client, Data, Server};
use serde_json::json;

/// A PostgreSQL server: the shared test server (`SIGNET_PG_URL`), or one of the test's own
/// (`own`) when the test kills it.
struct Postgres {
    url: String,
    password_file: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl Postgres {
    fn shared() -> Self {
        Postgres {
            url: std::env::var("SIGNET_PG_URL").expect(
                "SIGNET_PG_URL is not set: start PostgreSQL with `eval \"$(scripts/postgres.sh start)\"` (scripts/test.sh does)",
            ),
            password_file: std::env::var("SIGNET_PG_PASSWORD_FILE").unwrap().into(),
            dir: None,
        }
    }

    fn own() -> Self {
        Self::own_in(&std::env::temp_dir())
    }

    /// A server of the test's own with its data under `parent` (a small file system the test
    /// made, say).
    fn own_in(parent: &Path) -> Self {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let env = script("postgres.sh", &["start", dir.path().to_str().unwrap()]);
        Postgres {
            url: var(&env, "SIGNET_PG_URL").into(),
            password_file: var(&env, "SIGNET_PG_PASSWORD_FILE").into(),
            dir: Some(dir),
        }
    }

    fn dir(&self) -> &str {
        self.dir.as_ref().unwrap().path().to_str().unwrap()
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        common::pg::psql(&with_database(&self.url, db), &self.password_file, sql)
    }

    /// A fresh database; its URL.
    fn database(&self, name: &str) -> String {
        let db = format!("{name}_{}", std::process::id());
        self.psql("postgres", &format!("DROP DATABASE IF EXISTS {db}"));
        self.psql("postgres", &format!("CREATE DATABASE {db}"));
        with_database(&self.url, &db)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.dir.is_some() {
            script("postgres.sh", &["stop", self.dir()]);
        }
    }
}

/// One node's configuration: its data directory, the shared token and database.
struct Node {
    name: String,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Node {
    fn new(name: &str, data: &Data, token: &RemoteToken, pg: &Postgres, url: &str) -> Self {
        Self::with_login(name, data, token, url, &pg.password_file)
    }

    /// A node logging in to the database as `url`'s user with the password in `password_file`.
    fn with_login(
        name: &str,
        data: &Data,
        token: &RemoteToken,
        url: &str,
        password_file: &Path,
    ) -> Self {
        let pin = data.join("hsm.pin");
        common::write_secret(&pin, var(&token.env, "SIGNET_P11KIT_PIN"));
        let config = data.join("signet.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n\
                 [hsm]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\npool_size = 1\n\
                 [store]\nkind = \"postgres\"\nurl = \"{url}\"\npassword_file = \"{}\"\nnode = \"{name}\"\ntimeout_ms = 2000\n",
                data.path().display(),
                var(&token.env, "SIGNET_P11KIT_MODULE"),
                var(&token.env, "SIGNET_P11KIT_TOKEN"),
                pin.display(),
                password_file.display(),
            ),
        )
        .unwrap();
        let mut env = vec![
            (
                "P11_KIT_SERVER_ADDRESS".to_string(),
                var(&token.env, "P11_KIT_SERVER_ADDRESS").to_string(),
            ),
            ("SIGNET_CONFIG".to_string(), config.display().to_string()),
        ];
        env.push(("SIGNET_LOG".into(), "warn,cryptoki=off".into()));
        Node {
            name: name.into(),
            config,
            env,
        }
    }

    fn start(&self, data: Data) -> Server {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let log = self.log(&data);
        Server::start_with(data, &env, &[], &[], Some(&log))
    }

    /// Where the node's stderr goes when it runs on `data`.
    fn log(&self, data: &Data) -> PathBuf {
        data.path().parent().unwrap().join(format!(
            "{}-{}.log",
            data.path().file_name().unwrap().to_string_lossy(),
            self.name
        ))
    }

    /// Adds `[audit]` settings to the node's configuration.
    fn audit_settings(&self, settings: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config)
            .unwrap();
        writeln!(file, "[audit]\n{settings}").unwrap();
    }

    fn signet(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(common::BIN);
        cmd.arg("--config").arg(&self.config).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

/// A client presenting `name`'s bundle from the first node's data directory, to `server`.
fn client_of(first: &Server, name: &str, server: &Server) -> Client {
    let clients = first.data.join("clients");
    Client::new(
        &first.data.join("ca/root.pem"),
        Some((
            &clients.join(format!("{name}.crt.pem")),
            &clients.join(format!("{name}.key.pem")),
        )),
        server,
    )
}

fn serial_of(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    text(&out)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

fn sign(client: &Client, key: &str, msg: &[u8]) -> common::Reply {
    client.post(
        &format!("/v1/keys/{key}/sign"),
        &json!({"input": b64(msg), "input_type": "message"}),
    )
}

/// openssl's verdict on an ES256 signature (DER) over `msg` by the key `pem`.
fn openssl_verifies(dir: &Path, pem: &str, msg: &[u8], sig: &[u8]) -> bool {
    std::fs::write(dir.join("pub.pem"), pem).unwrap();
    std::fs::write(dir.join("msg"), msg).unwrap();
    std::fs::write(dir.join("sig"), sig).unwrap();
    common::openssl(
        dir,
        &[
            "dgst",
            "-sha256",
            "-verify",
            "pub.pem",
            "-signature",
            "sig",
            "msg",
        ],
    )
    .status
    .success()
}

/// `key.sign` records with outcome ok, per node, from the database.
fn signed_records(pg: &Postgres, db: &str) -> u64 {
    pg.psql(
        db,
        "SELECT count(*) FROM signet_audit WHERE line::json->>'action' = 'key.sign' AND line::json->>'outcome' = 'ok'",
    )
    .parse()
    .unwrap()
}

fn db_name(url: &str) -> &str {
    url.rsplit_once('/').unwrap().1
}

#[test]
fn three_nodes_share_keys_revocations_and_one_chain() {
    let pg = Postgres::shared();
    let url = pg.database("cluster");
    let token = RemoteToken::start();
    let (da, db, dc) = (Data::new(), Data::new(), Data::new());
    let nodes: Vec<Node> = [("a", &da), ("b", &db), ("c", &dc)]
        .iter()
        .map(|(n, d)| Node::new(n, d, &token, &pg, &url))
        .collect();
    // Staggered: the first makes the CA, the token key and the audit key; the others find them.
    let a = nodes[0].start(da);
    let b = nodes[1].start(db);
    let c = nodes[2].start(dc);
    // Nodes that did not make the CA have its public files, and their start-up hint does not
    // name an admin bundle they do not have.
    for node in [&b, &c] {
        assert!(node.data.join("ca/root.pem").exists());
        assert!(!node.data.join("clients/admin.crt.pem").exists());
        assert!(
            !node.stdout.iter().any(|l| l.contains("try: curl")),
            "{:?}",
            node.stdout
        );
        assert!(
            node.stdout
                .iter()
                .any(|l| l.contains("where the CA was made")),
            "{:?}",
            node.stdout
        );
    }
    assert!(
        a.stdout
            .iter()
            .any(|l| l.contains("first start: CA created")),
        "{:?}",
        a.stdout
    );
    assert!(
        !b.stdout.iter().any(|l| l.contains("CA created")),
        "{:?}",
        b.stdout
    );
    let admins = [
        a.admin(),
        client_of(&a, "admin", &b),
        client_of(&a, "admin", &c),
    ];

    // A key made on A signs on B and C; openssl verifies with the public key A returned.
    let created = admins[0].post("/v1/keys", &json!({"name": "shared", "spec": "ec-p256"}));
    assert_eq!(created.status, 201, "{created:?}");
    let pem = created.json()["versions"][0]["public_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    let tmp = tempfile::tempdir().unwrap();
    for (i, admin) in admins.iter().enumerate().skip(1) {
        let msg = format!("signed on node {i}");
        let reply = sign(admin, "shared", msg.as_bytes());
        assert_eq!(reply.status, 200, "node {i}: {reply:?}");
        let sig = unb64(reply.json()["signature"].as_str().unwrap());
        assert!(
            openssl_verifies(tmp.path(), &pem, msg.as_bytes(), &sig),
            "node {i}"
        );
    }

    // A client certificate revoked on A is refused on B and C at their next request, on the
    // connections they already hold.
    common::enrol_principal(&a, &admins[0], "svc", &["keys:sign:*"]);
    let svc: Vec<Client> = [&a, &b, &c]
        .iter()
        .map(|s| client_of(&a, "svc", s))
        .collect();
    for (i, client) in svc.iter().enumerate() {
        assert_eq!(sign(client, "shared", b"before").status, 200, "node {i}");
    }
    let serial = serial_of(&a.data.join("clients/svc.crt.pem"));
    let revoked = admins[0].post(
        &format!("/v1/certificates/{serial}/revoke"),
        &json!({"reason": "keyCompromise"}),
    );
    assert_eq!(revoked.status, 200, "{revoked:?}");
    for (i, client) in svc.iter().enumerate() {
        match client.try_post(
            "/v1/keys/shared/sign",
            &json!({"input": b64(b"after"), "input_type": "message"}),
        ) {
            Ok(reply) => assert_eq!(reply.status, 401, "node {i}: {reply:?}"),
            // A new connection is refused at the handshake instead.
            Err(e) => assert!(
                e.contains("certificate") || e.contains("alert"),
                "node {i}: {e}"
            ),
        }
    }
    // B and C had svc's records in their caches (its signatures there read them): each ran
    // the refused request on them first, found in its audit transaction that the certificate
    // had changed, wrote that run's record as discarded and answered from fresh reads.
    let discarded_on = |principal: &str| {
        pg.psql(
            db_name(&url),
            &format!(
                "SELECT string_agg(DISTINCT node, ',' ORDER BY node) FROM signet_audit \
                 WHERE line::json->'details'->>'discarded' IS NOT NULL \
                 AND line::json->>'principal' = '{principal}' AND line::json->>'outcome' = 'error'"
            ),
        )
    };
    let svc_discards = discarded_on("svc");
    assert!(
        svc_discards.contains('b') && svc_discards.contains('c'),
        "{svc_discards:?}"
    );

    // Scopes taken away on A bite on B's next request, cached or not.
    common::enrol_principal(&a, &admins[0], "ops", &["keys:sign:*"]);
    let ops = client_of(&a, "ops", &b);
    for _ in 0..2 {
        assert_eq!(sign(&ops, "shared", b"allowed").status, 200);
    }
    let demoted = admins[0].post(
        "/v1/principals",
        &json!({"name": "ops", "scopes": ["keys:read"]}),
    );
    assert!(demoted.status < 300, "{demoted:?}");
    let refused = sign(&ops, "shared", b"not any more");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(discarded_on("ops"), "b");

    // Concurrent signing on all three: every answered signature is in one chain.
    let answered = std::sync::atomic::AtomicU64::new(0);
    let before = signed_records(&pg, db_name(&url));
    std::thread::scope(|s| {
        for (i, server) in [&a, &b, &c].iter().enumerate() {
            for t in 0..3 {
                let client = client_of(&a, "admin", server);
                let answered = &answered;
                s.spawn(move || {
                    for n in 0..40 {
                        let reply = sign(&client, "shared", format!("{i}-{t}-{n}").as_bytes());
                        assert_eq!(reply.status, 200, "{reply:?}");
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                });
            }
        }
    });
    let answered = answered.into_inner();
    assert_eq!(answered, 360);
    assert_eq!(signed_records(&pg, db_name(&url)) - before, answered);
    let per_node = pg.psql(
        db_name(&url),
        "SELECT string_agg(node || '=' || n, ',' ORDER BY node) FROM (SELECT node, count(*) n FROM signet_audit WHERE line::json->>'action' = 'key.sign' GROUP BY node) t",
    );
    assert!(
        per_node.contains("a=") && per_node.contains("b=") && per_node.contains("c="),
        "{per_node}"
    );
    let gaps = pg.psql(
        db_name(&url),
        "SELECT count(*) FROM signet_audit a LEFT JOIN signet_audit b ON b.seq = a.seq - 1 WHERE a.seq > 1 AND (b.seq IS NULL OR a.line::json->>'prev_hash' <> b.hash)",
    );
    assert_eq!(gaps, "0");

    // Certificates revoked at the same time on A and on B are all in the CRL C serves: CRL
    // builds take turns across nodes, so the last one stored missed none.
    let mut serials = Vec::new();
    for i in 0..8 {
        let (_, csr) = common::openssl_csr(tmp.path(), &format!("crl-{i}"), &[]);
        let doc = admins[0]
            .post(
                "/v1/certificates",
                &json!({"csr": csr, "profile": "client", "name": "svc"}),
            )
            .json();
        serials.push(doc["serial"].as_str().unwrap().to_string());
    }
    std::thread::scope(|s| {
        for (i, serial) in serials.iter().enumerate() {
            let admin = &admins[i % 2];
            s.spawn(move || {
                let reply = admin.post(&format!("/v1/certificates/{serial}/revoke"), &json!({}));
                assert_eq!(reply.status, 200, "{reply:?}");
            });
        }
    });
    let crl = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "-H",
            "Accept: application/x-pem-file",
            "--cacert",
        ])
        .arg(a.data.join("ca/root.pem"))
        .arg("--cert")
        .arg(a.data.join("clients/admin.crt.pem"))
        .arg("--key")
        .arg(a.data.join("clients/admin.key.pem"))
        .arg(c.url("/v1/ca/crl"))
        .output()
        .unwrap();
    assert!(crl.status.success(), "{}", text(&crl));
    std::fs::write(tmp.path().join("crl.pem"), &crl.stdout).unwrap();
    let listed = common::openssl(tmp.path(), &["crl", "-in", "crl.pem", "-noout", "-text"]);
    let listed = text(&listed).to_lowercase().replace(':', "");
    for serial in &serials {
        assert!(
            listed.contains(serial.as_str()),
            "{serial} missing from the CRL:\n{listed}"
        );
    }

    // Scheduling the key for deletion on B stops its use on A and C at once.
    let deleted = admins[1].post(
        "/v1/keys/shared/schedule-deletion",
        &json!({"pending_days": 1}),
    );
    assert_eq!(deleted.status, 202, "{deleted:?}");
    for (i, admin) in admins.iter().enumerate() {
        let reply = sign(admin, "shared", b"after deletion");
        assert!(matches!(reply.status, 404 | 409), "node {i}: {reply:?}");
    }
    // A and C had the key's record cached from the signing above; B changed it and forgot its
    // own copy.
    let admin_discards = discarded_on("admin");
    assert!(
        admin_discards.contains('a')
            && admin_discards.contains('c')
            && !admin_discards.contains('b'),
        "{admin_discards:?}"
    );

    let stopped: Vec<Data> = [a, b, c].into_iter().map(|s| s.stop()).collect();
    let verify = nodes[1].signet(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
    let report = text(&verify);
    assert!(report.contains("audit log OK"), "{report}");
    // Export from another node's configuration: the whole chain as the database held it (the
    // export's own records come after it).
    let before: usize = pg
        .psql(db_name(&url), "SELECT count(*) FROM signet_audit")
        .parse()
        .unwrap();
    let out = tmp.path().join("audit.jsonl");
    let export = nodes[2].signet(&["audit", "export", "--out", out.to_str().unwrap()]);
    assert!(export.status.success(), "{}", text(&export));
    let seqs: Vec<u64> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        seqs.len() >= before,
        "{} exported, {before} before",
        seqs.len()
    );
    assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u64 + 1));
    drop(stopped);
}

#[test]
fn crashes_end_in_recovery_or_refusal() {
    // A PostgreSQL server of this test's own: it is killed.
    let pg = Postgres::own();
    let url = pg.database("crash");
    let token = RemoteToken::start();
    let (da, db) = (Data::new(), Data::new());
    let na = Node::new("a", &da, &token, &pg, &url);
    let nb = Node::new("b", &db, &token, &pg, &url);
    let a = na.start(da);
    let mut b = nb.start(db);
    let admin_a = a.admin();
    assert_eq!(
        admin_a
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    let mut answered = 0u64;
    let mut sign_ok = |client: &Client, what: &str| {
        let reply = sign(client, "k", what.as_bytes());
        if reply.status == 200 {
            answered += 1;
        }
        reply
    };

    // kill -9 of a node: the other goes on; the node restarted serves again and records that
    // its last run did not stop.
    assert_eq!(sign_ok(&client_of(&a, "admin", &b), "b1").status, 200);
    let _ = b.child.kill();
    let _ = b.child.wait();
    assert_eq!(sign_ok(&admin_a, "a1").status, 200);
    let data_b = std::mem::replace(&mut b.data, Data::new());
    drop(b);
    let b = nb.start(data_b);
    let admin_b = client_of(&a, "admin", &b);
    assert_eq!(sign_ok(&admin_b, "b2").status, 200);

    // kill -9 of PostgreSQL: no node answers a signature it cannot record, and neither says
    // it is ready; once the database is back both serve again by themselves.
    script("postgres.sh", &["kill", pg.dir()]);
    let cut = Instant::now();
    for (name, client) in [("a", &admin_a), ("b", &admin_b)] {
        let reply = sign_ok(client, "during outage");
        assert_eq!(reply.status, 503, "node {name}: {reply:?}");
        let ready = client.get("/readyz");
        assert_eq!(ready.status, 503, "node {name}: {ready:?}");
    }
    let refused_within = cut.elapsed();
    script("postgres.sh", &["start", pg.dir()]);
    for (name, client) in [("a", &admin_a), ("b", &admin_b)] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let reply = sign_ok(client, "after outage");
            if reply.status == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {name} did not recover: {reply:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    assert!(
        refused_within < Duration::from_secs(20),
        "{refused_within:?}"
    );

    // kill -9 of every remote-token child (each node's network HSM connection).
    let children = token.kill_connections();
    assert!(
        children.len() >= 2,
        "one p11-kit child per node: {children:?}"
    );
    for (name, client) in [("a", &admin_a), ("b", &admin_b)] {
        // The backend finds its sessions gone, initialises the module again (the client
        // reconnects to the server) and signs: the request itself succeeds.
        let reply = sign_ok(client, "after the token connection died");
        assert_eq!(reply.status, 200, "node {name}: {reply:?}");
    }

    let a_data = a.stop();
    let b_data = b.stop();
    let verify = na.signet(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
    // Every answered signature is in the chain (a refused batch may have left a record of a
    // signature that was never answered, never the other way round).
    let recovered = pg.psql(
        db_name(&url),
        "SELECT count(*) FROM signet_audit WHERE node = 'b' AND line::json->>'action' = 'service.recovered'",
    );
    assert_eq!(
        recovered, "1",
        "node b's restart after kill -9 is recorded once"
    );
    let recorded = signed_records(&pg, db_name(&url));
    assert!(
        recorded >= answered,
        "{recorded} recorded, {answered} answered"
    );
    drop((a_data, b_data));
}

#[test]
fn a_node_cut_off_from_the_database_stops_serving_while_the_others_go_on() {
    let pg = Postgres::shared();
    let url = pg.database("cutoff");
    let db = db_name(&url).to_string();
    // Node b logs in as a role of its own, which the test then locks out (and its sessions
    // ended): b alone is cut off from the database, as a network partition would leave it.
    let role = format!("node_b_{}", std::process::id());
    let secret = Data::new();
    let password_file = secret.join("password");
    common::write_secret(&password_file, "b-password\n");
    pg.psql(&db, &format!("DROP ROLE IF EXISTS {role}"));
    pg.psql(
        &db,
        &format!("CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'b-password'"),
    );
    let token = RemoteToken::start();
    let (da, dbb) = (Data::new(), Data::new());
    let na = Node::new("a", &da, &token, &pg, &url);
    let url_b = url.replacen("signet@", &format!("{role}@"), 1);
    let nb = Node::with_login("b", &dbb, &token, &url_b, &password_file);
    let a = na.start(da);
    let b = nb.start(dbb);
    let (admin_a, admin_b) = (a.admin(), client_of(&a, "admin", &b));
    assert_eq!(
        admin_a
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    assert_eq!(sign(&admin_b, "k", b"before").status, 200);

    pg.psql(&db, &format!("ALTER ROLE {role} NOLOGIN"));
    pg.psql(
        &db,
        &format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{role}'"),
    );
    let cut = Instant::now();
    let reply = sign(&admin_b, "k", b"while cut off");
    assert_eq!(reply.status, 503, "{reply:?}");
    // Its records cannot be read or (served from its cache) its audit record written.
    assert!(
        reply.body.contains("metadata store") || reply.body.contains("audit"),
        "{}",
        reply.body
    );
    assert_eq!(admin_b.get("/readyz").status, 503);
    // Refused within the store deadline (timeout_ms = 2000) and a second for the pool.
    assert!(
        cut.elapsed() < Duration::from_secs(5),
        "{:?}",
        cut.elapsed()
    );
    assert_eq!(sign(&admin_a, "k", b"a goes on").status, 200);

    pg.psql(&db, &format!("ALTER ROLE {role} LOGIN"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = sign(&admin_b, "k", b"back");
        if reply.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "b did not come back: {reply:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop((a, b));
    pg.psql(&db, &format!("DROP OWNED BY {role}"));
    pg.psql(&db, &format!("DROP ROLE {role}"));
}

/// A primary of the test's own and a streaming standby of it made with pg_basebackup
/// (`scripts/postgres.sh standby`), with one database; the nodes' URL lists both, and
/// `target_session_attrs=read-write` makes them follow the primary.
struct Replicated {
    primary: Postgres,
    standby_dir: tempfile::TempDir,
    standby_port: String,
    url: String,
    db: String,
}

impl Replicated {
    fn new(name: &str, mode: &str) -> Self {
        let primary = Postgres::own();
        let db_url = primary.database(name);
        let db = db_name(&db_url).to_string();
        let standby_dir = tempfile::tempdir().unwrap();
        let dir = standby_dir.path().join("pg");
        let env = script(
            "postgres.sh",
            &["standby", primary.dir(), dir.to_str().unwrap(), mode],
        );
        let standby_url = var(&env, "SIGNET_PG_URL").to_string();
        let standby_port = standby_url
            .rsplit_once(':')
            .unwrap()
            .1
            .split('/')
            .next()
            .unwrap()
            .to_string();
        let primary_port = std::fs::read_to_string(Path::new(primary.dir()).join("port"))
            .unwrap()
            .trim()
            .to_string();
        let url = format!(
            "postgresql://signet@127.0.0.1:{primary_port},127.0.0.1:{standby_port}/{db}?target_session_attrs=read-write"
        );
        Replicated {
            primary,
            standby_dir,
            standby_port,
            url,
            db,
        }
    }

    fn standby(&self) -> String {
        self.standby_dir.path().join("pg").display().to_string()
    }

    /// psql on the standby (or the new primary once promoted).
    fn psql_standby(&self, sql: &str) -> String {
        common::pg::psql(
            &format!(
                "postgresql://signet@127.0.0.1:{}/{}",
                self.standby_port, self.db
            ),
            &self.primary.password_file,
            sql,
        )
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        script("postgres.sh", &["stop", &self.standby()]);
    }
}

/// Signs from every client in threads until `stop`; each answer's (input, status).
fn load(clients: &[Client], stop: &std::sync::atomic::AtomicBool) -> Vec<(String, u16)> {
    use std::sync::atomic::Ordering;
    std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(i, client)| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let input = format!("load-{i}-{n}");
                        n += 1;
                        let status = match client
                            .try_post("/v1/keys/k/sign", &json!({"input": b64(input.as_bytes())}))
                        {
                            Ok(reply) => reply.status,
                            Err(_) => 0,
                        };
                        out.push((input, status));
                        if status != 200 {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// SHA-256 hex of the inputs signed (`key.sign`, outcome ok) in a database's chain.
fn signed_inputs(psql: impl Fn(&str) -> String) -> std::collections::HashSet<String> {
    psql("SELECT line::json->'details'->>'input_sha256' FROM signet_audit WHERE line::json->>'action' = 'key.sign' AND line::json->>'outcome' = 'ok'")
        .lines()
        .map(str::to_string)
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `load` on `clients` while `during` runs (after `warmup`), and for `after` more.
fn under_load(
    clients: &[Client],
    warmup: Duration,
    during: impl FnOnce(),
    after: Duration,
) -> Vec<(String, u16)> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let worker = s.spawn(|| load(clients, &stop));
        std::thread::sleep(warmup);
        during();
        std::thread::sleep(after);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        worker.join().unwrap()
    })
}

/// Two nodes, a primary and a synchronous standby: the primary killed under a signing load
/// and the standby promoted, the nodes follow it, no answered signature is missing from its
/// chain, and the chain verifies — nothing is fenced.
#[test]
fn a_failover_to_a_synchronous_standby_loses_no_answered_signature() {
    let pg = Replicated::new("syncfo", "sync");
    let token = RemoteToken::start();
    let (da, db) = (Data::new(), Data::new());
    let na = Node::new("a", &da, &token, &pg.primary, &pg.url);
    let nb = Node::new("b", &db, &token, &pg.primary, &pg.url);
    let a = na.start(da);
    let b = nb.start(db);
    assert_eq!(
        a.admin()
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    let clients = vec![
        client_of(&a, "admin", &a),
        client_of(&a, "admin", &a),
        client_of(&a, "admin", &b),
        client_of(&a, "admin", &b),
    ];
    let answers = under_load(
        &clients,
        Duration::from_millis(1500),
        || {
            script("postgres.sh", &["kill", pg.primary.dir()]);
            script("postgres.sh", &["promote", &pg.standby()]);
        },
        Duration::from_secs(5),
    );
    let answered: Vec<&String> = answers
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(i, _)| i)
        .collect();
    assert!(answered.len() > 20, "{} answered", answered.len());
    // Signatures were answered after the failover too.
    let late = answers
        .iter()
        .rev()
        .take(8)
        .filter(|(_, s)| *s == 200)
        .count();
    assert!(
        late > 0,
        "nothing answered after the failover: {:?}",
        &answers[answers.len() - 8..]
    );
    let chain = signed_inputs(|sql| pg.psql_standby(sql));
    let missing: Vec<_> = answered
        .iter()
        .filter(|i| !chain.contains(&sha256_hex(i.as_bytes())))
        .collect();
    assert!(
        missing.is_empty(),
        "answered but not in the new primary's chain: {missing:?}"
    );
    for node in [&a, &b] {
        assert_eq!(client_of(&a, "admin", node).get("/readyz").status, 200);
    }
    let kept = (a.stop(), b.stop());
    let verify = na.signet(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
    drop(kept);
}

/// An asynchronous standby that had fallen behind is promoted: the answered signatures it
/// lacks make the nodes stop writing (503, /readyz 503), `audit verify` and a new node's start
/// refuse, until `audit reanchor` records the loss; then the nodes resume by themselves. The
/// old primary coming back is fenced too: no answered signature lands on its abandoned chain.
#[test]
fn a_failover_to_a_lagging_standby_is_refused_until_reanchored_and_an_old_primary_is_fenced() {
    let pg = Replicated::new("asyncfo", "async");
    let token = RemoteToken::start();
    let (da, db, dq) = (Data::new(), Data::new(), Data::new());
    let na = Node::new("a", &da, &token, &pg.primary, &pg.url);
    let nb = Node::new("b", &db, &token, &pg.primary, &pg.url);
    // A third node that stays quiet through the failover: after the reanchor it follows the
    // re-anchored chain instead of fencing it anew.
    let nq = Node::new("q", &dq, &token, &pg.primary, &pg.url);
    let a = na.start(da);
    let b = nb.start(db);
    let q = nq.start(dq);
    let admin_a = client_of(&a, "admin", &a);
    let admin_b = client_of(&a, "admin", &b);
    let admin_q = client_of(&a, "admin", &q);
    assert_eq!(
        admin_a
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    // Let the standby catch up, then hold the primary's WAL sender: what follows is committed
    // on the primary only.
    std::thread::sleep(Duration::from_millis(1500));
    script("postgres.sh", &["pause-replication", pg.primary.dir()]);
    let mut lost_answered = Vec::new();
    for n in 0..10 {
        let input = format!("primary-only-{n}");
        for client in [&admin_a, &admin_b] {
            if sign(client, "k", input.as_bytes()).status == 200 {
                lost_answered.push(input.clone());
            }
        }
    }
    assert!(!lost_answered.is_empty());
    // Node b then goes quiet long enough to checkpoint everything it wrote (its background
    // thread has nothing left to do), so the failover reaches it through a lone request,
    // which appends (and finds the chain broken) on the request's own thread; node a keeps
    // records uncovered, so its background thread meets the failover too.
    std::thread::sleep(Duration::from_secs(2));
    let input = "primary-only-a".to_string();
    if sign(&admin_a, "k", input.as_bytes()).status == 200 {
        lost_answered.push(input);
    }
    script("postgres.sh", &["kill", pg.primary.dir()]);
    script("postgres.sh", &["promote", &pg.standby()]);
    let chain = signed_inputs(|sql| pg.psql_standby(sql));
    assert!(
        lost_answered
            .iter()
            .any(|i| !chain.contains(&sha256_hex(i.as_bytes()))),
        "the standby had everything: no loss to detect"
    );

    // Within seconds both nodes refuse to sign and say they are not ready.
    let started = Instant::now();
    loop {
        let refused = [&admin_a, &admin_b].iter().all(|c| {
            sign(c, "k", b"after failover").status == 503 && c.get("/readyz").status == 503
        });
        if refused {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the nodes still write after losing answered records"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Fenced and idle, a node looks at the anchor once a second: it does not spin. (It woke
    // every millisecond: about 2,000 voluntary context switches over these two seconds; about
    // 100 now, from its other threads.)
    let switches = |server: &Server| common::proc::voluntary_switches(server.child.id());
    let before = switches(&a);
    std::thread::sleep(Duration::from_secs(2));
    let fenced_switches = switches(&a) - before;
    assert!(
        fenced_switches < 500,
        "{fenced_switches} voluntary context switches in 2 s, fenced and idle"
    );
    // Nothing signed after the failover is in the new chain... and nothing answered is lost
    // silently: verify and a new node refuse.
    let verify = na.signet(&["audit", "verify"]);
    assert!(!verify.status.success(), "{}", text(&verify));
    let dc = Data::new();
    let nc = Node::new("c", &dc, &token, &pg.primary, &pg.url);
    let start = nc.signet(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!start.status.success(), "{}", text(&start));
    assert!(text(&start).contains("reanchor"), "{}", text(&start));

    // The operator records the loss; the nodes resume by themselves.
    let out = na.signet(&["audit", "reanchor"]);
    assert!(out.status.success(), "{}", text(&out));
    let reanchor = pg.psql_standby(
        "SELECT line FROM signet_audit WHERE line::json->>'action' = 'audit.reanchor'",
    );
    assert!(
        reanchor.contains("lost") || reanchor.contains("diverged"),
        "{reanchor}"
    );
    // Each node looks at the anchor again every second while fenced (longer when the host is
    // busy: one CI run took more than 15 s, so the limit is 30 s, and a failure says what each
    // node answers).
    let started = Instant::now();
    loop {
        let answers = [&admin_a, &admin_b].map(|c| sign(c, "k", b"resumed"));
        if answers.iter().all(|r| r.status == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the nodes did not resume: {answers:?}; a: {}; b: {}",
            admin_a.get("/v1/status").json()["audit"],
            admin_b.get("/v1/status").json()["audit"]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(sign(&admin_q, "k", b"quiet node").status, 200);
    let verify = na.signet(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));

    // The old primary comes back on its port; the nodes' connections to the new one are cut,
    // so they reconnect to the first read-write host in their list: the old primary.
    let env = script("postgres.sh", &["start", pg.primary.dir()]);
    drop(env);
    pg.psql_standby(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'signet' AND pid <> pg_backend_pid()",
    );
    let mut answered_after = Vec::new();
    for n in 0..30 {
        let input = format!("old-primary-{n}");
        for client in [&admin_a, &admin_b] {
            if sign(client, "k", input.as_bytes()).status == 200 {
                answered_after.push(input.clone());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let old_chain = signed_inputs(|sql| pg.primary.psql(&pg.db, sql));
    let on_old: Vec<_> = answered_after
        .iter()
        .filter(|i| old_chain.contains(&sha256_hex(i.as_bytes())))
        .collect();
    assert!(
        on_old.is_empty(),
        "answered on the abandoned chain: {on_old:?}"
    );
    drop((a.stop(), b.stop()));
}

/// Two `ca init` at once on one database, three times over, and a `ca init` racing a first
/// `serve`: exactly one CA each time; the loser exits non-zero, says why, and leaves nothing
/// of its own (no key in the token, no bundle that does not work).
#[test]
fn concurrent_bootstraps_make_exactly_one_ca() {
    let pg = Postgres::shared();
    let token = RemoteToken::start();
    for round in 0..3 {
        let url = pg.database(&format!("boot{round}"));
        let (da, db) = (Data::new(), Data::new());
        let na = Node::new("a", &da, &token, &pg, &url);
        let nb = Node::new("b", &db, &token, &pg, &url);
        let (oa, ob) = std::thread::scope(|s| {
            let ta = s.spawn(|| na.signet(&["ca", "init"]));
            let tb = s.spawn(|| nb.signet(&["ca", "init"]));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let wins = [oa.status.success(), ob.status.success()];
        assert_eq!(
            wins.iter().filter(|w| **w).count(),
            1,
            "round {round}: a: {}\nb: {}",
            text(&oa),
            text(&ob)
        );
        let (winner, loser, winner_data) = if wins[0] {
            (&oa, &ob, &da)
        } else {
            (&ob, &oa, &db)
        };
        assert!(text(loser).contains("already exists"), "{}", text(loser));
        let roots = pg.psql(
            db_name(&url),
            "SELECT count(*) FROM signet_records WHERE kind = 'meta' AND key = 'ca'",
        );
        assert_eq!(roots, "1", "{}", text(winner));
        // The winner's admin bundle is the one that works.
        let ca_serial = pg.psql(
            db_name(&url),
            "SELECT value::json->'root'->>'serial' FROM signet_records WHERE kind = 'meta' AND key = 'ca'",
        );
        let root_pem = std::fs::read_to_string(winner_data.join("ca/root.pem")).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("root.pem"), &root_pem).unwrap();
        assert_eq!(serial_of(&tmp.path().join("root.pem")), ca_serial);
    }

    // `ca init` racing a first `serve`: one CA, and the server it answers on is that CA's.
    let url = pg.database("bootserve");
    let (da, db) = (Data::new(), Data::new());
    let na = Node::new("a", &da, &token, &pg, &url);
    let nb = Node::new("b", &db, &token, &pg, &url);
    let (server, init) = std::thread::scope(|s| {
        let init = s.spawn(|| nb.signet(&["ca", "init"]));
        let server = na.start(da);
        (server, init.join().unwrap())
    });
    let roots = pg.psql(
        db_name(&url),
        "SELECT count(*) FROM signet_records WHERE kind = 'meta' AND key = 'ca'",
    );
    assert_eq!(roots, "1");
    // Whoever made the CA holds the admin bundle that the server accepts.
    let bundle_dir = if init.status.success() {
        db.path().to_path_buf()
    } else {
        assert!(text(&init).contains("already exists"), "{}", text(&init));
        server.data.path().to_path_buf()
    };
    let client = Client::new(
        &bundle_dir.join("ca/root.pem"),
        Some((
            &bundle_dir.join("clients/admin.crt.pem"),
            &bundle_dir.join("clients/admin.key.pem"),
        )),
        &server,
    );
    assert_eq!(client.get("/v1/keys").status, 200);
    drop(server.stop());
}

/// The HSM service restarting (the p11-kit server and every connection killed, then started
/// again; the client's slots are renumbered): a node that called it meanwhile serves again
/// within seconds, signatures and new TLS handshakes alike, without a restart of its own; and
/// again after the service came back without the token for a while.
#[test]
fn a_restarted_hsm_service_is_followed_without_a_node_restart() {
    let pg = Postgres::shared();
    let url = pg.database("hsmrestart");
    let token = RemoteToken::start();
    let da = Data::new();
    let na = Node::new("a", &da, &token, &pg, &url);
    let a = na.start(da);
    let admin = a.admin();
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    assert_eq!(sign(&admin, "k", b"before").status, 200);
    // Down for three seconds, with the node calling it meanwhile.
    let mut away = Vec::new();
    std::thread::scope(|s| {
        let restart = s.spawn(|| token.restart(Duration::from_secs(3)));
        while !restart.is_finished() {
            away.push(sign(&admin, "k", b"while away").status);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(away.contains(&503), "{away:?}");
    let started = Instant::now();
    loop {
        let fresh = client_of(&a, "admin", &a);
        let ok = fresh
            .try_post("/v1/keys/k/sign", &json!({"input": b64(b"after")}))
            .is_ok_and(|r| r.status == 200);
        if ok {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the node did not recover after the HSM service restarted"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let took = started.elapsed();
    // A new connection's handshake (the server key is in the token) and the old connection.
    assert_eq!(client_of(&a, "admin", &a).get("/readyz").status, 200);
    assert_eq!(sign(&admin, "k", b"old connection").status, 200);
    eprintln!("recovered {took:?} after the HSM service restarted");

    // The service comes back without the token for a while (a partition not there yet): the
    // node answers 503 meanwhile and serves again once the token is back. (With cryptoki's
    // slot listing, finding the token again spun for ever on p11-kit's empty list.)
    token.restart_exporting(Duration::ZERO, "pkcs11:token=elsewhere");
    let tokenless = Instant::now();
    let mut away = Vec::new();
    while tokenless.elapsed() < Duration::from_secs(3) {
        away.push(sign(&admin, "k", b"no token").status);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(away.contains(&503), "{away:?}");
    token.restart_exporting(Duration::ZERO, "pkcs11:token=remote");
    let started = Instant::now();
    while sign(&admin, "k", b"token back").status != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the node did not recover once the token was back"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!(
        "recovered {:?} after the token came back",
        started.elapsed()
    );
    drop(a.stop());
}

/// Lines of a node's log that report a failed checkpoint, or one not anchored.
fn failed_checkpoints(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("audit checkpoint failed")
                || l.contains("could not anchor the audit checkpoint")
        })
        .map(str::to_string)
        .collect()
}

/// Three nodes checkpointing every few records under a steady signing load on all of them:
/// they take turns moving the anchor in the shared token, so no checkpoint fails (nodes used
/// to destroy each other's anchor objects: "C_DestroyObject failed:
/// CKR_OBJECT_HANDLE_INVALID" on 6% of checkpoints), and the chain verifies.
#[test]
fn busy_nodes_take_turns_moving_the_anchor_and_no_checkpoint_fails() {
    let pg = Postgres::shared();
    let url = pg.database("anchorturns");
    let token = RemoteToken::start();
    let (da, db, dc) = (Data::new(), Data::new(), Data::new());
    let nodes: Vec<Node> = [("a", &da), ("b", &db), ("c", &dc)]
        .iter()
        .map(|(n, d)| Node::new(n, d, &token, &pg, &url))
        .collect();
    for node in &nodes {
        node.audit_settings("checkpoint_every = 4");
    }
    let logs: Vec<PathBuf> = nodes
        .iter()
        .zip([&da, &db, &dc])
        .map(|(n, d)| n.log(d))
        .collect();
    let a = nodes[0].start(da);
    let b = nodes[1].start(db);
    let c = nodes[2].start(dc);
    assert_eq!(
        a.admin()
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    let clients: Vec<Client> = [&a, &a, &b, &b, &c, &c]
        .iter()
        .map(|node| client_of(&a, "admin", node))
        .collect();
    // Bursts, each followed by a quiet spell in which every node's records end up covered by
    // an anchored checkpoint (whichever node's checkpoint came last, and whether or not it
    // found another node anchoring).
    let mut answered = 0;
    for _ in 0..4 {
        let answers = under_load(&clients, Duration::from_millis(1500), || {}, Duration::ZERO);
        answered += answers.iter().filter(|(_, s)| *s == 200).count();
        for node in [&a, &b, &c] {
            client_of(&a, "admin", node).wait_anchored();
        }
    }
    assert!(answered > 100, "{answered} answered");
    let checkpoints: u64 = pg
        .psql(
            db_name(&url),
            "SELECT count(*) FROM signet_audit WHERE line::json->>'action' = 'audit.checkpoint'",
        )
        .parse()
        .unwrap();
    assert!(checkpoints >= 10, "{checkpoints} checkpoints");
    eprintln!("{answered} signatures, {checkpoints} checkpoints on three nodes");
    for (node, log) in ["a", "b", "c"].iter().zip(&logs) {
        let failed = failed_checkpoints(log);
        assert!(
            failed.is_empty(),
            "node {node}: {} of {checkpoints} checkpoints failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(3)]
        );
    }
    let kept = (a.stop(), b.stop(), c.stop());
    let verify = nodes[0].signet(&["audit", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify));
    drop(kept);
}

/// A checkpoint that keeps failing (the HSM service gone while requests go on being recorded,
/// so the count trigger stays true) is retried after a growing pause, not in a loop: the
/// count trigger used to make it about 1,300 attempts (and ERROR lines) a second. Once the
/// token is back, a checkpoint covers the log again.
#[test]
fn a_failing_checkpoint_backs_off_whatever_triggered_it() {
    let pg = Postgres::shared();
    let url = pg.database("backoff");
    let token = RemoteToken::start();
    let da = Data::new();
    let na = Node::new("a", &da, &token, &pg, &url);
    na.audit_settings("checkpoint_every = 4");
    let log = na.log(&da);
    let a = na.start(da);
    let admin = a.admin();
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    admin.wait_anchored();
    let before = failed_checkpoints(&log).len();
    let records = || -> u64 {
        pg.psql(db_name(&url), "SELECT count(*) FROM signet_audit")
            .parse()
            .unwrap()
    };
    let records_before = records();
    // Six seconds without the token, requests recorded all the while (each refusal is).
    let mut away = Vec::new();
    std::thread::scope(|s| {
        let restart = s.spawn(|| token.restart(Duration::from_secs(6)));
        while !restart.is_finished() {
            away.push(sign(&admin, "k", b"while away").status);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert!(away.contains(&503), "{away:?}");
    let recorded = records() - records_before;
    assert!(recorded >= 8, "{recorded} records while away");
    let failed = failed_checkpoints(&log).len() - before;
    eprintln!("{recorded} records and {failed} failed checkpoints while the token was away");
    // 1 s, then 2 s, then 4 s between tries: a handful in six seconds, a few more while the
    // service comes back.
    assert!(
        (1..=10).contains(&failed),
        "{failed} failed checkpoints logged in about 6 s"
    );
    admin.wait_anchored();
    drop(a.stop());
}

/// PostgreSQL frozen (SIGSTOP to the server and its backends): a new connection's handshake
/// completes and its request is answered 503 with a problem document, and requests on open
/// connections too, each within the one store deadline of the request (timeout_ms = 2000),
/// not one per database call — also six at once on the node's one async worker (no request
/// waits on the database there, so none waits behind another's deadline); once thawed, the
/// node serves again.
#[test]
fn a_frozen_database_is_answered_with_problem_documents_within_one_deadline() {
    let pg = Postgres::own();
    let url = pg.database("frozen");
    let token = RemoteToken::start();
    let da = Data::new();
    let na = Node::new("a", &da, &token, &pg, &url);
    let a = na.start(da);
    let admin = a.admin();
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    assert_eq!(sign(&admin, "k", b"before").status, 200);
    let open: Vec<Client> = (0..6).map(|_| client_of(&a, "admin", &a)).collect();
    for c in &open {
        assert_eq!(sign(c, "k", b"before").status, 200);
    }
    let pid = std::fs::read_to_string(Path::new(pg.dir()).join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    let signal = |sig: &str| {
        let _ = Command::new("pkill").args([sig, "-P", &pid]).status();
        let _ = Command::new("kill").args([sig, &pid]).status();
    };
    signal("-STOP");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..2 {
            // A new connection: TLS completes, the answer is a problem document.
            let fresh = client_of(&a, "admin", &a);
            let started = Instant::now();
            let reply = fresh
                .try_post("/v1/keys/k/sign", &json!({"input": b64(b"frozen")}))
                .expect("the handshake completes");
            assert_eq!(reply.status, 503, "{reply:?}");
            assert!(reply.content_type.starts_with("application/problem+json"));
            assert!(
                started.elapsed() < Duration::from_millis(3500),
                "refused after {:?}",
                started.elapsed()
            );
            // An open connection.
            let started = Instant::now();
            let reply = sign(&admin, "k", b"frozen, open connection");
            assert_eq!(reply.status, 503, "{reply:?}");
            assert!(
                started.elapsed() < Duration::from_millis(3000),
                "refused after {:?}",
                started.elapsed()
            );
        }
        // Six open connections at once.
        let started = Instant::now();
        std::thread::scope(|scope| {
            let asked: Vec<_> = open
                .iter()
                .map(|c| {
                    scope.spawn(move || (sign(c, "k", b"frozen, six at once"), started.elapsed()))
                })
                .collect();
            for handle in asked {
                let (reply, after) = handle.join().unwrap();
                assert_eq!(reply.status, 503, "{reply:?}");
                assert!(
                    after < Duration::from_millis(3500),
                    "one of six refused after {after:?}"
                );
            }
        });
    }));
    signal("-CONT");
    result.unwrap();
    let started = Instant::now();
    while sign(&admin, "k", b"thawed").status != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "no recovery");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(a.stop());
}

/// PostgreSQL's disk full: a signature is refused (503, nothing answered) and the node's log
/// says why in PostgreSQL's words ("No space left on device"), not "current transaction is
/// aborted"; once space returns the node signs again.
#[test]
fn a_full_database_disk_is_reported_as_such() {
    let fs = common::Tmpfs::mount("160m");
    let pg = Postgres::own_in(fs.path());
    let url = pg.database("fulldb");
    let token = RemoteToken::start();
    let da = Data::new();
    let na = Node::new("a", &da, &token, &pg, &url);
    let a = na.start(da);
    let admin = a.admin();
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    assert_eq!(sign(&admin, "k", b"before").status, 200);
    let filler = fs.fill();
    let mut refused = None;
    for n in 0..5000 {
        let reply = sign(
            &admin,
            "k",
            format!("full {n} {}", "x".repeat(2000)).as_bytes(),
        );
        if reply.status != 200 {
            refused = Some(reply);
            break;
        }
    }
    let reply = refused.expect("the disk never filled");
    assert_eq!(reply.status, 503, "{reply:?}");
    let log_path = a.data.path().parent().unwrap().join(format!(
        "{}-a.log",
        a.data.path().file_name().unwrap().to_string_lossy()
    ));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("No space left on device"),
        "{}",
        &log[log.len().saturating_sub(3000)..]
    );
    std::fs::remove_file(filler).unwrap();
    let started = Instant::now();
    while sign(&admin, "k", b"space again").status != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "no recovery");
        std::thread::sleep(Duration::from_millis(250));
    }
    drop(a.stop());
    drop(pg);
    drop(fs);
}

/// A backup restored (pg_dump, then pg_restore over the database): `serve` and `audit verify`
/// (twice: it writes nothing) refuse; `audit reanchor` records the loss, names the key made
/// after the backup that the token still holds, and raises the CRL number past every one
/// issued; `audit replay-revocations` re-applies, from an export taken before the restore, the
/// revocation the backup lacked, so the revoked certificate does not work again.
#[test]
fn a_restored_backup_is_refused_until_reanchored_and_revocations_replayed() {
    let pg = Postgres::own();
    let url = pg.database("restore");
    let db = db_name(&url).to_string();
    let token = RemoteToken::start();
    let da = Data::new();
    let na = Node::new("a", &da, &token, &pg, &url);
    let a = na.start(da);
    let admin = a.admin();
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "k", "spec": "ec-p256"}))
            .status,
        201
    );
    let victim = common::enrol_principal(&a, &admin, "victim", &["keys:read"]);
    assert_eq!(victim.get("/v1/keys").status, 200);
    let victim_serial = serial_of(&a.data.join("clients/victim.crt.pem"));
    admin.wait_anchored();
    // The backup.
    let dump = a.data.join("backup.dump");
    let password = std::fs::read_to_string(&pg.password_file).unwrap();
    let port = url
        .rsplit_once(':')
        .unwrap()
        .1
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let out = Command::new("pg_dump")
        .args(["-Fc", "-h", "127.0.0.1", "-p", &port, "-U", "signet", "-f"])
        .arg(&dump)
        .arg(&db)
        .env("PGPASSWORD", password.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // After it: a revocation, a CRL, a key, signatures.
    assert_eq!(
        admin
            .post(
                &format!("/v1/certificates/{victim_serial}/revoke"),
                &json!({"reason": "keyCompromise"})
            )
            .status,
        200
    );
    let crl_after = pg.psql(
        &db,
        "SELECT value FROM signet_counters WHERE name = 'crl_number'",
    );
    assert_eq!(
        admin
            .post("/v1/keys", &json!({"name": "late", "spec": "ec-p256"}))
            .status,
        201
    );
    assert_eq!(sign(&admin, "k", b"after the backup").status, 200);
    let kept = a.stop();
    let export = kept.join("audit.jsonl");
    let out = na.signet(&["audit", "export", "--out", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // The restore.
    pg.psql("postgres", &format!("DROP DATABASE {db}"));
    pg.psql("postgres", &format!("CREATE DATABASE {db}"));
    let out = Command::new("pg_restore")
        .args(["-h", "127.0.0.1", "-p", &port, "-U", "signet", "-d", &db])
        .arg(&dump)
        .env("PGPASSWORD", password.trim())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rows = || pg.psql(&db, "SELECT count(*) FROM signet_audit");
    let rows_before = rows();
    let start = na.signet(&["serve", "--listen", "127.0.0.1:0"]);
    assert!(!start.status.success(), "{}", text(&start));
    for _ in 0..2 {
        let verify = na.signet(&["audit", "verify"]);
        assert!(!verify.status.success(), "{}", text(&verify));
    }
    assert_eq!(
        rows(),
        rows_before,
        "an inspecting command wrote to the database"
    );

    let out = na.signet(&["audit", "reanchor"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("signet:key:late:"),
        "the orphaned key is not named: {t}"
    );
    let reanchor = pg.psql(
        &db,
        "SELECT line FROM signet_audit WHERE line::json->>'action' = 'audit.reanchor'",
    );
    assert!(reanchor.contains("lost_records"), "{reanchor}");
    let out = na.signet(&[
        "audit",
        "replay-revocations",
        "--file",
        export.to_str().unwrap(),
        "--public-key",
        kept.join("audit.pub.pem").to_str().unwrap(),
    ]);
    let t = text(&out);
    assert!(
        out.status.success() && t.contains("re-applied 1 certificate"),
        "{t}"
    );

    let a = na.start(kept);
    let status = pg.psql(
        &db,
        &format!("SELECT value::json->>'status' FROM signet_records WHERE kind = 'certs' AND key = '{victim_serial}'"),
    );
    assert_eq!(status, "revoked");
    assert!(client_of(&a, "victim", &a).try_get("/v1/keys").is_err());
    let crl_now: u64 = pg
        .psql(
            &db,
            "SELECT value FROM signet_counters WHERE name = 'crl_number'",
        )
        .parse()
        .unwrap();
    assert!(
        crl_now > crl_after.parse::<u64>().unwrap(),
        "{crl_now} vs {crl_after}"
    );
    let verify_ok = client_of(&a, "admin", &a).get("/readyz").status;
    assert_eq!(verify_ok, 200);
    drop(a.stop());
}

/// The server certificate and of the intermediate rotated with `signet ca rotate
/// --intermediate` while two nodes serve: within seconds both answer with the new server
/// certificate, without a restart; a client certificate issued under the old intermediate
/// keeps working on both until it expires; new certificates chain to the new intermediate;
/// the chain endpoint lists both intermediates; openssl verifies old and new leaves.
#[test]
fn the_ca_rotates_without_an_outage() {
    let pg = Postgres::shared();
    let url = pg.database("rotate");
    let token = RemoteToken::start();
    let (da, db) = (Data::new(), Data::new());
    let na = Node::new("a", &da, &token, &pg, &url);
    let nb = Node::new("b", &db, &token, &pg, &url);
    let a = na.start(da);
    let b = nb.start(db);
    let admin = a.admin();
    let old_client = common::enrol_principal(&a, &admin, "old", &["keys:read"]);
    let old_leaf = a.data.join("clients/old.crt.pem");
    let server_serial = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} -servername localhost -CAfile {} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
                b.port,
                a.data.join("ca/root.pem").display(),
                a.data.join("clients/admin.crt.pem").display(),
                a.data.join("clients/admin.key.pem").display(),
            ))
            .output()
            .unwrap();
        text(&out)
            .trim()
            .trim_start_matches("serial=")
            .to_lowercase()
    };
    let before = server_serial();
    assert!(!before.is_empty());
    let out = na.signet(&["ca", "rotate", "--intermediate"]);
    assert!(out.status.success(), "{}", text(&out));
    // Node b picks it up without a restart; requests never fail meanwhile.
    let started = Instant::now();
    while server_serial() == before {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "node b still serves the old certificate"
        );
        assert_eq!(client_of(&a, "admin", &b).get("/healthz").status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    // The old client's certificate (old intermediate) works on both nodes, new connections.
    for server in [&a, &b] {
        assert_eq!(client_of(&a, "old", server).get("/v1/keys").status, 200);
    }
    assert_eq!(old_client.get("/v1/keys").status, 200);
    // A new certificate chains to the new intermediate and works on both.
    let _new_client = common::enrol_principal(&a, &admin, "new", &["keys:read"]);
    for server in [&a, &b] {
        assert_eq!(client_of(&a, "new", server).get("/v1/keys").status, 200);
    }
    let chain = client_of(&a, "admin", &b).get("/v1/ca/chain").body;
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 3, "{chain}");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("chain.pem"), &chain).unwrap();
    for leaf in [&old_leaf, &a.data.join("clients/new.crt.pem")] {
        let out = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(a.data.join("ca/root.pem"))
            .arg("-untrusted")
            .arg(tmp.path().join("chain.pem"))
            .arg(leaf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let issuer = |leaf: &Path| {
        let out = Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-issuer",
                "-ext",
                "authorityKeyIdentifier",
                "-in",
            ])
            .arg(leaf)
            .output()
            .unwrap();
        text(&out)
    };
    assert_ne!(
        issuer(&old_leaf),
        issuer(&a.data.join("clients/new.crt.pem")),
        "the new certificate was issued by the old intermediate"
    );
    drop((a.stop(), b.stop()));
}
