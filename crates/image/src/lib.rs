//! kiln-image: everything a node image is made of, as derivations for [`kiln_graph`], and the
//! image itself.
//!
//! - **The package set** ([`packages`], read from the repository's `packages/*.toml`): every
//!   piece of software a node runs, declared once with its source and how it is built.
//!   [`go_derivations`] turns a Go package into two derivations, as Nix's `buildGoModule` does:
//!   a fixed-output module download pinned by content hash, then an offline, reproducible
//!   compile ([`go`]).
//! - **Kubernetes from Debian's source** ([`KubernetesSource::Debian`]): bookworm's
//!   `kubernetes` source package (upstream 1.20.2) built with Debian's Go, pinned by
//!   `kiln.lock` ([`Lock`]); [`KubernetesSource::Release`] (downloads checked against their
//!   SHA-256) and [`KubernetesSource::Path`] (a local directory) are the other sources of
//!   [`kubernetes_binaries`].
//! - **The base OS** ([`base_os`]): Debian bookworm, resolved against the apt sources before a
//!   build ([`resolve()`], which is how a moving archive is handled) and pinned in `kiln.lock`;
//!   the [`initrd`]; and [`squashfs`] layers ([`LayerSpec`], [`assemble`]).
//! - **Container images**, named by the image catalog `kiln_spec::images`:
//!   [`container_images`] (pause and the test workload, from Debian's static busybox) and
//!   [`component_images`] (what pods run: etcd, kube-apiserver, kube-controller-manager,
//!   kube-scheduler and kube-proxy from the package set's binaries, kube-proxy with iptables
//!   and conntrack from the base OS, and CoreDNS), each a deterministic OCI archive that the
//!   node imports into containerd at boot ([`IMAGE_IMPORT_COMMAND`]).
//! - **The node image** ([`NodeImage`]): a node's layers stacked over the base OS, with the
//!   [`ImageManifest`] contract (`manifest.json`), `run-qemu` and `xl.cfg`; [`cloud_init`] and
//!   [`ignition`] give the same files to machines kiln does not boot.
//!
//! Every file of every image is dated [`IMAGE_EPOCH`]. The tools these builds run are
//! [`BUILD_TOOLS`] and [`IMAGE_TOOLS`], which [`ensure_build_tools`] and [`ensure_image_tools`]
//! install.
//!
//! The example below builds the smallest input, Kubernetes binaries from a local directory:
//!
//! ```
//! use std::os::unix::fs::PermissionsExt;
//! use kiln_graph::{DrvId, EvalOptions, Graph, NullObserver};
//! use kiln_image::{KUBERNETES_BINARIES, KubernetesSource, kubernetes_binaries};
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

mod apt;
mod error;
pub mod go;
mod kubernetes;
mod lock;
mod oci;
mod os;
pub mod packages;
mod process;
mod provision;
mod resolve;

pub use crate::apt::{deb_src_lines, deb_src_sources};
pub use crate::error::ImageError;
pub use crate::go::{GoBuild, GoDerivations, GoModules, SOURCE_DATE_FILE, go_derivations};
pub use crate::kubernetes::{
    BUILD_TOOLS, DebianKubernetes, KUBERNETES_BINARIES, KUBERNETES_DERIVATION_NAME, KubeVersion,
    KubernetesDerivations, KubernetesSource, PathKubernetes, ReleaseBinary, ReleaseKubernetes,
    TOOLCHAIN_PREFIX, TOOLCHAIN_REQUEST, build_environment, ensure_build_tools, ensure_toolchain,
    kubernetes_binaries, kubernetes_derivations, missing_build_tools, source_date_epoch,
    upstream_version,
};
pub use crate::lock::{
    Lock, LockChange, LockedPackage, PackageSetLock, SourceLock, package_changes,
};
pub use crate::oci::{
    BUSYBOX_PACKAGE, CONTAINERD_IMAGE_NAME_ANNOTATION, ComponentImageInputs, ComponentImages,
    ContainerImages, DebianBusybox, IMAGE_COMPONENTS, IMAGE_IMPORT_COMMAND, IMAGES_INDEX_FILE,
    KUBE_PROXY_FILES, KUBE_PROXY_PROGRAMS, OCI_REF_NAME_ANNOTATION, OciArchive, OciEntry,
    OciEntryKind, OciImage, PAUSE_IMAGE, ProgramSources, TEST_IMAGE, TEST_IMAGE_COMMAND,
    TEST_IMAGE_PORT, XTABLES_EXTENSIONS_DIR, busybox_static, component_image, component_images,
    container_images, kube_proxy_image, oci_archive, pause_image, pause_program, test_image,
};
pub use crate::os::base::{
    BASE_OS_ARCHITECTURE, BASE_OS_DERIVATION_NAME, BASE_OS_PACKAGES, BASE_OS_ROOTFS, BASE_OS_SUITE,
    BaseOs, DISABLED_PACKAGE_UNITS, IMAGE_EPOCH, IMAGE_TOOLS, INITRD_MODULES, PRUNED_MODULE_DIRS,
    base_os, base_os_request, ensure_image_tools, index_hashes, load_order, missing_image_tools,
    parse_modules_dep, squashfs, unsquashfs,
};
pub use crate::os::cpio::{CpioEntry, write_cpio};
pub use crate::os::initrd::{INIT_SCRIPT, INITRD_DERIVATION_NAME, Initrd, initrd};
pub use crate::os::layer::{
    LAYER_FILE, Layer, LayerCopy, LayerFile, LayerSpec, LinkedTree, assemble, assemble_linked,
    install_links,
};
pub use crate::os::node::{
    CgroupHierarchy, ImageLayer, ImageManifest, LayerEntry, NodeImage, NodeImageSpec, StateDisk,
};
pub use crate::packages::{
    GoRecipe, Package, PackageSet, PackageVersion, VersionSource, expand_template,
};
pub use crate::provision::{
    CLOUD_INIT_META_DATA, CLOUD_INIT_USER_DATA, IGNITION_CONFIG, IGNITION_VERSION, Provision,
    ProvisionFormat, TreeEntry, cloud_init, cloud_init_meta_data, ignition, read_tree,
};
pub use crate::resolve::{AptSources, Indices, Policy, Requests, Resolution, Resolver, resolve};
