//! The crate's one error type.

/// Why a node's network files could not be rendered.
///
/// Every variant but [`Error::UnreachablePeer`] means the plan broke an invariant that
/// `kiln_spec` validation guarantees, so a plan from `kiln_spec::load` only ever yields that one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A peer's pod subnet cannot be routed directly: none of the peer's addresses lies on a
    /// subnet of this node, so there is no on-link next hop.
    #[error(
        "node `{node}` cannot route to node `{peer}`'s pod subnet {pod_subnet}: none of `{peer}`'s addresses ({peer_addresses}) is on a subnet of `{node}` ({node_subnets})\n  help: give both nodes an address on one shared subnet (kiln routes pod subnets without an overlay, so every next hop must be on-link)"
    )]
    UnreachablePeer {
        /// The node whose routes were being rendered.
        node: String,
        /// The kubelet node whose pod subnet has no on-link next hop.
        peer: String,
        /// The peer's pod subnet.
        pod_subnet: ipnet::Ipv4Net,
        /// The peer's addresses, comma-separated.
        peer_addresses: String,
        /// This node's subnets, comma-separated.
        node_subnets: String,
    },
    /// A node that runs a kubelet has no pod subnet.
    #[error("node `{node}` runs a kubelet but the plan gives it no pod subnet")]
    MissingPodSubnet {
        /// The node's name.
        node: String,
    },
    /// A node has no address.
    #[error("node `{node}` has no address")]
    NoAddress {
        /// The node's name.
        node: String,
    },
    /// A load balancer was asked for, but the plan has no control-plane node to balance.
    #[error("the API load balancer on `{node}` has no control-plane node to forward to")]
    NoControlPlane {
        /// The load balancer's node.
        node: String,
    },
    /// Serializing a typed document failed (a bug: the documents are plain data).
    #[error("could not encode {what}: {message}")]
    Encode {
        /// Which document.
        what: &'static str,
        /// The encoder's message.
        message: String,
    },
}
