//! Container images kiln builds itself, with no Docker and no registry: the
//! sandbox ("pause") image and a busybox test workload, written as
//! deterministic OCI image-layout archives that `ctr images import` loads
//! into containerd when a node boots.

mod busybox;
mod component;
mod conformance;
mod elf;
mod layout;
mod needed;
mod pick;
mod tar;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Params};
#[cfg(doc)]
use kiln_spec::images::ContainerImage;
use serde_json::json;

pub use self::busybox::{
    BUSYBOX_BUILD_TOOLS, BUSYBOX_PACKAGE, BUSYBOX_SOURCE_PACKAGE, Busybox, DEBIAN_CFLAGS,
    DEBIAN_LDFLAGS, DROPPED_PATCHES, DebianBusybox, SourceBusybox, series_patches,
};
pub use self::component::{
    ComponentImageInputs, ComponentImages, IMAGE_COMPONENTS, KUBE_PROXY, KUBE_PROXY_FILES,
    KUBE_PROXY_PROGRAMS, ProgramSources, XTABLES_EXTENSIONS_DIR, component_image, component_images,
    kube_proxy_image,
};
pub use self::conformance::{
    AGNHOST_PROGRAMS, CONFORMANCE_IMAGES, CONFORMANCE_IMAGES_DIR, CONFORMANCE_REPOSITORY,
    ConformanceImages, ConformanceInputs, E2E_PACKAGE, ETCD_PACKAGE, NGINX_PROGRAMS,
    SAMPLE_APISERVER_PACKAGE, agnhost_image, conformance_busybox_image, conformance_etcd_image,
    conformance_images, conformance_reference, nautilus_image, nginx_image, nonewprivs_image,
    sample_apiserver_image,
};
pub use self::layout::{
    CONTAINERD_IMAGE_NAME_ANNOTATION, OCI_REF_NAME_ANNOTATION, OciArchive, OciImage,
    OciMultiArchive, oci_archive, oci_archive_of,
};
pub use self::tar::{OciEntry, OciEntryKind};
use crate::error::ImageError;

/// The test workload's image, from kiln's image catalog ([`kiln_spec::images::TEST`]).
pub use kiln_spec::images::TEST as TEST_IMAGE;

/// The sandbox ("pause") image, from kiln's image catalog ([`kiln_spec::images::PAUSE`]).
pub use kiln_spec::images::PAUSE as PAUSE_IMAGE;

/// The port [`TEST_IMAGE`]'s default command serves on unless the
/// container's environment sets `HTTP_PORT` ([`kiln_spec::images::TEST_PORT`]).
pub use kiln_spec::images::TEST_PORT as TEST_IMAGE_PORT;

/// The default command of [`TEST_IMAGE`]: write the hostname to
/// `/www/index.html` and serve `/www` over HTTP in the foreground.
pub const TEST_IMAGE_COMMAND: [&str; 3] = [
    "/bin/sh",
    "-c",
    "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p \"${HTTP_PORT:-8080}\" -h /www",
];

/// The command that imports one archive into the namespace the kubelet's
/// CRI uses; append the archive's path (and put `--address <socket>` after
/// `ctr` for a containerd not on the default socket).
///
/// With containerd 1.6 this registers exactly the image's reference (taken
/// from the index's [`CONTAINERD_IMAGE_NAME_ANNOTATION`]) and unpacks it for
/// linux/amd64 into the default snapshotter; no `--base-name`,
/// `--index-name`, `--all-platforms` or `--no-unpack` is needed.
pub const IMAGE_IMPORT_COMMAND: [&str; 5] = ["ctr", "--namespace", "k8s.io", "images", "import"];

/// The file, in [`container_images`]' output, that maps each reference to
/// its archive and manifest digest.
pub const IMAGES_INDEX_FILE: &str = "images.json";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The pause program: a static x86-64 Linux executable of a few hundred
/// bytes, emitted by kiln itself. SIGINT and SIGTERM make it exit 0,
/// SIGCHLD makes it reap exited children, and otherwise it waits in
/// pause(2).
///
/// ```
/// let program = kiln_image::oci::pause_program();
/// assert_eq!(&program[..4], b"\x7fELF");
/// assert_eq!(program, kiln_image::oci::pause_program());
/// ```
pub fn pause_program() -> Vec<u8> {
    elf::pause_program()
}

/// The [`PAUSE_IMAGE`]: `/pause` (see [`pause_program`]) as its entrypoint.
pub fn pause_image() -> OciImage {
    OciImage {
        reference: PAUSE_IMAGE.reference(),
        base_layers: Vec::new(),
        layer: vec![OciEntry::file("pause", 0o755, pause_program())],
        entrypoint: vec!["/pause".to_owned()],
        cmd: Vec::new(),
        env: vec![PATH_ENV.to_owned()],
        exposed_ports: Vec::new(),
    }
}

/// The [`TEST_IMAGE`]: `/bin/busybox` with a symbolic link in `/bin` for
/// each of `applets`, a minimal `/etc/passwd` and `/etc/group`, empty
/// `/dev`, `/proc`, `/sys`, `/root` and `/tmp`, and [`TEST_IMAGE_COMMAND`]
/// as its command (so `kubectl exec` can still run `wget`, `nc` or `sh`).
///
/// ```
/// let image = kiln_image::oci::test_image(b"(busybox)".to_vec(), &["sh", "wget"]);
/// assert_eq!(image.reference, kiln_image::oci::TEST_IMAGE.reference());
/// assert!(image.layer.iter().any(|entry| entry.path == "bin/wget"));
/// ```
pub fn test_image(busybox: Vec<u8>, applets: &[&str]) -> OciImage {
    let mut layer = base_files();
    layer.extend([
        OciEntry::directory("bin", 0o755),
        OciEntry::file("bin/busybox", 0o755, busybox),
        OciEntry::directory("dev", 0o755),
        OciEntry::directory("proc", 0o755),
        OciEntry::directory("root", 0o700),
        OciEntry::directory("sys", 0o755),
    ]);
    for applet in applets {
        if *applet != "busybox" {
            layer.push(OciEntry::symlink(format!("bin/{applet}"), "busybox"));
        }
    }
    OciImage {
        reference: TEST_IMAGE.reference(),
        base_layers: Vec::new(),
        layer,
        entrypoint: Vec::new(),
        cmd: TEST_IMAGE_COMMAND
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect(),
        env: vec![PATH_ENV.to_owned()],
        exposed_ports: vec![format!("{TEST_IMAGE_PORT}/tcp")],
    }
}

/// The files every image kiln builds around a program has: `/etc` with a minimal `passwd`
/// and `group` (root and nobody), and `/tmp` (mode 1777).
fn base_files() -> Vec<OciEntry> {
    vec![
        OciEntry::directory("etc", 0o755),
        OciEntry::file(
            "etc/group",
            0o644,
            b"root:x:0:\nnogroup:x:65534:\n".to_vec(),
        ),
        OciEntry::file(
            "etc/passwd",
            0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
                .to_vec(),
        ),
        OciEntry::directory("tmp", 0o1777),
    ]
}

/// Writes each `(archive path, image)` of `images` into `out` (mode 0644) and
/// [`IMAGES_INDEX_FILE`]: a JSON object from each reference to its archive and manifest digest.
/// Images given the same archive path share one archive ([`oci_archive_of`], in the order
/// given), which holds each of their blobs once.
fn write_images(
    out: &Path,
    images: Vec<(String, OciImage)>,
    source_date_epoch: u64,
) -> Result<(), ImageError> {
    let images_dir = out.join(kiln_spec::images::ARCHIVES_DIR);
    fs::create_dir_all(&images_dir).map_err(|error| ImageError::io(&images_dir, error))?;
    let mut archives: BTreeMap<String, Vec<OciImage>> = BTreeMap::new();
    for (archive_path, image) in images {
        archives.entry(archive_path).or_default().push(image);
    }
    let mut index = BTreeMap::new();
    for (archive_path, images) in archives {
        let archive = oci_archive_of(&images, source_date_epoch)?;
        let path = out.join(&archive_path);
        fs::write(&path, &archive.bytes).map_err(|error| ImageError::io(&path, error))?;
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .map_err(|error| ImageError::io(&path, error))?;
        }
        for (image, manifest_digest) in images.into_iter().zip(archive.manifest_digests) {
            index.insert(
                image.reference,
                json!({ "archive": archive_path, "manifest_digest": manifest_digest }),
            );
        }
    }
    let path = out.join(IMAGES_INDEX_FILE);
    let mut text = serde_json::to_string_pretty(&index).map_err(|error| ImageError::Assembly {
        what: IMAGES_INDEX_FILE.to_owned(),
        reason: error.to_string(),
    })?;
    text.push('\n');
    fs::write(&path, text).map_err(|error| ImageError::io(&path, error))
}

/// The derivation of Debian's busybox ([`DebianBusybox`] for the one package of `set`, from
/// `sources`), named `busybox-static`: fixed-output, pinned to the set's content hash, when the
/// lock records one; otherwise addressed by the package (its version and `.deb` hash).
///
/// # Errors
///
/// If `set` is not exactly the package [`BUSYBOX_PACKAGE`].
pub fn busybox_static(
    set: &crate::lock::PackageSetLock,
    sources: &crate::resolve::AptSources,
) -> Result<Derivation, ImageError> {
    let derivation = Derivation::new(BUSYBOX_PACKAGE, Arc::new(DebianBusybox::new(set, sources)?));
    Ok(match set.content_hash {
        Some(content_hash) => derivation.fixed(content_hash),
        None => derivation,
    })
}

/// The derivation of busybox built from its Debian source package ([`SourceBusybox`] for
/// `lock`, fetched from `sources`' `deb-src` counterparts) with the C toolchain that
/// `toolchain` produces (a [`crate::toolchain::c_toolchain`] derivation), named
/// `busybox-source`: fixed-output, pinned to the lock's content hash, when the lock records one;
/// otherwise addressed by the source's version, the recipe and the toolchain.
///
/// # Errors
///
/// As [`SourceBusybox::new`].
pub fn busybox_source(
    lock: &crate::lock::SourceLock,
    sources: &crate::resolve::AptSources,
    toolchain: impl Into<DrvId>,
) -> Result<Derivation, ImageError> {
    let derivation = Derivation::new(
        "busybox-source",
        Arc::new(SourceBusybox::new(lock, sources)?),
    )
    .input("toolchain", toolchain);
    Ok(match lock.content_hash {
        Some(content_hash) => derivation.fixed(content_hash),
        None => derivation,
    })
}

/// The derivation of every container image, named `container-images`, with
/// input `busybox` produced by `busybox` (a [`busybox_static`] derivation,
/// or anything with the same layout).
///
/// Its output holds each image's archive at [`ContainerImage::archive`] (see
/// [`kiln_spec::images::catalog`]) and
/// [`IMAGES_INDEX_FILE`]: a JSON object from each reference to
/// `{"archive": <path in the output>, "manifest_digest": "sha256:..."}`.
/// Every timestamp in the archives is `source_date_epoch`.
///
/// ```no_run
/// use kiln_graph::Graph;
/// use kiln_image::{resolve::AptSources, lock::Lock, oci::{busybox_static, container_images}};
///
/// let lock = Lock::parse(&std::fs::read_to_string("kiln.lock")?, "kiln.lock")?;
/// let sources = AptSources::machine("/etc/apt".as_ref())?;
/// let mut graph = Graph::new();
/// graph.add("busybox", busybox_static(&lock.busybox, &sources)?)?;
/// graph.add("images", container_images("busybox", 1_672_531_200))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn container_images(busybox: impl Into<DrvId>, source_date_epoch: u64) -> Derivation {
    Derivation::new(
        "container-images",
        Arc::new(ContainerImages { source_date_epoch }),
    )
    .input("busybox", busybox)
}

/// The builder of [`container_images`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ContainerImages {
    /// Every timestamp in the archives, in seconds since 1970.
    pub source_date_epoch: u64,
}

impl ContainerImages {
    /// Writes the archives and [`IMAGES_INDEX_FILE`] into `out`, from a
    /// busybox directory laid out as [`DebianBusybox`]'s output.
    ///
    /// # Errors
    ///
    /// If the busybox directory cannot be read or `out` written, or the image catalog
    /// ([`kiln_spec::images::catalog`]) has an image this builder has no recipe for.
    pub fn build_into(&self, busybox_dir: &Path, out: &Path) -> Result<(), ImageError> {
        let busybox = Busybox::read(busybox_dir)?;
        let applets = busybox.applet_names();

        let mut images = Vec::new();
        for entry in kiln_spec::images::catalog() {
            let image = match entry {
                PAUSE_IMAGE => pause_image(),
                TEST_IMAGE => test_image(busybox.binary.clone(), &applets),
                other => {
                    return Err(ImageError::Assembly {
                        what: other.reference(),
                        reason: "the image catalog has it, but kiln-image has no recipe for it"
                            .to_owned(),
                    });
                }
            };
            images.push((entry.archive(), image));
        }
        write_images(out, images, self.source_date_epoch)
    }
}

impl Builder for ContainerImages {
    fn kind(&self) -> &str {
        "kiln-image.container-images"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        Params::of(self)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let busybox = ctx.input("busybox")?;
        self.build_into(busybox, ctx.out())
            .map_err(BuildError::from_error)
    }
}
