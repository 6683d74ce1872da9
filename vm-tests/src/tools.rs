//! The test tools a scenario judges a cluster with: upstream programs (kube-bench, the
//! end-to-end suite's images) that the guests get on a read-only disk, never part of a node
//! image, and the suite itself, which runs on the host.

use std::path::PathBuf;

use crate::Error;

/// The test tools disk and what is on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// The squashfs every guest gets as a read-only disk (virtio serial
    /// [`crate::TOOLS_DISK_SERIAL`]), holding each tool's package as `<package>/`:
    /// `kube-bench/bin/kube-bench` and `kube-bench/share/kube-bench/cfg/`.
    pub disk: PathBuf,
    /// kube-bench's package on the host (the same files as the disk's `kube-bench/`): the
    /// harness reads its benchmarks' version mapping from here.
    pub kube_bench: PathBuf,
    /// The end-to-end suite's package on the host (`bin/e2e.test`, `bin/ginkgo`, `bin/agnhost`)
    /// when the package set has the suite of the cluster's Kubernetes version; its images are
    /// on the disk under `conformance/images/`.
    pub e2e: Option<PathBuf>,
}

/// Where a guest mounts the tools disk.
pub const TOOLS_MOUNT: &str = "/run/kiln-tools";

/// kube-bench's configuration directory, relative to its package.
pub const KUBE_BENCH_CONFIG: &str = "share/kube-bench/cfg";

/// The shell commands that mount the tools disk at [`TOOLS_MOUNT`] (read-only; nothing if it
/// is mounted already).
pub fn mount_script() -> String {
    format!(
        "mkdir -p {TOOLS_MOUNT} && {{ mountpoint -q {TOOLS_MOUNT} || \
         mount -t squashfs -o ro /dev/disk/by-id/virtio-{} {TOOLS_MOUNT}; }}",
        crate::TOOLS_DISK_SERIAL
    )
}

/// The CIS benchmark kube-bench judges Kubernetes 1.`minor` by, from the `version_mapping`
/// of its `config.yaml` (`config`): the mapped one, or, for a release newer than any it maps,
/// the one of the newest release it maps (kube-bench lags Kubernetes; the newest CIS
/// benchmark is the closest judge there is). Returns the benchmark and, in the second case, a
/// note saying so.
///
/// # Errors
///
/// [`Error::Check`] if the mapping is missing, or has no entry for this release while it maps
/// a newer one (a gap is not guessed across).
pub fn kube_bench_benchmark(config: &str, minor: u32) -> crate::Result<(String, Option<String>)> {
    let mut mapped: Vec<(u32, String)> = Vec::new();
    let mut inside = false;
    for line in config.lines() {
        if line.starts_with("version_mapping:") {
            inside = true;
            continue;
        }
        if !inside || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            break;
        }
        let Some((key, value)) = line.trim().split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim().trim_matches('"'), value.trim().trim_matches('"'));
        // Kubernetes releases only ("1.20"), not the distributions' keys ("eks-1.0.1").
        if let Some(release) = key.strip_prefix("1.").and_then(|m| m.parse::<u32>().ok()) {
            mapped.push((release, value.to_owned()));
        }
    }
    let refuse = |reason: String| Error::check("kube-bench's benchmark", reason);
    if let Some((_, benchmark)) = mapped.iter().find(|(release, _)| *release == minor) {
        return Ok((benchmark.clone(), None));
    }
    match mapped.iter().max_by_key(|(release, _)| *release) {
        Some((newest, benchmark)) if *newest < minor => Ok((
            benchmark.clone(),
            Some(format!(
                "kube-bench maps no benchmark to Kubernetes 1.{minor}; judged by {benchmark}, \
                 the benchmark of 1.{newest}, the newest release it maps"
            )),
        )),
        Some(_) => Err(refuse(format!(
            "kube-bench's version_mapping has no benchmark for Kubernetes 1.{minor}"
        ))),
        None => Err(refuse(
            "kube-bench's config.yaml has no version_mapping of Kubernetes releases".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
node:
  kubelet:
    bins:
      - "kubelet"

version_mapping:
  "1.19": "cis-1.20"
  "1.20": "cis-1.20"
  # comment
  "1.31": "cis-1.11"
  "1.32": "cis-1.11"
  "eks-1.0.1": "eks-1.0.1"

target_mapping:
  "cis-1.11":
    - "master"
"#;

    #[test]
    fn the_mapped_benchmark_or_the_newest_for_a_newer_release() {
        assert_eq!(
            kube_bench_benchmark(CONFIG, 20).expect("mapped"),
            ("cis-1.20".to_owned(), None)
        );
        let (benchmark, note) = kube_bench_benchmark(CONFIG, 37).expect("newer");
        assert_eq!(benchmark, "cis-1.11");
        assert!(note.expect("a note").contains("1.32"));
        // Between mapped releases, or older than all: no guess.
        assert!(kube_bench_benchmark(CONFIG, 25).is_err());
        assert!(kube_bench_benchmark(CONFIG, 15).is_err());
        assert!(kube_bench_benchmark("master: {}\n", 37).is_err());
    }

    #[test]
    fn the_mount_finds_the_disk_by_its_serial() {
        let script = mount_script();
        assert!(script.contains("/dev/disk/by-id/virtio-kiln-tools /run/kiln-tools"));
        assert!(script.contains("-o ro"));
    }
}
