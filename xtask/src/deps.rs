//! Installs the system tools that builds and tests need, through the machine's own apt.

use std::process::Command;

use anyhow::{Context, bail};

/// A command kiln needs and the Debian package that provides it.
pub struct Tool {
    /// The command looked up on PATH.
    pub command: &'static str,
    /// The Debian package that installs it.
    pub package: &'static str,
}

/// What the test suite runs: independent verifiers of kiln's outputs.
pub const TEST_TOOLS: &[Tool] = &[Tool {
    command: "openssl",
    package: "openssl",
}];

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
        .unwrap_or(false)
}

/// Installs the packages of every missing tool with apt-get (as root, or through sudo).
pub fn ensure(tools: &[Tool]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|tool| !on_path(tool.command))
        .map(|tool| tool.package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {} with apt-get", missing.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout == b"0\n")
        .unwrap_or(false);
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            Command::new("sudo")
        };
        if !root {
            command.arg("apt-get");
        }
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get (kiln installs its tools with the machine's apt)")?;
        if !status.success() {
            bail!(
                "apt-get {} failed; install {} by hand",
                args.join(" "),
                missing.join(" ")
            );
        }
        Ok(())
    };
    run(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(missing.iter().copied());
    run(&install)
}
