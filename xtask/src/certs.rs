//! `cargo xtask certs`: every certificate the build issues for a cluster, with its subject,
//! issuer, SANs, validity and days left; fails when one expires within the warning horizon.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use kiln_pki::{CertificateSummary, FileSource, Pki};

use crate::common;

/// Arguments of `cargo xtask certs`.
#[derive(clap::Args)]
pub struct CertsArgs {
    /// The cluster spec (default: examples/two-node.toml).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Where the cluster's root secrets live, one directory per cluster (default:
    /// `~/.local/share/kiln/secrets`).
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Count days left from this instant, in seconds since the Unix epoch (default: now).
    #[arg(long, value_name = "UNIX_SECONDS")]
    at: Option<i64>,
}

/// Prints the certificate table; the exit code is non-zero when any certificate expires
/// within `pki.expiry_warning_days`.
pub fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let spec = args.spec.clone().unwrap_or_else(common::default_spec);
    let plan = common::load_plan(&spec)?;
    let secrets = common::secrets_dir(args.secrets.clone(), &spec, &plan.cluster.name)?;
    let root = crate::secret::load_or_create_root_secret(&secrets)?;
    let spec_dir = spec.parent().unwrap_or_else(|| Path::new("."));
    let external = kiln_cluster::read_external_cas(&plan, spec_dir)?;
    // The same derivation as the build's: the same plan and root secret give the same bytes.
    let pki = kiln_pki::issue(&plan, &root, &external)?;
    // A report may read the clock; nothing it prints goes into an output.
    let now = match args.at {
        Some(at) => at,
        None => i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs(),
        )?,
    };
    let summaries = summaries(&pki, now)?;
    print!("{}", table(&summaries));

    let horizon = plan.pki.expiry_warning_days;
    let expiring: Vec<&CertificateSummary> = summaries
        .iter()
        .filter(|summary| summary.expires_within(horizon))
        .collect();
    if expiring.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for summary in &expiring {
        if summary.days_left < 0 {
            eprintln!(
                "warning: {} expired at {}",
                summary.file,
                summary.not_after_rfc3339()
            );
        } else {
            eprintln!(
                "warning: {} expires in {} days, at {} (pki.expiry_warning_days = {horizon})",
                summary.file,
                summary.days_left,
                summary.not_after_rfc3339()
            );
        }
    }
    eprintln!(
        "help: move `pki.issued_at` forward in {} and rebuild to reissue with a new validity",
        spec.display()
    );
    Ok(ExitCode::FAILURE)
}

/// A summary of every certificate of `pki` (CAs and leaves), by operator path.
fn summaries(pki: &Pki, now: i64) -> anyhow::Result<Vec<CertificateSummary>> {
    pki.files()
        .iter()
        .filter(|file| matches!(file.source, FileSource::Certificate(_)))
        .map(|file| {
            let pem = pki
                .contents(&file.source)
                .with_context(|| format!("no contents for {}", file.path))?;
            Ok(kiln_pki::summarize(&file.path, pem.as_bytes(), now)?)
        })
        .collect()
}

/// The summaries as an aligned text table.
fn table(summaries: &[CertificateSummary]) -> String {
    let header = [
        "FILE",
        "SUBJECT",
        "ISSUER",
        "SANS",
        "NOT BEFORE",
        "NOT AFTER",
        "DAYS LEFT",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 7]> = std::iter::once(header)
        .chain(summaries.iter().map(|summary| {
            [
                summary.file.clone(),
                summary.subject.clone(),
                summary.issuer.clone(),
                if summary.sans.is_empty() {
                    "-".to_owned()
                } else {
                    summary.sans.join(",")
                },
                summary.not_before_rfc3339(),
                summary.not_after_rfc3339(),
                summary.days_left.to_string(),
            ]
        }))
        .collect();
    let mut widths = [0usize; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(column, (cell, width))| {
                if column + 1 == row.len() {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn two_node() -> (kiln_spec::Plan, Pki) {
        let plan = common::load_plan(&common::default_spec()).expect("the example loads");
        let root = kiln_pki::RootSecret::from_bytes([3; 32]);
        let pki = kiln_pki::issue(&plan, &root, &BTreeMap::new()).expect("issues");
        (plan, pki)
    }

    #[test]
    fn the_table_lists_every_certificate_with_days_left() {
        let (plan, pki) = two_node();
        let summaries = summaries(&pki, plan.pki.issued_at).expect("summaries");
        let text = table(&summaries);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("FILE"), "{text}");
        // Three CAs and every leaf, and no key.
        assert_eq!(lines.len(), 1 + 3 + pki.leaves.len(), "{text}");
        assert!(!text.contains(".key"), "{text}");
        let kubelet = lines
            .iter()
            .find(|line| line.starts_with("pki/nodes/node2/kubelet.crt"))
            .expect("node2's serving certificate");
        assert!(
            kubelet.contains("O=system:nodes, CN=system:node:node2"),
            "{kubelet}"
        );
        assert!(kubelet.contains("DNS:node2,IP:192.168.50.12"), "{kubelet}");
        assert!(kubelet.ends_with(" 1826"), "{kubelet}");
        let ca = lines
            .iter()
            .find(|line| line.starts_with("pki/ca.crt"))
            .expect("the CA");
        assert!(ca.ends_with(" 3650"), "{ca}");
    }

    #[test]
    fn the_horizon_catches_what_expires_soon() {
        let (plan, pki) = two_node();
        let leaf_end = plan.pki.issued_at + i64::from(plan.pki.leaf_validity_days) * 86_400;
        let horizon = plan.pki.expiry_warning_days;
        let at = |now: i64| {
            summaries(&pki, now)
                .expect("summaries")
                .iter()
                .filter(|summary| summary.expires_within(horizon))
                .count()
        };
        assert_eq!(at(plan.pki.issued_at), 0);
        assert_eq!(at(leaf_end - i64::from(horizon) * 86_400), 0);
        assert_eq!(
            at(leaf_end - i64::from(horizon) * 86_400 + 1),
            pki.leaves.len()
        );
    }
}
