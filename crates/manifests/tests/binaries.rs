//! The flag table and the scheduler's configuration against the real programs.
//!
//! Opt in with `KILN_KUBERNETES_BIN_DIR=<dir>`, a directory holding kube-apiserver,
//! kube-controller-manager, kube-scheduler, kubelet and kube-proxy of one release (kiln builds
//! them from Debian's source package; see shared/reference/environment.md). Then every flag
//! [`kiln_manifests::flag_names`] lists for that release must appear in the binary's `--help`,
//! the 1.x kube-scheduler must strictly decode kiln's KubeSchedulerConfiguration
//! (`--write-config-to`) and serve no plain HTTP from 1.22, kube-proxy must strictly decode
//! its KubeProxyConfiguration (`--write-config-to`), and where kubeadm has `config validate`
//! (1.37.2's does, 1.20.2's does not) it must accept kiln's KubeletConfiguration and
//! KubeProxyConfiguration. etcd's flags are checked against `<dir>/etcd` or Debian's
//! `/usr/bin/etcd`, whichever exists. Without the variable these tests check nothing and
//! say so on stderr.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_spec::{Component, Role};

fn bin_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_KUBERNETES_BIN_DIR").map(PathBuf::from);
    if dir.is_none() {
        eprintln!("KILN_KUBERNETES_BIN_DIR is not set: the real-binary checks are skipped");
    }
    dir
}

fn run(program: &Path, arguments: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| panic!("{}: {error}", program.display()));
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The flag names a `--help` text lists: `--name` at the start of an indented line, with or
/// without a one-letter alias before it.
fn help_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = match line.split_once(", --") {
                Some((alias, rest)) if alias.starts_with('-') && alias.len() == 2 => rest,
                _ => line.strip_prefix("--")?,
            };
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// Every example, and the first again with `options.leader_election` set (no example sets it),
/// as `ha-leader-election`.
fn plans() -> Vec<(String, kiln_spec::Plan)> {
    let mut plans: Vec<(String, kiln_spec::Plan)> =
        kiln_testkit::example_plans().into_iter().collect();
    let (name, first) = plans.first().cloned().expect("an example");
    let mut timed = first;
    timed.options.leader_election = Some(kiln_spec::LeaderElectionPlan {
        lease_duration_seconds: 60,
        renew_deadline_seconds: 40,
        retry_period_seconds: 10,
    });
    plans.push((format!("{name}-leader-election"), timed));
    plans
}

/// Every plan's ([`plans`]) rendered flags of `component` at Kubernetes `1.minor`, one command line per
/// node that runs it.
fn rendered_command_lines(component: Component, minor: u32) -> Vec<(String, Vec<String>)> {
    let mut lines = Vec::new();
    for (example, mut plan) in plans() {
        plan.cluster.kubernetes_version.minor = minor;
        for node in &plan.nodes {
            let runs = match component {
                Component::Etcd => node.has(Role::Etcd),
                Component::Kubelet | Component::KubeProxy => {
                    node.runs_kubelet(plan.cluster.control_plane_mode)
                }
                _ => node.has(Role::ControlPlane),
            };
            if runs {
                let arguments = kiln_manifests::flags(&plan, node, component)
                    .into_iter()
                    .map(|(name, value)| format!("--{name}={value}"))
                    .collect();
                lines.push((format!("{example}/{}", node.name), arguments));
            }
        }
    }
    lines
}

/// Checks `component`'s table against `program`: every rendered command line parses (the
/// program is started with `--version` first, so it exits after parsing its flags), and every
/// name of the table for `minor` is listed by `--help` or was just parsed (deprecated flags
/// are hidden from `--help`). Returns the problems.
fn check_program(program: &Path, component: Component, minor: u32) -> Vec<String> {
    let mut problems = Vec::new();
    let (_, help) = run(program, &["--help"]);
    let mut known = help_flags(&help);
    assert!(
        known.len() > 20,
        "{}: too few flags in --help",
        program.display()
    );
    for (origin, arguments) in rendered_command_lines(component, minor) {
        let mut command_line = vec!["--version".to_owned()];
        command_line.extend(arguments.iter().cloned());
        let words: Vec<&str> = command_line.iter().map(String::as_str).collect();
        let (ok, text) = run(program, &words);
        if ok && !text.contains("unknown flag") && !text.contains("not defined") {
            known.extend(
                arguments
                    .iter()
                    .filter_map(|argument| argument.strip_prefix("--"))
                    .filter_map(|argument| argument.split_once('='))
                    .map(|(name, _)| name.to_owned()),
            );
        } else {
            problems.push(format!(
                "{} rejects {origin}'s flags:\n{text}",
                program.display()
            ));
        }
    }
    for name in kiln_manifests::flag_names(component, minor) {
        if !known.contains(name) {
            problems.push(format!(
                "{} 1.{minor}: --{name} is unknown",
                program.display()
            ));
        }
    }
    problems
}

#[test]
fn every_flag_of_the_table_is_known_to_the_binaries() {
    let Some(dir) = bin_dir() else { return };
    let mut problems = Vec::new();
    for component in [
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Kubelet,
        Component::KubeProxy,
    ] {
        let program = dir.join(component.name());
        let minor = common::minor_of(&program);
        problems.extend(check_program(&program, component, minor));
    }
    let etcd = [dir.join("etcd"), PathBuf::from("/usr/bin/etcd")]
        .into_iter()
        .find(|path| path.exists());
    match etcd {
        Some(program) => problems.extend(check_program(
            &program,
            Component::Etcd,
            kiln_spec::OLDEST_SUPPORTED_MINOR,
        )),
        None => eprintln!("no etcd binary: etcd's flags are not checked"),
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_scheduler_strictly_decodes_its_configuration() {
    let Some(dir) = bin_dir() else { return };
    let program = dir.join("kube-scheduler");
    let minor = common::minor_of(&program);
    let work = tempfile::tempdir().expect("a temporary directory");
    // The scheduler opens its kubeconfig before writing the configuration back; a stand-in
    // that points nowhere is enough, since nothing is contacted.
    let kubeconfig = work.path().join("scheduler.conf");
    std::fs::write(&kubeconfig, STAND_IN_KUBECONFIG).expect("write");
    let mut checked = 0;
    // With leader-election timings, they must reach the scheduler through the file (it ignores
    // the `--leader-elect-*` flags once given `--config`).
    for (example, mut plan) in plans() {
        plan.cluster.kubernetes_version.minor = minor;
        if plan.nodes_with(Role::ControlPlane).next().is_none() {
            continue;
        }
        let mut config = kiln_manifests::scheduler_configuration(&plan);
        config.client_connection.kubeconfig = kubeconfig.display().to_string();
        let input = work.path().join(format!("{example}.yaml"));
        let output = work.path().join(format!("{example}-written.yaml"));
        std::fs::write(&input, serde_norway::to_string(&config).expect("YAML")).expect("write");
        let (ok, text) = run(
            &program,
            &[
                &format!("--config={}", input.display()),
                &format!("--write-config-to={}", output.display()),
            ],
        );
        assert!(
            ok,
            "{example}: kube-scheduler rejected its configuration:\n{text}"
        );
        let written: serde_json::Value =
            serde_norway::from_slice(&std::fs::read(&output).expect("written")).expect("YAML");
        assert_eq!(
            written["apiVersion"],
            config.api_version.as_str(),
            "{example}"
        );
        assert_eq!(written["leaderElection"]["leaderElect"], true, "{example}");
        // The scheduler writes durations back in Go's form: 60 s is `1m0s`. Unset, its
        // defaults (15 s, 10 s, 2 s) are written.
        let expected = match plan.options.leader_election {
            Some(_) => ["1m0s", "40s", "10s"],
            None => ["15s", "10s", "2s"],
        };
        for (field, value) in ["leaseDuration", "renewDeadline", "retryPeriod"]
            .into_iter()
            .zip(expected)
        {
            assert_eq!(
                written["leaderElection"][field], value,
                "{example}: {field}"
            );
        }
        assert_eq!(written["enableProfiling"], false, "{example}: profiling");
        // Insecure serving: v1beta1 (1.20, 1.21) defaults both addresses to 0.0.0.0:10251,
        // which that scheduler serves over plain HTTP whatever `--port` says; kiln's file
        // keeps it on the loopback address. From 1.22 they must be empty (v1beta2) or do not
        // exist (v1), and the scheduler serves HTTPS alone.
        for field in ["healthzBindAddress", "metricsBindAddress"] {
            if minor <= 21 {
                assert_eq!(
                    written[field],
                    kiln_manifests::SCHEDULER_INSECURE_LOOPBACK,
                    "{example}: 1.{minor} {field}"
                );
            } else {
                assert!(
                    written
                        .get(field)
                        .is_none_or(|value| value.is_null() || value == ""),
                    "{example}: 1.{minor} serves insecurely: {field} = {}",
                    written[field]
                );
            }
        }
        checked += 1;
    }
    assert!(checked > 0);
}

/// A plain kubeconfig pointing nowhere, for programs that open theirs before writing their
/// configuration back.
const STAND_IN_KUBECONFIG: &str = "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {server: \"https://127.0.0.1:1\"}\n  name: c\ncontexts:\n- context: {cluster: c, user: u}\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user: {}\n";

/// kube-proxy decodes strictly and falls back to lenient decoding with a log line
/// (`using lenient decoding as strict decoding failed`), so an unknown field is caught by
/// that line, and the values by what `--write-config-to` writes back.
#[test]
fn kube_proxy_strictly_decodes_its_configuration() {
    let Some(dir) = bin_dir() else { return };
    let program = dir.join("kube-proxy");
    let minor = common::minor_of(&program);
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut checked = 0;
    for (example, mut plan) in plans() {
        plan.cluster.kubernetes_version.minor = minor;
        let nodes: Vec<Option<&kiln_spec::NodePlan>> = plan
            .nodes
            .iter()
            .filter(|node| node.runs_kubelet(plan.cluster.control_plane_mode))
            .map(Some)
            .chain([None])
            .collect();
        for node in nodes {
            let origin = format!("{example}/{}", node.map_or("DaemonSet", |node| &node.name));
            let config = kiln_manifests::kube_proxy_configuration(&plan, node);
            let input = work.path().join("kube-proxy.yaml");
            let output = work.path().join("kube-proxy-written.yaml");
            let _ = std::fs::remove_file(&output);
            std::fs::write(&input, serde_norway::to_string(&config).expect("YAML")).expect("write");
            let (ok, text) = run(
                &program,
                &[
                    &format!("--config={}", input.display()),
                    &format!("--write-config-to={}", output.display()),
                ],
            );
            assert!(
                !text.to_lowercase().contains("strict decod"),
                "{origin}: kube-proxy 1.{minor} does not strictly decode kiln's configuration:\n{text}"
            );
            if !ok && text.contains("reflect.mapiternext") {
                // The 1.20.2 kube-proxy kiln builds (Go 1.19, modern-go/reflect2 1.0.1) crashes
                // while encoding any configuration; the file was read and checked above.
                eprintln!(
                    "{origin}: kube-proxy 1.{minor} crashes writing its configuration back (reflect2 under Go 1.18+); only the strict decode is checked"
                );
                checked += 1;
                continue;
            }
            assert!(
                ok,
                "{origin}: kube-proxy rejected its configuration:\n{text}"
            );
            let written: serde_json::Value =
                serde_norway::from_slice(&std::fs::read(&output).expect("written")).expect("YAML");
            assert_eq!(written["mode"], config.mode.as_str(), "{origin}");
            assert_eq!(
                written["clusterCIDR"],
                config.cluster_cidr.as_str(),
                "{origin}"
            );
            assert_eq!(
                written["hostnameOverride"],
                config.hostname_override.as_deref().unwrap_or(""),
                "{origin}"
            );
            assert_eq!(
                written["clientConnection"]["kubeconfig"],
                config.client_connection.kubeconfig.as_str(),
                "{origin}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

/// `kubeadm config validate` (where kubeadm has it) strictly decodes and validates the
/// component configurations a ClusterConfiguration is given beside it: kiln's
/// KubeletConfiguration and KubeProxyConfiguration of every node, as the kubelet and
/// kube-proxy of that release would read them. kiln renders no kubeadm configuration of its
/// own; the ClusterConfiguration is a minimal stand-in naming the release.
#[test]
fn kubeadm_validates_the_kubelet_and_kube_proxy_configurations() {
    let Some(dir) = bin_dir() else { return };
    let program = dir.join("kubeadm");
    // kubeadm has no `--version`; the directory holds one release.
    let minor = common::minor_of(&dir.join("kubelet"));
    // An older kubeadm answers an unknown subcommand with `config`'s own help.
    let (_, help) = run(&program, &["config", "validate", "--help"]);
    if !help.contains("kubeadm config validate") {
        eprintln!(
            "kubeadm 1.{minor} has no `config validate`: the kubelet's configuration is not checked"
        );
        return;
    }
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut checked = 0;
    for (example, mut plan) in plans() {
        plan.cluster.kubernetes_version.minor = minor;
        for node in plan
            .nodes
            .iter()
            .filter(|node| node.runs_kubelet(plan.cluster.control_plane_mode))
        {
            let origin = format!("{example}/{}", node.name);
            let documents = [
                format!(
                    "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.{minor}.0\n"
                ),
                serde_norway::to_string(&kiln_manifests::kubelet_configuration(&plan, node))
                    .expect("YAML"),
                serde_norway::to_string(&kiln_manifests::kube_proxy_configuration(
                    &plan,
                    Some(node),
                ))
                .expect("YAML"),
            ];
            let input = work.path().join("kubeadm.yaml");
            std::fs::write(&input, documents.join("---\n")).expect("write");
            let (ok, text) = run(
                &program,
                &[
                    "config",
                    "validate",
                    &format!("--config={}", input.display()),
                ],
            );
            assert!(
                ok && !text.to_lowercase().contains("unknown field"),
                "{origin}: kubeadm 1.{minor} rejects kiln's component configuration:\n{text}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}
