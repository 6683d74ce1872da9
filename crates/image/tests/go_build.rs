//! A Go package built for real, as kiln builds every Go package: the CNI project's `loopback`
//! plugin at v1.10.0, from the machine's Go module proxy with the machine's Go (which must be
//! the pinned 1.26.8). The module download must have the pinned content hash (so it is the
//! same bytes anywhere), the version stamp must reach the binary, the binary must run, and a
//! rebuild in another store must give the same bytes. A wrong vendor hash fails naming both.

use std::process::Command;

use kiln_graph::{DrvId, EvalOptions, Graph, NullObserver};
use kiln_image::{go::go_derivations, packages::PackageSet};
use kiln_store::Store;

const VENDOR_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn declaration(vendor_hash: &str) -> String {
    format!(
        r#"
description = "the loopback CNI plugin"
install = "usr/lib/cni"

[go]
module = "github.com/containernetworking/plugins"
cgo = false
ldflags = ["-s", "-w", "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v{{version}}"]

[go.binaries]
loopback = "github.com/containernetworking/plugins/plugins/main/loopback"

[[versions]]
version = "1.10.0"
go = "1.26.8"
vendor-hash = "{vendor_hash}"
"#
    )
}

fn build(store_dir: &std::path::Path, vendor_hash: &str) -> Result<std::path::PathBuf, String> {
    let text = declaration(vendor_hash);
    let set = PackageSet::parse([("cni-loopback.toml", text.as_str())]).expect("parses");
    let package = set.package("cni-loopback").expect("declared");
    let version = set.version("cni-loopback", "1.10.0").expect("declared");
    let derivations = go_derivations(package, version, "modules").expect("a Go version");
    let mut graph = Graph::new();
    graph.add("modules", derivations.modules).expect("add");
    graph.add("loopback", derivations.build).expect("add");
    let graph = graph.validate().expect("valid");
    let store = Store::open(store_dir).expect("store");
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .map_err(|error| error.to_string())?;
    Ok(evaluation.outputs[&DrvId::from("loopback")].path.clone())
}

#[test]
fn a_go_package_builds_reproducibly_with_its_version_stamp() {
    let first_store = tempfile::tempdir().expect("tempdir");
    // The pinned hash first: a wrong one fails naming what the download hashes to.
    let error = build(&first_store.path().join("store"), VENDOR_HASH)
        .expect_err("a wrong vendor hash is refused");
    let actual = error
        .split("produced content hash ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("the error names the download's hash: {error}"))
        .to_owned();
    assert!(error.contains(VENDOR_HASH), "{error}");
    assert_eq!(
        actual, PINNED,
        "the module download is not the pinned bytes: {error}"
    );

    let output = build(&first_store.path().join("store"), PINNED).expect("builds");
    let loopback = output.join("bin/loopback");
    assert_eq!(
        std::fs::read_to_string(output.join("VERSION")).expect("VERSION"),
        "v1.10.0\n"
    );
    let run = Command::new(&loopback)
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .output()
        .expect("runs");
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(said.contains("supportedVersions"), "{said}");
    let about = Command::new(&loopback).env_clear().output().expect("runs");
    let about = String::from_utf8_lossy(&about.stderr).into_owned()
        + &String::from_utf8_lossy(&about.stdout);
    assert!(about.contains("v1.10.0"), "the version stamp: {about}");

    // `go version -m`: the pinned toolchain, the flags, and no path of this machine.
    let info = Command::new("go")
        .args(["version", "-m"])
        .arg(&loopback)
        .output()
        .expect("go version -m");
    let info = String::from_utf8_lossy(&info.stdout);
    // The first line is the file's own path; what the binary records follows.
    let info = info.split_once('\n').map_or("", |(_, recorded)| recorded);
    assert!(info.contains("build\tGOAMD64=v1"), "{info}");
    assert!(info.contains("-trimpath=true"), "{info}");
    assert!(info.contains("CGO_ENABLED=0"), "{info}");
    assert!(!info.contains("/tmp"), "{info}");

    // Another store, another scratch directory: the same bytes.
    let second_store = tempfile::tempdir().expect("tempdir");
    let again = build(&second_store.path().join("store"), PINNED).expect("builds again");
    let bytes = |path: &std::path::Path| std::fs::read(path.join("bin/loopback")).expect("read");
    assert_eq!(bytes(&output), bytes(&again));
    let names = |path: &std::path::Path| {
        path.file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(names(&output), names(&again), "the same store path");
}

/// The content hash of the loopback plugin's module download (go.mod, go.sum, vendor/,
/// SOURCE_DATE) with Go 1.26.8.
const PINNED: &str = "bb59b867703438a7836b301e1ea1ffd430ed6c86a2b18df1ff9a3398e4682a92";
