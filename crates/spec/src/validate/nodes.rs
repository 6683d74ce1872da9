//! Nodes: names, roles, addresses, gateways and each kubelet's pod subnet.

use super::*;

impl Checker {
    pub(super) fn nodes(
        &mut self,
        spec: &Spec,
        mode: ControlPlaneMode,
        service_cidr: Option<Ipv4Net>,
        pod_cidr: Option<Ipv4Net>,
    ) -> Option<Vec<NodePlan>> {
        let mut ok = true;
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut addresses: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut pod_subnets: Vec<(Ipv4Net, String)> = Vec::new();
        let mut kubelet_index: u32 = 0;
        let mut plans = Vec::new();
        for (index, node) in spec.nodes.iter().enumerate() {
            let at = |field: &str| format!("nodes[{index}].{field}");
            ok &= self.dns_label(&at("name"), &node.name);
            if let Some(first) = names.insert(&node.name, index) {
                ok = false;
                self.push(
                    Diagnostic::error(
                        at("name"),
                        format!("node name `{}` is used twice", node.name),
                    )
                    .help(format!(
                        "nodes[{first}] has the same name; node names must be unique"
                    )),
                );
            }
            let roles: BTreeSet<Role> = node.roles.iter().copied().collect();
            if roles.is_empty() {
                ok = false;
                self.push(
                    Diagnostic::error(at("roles"), "a node needs at least one role")
                        .help("roles are control-plane, etcd, worker and load-balancer"),
                );
            } else if roles.len() != node.roles.len() {
                self.push(Diagnostic::warning(at("roles"), "a role is listed twice"));
            }

            let mut node_addresses = Vec::new();
            if node.addresses.is_empty() {
                ok = false;
                self.push(
                    Diagnostic::error(at("addresses"), "a node needs at least one address")
                        .help("IPv4 addresses in CIDR notation, for example 192.168.50.11/24"),
                );
            }
            for (address_index, text) in node.addresses.iter().enumerate() {
                let field = at(&format!("addresses[{address_index}]"));
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
                    && (address.addr() == address.network()
                        || address.addr() == address.broadcast())
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
                if let Some(owner) = addresses.get(&address.addr()) {
                    ok = false;
                    self.push(
                        Diagnostic::error(
                            &field,
                            format!("address {} is used twice", address.addr()),
                        )
                        .help(format!(
                            "{owner} has it already; every address must be unique"
                        )),
                    );
                } else {
                    addresses.insert(address.addr(), field.clone());
                }
                for (range, name) in [(service_cidr, "Service range"), (pod_cidr, "pod range")] {
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
                node_addresses.push(address);
            }

            let gateway = match &node.gateway {
                None => None,
                Some(text) => match text.parse::<Ipv4Addr>() {
                    Err(_) => {
                        ok = false;
                        self.push(Diagnostic::error(
                            at("gateway"),
                            format!("`{text}` is not an IPv4 address"),
                        ));
                        None
                    }
                    Ok(gateway) => {
                        let inside = node_addresses
                            .iter()
                            .any(|net| net.trunc().contains(&gateway));
                        if !node_addresses.is_empty() && !inside {
                            ok = false;
                            let subnets: Vec<String> = node_addresses
                                .iter()
                                .map(|net| net.trunc().to_string())
                                .collect();
                            self.push(
                                Diagnostic::error(
                                    at("gateway"),
                                    format!("gateway {gateway} is outside the node's subnets"),
                                )
                                .help(format!("choose an address in {}", subnets.join(", "))),
                            );
                        } else if node_addresses.iter().any(|net| net.addr() == gateway) {
                            ok = false;
                            self.push(Diagnostic::error(
                                at("gateway"),
                                format!("gateway {gateway} is the node's own address"),
                            ));
                        }
                        Some(gateway)
                    }
                },
            };

            let mut dns = Vec::new();
            for (dns_index, text) in node.dns.iter().enumerate() {
                match text.parse::<Ipv4Addr>() {
                    Ok(address) => dns.push(address),
                    Err(_) => {
                        ok = false;
                        self.push(Diagnostic::error(
                            at(&format!("dns[{dns_index}]")),
                            format!("`{text}` is not an IPv4 address"),
                        ));
                    }
                }
            }

            let pod_subnet = if runs_kubelet(&roles, mode) {
                let subnet = match &node.pod_subnet {
                    Some(text) => self.explicit_pod_subnet(&at("pod_subnet"), text, pod_cidr),
                    None => {
                        let subnet = pod_cidr.and_then(|cidr| nth_slash24(cidr, kubelet_index));
                        if let (None, Some(cidr)) = (subnet, pod_cidr) {
                            self.push(
                                Diagnostic::error(
                                    at("pod_subnet"),
                                    format!(
                                        "more nodes than pod subnets: the pod range {cidr} has {} /24 subnets, and this is kubelet node number {}",
                                        slash24_count(cidr),
                                        kubelet_index + 1
                                    ),
                                )
                                .help("widen cluster.pod_cidr or give nodes explicit pod_subnet values"),
                            );
                        }
                        subnet
                    }
                };
                kubelet_index += 1;
                if let Some(subnet) = subnet {
                    let field = at("pod_subnet");
                    if let Some((_, owner)) = pod_subnets
                        .iter()
                        .find(|(other, _)| overlaps(*other, subnet))
                    {
                        ok = false;
                        self.push(
                            Diagnostic::error(
                                &field,
                                format!("pod subnet {subnet} is shared with {owner}"),
                            )
                            .help("every node needs a pod subnet of its own"),
                        );
                    }
                    pod_subnets.push((subnet, format!("nodes[{index}] ({})", node.name)));
                } else {
                    ok = false;
                }
                subnet
            } else {
                if node.pod_subnet.is_some() {
                    ok = false;
                    self.push(
                        Diagnostic::error(
                            at("pod_subnet"),
                            "this node runs no kubelet, so it has no pods",
                        )
                        .help("remove pod_subnet, or give the node the worker role"),
                    );
                }
                None
            };

            plans.push(NodePlan {
                name: node.name.clone(),
                roles,
                addresses: node_addresses,
                gateway,
                dns,
                pod_subnet,
            });
        }
        ok.then_some(plans)
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
