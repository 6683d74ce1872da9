//! Component images: etcd, the Kubernetes control plane and kube-proxy, each a single layer
//! holding the component's static program and the few files a Go program reads from its root;
//! kube-proxy's also holds the iptables and conntrack programs it runs, from kiln's base OS.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId};
use kiln_spec::Component;
use kiln_spec::images::ComponentImage;

use super::pick::Picker;
use super::{OciEntry, OciImage, PATH_ENV, base_files, write_images};
use crate::error::ImageError;
use crate::os::base::{BASE_OS_ROOTFS, unsquashfs};

/// The components kiln builds an image of: etcd, the control plane and kube-proxy. The kubelet
/// runs on the host.
pub const IMAGE_COMPONENTS: [Component; 5] = [
    Component::Etcd,
    Component::KubeApiserver,
    Component::KubeControllerManager,
    Component::KubeScheduler,
    Component::KubeProxy,
];

/// The programs kube-proxy runs (in its iptables mode, kiln's), by the names it runs them by:
/// iptables' IPv4 and IPv6 commands and `conntrack`, which it uses to drop stale UDP entries.
/// kube-proxy's image holds each as the base OS has it: Debian's alternatives point the
/// iptables names at `xtables-nft-multi`, the nftables back end the host's own rules use.
pub const KUBE_PROXY_PROGRAMS: [&str; 7] = [
    "/usr/sbin/iptables",
    "/usr/sbin/iptables-save",
    "/usr/sbin/iptables-restore",
    "/usr/sbin/ip6tables",
    "/usr/sbin/ip6tables-save",
    "/usr/sbin/ip6tables-restore",
    "/usr/sbin/conntrack",
];

/// The directory of iptables' extensions (`libxt_comment.so`, `libxt_MASQUERADE.so`, ...),
/// which it loads by name for each match and target a rule uses: kube-proxy's image holds all.
pub const XTABLES_EXTENSIONS_DIR: &str = "/usr/lib/x86_64-linux-gnu/xtables";

/// The files besides programs kube-proxy's image takes from the base OS: the protocol names
/// iptables resolves (`-p tcp`).
pub const KUBE_PROXY_FILES: [&str; 1] = ["/etc/protocols"];

/// The subtrees of the base OS's root the kube-proxy image is picked from.
const PICKED_TREES: [&str; 6] = ["bin", "etc", "lib", "lib64", "sbin", "usr"];

/// The image of `image`'s component from its static `program`: the program at
/// [`ComponentImage::PROGRAM_DIR`]`/<component>` (also the image's entrypoint, which a pod's
/// `command` replaces), `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf` (`hosts: files
/// dns`, as Go's resolver expects), and empty `/tmp` and `/var`.
///
/// ```
/// use kiln_spec::Component;
/// use kiln_spec::images::ComponentImage;
///
/// let etcd = ComponentImage { component: Component::Etcd, version: "3.6.16".into() };
/// let image = kiln_image::component_image(&etcd, b"(etcd)".to_vec());
/// assert_eq!(image.reference, "kiln.local/etcd:v3.6.16");
/// assert_eq!(image.entrypoint, ["/usr/local/bin/etcd"]);
/// assert!(image.layer.iter().any(|entry| entry.path == "usr/local/bin/etcd"));
/// ```
pub fn component_image(image: &ComponentImage, program: Vec<u8>) -> OciImage {
    let name = image.component.name();
    let dir = ComponentImage::PROGRAM_DIR.trim_start_matches('/');
    let mut layer = base_files();
    layer.extend([
        OciEntry::file("etc/nsswitch.conf", 0o644, b"hosts: files dns\n".to_vec()),
        OciEntry::directory("usr", 0o755),
        OciEntry::directory("usr/local", 0o755),
        OciEntry::directory(dir, 0o755),
        OciEntry::file(format!("{dir}/{name}"), 0o755, program),
        OciEntry::directory("var", 0o755),
    ]);
    OciImage {
        reference: image.reference(),
        layer,
        entrypoint: vec![format!("{}/{name}", ComponentImage::PROGRAM_DIR)],
        cmd: Vec::new(),
        env: vec![PATH_ENV.to_owned()],
        exposed_ports: Vec::new(),
    }
}

/// kube-proxy's image: [`component_image`] of its static `program`, plus, picked from the base
/// OS's root file system unpacked at `base_root`, each of [`KUBE_PROXY_PROGRAMS`] and
/// [`KUBE_PROXY_FILES`] with every link on its way (so `iptables` is the base OS's chain of
/// links to `xtables-nft-multi`), every extension in [`XTABLES_EXTENSIONS_DIR`], and each ELF
/// file's interpreter and shared libraries, transitively, as read from the files themselves.
///
/// # Errors
///
/// If the root lacks one of them or a library one needs (the error names both).
pub fn kube_proxy_image(
    image: &ComponentImage,
    program: Vec<u8>,
    base_root: &Path,
) -> Result<OciImage, ImageError> {
    let mut oci = component_image(image, program);
    let reference = image.reference();
    let mut picker = Picker::new(base_root, &reference);
    for path in KUBE_PROXY_PROGRAMS {
        picker.add_program(path)?;
    }
    picker.add_programs_in(XTABLES_EXTENSIONS_DIR)?;
    for path in KUBE_PROXY_FILES {
        picker.add(path)?;
    }
    let present: BTreeSet<String> = oci.layer.iter().map(|entry| entry.path.clone()).collect();
    oci.layer.extend(
        picker
            .into_entries()
            .into_iter()
            .filter(|entry| !present.contains(&entry.path)),
    );
    Ok(oci)
}

/// The derivation of `images` (each of a component of [`IMAGE_COMPONENTS`]), named
/// `component-images`: etcd's program from input `etcd` (the package set's etcd build, its
/// program in `bin/`), every other from input `kubernetes` (the Kubernetes binaries, in
/// `bin/`). Both must be static programs; the package set builds them so (`cgo = false`).
/// When `images` has kube-proxy's, input `base-os` is `base_os` (the base OS, whose root file
/// system [`kube_proxy_image`] picks from); otherwise the derivation does not depend on it.
///
/// Its output holds each image's archive at [`ComponentImage::archive`] and
/// [`IMAGES_INDEX_FILE`](super::IMAGES_INDEX_FILE), as [`container_images`](super::container_images)'
/// does. Every timestamp in the archives is `source_date_epoch`.
pub fn component_images(
    kubernetes: impl Into<DrvId>,
    etcd: impl Into<DrvId>,
    base_os: impl Into<DrvId>,
    images: Vec<ComponentImage>,
    source_date_epoch: u64,
) -> Derivation {
    let builder = ComponentImages::new(images, source_date_epoch);
    let needs_base = builder.needs_base_os();
    let derivation = Derivation::new("component-images", Arc::new(builder))
        .input("kubernetes", kubernetes)
        .input("etcd", etcd);
    if needs_base {
        derivation.input("base-os", base_os)
    } else {
        derivation
    }
}

/// The builder of [`component_images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentImages {
    /// The images, by reference, each once.
    images: Vec<ComponentImage>,
    /// Every timestamp in the archives, in seconds since 1970.
    source_date_epoch: u64,
}

impl ComponentImages {
    /// The builder of `images` (each built once however often it is listed), every timestamp
    /// `source_date_epoch`.
    pub fn new(mut images: Vec<ComponentImage>, source_date_epoch: u64) -> Self {
        images.sort_by_cached_key(ComponentImage::reference);
        images.dedup_by(|a, b| a.reference() == b.reference());
        ComponentImages {
            images,
            source_date_epoch,
        }
    }

    /// The images it builds, in the order of their references, each once.
    pub fn images(&self) -> &[ComponentImage] {
        &self.images
    }

    /// Whether it builds kube-proxy's image, and so needs the base OS.
    pub fn needs_base_os(&self) -> bool {
        self.images
            .iter()
            .any(|image| image.component == Component::KubeProxy)
    }

    /// Writes the archives and the index into `out`, reading each program from
    /// `kubernetes/bin/` or `etcd/bin/`, and for kube-proxy's image the base OS's root from
    /// `base_os` (a base OS output, its root in [`BASE_OS_ROOTFS`]).
    ///
    /// # Errors
    ///
    /// If an image is of a component outside [`IMAGE_COMPONENTS`], a program cannot be read,
    /// kube-proxy's image is asked for with no `base_os` or cannot be assembled from it, or
    /// `out` cannot be written.
    pub fn build_into(
        &self,
        kubernetes: &Path,
        etcd: &Path,
        base_os: Option<&Path>,
        out: &Path,
    ) -> Result<(), ImageError> {
        let mut built = Vec::new();
        for image in &self.images {
            if !IMAGE_COMPONENTS.contains(&image.component) {
                return Err(ImageError::Assembly {
                    what: image.reference(),
                    reason: "kiln builds an image of etcd, the control plane and kube-proxy only"
                        .to_owned(),
                });
            }
            let name = image.component.name();
            let dir = if image.component == Component::Etcd {
                etcd
            } else {
                kubernetes
            };
            let path = dir.join("bin").join(name);
            let program = fs::read(&path).map_err(|error| ImageError::io(&path, error))?;
            let oci = if image.component == Component::KubeProxy {
                let base_os = base_os.ok_or_else(|| ImageError::Assembly {
                    what: image.reference(),
                    reason: "kube-proxy's image is picked from the base OS, which is no input"
                        .to_owned(),
                })?;
                let scratch =
                    tempfile::tempdir().map_err(|error| ImageError::io("(tempdir)", error))?;
                let root = scratch.path().join("root");
                unsquashfs(&base_os.join(BASE_OS_ROOTFS), &root, &PICKED_TREES)?;
                kube_proxy_image(image, program, &root)?
            } else {
                component_image(image, program)
            };
            built.push((image.archive(), oci));
        }
        write_images(out, built, self.source_date_epoch)
    }
}

impl Builder for ComponentImages {
    fn kind(&self) -> &str {
        "kiln-image.component-images"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Vec<u8> {
        let mut params = self.source_date_epoch.to_le_bytes().to_vec();
        for image in &self.images {
            params.extend_from_slice(image.reference().as_bytes());
            params.push(b'\n');
        }
        params
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let kubernetes = ctx.input("kubernetes")?;
        let etcd = ctx.input("etcd")?;
        let base_os = if self.needs_base_os() {
            ctx.report("unpacking the base OS for kube-proxy's image");
            Some(ctx.input("base-os")?)
        } else {
            None
        };
        self.build_into(kubernetes, etcd, base_os, ctx.out())
            .map_err(BuildError::from_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(component: Component, version: &str) -> ComponentImage {
        ComponentImage {
            component,
            version: version.to_owned(),
        }
    }

    #[test]
    fn writes_each_image_once_from_the_right_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubernetes = dir.path().join("kubernetes");
        let etcd = dir.path().join("etcd");
        fs::create_dir_all(kubernetes.join("bin")).expect("mkdir");
        fs::create_dir_all(etcd.join("bin")).expect("mkdir");
        fs::write(kubernetes.join("bin/kube-apiserver"), b"apiserver").expect("write");
        fs::write(etcd.join("bin/etcd"), b"etcd").expect("write");
        let builder = ComponentImages::new(
            vec![
                image(Component::KubeApiserver, "1.37.2"),
                image(Component::Etcd, "3.6.16"),
                image(Component::KubeApiserver, "1.37.2"),
            ],
            1,
        );
        assert_eq!(builder.images().len(), 2);
        assert!(!builder.needs_base_os());
        let out = dir.path().join("out");
        builder
            .build_into(&kubernetes, &etcd, None, &out)
            .expect("builds");
        let index: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(out.join(super::super::IMAGES_INDEX_FILE)).expect("index"),
        )
        .expect("json");
        let references: Vec<&String> = index.as_object().expect("object").keys().collect();
        assert_eq!(
            references,
            [
                "kiln.local/etcd:v3.6.16",
                "kiln.local/kube-apiserver:v1.37.2"
            ]
        );
        let archive = fs::read(out.join("images/etcd.oci.tar")).expect("archive");
        let needle = b"etcd";
        assert!(archive.windows(needle.len()).any(|window| window == needle));

        // A program the inputs lack is an error naming its path, and nothing is half-built
        // into a store path (the store's temporary directory is discarded).
        let missing = ComponentImages::new(vec![image(Component::KubeScheduler, "1.37.2")], 1);
        let error = missing
            .build_into(&kubernetes, &etcd, None, &dir.path().join("out2"))
            .expect_err("no scheduler");
        assert!(error.to_string().contains("kube-scheduler"), "{error}");

        // kube-proxy's image needs the base OS to pick iptables from.
        fs::write(kubernetes.join("bin/kube-proxy"), b"proxy").expect("write");
        let proxy = ComponentImages::new(vec![image(Component::KubeProxy, "1.37.2")], 1);
        assert!(proxy.needs_base_os());
        let error = proxy
            .build_into(&kubernetes, &etcd, None, &dir.path().join("out4"))
            .expect_err("no base OS");
        assert!(error.to_string().contains("base OS"), "{error}");

        let kubelet = ComponentImages::new(vec![image(Component::Kubelet, "1.37.2")], 1);
        assert!(
            kubelet
                .build_into(&kubernetes, &etcd, None, &dir.path().join("out3"))
                .is_err()
        );
    }
}
