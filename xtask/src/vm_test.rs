//! `cargo xtask vm-test`: build a cluster with node images, boot it in QEMU, and run a scenario
//! of checks against it (the work lives in kiln-vm-tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use kiln_vm_tests::{ClusterOptions, scenario};

use crate::{common, deps};

/// Arguments of `cargo xtask vm-test`.
#[derive(clap::Args)]
pub struct Args {
    /// The scenario to run: two-node, ha, static-pods or kubeadm.
    #[arg(long, default_value = "two-node")]
    scenario: scenario::Scenario,
    /// Run the scenario even if it already passed on this machine with exactly these inputs.
    #[arg(long)]
    rerun: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// How `cargo xtask vm-test` and `cargo xtask conformance` get a cluster: what they build (or
/// take built), where the guests' files go, and how they run.
#[derive(clap::Args)]
pub struct ClusterArgs {
    /// Leave the guests running afterwards (also after a failure) and print how to reach them.
    #[arg(long)]
    pub keep: bool,
    /// The cluster spec to build (default: `vm-tests/specs/<scenario>.toml` if there is one,
    /// else `examples/<scenario>.toml`).
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Use this already-built `result/` directory (built with `build-cluster --test-tools`)
    /// instead of building the spec.
    #[arg(long, conflicts_with = "spec")]
    pub result: Option<PathBuf>,
    /// The cluster's kubectl (of its Kubernetes version); default: $KILN_KUBECTL, else the kubectl
    /// the build put in the store with the other Kubernetes binaries.
    #[arg(long)]
    pub kubectl: Option<PathBuf>,
    /// The store build-cluster uses (default: build-cluster's).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Where logs, sockets and kubeconfigs go (default: `target/vm-tests/<scenario>-<time>`).
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// vCPUs for every guest (default: what each image asks for).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: Option<u32>,
    /// Where the cluster's root secret lives (default: for a scenario's own spec,
    /// `vm-test-secrets/` in kiln's data directory beside the store, so that every clone on this
    /// machine builds the same images and a pass recorded by one counts for the others; for
    /// `--spec`, build-cluster's default, `secrets/` in kiln's data directory).
    #[arg(long, conflicts_with = "result")]
    pub secrets: Option<PathBuf>,
}

/// A cluster built (or taken built) and ready to boot: what [`prepare`] gives.
pub struct Prepared {
    /// The options the guests are started with.
    pub options: ClusterOptions,
    /// The build's manifest.
    pub manifest: kiln_cluster::Manifest,
    /// The QEMU program.
    pub qemu: PathBuf,
    /// The store the build used.
    pub store_dir: PathBuf,
}

/// QEMU, which runs the guests (its program is part of a pass's key).
const QEMU: kiln_tools::Tool = kiln_tools::Tool::program("qemu-system-x86_64", "qemu-system-x86");

/// What the harness runs on the host, and the Debian packages that provide it.
const VM_TOOLS: &[kiln_tools::Tool] = &[
    QEMU,
    kiln_tools::Tool::program("setpriv", "util-linux"),
    kiln_tools::Tool::program("sha256sum", "coreutils"),
];

/// Runs the scenario.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let prepared = prepare(
        &args.cluster,
        &args.scenario.to_string(),
        args.scenario,
        args.scenario.runs_conformance(),
    )?;
    let proof = Proof::of(
        &args,
        &prepared.manifest,
        &prepared.options.kubectl,
        &prepared.qemu,
    )?;
    let (key, name) = (proof.key(), format!("vm-test-{}", args.scenario));
    if !args.rerun && !args.cluster.keep {
        let store = kiln_store::Store::open(&prepared.store_dir)?;
        if let Some(passed) = store.get(&key, &name)? {
            eprintln!(
                "vm-test {}: passed before on this machine with exactly these inputs ({}); \
                 not run again (--rerun runs it)",
                args.scenario,
                passed.path.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    match scenario::run(args.scenario, &prepared.options) {
        Ok(_) => {
            // Only a pass is recorded: a failure is never taken as settled.
            let store = kiln_store::Store::open(&prepared.store_dir)?;
            let recorded = store
                .build(&key, &name, |out| {
                    std::fs::write(out.join(PROOF_FILE), proof.to_json())
                })
                .map_err(|failure| anyhow::anyhow!("recording the pass: {failure}"))?;
            store.commit()?;
            eprintln!(
                "vm-test {}: passed (recorded in {})",
                args.scenario,
                recorded.path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(kiln_vm_tests::Error::Interrupted) => Ok(ExitCode::from(130)),
        Err(error) => Err(error).with_context(|| format!("vm-test {}", args.scenario)),
    }
}

/// Builds the cluster of `args` (the spec of `scenario` unless `--spec` or `--result` says
/// otherwise) with its test tools, the end-to-end suite among them only if `suite` (see
/// [`scenario::Scenario::runs_conformance`]), finds kubectl and QEMU, and makes the run
/// directory (`target/vm-tests/<label>-<time>` unless `--run-dir`).
pub fn prepare(
    args: &ClusterArgs,
    label: &str,
    scenario: scenario::Scenario,
    suite: bool,
) -> anyhow::Result<Prepared> {
    kiln_vm_tests::install_interrupt_handler()?;
    deps::ensure("the VM tests' tools", VM_TOOLS)?;

    let run_dir = match &args.run_dir {
        Some(dir) => dir.clone(),
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/vm-tests")
                .join(format!("{label}-{now}"))
        }
    };
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let run_dir = run_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", run_dir.display()))?;

    let result_dir = match &args.result {
        Some(dir) => dir.clone(),
        None => build(args, scenario, suite, &run_dir.join("result"))?,
    };

    let manifest = read_manifest(&result_dir)?;
    // The cluster's own kubectl: --kubectl, $KILN_KUBECTL, else the one the build put in the
    // store with the rest of the Kubernetes binaries.
    let kubectl = match args
        .kubectl
        .clone()
        .or_else(|| std::env::var_os("KILN_KUBECTL").map(PathBuf::from))
    {
        Some(kubectl) => kubectl,
        None => built_kubectl(&manifest)?,
    };
    if !kubectl.is_file() {
        bail!("kubectl {} does not exist", kubectl.display());
    }
    let qemu = QEMU.find().context("qemu-system-x86_64 is not installed")?;
    let store_dir = common::store_dir(args.store.clone())?;
    let tools = built_tools(&manifest)?;
    Ok(Prepared {
        options: ClusterOptions {
            result_dir,
            kubectl,
            run_dir,
            keep: args.keep,
            accel: None,
            cpus: args.cpus,
            tools: Some(tools),
        },
        manifest,
        qemu,
        store_dir,
    })
}

/// The directory in kiln's data directory that holds the root secrets of the scenarios' own
/// specs: one per machine and user, not one per clone, so that a fresh clone of an unchanged
/// tree builds bit-identical images and finds the passes recorded for them; and apart from
/// build-cluster's `secrets/`, so a test cluster never shares a root secret with a user's
/// cluster of the same name. They are test clusters' secrets, kept private (mode 0700) like
/// any other.
const VM_TEST_SECRETS: &str = "vm-test-secrets";

/// The file a recorded pass holds: its [`Proof`].
const PROOF_FILE: &str = "proof.json";

/// Everything a scenario's run depends on: a pass is recorded in the store under the digest
/// of this document, and a later run with the same one is not repeated.
#[derive(serde::Serialize)]
struct Proof {
    /// The scenario's name.
    scenario: String,
    /// `--cpus`, if given.
    cpus: Option<u32>,
    /// The source of the harness (see the xtask's build script).
    harness: &'static str,
    /// The tree hash of the kubectl that drives the cluster.
    kubectl: kiln_store::Digest,
    /// The tree hash of the QEMU program that runs the guests.
    qemu: kiln_store::Digest,
    /// Every artifact of the build (the node images with all they link to, the kubeconfigs,
    /// the plan, the test tools disk), by derivation id: its identity
    /// ([`artifact_identities`]).
    artifacts: BTreeMap<String, kiln_store::Digest>,
}

/// Each artifact's identity in a [`Proof`]: what a guest would read from it, not where the
/// store put it. That is its content hash, except for an artifact holding symlinks into other
/// artifacts (a node image links to its layers, kernel and initramfs): the targets' store
/// paths name their derivations' digests, which change with kiln's recipe even when the bytes
/// do not, so such a tree is hashed again ([`kiln_store::tree_hash_with_links`]) with each
/// such link standing for the identity of the artifact it points into and the path inside
/// it. A link to anything else is hashed as it is.
fn artifact_identities(
    manifest: &kiln_cluster::Manifest,
) -> anyhow::Result<BTreeMap<String, kiln_store::Digest>> {
    let by_path: BTreeMap<&Path, &str> = manifest
        .artifacts
        .iter()
        .map(|(id, entry)| (entry.store_path.as_path(), id.as_str()))
        .collect();
    let mut identities = BTreeMap::new();
    for id in manifest.artifacts.keys() {
        identity(manifest, &by_path, id, &mut identities, 0)?;
    }
    Ok(identities)
}

/// [`artifact_identities`] of one artifact, after those of the artifacts it links into.
fn identity(
    manifest: &kiln_cluster::Manifest,
    by_path: &BTreeMap<&Path, &str>,
    id: &str,
    identities: &mut BTreeMap<String, kiln_store::Digest>,
    depth: usize,
) -> anyhow::Result<kiln_store::Digest> {
    if let Some(known) = identities.get(id) {
        return Ok(*known);
    }
    // Store paths only refer to older ones, so a chain of links ends; a manifest that says
    // otherwise is refused rather than followed for ever.
    if depth > by_path.len() {
        bail!("the build's artifacts link to each other in a cycle (at {id})");
    }
    let entry = &manifest.artifacts[id];
    let mut links = Vec::new();
    symlinks(&entry.store_path, &mut links)?;
    let mut targets: BTreeMap<PathBuf, (kiln_store::Digest, PathBuf)> = BTreeMap::new();
    for (link, target) in links {
        let resolved = lexical(&link.parent().unwrap_or(Path::new("/")).join(&target));
        let Some((root, other)) = resolved
            .ancestors()
            .find_map(|ancestor| by_path.get(ancestor).map(|other| (ancestor, *other)))
        else {
            continue;
        };
        if other == id {
            continue;
        }
        let inside = resolved
            .strip_prefix(root)
            .unwrap_or(Path::new(""))
            .to_owned();
        let other_identity = identity(manifest, by_path, other, identities, depth + 1)?;
        targets.insert(link, (other_identity, inside));
    }
    let found = if targets.is_empty() {
        entry.content_hash
    } else {
        kiln_store::tree_hash_with_links(&entry.store_path, &mut |link, target| match targets
            .get(link)
        {
            Some((other, inside)) => {
                format!("kiln-artifact:{}/{}", other.to_hex(), inside.display()).into_bytes()
            }
            None => target.as_os_str().as_encoded_bytes().to_vec(),
        })?
    };
    identities.insert(id.to_owned(), found);
    Ok(found)
}

/// Every symlink under `path` (itself included) with its target, without reading any file.
fn symlinks(path: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
    let metadata = std::fs::symlink_metadata(path)
        .with_context(|| format!("inspecting {}", path.display()))?;
    if metadata.is_symlink() {
        let target =
            std::fs::read_link(path).with_context(|| format!("reading {}", path.display()))?;
        out.push((path.to_owned(), target));
    } else if metadata.is_dir() {
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            let entry = entry.with_context(|| format!("reading {}", path.display()))?;
            symlinks(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// `path` with `.` and `..` components resolved by name alone (the store's links are
/// relative links between its own directories, so no symlink is in the way).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Proof {
    /// The proof of running `args`' scenario on the build `manifest` describes with `kubectl`
    /// and `qemu`.
    fn of(
        args: &Args,
        manifest: &kiln_cluster::Manifest,
        kubectl: &Path,
        qemu: &Path,
    ) -> anyhow::Result<Proof> {
        let file_hash = |path: &Path| -> anyhow::Result<kiln_store::Digest> {
            let real = path
                .canonicalize()
                .with_context(|| format!("resolving {}", path.display()))?;
            Ok(kiln_store::tree_hash(&real)?)
        };
        Ok(Proof {
            scenario: args.scenario.to_string(),
            cpus: args.cluster.cpus,
            harness: env!("KILN_VM_HARNESS"),
            kubectl: file_hash(kubectl)?,
            qemu: file_hash(qemu)?,
            artifacts: artifact_identities(manifest)?,
        })
    }

    fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a proof is JSON");
        text.push('\n');
        text
    }

    /// The digest a pass is recorded under.
    fn key(&self) -> kiln_store::Digest {
        kiln_store::DigestBuilder::new("kiln-vm-test-proof-v1")
            .str(&self.to_json())
            .finish()
    }
}

/// The test tools of the build `manifest` describes (built by `build-cluster --test-tools`):
/// the disk, kube-bench's package and, when the package set has the end-to-end suite of the
/// cluster's version, the suite's package.
fn built_tools(manifest: &kiln_cluster::Manifest) -> anyhow::Result<kiln_vm_tests::Tools> {
    let artifact = |name: &str| {
        manifest
            .artifacts
            .get(name)
            .map(|entry| entry.store_path.clone())
    };
    let disk = artifact(kiln_cluster::TEST_TOOLS_ARTIFACT).with_context(|| {
        format!(
            "the build has no test tools ({}): build it with `cargo xtask build-cluster --test-tools`",
            kiln_cluster::TEST_TOOLS_ARTIFACT
        )
    })?;
    let kube_bench = artifact(&kiln_cluster::package_artifact("kube-bench"))
        .context("the build's test tools have no kube-bench")?;
    Ok(kiln_vm_tests::Tools {
        disk: disk.join(kiln_image::os::layer::LAYER_FILE),
        kube_bench,
        e2e: artifact(&kiln_cluster::package_artifact(
            kiln_image::oci::E2E_PACKAGE,
        )),
    })
}

/// The manifest of the build in `result` (`result/manifest.json`).
fn read_manifest(result: &Path) -> anyhow::Result<kiln_cluster::Manifest> {
    let path = result.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    kiln_cluster::Manifest::from_json(&text).with_context(|| format!("reading {}", path.display()))
}

/// The kubectl among the Kubernetes binaries of the build `manifest` describes.
fn built_kubectl(manifest: &kiln_cluster::Manifest) -> anyhow::Result<PathBuf> {
    let binaries = manifest
        .artifacts
        .get("image/kubernetes-binaries")
        .context("the build has no Kubernetes binaries: pass --kubectl PATH")?;
    Ok(binaries.store_path.join("bin/kubectl"))
}

/// The spec a scenario builds by default: the VM tests' own (`vm-tests/specs/<scenario>.toml`,
/// an example made to fit this machine) if there is one, else `examples/<scenario>.toml`.
fn scenario_spec(scenario: scenario::Scenario) -> PathBuf {
    let own = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vm-tests/specs")
        .join(format!("{scenario}.toml"));
    if own.is_file() {
        own
    } else {
        common::default_spec().with_file_name(format!("{scenario}.toml"))
    }
}

/// Builds the spec (`--spec`, else `scenario`'s) with its test tools (the end-to-end suite
/// among them only if `suite`) into `out` with this program's own `build-cluster`.
fn build(
    args: &ClusterArgs,
    scenario: scenario::Scenario,
    suite: bool,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let (spec, secrets) = match &args.spec {
        Some(spec) => (spec.clone(), args.secrets.clone()),
        None => (
            scenario_spec(scenario),
            Some(match &args.secrets {
                Some(dir) => dir.clone(),
                None => common::data_dir()
                    .context("no directory for the scenario's root secret: pass --secrets")?
                    .join(VM_TEST_SECRETS),
            }),
        ),
    };
    let program = std::env::current_exe().context("finding the xtask program")?;
    let mut command = Command::new(program);
    command
        .arg("build-cluster")
        .arg("--spec")
        .arg(&spec)
        .arg("--out")
        .arg(out)
        .arg("--test-tools");
    if !suite {
        command.arg("--without-suite");
    }
    if let Some(secrets) = &secrets {
        command.arg("--secrets").arg(secrets);
    }
    if let Some(store) = &args.store {
        command.arg("--store").arg(store);
    }
    eprintln!("==> build-cluster --spec {}", spec.display());
    let status = command.status().context("running build-cluster")?;
    if !status.success() {
        bail!("build-cluster --spec {} failed ({status})", spec.display());
    }
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Args {
        Command::parse_from(std::iter::once("vm-test").chain(line.iter().copied())).args
    }

    /// A result directory whose manifest has one artifact with content hash `content`, and
    /// kubectl and QEMU stand-ins.
    fn inputs(dir: &Path, content: &[u8]) -> (PathBuf, PathBuf, PathBuf) {
        let result = dir.join("result");
        std::fs::create_dir_all(&result).expect("mkdir");
        std::fs::create_dir_all(dir.join("store/x-a-image")).expect("mkdir");
        let mut manifest = kiln_cluster::Manifest {
            cluster: "c".into(),
            artifacts: BTreeMap::new(),
            cluster_artifacts: BTreeMap::new(),
            nodes: BTreeMap::new(),
        };
        manifest.artifacts.insert(
            "node/a/image".into(),
            kiln_cluster::ArtifactEntry {
                store_path: dir.join("store/x-a-image"),
                digest: kiln_store::Digest::of(b"digest"),
                content_hash: kiln_store::Digest::of(content),
                secret: true,
            },
        );
        std::fs::write(result.join("manifest.json"), manifest.to_json()).expect("write");
        let (kubectl, qemu) = (dir.join("kubectl"), dir.join("qemu"));
        std::fs::write(&kubectl, "kubectl").expect("write");
        std::fs::write(&qemu, "qemu").expect("write");
        (result, kubectl, qemu)
    }

    /// A store under `dir` with a layer holding `layer` in `<layer_digest>-layer` and an image
    /// linking to it, and the manifest of both (content hashes as the store records them).
    fn linked(dir: &Path, layer_digest: &str, layer: &[u8]) -> kiln_cluster::Manifest {
        let store = dir.join("store");
        let layer_path = store.join(format!("{layer_digest}-layer"));
        let image_path = store.join(format!("i{layer_digest}-image"));
        std::fs::create_dir_all(&layer_path).expect("mkdir");
        std::fs::create_dir_all(image_path.join("layers")).expect("mkdir");
        std::fs::write(layer_path.join("layer.squashfs"), layer).expect("write");
        std::fs::write(image_path.join("manifest.json"), "{}").expect("write");
        std::os::unix::fs::symlink(
            format!("../../{layer_digest}-layer/layer.squashfs"),
            image_path.join("layers/node.squashfs"),
        )
        .expect("symlink");
        let entry = |path: PathBuf| kiln_cluster::ArtifactEntry {
            content_hash: kiln_store::tree_hash(&path).expect("hash"),
            digest: kiln_store::Digest::of(path.as_os_str().as_encoded_bytes()),
            store_path: path,
            secret: true,
        };
        kiln_cluster::Manifest {
            cluster: "c".into(),
            artifacts: [
                ("node/a/image".to_owned(), entry(image_path)),
                ("node/a/layer".to_owned(), entry(layer_path)),
            ]
            .into_iter()
            .collect(),
            cluster_artifacts: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }

    #[test]
    fn an_image_is_identified_by_what_its_links_point_at_not_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = artifact_identities(&linked(&dir.path().join("1"), "aaaa", b"layer"))
            .expect("identities");
        // Another recipe: the layer's store path has another digest, the bytes are the same.
        let second_manifest = linked(&dir.path().join("2"), "bbbb", b"layer");
        assert_ne!(
            second_manifest.artifacts["node/a/image"].content_hash,
            linked(&dir.path().join("3"), "aaaa", b"layer").artifacts["node/a/image"].content_hash,
            "the content hashes differ with the link targets"
        );
        let second = artifact_identities(&second_manifest).expect("identities");
        assert_eq!(first, second, "the same bytes behind the links");
        let third = artifact_identities(&linked(&dir.path().join("4"), "cccc", b"other layer"))
            .expect("identities");
        assert_ne!(
            first["node/a/image"], third["node/a/image"],
            "another layer"
        );
        assert_ne!(first["node/a/layer"], third["node/a/layer"]);
        // An artifact without links keeps its content hash.
        let manifest = linked(&dir.path().join("5"), "dddd", b"layer");
        assert_eq!(
            artifact_identities(&manifest).expect("identities")["node/a/layer"],
            manifest.artifacts["node/a/layer"].content_hash
        );
        // A link to a path outside the build is hashed as it is.
        let mut outside = linked(&dir.path().join("6"), "eeee", b"layer");
        outside.artifacts.remove("node/a/layer");
        let mut elsewhere = linked(&dir.path().join("7"), "ffff", b"layer");
        elsewhere.artifacts.remove("node/a/layer");
        assert_ne!(
            artifact_identities(&outside).expect("identities")["node/a/image"],
            artifact_identities(&elsewhere).expect("identities")["node/a/image"]
        );
    }

    #[test]
    fn a_pass_is_keyed_by_every_input_it_ran() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (result, kubectl, qemu) = inputs(dir.path(), b"image");
        let key = |line: &[&str], kubectl: &Path, qemu: &Path| {
            let manifest = read_manifest(&result).expect("a manifest");
            Proof::of(&args(line), &manifest, kubectl, qemu)
                .expect("a proof")
                .key()
        };
        let base = key(&[], &kubectl, &qemu);
        assert_eq!(
            key(&["--keep", "--rerun"], &kubectl, &qemu),
            base,
            "not inputs"
        );
        let others = [
            key(&["--scenario", "ha"], &kubectl, &qemu),
            key(&["--cpus", "1"], &kubectl, &qemu),
            key(&[], &qemu, &qemu),
            key(&[], &kubectl, &kubectl),
        ];
        for other in others {
            assert_ne!(other, base);
        }
        let changed = tempfile::tempdir().expect("tempdir");
        let (result, kubectl, qemu) = inputs(changed.path(), b"another image");
        let manifest = read_manifest(&result).expect("a manifest");
        let proof = Proof::of(&args(&[]), &manifest, &kubectl, &qemu).expect("a proof");
        assert_ne!(proof.key(), base, "an image changed");
        let text = proof.to_json();
        assert!(text.contains("\"node/a/image\""), "{text}");
        assert!(text.contains(env!("KILN_VM_HARNESS")), "{text}");
    }
}
