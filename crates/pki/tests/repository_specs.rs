//! Every cluster spec in the repository keeps its certificates valid for at least a year from
//! the day the tests run, so that a fresh checkout always builds: `cargo xtask build-cluster`
//! refuses a spec whose certificates have expired (`check_not_expired`), and the specs pin
//! `pki.issued_at` for reproducible output, so they age with the calendar.

mod common;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use expect_test::expect;
use kiln_spec::Plan;

const DAY: i64 = 86_400;

/// How long every certificate must outlive today: a year gives time to notice and to raise the
/// validity before a release, or CI, stops building.
const MARGIN_DAYS: i64 = 365;

/// The repository's root directory.
fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every cluster spec under `dir`, as paths relative to `dir`, sorted. A cluster spec is a
/// TOML file with a `[cluster]` table, wherever it lives: examples, VM test specs, fixtures.
/// Hidden directories, `target` (build output, VM test runs) and symbolic links (`result`
/// points into the Nix store) are not the repository's.
fn cluster_specs(dir: &Path) -> Vec<PathBuf> {
    let mut specs = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = std::fs::read_dir(dir.join(&relative))
            .unwrap_or_else(|error| panic!("reading {}: {error}", relative.display()));
        for entry in entries {
            let entry = entry.expect("a directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().expect("a file type");
            let path = relative.join(&name);
            if kind.is_dir() && !name.starts_with('.') && name != "target" {
                pending.push(path);
            } else if kind.is_file() && name.ends_with(".toml") {
                let source = std::fs::read_to_string(dir.join(&path)).expect("readable TOML");
                // A file that is not TOML at all is not a spec; one with `[cluster]` is, and
                // must then load.
                if source
                    .parse::<toml::Table>()
                    .is_ok_and(|table| table.contains_key("cluster"))
                {
                    specs.push(path);
                }
            }
        }
    }
    specs.sort();
    specs
}

/// One certificate's expiry.
struct Expiry {
    certificate: String,
    not_after: i64,
    /// How many other certificates expire at the same instant.
    alongside: usize,
}

/// The certificate of `plan` that expires first: among kiln's own certificate profiles (what
/// `check_not_expired` holds the build to), and the certificates of external CAs, read from
/// beside the spec in `spec_dir` as the build reads them.
fn earliest_expiry(plan: &Plan, spec_dir: &Path) -> Expiry {
    let mut expiries: Vec<(String, i64)> = kiln_pki::profiles(plan)
        .into_iter()
        .map(|profile| (profile.name, profile.not_after))
        .collect();
    for files in plan.pki.external_cas.values() {
        let path = spec_dir.join(&files.cert);
        let pem = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        let summary = kiln_pki::summarize(&files.cert, &pem, 0).expect("a certificate");
        expiries.push((files.cert.clone(), summary.not_after));
    }
    let (certificate, not_after) = expiries
        .iter()
        .min_by_key(|(_, not_after)| *not_after)
        .cloned()
        .expect("every plan has certificates");
    let alongside = expiries
        .iter()
        .filter(|(_, other)| *other == not_after)
        .count()
        - 1;
    Expiry {
        certificate,
        not_after,
        alongside,
    }
}

/// Why the spec `file` (with plan `plan`) is too close to expiry at `now`, or `None`.
fn too_soon(file: &str, plan: &Plan, spec_dir: &Path, now: i64) -> Option<String> {
    let expiry = earliest_expiry(plan, spec_dir);
    if expiry.not_after >= now + MARGIN_DAYS * DAY {
        return None;
    }
    let alongside = match expiry.alongside {
        0 => String::new(),
        count => format!(" (and {count} more)"),
    };
    Some(format!(
        "{file}: certificate `{}`{alongside} expires at {}, within {MARGIN_DAYS} days of {}; \
         raise pki.leaf_validity_days (and pki.ca_validity_days) or move pki.issued_at forward",
        expiry.certificate,
        kiln_spec::time::format_rfc3339(expiry.not_after),
        kiln_spec::time::format_rfc3339(now),
    ))
}

#[test]
fn every_spec_in_the_repository_stays_valid_for_a_year() {
    // The one place a test reads the clock: the specs age with the calendar, not with a change.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let now = i64::try_from(now).expect("seconds fit an i64");
    let root = repository();
    let specs = cluster_specs(&root);
    let problems: Vec<String> = specs
        .iter()
        .filter_map(|relative| {
            let path = root.join(relative);
            let plan = common::load(&path);
            let spec_dir = path.parent().expect("a spec has a directory");
            too_soon(&relative.display().to_string(), &plan, spec_dir, now)
        })
        .collect();
    assert!(
        problems.is_empty(),
        "{} of {} specs expire within a year:\n{}",
        problems.len(),
        specs.len(),
        problems.join("\n")
    );
}

#[test]
fn the_walk_finds_every_example_and_vm_test_spec() {
    let root = repository();
    let specs = cluster_specs(&root);
    // Every TOML file in these two directories is a spec; the walk must not miss one.
    for dir in ["examples", "vm-tests/specs"] {
        let entries = std::fs::read_dir(root.join(dir)).expect("the directory exists");
        let mut count = 0;
        for entry in entries {
            let name = entry.expect("a directory entry").file_name();
            if Path::new(&name)
                .extension()
                .is_some_and(|ext| ext == "toml")
            {
                count += 1;
                let relative = Path::new(dir).join(&name);
                assert!(
                    specs.contains(&relative),
                    "{} was missed",
                    relative.display()
                );
            }
        }
        assert!(count >= 2, "expected specs in {dir}, found {count}");
    }
    // And nothing that is not a cluster spec, such as the workspace's manifests.
    assert!(!specs.contains(&PathBuf::from("Cargo.toml")), "{specs:?}");
}

#[test]
fn a_spec_within_a_year_of_expiry_is_named_with_its_certificate() {
    let examples = common::examples_dir();
    let plan = common::example("two-node");
    // Fixed instants, so that this test does not age: 2026-12-02, a month before the default
    // 365-day leaves from 2026-01-01 expired; and a year before 1826-day leaves end, then a
    // second later.
    let december = 1_796_169_600;
    let leaf_end = plan.pki.issued_at + 1826 * DAY;
    let cases = [
        (3650, 365, december),
        (3650, 1826, december),
        (3650, 1826, leaf_end - MARGIN_DAYS * DAY),
        (3650, 1826, leaf_end - MARGIN_DAYS * DAY + 1),
        // When the CAs end with the leaves, the CA is named first.
        (400, 400, december),
    ];
    let mut text = String::new();
    for (ca_days, leaf_days, now) in cases {
        let mut plan = plan.clone();
        plan.pki.ca_validity_days = ca_days;
        plan.pki.leaf_validity_days = leaf_days;
        let problem = too_soon("examples/two-node.toml", &plan, &examples, now);
        text.push_str(&format!(
            "ca {ca_days}, leaf {leaf_days}, at {}: {}\n",
            kiln_spec::time::format_rfc3339(now),
            problem.as_deref().unwrap_or("ok")
        ));
    }
    expect![[r#"
        ca 3650, leaf 365, at 2026-12-02T00:00:00Z: examples/two-node.toml: certificate `admin` (and 15 more) expires at 2027-01-01T00:00:00Z, within 365 days of 2026-12-02T00:00:00Z; raise pki.leaf_validity_days (and pki.ca_validity_days) or move pki.issued_at forward
        ca 3650, leaf 1826, at 2026-12-02T00:00:00Z: ok
        ca 3650, leaf 1826, at 2030-01-01T00:00:00Z: ok
        ca 3650, leaf 1826, at 2030-01-01T00:00:01Z: examples/two-node.toml: certificate `admin` (and 15 more) expires at 2031-01-01T00:00:00Z, within 365 days of 2030-01-01T00:00:01Z; raise pki.leaf_validity_days (and pki.ca_validity_days) or move pki.issued_at forward
        ca 400, leaf 400, at 2026-12-02T00:00:00Z: examples/two-node.toml: certificate `ca` (and 18 more) expires at 2027-02-05T00:00:00Z, within 365 days of 2026-12-02T00:00:00Z; raise pki.leaf_validity_days (and pki.ca_validity_days) or move pki.issued_at forward
    "#]].assert_eq(&text);
}
