//! containerd's configuration: read back with the toml crate, and accepted by the containerd
//! that reads it (`containerd --config <file> config dump`, which merges the file into its
//! defaults and prints the result): Debian's containerd 1.6 for version 2, and for versions 3
//! and 4 a containerd 2.x named by `KILN_CONTAINERD_2_BIN=<path>` (opt-in, like the Kubernetes binaries:
//! kiln's base OS has no 2.x). A key containerd does not know is silently dropped, so each value
//! kiln sets is looked up in the dump, where the release keeps it.

use std::path::Path;
use std::process::Command;

use kiln_units::{ContainerdConfig, ContainerdVersion, containerd_config};

fn config(version: ContainerdVersion) -> ContainerdConfig {
    containerd_config(version).expect("a supported containerd")
}

fn config_text(version: ContainerdVersion) -> String {
    config(version).to_toml().expect("TOML")
}

#[test]
fn the_toml_crate_reads_back_every_key_of_version_2() {
    let table: toml::Table = config_text(ContainerdVersion::V1_6)
        .parse()
        .expect("valid TOML");
    assert_eq!(table["version"].as_integer(), Some(2));
    let cri = &table["plugins"]["io.containerd.grpc.v1.cri"];
    assert_eq!(cri["sandbox_image"].as_str(), Some("kiln.local/pause:3.2"));
    assert_eq!(
        cri["containerd"]["default_runtime_name"].as_str(),
        Some("runc")
    );
    let runc = &cri["containerd"]["runtimes"]["runc"];
    assert_eq!(runc["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert_eq!(cri["cni"]["bin_dir"].as_str(), Some("/usr/lib/cni"));
    assert_eq!(cri["cni"]["conf_dir"].as_str(), Some("/etc/cni/net.d"));

    let typed: kiln_units::ContainerdConfigV2 =
        toml::from_str(&config_text(ContainerdVersion::V1_6)).expect("typed");
    assert_eq!(ContainerdConfig::V2(typed), config(ContainerdVersion::V1_6));
}

#[test]
fn the_toml_crate_reads_back_every_key_of_version_4() {
    let text = config_text(ContainerdVersion::V2_4);
    let table: toml::Table = text.parse().expect("valid TOML");
    assert_eq!(table["version"].as_integer(), Some(4));
    let plugins = table["plugins"].as_table().expect("plugins");
    assert_eq!(
        plugins.keys().collect::<Vec<_>>(),
        [
            "io.containerd.cri.v1.images",
            "io.containerd.cri.v1.runtime"
        ]
    );
    let images = &plugins["io.containerd.cri.v1.images"];
    assert_eq!(
        images["pinned_images"]["sandbox"].as_str(),
        Some("kiln.local/pause:3.2")
    );
    let runtime = &plugins["io.containerd.cri.v1.runtime"];
    assert_eq!(
        runtime["containerd"]["default_runtime_name"].as_str(),
        Some("runc")
    );
    let runc = &runtime["containerd"]["runtimes"]["runc"];
    assert_eq!(runc["runtime_type"].as_str(), Some("io.containerd.runc.v2"));
    assert_eq!(runc["options"]["SystemdCgroup"].as_bool(), Some(true));
    assert_eq!(
        runtime["cni"]["bin_dirs"].as_array().map(Vec::as_slice),
        Some(&[toml::Value::from("/opt/cni/bin")][..])
    );
    assert_eq!(runtime["cni"]["conf_dir"].as_str(), Some("/etc/cni/net.d"));
    // Nothing of version 2 is left: containerd 2.x would migrate a `grpc.v1.cri` table, but
    // kiln writes the format natively.
    assert!(!text.contains("grpc.v1.cri") && !text.contains("sandbox_image"));

    let typed: kiln_units::ContainerdConfigV3 = toml::from_str(&text).expect("typed");
    assert_eq!(ContainerdConfig::V3(typed), config(ContainerdVersion::V2_4));
}

#[test]
fn the_format_follows_the_containerd_release() {
    let version = |major, minor| ContainerdVersion { major, minor };
    for (containerd, format) in [
        (version(1, 6), Some(2)),
        (version(1, 7), Some(2)),
        (version(2, 0), None),
        (version(2, 1), Some(3)),
        (version(2, 2), Some(3)),
        (version(2, 3), Some(4)),
        (version(2, 4), Some(4)),
        (version(3, 0), None),
        (version(0, 9), None),
    ] {
        assert_eq!(
            containerd_config(containerd)
                .ok()
                .map(|config| config.version()),
            format,
            "containerd {containerd}"
        );
    }
    let error = containerd_config(version(2, 0)).expect_err("2.0 is refused");
    assert_eq!(
        error.to_string(),
        "containerd 2.0: kiln writes no configuration file this release reads\n  help: containerd 1.x reads version 2, containerd 2.1 and 2.2 version 3, 2.3 and later version 4"
    );
    // Kubernetes picks the release: 1.x through 1.34, 2.x (the package set's) from 1.35.
    for (kubernetes, containerd) in [
        ("1.20.2", ContainerdVersion::V1_6),
        ("1.34.0", ContainerdVersion::V1_6),
        ("1.35.0", ContainerdVersion::V2_4),
        ("1.36.0", ContainerdVersion::V2_4),
        ("1.37.2", ContainerdVersion::V2_4),
    ] {
        let kubernetes = kubernetes.parse().expect("a version");
        assert_eq!(
            ContainerdVersion::for_kubernetes(kubernetes),
            containerd,
            "{kubernetes}"
        );
    }
}

/// `containerd --config <file> config dump` with kiln's file, as TOML; fails the test when
/// containerd refuses the file or warns about it.
fn dump(containerd: &Path, text: &str) -> toml::Table {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).expect("write config.toml");
    let output = kiln_testkit::run(
        Command::new(containerd)
            .arg("--config")
            .arg(&path)
            .args(["config", "dump"]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} refuses the file: {stderr}",
        containerd.display()
    );
    assert!(
        !stderr.contains("level=warning") && !stderr.contains("level=error"),
        "{} warns: {stderr}",
        containerd.display()
    );
    String::from_utf8_lossy(&output.stdout)
        .parse()
        .expect("containerd dumps TOML")
}

/// The value at `path` in containerd's dump.
fn dumped(dump: &toml::Table, path: &[&str]) -> toml::Value {
    let mut value = toml::Value::Table(dump.clone());
    for key in path {
        value = value
            .get(key)
            .unwrap_or_else(|| panic!("containerd's dump has no {path:?}"))
            .clone();
    }
    value
}

#[test]
fn containerd_1_6_accepts_version_2() {
    let containerd = kiln_testkit::tool("containerd", "containerd");
    let dump = dump(&containerd, &config_text(ContainerdVersion::V1_6));
    let cri = ["plugins", "io.containerd.grpc.v1.cri"];
    let at = |rest: &[&str]| dumped(&dump, &[&cri[..], rest].concat());
    assert_eq!(
        at(&["sandbox_image"]).as_str(),
        Some("kiln.local/pause:3.2")
    );
    assert_eq!(at(&["cni", "bin_dir"]).as_str(), Some("/usr/lib/cni"));
    assert_eq!(at(&["cni", "conf_dir"]).as_str(), Some("/etc/cni/net.d"));
    assert_eq!(
        at(&["containerd", "runtimes", "runc", "options", "SystemdCgroup"]).as_bool(),
        Some(true)
    );
    assert_eq!(
        at(&["containerd", "runtimes", "runc", "runtime_type"]).as_str(),
        Some("io.containerd.runc.v2")
    );
}

#[test]
fn containerd_2_accepts_its_version() {
    let Some(containerd) = std::env::var_os("KILN_CONTAINERD_2_BIN") else {
        eprintln!(
            "KILN_CONTAINERD_2_BIN is not set: containerd 2.x does not check versions 3 and 4"
        );
        return;
    };
    let containerd = Path::new(&containerd);
    let version = kiln_testkit::run(Command::new(containerd).arg("--version"));
    let version = String::from_utf8_lossy(&version.stdout);
    // `containerd github.com/containerd/containerd/v2 2.4.2+unknown ...`
    let release = version
        .split_whitespace()
        .find_map(|word| word.strip_prefix("2."))
        .and_then(|rest| rest.split('.').next()?.parse().ok())
        .map(|minor| ContainerdVersion { major: 2, minor })
        .unwrap_or_else(|| panic!("{} is not containerd 2.x: {version}", containerd.display()));
    let config = containerd_config(release).expect("a supported release");
    // A file of an older version would be migrated with a warning, which `dump` refuses.
    let dump = dump(containerd, &config.to_toml().expect("TOML"));
    assert_eq!(
        dumped(&dump, &["version"]).as_integer(),
        Some(i64::from(config.version()))
    );
    let images = ["plugins", "io.containerd.cri.v1.images"];
    let runtime = ["plugins", "io.containerd.cri.v1.runtime"];
    let image = |rest: &[&str]| dumped(&dump, &[&images[..], rest].concat());
    let run = |rest: &[&str]| dumped(&dump, &[&runtime[..], rest].concat());
    assert_eq!(
        image(&["pinned_images", "sandbox"]).as_str(),
        Some("kiln.local/pause:3.2")
    );
    assert_eq!(
        run(&["cni", "bin_dirs"]).as_array().map(Vec::as_slice),
        Some(&[toml::Value::from("/opt/cni/bin")][..])
    );
    assert_eq!(run(&["cni", "conf_dir"]).as_str(), Some("/etc/cni/net.d"));
    assert_eq!(
        run(&["containerd", "default_runtime_name"]).as_str(),
        Some("runc")
    );
    assert_eq!(
        run(&["containerd", "runtimes", "runc", "runtime_type"]).as_str(),
        Some("io.containerd.runc.v2")
    );
    assert_eq!(
        run(&["containerd", "runtimes", "runc", "options", "SystemdCgroup"]).as_bool(),
        Some(true)
    );
    // The values are kiln's, not containerd's defaults: an empty file dumps others.
    let defaults = self::dump(containerd, &format!("version = {}\n", config.version()));
    let default_at = |path: &[&str]| dumped(&defaults, path);
    assert_ne!(
        default_at(&[
            "plugins",
            "io.containerd.cri.v1.images",
            "pinned_images",
            "sandbox"
        ]),
        image(&["pinned_images", "sandbox"])
    );
    assert_ne!(
        default_at(&["plugins", "io.containerd.cri.v1.runtime", "cni", "bin_dirs"]),
        run(&["cni", "bin_dirs"])
    );
    let systemd_cgroup = ["containerd", "runtimes", "runc", "options", "SystemdCgroup"];
    assert_ne!(
        default_at(&[&runtime[..], &systemd_cgroup[..]].concat()),
        run(&systemd_cgroup)
    );
}
