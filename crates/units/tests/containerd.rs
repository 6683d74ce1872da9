//! containerd's configuration: read back with the toml crate, and accepted by Debian's
//! containerd 1.6 (`containerd --config <file> config dump`), which merges it into its defaults.

use std::process::Command;

fn config_text() -> String {
    kiln_units::containerd_config().to_toml().expect("TOML")
}

#[test]
fn the_toml_crate_reads_back_every_key() {
    let table: toml::Table = config_text().parse().expect("valid TOML");
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

    let typed: kiln_units::ContainerdConfig = toml::from_str(&config_text()).expect("typed");
    assert_eq!(typed, kiln_units::containerd_config());
}

/// The value of `key` in the TOML table `[section]` of containerd's dump.
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
fn containerd_accepts_the_configuration() {
    let containerd = kiln_testkit::tool("containerd", "containerd");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config_text()).expect("write config.toml");
    let output = kiln_testkit::run(
        Command::new(containerd)
            .arg("--config")
            .arg(&path)
            .args(["config", "dump"]),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "containerd refuses the file: {stderr}"
    );
    assert!(
        !stderr.contains("level=warning") && !stderr.contains("level=error"),
        "containerd warns: {stderr}"
    );
    let dump: toml::Table = String::from_utf8_lossy(&output.stdout)
        .parse()
        .expect("containerd dumps TOML");
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
