//! Typed systemd service units and their INI form.
//!
//! A [`Unit`] is built from typed directives; [`Unit::to_ini`] lays them out section by
//! section in a fixed order, escaping each `ExecStart=` word for systemd's command-line
//! syntax, so no directive is ever spliced into text by hand. The INI model and its writer are
//! kiln-spec's ([`kiln_spec::ini`]), shared with the network renderer.

use kiln_spec::ini::{IniFile, IniSection, IniValue};

/// A systemd service unit: `[Unit]`, `[Service]` and `[Install]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    /// The unit's file name, for example `kubelet.service`.
    pub name: String,
    /// `[Unit]`.
    pub unit: UnitSection,
    /// `[Service]`.
    pub service: ServiceSection,
    /// `[Install]`.
    pub install: InstallSection,
}

/// `[Unit]`: description and ordering.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnitSection {
    /// `Description=`.
    pub description: String,
    /// `Documentation=` URLs.
    pub documentation: Vec<String>,
    /// `After=`: units this one starts after.
    pub after: Vec<String>,
    /// `Before=`: units this one starts before.
    pub before: Vec<String>,
    /// `Wants=`: units started along with this one; their failure does not matter.
    pub wants: Vec<String>,
    /// `Requires=`: units that must be active for this one to run.
    pub requires: Vec<String>,
}

/// `Type=` of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceType {
    /// `simple`: started once the process is forked.
    Simple,
    /// `notify`: started once the process sends `READY=1` (containerd, etcd).
    Notify,
    /// `oneshot`: started once the process has exited successfully (kiln's pod NAT rule).
    Oneshot,
}

/// `Restart=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Restart {
    /// `on-failure`: after a non-zero exit, a signal, a timeout or a watchdog.
    OnFailure,
    /// `always`.
    Always,
    /// `no`: never restarted (a oneshot; `RestartSec=` is then left out).
    No,
}

/// `KillMode=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KillMode {
    /// `process`: stop only the main process (containerd, so containers survive restarts).
    Process,
    /// `control-group`: stop every process of the unit (systemd's default).
    ControlGroup,
}

/// A resource limit value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Limit {
    /// `infinity`.
    Infinity,
    /// A number.
    Value(u64),
}

/// `ProtectSystem=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtectSystem {
    /// Not set: the file system is as the host's.
    #[default]
    Off,
    /// `full`: `/usr`, `/boot`, `/efi` and `/etc` read-only.
    Full,
    /// `strict`: everything read-only except `/dev`, `/proc`, `/sys` and the unit's own
    /// state, logs and runtime directories.
    Strict,
}

/// Sandboxing directives. Every field defaults to off; each component turns on what it
/// tolerates (see [`crate::unit`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Hardening {
    /// `NoNewPrivileges=yes`.
    pub no_new_privileges: bool,
    /// `ProtectSystem=`.
    pub protect_system: ProtectSystem,
    /// `ProtectHome=yes`.
    pub protect_home: bool,
    /// `PrivateTmp=yes`.
    pub private_tmp: bool,
    /// `PrivateDevices=yes`.
    pub private_devices: bool,
    /// `PrivateMounts=yes`: the service's mounts stay its own.
    pub private_mounts: bool,
    /// `ProtectKernelTunables=yes`: `/proc/sys` and `/sys` read-only.
    pub protect_kernel_tunables: bool,
    /// `ProtectKernelModules=yes`: no module loading.
    pub protect_kernel_modules: bool,
    /// `ProtectControlGroups=yes`: `/sys/fs/cgroup` read-only.
    pub protect_control_groups: bool,
    /// `ProtectKernelLogs=yes`: no kernel log ring buffer.
    pub protect_kernel_logs: bool,
    /// `ProtectClock=yes`: the clock cannot be set.
    pub protect_clock: bool,
    /// `ProtectHostname=yes`: the host name cannot be changed.
    pub protect_hostname: bool,
    /// `RestrictNamespaces=yes`: no new namespaces.
    pub restrict_namespaces: bool,
    /// `RestrictRealtime=yes`: no realtime scheduling.
    pub restrict_realtime: bool,
    /// `RestrictSUIDSGID=yes`: no setuid or setgid files.
    pub restrict_suid_sgid: bool,
    /// `LockPersonality=yes`: the execution domain cannot change.
    pub lock_personality: bool,
    /// `SystemCallArchitectures=native`: only the native system call ABI.
    pub native_system_calls_only: bool,
    /// `CapabilityBoundingSet=`: the only capabilities the service may hold. `None` leaves the
    /// set as it is; `Some(&[])` drops every capability (for services that bind ports above
    /// 1023 and read files they own).
    pub capabilities: Option<&'static [&'static str]>,
    /// `RestrictAddressFamilies=`: the only socket families allowed (empty: no restriction).
    pub address_families: &'static [&'static str],
}

/// A command line of `ExecStart=` or `ExecStartPre=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecCommand {
    /// Absolute path of the program.
    pub program: String,
    /// Arguments, one word each (quoted and escaped when written).
    pub arguments: Vec<String>,
    /// Whether a failure is ignored (systemd's `-` prefix).
    pub ignore_failure: bool,
}

/// `[Service]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSection {
    /// `Type=`.
    pub service_type: ServiceType,
    /// `ExecStartPre=` commands, in order.
    pub exec_start_pre: Vec<ExecCommand>,
    /// `ExecStart=`.
    pub exec_start: ExecCommand,
    /// `ExecStop=` commands, in order.
    pub exec_stop: Vec<ExecCommand>,
    /// `RemainAfterExit=yes`: a oneshot stays active once its command has run, so that stopping
    /// it runs `ExecStop=`.
    pub remain_after_exit: bool,
    /// `Restart=`.
    pub restart: Restart,
    /// `RestartSec=`, in seconds.
    pub restart_sec: u32,
    /// `Delegate=yes`: the service manages its own cgroup subtree (containerd).
    pub delegate: bool,
    /// `KillMode=`, when not systemd's default.
    pub kill_mode: Option<KillMode>,
    /// `LimitNOFILE=`.
    pub limit_nofile: Option<Limit>,
    /// `LimitNPROC=`.
    pub limit_nproc: Option<Limit>,
    /// `LimitCORE=`.
    pub limit_core: Option<Limit>,
    /// `TasksMax=`.
    pub tasks_max: Option<Limit>,
    /// `OOMScoreAdjust=`.
    pub oom_score_adjust: Option<i32>,
    /// `StateDirectory=`: a directory under `/var/lib` systemd creates and keeps writable.
    pub state_directory: Option<String>,
    /// `StateDirectoryMode=`.
    pub state_directory_mode: Option<u32>,
    /// `LogsDirectory=`: a directory under `/var/log` systemd creates and keeps writable.
    pub logs_directory: Option<String>,
    /// Sandboxing.
    pub hardening: Hardening,
}

/// `[Install]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstallSection {
    /// `WantedBy=`.
    pub wanted_by: Vec<String>,
}

impl Unit {
    /// The unit's sections, each with its directives in a fixed order; unset directives are
    /// left out.
    pub fn sections(&self) -> Vec<IniSection> {
        vec![
            self.unit.section(),
            self.service.section(),
            self.install.section(),
        ]
    }

    /// The unit file's text.
    pub fn to_ini(&self) -> String {
        IniFile::new(self.sections()).to_text()
    }
}

impl UnitSection {
    fn section(&self) -> IniSection {
        let mut entries = vec![("Description", self.description.clone())];
        entries.extend(
            self.documentation
                .iter()
                .map(|url| ("Documentation", url.clone())),
        );
        if !self.after.is_empty() {
            entries.push(("After", self.after.join(" ")));
        }
        if !self.before.is_empty() {
            entries.push(("Before", self.before.join(" ")));
        }
        if !self.wants.is_empty() {
            entries.push(("Wants", self.wants.join(" ")));
        }
        if !self.requires.is_empty() {
            entries.push(("Requires", self.requires.join(" ")));
        }
        text_section("Unit", entries)
    }
}

impl ServiceSection {
    fn section(&self) -> IniSection {
        let mut entries = vec![(
            "Type",
            match self.service_type {
                ServiceType::Simple => "simple",
                ServiceType::Notify => "notify",
                ServiceType::Oneshot => "oneshot",
            }
            .to_owned(),
        )];
        entries.extend(
            self.exec_start_pre
                .iter()
                .map(|command| ("ExecStartPre", command.to_exec())),
        );
        entries.push(("ExecStart", self.exec_start.to_exec()));
        entries.extend(
            self.exec_stop
                .iter()
                .map(|command| ("ExecStop", command.to_exec())),
        );
        if self.remain_after_exit {
            entries.push(("RemainAfterExit", "yes".to_owned()));
        }
        match self.restart {
            Restart::OnFailure => entries.push(("Restart", "on-failure".to_owned())),
            Restart::Always => entries.push(("Restart", "always".to_owned())),
            Restart::No => entries.push(("Restart", "no".to_owned())),
        }
        if self.restart != Restart::No {
            entries.push(("RestartSec", self.restart_sec.to_string()));
        }
        if self.delegate {
            entries.push(("Delegate", "yes".to_owned()));
        }
        if let Some(mode) = self.kill_mode {
            let mode = match mode {
                KillMode::Process => "process",
                KillMode::ControlGroup => "control-group",
            };
            entries.push(("KillMode", mode.to_owned()));
        }
        let limits = [
            ("LimitNOFILE", self.limit_nofile),
            ("LimitNPROC", self.limit_nproc),
            ("LimitCORE", self.limit_core),
            ("TasksMax", self.tasks_max),
        ];
        for (key, limit) in limits {
            match limit {
                Some(Limit::Infinity) => entries.push((key, "infinity".to_owned())),
                Some(Limit::Value(value)) => entries.push((key, value.to_string())),
                None => {}
            }
        }
        if let Some(adjust) = self.oom_score_adjust {
            entries.push(("OOMScoreAdjust", adjust.to_string()));
        }
        if let Some(directory) = &self.state_directory {
            entries.push(("StateDirectory", directory.clone()));
        }
        if let Some(mode) = self.state_directory_mode {
            entries.push(("StateDirectoryMode", format!("{mode:04o}")));
        }
        if let Some(directory) = &self.logs_directory {
            entries.push(("LogsDirectory", directory.clone()));
        }
        let hardening = &self.hardening;
        let switches = [
            ("NoNewPrivileges", hardening.no_new_privileges),
            ("ProtectHome", hardening.protect_home),
            ("PrivateTmp", hardening.private_tmp),
            ("PrivateDevices", hardening.private_devices),
            ("PrivateMounts", hardening.private_mounts),
            ("ProtectKernelTunables", hardening.protect_kernel_tunables),
            ("ProtectKernelModules", hardening.protect_kernel_modules),
            ("ProtectControlGroups", hardening.protect_control_groups),
            ("ProtectKernelLogs", hardening.protect_kernel_logs),
            ("ProtectClock", hardening.protect_clock),
            ("ProtectHostname", hardening.protect_hostname),
            ("RestrictNamespaces", hardening.restrict_namespaces),
            ("RestrictRealtime", hardening.restrict_realtime),
            ("RestrictSUIDSGID", hardening.restrict_suid_sgid),
            ("LockPersonality", hardening.lock_personality),
        ];
        match hardening.protect_system {
            ProtectSystem::Off => {}
            ProtectSystem::Full => entries.push(("ProtectSystem", "full".to_owned())),
            ProtectSystem::Strict => entries.push(("ProtectSystem", "strict".to_owned())),
        }
        entries.extend(
            switches
                .into_iter()
                .filter(|(_, on)| *on)
                .map(|(key, _)| (key, "yes".to_owned())),
        );
        if hardening.native_system_calls_only {
            entries.push(("SystemCallArchitectures", "native".to_owned()));
        }
        if let Some(capabilities) = hardening.capabilities {
            entries.push(("CapabilityBoundingSet", capabilities.join(" ")));
        }
        if !hardening.address_families.is_empty() {
            entries.push((
                "RestrictAddressFamilies",
                hardening.address_families.join(" "),
            ));
        }
        text_section("Service", entries)
    }
}

impl InstallSection {
    fn section(&self) -> IniSection {
        let mut entries = Vec::new();
        if !self.wanted_by.is_empty() {
            entries.push(("WantedBy", self.wanted_by.join(" ")));
        }
        text_section("Install", entries)
    }
}

impl ExecCommand {
    /// A command that must succeed.
    pub fn new(program: impl Into<String>, arguments: Vec<String>) -> Self {
        Self {
            program: program.into(),
            arguments,
            ignore_failure: false,
        }
    }

    /// The value of an `Exec*=` line: the program and each argument escaped for systemd, one
    /// argument per continuation line as Kubernetes The Hard Way writes them.
    pub fn to_exec(&self) -> String {
        let mut text = String::new();
        if self.ignore_failure {
            text.push('-');
        }
        text.push_str(&escape_word(&self.program));
        for argument in &self.arguments {
            text.push_str(" \\\n  ");
            text.push_str(&escape_word(argument));
        }
        text
    }
}

/// One word of a systemd command line: `%` specifiers and `$` variables are escaped, and a
/// word with blanks, quotes, backslashes or a leading `;` is double-quoted.
fn escape_word(word: &str) -> String {
    let mut escaped = String::with_capacity(word.len());
    let mut quote = word.is_empty() || word.starts_with(';');
    for character in word.chars() {
        match character {
            '%' => escaped.push_str("%%"),
            '$' => escaped.push_str("$$"),
            '\\' => {
                quote = true;
                escaped.push_str("\\\\");
            }
            '"' => {
                quote = true;
                escaped.push_str("\\\"");
            }
            ' ' | '\t' | '\'' => {
                quote = true;
                escaped.push(character);
            }
            other => escaped.push(other),
        }
    }
    if quote {
        format!("\"{escaped}\"")
    } else {
        escaped
    }
}

/// A section of text values, as the unit's sections are built.
fn text_section(name: &'static str, entries: Vec<(&'static str, String)>) -> IniSection {
    IniSection {
        name,
        entries: entries
            .into_iter()
            .map(|(key, value)| (key, IniValue::Text(value)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_escaped_for_systemd() {
        assert_eq!(escape_word("--v=2"), "--v=2");
        assert_eq!(escape_word("100%"), "100%%");
        assert_eq!(escape_word("$HOME"), "$$HOME");
        assert_eq!(escape_word("a b"), "\"a b\"");
        assert_eq!(escape_word("say \"hi\""), "\"say \\\"hi\\\"\"");
        assert_eq!(escape_word(""), "\"\"");
        assert_eq!(escape_word(";"), "\";\"");
    }
}
