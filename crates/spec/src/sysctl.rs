//! `sysctl.d` files: the kernel settings systemd-sysctl applies at boot, as `name = value`
//! lines. The one writer of every such file kiln puts on a node (the kubelet's tunables, the
//! pod network's bridge setting).
//!
//! ```
//! let text = kiln_spec::sysctl::sysctl_d(&["set at boot"], &[("kernel.panic", 10)]);
//! assert_eq!(text, "# set at boot\nkernel.panic = 10\n");
//! ```

/// A kernel setting: its `sysctl` name (dots, as `sysctl -w` takes it) and its value.
pub type Sysctl = (&'static str, u32);

/// A `sysctl.d` file: each of `comments` as a `# ` line, then one `name = value` line per
/// setting, in the order given.
pub fn sysctl_d(comments: &[&str], settings: &[Sysctl]) -> String {
    let mut text = String::new();
    for comment in comments {
        text.push_str("# ");
        text.push_str(comment);
        text.push('\n');
    }
    for (name, value) in settings {
        text.push_str(name);
        text.push_str(" = ");
        text.push_str(&value.to_string());
        text.push('\n');
    }
    text
}
