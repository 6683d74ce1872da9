//! The CIS Kubernetes Benchmark, judged by upstream's kube-bench inside each guest: the
//! checks a cluster's operators would run, not kiln's own reading of its outputs.

use std::fs;

use serde::Deserialize;

use super::refusals::server_minor;
use super::*;
use crate::{KUBE_BENCH_CONFIG, TOOLS_MOUNT, kube_bench_benchmark, mount_script};

/// kiln's deliberate differences from the CIS benchmark, each with its reason (SECURITY.md
/// explains them to users): a check that FAILs on a kiln cluster fails the step unless it is
/// listed here for that benchmark.
pub const DEVIATIONS: &str = include_str!("cis-deviations.toml");

/// Where the file of [`DEVIATIONS`] is, for messages.
const DEVIATIONS_FILE: &str = "vm-tests/src/scenario/cis-deviations.toml";

/// Where kube-bench's JSON report and its log go in a guest.
const REPORT: &str = "/run/kiln-kube-bench.json";
const LOG: &str = "/run/kiln-kube-bench.log";

/// One documented deviation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// The benchmark (kube-bench's name, such as `cis-1.11`).
    pub benchmark: String,
    /// The check's number, such as `1.2.1`.
    pub check: String,
    /// When set, the deviation holds only on nodes without this role (a check that is not
    /// applicable where the component it judges runs elsewhere).
    #[serde(default)]
    pub without_role: Option<String>,
    /// Why kiln differs.
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviationFile {
    #[serde(default)]
    deviation: Vec<Deviation>,
}

/// The deviations of [`DEVIATIONS`].
///
/// # Errors
///
/// [`Error::Check`] if the file does not parse, lists a check twice or gives no reason.
pub fn deviations() -> crate::Result<Vec<Deviation>> {
    let refuse =
        |reason: String| Error::check("CIS deviations", format!("{DEVIATIONS_FILE}: {reason}"));
    let file: DeviationFile =
        toml::from_str(DEVIATIONS).map_err(|error| refuse(error.to_string()))?;
    let mut seen = BTreeSet::new();
    for deviation in &file.deviation {
        if !seen.insert((deviation.benchmark.as_str(), deviation.check.as_str())) {
            return Err(refuse(format!(
                "{} {} is listed twice",
                deviation.benchmark, deviation.check
            )));
        }
        if deviation.reason.trim().is_empty() {
            return Err(refuse(format!(
                "{} {} gives no reason",
                deviation.benchmark, deviation.check
            )));
        }
    }
    Ok(file.deviation)
}

/// kube-bench's JSON report (the fields the step reads).
#[derive(Deserialize)]
struct Report {
    #[serde(rename = "Controls")]
    controls: Vec<Controls>,
}

#[derive(Deserialize)]
struct Controls {
    text: String,
    node_type: String,
    tests: Option<Vec<Group>>,
}

#[derive(Deserialize)]
struct Group {
    section: String,
    desc: String,
    results: Option<Vec<Check>>,
}

#[derive(Deserialize)]
struct Check {
    test_number: String,
    test_desc: String,
    status: String,
    #[serde(default)]
    actual_value: String,
}

/// The CIS step: kube-bench, from the test tools disk, on every node with a Kubernetes role,
/// with the benchmark kube-bench maps to the cluster's release, against the targets of the
/// node's roles (`master`, `controlplane` and `policies` on a control-plane node, `etcd` on
/// an etcd member, `node` where a kubelet runs). Prints the PASS/FAIL/WARN/INFO tally of every
/// section, and fails on any FAIL that [`DEVIATIONS`] does not list.
pub fn cis_benchmark(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "CIS benchmark";
    let tools = cluster.tools.clone().ok_or_else(|| {
        Error::check(STEP, "the guests have no test tools disk, so no kube-bench")
    })?;
    let config_path = tools.kube_bench.join(KUBE_BENCH_CONFIG).join("config.yaml");
    let config = fs::read_to_string(&config_path)
        .map_err(|error| Error::io(format!("reading {}", config_path.display()), error))?;
    let (benchmark, note) = kube_bench_benchmark(&config, server_minor(cluster)?)?;
    if let Some(note) = note {
        eprintln!("    {note}");
    }
    let deviations = deviations()?;
    let excuse = |check: &str, image: &crate::NodeImage| {
        deviations.iter().find(|deviation| {
            deviation.benchmark == benchmark
                && deviation.check == check
                && deviation
                    .without_role
                    .as_deref()
                    .is_none_or(|role| !image.has_role(role))
        })
    };
    let mut unexpected = Vec::new();
    let mut excused = BTreeSet::new();
    let names: Vec<String> = cluster.nodes.keys().cloned().collect();
    for node in names {
        let image = cluster.node(&node)?.image.clone();
        let mut targets: Vec<&str> = Vec::new();
        if image.has_role("control-plane") {
            targets.extend(["master", "controlplane", "policies"]);
        }
        if image.has_role("etcd") {
            targets.push("etcd");
        }
        let kb = format!("{TOOLS_MOUNT}/kube-bench");
        let script = format!(
            "{mount}\n\
             targets={targets}\n\
             if systemctl is-active -q kubelet; then targets=${{targets:+$targets,}}node; fi\n\
             if [ -z \"$targets\" ]; then echo 'targets none'; exit 0; fi\n\
             echo \"targets $targets\"\n\
             {kb}/bin/kube-bench run --config-dir {kb}/{KUBE_BENCH_CONFIG} \
             --config {kb}/{KUBE_BENCH_CONFIG}/config.yaml --benchmark {benchmark} \
             --targets \"$targets\" --json --outputfile {REPORT} > {LOG} 2>&1 \
             || {{ cat {LOG}; exit 1; }}\n\
             cat {REPORT}",
            mount = mount_script(),
            targets = targets.join(","),
        );
        let output = cluster
            .shell(&node)?
            .check(STEP, &script, Duration::from_secs(900))?;
        let (first, json) = output.split_once('\n').unwrap_or((output.as_str(), ""));
        let targets = first.trim().strip_prefix("targets ").unwrap_or("?");
        if targets == "none" {
            eprintln!("    {node}: no Kubernetes component, nothing to judge");
            continue;
        }
        let report: Report = serde_json::from_str(json.trim()).map_err(|error| {
            Error::check(
                STEP,
                format!(
                    "{node}: kube-bench's report is not its JSON ({error}): {}",
                    first_line(json)
                ),
            )
        })?;
        eprintln!("    {node} ({benchmark}; targets {targets}):");
        let checks: usize = report
            .controls
            .iter()
            .flat_map(|controls| controls.tests.iter().flatten())
            .map(|group| group.results.as_ref().map_or(0, Vec::len))
            .sum();
        if checks == 0 {
            // kube-bench with explicit targets always reports their checks: none at all means
            // it judged nothing, which must not pass as a clean benchmark.
            unexpected.push(format!(
                "{node}: kube-bench reported no checks at all for targets {targets}"
            ));
        }
        for controls in &report.controls {
            for group in controls.tests.iter().flatten() {
                let mut tally = BTreeMap::<&str, usize>::new();
                for check in group.results.iter().flatten() {
                    *tally.entry(check.status.as_str()).or_default() += 1;
                    if check.status != "FAIL" {
                        continue;
                    }
                    match excuse(&check.test_number, &image) {
                        Some(deviation) => {
                            excused.insert(check.test_number.clone());
                            eprintln!(
                                "        FAIL {} (a documented deviation: {})",
                                check.test_number,
                                first_line(&deviation.reason)
                            );
                        }
                        None => unexpected.push(format!(
                            "{node}: {} {} [{}] (found: {})",
                            check.test_number,
                            check.test_desc,
                            controls.node_type,
                            shortened(first_line(check.actual_value.trim()), 160)
                        )),
                    }
                }
                let count = |status: &str| tally.get(status).copied().unwrap_or(0);
                eprintln!(
                    "      {} {} ({}): {} PASS, {} FAIL, {} WARN, {} INFO",
                    group.section,
                    group.desc,
                    controls.text,
                    count("PASS"),
                    count("FAIL"),
                    count("WARN"),
                    count("INFO"),
                );
            }
        }
    }
    let unseen: Vec<&str> = deviations
        .iter()
        .filter(|deviation| deviation.benchmark == benchmark && !excused.contains(&deviation.check))
        .map(|deviation| deviation.check.as_str())
        .collect();
    if !unseen.is_empty() {
        eprintln!(
            "    deviations of {benchmark} this cluster does not show: {}",
            unseen.join(" ")
        );
    }
    all_or_nothing(
        STEP,
        &format!("checks FAIL that are not documented deviations ({DEVIATIONS_FILE})"),
        &unexpected,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_deviation_parses_with_a_reason() {
        let deviations = deviations().expect("the deviations parse");
        for deviation in &deviations {
            assert!(deviation.benchmark.starts_with("cis-"), "{deviation:?}");
            if let Some(role) = &deviation.without_role {
                assert!(
                    ["control-plane", "etcd", "worker", "load-balancer"].contains(&role.as_str()),
                    "{deviation:?}"
                );
            }
            assert!(
                deviation
                    .check
                    .split('.')
                    .all(|part| part.parse::<u32>().is_ok()),
                "{deviation:?}"
            );
        }
    }

    #[test]
    fn long_findings_are_shortened() {
        assert_eq!(shortened("permissions=600", 160), "permissions=600");
        assert_eq!(shortened("abcdef", 3), "abc...");
        assert_eq!(shortened("ééé", 2), "éé...");
    }

    #[test]
    fn kube_bench_reports_parse() {
        let json = r#"{"Controls":[{"id":"1","version":"cis-1.11","text":"Control Plane Security Configuration","node_type":"master",
            "tests":[{"section":"1.1","desc":"Control Plane Node Configuration Files","results":[
              {"test_number":"1.1.1","test_desc":"Ensure ...","status":"PASS","actual_value":"permissions=600"},
              {"test_number":"1.1.2","test_desc":"Ensure ...","status":"FAIL"}]},
              {"section":"1.2","desc":"API Server","results":null}]}],"Totals":{}}"#;
        let report: Report = serde_json::from_str(json).expect("parses");
        let groups = report.controls[0].tests.as_ref().expect("groups");
        assert_eq!(
            groups[0].results.as_ref().expect("results")[1].status,
            "FAIL"
        );
        assert!(groups[1].results.is_none());
    }
}
