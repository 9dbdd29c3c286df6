//! A remote token of a test's own: `p11-kit server` over a fresh SoftHSM2 token
//! (`scripts/remote-token.sh`), the stand-in for a network HSM.

use std::process::Command;

use super::pg::script;

/// The remote token every node reaches through its own p11-kit-client.so.
pub struct RemoteToken {
    dir: tempfile::TempDir,
    /// What `remote-token.sh start` printed: P11_KIT_SERVER_ADDRESS, SIGNET_P11KIT_*.
    pub env: Vec<(String, String)>,
}

impl RemoteToken {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = script("remote-token.sh", &["start", dir.path().to_str().unwrap()]);
        RemoteToken { dir, env }
    }

    /// The `p11-kit server` process (each client connection is served by a child of it).
    pub fn server_pid(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.pid"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The server's children: one per client connection (one per process that loaded
    /// p11-kit-client.so).
    pub fn connections(&self) -> Vec<String> {
        let out = Command::new("pgrep")
            .args(["-P", &self.server_pid()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    /// The HSM service restarting: the server and every connection killed, the server started
    /// again over the same token (`remote-token.sh restart`).
    pub fn restart(&self, down: std::time::Duration) {
        self.restart_exporting(down, "pkcs11:token=remote");
    }

    /// The same, the server exporting the tokens `uri` matches: another token's URI makes a
    /// service that is up but shows no token (a partition not there yet).
    pub fn restart_exporting(&self, down: std::time::Duration, uri: &str) {
        script(
            "remote-token.sh",
            &[
                "restart",
                self.dir.path().to_str().unwrap(),
                &format!("{:.1}", down.as_secs_f64()),
                uri,
            ],
        );
    }

    /// Kills every connection's child with SIGKILL, as a network HSM's connections die; which.
    pub fn kill_connections(&self) -> Vec<String> {
        let children = self.connections();
        for child in &children {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
        children
    }
}

impl Drop for RemoteToken {
    fn drop(&mut self) {
        script(
            "remote-token.sh",
            &["stop", self.dir.path().to_str().unwrap()],
        );
    }
}
