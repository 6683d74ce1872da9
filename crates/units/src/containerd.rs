//! containerd's `config.toml`, typed: version 2 for containerd 1.x, version 3 (or 4) for
//! containerd 2.x, chosen by the containerd release that reads it ([`ContainerdVersion`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The pause image every pod sandbox runs: kiln's own, imported into containerd, because
/// images cannot be pulled. It is the image catalog's [`kiln_spec::images::PAUSE`].
pub const SANDBOX_IMAGE: kiln_spec::images::ContainerImage = kiln_spec::images::PAUSE;
/// Where Debian's `containernetworking-plugins` installs the CNI plugins (containerd 1.x nodes).
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Where kiln's package set installs the CNI plugins (`packages/cni-plugins.toml`), on the
/// containerd 2.x nodes that run that package set's userland.
pub const PACKAGE_CNI_BIN_DIR: &str = "/opt/cni/bin";
/// Where CNI network configurations live.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// containerd's configuration file on a node (containerd's `--config`), rendered by
/// [`crate::containerd_config`].
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The first Kubernetes minor version whose nodes run containerd 2.x. containerd's own
/// support matrix (RELEASES.md, "Kubernetes Support", as of v2.4.2) lists only 2.x releases
/// from Kubernetes 1.36 (2.2 and 2.3; for 1.37, 2.3 and 2.4); 1.35 is the last with a 1.x
/// (1.7.28+). The 1.37.2 kubelet itself still starts on a runtime without the `RuntimeConfig`
/// call of containerd 2.x, falling back to its `cgroupDriver` (a fallback kubernetes PR 139121
/// keeps until 1.38), but nothing supports that pairing.
///
/// kiln moves at 1.35, the first minor its package set builds from Go modules: those versions'
/// nodes run the package set's userland (`with` in `packages/kubernetes.toml`: containerd
/// 2.4.2 and etcd 3.6 in `/usr/local/bin`, the CNI plugins in [`PACKAGE_CNI_BIN_DIR`]), which
/// containerd's matrix supports for 1.35 too (2.x beside 1.7.28+). Before 1.35 the nodes run
/// Debian's containerd 1.6 and etcd 3.4 from the base OS.
pub const FIRST_KUBERNETES_MINOR_ON_CONTAINERD_2: u32 = 35;

/// The first Kubernetes minor version whose nodes boot with the unified cgroup v2 hierarchy:
/// from 1.35 the kubelet refuses to start on cgroup v1 (`failCgroupV1` defaults to true), and
/// those nodes run the package set's containerd 2.x, which supports v2 fully. Older nodes keep
/// cgroup v1, on which the Kubernetes 1.20 nodes (containerd 1.6) were proven.
pub const FIRST_KUBERNETES_MINOR_ON_CGROUP_V2: u32 = 35;

/// Whether nodes running Kubernetes `kubernetes` boot with cgroup v2 (see
/// [`FIRST_KUBERNETES_MINOR_ON_CGROUP_V2`]).
///
/// ```
/// let version = |text: &str| text.parse::<kiln_spec::KubeVersion>().unwrap();
/// assert!(kiln_units::cgroup_v2(version("1.37.2")));
/// assert!(!kiln_units::cgroup_v2(version("1.20.2")));
/// ```
pub fn cgroup_v2(kubernetes: kiln_spec::KubeVersion) -> bool {
    kubernetes.minor >= FIRST_KUBERNETES_MINOR_ON_CGROUP_V2
}

/// A containerd release line, `MAJOR.MINOR`: which configuration format it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ContainerdVersion {
    /// 1 or 2.
    pub major: u32,
    /// The minor release.
    pub minor: u32,
}

impl ContainerdVersion {
    /// containerd 1.6, Debian bookworm's (kiln's base OS).
    pub const V1_6: Self = Self { major: 1, minor: 6 };
    /// containerd 2.4, the newest line checked (2.4.2's `config dump`).
    pub const V2_4: Self = Self { major: 2, minor: 4 };

    /// The containerd that kiln's nodes run beside Kubernetes `1.minor`: 2.4 from
    /// [`FIRST_KUBERNETES_MINOR_ON_CONTAINERD_2`], 1.6 before.
    pub fn for_kubernetes(kubernetes: kiln_spec::KubeVersion) -> Self {
        if kubernetes.minor >= FIRST_KUBERNETES_MINOR_ON_CONTAINERD_2 {
            Self::V2_4
        } else {
            Self::V1_6
        }
    }

    /// The `version` of the configuration file this release reads without migrating it:
    /// 2 for 1.x, 3 for 2.1 and 2.2, 4 from 2.3. Versions 3 and 4 differ only in server
    /// properties (grpc, ttrpc, debug, metrics) that kiln does not set, so kiln's tables are
    /// the same in both; but containerd 2.3 and later migrate a version 3 file on every start
    /// with a warning, and 2.1 and 2.2 refuse version 4. containerd 2.0 (which spells the CNI
    /// directory `bin_dir`, not `bin_dirs`) and every other line are refused.
    pub fn config_version(self) -> Result<u32, Error> {
        match (self.major, self.minor) {
            (1, _) => Ok(2),
            (2, 1 | 2) => Ok(3),
            (2, minor) if minor >= 3 => Ok(4),
            _ => Err(Error::UnsupportedContainerd { version: self }),
        }
    }
}

impl std::fmt::Display for ContainerdVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// containerd's configuration file in the format of the release that reads it; only what kiln
/// sets, containerd fills in the rest with its defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerdConfig {
    /// Version 2, for containerd 1.x.
    V2(ContainerdConfigV2),
    /// Version 3 or 4 (the same tables), for containerd 2.x.
    V3(ContainerdConfigV3),
}

/// containerd's configuration file, version 2 (containerd 1.x).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerdConfigV2 {
    /// The file format version: 2.
    pub version: u32,
    /// `[plugins]`.
    pub plugins: Plugins,
}

/// `[plugins]` of version 2.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Plugins {
    /// `[plugins."io.containerd.grpc.v1.cri"]`: the CRI plugin's ID in containerd 1.6.
    #[serde(rename = "io.containerd.grpc.v1.cri")]
    pub cri: CriPlugin,
}

// Serialized as a map, not a struct: toml 0.9.12 writes a struct field's name into a table
// header unquoted (`[plugins.io.containerd.grpc.v1.cri]`, four nested tables), while it quotes
// map keys. containerd refuses the unquoted form ("invalid plugin key URI").
impl Serialize for Plugins {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("io.containerd.grpc.v1.cri", &self.cri)?;
        map.end()
    }
}

/// The CRI plugin of version 2, which the kubelet talks to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriPlugin {
    /// The pause image of pod sandboxes.
    pub sandbox_image: String,
    /// `[plugins."io.containerd.grpc.v1.cri".containerd]`.
    pub containerd: CriContainerd,
    /// `[plugins."io.containerd.grpc.v1.cri".cni]`.
    pub cni: CriCni,
}

/// The CRI plugin's runtimes (the same table in versions 2 and 3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriContainerd {
    /// The runtime pods use unless they ask for another.
    pub default_runtime_name: String,
    /// Runtimes by name.
    pub runtimes: BTreeMap<String, Runtime>,
}

/// One runtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// The shim: `io.containerd.runc.v2`.
    pub runtime_type: String,
    /// runc's options.
    pub options: RuncOptions,
}

/// runc's options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuncOptions {
    /// `SystemdCgroup`: containers' cgroups are managed through systemd, matching the
    /// kubelet's `--cgroup-driver=systemd`.
    #[serde(rename = "SystemdCgroup")]
    pub systemd_cgroup: bool,
}

/// Where CNI plugins and configurations are, in version 2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriCni {
    /// Plugin binaries.
    pub bin_dir: String,
    /// Network configurations.
    pub conf_dir: String,
}

/// containerd's configuration file, version 3 or 4 (containerd 2.x): the CRI plugin is split
/// into an image service (`io.containerd.cri.v1.images`, which pins the sandbox image) and a
/// runtime service (`io.containerd.cri.v1.runtime`, runtimes and CNI).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerdConfigV3 {
    /// The file format version: 3 or 4 ([`ContainerdVersion::config_version`]).
    pub version: u32,
    /// `[plugins]`.
    pub plugins: PluginsV3,
}

/// `[plugins]` of versions 3 and 4.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PluginsV3 {
    /// `[plugins."io.containerd.cri.v1.images"]`.
    #[serde(rename = "io.containerd.cri.v1.images")]
    pub images: CriImages,
    /// `[plugins."io.containerd.cri.v1.runtime"]`.
    #[serde(rename = "io.containerd.cri.v1.runtime")]
    pub runtime: CriRuntime,
}

// A map for the same reason as version 2's `Plugins`: the keys must be quoted.
impl Serialize for PluginsV3 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("io.containerd.cri.v1.images", &self.images)?;
        map.serialize_entry("io.containerd.cri.v1.runtime", &self.runtime)?;
        map.end()
    }
}

/// The CRI image service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriImages {
    /// Images containerd never garbage-collects, by role.
    pub pinned_images: PinnedImages,
}

/// `pinned_images`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedImages {
    /// The pause image of pod sandboxes (version 2's `sandbox_image`).
    pub sandbox: String,
}

/// The CRI runtime service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriRuntime {
    /// `[plugins."io.containerd.cri.v1.runtime".containerd]`.
    pub containerd: CriContainerd,
    /// `[plugins."io.containerd.cri.v1.runtime".cni]`.
    pub cni: CriCniV3,
}

/// Where CNI plugins and configurations are, in versions 3 and 4.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriCniV3 {
    /// Plugin binary directories, searched in order (containerd 2.1 and later).
    pub bin_dirs: Vec<String>,
    /// Network configurations.
    pub conf_dir: String,
}

/// runc under the systemd cgroup driver, the only runtime.
fn runc() -> CriContainerd {
    CriContainerd {
        default_runtime_name: "runc".to_owned(),
        runtimes: BTreeMap::from([(
            "runc".to_owned(),
            Runtime {
                runtime_type: "io.containerd.runc.v2".to_owned(),
                options: RuncOptions {
                    systemd_cgroup: true,
                },
            },
        )]),
    }
}

/// kiln's containerd configuration for containerd `version`: the CRI plugin with runc under
/// the systemd cgroup driver, kiln's pause image, and the CNI plugin directory of the release (Debian's for 1.x, the package set's for 2.x), in the
/// file format that release reads ([`ContainerdVersion::config_version`]). It is the same on
/// every node.
pub fn containerd_config(version: ContainerdVersion) -> Result<ContainerdConfig, Error> {
    Ok(match version.config_version()? {
        2 => ContainerdConfig::V2(ContainerdConfigV2 {
            version: 2,
            plugins: Plugins {
                cri: CriPlugin {
                    sandbox_image: SANDBOX_IMAGE.reference(),
                    containerd: runc(),
                    cni: CriCni {
                        bin_dir: CNI_BIN_DIR.to_owned(),
                        conf_dir: CNI_CONF_DIR.to_owned(),
                    },
                },
            },
        }),
        version => ContainerdConfig::V3(ContainerdConfigV3 {
            version,
            plugins: PluginsV3 {
                images: CriImages {
                    pinned_images: PinnedImages {
                        sandbox: SANDBOX_IMAGE.reference(),
                    },
                },
                runtime: CriRuntime {
                    containerd: runc(),
                    cni: CriCniV3 {
                        bin_dirs: vec![PACKAGE_CNI_BIN_DIR.to_owned()],
                        conf_dir: CNI_CONF_DIR.to_owned(),
                    },
                },
            },
        }),
    })
}

impl ContainerdConfig {
    /// The file's `version`: 2, 3 or 4.
    pub fn version(&self) -> u32 {
        match self {
            Self::V2(config) => config.version,
            Self::V3(config) => config.version,
        }
    }

    /// The CRI runtimes, wherever the format keeps them.
    pub fn runtimes(&self) -> &CriContainerd {
        match self {
            Self::V2(config) => &config.plugins.cri.containerd,
            Self::V3(config) => &config.plugins.runtime.containerd,
        }
    }

    /// The pod sandbox (pause) image.
    pub fn sandbox_image(&self) -> &str {
        match self {
            Self::V2(config) => &config.plugins.cri.sandbox_image,
            Self::V3(config) => &config.plugins.images.pinned_images.sandbox,
        }
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String, Error> {
        let encoded = match self {
            Self::V2(config) => toml::to_string(config),
            Self::V3(config) => toml::to_string(config),
        };
        encoded.map_err(|error| Error::Encode {
            what: "containerd's config.toml",
            message: error.to_string(),
        })
    }
}
