//! Component images: etcd and the Kubernetes control plane, each a single layer holding the
//! component's static program and the few files a Go program reads from its root.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId};
use kiln_spec::Component;
use kiln_spec::images::ComponentImage;

use super::{OciEntry, OciImage, PATH_ENV, base_files, write_images};
use crate::error::ImageError;

/// The components kiln builds an image of: etcd and the control plane. The kubelet runs on the
/// host; kube-proxy needs iptables or nft and their libraries in its image, which kiln does not
/// assemble yet, so it has none.
pub const IMAGE_COMPONENTS: [Component; 4] = [
    Component::Etcd,
    Component::KubeApiserver,
    Component::KubeControllerManager,
    Component::KubeScheduler,
];

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

/// The derivation of `images` (each of a component of [`IMAGE_COMPONENTS`]), named
/// `component-images`: etcd's program from input `etcd` (the package set's etcd build, its
/// program in `bin/`), every other from input `kubernetes` (the Kubernetes binaries, in
/// `bin/`). Both must be static programs; the package set builds them so (`cgo = false`).
///
/// Its output holds each image's archive at [`ComponentImage::archive`] and
/// [`IMAGES_INDEX_FILE`](super::IMAGES_INDEX_FILE), as [`container_images`](super::container_images)'
/// does. Every timestamp in the archives is `source_date_epoch`.
pub fn component_images(
    kubernetes: impl Into<DrvId>,
    etcd: impl Into<DrvId>,
    images: Vec<ComponentImage>,
    source_date_epoch: u64,
) -> Derivation {
    Derivation::new(
        "component-images",
        Arc::new(ComponentImages {
            images,
            source_date_epoch,
        }),
    )
    .input("kubernetes", kubernetes)
    .input("etcd", etcd)
}

/// The builder of [`component_images`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentImages {
    /// The images, each built once however often it is listed.
    pub images: Vec<ComponentImage>,
    /// Every timestamp in the archives, in seconds since 1970.
    pub source_date_epoch: u64,
}

impl ComponentImages {
    /// Writes the archives and the index into `out`, reading each program from
    /// `kubernetes/bin/` or `etcd/bin/`.
    ///
    /// # Errors
    ///
    /// If an image is of a component outside [`IMAGE_COMPONENTS`], a program cannot be read,
    /// or `out` cannot be written.
    pub fn build_into(&self, kubernetes: &Path, etcd: &Path, out: &Path) -> Result<(), ImageError> {
        let images: BTreeMap<String, &ComponentImage> = self
            .images
            .iter()
            .map(|image| (image.reference(), image))
            .collect();
        let mut built = Vec::new();
        for image in images.values() {
            if !IMAGE_COMPONENTS.contains(&image.component) {
                return Err(ImageError::Assembly {
                    what: image.reference(),
                    reason: "kiln builds an image of etcd and the control plane only".to_owned(),
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
            built.push((image.archive(), component_image(image, program)));
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
        let mut images: Vec<String> = self.images.iter().map(ComponentImage::reference).collect();
        images.sort();
        images.dedup();
        let mut params = self.source_date_epoch.to_le_bytes().to_vec();
        for image in images {
            params.extend_from_slice(image.as_bytes());
            params.push(b'\n');
        }
        params
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let kubernetes = ctx.input("kubernetes")?;
        let etcd = ctx.input("etcd")?;
        self.build_into(kubernetes, etcd, ctx.out())
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
        let builder = ComponentImages {
            images: vec![
                image(Component::KubeApiserver, "1.37.2"),
                image(Component::Etcd, "3.6.16"),
                image(Component::KubeApiserver, "1.37.2"),
            ],
            source_date_epoch: 1,
        };
        let out = dir.path().join("out");
        builder
            .build_into(&kubernetes, &etcd, &out)
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
        let missing = ComponentImages {
            images: vec![image(Component::KubeScheduler, "1.37.2")],
            source_date_epoch: 1,
        };
        let error = missing
            .build_into(&kubernetes, &etcd, &dir.path().join("out2"))
            .expect_err("no scheduler");
        assert!(error.to_string().contains("kube-scheduler"), "{error}");

        let kubelet = ComponentImages {
            images: vec![image(Component::Kubelet, "1.37.2")],
            source_date_epoch: 1,
        };
        assert!(
            kubelet
                .build_into(&kubernetes, &etcd, &dir.path().join("out3"))
                .is_err()
        );
    }
}
