//! PostgreSQL and start-script helpers shared by the cluster tests and the cluster benchmark
//! (which includes this file by path).

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// The environment lines (`export K='V'`) a start script prints.
pub fn exports(out: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// Runs `scripts/NAME ARGS…` and returns the environment it prints; panics with its output
/// when it fails.
pub fn script(name: &str, args: &[&str]) -> Vec<(String, String)> {
    let out = Command::new("bash")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scripts")
                .join(name),
        )
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exports(&out.stdout)
}

/// One variable of such an environment.
pub fn var<'a>(env: &'a [(String, String)], key: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{key} missing from {env:?}"))
}

/// Runs `sql` with psql against `url` (password from `password_file`); its unaligned output.
pub fn psql(url: &str, password_file: &Path, sql: &str) -> String {
    let password = std::fs::read_to_string(password_file).unwrap();
    let out = Command::new("psql")
        .args(["-qAt", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .env("PGPASSWORD", password.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    format!("{}/{db}", url.rsplit_once('/').unwrap().0)
}
