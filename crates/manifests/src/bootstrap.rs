//! The objects that let kubelets join with a bootstrap token, as kubeadm creates them: the
//! token's Secret, the bindings that let its holders ask for node certificates and have them
//! approved, and the `cluster-info` ConfigMap a joining node reads anonymously.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kiln_spec::Plan;

/// The group a kiln bootstrap token authenticates in besides `system:bootstrappers`, kubeadm's
/// (`auth-extra-groups`).
pub const BOOTSTRAPPERS_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// The namespace of `cluster-info`.
pub const PUBLIC_NAMESPACE: &str = "kube-public";

/// The ConfigMap a joining node reads anonymously: the cluster's endpoint and CA.
pub const CLUSTER_INFO: &str = "cluster-info";

/// The bootstrap token's objects (see [`bootstrap_objects`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapObjects {
    /// `kube-system/bootstrap-token-<id>` of type `bootstrap.kubernetes.io/token`.
    pub secret: Secret,
    /// The token's holders may create CSRs (`system:node-bootstrapper`), their node client
    /// CSRs are approved (`...:nodeclient`), and nodes' renewals of their own certificates are
    /// approved (`...:selfnodeclient`).
    pub bindings: Vec<ClusterRoleBinding>,
    /// `kube-public/cluster-info`.
    pub cluster_info: ConfigMap,
    /// Anonymous `get` of `cluster-info` and nothing else: the Role and its binding.
    pub cluster_info_reader: (Role, RoleBinding),
}

impl BootstrapObjects {
    /// Every object as one YAML stream, the file the operator applies once the API is up: the
    /// Secret, the bindings, `cluster-info` and its reader. It holds the token: keep it 0600.
    pub fn to_yaml(&self) -> Result<String, crate::Error> {
        let mut documents = vec![crate::yaml("bootstrap token Secret", &self.secret)?];
        for binding in &self.bindings {
            documents.push(crate::yaml("bootstrap binding", binding)?);
        }
        documents.push(crate::yaml("cluster-info ConfigMap", &self.cluster_info)?);
        documents.push(crate::yaml(
            "cluster-info reader Role",
            &self.cluster_info_reader.0,
        )?);
        documents.push(crate::yaml(
            "cluster-info reader binding",
            &self.cluster_info_reader.1,
        )?);
        Ok(documents.join("---\n"))
    }
}

/// The objects of the bootstrap token `<id>.<secret>` of `plan`, which expires at
/// `pki.bootstrap_token_expires` (RFC 3339, UTC), with `ca_pem` (the cluster CA certificate)
/// in `cluster-info`'s kubeconfig. The controller manager's `bootstrapsigner` adds the token's
/// signature of that kubeconfig (`jws-kubeconfig-<id>`), and its `tokencleaner` deletes the
/// Secret once it expired.
///
/// `None` unless `plan.options.kubelet_credentials = "bootstrap-token"`.
pub fn bootstrap_objects(
    plan: &Plan,
    id: &str,
    secret: &str,
    ca_pem: &str,
) -> Option<BootstrapObjects> {
    let expires = plan.pki.bootstrap_token_expires?;
    let rbac = "rbac.authorization.k8s.io";
    let group = |name: &str| Subject {
        api_group: Some(rbac.to_owned()),
        kind: "Group".to_owned(),
        name: name.to_owned(),
        namespace: None,
    };
    let binding = |name: &str, role: &str, subject: Subject| ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: rbac.to_owned(),
            kind: "ClusterRole".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(vec![subject]),
    };
    let string_data = BTreeMap::from(
        [
            ("auth-extra-groups", BOOTSTRAPPERS_GROUP.to_owned()),
            (
                "description",
                "kiln's bootstrap token: worker kubelets join with it".to_owned(),
            ),
            ("expiration", kiln_spec::time::format_rfc3339(expires)),
            ("token-id", id.to_owned()),
            ("token-secret", secret.to_owned()),
            ("usage-bootstrap-authentication", "true".to_owned()),
            ("usage-bootstrap-signing", "true".to_owned()),
        ]
        .map(|(key, value)| (key.to_owned(), value)),
    );
    let kubeconfig = cluster_info_kubeconfig(plan, ca_pem);
    let public = |name: &str| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(PUBLIC_NAMESPACE.to_owned()),
        ..Default::default()
    };
    let reader = "kubeadm:bootstrap-signer-clusterinfo";
    Some(BootstrapObjects {
        secret: Secret {
            metadata: ObjectMeta {
                name: Some(format!("bootstrap-token-{id}")),
                namespace: Some(crate::SYSTEM_NAMESPACE.to_owned()),
                ..Default::default()
            },
            type_: Some("bootstrap.kubernetes.io/token".to_owned()),
            string_data: Some(string_data),
            ..Default::default()
        },
        bindings: vec![
            binding(
                "kubeadm:kubelet-bootstrap",
                "system:node-bootstrapper",
                group(BOOTSTRAPPERS_GROUP),
            ),
            binding(
                "kubeadm:node-autoapprove-bootstrap",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                group(BOOTSTRAPPERS_GROUP),
            ),
            binding(
                "kubeadm:node-autoapprove-certificate-rotation",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                group("system:nodes"),
            ),
        ],
        cluster_info: ConfigMap {
            metadata: public(CLUSTER_INFO),
            data: Some(BTreeMap::from([("kubeconfig".to_owned(), kubeconfig)])),
            ..Default::default()
        },
        cluster_info_reader: (
            Role {
                metadata: public(reader),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec![String::new()]),
                    resources: Some(vec!["configmaps".to_owned()]),
                    resource_names: Some(vec![CLUSTER_INFO.to_owned()]),
                    verbs: vec!["get".to_owned()],
                    ..Default::default()
                }]),
            },
            RoleBinding {
                metadata: public(reader),
                role_ref: RoleRef {
                    api_group: rbac.to_owned(),
                    kind: "Role".to_owned(),
                    name: reader.to_owned(),
                },
                subjects: Some(vec![Subject {
                    api_group: Some(rbac.to_owned()),
                    kind: "User".to_owned(),
                    name: "system:anonymous".to_owned(),
                    namespace: None,
                }]),
            },
        ),
    })
}

/// `cluster-info`'s kubeconfig, as kubeadm writes it: one cluster with an empty name, the
/// endpoint and the CA embedded; no user, no context. kubeadm's `join` verifies the CA
/// through the `jws-kubeconfig-<id>` signature of exactly these bytes.
fn cluster_info_kubeconfig(plan: &Plan, ca_pem: &str) -> String {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {data}\n    server: {}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        plan.cluster.endpoint.url()
    )
}
