//! Shared test helpers: the real `signet` binary on a fresh data directory, a real server on
//! loopback, real mTLS clients built from the files `ca init` writes, and openssl.

#![allow(dead_code, clippy::unwrap_used)]

pub mod configured;
pub mod pg;
pub mod proc;
pub mod remote;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_signet");

/// A data directory that disappears with the test.
pub struct Data {
    pub dir: tempfile::TempDir,
}

impl Data {
    pub fn new() -> Self {
        Data {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A data directory inside `parent` (a file system the test made, say).
    pub fn new_in(parent: &Path) -> Self {
        Data {
            dir: tempfile::tempdir_in(parent).unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Runs `signet --data-dir DATA args…`.
    pub fn signet(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(self.path())
            .args(args)
            .env_remove("SIGNET_CONFIG")
            .env("SIGNET_LOG", "warn,cryptoki=off")
            .output()
            .expect("signet runs")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.signet(args);
        assert!(
            out.status.success(),
            "signet {args:?} failed: {}",
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// One request with curl from another loopback address (127.0.0.2), as a client other than the
/// test's own would make it, `args` before the URL: asserts it was answered 200 within a second
/// (`what` names the attempt in a failure).
pub fn answered_within_a_second_from_elsewhere<I, A>(args: I, what: &str)
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}"])
        .args(["--interface", "127.0.0.2", "--max-time", "5"])
        .args(args)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, time) = answer.split_once(' ').unwrap_or(("000", "99"));
    assert_eq!(status, "200", "{what}: {answer}");
    let secs: f64 = time.parse().unwrap();
    assert!(secs < 1.0, "{what} took {secs} s");
}

/// A loopback port free now (for a server the test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs openssl in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs")
}

/// A running `signet serve`.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub data: Data,
    pub stdout: Vec<String>,
}

impl Server {
    /// Starts `signet serve` on 127.0.0.1 with a free port, and waits until it listens.
    pub fn start() -> Self {
        Self::start_in(Data::new(), &[])
    }

    pub fn start_in(data: Data, extra_env: &[(&str, &str)]) -> Self {
        Self::start_with(data, extra_env, &[], &[], None)
    }

    /// Starts with a command prefix (e.g. `faketime '+400 days'`), extra arguments and stderr
    /// captured to a file.
    pub fn start_with(
        data: Data,
        extra_env: &[(&str, &str)],
        prefix: &[&str],
        extra_args: &[&str],
        stderr: Option<&Path>,
    ) -> Self {
        Self::spawn(data, extra_env, prefix, extra_args, stderr, 0)
    }

    /// Starts on a given port (a restart where clients expect the same address).
    pub fn start_on(data: Data, port: u16) -> Self {
        Self::spawn(data, &[], &[], &[], None, port)
    }

    fn spawn(
        data: Data,
        extra_env: &[(&str, &str)],
        prefix: &[&str],
        extra_args: &[&str],
        stderr: Option<&Path>,
        port: u16,
    ) -> Self {
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("--data-dir")
            .arg(data.path())
            .args(extra_args)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("SIGNET_CONFIG")
            .stdout(Stdio::piped());
        match stderr {
            Some(path) => {
                cmd.stderr(std::fs::File::create(path).unwrap());
            }
            None => {
                cmd.env("SIGNET_LOG", "warn,cryptoki=off")
                    .stderr(Stdio::null());
            }
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("server starts");
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        let port = loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                let err = stderr
                    .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                    .unwrap_or_default();
                panic!("server exited before listening: {lines:?}\n{err}");
            }
            if let Some(rest) = line.trim().strip_prefix("listening on https://127.0.0.1:") {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            lines.push(line);
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Server {
            child,
            port,
            data,
            stdout: lines,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// A client presenting the admin bundle.
    pub fn admin(&self) -> Client {
        self.client("admin")
    }

    /// A client presenting `DATA/clients/<name>.crt.pem` + `.key.pem`.
    pub fn client(&self, name: &str) -> Client {
        let clients = self.data.join("clients");
        Client::new(
            &self.data.join("ca/root.pem"),
            Some((
                &clients.join(format!("{name}.crt.pem")),
                &clients.join(format!("{name}.key.pem")),
            )),
            self,
        )
    }

    /// Stops with SIGTERM and waits until the server has exited.
    pub fn stop(mut self) -> Data {
        // A wrapper such as faketime runs the server as its child and does not forward signals:
        // signal the server itself, then wait for the wrapper, which exits when the server has.
        let pid = self.child.id().to_string();
        let children = Command::new("pgrep")
            .args(["-P", &pid])
            .output()
            .map(|o| o.stdout)
            .unwrap_or_default();
        let children: Vec<String> = String::from_utf8_lossy(&children)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let targets = if children.is_empty() {
            vec![pid]
        } else {
            children
        };
        for target in targets {
            let _ = Command::new("kill").arg("-TERM").arg(target).status();
        }
        let _ = self.child.wait();
        std::mem::replace(&mut self.data, Data::new())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-P"])
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking HTTPS client with an optional client certificate.
pub struct Client {
    agent: ureq::Agent,
    base: String,
}

/// A response: status, body text, and the body as JSON when it is.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

pub fn tls_config(root: &Path, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // ring with ML-DSA verification, as the service's: a server under an ML-DSA CA too.
    let builder = rustls::ClientConfig::builder_with_provider(signet::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

impl Client {
    pub fn new(root: &Path, identity: Option<(&Path, &Path)>, server: &Server) -> Self {
        Self::with_config(tls_config(root, identity), server)
    }

    /// A client with a TLS configuration of its own.
    pub fn with_config(config: rustls::ClientConfig, server: &Server) -> Self {
        let agent = ureq::AgentBuilder::new()
            .tls_config(Arc::new(config))
            .timeout(Duration::from_secs(30))
            .build();
        Client {
            agent,
            base: server.url(""),
        }
    }

    fn finish(result: Result<ureq::Response, ureq::Error>) -> Result<Reply, String> {
        let response = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(e.to_string()),
        };
        let status = response.status();
        let content_type = response.header("content-type").unwrap_or("").to_string();
        let body = response.into_string().map_err(|e| e.to_string())?;
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }

    pub fn try_get(&self, path: &str) -> Result<Reply, String> {
        Self::finish(self.agent.get(&format!("{}{path}", self.base)).call())
    }

    pub fn get(&self, path: &str) -> Reply {
        self.try_get(path).unwrap()
    }

    /// `GET` asking for the `accept` media type.
    #[allow(dead_code)]
    pub fn get_as(&self, path: &str, accept: &str) -> Reply {
        Self::finish(
            self.agent
                .get(&format!("{}{path}", self.base))
                .set("Accept", accept)
                .call(),
        )
        .unwrap()
    }

    /// The audit log as the API exports it (`GET /v1/audit`, one JSON record per line).
    #[allow(dead_code)]
    pub fn audit_records(&self) -> Vec<Value> {
        self.get("/v1/audit?limit=10000")
            .body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until a checkpoint anchored in the token covers every record written so far
    /// (`GET /v1/status`: no record after it), instead of sleeping through the checkpoint
    /// interval. Panics after 20 s.
    #[allow(dead_code)]
    pub fn wait_anchored(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.get("/v1/status").json();
            if status["audit"]["after_checkpoint"] == 0 {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint covers the log: {}",
                status["audit"]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn try_post(&self, path: &str, body: &Value) -> Result<Reply, String> {
        Self::finish(
            self.agent
                .post(&format!("{}{path}", self.base))
                .set("Content-Type", "application/json")
                .send_string(&body.to_string()),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.try_post(path, body).unwrap()
    }

    pub fn post_raw(&self, path: &str, body: &str) -> Reply {
        self.post_typed(path, "application/json", body)
    }

    /// A POST with the given Content-Type (`""` for none).
    pub fn post_typed(&self, path: &str, content_type: &str, body: &str) -> Reply {
        let mut request = self.agent.post(&format!("{}{path}", self.base));
        if !content_type.is_empty() {
            request = request.set("Content-Type", content_type);
        }
        Self::finish(request.send_string(body)).unwrap()
    }

    pub fn delete(&self, path: &str) -> Reply {
        Self::finish(self.agent.delete(&format!("{}{path}", self.base)).call()).unwrap()
    }
}

/// Makes an EC P-256 key and CSR with openssl; returns (key path, csr PEM).
pub fn openssl_csr(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let mut args = vec![
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let key_s = key.to_str().unwrap().to_string();
    let csr_s = csr.to_str().unwrap().to_string();
    let subj = format!("/CN={name}");
    args.extend(["-keyout", &key_s, "-out", &csr_s, "-subj", &subj]);
    args.extend(extra);
    let out = openssl(dir, &args);
    assert!(out.status.success(), "{}", text(&out));
    (key, std::fs::read_to_string(csr).unwrap())
}

/// Makes a self-signed EC P-256 certificate with openssl (an identity Signet did not issue):
/// `NAME.key` and `NAME.pem` in `dir`, with `subject` and `extra` arguments (`-config`,
/// `-extensions`); returns (key, certificate) paths.
pub fn openssl_self_signed(
    dir: &Path,
    name: &str,
    subject: &str,
    extra: &[&str],
) -> (PathBuf, PathBuf) {
    let (key, cert) = (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pem")),
    );
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        subject,
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ];
    args.extend(extra);
    let out = openssl(dir, &args);
    assert!(out.status.success(), "{}", text(&out));
    (key, cert)
}

/// `libsignet_pkcs11.so`, built beside the test binaries (scripts/test.sh builds it first).
pub fn pkcs11_module() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("libsignet_pkcs11.so");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p signet-pkcs11` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Writes the PKCS#11 module's settings for principal `name` of `server` and returns their
/// path.
pub fn pkcs11_settings(server: &Server, name: &str) -> PathBuf {
    let clients = server.data.join("clients");
    let path = server.data.join(&format!("{name}-pkcs11.toml"));
    std::fs::write(
        &path,
        format!(
            "url = \"https://localhost:{}\"\nca = \"ca/root.pem\"\ncert = \"clients/{name}.crt.pem\"\nkey = \"clients/{name}.key.pem\"\n",
            server.port
        ),
    )
    .unwrap();
    assert!(clients.join(format!("{name}.key.pem")).exists());
    path
}

/// Writes a secret file (a PIN, a password) as its owner's alone (0600), as Signet requires.
pub fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

/// Lists a token's objects with pkcs11-tool (OpenSC), an independent PKCS#11 client.
/// `kind` is e.g. `Some("privkey")`. Panics unless pkcs11-tool succeeds.
pub fn pkcs11_list(softhsm_conf: &Path, label: &str, pin: &str, kind: Option<&str>) -> String {
    let module = signet_softhsm::find_module().unwrap();
    let mut cmd = Command::new("pkcs11-tool");
    cmd.args([
        "--module",
        module.to_str().unwrap(),
        "--token-label",
        label,
        "--login",
        "--pin",
        pin,
        "--list-objects",
    ])
    .env("SOFTHSM2_CONF", softhsm_conf);
    if let Some(kind) = kind {
        cmd.args(["--type", kind]);
    }
    let out = cmd.output().unwrap();
    let t = text(&out);
    assert!(out.status.success(), "pkcs11-tool failed: {t}");
    t
}

/// The objects of the embedded token of a data dir, per pkcs11-tool.
pub fn embedded_objects(data: &Data, kind: Option<&str>) -> String {
    let pin = std::fs::read_to_string(data.join("pin")).unwrap();
    pkcs11_list(&data.join("softhsm/softhsm2.conf"), "signet", &pin, kind)
}

/// Enrols a principal holding exactly `scopes` through the API (its CSR made with openssl) and
/// returns a client presenting its certificate.
pub fn enrol_principal(server: &Server, admin: &Client, name: &str, scopes: &[&str]) -> Client {
    let dir = server.data.join("clients");
    let created = admin.post(
        "/v1/principals",
        &serde_json::json!({"name": name, "scopes": scopes}),
    );
    assert_eq!(created.status, 201, "{created:?}");
    let (key, csr) = openssl_csr(&dir, name, &[]);
    let doc = admin
        .post(
            "/v1/certificates",
            &serde_json::json!({"csr": csr, "profile": "client", "name": name}),
        )
        .json();
    std::fs::write(
        dir.join(format!("{name}.crt.pem")),
        format!(
            "{}{}",
            doc["certificate"].as_str().unwrap(),
            doc["chain"].as_str().unwrap()
        ),
    )
    .unwrap();
    std::fs::copy(key, dir.join(format!("{name}.key.pem"))).unwrap();
    server.client(name)
}

/// A small tmpfs mounted for one test (root only), unmounted when dropped.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            text(&out)
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system with a file of zeros until it is full; returns the file.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let small = vec![0u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
