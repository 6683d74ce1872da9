//! The catalog of container images kiln builds: the one place where an image's reference is
//! written.
//!
//! No container registry is reachable from the machines kiln builds on, so kiln builds every
//! image a node runs itself and imports it into containerd when the node boots. The image
//! builder (kiln-image) names each archive it writes after an entry here, and everything that
//! points at an image (containerd's sandbox image in kiln-units, the static pods and add-ons in
//! kiln-manifests, the workloads the VM tests start) reads the same entry, so the two sides
//! cannot disagree.
//!
//! ```
//! use kiln_spec::images::{self, ContainerImage};
//!
//! assert_eq!(images::PAUSE.reference(), "kiln.local/pause:3.2");
//! assert_eq!(images::PAUSE.archive(), "images/pause.oci.tar");
//! assert_eq!(images::catalog().map(ContainerImage::name), ["pause", "test"]);
//! ```

use std::fmt;

/// The registry host of every image kiln builds. It is never contacted: containerd finds the
/// images under this name because kiln imported them.
pub const IMAGE_REGISTRY: &str = "kiln.local";

/// One image kiln builds: its repository name under [`IMAGE_REGISTRY`] and its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerImage {
    name: &'static str,
    tag: &'static str,
}

impl ContainerImage {
    /// The image's repository name: `pause` in `kiln.local/pause:3.2`.
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// The image's tag: `3.2` in `kiln.local/pause:3.2`.
    pub const fn tag(self) -> &'static str {
        self.tag
    }

    /// The full reference containerd knows the image by: `kiln.local/<name>:<tag>`.
    pub fn reference(self) -> String {
        self.to_string()
    }

    /// Where the image builder puts the image's OCI archive in its output, and so where a node
    /// image carries it: `images/<name>.oci.tar`.
    pub fn archive(self) -> String {
        format!("images/{}.oci.tar", self.name)
    }
}

impl fmt::Display for ContainerImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{IMAGE_REGISTRY}/{}:{}", self.name, self.tag)
    }
}

/// The sandbox ("pause") image: a static program of a few hundred bytes that kiln emits itself,
/// which holds each pod's namespaces. containerd's sandbox image in every node's configuration.
pub const PAUSE: ContainerImage = ContainerImage {
    name: "pause",
    tag: "3.2",
};

/// The test workload: Debian's static busybox serving its host name over HTTP on
/// [`TEST_PORT`]. The VM tests run it as their pods.
pub const TEST: ContainerImage = ContainerImage {
    name: "test",
    tag: "1",
};

/// The port [`TEST`]'s default command serves on, unless the container's environment sets
/// `HTTP_PORT`.
pub const TEST_PORT: u16 = 8080;

/// Every image of the catalog, in the order the image builder writes them.
pub const fn catalog() -> [ContainerImage; 2] {
    [PAUSE, TEST]
}

/// The image of a Kubernetes component (or etcd) at `version` (without the leading `v`):
/// `kiln.local/<component>:v<version>`, the name upstream's release images use under its own
/// registry.
///
/// ```
/// assert_eq!(
///     kiln_spec::images::component_reference("kube-apiserver", "1.37.2"),
///     "kiln.local/kube-apiserver:v1.37.2"
/// );
/// ```
pub fn component_reference(component: &str, version: &str) -> String {
    format!("{IMAGE_REGISTRY}/{component}:v{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_archives_are_distinct() {
        let images = catalog();
        for (index, image) in images.iter().enumerate() {
            for other in &images[index + 1..] {
                assert_ne!(image.reference(), other.reference());
                assert_ne!(image.archive(), other.archive());
            }
            assert_eq!(image.to_string(), image.reference());
        }
    }
}
