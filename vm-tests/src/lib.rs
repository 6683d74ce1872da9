//! kiln's VM integration tests: boot each node image of a built cluster in QEMU, join the
//! guests on one private layer-2 segment, and drive the cluster from the host through
//! `restrict=on` user-mode port forwards with the cluster's own kubectl and kiln's admin kubeconfig.
//!
//! The pieces, from the bottom up:
//! - [`Vm`] starts one QEMU guest from a [`VmConfig`] (TCG, or KVM when [`detect_accel`] proves
//!   it works), captures its serial console in a log file, exposes a root shell on its second
//!   serial port through [`GuestShell`], and kills QEMU when dropped.
//! - [`Segment`] is the private layer-2 segment: a multicast group on the loopback interface,
//!   chosen per run so concurrent runs never share a segment.
//! - [`Cluster`] boots every node image of a `result/` directory ([`NodeImage`], read from the
//!   `manifest.json` contract kiln-image writes) and writes a kubeconfig that reaches the forwarded apiserver.
//! - [`scenario`] holds the scenarios ([`scenario::Scenario`]: `two-node`, `ha`), each step a
//!   function over a [`Cluster`], timed by [`Steps`].
//! - [`Tools`] is the read-only disk of test tools (kube-bench) every guest gets.
//! - [`tiny_guest`] builds a busybox initramfs for the host's Debian kernel, so the QEMU
//!   plumbing is tested without a kiln image.

#![forbid(unsafe_code)]

mod cluster;
mod error;
mod image;
mod interrupt;
mod kubectl;
mod network;
mod qemu;
pub mod scenario;
mod shell;
pub mod tiny_guest;
mod tools;
mod wait;

pub use cluster::{Cluster, ClusterOptions, DEBUG_SHELL, Node, ServiceState, service_states};
pub use error::Error;
pub use image::NodeImage;
pub use interrupt::{install_interrupt_handler, interrupted};
pub use kubectl::{Kubectl, forward_kubeconfig};
pub use network::{FORWARD_PORTS, Segment, free_tcp_port, listening_on};
pub use qemu::{
    Accel, PortForward, StateDiskFile, TOOLS_DISK_SERIAL, Vm, VmConfig, detect_accel, qemu_args,
    qemu_binary,
};
pub use shell::{GuestOutput, GuestShell};
pub use tools::{KUBE_BENCH_CONFIG, TOOLS_MOUNT, Tools, kube_bench_benchmark, mount_script};
pub use wait::{Steps, tail_lines, wait_for};

/// The result of every fallible operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
