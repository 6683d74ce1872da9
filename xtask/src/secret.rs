//! The cluster's root secret on disk: the one file every key of a cluster derives from. It lives
//! in the cluster's secrets directory in kiln's data directory (never in the store, never in a
//! source tree), and only the command line reads or creates it; the libraries take the secret
//! as a value.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use kiln_pki::{ROOT_SECRET_LEN, RootSecret};

/// The root secret file could not be read, created or trusted.
#[derive(Debug, thiserror::Error)]
#[error("root secret {}: {message}", path.display())]
pub struct SecretError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// The root secret's file name in a cluster's secrets directory.
pub const ROOT_SECRET_FILE: &str = "root.secret";

/// The cluster's root secret from `dir/root.secret` (32 raw bytes, mode 0600), created from
/// the operating system's randomness if it does not exist yet.
///
/// `dir` is the cluster's secrets directory (by default `~/.local/share/kiln/secrets/<cluster>`),
/// created with mode 0700 if missing. A secret file that others may read, or of the wrong
/// length, is refused rather than used. Creation is atomic: concurrent callers agree on one
/// secret.
pub fn load_or_create_root_secret(dir: &Path) -> Result<RootSecret, SecretError> {
    let path = dir.join(ROOT_SECRET_FILE);
    let failure = |message: String| SecretError {
        path: path.clone(),
        message,
    };
    match read_root_secret(&path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        result => return result.map_err(|error| failure(error.to_string()))?,
    }

    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|error| failure(format!("creating {}: {error}", dir.display())))?;
    }
    let mut bytes = [0u8; ROOT_SECRET_LEN];
    getrandom::fill(&mut bytes)
        .map_err(|error| failure(format!("the operating system gave no randomness: {error}")))?;
    // Written whole to a private temporary file, then linked into place: a reader never sees a
    // partial secret, and of two racing creators exactly one link succeeds.
    let temporary = dir.join(format!(".{ROOT_SECRET_FILE}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        });
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, &path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => Ok(RootSecret::from_bytes(bytes)),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            read_root_secret(&path).map_err(|error| failure(error.to_string()))?
        }
        Err(error) => Err(failure(format!("creating it: {error}"))),
    }
}

/// Reads an existing root secret; the outer error is I/O, the inner one a refusal.
fn read_root_secret(path: &Path) -> std::io::Result<Result<RootSecret, SecretError>> {
    let metadata = std::fs::metadata(path)?;
    let refuse = |message: String| {
        Ok(Err(SecretError {
            path: path.to_owned(),
            message,
        }))
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return refuse(format!(
            "mode {mode:04o} lets others read it; run `chmod 600 {}`",
            path.display()
        ));
    }
    let bytes = std::fs::read(path)?;
    match RootSecret::from_slice(&bytes) {
        Ok(secret) => Ok(Ok(secret)),
        Err(error) => refuse(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_secret_is_created_once_and_guarded() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let secrets = dir.path().join(".kiln-secrets/demo");
        let first = load_or_create_root_secret(&secrets).expect("created");
        let path = secrets.join(ROOT_SECRET_FILE);
        let metadata = std::fs::metadata(&path).expect("the file exists");
        assert_eq!(metadata.len(), 32);
        assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        let directory_mode = std::fs::metadata(&secrets)
            .expect("a directory")
            .permissions()
            .mode();
        assert_eq!(directory_mode & 0o777, 0o700);
        let second = load_or_create_root_secret(&secrets).expect("read back");
        assert_eq!(first.id(), second.id());
        assert_eq!(
            std::fs::read_dir(&secrets).expect("listable").count(),
            1,
            "no temporary left"
        );

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = load_or_create_root_secret(&secrets).expect_err("readable by others");
        assert!(error.to_string().contains("chmod 600"), "{error}");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, b"short").expect("write");
        let error = load_or_create_root_secret(&secrets).expect_err("too short");
        assert!(error.to_string().contains("is 5 bytes long"), "{error}");
    }
}
