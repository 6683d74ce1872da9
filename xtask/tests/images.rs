//! `cargo xtask build-cluster` with node images, run as a user runs it: every image's node
//! layer, read back with Debian's `unsquashfs`, holds exactly the private keys of its node's
//! placement, 0600 and owned by root; the shared layers hold none of the cluster's keys; and
//! images are the same bytes from two directories.
//!
//! The fixed-output inputs (the base OS, busybox, the Go module downloads) and the package
//! set's compiles (Kubernetes and the node userland) are substituted from the default store when
//! it has them, and built otherwise (slow, but never skipped). `build-cluster --check` with
//! images, which rebuilds those compiles too, is CI's README step on the same example.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_pki::{FileSource, placement};

mod common;
use common::{
    base64_decode, base64_encode, default_store, examples, hashes, private_keys_in, succeeded,
};

/// [`common::xtask`] with the default store as a substituter, when there is one.
fn xtask(dir: &Path, umask: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let store = default_store().map(|store| store.to_str().expect("utf-8 store path").to_owned());
    let mut args = args.to_vec();
    if let Some(store) = &store {
        args.extend(["--substituter", store]);
    }
    common::xtask(dir, umask, env, &args)
}

/// `unsquashfs -lln`: each path (relative to the image's root) with its `ls -l` mode and
/// `uid/gid`.
fn listing(image: &Path) -> BTreeMap<String, (String, String)> {
    let output = Command::new(kiln_testkit::tool("unsquashfs", "squashfs-tools"))
        .arg("-lln")
        .arg(image)
        .output()
        .expect("unsquashfs runs");
    assert!(
        output.status.success(),
        "unsquashfs -lln {} failed: {}",
        image.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8 listing")
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let mode = words.next().expect("a mode").to_owned();
            let owner = words.next().expect("an owner").to_owned();
            let (_, name) = line
                .split_once(" squashfs-root")
                .unwrap_or_else(|| panic!("no path in {line:?}"));
            let path = name.split_once(" -> ").map_or(name, |(path, _)| path);
            (path.trim_start_matches('/').to_owned(), (mode, owner))
        })
        .collect()
}

/// A node image's `manifest.json`.
fn image_manifest(image_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(image_dir.join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

/// The file of the layer `name` of the image in `image_dir`, its links resolved.
fn layer_file(image_dir: &Path, manifest: &serde_json::Value, name: &str) -> PathBuf {
    let layer = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .find(|layer| layer["name"] == name)
        .unwrap_or_else(|| panic!("no layer {name} in {}", image_dir.display()));
    let file = image_dir.join(layer["file"].as_str().expect("a file"));
    std::fs::canonicalize(&file)
        .unwrap_or_else(|error| panic!("{} does not resolve: {error}", file.display()))
}

#[test]
fn base64_round_trips() {
    for text in [
        "",
        "a",
        "ab",
        "abc",
        "abcd",
        "-----BEGIN EC PRIVATE KEY-----\n",
    ] {
        assert_eq!(
            base64_decode(&base64_encode(text.as_bytes())),
            text.as_bytes()
        );
    }
    assert_eq!(base64_encode(b"-----BEGIN "), "LS0tLS1CRUdJTiA=");
}

/// Every file below `root` (not following links) that holds a private key, with those keys.
fn files_with_private_keys(root: &Path) -> BTreeMap<String, Vec<Vec<u8>>> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeMap<String, Vec<Vec<u8>>>) {
        for entry in std::fs::read_dir(dir).expect("readable directory") {
            let path = entry.expect("entry").path();
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            if meta.is_dir() {
                walk(root, &path, found);
            } else if meta.is_file() {
                let keys = private_keys_in(&std::fs::read(&path).expect("readable file"));
                if !keys.is_empty() {
                    let relative = path.strip_prefix(root).expect("below root");
                    found.insert(relative.display().to_string(), keys);
                }
            }
        }
    }
    let mut found = BTreeMap::new();
    walk(root, root, &mut found);
    found
}

/// The operator's private keys (`result/cluster/pki/*`): path below it → PEM bytes.
fn operator_keys(result: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("readable directory") {
            let path = entry.expect("entry").path();
            // Artifact links point into the store: follow them.
            if std::fs::metadata(&path).expect("metadata").is_dir() {
                walk(root, &path, found);
                continue;
            }
            let bytes = std::fs::read(&path).expect("readable file");
            for key in private_keys_in(&bytes) {
                let relative = path.strip_prefix(root).expect("below root");
                found.insert(relative.display().to_string(), key);
            }
        }
    }
    let mut found = BTreeMap::new();
    let pki = result.join("cluster/pki");
    walk(&pki, &pki, &mut found);
    found
}

/// Where the operator's output keeps the key of a placed file.
fn operator_key_path(source: &FileSource) -> String {
    match source {
        FileSource::PrivateKey(name) => format!("{name}/tls.key"),
        FileSource::ServiceAccountPrivateKey => "service-account/sa.key".to_owned(),
        other => panic!("not a private key: {other:?}"),
    }
}

fn load_plan(name: &str) -> kiln_spec::Plan {
    let path = examples().join(format!("{name}.toml"));
    let source = std::fs::read_to_string(&path).expect("the example");
    kiln_spec::load(&source, &path.display().to_string())
        .unwrap_or_else(|errors| panic!("{errors}"))
        .plan
}

/// The HA example's images: each node layer holds exactly the private keys
/// `kiln_pki::placement` gives its node (and the kubeconfigs of its components, each embedding a
/// key of that placement), 0600, owned by root, under a 0700 `etc/kubernetes/pki`; the shared
/// layers hold none of the cluster's keys.
#[test]
fn every_node_image_of_the_ha_example_holds_exactly_its_private_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = examples().join("ha.toml");
    succeeded(&xtask(
        dir.path(),
        "022",
        &[],
        &[
            "build-cluster",
            "--spec",
            spec.to_str().expect("utf-8 path"),
            "--store",
            "store",
            "--secrets",
            "s",
            "--out",
            "result",
        ],
    ));
    let result = dir.path().join("result");
    let plan = load_plan("ha");
    let operator = operator_keys(&result);
    assert!(
        operator.len() >= 20,
        "the operator's output holds every key: {:?}",
        operator.keys()
    );
    // The kubeconfigs that carry a key (systemd control plane: controllers run no kubelet).
    let controller_kubeconfigs = [
        "etc/kubernetes/controller-manager.conf",
        "etc/kubernetes/scheduler.conf",
    ];
    let worker_kubeconfigs = [
        "etc/kubernetes/kube-proxy.conf",
        "etc/kubernetes/kubelet.conf",
    ];
    let mut shared_layers = BTreeSet::new();
    let mut node_layers = BTreeSet::new();
    for node in &plan.nodes {
        let image_dir = result.join("nodes").join(&node.name).join("image");
        let manifest = image_manifest(&image_dir);
        assert_eq!(manifest["node"], node.name.as_str());
        let node_layer = layer_file(&image_dir, &manifest, "node");
        assert!(
            node_layers.insert(node_layer.clone()),
            "{}'s node layer is another node's",
            node.name
        );
        for layer in manifest["layers"].as_array().expect("layers") {
            let name = layer["name"].as_str().expect("a name");
            let shared = layer["shared"].as_bool().expect("shared");
            assert_eq!(shared, name != "node", "{}'s layer {name}", node.name);
            if shared {
                shared_layers.insert(layer_file(&image_dir, &manifest, name));
            }
        }

        let extracted = dir.path().join("extracted").join(&node.name);
        kiln_testkit::unsquashfs(&node_layer, &extracted);
        let found = files_with_private_keys(&extracted);

        // A node without a kubelet masks the container runtime Debian's package enables.
        let containerd =
            std::fs::read_link(extracted.join("etc/systemd/system/containerd.service"))
                .ok()
                .map(|target| target.display().to_string());
        assert_eq!(
            containerd.as_deref() == Some("/dev/null"),
            !node.runs_kubelet(plan.cluster.control_plane_mode),
            "{}'s containerd.service: {containerd:?}",
            node.name
        );

        let placed: Vec<_> = placement(&plan, node)
            .into_iter()
            .filter(|file| file.source.is_private())
            .collect();
        let kubeconfigs: &[&str] = match node.name.as_str() {
            "lb" => &[],
            name if name.starts_with("controller-") => &controller_kubeconfigs,
            name if name.starts_with("worker-") => &worker_kubeconfigs,
            other => panic!("a node the HA example did not have: {other}"),
        };
        let expected: BTreeSet<String> = placed
            .iter()
            .map(|file| format!("etc/kubernetes/{}", file.path))
            .chain(kubeconfigs.iter().map(|path| (*path).to_owned()))
            .collect();
        let found_paths: BTreeSet<String> = found.keys().cloned().collect();
        assert_eq!(
            found_paths, expected,
            "private keys in {}'s image",
            node.name
        );

        // Each placed key is the operator's key of that name, not another's.
        let placed_keys: Vec<&Vec<u8>> = placed
            .iter()
            .map(|file| {
                let path = format!("etc/kubernetes/{}", file.path);
                let operator_path = operator_key_path(&file.source);
                let theirs = operator
                    .get(&operator_path)
                    .unwrap_or_else(|| panic!("no operator key {operator_path}"));
                assert_eq!(
                    found[&path],
                    std::slice::from_ref(theirs),
                    "{path} on {} is not the operator's {operator_path}",
                    node.name
                );
                theirs
            })
            .collect();
        // Each kubeconfig embeds one key, and it is one the node's placement holds.
        for path in kubeconfigs {
            let keys = &found[*path];
            assert_eq!(keys.len(), 1, "{path} on {} embeds one key", node.name);
            assert!(
                placed_keys.contains(&&keys[0]),
                "{path} on {} embeds a key its placement does not give it",
                node.name
            );
        }

        // Modes and owners, as unsquashfs lists them.
        let listed = listing(&node_layer);
        for path in &expected {
            let (mode, owner) = listed
                .get(path)
                .unwrap_or_else(|| panic!("{path} not listed in {}'s layer", node.name));
            assert_eq!(mode, "-rw-------", "mode of {path} on {}", node.name);
            assert_eq!(owner, "0/0", "owner of {path} on {}", node.name);
        }
        // Every node of the example gets at least the cluster CA's certificate.
        let (mode, _) = listed
            .get("etc/kubernetes/pki")
            .unwrap_or_else(|| panic!("{} has no etc/kubernetes/pki", node.name));
        assert_eq!(mode, "drwx------", "{}'s etc/kubernetes/pki", node.name);
        for (path, (_, owner)) in &listed {
            assert_eq!(owner, "0/0", "owner of {path} on {}", node.name);
        }
    }
    // "Its own only": two workers' kubelet keys differ.
    let kubelet_key = |node: &str| {
        std::fs::read(
            dir.path()
                .join("extracted")
                .join(node)
                .join("etc/kubernetes/pki/kubelet.key"),
        )
        .expect("a kubelet key")
    };
    assert_ne!(kubelet_key("worker-0"), kubelet_key("worker-1"));

    // The shared layers, holding none of the keys: the Kubernetes, images and base layers of
    // all seven images, and the CoreDNS image's layer of the three workers (the cluster DNS's
    // pods run where a kubelet may schedule them; these controllers run no kubelet).
    assert_eq!(
        shared_layers.len(),
        4,
        "kubernetes, images and base, shared by every node, and the workers' CoreDNS layer: {shared_layers:?}"
    );
    assert!(
        shared_layers.iter().any(|layer| layer
            .to_string_lossy()
            .contains("-components-layer-coredns/")),
        "{shared_layers:?}"
    );
    let needles = dir.path().join("needles");
    let mut patterns = String::new();
    for key in operator.values() {
        // A PEM key's body lines, and the whole key in base64 as kubeconfigs embed it.
        let text = String::from_utf8_lossy(key);
        for line in text.lines().filter(|line| line.len() >= 40) {
            patterns.push_str(line);
            patterns.push('\n');
        }
        patterns.push_str(&base64_encode(key));
        patterns.push('\n');
    }
    std::fs::write(&needles, patterns).expect("write the patterns");
    for (index, layer) in shared_layers.iter().enumerate() {
        let extracted = dir.path().join(format!("shared-{index}"));
        kiln_testkit::unsquashfs(layer, &extracted);
        let output = Command::new("grep")
            .args(["-r", "-l", "-F", "--binary-files=text", "-f"])
            .arg(&needles)
            .arg(&extracted)
            .output()
            .expect("grep runs");
        let matches = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(1),
            "the shared layer {} holds a cluster key in: {matches}{}",
            layer.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::remove_dir_all(&extracted).expect("clean up");
    }
}

/// The image artifacts: `image/*`, `node/*/layer` and `node/*/image`.
fn image_hashes(result: &Path) -> BTreeMap<String, (String, String)> {
    hashes(result)
        .into_iter()
        .filter(|(id, _)| {
            id.starts_with("image/")
                || (id.starts_with("node/") && (id.ends_with("/layer") || id.ends_with("/image")))
        })
        .collect()
}

/// The two-node example from two directories, with different TZ, umask and LANG, into two
/// stores: the same digests and content hashes for every image artifact, and the same bytes.
/// (`--check` is left to CI's README step, `cargo xtask build-cluster --check`, on the same
/// example: here it would compile Kubernetes once more, about ten minutes.)
#[test]
fn two_node_images_are_the_same_from_two_directories() {
    let spec = examples().join("two-node.toml");
    let spec = spec.to_str().expect("utf-8 path");
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let secrets = tempfile::tempdir().expect("tempdir");
    let secrets = secrets.path().to_str().expect("utf-8 path");
    let first_args = [
        "build-cluster",
        "--spec",
        spec,
        "--secrets",
        secrets,
        "--store",
        "store-a",
        "--out",
        "out",
    ];
    let first_env = [
        ("TZ", "UTC"),
        ("LANG", "C"),
        ("LC_ALL", "C"),
        ("HOME", first.path().to_str().expect("utf-8")),
    ];
    succeeded(&xtask(first.path(), "022", &first_env, &first_args));
    succeeded(&xtask(
        second.path(),
        "077",
        &[
            ("TZ", "Pacific/Kiritimati"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_ALL", "tr_TR.UTF-8"),
            ("HOME", second.path().to_str().expect("utf-8")),
        ],
        &[
            "build-cluster",
            "--spec",
            spec,
            "--secrets",
            secrets,
            "--store",
            "nested/store-b",
            "--out",
            "elsewhere/result",
            "--jobs",
            "1",
        ],
    ));
    let a = image_hashes(&first.path().join("out"));
    let b = image_hashes(&second.path().join("elsewhere/result"));
    for id in [
        "image/base-os",
        "image/initrd",
        "image/layer/kubernetes",
        "image/layer/images",
        "node/node1/layer",
        "node/node1/image",
        "node/node2/layer",
        "node/node2/image",
    ] {
        assert!(a.contains_key(id), "{id} missing from {:?}", a.keys());
    }
    // (digest, content hash) of each differing artifact in both builds.
    let differing: Vec<String> = a
        .iter()
        .filter(|(id, hashes)| b.get(*id) != Some(hashes))
        .map(|(id, hashes)| format!("{id}: {hashes:?} vs {:?}", b.get(id)))
        .collect();
    assert!(
        differing.is_empty() && a.len() == b.len(),
        "image artifacts that differ between the two directories: {differing:#?}"
    );
    // The images themselves, byte for byte: the same layers in both stores.
    for node in ["node1", "node2"] {
        let image = |result: &Path| {
            let dir = result.join("nodes").join(node).join("image");
            let manifest = image_manifest(&dir);
            let layers: Vec<Vec<u8>> = ["node", "kubernetes", "images"]
                .into_iter()
                .map(|name| std::fs::read(layer_file(&dir, &manifest, name)).expect("a layer"))
                .collect();
            (manifest, layers)
        };
        let (manifest_a, layers_a) = image(&first.path().join("out"));
        let (manifest_b, layers_b) = image(&second.path().join("elsewhere/result"));
        assert_eq!(manifest_a, manifest_b, "{node}'s manifest.json");
        assert!(layers_a == layers_b, "{node}'s layers differ");
    }
}

/// The rules kube-proxy's iptables mode writes, in the shapes it writes them: a Service's
/// DNAT with `statistic`, the masquerade mark and MASQUERADE, `addrtype`, `conntrack`,
/// `recent` and `comment`. Each match and target is an extension iptables loads from its
/// directory by name (`libxt_DNAT.so` is a link to `libxt_NAT.so`).
const KUBE_PROXY_RULES: &str = "\
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-WEB - [0:0]
:KUBE-SEP-WEB - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web cluster IP\" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB -m statistic --mode random --probability 0.5 -j KUBE-SEP-WEB
-A KUBE-SEP-WEB -s 10.2.1.5/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB -p tcp -m tcp -j DNAT --to-destination 10.2.1.5:8080
COMMIT
*filter
:KUBE-FORWARD - [0:0]
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -p udp -m udp --dport 53 -m recent --name dns --set -j ACCEPT
COMMIT
";

/// Runs `args` inside `root` with `chroot`, as root of a new user namespace with a network
/// namespace of its own (so iptables changes nothing outside, and no privilege is needed).
fn in_root(root: &Path, args: &[&str]) -> Output {
    Command::new("unshare")
        .args(["--map-root-user", "--net", "chroot"])
        .arg(root)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("unshare (util-linux) runs")
}

/// Unpacks the single-layer OCI archive `archive` (as kiln's image builder writes them) into
/// `root` with the system's `tar`.
fn unpack_oci(archive: &Path, scratch: &Path, root: &Path) {
    let layout = scratch.join("layout");
    std::fs::create_dir_all(&layout).expect("mkdir");
    std::fs::create_dir_all(root).expect("mkdir");
    let tar = |file: &Path, into: &Path| {
        let status = Command::new("tar")
            .arg("-xf")
            .arg(file)
            .arg("-C")
            .arg(into)
            .status()
            .expect("tar runs");
        assert!(status.success(), "tar -xf {}", file.display());
    };
    tar(archive, &layout);
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("JSON")
    };
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").expect("a sha256 digest"))
    };
    let index = read(&layout.join("index.json"));
    let manifest = read(&blob(
        index["manifests"][0]["digest"].as_str().expect("digest"),
    ));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1);
    tar(&blob(layers[0]["digest"].as_str().expect("digest")), root);
}

/// kube-proxy's image, built from the kubeadm example (kube-proxy as a DaemonSet), runs as
/// itself: in a root holding only the image's layer, its kube-proxy prints the cluster's
/// version, and the base OS's iptables (nftables back end), ip6tables and conntrack it carries
/// run with only the libraries and extensions the image holds: iptables-restore loads a
/// kube-proxy-shaped rule set and iptables-save prints it back.
#[test]
fn kube_proxy_image_runs_iptables_from_its_own_root() {
    let spec = examples().join("kubeadm-bootstrap.toml");
    let plan = load_plan("kubeadm-bootstrap");
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    succeeded(&xtask(
        dir.path(),
        "022",
        &[("HOME", dir.path().to_str().expect("utf-8"))],
        &[
            "build-cluster",
            "--spec",
            spec.to_str().expect("utf-8 path"),
            "--secrets",
            secrets.to_str().expect("utf-8 path"),
            "--store",
            "store",
            "--out",
            "out",
        ],
    ));
    let manifest = kiln_cluster::Manifest::from_json(
        &std::fs::read_to_string(dir.path().join("out/manifest.json")).expect("manifest"),
    )
    .expect("a manifest");
    let images = &manifest.artifacts["image/component-images"].store_path;
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(images.join(kiln_image::oci::IMAGES_INDEX_FILE)).expect("images.json"),
    )
    .expect("JSON");
    // The reference as the image catalog writes it: the one place image names come from.
    let reference = kiln_spec::images::ComponentImage {
        program: kiln_spec::Component::KubeProxy.into(),
        version: plan.cluster.kubernetes_version.to_string(),
    }
    .reference();
    let archive = images.join(
        index[&reference]["archive"]
            .as_str()
            .unwrap_or_else(|| panic!("{reference} in {index}")),
    );
    let root = dir.path().join("root");
    unpack_oci(&archive, dir.path(), &root);

    let ok = |args: &[&str]| -> String {
        let output = in_root(&root, args);
        assert!(
            output.status.success(),
            "{args:?} in the image's root: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let version = ok(&["/usr/local/bin/kube-proxy", "--version"]);
    assert_eq!(
        version.trim(),
        format!("Kubernetes v{}", plan.cluster.kubernetes_version)
    );
    // At the paths the image's PATH finds them by (/usr/sbin), as kube-proxy runs them.
    assert!(ok(&["/usr/sbin/iptables", "--version"]).contains("(nf_tables)"));
    assert!(ok(&["/usr/sbin/ip6tables", "--version"]).contains("(nf_tables)"));
    assert!(ok(&["/usr/sbin/conntrack", "--version"]).contains("conntrack-tools"));

    // Restored and saved in one network namespace: the image has no shell, so the host's runs
    // each program chrooted into the image's root.
    std::fs::write(root.join("tmp/rules"), KUBE_PROXY_RULES).expect("write the rules");
    let output = Command::new("unshare")
        .args(["--map-root-user", "--net", "sh", "-c"])
        .arg(
            "chroot \"$0\" /usr/sbin/iptables-restore -w 5 /tmp/rules && \
             chroot \"$0\" /usr/sbin/iptables-save && \
             chroot \"$0\" /usr/sbin/conntrack -L -p udp",
        )
        .arg(&root)
        .env("LC_ALL", "C")
        .output()
        .expect("unshare (util-linux) runs");
    let saved = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "iptables-restore, iptables-save and conntrack in the image's root: {saved}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "-A KUBE-SEP-WEB -p tcp -m tcp -j DNAT --to-destination 10.2.1.5:8080",
        "-j MASQUERADE --random-fully",
        "-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-WEB",
        "-A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS",
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        "-m recent --set --name dns",
    ] {
        assert!(
            saved.contains(line),
            "{line:?} not in iptables-save's\n{saved}"
        );
    }
}
