//! Component images: etcd, the Kubernetes control plane, kube-proxy and CoreDNS, each a single
//! layer holding the static program and the few files a Go program reads from its root;
//! kube-proxy's also holds the iptables and conntrack programs it runs, from kiln's base OS.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Params};
use kiln_spec::Component;
use kiln_spec::images::{ComponentImage, ImageProgram};

use super::pick::Picker;
use super::{OciEntry, OciImage, PATH_ENV, base_files, write_images};
use crate::error::ImageError;
use crate::os::base::{BASE_OS_ROOTFS, unsquashfs};

/// The components kiln builds an image of: etcd, the control plane and kube-proxy. The kubelet
/// runs on the host. (Besides these kiln builds CoreDNS's image, [`ImageProgram::Coredns`].)
pub const IMAGE_COMPONENTS: [Component; 5] = [
    Component::Etcd,
    Component::KubeApiserver,
    Component::KubeControllerManager,
    Component::KubeScheduler,
    Component::KubeProxy,
];

/// kube-proxy's program: its image is the one that needs the base OS (see
/// [`KUBE_PROXY_PROGRAMS`]).
pub const KUBE_PROXY: ImageProgram = ImageProgram::Component(Component::KubeProxy);

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

/// The image of `image`'s program from its static `program`: the program at
/// [`ComponentImage::PROGRAM_DIR`]`/<name>` (also the image's entrypoint, which a pod's
/// `command` replaces), `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf` (`hosts: files
/// dns`, as Go's resolver expects), and empty `/tmp` and `/var`.
///
/// ```
/// use kiln_spec::Component;
/// use kiln_spec::images::{ComponentImage, ImageProgram};
///
/// let etcd = ComponentImage { program: Component::Etcd.into(), version: "3.6.16".into() };
/// let image = kiln_image::oci::component_image(&etcd, b"(etcd)".to_vec());
/// assert_eq!(image.reference, "kiln.local/etcd:v3.6.16");
/// assert_eq!(image.entrypoint, ["/usr/local/bin/etcd"]);
/// assert!(image.layer.iter().any(|entry| entry.path == "usr/local/bin/etcd"));
/// ```
pub fn component_image(image: &ComponentImage, program: Vec<u8>) -> OciImage {
    let name = image.program.name();
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
        base_layers: Vec::new(),
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

/// The derivations [`component_images`] reads programs from.
#[derive(Clone, Debug)]
pub struct ComponentImageInputs {
    /// The Kubernetes binaries (the package set's build, its programs in `bin/`).
    pub kubernetes: DrvId,
    /// The package set's etcd build (its program in `bin/`), if the cluster's version has one
    /// (Kubernetes built from Debian's source runs the base OS's etcd).
    pub etcd: Option<DrvId>,
    /// The package set's CoreDNS build (its program in `bin/`), if the cluster has one.
    pub coredns: Option<DrvId>,
    /// The base OS, whose root file system [`kube_proxy_image`] picks from.
    pub base_os: DrvId,
}

/// The derivation of `images` (each of a component of [`IMAGE_COMPONENTS`], or CoreDNS),
/// named `component-images`: etcd's program from input `etcd`, CoreDNS's from input
/// `coredns`, every other from input `kubernetes`. All must be static programs; the package
/// set builds them so (`cgo = false`). The derivation depends on `etcd` only when `images` has
/// etcd's image, on `coredns` only when it has CoreDNS's, and on `base-os` (the base OS) only
/// when it has kube-proxy's.
///
/// Its output holds each image's archive at [`ComponentImage::archive`] and
/// [`IMAGES_INDEX_FILE`](super::IMAGES_INDEX_FILE), as [`container_images`](super::container_images)'
/// does. Every timestamp in the archives is `source_date_epoch`.
///
/// # Errors
///
/// [`ImageError::Assembly`] if `images` has etcd's or CoreDNS's image and `inputs` lacks that
/// program.
pub fn component_images(
    inputs: ComponentImageInputs,
    images: Vec<ComponentImage>,
    source_date_epoch: u64,
) -> Result<Derivation, ImageError> {
    let builder = ComponentImages::new(images, source_date_epoch);
    let needs_base = builder.builds(KUBE_PROXY);
    let wanted = |program: ImageProgram, input: Option<DrvId>, what: &str| {
        builder
            .image(program)
            .map(|image| {
                input.ok_or_else(|| ImageError::Assembly {
                    what: image.reference(),
                    reason: format!(
                        "{what}'s image is built from the package set's {what}, which is no input"
                    ),
                })
            })
            .transpose()
    };
    let etcd = wanted(Component::Etcd.into(), inputs.etcd, "etcd")?;
    let coredns = wanted(ImageProgram::Coredns, inputs.coredns, "CoreDNS")?;
    let mut derivation = Derivation::new("component-images", Arc::new(builder))
        .input("kubernetes", inputs.kubernetes);
    if let Some(etcd) = etcd {
        derivation = derivation.input("etcd", etcd);
    }
    if let Some(coredns) = coredns {
        derivation = derivation.input("coredns", coredns);
    }
    if needs_base {
        derivation = derivation.input("base-os", inputs.base_os);
    }
    Ok(derivation)
}

/// The store paths [`ComponentImages::build_into`] reads from: each an output of the
/// derivation [`ComponentImageInputs`] names the same way.
#[derive(Clone, Copy, Debug)]
pub struct ProgramSources<'a> {
    /// The Kubernetes binaries, in `bin/`.
    pub kubernetes: &'a Path,
    /// etcd, in `bin/`, if an image of it is built.
    pub etcd: Option<&'a Path>,
    /// CoreDNS, in `bin/`, if an image of it is built.
    pub coredns: Option<&'a Path>,
    /// The base OS (its root in [`BASE_OS_ROOTFS`]), if kube-proxy's image is built.
    pub base_os: Option<&'a Path>,
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

    /// Its image of `program`, if it builds one.
    pub fn image(&self, program: ImageProgram) -> Option<&ComponentImage> {
        self.images.iter().find(|image| image.program == program)
    }

    /// Whether it builds an image of `program`, and so needs that program's input: the
    /// package set's etcd ([`Component::Etcd`]) or CoreDNS ([`ImageProgram::Coredns`]), or
    /// for kube-proxy's ([`KUBE_PROXY`]) the base OS.
    pub fn builds(&self, program: ImageProgram) -> bool {
        self.image(program).is_some()
    }

    /// Writes the archives and the index into `out`, reading each program from `bin/` of
    /// `sources.kubernetes`, `sources.etcd` or `sources.coredns`, and for kube-proxy's image the
    /// base OS's root from `sources.base_os`.
    ///
    /// # Errors
    ///
    /// If an image is of a component outside [`IMAGE_COMPONENTS`], a program cannot be read,
    /// an image's source is missing from `sources`, kube-proxy's image cannot be assembled
    /// from the base OS, or `out` cannot be written.
    pub fn build_into(&self, sources: ProgramSources<'_>, out: &Path) -> Result<(), ImageError> {
        let mut built = Vec::new();
        for image in &self.images {
            let missing = |what: &str| ImageError::Assembly {
                what: image.reference(),
                reason: format!("{what}, which is no input"),
            };
            let dir = match image.program {
                ImageProgram::Component(Component::Etcd) => sources
                    .etcd
                    .ok_or_else(|| missing("etcd's image is built from the package set's etcd"))?,
                ImageProgram::Component(component) if IMAGE_COMPONENTS.contains(&component) => {
                    sources.kubernetes
                }
                ImageProgram::Component(_) => {
                    return Err(ImageError::Assembly {
                        what: image.reference(),
                        reason: "kiln builds an image of etcd, the control plane, kube-proxy and CoreDNS only"
                            .to_owned(),
                    });
                }
                ImageProgram::Coredns => sources.coredns.ok_or_else(|| {
                    missing("CoreDNS's image is built from the package set's CoreDNS")
                })?,
            };
            let path = dir.join("bin").join(image.program.name());
            let program = fs::read(&path).map_err(|error| ImageError::io(&path, error))?;
            let oci = if image.program == KUBE_PROXY {
                let base_os = sources
                    .base_os
                    .ok_or_else(|| missing("kube-proxy's image is picked from the base OS"))?;
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

    fn params(&self) -> Params {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "kebab-case")]
        struct Encoded {
            images: Vec<String>,
            source_date_epoch: u64,
        }
        Params::of(&Encoded {
            images: self.images.iter().map(|image| image.reference()).collect(),
            source_date_epoch: self.source_date_epoch,
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let kubernetes = ctx.input("kubernetes")?;
        let etcd = if self.builds(Component::Etcd.into()) {
            Some(ctx.input("etcd")?)
        } else {
            None
        };
        let coredns = if self.builds(ImageProgram::Coredns) {
            Some(ctx.input("coredns")?)
        } else {
            None
        };
        let base_os = if self.builds(KUBE_PROXY) {
            ctx.report("unpacking the base OS for kube-proxy's image");
            Some(ctx.input("base-os")?)
        } else {
            None
        };
        let sources = ProgramSources {
            kubernetes,
            etcd,
            coredns,
            base_os,
        };
        self.build_into(sources, ctx.out())
            .map_err(BuildError::from_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(component: Component, version: &str) -> ComponentImage {
        ComponentImage {
            program: component.into(),
            version: version.to_owned(),
        }
    }

    fn sources<'a>(kubernetes: &'a Path, etcd: &'a Path) -> ProgramSources<'a> {
        ProgramSources {
            kubernetes,
            etcd: Some(etcd),
            coredns: None,
            base_os: None,
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
        assert!(!builder.builds(KUBE_PROXY) && builder.builds(Component::Etcd.into()));
        let out = dir.path().join("out");
        builder
            .build_into(sources(&kubernetes, &etcd), &out)
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
            .build_into(sources(&kubernetes, &etcd), &dir.path().join("out2"))
            .expect_err("no scheduler");
        assert!(error.to_string().contains("kube-scheduler"), "{error}");

        // kube-proxy's image needs the base OS to pick iptables from.
        fs::write(kubernetes.join("bin/kube-proxy"), b"proxy").expect("write");
        let proxy = ComponentImages::new(vec![image(Component::KubeProxy, "1.37.2")], 1);
        assert!(proxy.builds(KUBE_PROXY));
        let error = proxy
            .build_into(sources(&kubernetes, &etcd), &dir.path().join("out4"))
            .expect_err("no base OS");
        assert!(error.to_string().contains("base OS"), "{error}");

        // CoreDNS's image is read from the CoreDNS input, which must be there.
        let coredns_image = ComponentImage {
            program: ImageProgram::Coredns,
            version: "1.15.0".to_owned(),
        };
        let coredns = ComponentImages::new(vec![coredns_image.clone()], 1);
        assert!(coredns.builds(ImageProgram::Coredns) && !coredns.builds(KUBE_PROXY));
        let error = coredns
            .build_into(sources(&kubernetes, &etcd), &dir.path().join("out5"))
            .expect_err("no CoreDNS");
        assert!(error.to_string().contains("CoreDNS"), "{error}");
        let coredns_dir = dir.path().join("coredns");
        fs::create_dir_all(coredns_dir.join("bin")).expect("mkdir");
        fs::write(coredns_dir.join("bin/coredns"), b"coredns").expect("write");
        let with_coredns = ProgramSources {
            coredns: Some(&coredns_dir),
            ..sources(&kubernetes, &etcd)
        };
        coredns
            .build_into(with_coredns, &dir.path().join("out6"))
            .expect("builds");
        assert!(dir.path().join("out6/images/coredns.oci.tar").is_file());
        let inputs = |coredns: Option<DrvId>| ComponentImageInputs {
            kubernetes: DrvId::new("kubernetes"),
            etcd: None,
            coredns,
            base_os: DrvId::new("base-os"),
        };
        assert!(component_images(inputs(None), vec![coredns_image.clone()], 1).is_err());
        assert!(
            component_images(inputs(Some(DrvId::new("coredns"))), vec![coredns_image], 1).is_ok()
        );
        // etcd's image needs the package set's etcd; without one (Kubernetes from Debian's
        // source) only the other images can be built.
        let etcd_image = vec![image(Component::Etcd, "3.6.16")];
        let error = component_images(inputs(None), etcd_image.clone(), 1).expect_err("no etcd");
        assert!(error.to_string().contains("etcd"), "{error}");
        let with_etcd = ComponentImageInputs {
            etcd: Some(DrvId::new("etcd")),
            ..inputs(None)
        };
        assert!(component_images(with_etcd, etcd_image.clone(), 1).is_ok());
        let error = ComponentImages::new(etcd_image, 1)
            .build_into(
                ProgramSources {
                    etcd: None,
                    ..sources(&kubernetes, &etcd)
                },
                &dir.path().join("out7"),
            )
            .expect_err("no etcd");
        assert!(error.to_string().contains("etcd"), "{error}");

        let kubelet = ComponentImages::new(vec![image(Component::Kubelet, "1.37.2")], 1);
        assert!(
            kubelet
                .build_into(sources(&kubernetes, &etcd), &dir.path().join("out3"))
                .is_err()
        );
    }
}
