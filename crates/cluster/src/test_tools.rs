//! The VM tests' tools disk: upstream programs that judge a cluster (kube-bench; the end-to-end
//! suite's images), built by the cluster's own graph beside its node images but never part of
//! one. A guest gets the disk read-only; nothing on it is a secret.

use kiln_graph::{DrvId, Graph};
use kiln_image::os::layer::{LayerCopy, LayerSpec};
use kiln_image::packages::{Package, PackageVersion};
use kiln_spec::Plan;

use crate::{Artifacts, ClusterError, ClusterGraph, ImageInputs};

/// The artifact of the tools disk: a layer whose squashfs holds, for each tool package
/// `<name>/bin` and `<name>/share`, and with the end-to-end suite, the conformance images'
/// archives in [`kiln_image::oci::CONFORMANCE_IMAGES_DIR`].
pub const TEST_TOOLS_ARTIFACT: &str = "image/test-tools";

/// The artifact of the conformance images (see [`kiln_image::oci::conformance_images`]), when
/// the tools include [`kiln_image::oci::E2E_PACKAGE`].
pub const CONFORMANCE_IMAGES_ARTIFACT: &str = "image/conformance-images";

/// The derivation of the C toolchain that builds [`BUSYBOX_SOURCE_ID`] (see
/// [`kiln_image::toolchain::c_toolchain`]), when the tools include the end-to-end suite.
pub const C_TOOLCHAIN_ID: &str = "image/c-toolchain";

/// The derivation of the conformance images' busybox, built from Debian's source package with
/// upstream's ash (see [`kiln_image::oci::busybox_source`]), when the tools include the
/// end-to-end suite.
pub const BUSYBOX_SOURCE_ID: &str = "image/busybox-source";

/// The artifact of tool package `name`'s build: `image/package/<name>`.
pub fn package_artifact(name: &str) -> String {
    format!("image/package/{name}")
}

impl ClusterGraph {
    /// Adds the tools disk ([`TEST_TOOLS_ARTIFACT`]) of `tools`, packages of kiln's package set
    /// built from Go modules, each with its artifact ([`package_artifact`]). Every package but
    /// the end-to-end suite ([`kiln_image::oci::E2E_PACKAGE`]) and sample-apiserver
    /// ([`kiln_image::oci::SAMPLE_APISERVER_PACKAGE`]) goes on the disk as its `bin/` and, when
    /// it ships data, `share/`; the suite runs on the host, and only the images its tests run
    /// ([`kiln_image::oci::CONFORMANCE_IMAGES`]: [`CONFORMANCE_IMAGES_ARTIFACT`], made of the
    /// suite's programs, sample-apiserver and the node images' etcd) go on the disk.
    ///
    /// Call it after [`ClusterGraph::with_images`], with the same `inputs`: the conformance
    /// images take the base OS from the node images, and busybox built from the source package
    /// `inputs.lock` pins (`[busybox-source]`) with its C toolchain ([`BUSYBOX_SOURCE_ID`],
    /// [`C_TOOLCHAIN_ID`]).
    ///
    /// # Errors
    ///
    /// If a package is not built from Go modules, the graph has no images, the suite is not of
    /// the cluster's version, one of the suite and sample-apiserver is among `tools` without
    /// the other, the cluster's version runs no etcd of the package set, or with the suite, the
    /// lock has no busybox source.
    pub fn with_test_tools(
        mut self,
        plan: &Plan,
        inputs: &ImageInputs,
        tools: &[(Package, PackageVersion)],
    ) -> Result<ClusterGraph, ClusterError> {
        add_test_tools(&mut self.graph, &mut self.artifacts, plan, inputs, tools)?;
        Ok(self)
    }
}

fn add_test_tools(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Plan,
    image_inputs: &ImageInputs,
    tools: &[(Package, PackageVersion)],
) -> Result<(), ClusterError> {
    let refuse = |message: String| ClusterError::Assembly {
        what: "the test tools".into(),
        message,
    };
    let (sample_apiserver_package, _) = kiln_image::oci::SAMPLE_APISERVER_PACKAGE;
    let mut layer = LayerSpec::default();
    let mut inputs = Vec::new();
    let mut suite = None;
    let mut sample_apiserver = None;
    for (package, version) in tools {
        let id = crate::images::add_package(graph, artifacts, package, version)?;
        if package.name == kiln_image::oci::E2E_PACKAGE {
            if version.version != plan.cluster.kubernetes_version.to_string() {
                return Err(refuse(format!(
                    "the end-to-end suite is of Kubernetes {}, the cluster runs {}",
                    version.version, plan.cluster.kubernetes_version
                )));
            }
            suite = Some((version.version.clone(), id));
            continue;
        }
        // A conformance image's program: in the images, not on the disk.
        if package.name == sample_apiserver_package {
            sample_apiserver = Some(id);
            continue;
        }
        let mut parts = vec!["bin"];
        if package.go.as_ref().is_some_and(|go| !go.data.is_empty()) {
            parts.push("share");
        }
        for part in parts {
            layer.copies.push(LayerCopy {
                input: package.name.clone(),
                from: part.to_owned(),
                to: format!("{}/{part}", package.name),
            });
        }
        inputs.push((package.name.clone(), id));
    }
    match (suite, sample_apiserver) {
        (Some((version, e2e)), Some(sample_apiserver)) => {
            // The node images' etcd (with_images adds it, with its artifact).
            let Some(etcd) = artifacts
                .cluster
                .get(&package_artifact(kiln_image::oci::ETCD_PACKAGE))
                .cloned()
            else {
                return Err(refuse(format!(
                    "the conformance images hold the package set's etcd, which Kubernetes {version} does not run"
                )));
            };
            let Some(busybox_source) = &image_inputs.lock.busybox_source else {
                return Err(refuse(
                    "the conformance images' busybox is built from Debian's source package, \
                     and the lock has no [busybox-source]: `cargo xtask lock` resolves it"
                        .to_owned(),
                ));
            };
            let assembly = |error: kiln_image::ImageError| refuse(error.to_string());
            let toolchain = DrvId::new(C_TOOLCHAIN_ID);
            graph.add(
                toolchain.clone(),
                kiln_image::toolchain::c_toolchain(
                    &busybox_source.toolchain,
                    &image_inputs.sources,
                )
                .map_err(assembly)?,
            )?;
            let busybox = DrvId::new(BUSYBOX_SOURCE_ID);
            graph.add(
                busybox.clone(),
                kiln_image::oci::busybox_source(busybox_source, &image_inputs.sources, toolchain)
                    .map_err(assembly)?,
            )?;
            let images = DrvId::new(CONFORMANCE_IMAGES_ARTIFACT);
            graph.add(
                images.clone(),
                kiln_image::oci::conformance_images(
                    kiln_image::oci::ConformanceInputs {
                        e2e,
                        etcd,
                        sample_apiserver,
                        busybox,
                        base_os: DrvId::new(crate::images::BASE_OS_ID),
                    },
                    &version,
                    kiln_image::os::base::IMAGE_EPOCH.unsigned_abs(),
                ),
            )?;
            artifacts
                .cluster
                .insert(CONFORMANCE_IMAGES_ARTIFACT.to_owned(), images.clone());
            layer.copies.push(LayerCopy {
                input: "conformance-images".into(),
                from: kiln_spec::images::ARCHIVES_DIR.into(),
                to: kiln_image::oci::CONFORMANCE_IMAGES_DIR.into(),
            });
            inputs.push(("conformance-images".to_owned(), images));
        }
        (Some(_), None) => {
            return Err(refuse(format!(
                "the conformance images need the {sample_apiserver_package} package among the tools"
            )));
        }
        (None, Some(_)) => {
            return Err(refuse(format!(
                "{sample_apiserver_package} is the program of a conformance image: it needs the end-to-end suite ({}) among the tools",
                kiln_image::oci::E2E_PACKAGE
            )));
        }
        (None, None) => {}
    }
    let disk = DrvId::new(TEST_TOOLS_ARTIFACT);
    graph.add(disk.clone(), layer.derivation("test-tools", inputs))?;
    artifacts
        .cluster
        .insert(TEST_TOOLS_ARTIFACT.to_owned(), disk);
    Ok(())
}
