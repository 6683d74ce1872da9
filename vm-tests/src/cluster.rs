//! A built cluster running as QEMU guests: every node image of a `result/` directory booted on
//! one private segment, with the apiserver and kubelets forwarded to the host's 127.0.0.1.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::kubectl::write_forwarded_kubeconfig;
use crate::qemu::{Accel, PortForward, StateDiskFile, Vm, VmConfig, detect_accel};
use crate::{Error, GuestShell, Kubectl, NodeImage, Segment, Tools, free_tcp_port, wait_for};
use kiln_image::os::node::StateDisk;

/// The guest port forwarded from every node: the kubelet API (the apiserver's port is added on
/// the node that serves the cluster endpoint). etcd listens only on the private segment and
/// loopback, so it is reached from inside its guest.
const KUBELET_PORT: u16 = 10250;

/// How long a new QEMU may take to bind its forwarded ports (well under a second on an idle
/// host) before the harness stops watching for a clash ([`Vm::wait_forwards`]).
const FORWARDS_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a guest is started on new ports after a clash before the harness gives up.
const PORT_ATTEMPTS: u32 = 5;

/// The kernel command line word that makes a kiln image start a root shell on `ttyS1`.
pub const DEBUG_SHELL: &str = "kiln.debug-shell";

/// How to boot a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The `result/` directory of `cargo xtask build-cluster` (with `nodes/*/image/manifest.json`
    /// and `cluster/kubeconfigs/admin.conf`).
    pub result_dir: PathBuf,
    /// The kubectl of the cluster's Kubernetes version.
    pub kubectl: PathBuf,
    /// Where the run's logs, sockets and kubeconfig go.
    pub run_dir: PathBuf,
    /// Leave the guests running afterwards (see [`VmConfig::keep`]).
    pub keep: bool,
    /// The accelerator; `None` detects it ([`detect_accel`]).
    pub accel: Option<Accel>,
    /// vCPUs for every guest (at least 1); `None`: what each image's manifest asks for.
    pub cpus: Option<u32>,
    /// The test tools disk every guest gets; `None` for none (the steps that need it fail).
    pub tools: Option<Tools>,
}

/// One running node.
#[derive(Debug)]
pub struct Node {
    /// Its image.
    pub image: NodeImage,
    /// Its QEMU guest.
    pub vm: Vm,
    /// Its root shell, once connected.
    shell: Option<GuestShell>,
    /// Guest port → host port on 127.0.0.1.
    pub ports: BTreeMap<u16, u16>,
}

/// The running cluster. Dropping it stops every guest (unless kept).
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, by name.
    pub nodes: BTreeMap<String, Node>,
    /// The private segment.
    pub segment: Segment,
    /// The accelerator the guests use.
    pub accel: Accel,
    /// kubectl with the forwarded admin kubeconfig.
    pub kubectl: Kubectl,
    /// The `result/` directory.
    pub result_dir: PathBuf,
    /// The run directory.
    pub run_dir: PathBuf,
    /// The apiserver's host port and the node that serves it.
    pub api: (String, u16),
    /// The cluster endpoint's port in the guests (the API server's own, or a load balancer's).
    pub endpoint_port: u16,
    /// The test tools disk the guests have, if any.
    pub tools: Option<Tools>,
}

impl Cluster {
    /// Starts every node's guest (without waiting for them to boot) and writes the forwarded
    /// admin kubeconfig as `<run_dir>/admin.kubeconfig`.
    pub fn start(options: &ClusterOptions) -> crate::Result<Self> {
        let images = load_images(&options.result_dir)?;
        std::fs::create_dir_all(&options.run_dir)
            .map_err(|error| Error::io(format!("creating {}", options.run_dir.display()), error))?;
        let admin = options.result_dir.join("cluster/kubeconfigs/admin.conf");
        let (api_host, api_port) = server_of(&options.kubectl, &admin)?;
        let api_node = api_node(&images, &api_host).ok_or_else(|| Error::Image {
            path: admin.clone(),
            reason: format!("no node serves the cluster endpoint {api_host}:{api_port}"),
        })?;

        let accel = match options.accel {
            Some(accel) => accel,
            None => detect_accel(&images[0].kernel),
        };
        if let Some(cpus) = options.cpus {
            eprintln!(
                "vCPUs per guest: {} (--cpus), instead of what each image asks for",
                cpus.max(1)
            );
        }
        let segment = Segment::new()?;
        let mut nodes = BTreeMap::new();
        for image in images {
            let cpus = options.cpus.map_or(image.manifest.cpus, |cpus| cpus.max(1));
            let mut guest_ports = vec![KUBELET_PORT];
            if image.node() == api_node {
                guest_ports.push(api_port);
            }
            let mut ports = BTreeMap::new();
            for guest in guest_ports {
                ports.insert(guest, free_tcp_port()?);
            }
            // The image starts its root shell on ttyS1 only when asked.
            let mut cmdline = format!("{} {DEBUG_SHELL}", image.manifest.cmdline);
            let state_disk = match &image.manifest.state {
                Some(state) => {
                    cmdline.push(' ');
                    cmdline.push_str(StateDisk::CMDLINE_FLAG);
                    Some(create_state_disk(&options.run_dir, image.node(), state)?)
                }
                None => None,
            };
            let mut config = VmConfig {
                name: image.node().to_owned(),
                kernel: image.kernel.clone(),
                initrd: image.initrd.clone(),
                cmdline,
                disks: image.disks.clone(),
                state_disk,
                tools_disk: options.tools.as_ref().map(|tools| tools.disk.clone()),
                memory_mib: image.manifest.memory_mib,
                cpus,
                mac: image.manifest.mac.clone(),
                segment,
                forwards: ports
                    .iter()
                    .map(|(&guest, &host)| PortForward { host, guest })
                    .collect(),
                accel,
                run_dir: options.run_dir.clone(),
                keep: options.keep,
            };
            // A forwarded port another process took before QEMU bound it makes QEMU exit at
            // once: start it again on new ports (the kubeconfig is written after this loop).
            let mut attempts = 1;
            let vm = loop {
                let mut vm = Vm::start(config.clone())?;
                match vm.wait_forwards(FORWARDS_TIMEOUT) {
                    Ok(()) => break vm,
                    Err(error) if error.is_port_clash() && attempts < PORT_ATTEMPTS => {
                        eprintln!(
                            "{}: a forwarded port was taken before QEMU bound it; starting it \
                             again on new ports",
                            image.node()
                        );
                        attempts += 1;
                        for port in ports.values_mut() {
                            *port = free_tcp_port()?;
                        }
                        config.forwards = ports
                            .iter()
                            .map(|(&guest, &host)| PortForward { host, guest })
                            .collect();
                    }
                    Err(error) => return Err(error),
                }
            };
            nodes.insert(
                image.node().to_owned(),
                Node {
                    image,
                    vm,
                    shell: None,
                    ports,
                },
            );
        }
        let api_host_port = nodes
            .get(&api_node)
            .and_then(|node| node.ports.get(&api_port).copied())
            .ok_or_else(|| Error::check("boot", "the apiserver's port was not forwarded"))?;
        let kubeconfig = options.run_dir.join("admin.kubeconfig");
        write_forwarded_kubeconfig(&options.kubectl, &admin, api_host_port, &kubeconfig)?;
        Ok(Self {
            nodes,
            segment,
            accel,
            kubectl: Kubectl::new(&options.kubectl, &kubeconfig),
            result_dir: options.result_dir.clone(),
            run_dir: options.run_dir.clone(),
            api: (api_node, api_host_port),
            endpoint_port: api_port,
            tools: options.tools.clone(),
        })
    }

    /// Waits until every guest's root shell answers.
    pub fn wait_booted(&mut self, timeout: Duration) -> crate::Result<()> {
        for node in self.nodes.values_mut() {
            node.vm.check_running()?;
            let mut shell =
                GuestShell::connect(&node.vm.config().shell_socket(), node.image.node())?;
            let vm = &node.vm;
            shell.wait_ready(timeout.saturating_sub(vm.uptime()), || vm.console_tail(30))?;
            node.shell = Some(shell);
        }
        Ok(())
    }

    /// Waits until the apiserver answers `/readyz` through the forwarded port, reporting the
    /// last kubectl error and the API node's console on timeout, followed by what the nodes
    /// that serve the API say of their services ([`Cluster::api_diagnostics`]).
    pub fn wait_api(&mut self, timeout: Duration) -> crate::Result<()> {
        let result = self.wait_api_quietly(timeout);
        if let Err(error) = &result
            && !matches!(error, Error::Interrupted)
        {
            eprintln!("{}", self.api_diagnostics());
        }
        result
    }

    /// What the control-plane and etcd nodes and the node serving the endpoint say of etcd,
    /// the apiserver and nginx, as systemd units or as static pods: the units' states, the
    /// containers, the listening sockets and the last log lines. For failure reports; a node
    /// that does not answer is reported as such.
    pub fn api_diagnostics(&mut self) -> String {
        let api_port = self.endpoint_port;
        let script = format!(
            "systemctl --no-pager --lines=0 status etcd kube-apiserver nginx kubelet \
             2>&1 | grep -E '^[^ ]|Active:'; echo '-- containers:'; \
             crictl ps -a 2>&1 | cut -c1-160; echo '-- listening:'; \
             ss -Htln 2>/dev/null | awk '{{print $4}}' | grep -E ':(2379|2380|6443|{api_port})$'; \
             echo '-- log:'; journalctl --no-pager -n 12 -o short-monotonic \
             -u etcd -u kube-apiserver -u nginx -u kubelet 2>&1 | cut -c1-240; \
             for log in /var/log/pods/kube-system_etcd-*/*/*.log \
             /var/log/pods/kube-system_kube-apiserver-*/*/*.log; do \
             [ -f \"$log\" ] && echo \"-- $log\" && tail -n 6 \"$log\" | cut -c1-240; done; true"
        );
        let mut names = self.nodes_with_role("control-plane");
        for member in self.nodes_with_role("etcd") {
            if !names.contains(&member) {
                names.push(member);
            }
        }
        if !names.contains(&self.api.0) {
            names.push(self.api.0.clone());
        }
        let mut text = String::new();
        for name in names {
            let answer = match self.shell(&name) {
                Ok(shell) => match shell.run(&script, Duration::from_secs(60)) {
                    Ok(output) => output.output,
                    Err(error) => format!("(no answer: {error})"),
                },
                Err(error) => format!("(no shell: {error})"),
            };
            let _ = writeln!(
                text,
                "--- {name}: etcd, kube-apiserver, nginx, kubelet ---\n{answer}"
            );
        }
        text
    }

    fn wait_api_quietly(&mut self, timeout: Duration) -> crate::Result<()> {
        let (api_node, _) = self.api.clone();
        let kubectl = self.kubectl.clone();
        let nodes = &mut self.nodes;
        wait_for(
            "the apiserver to be ready",
            timeout,
            Duration::from_secs(3),
            || {
                for node in nodes.values_mut() {
                    node.vm.check_running().map_err(|error| error.to_string())?;
                }
                match kubectl.output(&["get", "--raw", "/readyz"]) {
                    Ok(output) if output.status.success() => Ok(()),
                    Ok(output) => Err(format!(
                        "kubectl: {}\n{api_node}'s console:\n{}",
                        crate::kubectl::describe(&output),
                        nodes
                            .get(&api_node)
                            .map(|node| node.vm.console_tail(15))
                            .unwrap_or_default()
                    )),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
    }

    /// The operator's bootstrap step: applies the cluster's add-ons (the bootstrap RBAC that
    /// binds the admins' group to `cluster-admin` and the apiserver's kubelet-client identity to
    /// `system:kubelet-api-admin`, kube-proxy's DaemonSet, CoreDNS) from a control-plane node's
    /// rendered manifests, and with bootstrap tokens the operator's token objects
    /// (`cluster/bootstrap-token`), as the
    /// break-glass super-admin, whose key never leaves the operator's output. Retries until the
    /// apiserver accepts them.
    pub fn apply_addons(&mut self, timeout: Duration) -> crate::Result<()> {
        let control_plane = self
            .nodes_with_role("control-plane")
            .into_iter()
            .next()
            .ok_or_else(|| Error::check("add-ons", "no control-plane node"))?;
        let addons = self
            .result_dir
            .join("nodes")
            .join(&control_plane)
            .join("manifests")
            .join(kiln_spec::paths::node_relative(
                kiln_spec::paths::ADDONS_DIR,
            ));
        let super_admin = self.result_dir.join("cluster/kubeconfigs/super-admin.conf");
        let kubeconfig = self.run_dir.join("super-admin.kubeconfig");
        write_forwarded_kubeconfig(&self.kubectl.program, &super_admin, self.api.1, &kubeconfig)?;
        let kubectl = Kubectl::new(&self.kubectl.program, &kubeconfig);
        let mut arguments = vec![
            "apply".to_owned(),
            "-f".to_owned(),
            addons.display().to_string(),
        ];
        // With bootstrap tokens, the operator's token objects (kiln keeps them off every node).
        let token_objects = self
            .result_dir
            .join("cluster/bootstrap-token")
            .join(kiln_spec::paths::BOOTSTRAP_TOKEN_OBJECTS);
        if token_objects.is_file() {
            arguments.extend(["-f".to_owned(), token_objects.display().to_string()]);
        }
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        wait_for(
            "the add-ons to be applied",
            timeout,
            Duration::from_secs(5),
            || match kubectl.output(&arguments) {
                Ok(output) if output.status.success() => Ok(()),
                Ok(output) => Err(crate::kubectl::describe(&output)),
                Err(error) => Err(error.to_string()),
            },
        )
    }

    /// Stops node `name`'s guest (as a power cut would).
    pub fn stop_node(&mut self, name: &str) -> crate::Result<()> {
        let node = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| Error::check("cluster", format!("no node called {name}")))?;
        node.shell = None;
        node.vm.stop();
        Ok(())
    }

    /// Starts node `name`'s guest again, with the same disks, segment and forwards, and waits
    /// for its root shell.
    pub fn start_node(&mut self, name: &str, timeout: Duration) -> crate::Result<()> {
        let node = self
            .nodes
            .get_mut(name)
            .ok_or_else(|| Error::check("cluster", format!("no node called {name}")))?;
        node.shell = None;
        node.vm.stop();
        node.vm = Vm::start(node.vm.config().clone())?;
        // Its forwards must stay the same (the kubeconfigs name them): a clash is an error.
        node.vm.wait_forwards(FORWARDS_TIMEOUT)?;
        let mut shell = GuestShell::connect(&node.vm.config().shell_socket(), name)?;
        let vm = &node.vm;
        shell.wait_ready(timeout, || vm.console_tail(30))?;
        node.shell = Some(shell);
        Ok(())
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> crate::Result<&Node> {
        self.nodes
            .get(name)
            .ok_or_else(|| Error::check("cluster", format!("no node called {name}")))
    }

    /// The root shell of node `name` (after [`Cluster::wait_booted`]).
    pub fn shell(&mut self, name: &str) -> crate::Result<&mut GuestShell> {
        self.nodes
            .get_mut(name)
            .and_then(|node| node.shell.as_mut())
            .ok_or_else(|| Error::check("cluster", format!("no shell on node {name}")))
    }

    /// Runs `script` on node `name` and returns its output; a non-zero exit fails `step`.
    pub fn on(&mut self, name: &str, step: &str, script: &str) -> crate::Result<String> {
        self.shell(name)?
            .check(step, script, Duration::from_secs(120))
    }

    /// The host port that reaches `guest_port` on node `name`.
    pub fn host_port(&self, name: &str, guest_port: u16) -> crate::Result<u16> {
        self.node(name)?
            .ports
            .get(&guest_port)
            .copied()
            .ok_or_else(|| {
                Error::check(
                    "cluster",
                    format!("port {guest_port} of {name} is not forwarded"),
                )
            })
    }

    /// The names of the nodes with `role`, sorted.
    pub fn nodes_with_role(&self, role: &str) -> Vec<String> {
        self.nodes
            .values()
            .filter(|node| node.image.has_role(role))
            .map(|node| node.image.node().to_owned())
            .collect()
    }

    /// How to reach the guests: ports, kubeconfig, logs, and how to stop them.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "private segment: multicast {}:{} on lo; accelerator: {:?}",
            self.segment.group, self.segment.port, self.accel
        );
        let _ = writeln!(
            text,
            "kubectl:  {} --kubeconfig {}",
            self.kubectl.program.display(),
            self.kubectl.kubeconfig.display()
        );
        for node in self.nodes.values() {
            let config = node.vm.config();
            let ports: Vec<String> = node
                .ports
                .iter()
                .map(|(guest, host)| format!("127.0.0.1:{host} -> {guest}"))
                .collect();
            let _ = writeln!(
                text,
                "{}: pid {}, {}\n  console: {}\n  shell:   socat - UNIX-CONNECT:{}\n  qemu:    {}",
                node.image.node(),
                node.vm.pid(),
                ports.join(", "),
                config.console_log().display(),
                config.shell_socket().display(),
                config.qemu_log().display(),
            );
        }
        let pids: Vec<String> = self
            .nodes
            .values()
            .map(|node| node.vm.pid().to_string())
            .collect();
        let _ = writeln!(text, "stop:     kill {}", pids.join(" "));
        text
    }

    /// What each node's systemd says of kiln's services, one line per node (leaving out those
    /// inactive and never restarted): when each became active (seconds since the guest booted;
    /// for a `notify` service, when it reported ready), how often systemd restarted it after
    /// a failure, and the CPU time it used so far (its cgroup's, where systemd accounts it);
    /// then the CPU time of the pods (`kubepods.slice`: static pods and containers) and of the
    /// whole guest since boot. Printed after every run, so a slow start shows whether a
    /// component kept failing and where a guest's time went; below a node with a service
    /// systemd restarted, what that service's journal said when it ended (systemd's exit and
    /// failure lines, klog's error and fatal lines, etcd's errors) and the kernel's
    /// out-of-memory kills, so that a run shows why without the guest. A node that does
    /// not answer within 30 s is reported as such.
    pub fn service_report(&mut self) -> String {
        let units: Vec<String> = reported_services()
            .into_iter()
            .map(|service| format!("{service}.service"))
            .chain(["kubepods.slice".to_owned()])
            .collect();
        // /proc/stat's first line: the guest's CPU time since boot in clock ticks (USER_HZ,
        // 100 on Linux), user, nice, system, idle, iowait, irq, softirq, steal.
        let script = format!(
            "for unit in {}; do systemctl show -p Id -p LoadState -p ActiveState -p NRestarts \
             -p ActiveEnterTimestampMonotonic -p CPUUsageNSec \"$unit\" | tr '\\n' ' '; echo; \
             done; head -n 1 /proc/stat",
            units.join(" ")
        );
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        let mut text = String::new();
        for name in names {
            let mut why = String::new();
            let answer = match self.shell(&name) {
                Ok(shell) => match shell.run(&script, Duration::from_secs(30)) {
                    Ok(output) => {
                        let states = service_states(&output.output);
                        let restarted: Vec<&str> = states
                            .iter()
                            .filter(|state| state.restarts > 0)
                            .map(|state| state.unit.as_str())
                            .collect();
                        if !restarted.is_empty() {
                            why = match shell
                                .run(&restart_words_script(&restarted), Duration::from_secs(30))
                            {
                                Ok(words) => indented(&words.output, "      "),
                                Err(error) => format!("      (no answer: {error})\n"),
                            };
                        }
                        states
                            .iter()
                            // Units a node has but does not run (Debian's packages bring some).
                            .filter(|state| state.active != "inactive" || state.restarts > 0)
                            .map(ServiceState::describe)
                            .chain(guest_cpu(&output.output))
                            .collect::<Vec<_>>()
                            .join("; ")
                    }
                    Err(error) => format!("(no answer: {error})"),
                },
                Err(error) => format!("({error})"),
            };
            let _ = writeln!(text, "  {name}: {answer}");
            if !why.is_empty() {
                let _ = write!(
                    text,
                    "    its journal on what ended the restarted services (of each, the \
                     lines up to its last exit; and the kernel's out-of-memory kills):\n{why}"
                );
            }
        }
        text
    }

    /// The last console lines of every node, for a failure report.
    pub fn consoles(&self, lines: usize) -> String {
        let mut text = String::new();
        for node in self.nodes.values() {
            let _ = writeln!(
                text,
                "--- {} console (last {lines} lines of {}) ---\n{}",
                node.image.node(),
                node.vm.config().console_log().display(),
                node.vm.console_tail(lines)
            );
        }
        text
    }
}

/// The services [`Cluster::service_report`] asks every node about (those a node does not have
/// are left out): every service kiln runs under systemd, and nginx (Debian's unit) for a load
/// balancer.
fn reported_services() -> Vec<&'static str> {
    let mut services: Vec<&str> = kiln_units::SERVICES
        .into_iter()
        .map(kiln_units::Service::name)
        .collect();
    services.push("nginx");
    services
}

/// What a service's journal says when it ends: systemd's own lines on the main process's exit
/// and the failure, klog's error and fatal lines (`E1207 19:55:45.382132 ...`, `F1207 ...`),
/// etcd's JSON ones at level error and above.
const ENDING_WORDS: &str = r#"Main process exited|Failed with result|Killing process| [EF][0-9]{4} [0-9:.]+ |"level":"(error|panic|fatal)""#;

/// Of `grep`'s matches, the 8 lines up to the last exit systemd saw (its "Main process exited"
/// line and the one after it: what the process said last), or the last 8 if none.
const UP_TO_THE_LAST_EXIT: &str = "awk '{ line[NR] = $0 } /Main process exited/ { exit_at = NR } \
     END { last = exit_at ? exit_at + 1 : NR; if (last > NR) last = NR; \
     for (i = last > 8 ? last - 7 : 1; i <= last; i++) print line[i] }'";

/// A guest's shell script printing, for each of `units`, the lines of its journal since boot
/// that [`ENDING_WORDS`] matches up to its last exit ([`UP_TO_THE_LAST_EXIT`]; timestamps in
/// seconds since boot, as the service report gives them), then the kernel's last 3 lines on
/// an out-of-memory kill.
fn restart_words_script(units: &[&str]) -> String {
    let mut script = String::new();
    for unit in units {
        let _ = write!(
            script,
            "echo '{unit}:'; journalctl -b -u '{unit}' -o short-monotonic --no-pager \
             | grep -E '{ENDING_WORDS}' | {UP_TO_THE_LAST_EXIT} | cut -c1-400; "
        );
    }
    script.push_str(
        "journalctl -k -b -o short-monotonic --no-pager \
         | grep -E 'Out of memory|oom-kill|Killed process' | tail -n 3",
    );
    script
}

/// `text`'s lines, each after `indent`, each ending in a newline.
fn indented(text: &str, indent: &str) -> String {
    text.lines()
        .map(|line| format!("{indent}{line}\n"))
        .collect()
}

/// `guest CPU 412.3 s busy, 35.1 s idle` from the `cpu` line of `/proc/stat` in `output`
/// (clock ticks of 1/100 s; busy is everything but idle and iowait).
fn guest_cpu(output: &str) -> Option<String> {
    let ticks: Vec<u64> = output
        .lines()
        .find_map(|line| line.strip_prefix("cpu "))?
        .split_whitespace()
        .filter_map(|field| field.parse().ok())
        .collect();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let busy = ticks.iter().sum::<u64>() - idle;
    let seconds = |ticks: u64| ticks as f64 / 100.0;
    Some(format!(
        "guest CPU {:.1} s busy, {:.1} s idle",
        seconds(busy),
        seconds(idle)
    ))
}

/// One unit's state as `systemctl show` gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceState {
    /// The unit, for example `etcd.service`.
    pub unit: String,
    /// `ActiveState`: `active`, `activating`, `failed`, ...
    pub active: String,
    /// When it last became active, in seconds since boot (`None`: never).
    pub active_since: Option<u64>,
    /// How often systemd restarted it (`Restart=`) since boot.
    pub restarts: u32,
    /// The CPU time its cgroup used, in seconds (`None`: not accounted).
    pub cpu_seconds: Option<f64>,
}

impl ServiceState {
    /// `etcd active since 41 s, 0 restarts, 12.3 s CPU` (a slice: no restarts).
    pub fn describe(&self) -> String {
        let name = self.unit.trim_end_matches(".service");
        let since = match self.active_since {
            Some(seconds) if self.active == "active" => format!(" since {seconds} s"),
            _ => String::new(),
        };
        let restarts = match (self.unit.ends_with(".service"), self.restarts) {
            (false, _) => String::new(),
            (true, 1) => ", 1 restart".to_owned(),
            (true, count) => format!(", {count} restarts"),
        };
        let cpu = match self.cpu_seconds {
            Some(seconds) => format!(", {seconds:.1} s CPU"),
            None => String::new(),
        };
        format!("{name} {}{since}{restarts}{cpu}", self.active)
    }
}

/// The loaded services in `systemctl show` output with one service's `Key=value` pairs per line
/// (separated by spaces); a unit that is not loaded is left out.
pub fn service_states(output: &str) -> Vec<ServiceState> {
    output
        .lines()
        .filter_map(|line| {
            let pairs: BTreeMap<&str, &str> = line
                .split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .collect();
            if pairs.get("LoadState") != Some(&"loaded") {
                return None;
            }
            Some(ServiceState {
                unit: (*pairs.get("Id")?).to_owned(),
                active: pairs
                    .get("ActiveState")
                    .copied()
                    .unwrap_or("unknown")
                    .to_owned(),
                active_since: pairs
                    .get("ActiveEnterTimestampMonotonic")
                    .and_then(|micros| micros.parse::<u64>().ok())
                    .filter(|micros| *micros > 0)
                    .map(|micros| micros / 1_000_000),
                restarts: pairs
                    .get("NRestarts")
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(0),
                // `[not set]` (two words) where systemd does not account the unit's CPU.
                cpu_seconds: pairs
                    .get("CPUUsageNSec")
                    .and_then(|nanos| nanos.parse::<u64>().ok())
                    .map(|nanos| nanos as f64 / 1e9),
            })
        })
        .collect()
}

/// A new, empty (sparse) state disk for `node` in the run directory: the node formats it on
/// its first boot, and a restarted guest finds its state there.
fn create_state_disk(
    run_dir: &Path,
    node: &str,
    state: &StateDisk,
) -> crate::Result<StateDiskFile> {
    let path = run_dir.join(format!("{node}.state.img"));
    let file = std::fs::File::create(&path)
        .map_err(|error| Error::io(format!("creating {}", path.display()), error))?;
    file.set_len(u64::from(state.mib) << 20)
        .map_err(|error| Error::io(format!("sizing {}", path.display()), error))?;
    Ok(StateDiskFile {
        path,
        serial: state.serial.clone(),
    })
}

/// Every `nodes/<node>/image` of `result_dir`, sorted by node name.
fn load_images(result_dir: &Path) -> crate::Result<Vec<NodeImage>> {
    let nodes_dir = result_dir.join("nodes");
    let entries = std::fs::read_dir(&nodes_dir)
        .map_err(|error| Error::io(format!("listing {}", nodes_dir.display()), error))?;
    let mut images = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| Error::io("listing nodes", error))?;
        let dir = entry.path().join("image");
        if dir.join("manifest.json").exists() {
            images.push(NodeImage::load(&dir)?);
        } else {
            return Err(Error::Image {
                path: dir,
                reason: "no manifest.json: was the cluster built with node images?".to_owned(),
            });
        }
    }
    if images.is_empty() {
        return Err(Error::Image {
            path: nodes_dir,
            reason: "no nodes".to_owned(),
        });
    }
    images.sort_by(|a, b| a.node().cmp(b.node()));
    Ok(images)
}

/// The host and port of the (first) cluster's server in `kubeconfig`.
fn server_of(kubectl: &Path, kubeconfig: &Path) -> crate::Result<(String, u16)> {
    let server = Kubectl::new(kubectl, kubeconfig).run(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ])?;
    let bad = || Error::Image {
        path: kubeconfig.to_path_buf(),
        reason: format!("cannot read the server URL {server:?}"),
    };
    let authority = server
        .trim()
        .strip_prefix("https://")
        .ok_or_else(bad)?
        .trim_end_matches('/');
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "443"));
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.to_owned(), port))
}

/// The node that serves `host`: the node with that address or name, else the load balancer,
/// else the first control-plane node.
fn api_node(images: &[NodeImage], host: &str) -> Option<String> {
    images
        .iter()
        .find(|image| image.node() == host || image.address() == Some(host))
        .or_else(|| images.iter().find(|image| image.has_role("load-balancer")))
        .or_else(|| images.iter().find(|image| image.has_role("control-plane")))
        .map(|image| image.node().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words that end a service, matched by the guest's own tool (`grep -E`, as the script
    /// runs it) in lines as `journalctl -o short-monotonic` prints them; the lines of a service
    /// at work are left out.
    #[test]
    fn the_ending_words_are_found_by_grep() {
        let lines = [
            (
                "[ 1034.512201] node1 kube-controller-manager[812]: E1207 19:55:45.382132     812 leaderelection.go:436] \"Failed to update lock\" err=\"context deadline exceeded\"",
                true,
            ),
            (
                "[ 1035.100021] node1 kube-controller-manager[812]: F1207 19:55:46.100000     812 controllermanager.go:330] leaderelection lost",
                true,
            ),
            (
                "[ 1035.200000] node1 systemd[1]: kube-controller-manager.service: Main process exited, code=exited, status=1/FAILURE",
                true,
            ),
            (
                "[ 1035.200100] node1 systemd[1]: kube-controller-manager.service: Failed with result 'exit-code'.",
                true,
            ),
            (
                "[   60.000000] node1 etcd[300]: {\"level\":\"error\",\"msg\":\"failed to send out heartbeat on time\"}",
                true,
            ),
            (
                "[   60.000001] node1 etcd[300]: {\"level\":\"warn\",\"msg\":\"apply request took too long\"}",
                false,
            ),
            (
                "[  100.000000] node1 kube-controller-manager[812]: I1207 19:40:00.000000     812 event.go:389] Event occurred",
                false,
            ),
            (
                "[  101.000000] node1 kube-apiserver[700]: W1207 19:40:01.000000     700 dispatcher.go:1] Expected",
                false,
            ),
        ];
        let input: String = lines.iter().map(|(line, _)| format!("{line}\n")).collect();
        let mut grep = std::process::Command::new("grep")
            .args(["-E", ENDING_WORDS])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("grep");
        std::io::Write::write_all(&mut grep.stdin.take().expect("stdin"), input.as_bytes())
            .expect("write");
        let output = grep.wait_with_output().expect("grep's output");
        let found = String::from_utf8(output.stdout).expect("utf-8");
        let expected: String = lines
            .iter()
            .filter(|(_, ends)| *ends)
            .map(|(line, _)| format!("{line}\n"))
            .collect();
        assert_eq!(found, expected);
        // The lines up to the last exit, through the guest's awk (the host's here).
        let noise: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    "[ {}.0] node1 kube-controller-manager[9]: E1207 noise {i}",
                    2000 + i
                )
            })
            .collect();
        let journal = format!("{}{}\n", expected, noise.join("\n"));
        let excerpt = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("printf '%s' \"$0\" | {UP_TO_THE_LAST_EXIT}"),
                &journal,
            ])
            .output()
            .expect("awk");
        let excerpt = String::from_utf8(excerpt.stdout).expect("utf-8");
        let wanted: Vec<&str> = expected.lines().take(4).collect();
        assert_eq!(excerpt.lines().collect::<Vec<_>>(), wanted, "{excerpt}");
        let without_exit = std::process::Command::new("sh")
            .args(["-c", &format!("seq 1 10 | {UP_TO_THE_LAST_EXIT}")])
            .output()
            .expect("awk");
        // Without an exit, the last 8.
        assert_eq!(
            String::from_utf8_lossy(&without_exit.stdout),
            "3\n4\n5\n6\n7\n8\n9\n10\n"
        );

        let script = restart_words_script(&["kube-controller-manager.service", "etcd.service"]);
        assert!(script.contains("journalctl -b -u 'kube-controller-manager.service'"));
        assert!(script.contains("journalctl -b -u 'etcd.service'"));
        assert!(script.contains(&format!("grep -E '{ENDING_WORDS}'")));
        assert!(
            !ENDING_WORDS.contains('\''),
            "the script quotes it in single quotes"
        );
    }

    #[test]
    fn service_states_are_read_from_systemctl_show() {
        // As `systemctl show -p ...` prints them (in its own property order), joined per unit.
        let output = "Id=etcd.service NRestarts=0 ActiveState=active LoadState=loaded \
                      ActiveEnterTimestampMonotonic=41234567 CPUUsageNSec=12345678901 \n\
                      Id=kube-apiserver.service NRestarts=3 ActiveState=activating \
                      LoadState=loaded ActiveEnterTimestampMonotonic=0 CPUUsageNSec=[not set] \n\
                      Id=nginx.service NRestarts=0 ActiveState=inactive LoadState=not-found \
                      ActiveEnterTimestampMonotonic=0 \n\
                      Id=kubepods.slice ActiveState=active LoadState=loaded \
                      ActiveEnterTimestampMonotonic=9000000 CPUUsageNSec=500000000 \n\
                      cpu  41230 12 5000 3500 10 0 20 0 0 0\n";
        let states = service_states(output);
        assert_eq!(
            states,
            [
                ServiceState {
                    unit: "etcd.service".to_owned(),
                    active: "active".to_owned(),
                    active_since: Some(41),
                    restarts: 0,
                    cpu_seconds: Some(12.345678901),
                },
                ServiceState {
                    unit: "kube-apiserver.service".to_owned(),
                    active: "activating".to_owned(),
                    active_since: None,
                    restarts: 3,
                    cpu_seconds: None,
                },
                ServiceState {
                    unit: "kubepods.slice".to_owned(),
                    active: "active".to_owned(),
                    active_since: Some(9),
                    restarts: 0,
                    cpu_seconds: Some(0.5),
                },
            ]
        );
        let described: Vec<String> = states.iter().map(ServiceState::describe).collect();
        assert_eq!(
            described,
            [
                "etcd active since 41 s, 0 restarts, 12.3 s CPU",
                "kube-apiserver activating, 3 restarts",
                "kubepods.slice active since 9 s, 0.5 s CPU",
            ]
        );
        assert_eq!(
            guest_cpu(output).as_deref(),
            Some("guest CPU 462.6 s busy, 35.1 s idle")
        );
    }
}
