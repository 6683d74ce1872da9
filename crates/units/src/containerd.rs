//! containerd's `config.toml` (version 2), typed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The pause image every pod sandbox runs: kiln's own, imported into containerd, because
/// images cannot be pulled.
pub const SANDBOX_IMAGE: &str = "kiln.local/pause:3.2";
/// Where Debian's `containernetworking-plugins` installs the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// Where CNI network configurations live.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// The node-relative path of containerd's configuration.
pub const CONTAINERD_CONFIG_PATH: &str = "etc/containerd/config.toml";

/// containerd's configuration file, version 2: only what kiln sets; containerd fills in
/// the rest with its defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerdConfig {
    /// The file format version: 2.
    pub version: u32,
    /// `[plugins]`.
    pub plugins: Plugins,
}

/// `[plugins]`.
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

/// The CRI plugin, which the kubelet talks to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriPlugin {
    /// The pause image of pod sandboxes.
    pub sandbox_image: String,
    /// `[plugins."io.containerd.grpc.v1.cri".containerd]`.
    pub containerd: CriContainerd,
    /// `[plugins."io.containerd.grpc.v1.cri".cni]`.
    pub cni: CriCni,
}

/// The CRI plugin's runtimes.
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

/// Where CNI plugins and configurations are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriCni {
    /// Plugin binaries.
    pub bin_dir: String,
    /// Network configurations.
    pub conf_dir: String,
}

/// kiln's containerd configuration: the CRI plugin with runc under the systemd cgroup
/// driver, kiln's pause image, and Debian's CNI plugin directory. It is the same on every
/// node.
pub fn containerd_config() -> ContainerdConfig {
    ContainerdConfig {
        version: 2,
        plugins: Plugins {
            cri: CriPlugin {
                sandbox_image: SANDBOX_IMAGE.to_owned(),
                containerd: CriContainerd {
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
                },
                cni: CriCni {
                    bin_dir: CNI_BIN_DIR.to_owned(),
                    conf_dir: CNI_CONF_DIR.to_owned(),
                },
            },
        },
    }
}

impl ContainerdConfig {
    /// The configuration as TOML.
    pub fn to_toml(&self) -> Result<String, Error> {
        toml::to_string(self).map_err(|error| Error::Encode {
            what: "containerd's config.toml",
            message: error.to_string(),
        })
    }
}
