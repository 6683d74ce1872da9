//! The crate's errors: a peer without an on-link address. (A node the plan does not have
//! cannot be asked for: every renderer takes one of the plan's nodes.)

mod common;

#[test]
fn a_peer_on_another_subnet_is_an_error_naming_both_nodes() {
    let source = common::example_source("two-node").replace("192.168.50.12/24", "192.168.60.12/24");
    let plan = common::load_source(&source, "split.toml");
    let error = kiln_netplan::pod_routes(&plan, plan.node("node1").expect("node1 is in the plan"))
        .expect_err("node2 is not on-link");
    assert!(
        matches!(&error, kiln_netplan::Error::UnreachablePeer { node, peer, .. } if node == "node1" && peer == "node2")
    );
    assert_eq!(
        error.to_string(),
        "node `node1` cannot route to node `node2`'s pod subnet 10.1.2.0/24: none of `node2`'s addresses (192.168.60.12/24) is on a subnet of `node1` (192.168.50.0/24)\n  help: give both nodes an address on one shared subnet (kiln routes pod subnets without an overlay, so every next hop must be on-link)"
    );
    // Every renderer that routes reports it; the ones that do not route still render.
    assert!(
        kiln_netplan::render_node(&plan, plan.node("node1").expect("node1 is in the plan"))
            .is_err()
    );
    assert!(kiln_netplan::cni(&plan, plan.node("node1").expect("node1 is in the plan")).is_ok());
}

#[test]
fn a_second_address_on_a_shared_subnet_is_the_next_hop() {
    let source = common::example_source("two-node").replace(
        "addresses = [\"192.168.50.12/24\"]",
        "addresses = [\"192.168.60.12/24\", \"192.168.50.12/24\"]",
    );
    let plan = common::load_source(&source, "two-homed.toml");
    let routes = kiln_netplan::pod_routes(&plan, plan.node("node1").expect("node1 is in the plan"))
        .expect("node2 has an on-link address");
    assert_eq!(routes[0].gateway.to_string(), "192.168.50.12");
}
