//! The flag table and the scheduler's configuration against the real programs.
//!
//! Opt in with `KILN_KUBERNETES_BIN_DIR=<dir>`, a directory holding kube-apiserver,
//! kube-controller-manager, kube-scheduler, kubelet and kube-proxy of one release (kiln builds
//! them from Debian's source package; see shared/reference/environment.md). Then every flag
//! [`kiln_manifests::flag_names`] lists for that release must appear in the binary's `--help`,
//! and the 1.x kube-scheduler must strictly decode kiln's KubeSchedulerConfiguration
//! (`--write-config-to`). etcd's flags are checked against `<dir>/etcd` or Debian's
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
        let program = dir.join(kiln_manifests::component_name(component));
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
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {server: \"https://127.0.0.1:1\"}\n  name: c\ncontexts:\n- context: {cluster: c, user: u}\n  name: x\ncurrent-context: x\nusers:\n- name: u\n  user: {}\n",
    )
    .expect("write");
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
        checked += 1;
    }
    assert!(checked > 0);
}
