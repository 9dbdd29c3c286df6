//! `signet` on the token `SIGNET_TEST_TOKEN` names (SoftHSM2, kryoptic, the p11-kit remote
//! token), configured as an operator would: a config file naming the module, the token label
//! and a PIN file; `ca init`; then `serve`.

use std::path::PathBuf;
use std::process::{Command, Output};

use signet_softhsm::TestToken;

use super::{text, Data, Server, BIN};

/// A configured data directory on the test token, and the server once started.
pub struct Configured {
    pub token: TestToken,
    pub config: PathBuf,
    pub server: Option<Server>,
    data: Option<Data>,
}

impl Configured {
    /// Writes the config (`extra` is appended: more TOML sections) and runs `ca init`.
    pub fn init(extra: &str) -> Self {
        let token = TestToken::new().unwrap();
        let data = Data::new();
        let pin = data.join("hsm.pin");
        super::write_secret(&pin, token.pin.expose());
        let config = data.join("signet.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\n[hsm]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{}\"\npin_file = \"{}\"\n{extra}",
                data.path().display(),
                token.module.display(),
                token.label,
                pin.display()
            ),
        )
        .unwrap();
        let configured = Configured {
            token,
            config,
            server: None,
            data: Some(data),
        };
        let init = configured.run(&["ca", "init", "--trust-domain", "smoke.example"]);
        assert!(
            init.status.success(),
            "{}: {}",
            configured.token.kind.name(),
            text(&init)
        );
        configured
    }

    /// The data directory (before `serve`, or after `stop`).
    pub fn data(&self) -> &Data {
        match (&self.data, &self.server) {
            (Some(d), _) => d,
            (None, Some(s)) => &s.data,
            (None, None) => unreachable!("the data directory is either here or the server's"),
        }
    }

    fn env(&self) -> Vec<(&str, &str)> {
        self.token
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    /// Runs `signet --config CONFIG ARGS` with the token's environment.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env("SIGNET_LOG", "warn,cryptoki=off");
        for (k, v) in self.env() {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// Starts `serve` (its log in the data directory's server.log).
    pub fn serve(&mut self) {
        let data = self.data.take().expect("not serving yet");
        let log = data.join("server.log");
        let conf = self.config.to_str().unwrap().to_string();
        let mut env = self.env();
        env.push(("SIGNET_CONFIG", &conf));
        let server = Server::start_with(data, &env, &[], &[], Some(&log));
        self.server = Some(server);
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("serving")
    }

    /// Stops the server, keeping the data directory.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            self.data = Some(server.stop());
        }
    }
}
