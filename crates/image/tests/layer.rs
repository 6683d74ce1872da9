//! Filesystem layers built through the graph and the store, checked by Debian's `unsquashfs`:
//! every entry's mode follows the layer's rule (keys 0600, executables 0755, the rest 0644,
//! directories 0755 unless `dirs` says otherwise), everything is owned by root, units are
//! enabled, two builds give the same bytes, and two entries claiming one path fail. A layer's
//! files are hard links to its inputs' files until mksquashfs reads them: its image has the
//! bytes of one packed from a tree of copies, and the inputs are left as they were.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kiln_graph::{
    BuildContext, BuildError, Builder, Derivation, DrvId, EvalError, EvalOptions, Graph,
    NullObserver, Params,
};
use kiln_image::{
    os::base::IMAGE_EPOCH,
    os::layer::{LAYER_FILE, LayerCopy, LayerFile, LayerSpec, assemble, assemble_linked},
};
use kiln_store::Store;

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

const UNIT: &str = "\
[Unit]
Description=A unit the layer enables

[Service]
ExecStart=/usr/local/bin/tool

[Install]
WantedBy=multi-user.target
";

const GENERATED_UNIT: &str = "\
[Unit]
Description=A generated unit another one requires

[Service]
Type=oneshot
ExecStart=/bin/true

[Install]
RequiredBy=kubelet.service
";

/// A fake input: a key the renderer kept from group and others, an executable, a plain file,
/// a symbolic link and a unit, as a renderer's derivation would leave them.
#[derive(Debug)]
struct FakeInput;

impl Builder for FakeInput {
    fn kind(&self) -> &str {
        "kiln-image-test.fake-input"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        Params::none()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let out = ctx.out();
        let write = |relative: &str, contents: &str, mode: u32| -> Result<(), BuildError> {
            let path = out.join(relative);
            let parent = path.parent().expect("a parent");
            fs::create_dir_all(parent).map_err(|error| BuildError::io(parent, error))?;
            fs::write(&path, contents).map_err(|error| BuildError::io(&path, error))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .map_err(|error| BuildError::io(&path, error))
        };
        write("pki/apiserver.key", KEY, 0o400)?;
        write("pki/apiserver.crt", "certificate\n", 0o644)?;
        write("bin/tool", "#!/bin/sh\necho tool\n", 0o755)?;
        write("etc/config.txt", "plain\n", 0o644)?;
        write("etc/systemd/system/tool.service", UNIT, 0o644)?;
        let link = out.join("etc/config-link");
        std::os::unix::fs::symlink("config.txt", &link)
            .map_err(|error| BuildError::io(&link, error))
    }
}

fn spec() -> LayerSpec {
    let copy = |from: &str, to: &str| LayerCopy {
        input: "fake".into(),
        from: from.into(),
        to: to.into(),
    };
    LayerSpec {
        copies: vec![
            copy("etc", "etc"),
            // Parents that no entry names: usr and usr/local.
            copy("bin", "usr/local/bin"),
            copy("pki", "etc/kubernetes/pki"),
        ],
        files: vec![
            LayerFile {
                path: "etc/hostname".into(),
                mode: 0o644,
                contents: "node\n".into(),
            },
            LayerFile {
                path: "usr/local/sbin/generated".into(),
                mode: 0o755,
                contents: "#!/bin/sh\n".into(),
            },
            LayerFile {
                path: "etc/systemd/system/generated.service".into(),
                mode: 0o644,
                contents: GENERATED_UNIT.into(),
            },
        ],
        symlinks: BTreeMap::from([(
            "etc/localtime".to_owned(),
            "/usr/share/zoneinfo/UTC".to_owned(),
        )]),
        dirs: BTreeMap::from([("etc/kubernetes/pki".to_owned(), 0o700)]),
        enable_units: true,
    }
}

/// Builds `spec` over the fake input in a new store below `dir`; returns the layer's path.
fn build(spec: LayerSpec, dir: &Path) -> Result<PathBuf, EvalError> {
    build_with_input(spec, dir).map(|(image, _)| image)
}

/// As [`build`], also returning the fake input's store path.
fn build_with_input(spec: LayerSpec, dir: &Path) -> Result<(PathBuf, PathBuf), EvalError> {
    let mut graph = Graph::new();
    graph
        .add("fake", Derivation::new("fake-input", Arc::new(FakeInput)))
        .expect("add the input");
    graph
        .add(
            "layer",
            spec.derivation("test-layer", [("fake".to_owned(), DrvId::from("fake"))]),
        )
        .expect("add the layer");
    let graph = graph.validate().expect("a valid graph");
    let store = Store::open(&dir.join("store")).expect("open the store");
    let evaluation = graph.evaluate(&store, &EvalOptions::default(), &NullObserver)?;
    Ok((
        evaluation.outputs[&DrvId::from("layer")]
            .path
            .join(LAYER_FILE),
        evaluation.outputs[&DrvId::from("fake")].path.clone(),
    ))
}

/// One entry of `unsquashfs -lln`: its `ls -l` mode, `uid/gid`, and link target.
#[derive(Debug, PartialEq, Eq)]
struct Listed {
    mode: String,
    owner: String,
    target: Option<String>,
}

/// The layer's entries by path (relative, `""` for the root), as `unsquashfs -lln` lists them.
fn list(image: &Path) -> BTreeMap<String, Listed> {
    let output = Command::new(kiln_testkit::tool("unsquashfs", "squashfs-tools"))
        .arg("-lln")
        .arg(image)
        .env("TZ", "UTC")
        .output()
        .expect("unsquashfs runs");
    assert!(
        output.status.success(),
        "unsquashfs -lln failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8 listing");
    text.lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let mode = words.next().expect("a mode").to_owned();
            let owner = words.next().expect("an owner").to_owned();
            let (_, name) = line
                .split_once(" squashfs-root")
                .unwrap_or_else(|| panic!("no path in {line:?}"));
            let (path, target) = match name.split_once(" -> ") {
                Some((path, target)) => (path, Some(target.to_owned())),
                None => (name, None),
            };
            (
                path.trim_start_matches('/').to_owned(),
                Listed {
                    mode,
                    owner,
                    target,
                },
            )
        })
        .collect()
}

#[test]
fn unsquashfs_sees_the_layers_modes_owners_links_and_enabled_units() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let image = build(spec(), scratch.path()).expect("the layer builds");
    let listing = list(&image);
    let entry = |path: &str| {
        listing
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the layer: {listing:#?}"))
    };
    let mode = |path: &str| entry(path).mode.as_str();

    // Copied files: the key kept from group and others is 0600, the executable 0755, the rest
    // 0644, whatever the store made of their write bits.
    assert_eq!(mode("etc/kubernetes/pki/apiserver.key"), "-rw-------");
    assert_eq!(mode("etc/kubernetes/pki/apiserver.crt"), "-rw-r--r--");
    assert_eq!(mode("usr/local/bin/tool"), "-rwxr-xr-x");
    assert_eq!(mode("etc/config.txt"), "-rw-r--r--");
    assert_eq!(mode("etc/systemd/system/tool.service"), "-rw-r--r--");
    // Generated files keep their modes.
    assert_eq!(mode("etc/hostname"), "-rw-r--r--");
    assert_eq!(mode("usr/local/sbin/generated"), "-rwxr-xr-x");
    // Directories: 0755, unless `dirs` says otherwise; parents no entry names too.
    assert_eq!(mode("etc/kubernetes/pki"), "drwx------");
    for dir in [
        "",
        "etc",
        "etc/kubernetes",
        "usr",
        "usr/local",
        "usr/local/bin",
        "usr/local/sbin",
        "etc/systemd/system",
        "etc/systemd/system/multi-user.target.wants",
        "etc/systemd/system/kubelet.service.requires",
    ] {
        assert_eq!(mode(dir), "drwxr-xr-x", "mode of {dir:?}");
    }
    // Links: the copied one keeps its target, the spec's one is made.
    assert_eq!(
        entry("etc/config-link").target.as_deref(),
        Some("config.txt")
    );
    assert_eq!(
        entry("etc/localtime").target.as_deref(),
        Some("/usr/share/zoneinfo/UTC")
    );
    // Enabled units, as `systemctl enable` links them.
    assert_eq!(
        entry("etc/systemd/system/multi-user.target.wants/tool.service")
            .target
            .as_deref(),
        Some("/etc/systemd/system/tool.service")
    );
    assert_eq!(
        entry("etc/systemd/system/kubelet.service.requires/generated.service")
            .target
            .as_deref(),
        Some("/etc/systemd/system/generated.service")
    );
    for (path, listed) in &listing {
        assert_eq!(listed.owner, "0/0", "owner of {path:?}");
        if listed.mode.starts_with('l') {
            assert!(listed.target.is_some(), "{path} lists no target");
        }
    }
    // Nothing more than the spec asks for.
    let paths: Vec<&str> = listing.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "",
            "etc",
            "etc/config-link",
            "etc/config.txt",
            "etc/hostname",
            "etc/kubernetes",
            "etc/kubernetes/pki",
            "etc/kubernetes/pki/apiserver.crt",
            "etc/kubernetes/pki/apiserver.key",
            "etc/localtime",
            "etc/systemd",
            "etc/systemd/system",
            "etc/systemd/system/generated.service",
            "etc/systemd/system/kubelet.service.requires",
            "etc/systemd/system/kubelet.service.requires/generated.service",
            "etc/systemd/system/multi-user.target.wants",
            "etc/systemd/system/multi-user.target.wants/tool.service",
            "etc/systemd/system/tool.service",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/tool",
            "usr/local/sbin",
            "usr/local/sbin/generated",
        ]
    );

    // The bytes are what was copied.
    let extracted = scratch.path().join("extracted");
    kiln_testkit::unsquashfs(&image, &extracted);
    assert_eq!(
        fs::read_to_string(extracted.join("etc/kubernetes/pki/apiserver.key")).expect("key"),
        KEY
    );
    assert_eq!(
        fs::read_to_string(extracted.join("etc/systemd/system/tool.service")).expect("unit"),
        UNIT
    );
}

/// Set in the child process that builds the layer under another umask.
const CHILD_STORE: &str = "KILN_LAYER_TEST_CHILD_STORE";

/// Does nothing unless `two_builds_in_different_stores_and_umasks_give_the_same_bytes` runs
/// this test binary again with [`CHILD_STORE`] set: then it builds the layer there and prints
/// the image's path.
#[test]
fn child_builds_the_layer_when_asked() {
    if let Some(dir) = std::env::var_os(CHILD_STORE) {
        let image = build(spec(), Path::new(&dir)).expect("the layer builds");
        println!("layer-image={}", image.display());
    }
}

#[test]
fn two_builds_in_different_stores_and_umasks_give_the_same_bytes() {
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let here = build(spec(), first.path()).expect("the layer builds");
    // The same test binary, under umask 077, in another store.
    let output = Command::new("sh")
        .arg("-c")
        .arg("umask 077 && exec \"$0\" \"$@\"")
        .arg(std::env::current_exe().expect("the test binary"))
        .args([
            "--exact",
            "child_builds_the_layer_when_asked",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_STORE, second.path())
        .env("TZ", "Pacific/Kiritimati")
        .env("LC_ALL", "tr_TR.UTF-8")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let there = stdout
        .lines()
        .find_map(|line| line.split_once("layer-image=").map(|(_, path)| path))
        .unwrap_or_else(|| panic!("the child printed no layer: {stdout}"));
    assert_ne!(here, Path::new(there), "two different stores");
    let (a, b) = (
        fs::read(&here).expect("layer"),
        fs::read(there).expect("layer"),
    );
    if a != b {
        let (listing_a, listing_b) = (list(&here), list(Path::new(there)));
        let differences: Vec<String> = listing_a
            .iter()
            .filter(|(path, entry)| listing_b.get(*path) != Some(entry))
            .map(|(path, entry)| format!("{path:?}: {entry:?} vs {:?}", listing_b.get(path)))
            .collect();
        panic!(
            "the two builds' squashfs bytes differ ({} and {} bytes); entries that differ: {differences:#?}",
            a.len(),
            b.len()
        );
    }
}

#[test]
fn two_entries_claiming_one_path_fail_naming_it() {
    let file = |path: &str| LayerFile {
        path: path.into(),
        mode: 0o644,
        contents: "again\n".into(),
    };
    let cases: Vec<(LayerSpec, &str)> = vec![
        // A generated file over a copied one.
        (
            LayerSpec {
                files: vec![file("etc/config.txt")],
                ..spec()
            },
            "etc/config.txt",
        ),
        // A link over a generated file.
        (
            LayerSpec {
                symlinks: BTreeMap::from([("etc/hostname".to_owned(), "/dev/null".to_owned())]),
                ..spec()
            },
            "etc/hostname",
        ),
        // Two copies of one file.
        (
            LayerSpec {
                copies: vec![
                    LayerCopy {
                        input: "fake".into(),
                        from: "bin".into(),
                        to: "usr/local/bin".into(),
                    },
                    LayerCopy {
                        input: "fake".into(),
                        from: "bin/tool".into(),
                        to: "usr/local/bin/tool".into(),
                    },
                ],
                ..LayerSpec::default()
            },
            "usr/local/bin/tool",
        ),
    ];
    for (spec, path) in cases {
        let scratch = tempfile::tempdir().expect("tempdir");
        let error = build(spec, scratch.path()).expect_err("two entries claim one path");
        let message = error.to_string();
        assert!(
            message.contains("claim") && message.contains(path),
            "the error does not name {path}: {message}"
        );
    }
}

/// The oracle for a layer's bytes: `spec` assembled from `input` as a tree of real copies (each
/// with its layer mode set on it), packed by `mksquashfs` with the layer's options, none of
/// which concerns hard links or pseudo definitions.
fn packed_from_copies(spec: &LayerSpec, input: &Path, scratch: &Path) -> Vec<u8> {
    let tree = scratch.join("copies");
    assemble(spec, &tree, &|_| Ok(input.to_path_buf())).expect("assembles");
    let image = scratch.join("copies.squashfs");
    let epoch = IMAGE_EPOCH.to_string();
    let output = Command::new("/usr/bin/mksquashfs")
        .arg(&tree)
        .arg(&image)
        .args(["-noappend", "-quiet", "-no-progress", "-all-root"])
        .args(["-mkfs-time", &epoch, "-all-time", &epoch])
        .args(["-noI", "-noD", "-noF", "-noX", "-no-xattrs", "-b", "1M"])
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("mksquashfs runs");
    assert!(
        output.status.success(),
        "mksquashfs failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    fs::read(&image).expect("the image")
}

#[test]
fn a_built_layer_has_the_bytes_of_one_packed_from_copies() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let (image, input) = build_with_input(spec(), scratch.path()).expect("the layer builds");
    let built = fs::read(&image).expect("the layer");
    assert!(
        built == packed_from_copies(&spec(), &input, scratch.path()),
        "the layer differs from the same tree of copies packed by mksquashfs"
    );
    // The layer's output is its image only: the scratch tree is gone.
    let names: Vec<_> = fs::read_dir(image.parent().expect("the output"))
        .expect("the output")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(names, [LAYER_FILE]);
}

/// The mode bits and bytes of every file below `dir`, by path.
fn files(dir: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let metadata = path.symlink_metadata().expect("stat");
        if metadata.is_dir() {
            for entry in fs::read_dir(&path).expect("readable") {
                pending.push(entry.expect("entry").path());
            }
        } else if metadata.is_file() {
            let relative = path.strip_prefix(dir).expect("below dir").to_path_buf();
            let bytes = fs::read(&path).expect("readable");
            found.insert(relative, (metadata.permissions().mode() & 0o7777, bytes));
        }
    }
    found
}

#[test]
fn hard_links_odd_names_and_outside_links_leave_the_bytes_of_copies_and_the_inputs_alone() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let input = scratch.path().join("input");
    let write = |relative: &str, contents: &str, mode: u32| {
        let path = input.join(relative);
        fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        fs::write(&path, contents).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write("bin/tool", "#!/bin/sh\necho tool\n", 0o555);
    write("pki/node.key", KEY, 0o400);
    write("etc/config.txt", "plain\n", 0o444);
    // Names a pseudo definition must escape, or cannot hold (the newline: copied instead).
    for name in ["a b", "#hash", "q\"uote\\back", "tab\tx", "ü", "new\nline"] {
        write(&format!("etc/odd/{name}"), name, 0o444);
    }
    // Two names of one file within the input.
    fs::hard_link(input.join("bin/tool"), input.join("bin/tool-again")).expect("ln");
    let spec = LayerSpec {
        copies: vec![
            LayerCopy {
                input: "input".into(),
                from: String::new(),
                to: String::new(),
            },
            // The same files once more, elsewhere.
            LayerCopy {
                input: "input".into(),
                from: "bin".into(),
                to: "usr/local/bin".into(),
            },
        ],
        files: vec![LayerFile {
            path: "etc/hostname".into(),
            mode: 0o644,
            contents: "node\n".into(),
        }],
        dirs: BTreeMap::from([("pki".to_owned(), 0o700)]),
        ..LayerSpec::default()
    };
    let before = files(&input);
    let resolve = |_: &str| Ok(input.clone());

    let linked = |name: &str| {
        let tree = assemble_linked(&spec, &scratch.path().join(name), &resolve).expect("assembles");
        let image = scratch.path().join(format!("{name}.squashfs"));
        tree.pack(&image).expect("packs");
        (tree.linked_files(), fs::read(&image).expect("the image"))
    };
    let (linked_files, first) = linked("first");
    // The ten input files but the one with a newline at the root, and the two below bin once
    // more.
    assert_eq!(linked_files, 10 - 1 + 2);
    // More links to the input's files, from outside the layer.
    let outside = scratch.path().join("outside");
    fs::create_dir(&outside).expect("mkdir");
    for (index, file) in ["bin/tool", "pki/node.key", "etc/odd/a b"]
        .iter()
        .enumerate()
    {
        fs::hard_link(input.join(file), outside.join(index.to_string())).expect("ln");
    }
    let (_, second) = linked("second");
    assert!(first == second, "links from outside the layer changed it");
    assert!(
        first == packed_from_copies(&spec, &input, scratch.path()),
        "the layer differs from the same tree of copies packed by mksquashfs"
    );
    assert_eq!(files(&input), before, "the input changed");

    // Extracted, the layer holds the input's bytes, with the layer's modes.
    let image = scratch.path().join("first.squashfs");
    let extracted = scratch.path().join("extracted");
    kiln_testkit::unsquashfs(&image, &extracted);
    let layer = files(&extracted);
    for (path, (_, bytes)) in &before {
        assert_eq!(&layer[path].1, bytes, "bytes of {}", path.display());
    }
    assert_eq!(
        layer[Path::new("usr/local/bin/tool-again")].1,
        before[Path::new("bin/tool")].1
    );
    assert_eq!(layer[Path::new("bin/tool")].0, 0o755);
    assert_eq!(layer[Path::new("pki/node.key")].0, 0o600);
    assert_eq!(layer[Path::new("etc/odd/#hash")].0, 0o644);
    assert_eq!(layer[Path::new("etc/odd/new\nline")].0, 0o644);
    assert_eq!(layer.len(), before.len() + 2 + 1);
}

#[test]
fn a_layer_directory_over_an_input_file_fails_and_leaves_the_file_alone() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let input = scratch.path().join("input");
    fs::create_dir(&input).expect("mkdir");
    let file = input.join("tool");
    fs::write(&file, "#!/bin/sh\n").expect("write");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o555)).expect("chmod");
    let spec = LayerSpec {
        copies: vec![LayerCopy {
            input: "input".into(),
            from: String::new(),
            to: "bin".into(),
        }],
        dirs: BTreeMap::from([("bin/tool".to_owned(), 0o700)]),
        ..LayerSpec::default()
    };
    let error = assemble_linked(&spec, &scratch.path().join("tree"), &|_| Ok(input.clone()))
        .expect_err("bin/tool is a file");
    assert!(error.to_string().contains("bin/tool"), "{error}");
    let mode = fs::metadata(&file).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o555, "the input's file changed mode");
}
