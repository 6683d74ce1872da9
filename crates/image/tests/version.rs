//! What the Debian build stamps into the binaries: `SOURCE_DATE_EPOCH` from
//! the changelog, and the version file and environment that upstream's
//! `hack/lib/version.sh` (a fixture copy) turns into linker flags.

use std::path::Path;
use std::process::Command;

use kiln_image::{
    ImageError,
    kubernetes::{
        KubeVersion, KubernetesSource, build_environment, kubernetes_binaries, source_date_epoch,
        upstream_version,
    },
    lock::Lock,
    resolve::AptSources,
};

fn lock() -> Lock {
    Lock::parse(&kiln_testkit::lock_text(), "kiln.lock").expect("the repository's lock parses")
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn source_date_epoch_matches_dpkg_parsechangelog() {
    let path = fixture("changelog");
    let changelog = std::fs::read_to_string(&path).expect("read a file");
    let epoch = source_date_epoch(&changelog, &path).expect("the fixture changelog has a date");
    assert_eq!(epoch, 1_749_422_427);
    // dpkg's own parser, when present, is the independent oracle.
    if let Ok(output) = Command::new("dpkg-parsechangelog")
        .arg("-l")
        .arg(&path)
        .args(["-S", "Timestamp"])
        .output()
    {
        assert!(output.status.success());
        assert_eq!(
            String::from_utf8_lossy(&output.stdout).trim(),
            epoch.to_string()
        );
    }
}

#[test]
fn a_changelog_without_a_date_names_the_file_and_line() {
    let text = "kubernetes (1.0-1) bookworm; urgency=medium\n\n  * x\n\n -- Someone <a@example.org>  yesterday\n";
    let error = source_date_epoch(text, Path::new("debian/changelog"))
        .expect_err("a changelog without a date");
    assert!(
        matches!(error, ImageError::Source { line: 5, .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("debian/changelog:5: \"yesterday\" is not a date"),
        "{error}"
    );
}

#[test]
fn the_version_stamp_comes_from_the_archive() {
    let script = std::fs::read_to_string(fixture("version.sh")).expect("read a file");
    let version =
        KubeVersion::from_version_script(&script).expect("the fixture has a version stamp");
    assert_eq!(
        version,
        KubeVersion {
            commit: "faecb196815e248d3ecfb03c680a4507229c2a56".to_owned(),
            tree_state: "clean".to_owned(),
            version: "v1.20.2".to_owned(),
            major: "1".to_owned(),
            minor: "20".to_owned(),
        }
    );
    assert_eq!(
        format!("v{}", upstream_version(&lock().kubernetes.version)),
        version.version
    );
    assert_eq!(KubeVersion::from_version_script("#!/bin/bash\n"), None);
}

#[test]
fn upstreams_version_script_reads_our_environment() {
    // Run upstream's `kube::version::ldflags` with the build's environment
    // and our version file: the flags must carry the changelog's date, the
    // stamp, and nothing from git or the clock.
    let script = std::fs::read_to_string(fixture("version.sh")).expect("read a file");
    let version =
        KubeVersion::from_version_script(&script).expect("the fixture has a version stamp");
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let version_file = scratch.path().join("kube-version");
    std::fs::write(&version_file, version.version_file()).expect("write a file");
    let environment = build_environment(1_749_422_427, &version_file, scratch.path());
    let output = Command::new("bash")
        .env_clear()
        .envs(environment)
        .env("KUBE_GO_PACKAGE", "k8s.io/kubernetes")
        .env("KUBE_ROOT", scratch.path())
        .arg("-c")
        .arg(format!(
            "set -eu; source {}; kube::version::ldflags",
            fixture("version.sh").display()
        ))
        .output()
        .expect("run the command");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let flags = String::from_utf8_lossy(&output.stdout);
    for expected in [
        "k8s.io/component-base/version.buildDate=2025-06-08T22:40:27Z'",
        "k8s.io/component-base/version.gitCommit=faecb196815e248d3ecfb03c680a4507229c2a56'",
        "k8s.io/component-base/version.gitTreeState=clean'",
        "k8s.io/component-base/version.gitVersion=v1.20.2'",
        "k8s.io/component-base/version.gitMajor=1'",
        "k8s.io/component-base/version.gitMinor=20'",
        "k8s.io/client-go/pkg/version.gitVersion=v1.20.2'",
    ] {
        assert!(flags.contains(expected), "{expected} not in {flags}");
    }
}

#[test]
fn the_build_scripts_find_only_the_notest_tag_in_goflags() {
    // hack/lib/golang.sh takes `sed 's|.*-tags=\([^-]*\).*|\1|'` of GOFLAGS
    // as extra build tags; the other flags must not leak into them.
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let environment = build_environment(0, &scratch.path().join("v"), scratch.path());
    let goflags = &environment
        .iter()
        .find(|(name, _)| name == "GOFLAGS")
        .expect("GOFLAGS is set")
        .1;
    assert!(goflags.split_whitespace().any(|flag| flag == "-trimpath"));
    let output = Command::new("bash")
        .env("GOFLAGS", goflags)
        .arg("-c")
        .arg(r#"echo "selinux,notest,$(echo "${GOFLAGS:-}" | sed -e 's|.*-tags=\([^-]*\).*|\1|')""#)
        .output()
        .expect("run the command");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "selinux,notest,notest\n"
    );
}

#[test]
fn only_a_debian_source_with_a_recorded_build_is_a_fixed_output_derivation() {
    let lock = lock();
    let pinned = kubernetes_binaries(&KubernetesSource::Debian {
        lock: lock.kubernetes.clone(),
        sources: AptSources::default(),
    })
    .expect("describe the derivation");
    assert_eq!(
        pinned.addressing,
        kiln_graph::Addressing::Fixed {
            content_hash: lock
                .kubernetes
                .content_hash
                .expect("kiln.lock pins a build")
        }
    );
    // A version the lock has no build for (the archive moved on) is addressed by its inputs.
    let mut moved = lock.kubernetes.clone();
    moved.version = "1.20.5+really1.20.2-1.1+deb12u2".to_owned();
    moved.content_hash = None;
    let unpinned = kubernetes_binaries(&KubernetesSource::Debian {
        lock: moved,
        sources: AptSources::default(),
    })
    .expect("describe the derivation");
    assert_eq!(unpinned.addressing, kiln_graph::Addressing::Inputs);
}
