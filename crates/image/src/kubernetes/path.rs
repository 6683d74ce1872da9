//! The `path` source: binaries copied from a local directory, pinned to the
//! directory's content hash.

use std::fs::File;
use std::path::{Path, PathBuf};

use kiln_graph::{BuildContext, BuildError, Builder, Params};
use kiln_store::{Digest, tree_hash};

use super::{KUBERNETES_BINARIES, check_binary_names, install_binary, write_version};
use crate::error::ImageError;

/// Copies the Kubernetes binaries from a directory that holds them by name
/// (other files there are ignored, but are part of its content hash).
///
/// The directory is hashed with [`tree_hash`] when the builder is made, and
/// that hash (not the path) is the builder's identity: the same binaries
/// anywhere give the same store path, and a directory that changed before
/// the build fails it, naming both hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathKubernetes {
    version: String,
    dir: PathBuf,
    content_hash: Digest,
}

impl PathKubernetes {
    /// Hashes `dir`, which must hold every one of [`KUBERNETES_BINARIES`];
    /// `version` (such as `v1.20.2`) is written to `VERSION`.
    ///
    /// # Errors
    ///
    /// If a binary is missing or the directory cannot be read.
    pub fn new(version: &str, dir: &Path) -> Result<PathKubernetes, ImageError> {
        let present: Vec<&str> = KUBERNETES_BINARIES
            .iter()
            .copied()
            .filter(|name| dir.join(name).is_file())
            .collect();
        check_binary_names("path", present.into_iter()).map_err(|error| with_dir(error, dir))?;
        Ok(PathKubernetes {
            version: version.to_owned(),
            dir: dir.to_owned(),
            content_hash: tree_hash(dir)?,
        })
    }

    /// Like [`PathKubernetes::new`], but pinned to `content_hash` (from a
    /// spec, say) instead of the directory's hash now: a directory with
    /// other contents fails the build, naming both hashes.
    pub fn pinned(version: &str, dir: &Path, content_hash: Digest) -> PathKubernetes {
        PathKubernetes {
            version: version.to_owned(),
            dir: dir.to_owned(),
            content_hash,
        }
    }

    /// The directory's content hash this builder is pinned to.
    pub fn content_hash(&self) -> Digest {
        self.content_hash
    }

    fn build_into(&self, out: &Path) -> Result<(), ImageError> {
        let actual = tree_hash(&self.dir)?;
        if actual != self.content_hash {
            return Err(ImageError::DirectoryChanged {
                dir: self.dir.clone(),
                expected: self.content_hash,
                actual,
            });
        }
        for name in KUBERNETES_BINARIES {
            let path = self.dir.join(name);
            let mut file = File::open(&path).map_err(|error| ImageError::io(&path, error))?;
            install_binary(out, name, &mut file)?;
        }
        write_version(out, &self.version)
    }
}

impl Builder for PathKubernetes {
    fn kind(&self) -> &str {
        "kiln-image.kubernetes.path"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        // Not the directory: the binaries are what they are wherever they lie.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "kebab-case")]
        struct Encoded<'a> {
            version: &'a str,
            content_hash: String,
        }
        Params::of(&Encoded {
            version: &self.version,
            content_hash: self.content_hash.to_string(),
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        self.build_into(ctx.out()).map_err(BuildError::from_error)
    }
}

fn with_dir(error: ImageError, dir: &Path) -> ImageError {
    match error {
        ImageError::Binaries {
            source_kind,
            reason,
        } => ImageError::Binaries {
            source_kind,
            reason: format!("{} is {reason}", dir.display()),
        },
        other => other,
    }
}
