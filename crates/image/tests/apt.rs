//! The apt sources kiln reads: the `deb` entries of a fixture copy of a
//! machine's apt configuration, and the `deb-src` entries derived from them.

use std::path::Path;

use expect_test::expect;
use kiln_image::{
    ImageError,
    apt::{deb_src_lines, deb_src_sources},
    resolve::AptSources,
};

/// The machine's sources and their `deb-src` twins, file name to content.
fn deb_src_config(
    etc_apt: &Path,
) -> Result<std::collections::BTreeMap<String, String>, ImageError> {
    let sources = AptSources::machine(etc_apt)?;
    let mut files = sources.files().clone();
    files.extend(sources.deb_src().files().clone());
    Ok(files)
}

#[test]
fn reads_the_machines_deb_entries_and_derives_deb_src() {
    let etc_apt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/etc-apt");
    let config = deb_src_config(&etc_apt).expect("derive deb-src sources");
    let mut rendered = String::new();
    for (name, content) in &config {
        rendered.push_str(&format!("==> {name}\n{content}"));
    }
    // The disabled stanza, the `deb-src` line and the file apt ignores
    // (`*.disabled-by-farm`) give nothing.
    expect![[r#"
        ==> 50-machine-debian-src.sources
        Types: deb-src
        URIs: http://mirror.example/debian
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

        Types: deb-src
        URIs: http://mirror.example/debian-security
        Suites: bookworm-security
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
        ==> 50-machine-debian.sources
        Types: deb
        URIs: http://mirror.example/debian
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

        Types: deb
        URIs: http://mirror.example/debian-security
        Suites: bookworm-security
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
        ==> 50-machine-tools-src.list
        deb-src [signed-by=/usr/share/keyrings/tools.gpg] http://tools.example/apt stable main
        ==> 50-machine-tools.list
        deb [signed-by=/usr/share/keyrings/tools.gpg] http://tools.example/apt stable main
    "#]]
    .assert_eq(&rendered);
}

#[test]
fn the_derived_config_is_one_apt_accepts() {
    // apt-get parses the derived sources in a private configuration; it
    // needs no network to list what it would fetch.
    if std::process::Command::new("apt-get")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("apt-get is not installed; skipping");
        return;
    }
    let etc_apt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/etc-apt");
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let parts = scratch.path().join("sources.list.d");
    std::fs::create_dir_all(&parts).expect("create a directory");
    std::fs::create_dir_all(scratch.path().join("lists/partial")).expect("create a directory");
    for (name, content) in deb_src_config(&etc_apt).expect("derive deb-src sources") {
        std::fs::write(parts.join(name), content).expect("write a file");
    }
    let output = std::process::Command::new("apt-get")
        .arg("-o")
        .arg("Dir::Etc::sourcelist=/dev/null")
        .arg("-o")
        .arg(format!("Dir::Etc::sourceparts={}", parts.display()))
        .arg("-o")
        .arg(format!(
            "Dir::State::Lists={}",
            scratch.path().join("lists").display()
        ))
        .args(["--print-uris", "update"])
        .output()
        .expect("run the command");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains("http://mirror.example/debian/dists/bookworm/InRelease"),
        "{printed}"
    );
    assert!(
        printed.contains("http://mirror.example/debian-security/dists/bookworm-security/InRelease"),
        "{printed}"
    );
    assert!(
        printed.contains("http://tools.example/apt/dists/stable/InRelease"),
        "{printed}"
    );
    assert!(!printed.contains("disabled.example"), "{printed}");
}

#[test]
fn stanzas_without_deb_are_dropped() {
    assert_eq!(
        deb_src_sources("Types: deb-src\nURIs: http://a.example/\nSuites: x\n"),
        ""
    );
    assert_eq!(deb_src_sources(""), "");
    assert_eq!(
        deb_src_sources(
            "Types: deb deb-src\nURIs: http://a.example/\nSuites: x\nComponents: main\n"
        ),
        "Types: deb-src\nURIs: http://a.example/\nSuites: x\nComponents: main\n"
    );
    assert_eq!(
        deb_src_lines("# deb http://a.example/ x main\ndeb-src http://a.example/ x main\n"),
        ""
    );
}

#[test]
fn no_sources_at_all_is_an_error_naming_where_it_looked() {
    let empty = tempfile::tempdir().expect("create a temporary directory");
    let error = deb_src_config(empty.path()).expect_err("no sources to derive from");
    assert!(matches!(error, ImageError::NoAptSources { .. }));
    assert!(
        error
            .to_string()
            .contains(&empty.path().join("sources.list.d").display().to_string())
    );
}
