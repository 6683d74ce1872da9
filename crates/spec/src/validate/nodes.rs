//! Nodes: names, roles, addresses, gateways and each kubelet's pod subnet.

use super::*;

/// What the node checks have seen in the nodes before the one being checked.
#[derive(Default)]
struct Seen<'spec> {
    /// Each node name, with the index of the node that has it.
    names: BTreeMap<&'spec str, usize>,
    /// Each address, with the field that has it.
    addresses: BTreeMap<Ipv4Addr, String>,
    /// Each pod subnet, with the node that has it.
    pod_subnets: Vec<(Ipv4Net, String)>,
    /// The same subnets as (network address, prefix length), to tell at once whether a new
    /// one overlaps any (`pod_subnets` is searched for the owner only then).
    pod_blocks: BTreeSet<(u32, u8)>,
    /// How many nodes with a kubelet came before (the next one's default /24).
    kubelets: u32,
}

impl Checker {
    pub(super) fn nodes(
        &mut self,
        spec: &Spec,
        mode: ControlPlaneMode,
        service_cidr: Option<Ipv4Net>,
        pod_cidr: Option<Ipv4Net>,
    ) -> Option<Vec<NodePlan>> {
        let mut ok = true;
        let mut seen = Seen::default();
        let mut plans = Vec::new();
        for (index, node) in spec.nodes.iter().enumerate() {
            let at = |field: &str| format!("nodes[{index}].{field}");
            ok &= self.node_name(index, &node.name, &mut seen);
            let (roles, roles_ok) = self.node_roles(&at("roles"), &node.roles);
            let (addresses, addresses_ok) = self.node_addresses(
                &at("addresses"),
                &node.addresses,
                &mut seen,
                [(service_cidr, "Service range"), (pod_cidr, "pod range")],
            );
            let (gateway, gateway_ok) =
                self.node_gateway(&at("gateway"), node.gateway.as_deref(), &addresses);
            let (dns, dns_ok) = self.node_dns(&at("dns"), &node.dns);
            let (pod_subnet, pod_subnet_ok) = if runs_kubelet(&roles, mode) {
                self.kubelet_pod_subnet(
                    &at("pod_subnet"),
                    &format!("nodes[{index}] ({})", node.name),
                    node.pod_subnet.as_deref(),
                    pod_cidr,
                    &mut seen,
                )
            } else {
                (
                    None,
                    self.no_pod_subnet(&at("pod_subnet"), &node.pod_subnet),
                )
            };
            ok &= roles_ok && addresses_ok && gateway_ok && dns_ok && pod_subnet_ok;
            plans.push(NodePlan {
                name: node.name.clone(),
                roles,
                addresses,
                gateway,
                dns,
                pod_subnet,
            });
        }
        ok.then_some(plans)
    }

    /// `nodes[index].name`: a DNS label no other node has.
    fn node_name<'spec>(&mut self, index: usize, name: &'spec str, seen: &mut Seen<'spec>) -> bool {
        let field = format!("nodes[{index}].name");
        let mut ok = self.dns_label(&field, name);
        if let Some(first) = seen.names.insert(name, index) {
            ok = false;
            self.push(
                Diagnostic::error(field, format!("node name `{name}` is used twice")).help(
                    format!("nodes[{first}] has the same name; node names must be unique"),
                ),
            );
        }
        ok
    }

    /// A node's roles (`field`): at least one; a repeated role is a warning.
    fn node_roles(&mut self, field: &str, listed: &[Role]) -> (BTreeSet<Role>, bool) {
        let roles: BTreeSet<Role> = listed.iter().copied().collect();
        if roles.is_empty() {
            self.push(
                Diagnostic::error(field, "a node needs at least one role")
                    .help("roles are control-plane, etcd, worker and load-balancer"),
            );
            return (roles, false);
        }
        if roles.len() != listed.len() {
            self.push(Diagnostic::warning(field, "a role is listed twice"));
        }
        (roles, true)
    }

    /// A node's addresses (`field`): at least one; each an IPv4 host address with its prefix,
    /// used by no other node, on a network disjoint from `ranges`.
    fn node_addresses(
        &mut self,
        field: &str,
        texts: &[String],
        seen: &mut Seen<'_>,
        ranges: [(Option<Ipv4Net>, &str); 2],
    ) -> (Vec<Ipv4Net>, bool) {
        let mut ok = true;
        let mut addresses = Vec::new();
        if texts.is_empty() {
            ok = false;
            self.push(
                Diagnostic::error(field, "a node needs at least one address")
                    .help("IPv4 addresses in CIDR notation, for example 192.168.50.11/24"),
            );
        }
        for (address_index, text) in texts.iter().enumerate() {
            let field = format!("{field}[{address_index}]");
            let Ok(address) = text.parse::<Ipv4Net>() else {
                ok = false;
                let help = if text.parse::<Ipv4Addr>().is_ok() {
                    format!("add the prefix length of its subnet, for example {text}/24")
                } else {
                    "an IPv4 address in CIDR notation, for example 192.168.50.11/24".to_owned()
                };
                self.push(
                    Diagnostic::error(
                        &field,
                        format!("`{text}` is not an IPv4 address with a prefix"),
                    )
                    .help(help),
                );
                continue;
            };
            if address.prefix_len() < 31
                && (address.addr() == address.network() || address.addr() == address.broadcast())
            {
                ok = false;
                let what = if address.addr() == address.network() {
                    "network"
                } else {
                    "broadcast"
                };
                self.push(
                    Diagnostic::error(
                        &field,
                        format!(
                            "{} is the {what} address of its own subnet {}, outside the subnet's host range",
                            address.addr(),
                            address.trunc()
                        ),
                    )
                    .help(format!(
                        "use a host address between {} and {}",
                        address.hosts().next().unwrap_or(address.addr()),
                        address.hosts().last().unwrap_or(address.addr())
                    )),
                );
            }
            if let Some(owner) = seen.addresses.get(&address.addr()) {
                ok = false;
                self.push(
                    Diagnostic::error(&field, format!("address {} is used twice", address.addr()))
                        .help(format!(
                            "{owner} has it already; every address must be unique"
                        )),
                );
            } else {
                seen.addresses.insert(address.addr(), field.clone());
            }
            for (range, name) in ranges {
                if let Some(range) = range
                    && overlaps(address.trunc(), range)
                {
                    ok = false;
                    self.push(
                        Diagnostic::error(
                            &field,
                            format!(
                                "node network {} overlaps the {name} {range}",
                                address.trunc()
                            ),
                        )
                        .help("node, Service and pod networks must be disjoint"),
                    );
                }
            }
            addresses.push(address);
        }
        (addresses, ok)
    }

    /// A node's gateway (`field`), if it has one: an IPv4 address on one of the node's
    /// subnets that is not its own.
    fn node_gateway(
        &mut self,
        field: &str,
        text: Option<&str>,
        addresses: &[Ipv4Net],
    ) -> (Option<Ipv4Addr>, bool) {
        let Some(text) = text else {
            return (None, true);
        };
        let Ok(gateway) = text.parse::<Ipv4Addr>() else {
            self.push(Diagnostic::error(
                field,
                format!("`{text}` is not an IPv4 address"),
            ));
            return (None, false);
        };
        let inside = addresses.iter().any(|net| net.trunc().contains(&gateway));
        if !addresses.is_empty() && !inside {
            let subnets: Vec<String> = addresses
                .iter()
                .map(|net| net.trunc().to_string())
                .collect();
            self.push(
                Diagnostic::error(
                    field,
                    format!("gateway {gateway} is outside the node's subnets"),
                )
                .help(format!("choose an address in {}", subnets.join(", "))),
            );
            return (Some(gateway), false);
        }
        if addresses.iter().any(|net| net.addr() == gateway) {
            self.push(Diagnostic::error(
                field,
                format!("gateway {gateway} is the node's own address"),
            ));
            return (Some(gateway), false);
        }
        (Some(gateway), true)
    }

    /// A node's DNS servers (`field`): IPv4 addresses.
    fn node_dns(&mut self, field: &str, texts: &[String]) -> (Vec<Ipv4Addr>, bool) {
        let mut ok = true;
        let mut dns = Vec::new();
        for (dns_index, text) in texts.iter().enumerate() {
            match text.parse::<Ipv4Addr>() {
                Ok(address) => dns.push(address),
                Err(_) => {
                    ok = false;
                    self.push(Diagnostic::error(
                        format!("{field}[{dns_index}]"),
                        format!("`{text}` is not an IPv4 address"),
                    ));
                }
            }
        }
        (dns, ok)
    }

    /// The pod subnet (`field`) of a node that runs a kubelet, `owner` in messages: the one it
    /// gives, checked, or else the next /24 of the pod range; shared with no other node.
    fn kubelet_pod_subnet(
        &mut self,
        field: &str,
        owner: &str,
        text: Option<&str>,
        pod_cidr: Option<Ipv4Net>,
        seen: &mut Seen<'_>,
    ) -> (Option<Ipv4Net>, bool) {
        let subnet = match text {
            Some(text) => self.explicit_pod_subnet(field, text, pod_cidr),
            None => {
                let subnet = pod_cidr.and_then(|cidr| nth_slash24(cidr, seen.kubelets));
                if let (None, Some(cidr)) = (subnet, pod_cidr) {
                    self.push(
                        Diagnostic::error(
                            field,
                            format!(
                                "more nodes than pod subnets: the pod range {cidr} has {} /24 subnets, and this is kubelet node number {}",
                                slash24_count(cidr),
                                seen.kubelets + 1
                            ),
                        )
                        .help("widen cluster.pod_cidr or give nodes explicit pod_subnet values"),
                    );
                }
                subnet
            }
        };
        seen.kubelets += 1;
        let Some(subnet) = subnet else {
            return (None, false);
        };
        let mut ok = true;
        if let Some((_, other_owner)) = overlaps_any(&seen.pod_blocks, subnet)
            .then(|| {
                seen.pod_subnets
                    .iter()
                    .find(|(other, _)| overlaps(*other, subnet))
            })
            .flatten()
        {
            ok = false;
            self.push(
                Diagnostic::error(
                    field,
                    format!("pod subnet {subnet} is shared with {other_owner}"),
                )
                .help("every node needs a pod subnet of its own"),
            );
        }
        seen.pod_subnets.push((subnet, owner.to_owned()));
        seen.pod_blocks
            .insert((u32::from(subnet.network()), subnet.prefix_len()));
        (Some(subnet), ok)
    }

    /// A node without a kubelet gives no pod subnet (`field`).
    fn no_pod_subnet(&mut self, field: &str, pod_subnet: &Option<String>) -> bool {
        if pod_subnet.is_none() {
            return true;
        }
        self.push(
            Diagnostic::error(field, "this node runs no kubelet, so it has no pods")
                .help("remove pod_subnet, or give the node the worker role"),
        );
        false
    }

    pub(super) fn explicit_pod_subnet(
        &mut self,
        field: &str,
        text: &str,
        pod_cidr: Option<Ipv4Net>,
    ) -> Option<Ipv4Net> {
        let subnet = self.network(field, text, 30, "a pod subnet needs room for pods")?;
        if let Some(cidr) = pod_cidr
            && !cidr.contains(&subnet)
        {
            self.push(
                Diagnostic::error(
                    field,
                    format!("pod subnet {subnet} is outside the pod range {cidr}"),
                )
                .help(format!(
                    "choose a subnet of {cidr}, or widen cluster.pod_cidr"
                )),
            );
            return None;
        }
        Some(subnet)
    }

    pub(super) fn role_counts(&mut self, spec: &Spec) {
        let count = |role| {
            spec.nodes
                .iter()
                .filter(|node| node.roles.contains(&role))
                .count()
        };
        if count(Role::ControlPlane) == 0 {
            self.push(
                Diagnostic::error("nodes", "no node has the control-plane role")
                    .help("add \"control-plane\" to the roles of at least one node"),
            );
        }
        let etcd = count(Role::Etcd);
        if etcd == 0 {
            self.push(
                Diagnostic::error("nodes", "no node has the etcd role")
                    .help("add \"etcd\" to the roles of one, three or five nodes"),
            );
        } else if etcd % 2 == 0 {
            self.push(
                Diagnostic::warning(
                    "nodes",
                    format!(
                        "{etcd} etcd members: an even number tolerates no more failures than {}",
                        etcd - 1
                    ),
                )
                .help("use an odd number of etcd members"),
            );
        }
    }
}

/// Whether `subnet` overlaps any of `blocks` (network address, prefix length), without a scan:
/// two CIDR blocks overlap exactly when one holds the other's network address, so either a
/// block starts inside `subnet`, or one of the (at most 33) blocks that could hold `subnet`'s
/// network address is there.
fn overlaps_any(blocks: &BTreeSet<(u32, u8)>, subnet: Ipv4Net) -> bool {
    let (start, end) = (u32::from(subnet.network()), u32::from(subnet.broadcast()));
    blocks.range((start, 0)..=(end, 32)).next().is_some()
        || (0..=32u8).any(|prefix| {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            blocks.contains(&(start & mask, prefix))
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn subnet() -> impl Strategy<Value = Ipv4Net> {
        // Few distinct networks, so that overlaps are common.
        (0u32..4, 0u32..4, 0u8..=32).prop_map(|(high, low, prefix)| {
            let address = Ipv4Addr::from((10 << 24) | (high << 16) | (low << 8));
            Ipv4Net::new(address, prefix)
                .map(|net| net.trunc())
                .unwrap_or_else(|_| unreachable!("a prefix of at most 32"))
        })
    }

    proptest! {
        #[test]
        fn overlaps_any_agrees_with_a_scan(
            existing in prop::collection::vec(subnet(), 0..12),
            new in subnet(),
        ) {
            let blocks: BTreeSet<(u32, u8)> = existing
                .iter()
                .map(|net| (u32::from(net.network()), net.prefix_len()))
                .collect();
            prop_assert_eq!(
                overlaps_any(&blocks, new),
                existing.iter().any(|other| overlaps(*other, new))
            );
        }
    }
}
