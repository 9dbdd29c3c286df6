//! Publication (`[publish]`): a relying party that is not enrolled follows the URLs in a
//! certificate (AIA caIssuers, CRL distribution points) over plain HTTP with curl, and
//! `openssl verify -crl_check_all` passes with what it fetched — and fails once the leaf is
//! revoked. The listener serves those files and nothing else; the directory holds the same.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{free_port, openssl, openssl_csr, text, Data, Server};
use serde_json::json;

/// `curl` without any client certificate: (status, content type, cache-control, body).
fn fetch(url: &str, method: &str) -> (String, String, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("body");
    // curl -X HEAD would wait for the body the headers announce: -I asks properly.
    let method_args: Vec<&str> = if method == "HEAD" {
        vec!["-I"]
    } else {
        vec!["-X", method]
    };
    let out = Command::new("curl")
        .arg("-sS")
        .args(&method_args)
        .args(["-o", body.to_str().unwrap()])
        .args(["-w", "%{http_code} %{content_type}\n", "-D", "-"])
        .arg(url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).to_string();
    let last = t.lines().last().unwrap_or_default().to_string();
    let (status, content_type) = last.split_once(' ').unwrap_or((&last, ""));
    let cache = t
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("cache-control:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (
        status.to_string(),
        content_type.to_string(),
        cache,
        std::fs::read(&body).unwrap_or_default(),
    )
}

/// The URI after `label` in `openssl x509 -text` output.
fn uri_after(cert_text: &str, label: &str) -> String {
    let at = cert_text
        .find(label)
        .unwrap_or_else(|| panic!("no {label} in {cert_text}"));
    let rest = &cert_text[at..];
    let uri = rest.find("URI:").unwrap();
    rest[uri + 4..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn x509_text(dir: &Path, file: &str, inform: &str) -> String {
    let out = openssl(
        dir,
        &["x509", "-inform", inform, "-in", file, "-noout", "-text"],
    );
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

fn der_to_pem(dir: &Path, der: &[u8], kind: &str, name: &str) {
    std::fs::write(dir.join(format!("{name}.der")), der).unwrap();
    let out = openssl(
        dir,
        &[
            kind,
            "-inform",
            "DER",
            "-in",
            &format!("{name}.der"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
    assert!(out.status.success(), "{name}: {}", text(&out));
}

/// `openssl verify -crl_check_all` of `leaf` under `root.pem` and `int`, with the CRLs `crl`
/// (the intermediate's) and `arl.pem` (the root's), files in `dir`.
fn verify_chain(dir: &Path, leaf: &str, int: &str, crl: &str) -> std::process::Output {
    openssl(
        dir,
        &[
            "verify",
            "-crl_check_all",
            "-CAfile",
            "root.pem",
            "-untrusted",
            int,
            "-CRLfile",
            crl,
            "-CRLfile",
            "arl.pem",
            leaf,
        ],
    )
}

/// A data directory whose configuration publishes on a free port (`[publish]`, then the lines
/// in `extra`): the directory, its configuration file and the base URL.
fn publishing(extra: &str) -> (Data, std::path::PathBuf, String) {
    let data = Data::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let conf = data.join("signet.toml");
    std::fs::write(
        &conf,
        format!("[publish]\nlisten = \"127.0.0.1:{port}\"\nbase_url = \"{base}/\"\n{extra}"),
    )
    .unwrap();
    (data, conf, base)
}

#[test]
fn a_relying_party_follows_the_certificate_urls_and_checks_every_crl() {
    let data = Data::new();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let published = data.join("published");
    let conf = data.join("signet.toml");
    std::fs::write(
        &conf,
        format!(
            "[publish]\nlisten = \"127.0.0.1:{port}\"\nbase_url = \"{base}/\"\ndir = \"{}\"\n",
            published.display()
        ),
    )
    .unwrap();
    let server = Server::start_in(data, &[("SIGNET_CONFIG", conf.to_str().unwrap())]);
    let admin = server.admin();
    let rp = tempfile::tempdir().unwrap();
    let dir = rp.path();

    // A server certificate whose name is not among its SANs: the CN is left out.
    let (_key, csr) = openssl_csr(dir, "svc", &["-addext", "subjectAltName=DNS:svc.internal"]);
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "server", "name": "svc", "dns": ["svc.internal"]}),
    );
    assert_eq!(issued.status, 201, "{issued:?}");
    let doc = issued.json();
    let serial = doc["serial"].as_str().unwrap().to_string();
    // PEM in answers has LF line ends, as openssl writes it.
    assert!(!issued.body.contains("\\r\\n"), "{}", issued.body);
    std::fs::write(dir.join("leaf.pem"), doc["certificate"].as_str().unwrap()).unwrap();
    let leaf = x509_text(dir, "leaf.pem", "PEM");
    assert!(
        !leaf.contains("CN=svc") && !leaf.contains("CN = svc"),
        "{leaf}"
    );

    // Everything the relying party needs comes from the URLs in the certificates.
    let ca_issuers = uri_after(&leaf, "CA Issuers");
    let crl_url = uri_after(&leaf, "CRL Distribution Points");
    assert!(
        ca_issuers.starts_with(&base) && crl_url.starts_with(&base),
        "{leaf}"
    );
    let (status, ctype, cache, intermediate) = fetch(&ca_issuers, "GET");
    assert_eq!(
        (status.as_str(), ctype.as_str()),
        ("200", "application/pkix-cert")
    );
    assert!(cache.contains("max-age"), "{cache}");
    der_to_pem(dir, &intermediate, "x509", "intermediate");
    let int_text = x509_text(dir, "intermediate.pem", "PEM");
    let root_url = uri_after(&int_text, "CA Issuers");
    let arl_url = uri_after(&int_text, "CRL Distribution Points");
    let (_, _, _, root) = fetch(&root_url, "GET");
    der_to_pem(dir, &root, "x509", "root");
    // The root fetched is the one the server's own files name (the trust anchor).
    assert_eq!(
        std::fs::read_to_string(dir.join("root.pem")).unwrap(),
        std::fs::read_to_string(server.data.join("ca/root.pem")).unwrap()
    );
    let (status, ctype, _, crl) = fetch(&crl_url, "GET");
    assert_eq!(
        (status.as_str(), ctype.as_str()),
        ("200", "application/pkix-crl")
    );
    der_to_pem(dir, &crl, "crl", "crl");
    let (_, _, _, arl) = fetch(&arl_url, "GET");
    der_to_pem(dir, &arl, "crl", "arl");
    let verify = || verify_chain(dir, "leaf.pem", "intermediate.pem", "crl.pem");
    let out = verify();
    assert!(out.status.success(), "{}", text(&out));

    // The directory holds the same files.
    for url in [&ca_issuers, &crl_url, &root_url, &arl_url] {
        let name = url.rsplit('/').next().unwrap();
        let on_disk = std::fs::read(published.join(name)).unwrap();
        assert_eq!(on_disk, fetch(url, "GET").3, "{name}");
    }

    // Revoked: the relying party's next fetch of the CRL says so.
    let revoked = admin.post(
        &format!("/v1/certificates/{serial}/revoke"),
        &json!({"reason": "keyCompromise"}),
    );
    assert_eq!(revoked.status, 200, "{revoked:?}");
    der_to_pem(dir, &fetch(&crl_url, "GET").3, "crl", "crl");
    let out = verify();
    assert!(
        !out.status.success() && text(&out).contains("certificate revoked"),
        "{}",
        text(&out)
    );

    // Nothing else is served: no API route, no other method, no path outside the files.
    for path in [
        "/v1/keys",
        "/v1/openapi.json",
        "/signet.toml",
        "/..%2Fsignet.toml",
        "/",
        "/x.crt",
    ] {
        let (status, _, _, _) = fetch(&format!("{base}{path}"), "GET");
        assert_eq!(status, "404", "{path}");
    }
    let (status, _, _, _) = fetch(&crl_url, "POST");
    assert_eq!(status, "405");
    // HEAD: the headers only (curl -I writes them where a body would go; no DER follows).
    let (status, ctype, _, head) = fetch(&crl_url, "HEAD");
    let head = String::from_utf8(head).unwrap();
    assert_eq!(
        (status.as_str(), ctype.as_str()),
        ("200", "application/pkix-crl")
    );
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head:?}"
    );
}

/// Without `[publish] base_url`, certificates name no URL (as before).
#[test]
fn without_a_publication_url_certificates_name_none() {
    let server = Server::start();
    let dir = server.data.path();
    let leaf = x509_text(dir, "clients/admin.crt.pem", "PEM");
    assert!(
        !leaf.contains("CRL Distribution Points") && !leaf.contains("CA Issuers"),
        "{leaf}"
    );
    let int = x509_text(dir, "ca/intermediate.pem", "PEM");
    assert!(!int.contains("CRL Distribution Points"), "{int}");
}

/// `publish.listen` needs the URL certificates will name.
#[test]
fn a_listener_without_a_base_url_is_refused() {
    let data = Data::new();
    let conf = data.join("signet.toml");
    std::fs::write(&conf, "[publish]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let out = data.signet(&["--config", conf.to_str().unwrap(), "config", "check"]);
    assert!(
        !out.status.success() && text(&out).contains("publish.base_url"),
        "{}",
        text(&out)
    );
}

/// After `signet ca rotate --intermediate`, a leaf of the previous intermediate is revoked: the
/// CRL URL it names answers a CRL signed by that intermediate which lists it, so `openssl
/// verify -crl_check_all` over what the relying party fetched fails with "certificate
/// revoked"; the new intermediate's CRL does not list it, and a leaf of the new intermediate
/// still verifies against its own.
#[test]
fn a_leaf_of_a_previous_intermediate_is_revoked_on_that_intermediates_crl() {
    let (data, conf, _base) = publishing("");
    let conf = conf.to_str().unwrap().to_string();
    let env = [("SIGNET_CONFIG", conf.as_str())];
    let rp = tempfile::tempdir().unwrap();
    let dir = rp.path();
    let issue = |server: &Server, name: &str| -> (String, String) {
        let (_key, csr) = openssl_csr(dir, name, &[]);
        let issued = server.admin().post(
            "/v1/certificates",
            &json!({"csr": csr, "profile": "server", "name": name, "dns": [format!("{name}.internal")]}),
        );
        assert_eq!(issued.status, 201, "{issued:?}");
        let doc = issued.json();
        std::fs::write(
            dir.join(format!("{name}.pem")),
            doc["certificate"].as_str().unwrap(),
        )
        .unwrap();
        let text = x509_text(dir, &format!("{name}.pem"), "PEM");
        (
            doc["serial"].as_str().unwrap().to_string(),
            uri_after(&text, "CRL Distribution Points"),
        )
    };

    let server = Server::start_in(data, &env);
    let (old_serial, old_crl_url) = issue(&server, "old");
    let old_issuer = x509_text(dir, "old.pem", "PEM");
    der_to_pem(
        dir,
        &fetch(&uri_after(&old_issuer, "CA Issuers"), "GET").3,
        "x509",
        "old-int",
    );
    let data = server.stop();
    let out = data.signet(&["--config", &conf, "ca", "rotate", "--intermediate"]);
    assert!(out.status.success(), "{}", text(&out));
    let server = Server::start_in(data, &env);
    let (_, new_crl_url) = issue(&server, "new");
    assert_ne!(old_crl_url, new_crl_url);
    let new_issuer = x509_text(dir, "new.pem", "PEM");
    der_to_pem(
        dir,
        &fetch(&uri_after(&new_issuer, "CA Issuers"), "GET").3,
        "x509",
        "new-int",
    );
    std::fs::copy(server.data.join("ca/root.pem"), dir.join("root.pem")).unwrap();
    let int_text = x509_text(dir, "new-int.pem", "PEM");
    der_to_pem(
        dir,
        &fetch(&uri_after(&int_text, "CRL Distribution Points"), "GET").3,
        "crl",
        "arl",
    );

    let revoked = server.admin().post(
        &format!("/v1/certificates/{old_serial}/revoke"),
        &json!({"reason": "keyCompromise"}),
    );
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let (status, ctype, _, old_crl) = fetch(&old_crl_url, "GET");
    assert_eq!(
        (status.as_str(), ctype.as_str()),
        ("200", "application/pkix-crl")
    );
    der_to_pem(dir, &old_crl, "crl", "old-crl");
    let out = verify_chain(dir, "old.pem", "old-int.pem", "old-crl.pem");
    assert!(
        !out.status.success() && text(&out).contains("certificate revoked"),
        "{}",
        text(&out)
    );
    // The current intermediate's CRL lists its own leaves only; its leaf verifies with it.
    der_to_pem(dir, &fetch(&new_crl_url, "GET").3, "crl", "new-crl");
    let lists_old = |crl: &str| {
        let listed = openssl(dir, &["crl", "-in", crl, "-noout", "-text"]);
        assert!(listed.status.success(), "{}", text(&listed));
        text(&listed)
            .to_lowercase()
            .contains(&format!("serial number: {}", old_serial.to_lowercase()))
    };
    assert!(lists_old("old-crl.pem"));
    assert!(!lists_old("new-crl.pem"));
    let out = verify_chain(dir, "new.pem", "new-int.pem", "new-crl.pem");
    assert!(out.status.success(), "{}", text(&out));
    // The revocation's CRL record names the CRL's issuer: the previous intermediate.
    let serial = openssl(dir, &["x509", "-in", "old-int.pem", "-noout", "-serial"]);
    let old_int_serial = text(&serial)
        .trim()
        .trim_start_matches("serial=")
        .to_lowercase();
    let log = server.admin().get("/v1/audit?limit=10000").body;
    let crl = log
        .lines()
        .rev()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["action"] == "crl.generate")
        .unwrap_or_else(|| panic!("no crl.generate record in {log}"));
    assert_eq!(
        crl["details"]["issuer"].as_str().map(str::to_lowercase),
        Some(old_int_serial),
        "{crl}"
    );
}

/// Transactions committed in `url`'s database so far (PostgreSQL's own count; a busy backend
/// that goes idle reports its part within 10 seconds, `PGSTAT_IDLE_INTERVAL`).
fn transactions(url: &str, password_file: &Path) -> u64 {
    common::pg::psql(
        url,
        password_file,
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    .parse()
    .unwrap()
}

/// Relying parties nobody enrolled cannot make the database work for them: however often they
/// fetch, the published files are read from the store at most once every few seconds
/// (PostgreSQL's own transaction count is the witness), and a revocation made on this node is
/// in the next CRL fetched all the same.
#[test]
fn fetching_published_files_does_not_load_the_database() {
    let pg_url = std::env::var("SIGNET_PG_URL").expect(
        "SIGNET_PG_URL is not set: start PostgreSQL with `eval \"$(scripts/postgres.sh start)\"` (scripts/test.sh does)",
    );
    let password_file = std::path::PathBuf::from(std::env::var("SIGNET_PG_PASSWORD_FILE").unwrap());
    let db = format!("publish_{}", std::process::id());
    let admin_url = common::pg::with_database(&pg_url, "postgres");
    common::pg::psql(
        &admin_url,
        &password_file,
        &format!("DROP DATABASE IF EXISTS {db}"),
    );
    common::pg::psql(&admin_url, &password_file, &format!("CREATE DATABASE {db}"));
    let db_url = common::pg::with_database(&pg_url, &db);

    let (data, conf, base) = publishing(&format!(
        "[store]\nkind = \"postgres\"\nurl = \"{db_url}\"\npassword_file = \"{}\"\n",
        password_file.display()
    ));
    let server = Server::start_in(data, &[("SIGNET_CONFIG", conf.to_str().unwrap())]);
    let admin = server.admin();
    let root_crl = format!("{base}/{}", signet_pki::publication::ROOT_CRL);
    assert_eq!(fetch(&root_crl, "GET").0, "200");

    // 400 fetches over a few keep-alive connections, the way a crowd of relying parties would.
    const FETCHES: usize = 400;
    // Each count waits for the server's sessions to report what they did before it.
    let settle = || std::thread::sleep(std::time::Duration::from_secs(11));
    settle();
    let before = transactions(&db_url, &password_file);
    let statuses: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let out = Command::new("curl")
                        .arg("-sS")
                        .args(["-w", "%{http_code}\n"])
                        .args(
                            std::iter::repeat_n(
                                ["-o", "/dev/null", root_crl.as_str()],
                                FETCHES / 4,
                            )
                            .flatten(),
                        )
                        .output()
                        .unwrap();
                    String::from_utf8_lossy(&out.stdout).to_string()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let ok = statuses
        .iter()
        .flat_map(|s| s.lines())
        .filter(|l| *l == "200")
        .count();
    assert_eq!(ok, FETCHES, "{statuses:?}");
    settle();
    let used = transactions(&db_url, &password_file) - before;
    eprintln!("{FETCHES} fetches of a published CRL: {used} PostgreSQL transactions");
    // The server's own background work (under 2 a second idle: checkpoints, the rotation
    // check) and a refresh of the published files (5) take a few dozen; reading the store
    // per fetch took at least two per fetch.
    assert!(
        used < (FETCHES / 2) as u64,
        "{FETCHES} fetches of a published CRL cost {used} PostgreSQL transactions"
    );

    // A revocation on this node is in the next CRL fetched, cache or not.
    let rp = tempfile::tempdir().unwrap();
    let dir = rp.path();
    let (_key, csr) = openssl_csr(dir, "svc", &[]);
    let issued = admin.post(
        "/v1/certificates",
        &json!({"csr": csr, "profile": "server", "name": "svc.internal"}),
    );
    assert_eq!(issued.status, 201, "{issued:?}");
    let doc = issued.json();
    let serial = doc["serial"].as_str().unwrap().to_lowercase();
    std::fs::write(dir.join("leaf.pem"), doc["certificate"].as_str().unwrap()).unwrap();
    let crl_url = uri_after(
        &x509_text(dir, "leaf.pem", "PEM"),
        "CRL Distribution Points",
    );
    let lists_leaf = || {
        der_to_pem(dir, &fetch(&crl_url, "GET").3, "crl", "crl");
        let listed = openssl(dir, &["crl", "-in", "crl.pem", "-noout", "-text"]);
        assert!(listed.status.success(), "{}", text(&listed));
        text(&listed)
            .to_lowercase()
            .contains(&format!("serial number: {serial}"))
    };
    assert!(!lists_leaf());
    let revoked = admin.post(&format!("/v1/certificates/{serial}/revoke"), &json!({}));
    assert_eq!(revoked.status, 200, "{revoked:?}");
    assert!(lists_leaf());
    common::pg::psql(
        &admin_url,
        &password_file,
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
    );
}

/// One address holding every connection it can open (raw sockets that never send a request)
/// takes only its share of the publication listener: a relying party at another address
/// still fetches the root CRL, each time within a second, while they are held.
#[test]
fn one_address_cannot_take_the_publication_listener() {
    let (data, conf, base) = publishing("");
    let _server = Server::start_in(data, &[("SIGNET_CONFIG", conf.to_str().unwrap())]);
    let address = base.trim_start_matches("http://");
    let held: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(address).ok())
        .collect();
    assert!(held.len() >= 256, "{}", held.len());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let url = format!("{base}/{}", signet_pki::publication::ROOT_CRL);
    for round in 0..5 {
        common::answered_within_a_second_from_elsewhere([&url], &format!("round {round}"));
    }
    drop(held);
}
