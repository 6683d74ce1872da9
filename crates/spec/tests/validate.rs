//! Data-driven validation tests: a base spec, one edit, and the exact diagnostics expected.

use expect_test::{Expect, expect};

const BASE: &str = r#"[cluster]
name = "test"
kubernetes_version = "1.20.2"
service_cidr = "10.32.0.0/24"
pod_cidr = "10.1.0.0/16"

[pki]
issued_at = 2026-01-01T00:00:00Z

[[nodes]]
name = "node1"
roles = ["control-plane", "etcd", "worker"]
addresses = ["192.168.50.11/24"]
gateway = "192.168.50.1"

[[nodes]]
name = "node2"
roles = ["worker"]
addresses = ["192.168.50.12/24"]
"#;

/// Applies `edits` (pairs of text to replace and replacement) to the base spec, loads it, and
/// compares every diagnostic with `expect`.
fn check(edits: &[(&str, &str)], expect: Expect) {
    let mut source = BASE.to_owned();
    for (from, to) in edits {
        assert!(
            source.contains(from),
            "edit target {from:?} is not in the base spec"
        );
        source = source.replacen(from, to, 1);
    }
    let rendered = match kiln_spec::load(&source, "spec.toml") {
        Ok(loaded) if loaded.warnings.is_empty() => "ok".to_owned(),
        Ok(loaded) => loaded.warnings.to_string(),
        Err(errors) => errors.to_string(),
    };
    expect.assert_eq(&rendered);
}

#[test]
fn base_is_valid() {
    check(&[], expect!["ok"]);
}

#[test]
fn syntax_and_unknown_fields() {
    check(
        &[("gateway = ", "gatway = ")],
        expect![[r#"
            error: spec.toml:14:1: unknown field `gatway`, expected one of `name`, `roles`, `addresses`, `gateway`, `dns`, `pod_subnet`
              help: fields are listed in examples/ and in the kiln-spec documentation"#]],
    );
    check(
        &[(r#"["worker"]"#, r#"["wroker"]"#)],
        expect![[
            r#"error: spec.toml:18:10: unknown variant `wroker`, expected one of `control-plane`, `etcd`, `worker`, `load-balancer`"#
        ]],
    );
}

#[test]
fn node_names() {
    check(
        &[(r#""node2""#, r#""Node_2""#)],
        expect![[r#"
            error: spec.toml:17:8: nodes[1].name: `Node_2` is not a DNS-1123 label
              help: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"#]],
    );
    check(
        &[(r#""node2""#, r#""node1""#)],
        expect![[r#"
            error: spec.toml:17:8: nodes[1].name: node name `node1` is used twice
              help: nodes[0] has the same name; node names must be unique"#]],
    );
}

#[test]
fn addresses() {
    check(
        &[("192.168.50.12/24", "192.168.50.11/24")],
        expect![[r#"
            error: spec.toml:19:14: nodes[1].addresses[0]: address 192.168.50.11 is used twice
              help: nodes[0].addresses[0] has it already; every address must be unique"#]],
    );
    check(
        &[("192.168.50.12/24", "192.168.50.255/24")],
        expect![[r#"
            error: spec.toml:19:14: nodes[1].addresses[0]: 192.168.50.255 is the broadcast address of its own subnet 192.168.50.0/24, outside the subnet's host range
              help: use a host address between 192.168.50.1 and 192.168.50.254"#]],
    );
    check(
        &[("192.168.50.12/24", "192.168.50.12")],
        expect![[r#"
            error: spec.toml:19:14: nodes[1].addresses[0]: `192.168.50.12` is not an IPv4 address with a prefix
              help: add the prefix length of its subnet, for example 192.168.50.12/24"#]],
    );
    check(
        &[(r#"gateway = "192.168.50.1""#, r#"gateway = "192.168.51.1""#)],
        expect![[r#"
            error: spec.toml:14:11: nodes[0].gateway: gateway 192.168.51.1 is outside the node's subnets
              help: choose an address in 192.168.50.0/24"#]],
    );
}

#[test]
fn roles() {
    check(
        &[(
            r#"["control-plane", "etcd", "worker"]"#,
            r#"["etcd", "worker"]"#,
        )],
        expect![[r#"
            error: spec.toml:10:1: nodes: no node has the control-plane role
              help: add "control-plane" to the roles of at least one node"#]],
    );
    check(
        &[(
            r#"["control-plane", "etcd", "worker"]"#,
            r#"["control-plane", "worker"]"#,
        )],
        expect![[r#"
            error: spec.toml:10:1: nodes: no node has the etcd role
              help: add "etcd" to the roles of one, three or five nodes"#]],
    );
    check(
        &[(r#"["worker"]"#, r#"["worker", "etcd"]"#)],
        expect![[r#"
            warning: spec.toml:10:1: nodes: 2 etcd members: an even number tolerates no more failures than 1
              help: use an odd number of etcd members"#]],
    );
}

#[test]
fn networks() {
    check(
        &[(
            r#"service_cidr = "10.32.0.0/24""#,
            r#"service_cidr = "10.1.0.0/24""#,
        )],
        expect![[r#"
            error: spec.toml:4:16: cluster.service_cidr: the Service range 10.1.0.0/24 overlaps the pod range 10.1.0.0/16
              help: choose disjoint ranges, for example 10.96.0.0/12 and 10.244.0.0/16"#]],
    );
    check(
        &[("192.168.50.12/24", "10.1.9.12/24")],
        expect![[r#"
            error: spec.toml:19:14: nodes[1].addresses[0]: node network 10.1.9.0/24 overlaps the pod range 10.1.0.0/16
              help: node, Service and pod networks must be disjoint"#]],
    );
    check(
        &[(r#"pod_cidr = "10.1.0.0/16""#, r#"pod_cidr = "10.1.0.0/24""#)],
        expect![[r#"
            error: spec.toml:16:1: nodes[1].pod_subnet: more nodes than pod subnets: the pod range 10.1.0.0/24 has 1 /24 subnets, and this is kubelet node number 2
              help: widen cluster.pod_cidr or give nodes explicit pod_subnet values"#]],
    );
    check(
        &[(
            r#"addresses = ["192.168.50.12/24"]"#,
            "addresses = [\"192.168.50.12/24\"]\npod_subnet = \"10.2.0.0/24\"",
        )],
        expect![[r#"
            error: spec.toml:20:14: nodes[1].pod_subnet: pod subnet 10.2.0.0/24 is outside the pod range 10.1.0.0/16
              help: choose a subnet of 10.1.0.0/16, or widen cluster.pod_cidr"#]],
    );
    check(
        &[(
            r#"addresses = ["192.168.50.12/24"]"#,
            "addresses = [\"192.168.50.12/24\"]\npod_subnet = \"10.1.0.0/24\"",
        )],
        expect![[r#"
            error: spec.toml:20:14: nodes[1].pod_subnet: pod subnet 10.1.0.0/24 is shared with nodes[0] (node1)
              help: every node needs a pod subnet of its own"#]],
    );
}

#[test]
fn versions() {
    check(
        &[(r#""1.20.2""#, r#""1.19.16""#)],
        expect![[r#"
            error: spec.toml:3:22: cluster.kubernetes_version: Kubernetes 1.19.16 is not supported
              help: kiln supports 1.20.0 through 1.37.x"#]],
    );
}

#[test]
fn endpoints() {
    check(
        &[(
            "[pki]",
            "[cluster.endpoint]\nmode = \"load-balancer\"\n\n[pki]",
        )],
        expect![[r#"
            error: spec.toml:7:1: cluster.endpoint.host: a load-balancer endpoint without a load-balancer node or external address
              help: give a node the load-balancer role, or set host to the external load balancer's name or address"#]],
    );
    check(
        &[(r#"["worker"]"#, r#"["worker", "control-plane"]"#)],
        expect![[r#"
            error: spec.toml:1:1: cluster.endpoint: 2 control-plane nodes need an API endpoint in front of them
              help: set [cluster.endpoint] mode = "load-balancer" (with a load-balancer node or host) or "local""#]],
    );
    // A `node` endpoint is the API server itself: its port is the API server's.
    check(
        &[(
            "[pki]",
            "apiserver_port = 8443\n\n[cluster.endpoint]\nmode = \"node\"\nport = 6443\n\n[pki]",
        )],
        expect![[r#"
            error: spec.toml:11:8: cluster.endpoint.port: endpoint mode `node` reaches the API server directly, which listens on 8443, not 6443
              help: leave the endpoint's port out, or set cluster.apiserver_port = 6443"#]],
    );
    check(
        &[("[pki]", "apiserver_port = 0\n\n[pki]")],
        expect![[r#"
        error: spec.toml:7:18: cluster.apiserver_port: port 0 is not a port
          help: 1 to 65535; the default is 6443"#]],
    );
    // The local balancer's default port is taken by an API server moved onto it.
    check(
        &[(
            "[pki]",
            "apiserver_port = 6444\n\n[cluster.endpoint]\nmode = \"local\"\n\n[pki]",
        )],
        expect![[r#"
            error: spec.toml:9:1: cluster.endpoint.port: the local load balancer cannot listen on 6444: the API server does
              help: use another port, such as 6443"#]],
    );
}

/// `cluster.apiserver_port` moves every API server, and with it a `node` endpoint's default
/// port; a load balancer keeps its own port in front of them.
#[test]
fn apiserver_port() {
    let moved = BASE.replacen("[pki]", "apiserver_port = 8443\n\n[pki]", 1);
    let plan = kiln_spec::load(&moved, "spec.toml").expect("valid").plan;
    assert_eq!(plan.cluster.apiserver_port, 8443);
    assert_eq!(plan.cluster.endpoint.url(), "https://192.168.50.11:8443");
    let default = kiln_spec::load(BASE, "spec.toml").expect("valid").plan;
    assert_eq!(default.cluster.apiserver_port, kiln_spec::APISERVER_PORT);
    assert_eq!(default.cluster.endpoint.port, kiln_spec::APISERVER_PORT);
}

/// The node diagnostics the other tests leave out, one edit each.
#[test]
fn node_diagnostics() {
    let node2 = r#"roles = ["worker"]
addresses = ["192.168.50.12/24"]"#;
    let cases: [(&[(&str, &str)], Expect); 7] = [
        (
            &[(r#"["worker"]"#, "[]")],
            expect![[r#"
            error: spec.toml:18:9: nodes[1].roles: a node needs at least one role
              help: roles are control-plane, etcd, worker and load-balancer"#]],
        ),
        (
            &[(r#"["worker"]"#, r#"["worker", "worker"]"#)],
            expect!["warning: spec.toml:18:9: nodes[1].roles: a role is listed twice"],
        ),
        (
            &[(r#"addresses = ["192.168.50.12/24"]"#, "addresses = []")],
            expect![[r#"
                error: spec.toml:19:13: nodes[1].addresses: a node needs at least one address
                  help: IPv4 addresses in CIDR notation, for example 192.168.50.11/24"#]],
        ),
        (
            &[(
                r#"gateway = "192.168.50.1""#,
                r#"gateway = "192.168.50.11""#,
            )],
            expect![
                "error: spec.toml:14:11: nodes[0].gateway: gateway 192.168.50.11 is the node's own address"
            ],
        ),
        (
            &[(r#"gateway = "192.168.50.1""#, r#"gateway = "router""#)],
            expect!["error: spec.toml:14:11: nodes[0].gateway: `router` is not an IPv4 address"],
        ),
        (
            &[(
                node2,
                "roles = [\"worker\"]\naddresses = [\"192.168.50.12/24\"]\ndns = [\"192.0.2.53\", \"resolver\"]",
            )],
            expect!["error: spec.toml:20:22: nodes[1].dns[1]: `resolver` is not an IPv4 address"],
        ),
        (
            &[(
                node2,
                "roles = [\"load-balancer\"]\naddresses = [\"192.168.50.12/24\"]\npod_subnet = \"10.1.9.0/24\"",
            )],
            expect![[r#"
                error: spec.toml:20:14: nodes[1].pod_subnet: this node runs no kubelet, so it has no pods
                  help: remove pod_subnet, or give the node the worker role
                warning: spec.toml:10:1: nodes: node `node2` has the load-balancer role, but the endpoint mode is not load-balancer: nothing will use it"#]],
        ),
    ];
    for (edits, expected) in cases {
        check(edits, expected);
    }
}

/// Every endpoint diagnostic, one edit each.
#[test]
fn endpoint_diagnostics() {
    let endpoint = |body: &str| ("[pki]", format!("[cluster.endpoint]\n{body}\n\n[pki]"));
    let cases: [(Vec<(&str, String)>, Expect); 8] = [
        (
            vec![endpoint("mode = \"node\"\nhost = \"api.example\"")],
            expect![[r#"
                error: spec.toml:9:8: cluster.endpoint.host: only a load-balancer endpoint takes a host
                  help: remove host, or set mode = "load-balancer""#]],
        ),
        (
            vec![endpoint("mode = \"load-balancer\"\nhost = \"not a host!\"")],
            expect![
                "error: spec.toml:9:8: cluster.endpoint.host: `not a host!` is neither an IPv4 address nor a DNS name"
            ],
        ),
        (
            vec![endpoint("mode = \"node\"\nport = 0")],
            expect![[r#"
            error: spec.toml:9:8: cluster.endpoint.port: port 0 is not a port
              help: 1 to 65535"#]],
        ),
        (
            vec![(r#"["worker"]"#, r#"["worker", "load-balancer"]"#.to_owned())],
            expect![
                "warning: spec.toml:10:1: nodes: node `node2` has the load-balancer role, but the endpoint mode is not load-balancer: nothing will use it"
            ],
        ),
        (
            vec![
                endpoint("mode = \"node\""),
                (r#"["worker"]"#, r#"["worker", "control-plane"]"#.to_owned()),
            ],
            expect![[r#"
                error: spec.toml:8:8: cluster.endpoint.mode: endpoint mode `node` needs exactly one control-plane node; the spec has 2
                  help: use mode = "load-balancer" or "local" for several control-plane nodes"#]],
        ),
        (
            vec![
                endpoint("mode = \"load-balancer\""),
                (
                    r#"["control-plane", "etcd", "worker"]"#,
                    r#"["control-plane", "etcd", "worker", "load-balancer"]"#.to_owned(),
                ),
            ],
            expect![[r#"
                error: spec.toml:7:1: cluster.endpoint.port: node `node1` runs both the load balancer and an API server on port 6443
                  help: choose another endpoint port, or put the load balancer on its own node"#]],
        ),
        (
            vec![
                endpoint("mode = \"load-balancer\"\nport = 8443"),
                (
                    r#"["control-plane", "etcd", "worker"]"#,
                    r#"["control-plane", "etcd", "worker", "load-balancer"]"#.to_owned(),
                ),
                (r#"["worker"]"#, r#"["worker", "load-balancer"]"#.to_owned()),
            ],
            expect![[r#"
                error: spec.toml:7:1: cluster.endpoint.host: 2 load-balancer nodes need one address that reaches them
                  help: set host to a DNS name or virtual address shared by the load-balancer nodes"#]],
        ),
        (
            vec![endpoint("mode = \"local\"\nport = 6443")],
            expect![[r#"
                error: spec.toml:9:8: cluster.endpoint.port: the local load balancer cannot listen on 6443: the API server does
                  help: use another port, such as 6444"#]],
        ),
    ];
    for (edits, expected) in cases {
        let edits: Vec<(&str, &str)> = edits
            .iter()
            .map(|(from, to)| (*from, to.as_str()))
            .collect();
        check(&edits, expected);
    }
}

#[test]
fn several_errors_at_once() {
    check(
        &[
            (r#""node2""#, r#""Node 2""#),
            (r#""1.20.2""#, r#""1.40.0""#),
            ("192.168.50.12/24", "192.168.50.0/24"),
        ],
        expect![[r#"
            error: spec.toml:3:22: cluster.kubernetes_version: Kubernetes 1.40.0 is not supported
              help: kiln supports 1.20.0 through 1.37.x
            error: spec.toml:17:8: nodes[1].name: `Node 2` is not a DNS-1123 label
              help: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit
            error: spec.toml:19:14: nodes[1].addresses[0]: 192.168.50.0 is the network address of its own subnet 192.168.50.0/24, outside the subnet's host range
              help: use a host address between 192.168.50.1 and 192.168.50.254"#]],
    );
}

#[test]
fn pki_fields() {
    check(
        &[(
            "issued_at = 2026-01-01T00:00:00Z",
            "issued_at = 2026-01-01T00:00:00",
        )],
        expect![
            "error: spec.toml:8:13: pki.issued_at: `2026-01-01T00:00:00` needs a date, a time and an offset, for example 2026-01-01T00:00:00Z"
        ],
    );
    check(
        &[(
            "issued_at = 2026-01-01T00:00:00Z",
            "issued_at = 2026-01-01T00:00:00Z\n[pki.generations]\n\"kubelet-serving/node9\" = 1",
        )],
        expect![[r#"
            error: spec.toml:10:27: pki.generations."kubelet-serving/node9": no certificate is called `kubelet-serving/node9`
              help: certificates are ca, etcd-ca, front-proxy-ca, service-account, admin, apiserver, apiserver-etcd-client, apiserver-kubelet-client, controller-manager, etcd-healthcheck-client, front-proxy-client, kube-proxy, scheduler, super-admin, and per node etcd-peer, etcd-server, healthz-client, kubelet-client, kubelet-serving as `<kind>/<node>`"#]],
    );
}

#[test]
fn bootstrap_token_expiry() {
    let bootstrap = |pki: &str| {
        [
            (
                "issued_at = 2026-01-01T00:00:00Z",
                format!("issued_at = 2026-01-01T00:00:00Z\ncontroller_manager_signs_csrs = true{pki}"),
            ),
            (
                "[[nodes]]\nname = \"node1\"",
                "[options]\nkubelet_credentials = \"bootstrap-token\"\n\n[[nodes]]\nname = \"node1\"".to_owned(),
            ),
        ]
    };
    let run = |pairs: [(&str, String); 2], expect: Expect| {
        let borrowed: Vec<(&str, &str)> = pairs.iter().map(|(a, b)| (*a, b.as_str())).collect();
        check(&borrowed, expect);
    };
    run(
        bootstrap("\nbootstrap_token_expires = 2027-01-01T00:00:00Z"),
        expect!["ok"],
    );
    run(
        bootstrap(""),
        expect![[r#"
            error: spec.toml:12:23: options.kubelet_credentials: bootstrap-token kubelets need their token's expiry
              help: set pki.bootstrap_token_expires to a date and time after pki.issued_at, such as 2027-01-01T00:00:00Z"#]],
    );
    run(
        bootstrap("\nbootstrap_token_expires = 2025-12-31T23:59:59Z"),
        expect![[r#"
            error: spec.toml:10:27: pki.bootstrap_token_expires: the token would expire at or before pki.issued_at (2026-01-01T00:00:00Z)"#]],
    );
    run(
        bootstrap("\nbootstrap_token_expires = 2027-01-01"),
        expect![[r#"
            error: spec.toml:10:27: pki.bootstrap_token_expires: `2027-01-01` needs a date, a time and an offset, for example 2026-01-01T00:00:00Z"#]],
    );
    check(
        &[(
            "issued_at = 2026-01-01T00:00:00Z",
            "issued_at = 2026-01-01T00:00:00Z\nbootstrap_token_expires = 2027-01-01T00:00:00Z",
        )],
        expect![[r#"
            warning: spec.toml:9:27: pki.bootstrap_token_expires: no kubelet joins with a bootstrap token (options.kubelet_credentials is not "bootstrap-token"): it is not used"#]],
    );
}

#[test]
fn leader_election() {
    let table = |body: &str| {
        (
            r#"addresses = ["192.168.50.12/24"]"#,
            format!("addresses = [\"192.168.50.12/24\"]\n\n[options.leader_election]\n{body}"),
        )
    };
    let run = |body: &str, expect: Expect| {
        let (from, to) = table(body);
        check(&[(from, &to)], expect);
    };
    run(
        "lease_duration_seconds = 60\nrenew_deadline_seconds = 40\nretry_period_seconds = 10",
        expect!["ok"],
    );
    // Unset fields take the components' defaults (15, 10, 2), which must still fit.
    run("retry_period_seconds = 5", expect!["ok"]);
    run(
        "renew_deadline_seconds = 20",
        expect![[r#"
            error: spec.toml:21:1: options.leader_election.lease_duration_seconds: the lease (15 s) must be longer than the renew deadline (20 s)
              help: for example 60, 40 and 10 seconds"#]],
    );
    run(
        "lease_duration_seconds = 60\nrenew_deadline_seconds = 12\nretry_period_seconds = 10",
        expect![[r#"
            error: spec.toml:23:26: options.leader_election.renew_deadline_seconds: the renew deadline (12 s) must be longer than 1.2 retry periods (10 s)
              help: for example 60, 40 and 10 seconds"#]],
    );
    run(
        "retry_period_seconds = 0",
        expect![
            "error: spec.toml:22:24: options.leader_election.retry_period_seconds: must be at least 1 second"
        ],
    );
    run(
        "lease_seconds = 60",
        expect![[r#"
            error: spec.toml:22:1: unknown field `lease_seconds`, expected one of `lease_duration_seconds`, `renew_deadline_seconds`, `retry_period_seconds`
              help: fields are listed in examples/ and in the kiln-spec documentation"#]],
    );
}

/// `vm-tests/specs/two-node.toml` is `examples/two-node.toml` with leader-election timings for
/// the emulated guests, and must stay so: the scenario mirrors the example.
#[test]
fn the_two_node_vm_spec_is_the_example_with_timings() {
    let load = |path: &str| {
        let source = std::fs::read_to_string(path).expect("readable spec");
        kiln_spec::load(&source, path)
            .unwrap_or_else(|errors| panic!("{errors}"))
            .plan
    };
    let example = load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/two-node.toml"
    ));
    let mut vm = load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../vm-tests/specs/two-node.toml"
    ));
    assert!(vm.options.leader_election.is_some());
    assert_eq!(example.options.leader_election, None);
    vm.options.leader_election = None;
    assert_eq!(vm, example);
}

/// Every VM scenario proves the cluster DNS (its step is skipped only for a spec that turns it
/// off), so none of their specs may turn it off.
#[test]
fn every_vm_scenario_runs_cluster_dns() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../vm-tests/specs");
    let mut scenarios = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the VM test specs exist") {
        let path = entry.expect("readable").path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let source = std::fs::read_to_string(&path).expect("readable spec");
            let plan = kiln_spec::load(&source, &path.display().to_string())
                .unwrap_or_else(|errors| panic!("{errors}"))
                .plan;
            assert_eq!(
                plan.options.cluster_dns,
                kiln_spec::ClusterDns::Coredns,
                "{}",
                path.display()
            );
            scenarios.push(plan.cluster.name);
        }
    }
    scenarios.sort();
    assert_eq!(scenarios, ["ha", "kubeadm", "static-pods", "two-node"]);
}

#[test]
fn examples_load_and_round_trip() {
    // The examples, and the specs the VM tests build.
    let dirs = [
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../vm-tests/specs"),
    ];
    let mut count = 0;
    let entries = dirs
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).expect("the spec directory exists"));
    for entry in entries {
        let path = entry.expect("readable").path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        count += 1;
        let source = std::fs::read_to_string(&path).expect("readable example");
        let loaded = kiln_spec::load(&source, &path.display().to_string())
            .unwrap_or_else(|errors| panic!("{errors}"));
        assert!(loaded.warnings.is_empty(), "{}", loaded.warnings);
        let again = kiln_spec::load(&loaded.plan.to_spec().to_toml(), "round-trip")
            .unwrap_or_else(|errors| panic!("{errors}"));
        assert_eq!(again.plan, loaded.plan, "{}", path.display());
    }
    assert!(
        count >= 5,
        "expected the example and VM test specs, found {count}"
    );
}

#[test]
fn cluster_dns() {
    let plan = |edits: &[(&str, &str)]| {
        let mut source = BASE.to_owned();
        for (from, to) in edits {
            source = source.replacen(from, to, 1);
        }
        kiln_spec::load(&source, "spec.toml").expect("valid").plan
    };
    // CoreDNS by default, on every supported version.
    assert_eq!(
        plan(&[]).options.cluster_dns,
        kiln_spec::ClusterDns::Coredns
    );
    assert_eq!(
        plan(&[("[pki]", "[options]\ncluster_dns = \"none\"\n\n[pki]")])
            .options
            .cluster_dns,
        kiln_spec::ClusterDns::None
    );
    let current = plan(&[("1.20.2", "1.37.2")]);
    assert_eq!(current.options.cluster_dns, kiln_spec::ClusterDns::Coredns);
    assert!(current.options.upstream_dns.is_empty());
    let forwarding = plan(&[
        ("1.20.2", "1.37.2"),
        (
            "[pki]",
            "[options]\nupstream_dns = [\"192.168.50.1\", \"9.9.9.9\"]\n\n[pki]",
        ),
    ]);
    assert_eq!(
        forwarding.options.upstream_dns,
        [
            std::net::Ipv4Addr::new(192, 168, 50, 1),
            std::net::Ipv4Addr::new(9, 9, 9, 9)
        ]
    );

    check(
        &[
            ("1.20.2", "1.37.2"),
            (
                "[pki]",
                "[options]\nupstream_dns = [\"9.9.9\", \"1.1.1.1\", \"1.1.1.1\"]\n\n[pki]",
            ),
        ],
        expect![[r#"
            error: spec.toml:8:17: options.upstream_dns[0]: `9.9.9` is not an IPv4 address
            error: spec.toml:8:37: options.upstream_dns[2]: 1.1.1.1 is listed twice"#]],
    );
    check(
        &[
            ("1.20.2", "1.37.2"),
            (
                "[pki]",
                "[options]\ncluster_dns = \"none\"\nupstream_dns = [\"1.1.1.1\"]\n\n[pki]",
            ),
        ],
        expect![[r#"
            error: spec.toml:9:16: options.upstream_dns: upstream resolvers are for kiln's cluster DNS, and cluster_dns is "none"
              help: remove upstream_dns, or set cluster_dns = "coredns""#]],
    );
    check(
        &[("[pki]", "[options]\ncluster_dns = \"kube-dns\"\n\n[pki]")],
        expect!["error: spec.toml:8:15: unknown variant `kube-dns`, expected `coredns` or `none`"],
    );
}

#[test]
fn pod_security() {
    let plan = |edits: &[(&str, &str)]| {
        let mut source = BASE.to_owned();
        for (from, to) in edits {
            source = source.replacen(from, to, 1);
        }
        kiln_spec::load(&source, "spec.toml").expect("valid").plan
    };
    // No PodSecurity admission before 1.23; `baseline` by default from it.
    assert_eq!(plan(&[]).options.pod_security, None);
    assert_eq!(
        plan(&[("1.20.2", "1.37.2")]).options.pod_security,
        Some(kiln_spec::PodSecurityLevel::Baseline)
    );
    assert_eq!(
        plan(&[
            ("1.20.2", "1.37.2"),
            ("[pki]", "[options]\npod_security = \"restricted\"\n\n[pki]"),
        ])
        .options
        .pod_security,
        Some(kiln_spec::PodSecurityLevel::Restricted)
    );
    assert_eq!(
        plan(&[("[pki]", "[options]\npod_security = \"privileged\"\n\n[pki]")])
            .options
            .pod_security,
        None
    );
    check(
        &[("[pki]", "[options]\npod_security = \"baseline\"\n\n[pki]")],
        expect![[r#"
            error: spec.toml:8:16: options.pod_security: Kubernetes 1.20.2 has no PodSecurity admission to enforce `baseline`
              help: PodSecurity admission is on from Kubernetes 1.23; before it, leave the option out or write "privileged""#]],
    );
    check(
        &[("[pki]", "[options]\npod_security = \"strict\"\n\n[pki]")],
        expect![
            "error: spec.toml:8:16: unknown variant `strict`, expected one of `privileged`, `baseline`, `restricted`"
        ],
    );
}

#[test]
fn encryption_key_generations() {
    let plan = |edits: &[(&str, &str)]| {
        let mut source = BASE.to_owned();
        for (from, to) in edits {
            source = source.replacen(from, to, 1);
        }
        kiln_spec::load(&source, "spec.toml").expect("valid").plan
    };
    assert_eq!(plan(&[]).options.encryption_key_generations, [0]);
    assert_eq!(
        plan(&[(
            "[pki]",
            "[options]\nencryption_key_generations = [1, 0]\n\n[pki]"
        )])
        .options
        .encryption_key_generations,
        [1, 0]
    );
    check(
        &[(
            "[pki]",
            "[options]\nencryption_key_generations = []\n\n[pki]",
        )],
        expect![[r#"
            error: spec.toml:8:30: options.encryption_key_generations: no key generation
              help: the first generation encrypts; the default is [0]"#]],
    );
    check(
        &[(
            "[pki]",
            "[options]\nencryption_key_generations = [2, 1, 2]\n\n[pki]",
        )],
        expect![
            "error: spec.toml:8:37: options.encryption_key_generations[2]: generation 2 is listed twice"
        ],
    );
}
