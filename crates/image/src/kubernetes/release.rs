//! The `release` source: binaries downloaded one URL each, every one checked
//! against its pinned SHA-256.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kiln_graph::{BuildContext, BuildError, Builder, Params};
use kiln_store::Digest;

use super::{check_binary_names, install_binary, write_version};
use crate::error::ImageError;

/// Where to download one binary, and the SHA-256 it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseBinary {
    /// An `http://` URL (or `https://` with the crate's `https` feature).
    pub url: String,
    /// The binary's SHA-256.
    pub sha256: Digest,
}

/// Downloads each of the Kubernetes binaries and checks its SHA-256.
///
/// Its identity is the version and the SHA-256s, not the URLs: the bytes
/// are pinned, so moving to a mirror changes no store path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseKubernetes {
    version: String,
    binaries: BTreeMap<String, ReleaseBinary>,
}

/// How long one download may take, end to end.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl ReleaseKubernetes {
    /// `binaries` must name exactly [`KUBERNETES_BINARIES`](super::KUBERNETES_BINARIES);
    /// `version` (such as `v1.20.2`) is written to `VERSION`.
    ///
    /// # Errors
    ///
    /// If a binary is missing or an unknown one is listed.
    pub fn new(
        version: &str,
        binaries: BTreeMap<String, ReleaseBinary>,
    ) -> Result<ReleaseKubernetes, ImageError> {
        check_binary_names("release", binaries.keys().map(String::as_str))?;
        Ok(ReleaseKubernetes {
            version: version.to_owned(),
            binaries,
        })
    }

    fn build_into(&self, out: &Path, report: &dyn Fn(&str)) -> Result<(), ImageError> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(DOWNLOAD_TIMEOUT))
            .build()
            .into();
        for (name, binary) in &self.binaries {
            report(&format!("downloading {name} from {}", binary.url));
            let download_error = |reason: String| ImageError::Download {
                binary: name.clone(),
                url: binary.url.clone(),
                reason,
            };
            let response = agent
                .get(&binary.url)
                .call()
                .map_err(|error| download_error(error.to_string()))?;
            let mut reader = response.into_body().into_reader();
            let actual = install_binary(out, name, &mut reader).map_err(|error| match error {
                ImageError::Io { source, .. } => download_error(source.to_string()),
                other => other,
            })?;
            if actual != binary.sha256 {
                return Err(ImageError::ChecksumMismatch {
                    binary: name.clone(),
                    origin: binary.url.clone(),
                    expected: binary.sha256,
                    actual,
                });
            }
        }
        write_version(out, &self.version)
    }
}

impl Builder for ReleaseKubernetes {
    fn kind(&self) -> &str {
        "kiln-image.kubernetes.release"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        // Not the URLs: any copy with the same SHA-256 is the same binary.
        #[derive(serde::Serialize)]
        struct Encoded<'a> {
            version: &'a str,
            sha256: BTreeMap<&'a str, String>,
        }
        Params::of(&Encoded {
            version: &self.version,
            sha256: self
                .binaries
                .iter()
                .map(|(name, binary)| (name.as_str(), binary.sha256.to_string()))
                .collect(),
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        self.build_into(ctx.out(), &|message| ctx.report(message))
            .map_err(BuildError::from_error)
    }
}
