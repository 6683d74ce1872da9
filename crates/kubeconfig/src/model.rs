//! The typed kubeconfig and its YAML form.
//!
//! The public types say what kiln writes; private `Wire*` types say how kubectl spells it.
//! Keeping the two apart is what makes `insecure-skip-tls-verify` unrepresentable: a
//! [`Cluster`] always carries a certificate authority, and the wire form rejects the field
//! (and every other field kiln does not model) when reading.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A kubeconfig file (`apiVersion: v1`, `kind: Config`), as kubectl and client-go read it.
///
/// Every cluster verifies the API server's certificate against a CA: there is no way to say
/// `insecure-skip-tls-verify`. Users authenticate with a client certificate and key, or (a
/// kubelet joining the cluster) with a bootstrap token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireConfig", try_from = "WireConfig")]
pub struct Kubeconfig {
    /// The API servers, by name.
    pub clusters: Vec<NamedCluster>,
    /// The client identities, by name.
    pub users: Vec<NamedUser>,
    /// Cluster and user pairs, by name.
    pub contexts: Vec<NamedContext>,
    /// The context used when none is named.
    pub current_context: String,
}

/// A cluster entry: a name and how to reach the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedCluster {
    /// The name contexts refer to.
    pub name: String,
    /// The API server.
    pub cluster: Cluster,
}

/// How to reach and trust an API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// `https://host:port`.
    pub server: String,
    /// The CA the server's certificate must chain to (`certificate-authority[-data]`).
    pub certificate_authority: Source,
}

/// A user entry: a name and a client certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedUser {
    /// The name contexts refer to; kiln uses the certificate's common name.
    pub name: String,
    /// The credentials.
    pub user: User,
}

/// A client identity.
#[derive(Clone, PartialEq, Eq)]
pub enum User {
    /// A client certificate and its private key (`client-certificate[-data]`,
    /// `client-key[-data]`).
    Certificate {
        /// The client certificate.
        client_certificate: Source,
        /// The client certificate's private key.
        client_key: Source,
    },
    /// A bearer token (`token`): the bootstrap token `<id>.<secret>` a kubelet joins with.
    Token(String),
}

impl std::fmt::Debug for User {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Certificate {
                client_certificate,
                client_key,
            } => formatter
                .debug_struct("Certificate")
                .field("client_certificate", client_certificate)
                .field("client_key", client_key)
                .finish(),
            // A token is a secret: never print it.
            Self::Token(_) => formatter.write_str("Token([redacted])"),
        }
    }
}

/// A context entry: a name and the cluster and user it pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedContext {
    /// `<user>@<cluster>`.
    pub name: String,
    /// The pair.
    pub context: Context,
}

/// A cluster and user pair, by their names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// A [`NamedCluster::name`].
    pub cluster: String,
    /// A [`NamedUser::name`].
    pub user: String,
}

/// Where a PEM document comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Source {
    /// The PEM text itself, written base64-encoded into a `*-data` field.
    Embedded(String),
    /// A path to a PEM file: absolute on a node; relative paths are resolved by kubectl
    /// against the kubeconfig file's directory.
    Path(String),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Embedded sources may be private keys: never print them.
            Self::Embedded(pem) => write!(formatter, "Embedded({} bytes)", pem.len()),
            Self::Path(path) => formatter.debug_tuple("Path").field(path).finish(),
        }
    }
}

impl Kubeconfig {
    /// The kubeconfig as YAML, in kubeadm's field order.
    pub fn to_yaml(&self) -> Result<String, Error> {
        serde_norway::to_string(self).map_err(|error| Error::Encode {
            context: self.current_context.clone(),
            message: error.to_string(),
        })
    }

    /// Reads a kubeconfig that uses only what kiln models (certificates or a token, no
    /// `insecure-skip-tls-verify`, no extensions).
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        serde_norway::from_str(text).map_err(|error| Error::Parse {
            message: error.to_string(),
        })
    }
}

const API_VERSION: &str = "v1";
const KIND: &str = "Config";

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct WireConfig {
    #[serde(rename = "apiVersion")]
    api_version: String,
    clusters: Vec<WireNamedCluster>,
    contexts: Vec<WireNamedContext>,
    current_context: String,
    kind: String,
    #[serde(default)]
    preferences: WirePreferences,
    users: Vec<WireNamedUser>,
}

/// kubectl's `preferences: {}`; kiln sets none and accepts none.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WirePreferences {}

// Field order follows kubeadm (Go's YAML encoder sorts keys).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireNamedCluster {
    cluster: WireCluster,
    name: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireNamedContext {
    context: WireContext,
    name: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireNamedUser {
    name: String,
    user: WireUser,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct WireCluster {
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    certificate_authority_data: Option<String>,
    server: String,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireContext {
    cluster: String,
    user: String,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct WireUser {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_key_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

impl Source {
    /// Splits into the (path, data) pair of a wire field.
    fn to_wire(&self) -> (Option<String>, Option<String>) {
        match self {
            Self::Embedded(pem) => (None, Some(STANDARD.encode(pem.as_bytes()))),
            Self::Path(path) => (Some(path.clone()), None),
        }
    }

    /// Joins a wire field's (path, data) pair: exactly one must be present.
    fn from_wire(field: &str, path: Option<String>, data: Option<String>) -> Result<Self, String> {
        match (path, data) {
            (Some(path), None) => Ok(Self::Path(path)),
            (None, Some(data)) => {
                let bytes = STANDARD
                    .decode(data.as_bytes())
                    .map_err(|error| format!("{field}-data is not base64: {error}"))?;
                String::from_utf8(bytes)
                    .map(Self::Embedded)
                    .map_err(|_| format!("{field}-data is not PEM text"))
            }
            (Some(_), Some(_)) => Err(format!("both {field} and {field}-data are set")),
            (None, None) => Err(format!("neither {field} nor {field}-data is set")),
        }
    }
}

impl From<Kubeconfig> for WireConfig {
    fn from(config: Kubeconfig) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            clusters: config
                .clusters
                .into_iter()
                .map(|named| {
                    let (path, data) = named.cluster.certificate_authority.to_wire();
                    WireNamedCluster {
                        cluster: WireCluster {
                            certificate_authority: path,
                            certificate_authority_data: data,
                            server: named.cluster.server,
                        },
                        name: named.name,
                    }
                })
                .collect(),
            contexts: config
                .contexts
                .into_iter()
                .map(|named| WireNamedContext {
                    context: WireContext {
                        cluster: named.context.cluster,
                        user: named.context.user,
                    },
                    name: named.name,
                })
                .collect(),
            current_context: config.current_context,
            kind: KIND.to_owned(),
            preferences: WirePreferences {},
            users: config
                .users
                .into_iter()
                .map(|named| WireNamedUser {
                    name: named.name,
                    user: match named.user {
                        User::Certificate {
                            client_certificate,
                            client_key,
                        } => {
                            let (certificate_path, certificate_data) = client_certificate.to_wire();
                            let (key_path, key_data) = client_key.to_wire();
                            WireUser {
                                client_certificate: certificate_path,
                                client_certificate_data: certificate_data,
                                client_key: key_path,
                                client_key_data: key_data,
                                token: None,
                            }
                        }
                        User::Token(token) => WireUser {
                            token: Some(token),
                            ..WireUser::default()
                        },
                    },
                })
                .collect(),
        }
    }
}

impl TryFrom<WireConfig> for Kubeconfig {
    type Error = String;

    fn try_from(wire: WireConfig) -> Result<Self, String> {
        if wire.api_version != API_VERSION {
            return Err(format!(
                "apiVersion is `{}`, not `{API_VERSION}`",
                wire.api_version
            ));
        }
        if wire.kind != KIND {
            return Err(format!("kind is `{}`, not `{KIND}`", wire.kind));
        }
        let clusters = wire
            .clusters
            .into_iter()
            .map(|named| {
                let authority = Source::from_wire(
                    "certificate-authority",
                    named.cluster.certificate_authority,
                    named.cluster.certificate_authority_data,
                )
                .map_err(|message| format!("clusters[{}]: {message}", named.name))?;
                Ok(NamedCluster {
                    name: named.name,
                    cluster: Cluster {
                        server: named.cluster.server,
                        certificate_authority: authority,
                    },
                })
            })
            .collect::<Result<_, String>>()?;
        let users = wire
            .users
            .into_iter()
            .map(|named| {
                let located = |message: String| format!("users[{}]: {message}", named.name);
                let user = named.user;
                if let Some(token) = user.token {
                    if user.client_certificate.is_some()
                        || user.client_certificate_data.is_some()
                        || user.client_key.is_some()
                        || user.client_key_data.is_some()
                    {
                        return Err(located(
                            "both a token and a client certificate are set".to_owned(),
                        ));
                    }
                    return Ok(NamedUser {
                        name: named.name,
                        user: User::Token(token),
                    });
                }
                let certificate = Source::from_wire(
                    "client-certificate",
                    user.client_certificate,
                    user.client_certificate_data,
                )
                .map_err(located)?;
                let key = Source::from_wire("client-key", user.client_key, user.client_key_data)
                    .map_err(located)?;
                Ok(NamedUser {
                    name: named.name,
                    user: User::Certificate {
                        client_certificate: certificate,
                        client_key: key,
                    },
                })
            })
            .collect::<Result<_, String>>()?;
        let contexts = wire
            .contexts
            .into_iter()
            .map(|named| NamedContext {
                name: named.name,
                context: Context {
                    cluster: named.context.cluster,
                    user: named.context.user,
                },
            })
            .collect();
        Ok(Self {
            clusters,
            users,
            contexts,
            current_context: wire.current_context,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCED: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority: /etc/kubernetes/pki/ca.crt
    server: https://10.0.0.1:6443
  name: demo
contexts:
- context:
    cluster: demo
    user: system:kube-proxy
  name: system:kube-proxy@demo
current-context: system:kube-proxy@demo
kind: Config
preferences: {}
users:
- name: system:kube-proxy
  user:
    client-certificate: /etc/kubernetes/pki/kube-proxy.crt
    client-key: /etc/kubernetes/pki/kube-proxy.key
";

    #[test]
    fn the_yaml_layout_is_kubeadms() {
        let config = Kubeconfig::from_yaml(REFERENCED).expect("reads");
        assert_eq!(config.to_yaml().expect("writes"), REFERENCED);
    }

    #[test]
    fn what_kiln_cannot_mean_is_refused() {
        let cases = [
            (
                REFERENCED.replace("    server:", "    insecure-skip-tls-verify: true\n    server:"),
                "insecure-skip-tls-verify",
            ),
            (
                REFERENCED.replace(
                    "    certificate-authority: /etc/kubernetes/pki/ca.crt\n",
                    "",
                ),
                "neither certificate-authority nor certificate-authority-data",
            ),
            (
                REFERENCED.replace(
                    "    client-key: /etc/kubernetes/pki/kube-proxy.key\n",
                    "    client-key: /etc/kubernetes/pki/kube-proxy.key\n    client-key-data: AAAA\n",
                ),
                "both client-key and client-key-data",
            ),
            (REFERENCED.replace("kind: Config", "kind: Pod"), "kind is `Pod`"),
            (
                REFERENCED.replace("    client-key: /etc", "    token: abc\n    client-key: /etc"),
                "both a token and a client certificate",
            ),
        ];
        for (text, expected) in cases {
            let error = Kubeconfig::from_yaml(&text)
                .expect_err(expected)
                .to_string();
            assert!(
                error.contains(expected),
                "`{error}` should mention `{expected}`"
            );
        }
    }

    #[test]
    fn a_token_user_round_trips_alone() {
        let text = REFERENCED.replace(
            "    client-certificate: /etc/kubernetes/pki/kube-proxy.crt\n    client-key: /etc/kubernetes/pki/kube-proxy.key\n",
            "    token: abcdef.0123456789abcdef\n",
        );
        let config = Kubeconfig::from_yaml(&text).expect("reads");
        assert_eq!(
            config.users[0].user,
            User::Token("abcdef.0123456789abcdef".to_owned())
        );
        assert_eq!(config.to_yaml().expect("writes"), text);
        assert_eq!(format!("{:?}", config.users[0].user), "Token([redacted])");
    }

    #[test]
    fn embedded_keys_do_not_show_in_debug() {
        let source = Source::Embedded("-----BEGIN PRIVATE KEY-----\nsecret".to_owned());
        assert_eq!(format!("{source:?}"), "Embedded(34 bytes)");
    }
}
