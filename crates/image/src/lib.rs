//! kiln-image: everything a node image is made of, as derivations for [`kiln_graph`], and the
//! image itself.
//!
//! The public API is grouped by what each part makes; the crate root holds only [`ImageError`].
//!
//! - **The package set** ([`packages`], read from the repository's `packages/*.toml`): every
//!   piece of software a node runs, declared once with its source and how it is built.
//!   [`go::go_derivations`] turns a Go package into two derivations, as Nix's `buildGoModule`
//!   does: a fixed-output module download pinned by content hash, then an offline,
//!   reproducible compile ([`go`]).
//! - **The Kubernetes binaries** ([`kubernetes`]): from the package set, from Debian's
//!   `kubernetes` source package (upstream 1.20.2, built with Debian's Go,
//!   [`kubernetes::KubernetesSource::Debian`]), from release downloads checked against their
//!   SHA-256, or from a local directory ([`kubernetes::kubernetes_binaries`]).
//! - **Debian's archive**: [`lock`] (`kiln.lock`, every input taken from the archive, pinned),
//!   [`resolve`] (the lock against the apt sources as they are today, which is how a moving
//!   archive is handled) and [`apt`] (`deb-src` entries derived from `deb` ones).
//! - **The node's operating system** ([`os`]): the Debian bookworm base OS
//!   ([`os::base::base_os`]), the initrd ([`os::initrd`], written with [`os::cpio`]), squashfs
//!   layers ([`os::layer::LayerSpec`], [`os::layer::assemble`]) and the node image that stacks
//!   them ([`os::node::NodeImage`], with the [`os::node::ImageManifest`] contract,
//!   `manifest.json`, `run-qemu` and `xl.cfg`).
//! - **Container images** ([`oci`]), named by the image catalog `kiln_spec::images`:
//!   [`oci::container_images`] (pause and the test workload, from Debian's static busybox) and
//!   [`oci::component_images`] (what pods run: etcd, kube-apiserver, kube-controller-manager,
//!   kube-scheduler and kube-proxy from the package set's binaries, kube-proxy with iptables
//!   and conntrack from the base OS, and CoreDNS), each a deterministic OCI archive that the
//!   node imports into containerd at boot ([`oci::IMAGE_IMPORT_COMMAND`]).
//! - **Provisioning** ([`provision`]): [`provision::cloud_init`] and [`provision::ignition`]
//!   give a node's files to machines kiln does not boot.
//!
//! Every file of every image is dated [`os::base::IMAGE_EPOCH`]. The tools these builds run
//! are [`kubernetes::BUILD_TOOLS`] and [`os::base::IMAGE_TOOLS`], `kiln_tools::Tool`s. A build
//! never installs anything: a missing tool fails it, naming the package, and the xtask runs
//! `kiln_tools::install` on these lists before building.
//!
//! The example below builds the smallest input, Kubernetes binaries from a local directory:
//!
//! ```
//! use std::os::unix::fs::PermissionsExt;
//! use kiln_graph::{DrvId, EvalOptions, Graph, NullObserver};
//! use kiln_image::kubernetes::{KUBERNETES_BINARIES, KubernetesSource, kubernetes_binaries};
//! use kiln_store::Store;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A directory of (here, fake) binaries.
//! let dir = tempfile::tempdir()?;
//! for name in KUBERNETES_BINARIES {
//!     std::fs::write(dir.path().join(name), format!("#!/bin/sh\necho {name}\n"))?;
//! }
//! let source = KubernetesSource::Path { version: "v1.20.2".into(), dir: dir.path().into() };
//!
//! let mut graph = Graph::new();
//! graph.add("kubernetes", kubernetes_binaries(&source)?)?;
//! let graph = graph.validate()?;
//! let store_dir = tempfile::tempdir()?;
//! let store = Store::open(&store_dir.path().join("store"))?;
//! let evaluation = graph.evaluate(&store, &EvalOptions::default(), &NullObserver)?;
//!
//! let output = &evaluation.outputs[&DrvId::from("kubernetes")].path;
//! let kubelet = output.join("bin/kubelet");
//! assert_eq!(std::fs::metadata(&kubelet)?.permissions().mode() & 0o111, 0o111);
//! assert_eq!(std::fs::read_to_string(output.join("VERSION"))?, "v1.20.2\n");
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod apt;
mod error;
pub mod go;
pub mod kubernetes;
pub mod lock;
pub mod oci;
pub mod os;
pub mod packages;
mod process;
pub mod provision;
pub mod resolve;
pub mod toolchain;

pub use crate::error::ImageError;
