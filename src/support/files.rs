//! Files under the data directory: secrets readable only by their owner, public files written
//! whole (a reader never sees half a certificate).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Makes a directory (and parents) readable only by its owner.
pub fn mkdir_private(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Writes a file readable only by its owner: mode 0600 from creation, content synced.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Writes a public file atomically: a temporary file beside it (its own per call, so writers at
/// the same time do not rename each other's), synced, then renamed over it.
pub fn write_public(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_0600_and_directories_0700() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        mkdir_private(&sub).unwrap();
        let secret = sub.join("s");
        write_private(&secret, b"x").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&sub), 0o700);
        assert_eq!(mode(&secret), 0o600);
        let public = sub.join("p.pem");
        write_public(&public, b"one").unwrap();
        write_public(&public, b"two").unwrap();
        assert_eq!(std::fs::read(&public).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(&sub).unwrap().count(),
            2,
            "no temporary file left"
        );
        // Writers at the same time all succeed, and the file is one of theirs, whole.
        std::thread::scope(|s| {
            for i in 0..8 {
                let public = &public;
                s.spawn(move || {
                    for _ in 0..20 {
                        write_public(public, format!("writer {i}").as_bytes()).unwrap();
                    }
                });
            }
        });
        assert!(std::fs::read_to_string(&public)
            .unwrap()
            .starts_with("writer "));
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 2);
    }
}
