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

use crate::{Component, KubeVersion};

/// The registry host of every image kiln builds. It is never contacted: containerd finds the
/// images under this name because kiln imported them.
pub const IMAGE_REGISTRY: &str = "kiln.local";

/// The directory, in an image builder's output, that holds its images' archives
/// (`images/<name>.oci.tar`).
pub const ARCHIVES_DIR: &str = "images";

/// The path of the archive of the image called `name` in an image builder's output.
fn archive_path(name: &str) -> String {
    format!("{ARCHIVES_DIR}/{name}.oci.tar")
}

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
        archive_path(self.name)
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

/// The releases of the programs in kiln's component images besides Kubernetes' own (whose tag
/// is the cluster's Kubernetes version).
///
/// They are data, not code: kiln's package set pairs each Kubernetes version it builds from Go
/// modules with an etcd release and a CoreDNS release (`with` and `pods` in
/// `packages/kubernetes.toml`), and a version built from Debian's source runs the base OS's
/// etcd and the CoreDNS release its `pods` names. The build tool reads them there and hands them to the renderers,
/// which name the images with them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Releases {
    /// etcd's release, without a leading `v`: `3.6.16`.
    pub etcd: String,
    /// CoreDNS's release, without a leading `v` (`1.15.0`), or `None` when kiln has no CoreDNS
    /// for the cluster's Kubernetes version.
    pub coredns: Option<String>,
}

impl Releases {
    /// The image `component` runs from in a cluster on Kubernetes `kubernetes`: tagged with
    /// etcd's release for etcd, with `kubernetes` otherwise.
    ///
    /// ```
    /// use kiln_spec::Component;
    /// use kiln_spec::images::Releases;
    ///
    /// let releases = Releases { etcd: "3.6.16".into(), coredns: None };
    /// let kubernetes = "1.37.2".parse().unwrap();
    /// let etcd = releases.component_image(kubernetes, Component::Etcd);
    /// assert_eq!(etcd.reference(), "kiln.local/etcd:v3.6.16");
    /// assert_eq!(etcd.archive(), "images/etcd.oci.tar");
    /// assert_eq!(
    ///     releases.component_image(kubernetes, Component::KubeApiserver).reference(),
    ///     "kiln.local/kube-apiserver:v1.37.2"
    /// );
    /// ```
    pub fn component_image(&self, kubernetes: KubeVersion, component: Component) -> ComponentImage {
        let version = match component {
            Component::Etcd => self.etcd.clone(),
            _ => kubernetes.to_string(),
        };
        ComponentImage {
            program: ImageProgram::Component(component),
            version,
        }
    }

    /// CoreDNS's image, `kiln.local/coredns:v<release>`, if kiln has a CoreDNS release for
    /// the cluster.
    ///
    /// ```
    /// use kiln_spec::images::Releases;
    ///
    /// let releases = Releases { etcd: "3.6.16".into(), coredns: Some("1.15.0".into()) };
    /// let coredns = releases.coredns_image().unwrap();
    /// assert_eq!(coredns.reference(), "kiln.local/coredns:v1.15.0");
    /// assert_eq!(coredns.archive(), "images/coredns.oci.tar");
    /// ```
    pub fn coredns_image(&self) -> Option<ComponentImage> {
        self.coredns.clone().map(|version| ComponentImage {
            program: ImageProgram::Coredns,
            version,
        })
    }
}

/// The program a [`ComponentImage`] holds: a cluster component, or the cluster DNS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageProgram {
    /// etcd or a Kubernetes program.
    Component(Component),
    /// CoreDNS, the cluster DNS add-on.
    Coredns,
}

impl ImageProgram {
    /// The program's name, which is also its image's repository name: `kube-apiserver`,
    /// `coredns`.
    pub const fn name(self) -> &'static str {
        match self {
            ImageProgram::Component(component) => component.name(),
            ImageProgram::Coredns => "coredns",
        }
    }
}

impl From<Component> for ImageProgram {
    fn from(component: Component) -> Self {
        ImageProgram::Component(component)
    }
}

/// The image of one program kiln runs in pods (etcd, a Kubernetes program, CoreDNS) at one
/// release: `kiln.local/<program>:v<version>`, the name upstream's release images use under its
/// own registry. Its one layer holds the static program at
/// [`ComponentImage::PROGRAM_DIR`]`/<program>` and the few files it reads from its root.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentImage {
    /// The program.
    pub program: ImageProgram,
    /// Its release, without a leading `v`.
    pub version: String,
}

impl ComponentImage {
    /// Where in the image the program is (and the image's `PATH` looks first).
    pub const PROGRAM_DIR: &'static str = "/usr/local/bin";

    /// The full reference containerd knows the image by: `kiln.local/<program>:v<version>`.
    pub fn reference(&self) -> String {
        format!("{IMAGE_REGISTRY}/{}:v{}", self.program.name(), self.version)
    }

    /// Where the image builder puts the image's OCI archive in its output, and so where a node
    /// image carries it: `images/<program>.oci.tar`.
    pub fn archive(&self) -> String {
        archive_path(self.program.name())
    }
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
