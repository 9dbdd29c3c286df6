//! `signet serve --demo`: a few principals, keys and client bundles to explore the API at once,
//! made through the pipeline as the operator (audited like any change) and only where they
//! are missing, so a second `--demo` start changes nothing.

use signet_hsm::KeySpec;
use signet_pki::Profile;

use super::{
    Caller, CertificateRequest, CreateKey, IssueBundle, PutPrincipal, ReadKey, ReadPrincipal,
    Service,
};
use crate::domain::keys::KeyName;
use crate::error::{Error, Result};

/// The demo's principals: name and scopes.
pub const DEMO_PRINCIPALS: &[(&str, &[&str])] = &[
    ("demo-signer", &["keys:sign:demo-*", "keys:read"]),
    ("demo-reader", &["keys:read", "certs:read", "audit:read"]),
];

/// The demo's keys.
pub const DEMO_KEYS: &[(&str, KeySpec)] = &[
    ("demo-es256", KeySpec::EcP256),
    ("demo-rsa", KeySpec::Rsa2048),
];

impl Service {
    /// Makes what the demo lacks and returns what to print: where each bundle is, and a curl
    /// line per principal against `base` (`https://host:port`).
    pub fn seed_demo(&self, base: &str) -> Result<Vec<String>> {
        let op = Caller::operator();
        let mut lines = Vec::new();
        for (name, scopes) in DEMO_PRINCIPALS {
            let exists = match self
                .execute(
                    &op,
                    ReadPrincipal {
                        name: name.to_string(),
                    },
                )
                .wait()
            {
                Ok(_) => true,
                Err(Error::NotFound(_)) => false,
                Err(e) => return Err(e),
            };
            if !exists {
                let owned = scopes.iter().map(|s| s.to_string()).collect();
                self.execute(&op, PutPrincipal::new(name.to_string(), owned))
                    .wait()?;
                lines.push(format!("demo: principal {name} ({})", scopes.join(" ")));
            }
        }
        for (name, spec) in DEMO_KEYS {
            match self
                .execute(
                    &op,
                    ReadKey {
                        name: name.to_string(),
                    },
                )
                .wait()
            {
                Ok(_) => {}
                Err(Error::NotFound(_)) => {
                    self.execute(
                        &op,
                        CreateKey {
                            name: KeyName::parse(name)?,
                            spec: *spec,
                        },
                    )
                    .wait()?;
                    lines.push(format!("demo: key {name} ({spec})"));
                }
                Err(e) => return Err(e),
            }
        }
        let clients = self.paths().clients();
        for (name, _) in DEMO_PRINCIPALS {
            let p12 = clients.join(format!("{name}.p12"));
            if !p12.exists() {
                let request = CertificateRequest {
                    csr: Vec::new(),
                    profile: Profile::Client,
                    name: name.to_string(),
                    dns: Vec::new(),
                    ips: Vec::new(),
                    ttl: None,
                };
                self.execute(&op, IssueBundle { request, p12 }).wait()?;
            }
        }
        let root = self.paths().ca().join("root.pem");
        let curl = |who: &str| {
            format!(
                "curl --cacert {} --cert {} --key {}",
                root.display(),
                clients.join(format!("{who}.crt.pem")).display(),
                clients.join(format!("{who}.key.pem")).display()
            )
        };
        lines.push(format!(
            "demo: bundles in {} (demo-signer.p12, demo-reader.p12, passwords beside them)",
            clients.display()
        ));
        lines.push(format!(
            "demo: sign:  {} --json '{{\"input\":\"aGVsbG8=\"}}' {base}/v1/keys/demo-es256/sign",
            curl("demo-signer")
        ));
        lines.push(format!(
            "demo: read:  {} {base}/v1/keys",
            curl("demo-reader")
        ));
        Ok(lines)
    }
}
