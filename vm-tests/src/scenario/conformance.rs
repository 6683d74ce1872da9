//! Kubernetes conformance: upstream's end-to-end suite (`e2e.test` of the cluster's own
//! version, from kiln's package set) run from the host against a VM cluster, its pods' images
//! (kiln's own: `kiln_image::oci::CONFORMANCE_IMAGES`) imported into each guest's containerd
//! from the test-tools disk, so nothing is pulled. What passes is what the suite says passes,
//! not kiln's reading of its own outputs.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::Deserialize;

use kiln_image::oci::{CONFORMANCE_IMAGES, CONFORMANCE_IMAGES_DIR, conformance_reference};

use super::*;
use crate::{TOOLS_MOUNT, mount_script};

/// The images the suite names that kiln's image of another name serves: `(the suite's name,
/// kiln's)`. kiln's agnhost is glibc-based with `dig` and `getent`, what the DNS tests' second
/// prober needs.
const SERVED_BY: [(&str, &str); 1] = [("glibc-dns-testing", "agnhost")];

/// The suite's registries (its `KUBE_TEST_REPO_LIST` file), every one moved under `kiln.local`,
/// which no guest can reach: an image kiln builds is found in containerd under the name the
/// suite asks for; any other fails to pull, and its test fails saying so.
const REPO_LIST: &str = "\
promoterE2eRegistry: kiln.local/e2e-test-images
buildImageRegistry: kiln.local/build-image
invalidRegistry: kiln.invalid/invalid
gcEtcdRegistry: kiln.local
gcRegistry: kiln.local
sigStorageRegistry: kiln.local/sig-storage
privateRegistry: kiln.local/authenticated
dockerLibraryRegistry: kiln.local/library
cloudProviderGcpRegistry: kiln.local/cloud-provider-gcp
";

/// The CI subset: conformance tests across sig-network (DNS, Services, Endpoints and
/// EndpointSlices, whose pods run nginx), sig-node, sig-apps, sig-auth and sig-api-machinery
/// (the aggregator's, whose pod runs sample-apiserver and etcd) whose pods run only images kiln
/// builds, by their full names as the suite prints them. The
/// step refuses to run if the suite does not have each exactly.
pub const CI_SUBSET: &[&str] = &[
    "[sig-network] DNS should provide DNS for services [Conformance]",
    "[sig-network] DNS should support configurable pod DNS nameservers [Conformance]",
    "[sig-network] Services should be able to create a functioning NodePort service [Conformance]",
    "[sig-network] Services should serve a basic endpoint from pods [Conformance]",
    "[sig-network] Services should find a service from listing all namespaces [Conformance]",
    "[sig-network] Services should delete a collection of services [Conformance]",
    "[sig-network] EndpointSlice should create Endpoints and EndpointSlices for Pods matching a Service [Conformance]",
    "[sig-network] EndpointsController should create Endpoints for Pods matching a Service [Conformance]",
    "[sig-node] Pods should get a host IP [Conformance] [NodeConformance]",
    "[sig-node] Pods should be submitted and removed [Conformance] [NodeConformance]",
    "[sig-node] ConfigMap should be consumable via environment variable [Conformance] [NodeConformance]",
    "[sig-node] Secrets should be consumable from pods in env vars [Conformance] [NodeConformance]",
    "[sig-apps] ReplicaSet should serve a basic image on each replica with a public image [Conformance]",
    "[sig-apps] ReplicationController should serve a basic image on each replica with a public image [Conformance]",
    "[sig-auth] ServiceAccounts should guarantee kube-root-ca.crt exist in any namespace [Conformance]",
    "[sig-auth] ServiceAccounts should mount an API token into pods [Conformance]",
    "[sig-auth] SubjectReview should support SubjectReview API operations [Conformance]",
    "[sig-auth] Certificates API [Privileged:ClusterAdmin] should support CSR API operations [Conformance]",
    "[sig-api-machinery] server version should find the server version [Conformance]",
    "[sig-api-machinery] Watchers should observe add, update, and delete watch notifications on configmaps [Conformance]",
    "[sig-api-machinery] ResourceQuota should create a ResourceQuota and ensure its status is promptly calculated. [Conformance]",
    "[sig-api-machinery] Discovery should validate PreferredVersion for each APIGroup [Conformance]",
    "[sig-api-machinery] Aggregator Should be able to support the 1.17 Sample API Server using the current Aggregator [LinuxOnly] [Conformance]",
];

/// How many processes run the CI subset ([`SuiteOptions::parallel`]): one, a test at a time.
/// In two (one per guest of `two-node`), under TCG on two host cores, the control-plane guest
/// was busy all the time and three runs in a row each failed another test on a timeout: a
/// namespace's service account not made in time (the controller manager restarted meanwhile),
/// the aggregator's sample-apiserver missing its one-second readiness probe, a container's log
/// not fetched through the API server from its kubelet (BENCHMARKS.md).
pub const CI_SUBSET_PROCS: u32 = 1;

/// How many conformance tests ran, passed, failed and were skipped, and how long it took.
#[derive(Debug, Clone, Default)]
pub struct SuiteReport {
    /// The tests that ran and passed, by full name.
    pub passed: Vec<String>,
    /// The tests that ran and did not pass: full name, state and the failure's message.
    pub failed: Vec<(String, String, String)>,
    /// The tests the focus left out or the suite skipped, in every pass (a test one pass
    /// leaves out may run in another), by full name.
    skipped: BTreeSet<String>,
    /// How many passes were merged into this report (none in the default, empty report).
    passes: usize,
    /// The suite's own wall time.
    pub wall: Duration,
    /// The JUnit reports the suite wrote, one per pass (see [`SuiteOptions::parallel`]).
    pub junit: Vec<PathBuf>,
}

impl SuiteReport {
    /// Adds the tests and the time of `other`, a later pass of the same run (of the same
    /// suite: a test counts as skipped if every pass skipped it).
    fn merge(&mut self, other: SuiteReport) {
        self.passed.extend(other.passed);
        self.failed.extend(other.failed);
        self.skipped = if self.passes == 0 {
            other.skipped
        } else {
            self.skipped.intersection(&other.skipped).cloned().collect()
        };
        self.passes += other.passes;
        self.wall += other.wall;
        self.junit.extend(other.junit);
    }

    /// How many tests the focus left out or the suite skipped (in every pass).
    pub fn skipped(&self) -> usize {
        self.skipped.len()
    }

    /// How many tests ran.
    pub fn ran(&self) -> usize {
        self.passed.len() + self.failed.len()
    }

    /// A paragraph for people: the tally, then each failure with the first line of its
    /// message.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} of {} conformance tests passed, {} failed, {} skipped, in {:.0} s (JUnit: {})",
            self.passed.len(),
            self.ran(),
            self.failed.len(),
            self.skipped(),
            self.wall.as_secs_f64(),
            self.junit
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (name, state, message) in &self.failed {
            text.push_str(&format!(
                "\n  {state}: {name}\n      {}",
                shortened(first_line(message.trim()), 300)
            ));
        }
        text
    }
}

/// Ginkgo's JSON report: one entry per suite run (the fields read here).
#[derive(Deserialize)]
struct GinkgoSuite {
    #[serde(rename = "SpecReports", default)]
    spec_reports: Vec<GinkgoSpec>,
}

#[derive(Deserialize)]
struct GinkgoSpec {
    #[serde(rename = "ContainerHierarchyTexts", default)]
    containers: Option<Vec<String>>,
    #[serde(rename = "LeafNodeText", default)]
    leaf: String,
    #[serde(rename = "LeafNodeType", default)]
    leaf_type: String,
    #[serde(rename = "State", default)]
    state: String,
    #[serde(rename = "Failure", default)]
    failure: Option<GinkgoFailure>,
}

#[derive(Deserialize)]
struct GinkgoFailure {
    #[serde(rename = "Message", default)]
    message: String,
}

/// Reads ginkgo's JSON report: every `It` as passed, failed (any state but `passed`,
/// `skipped` and `pending`, with its message) or skipped; a failed suite-level node (before or
/// after the suite) counts as a failure too, so a suite that could not start never passes.
fn read_report(json: &str, junit: PathBuf, wall: Duration) -> crate::Result<SuiteReport> {
    let suites: Vec<GinkgoSuite> = serde_json::from_str(json).map_err(|error| {
        Error::check(
            "conformance",
            format!("the suite's JSON report does not parse: {error}"),
        )
    })?;
    let mut report = SuiteReport {
        junit: vec![junit],
        wall,
        passes: 1,
        ..SuiteReport::default()
    };
    for spec in suites.iter().flat_map(|suite| &suite.spec_reports) {
        let mut name = spec.containers.clone().unwrap_or_default();
        name.push(spec.leaf.clone());
        let name = name
            .iter()
            .filter(|part| !part.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join(" ");
        let message = || {
            spec.failure
                .as_ref()
                .map(|failure| failure.message.clone())
                .unwrap_or_default()
        };
        if spec.leaf_type != "It" {
            if !matches!(spec.state.as_str(), "passed" | "skipped" | "pending") {
                let what = if name.is_empty() {
                    spec.leaf_type.clone()
                } else {
                    format!("{} {name}", spec.leaf_type)
                };
                report.failed.push((what, spec.state.clone(), message()));
            }
            continue;
        }
        match spec.state.as_str() {
            "passed" => report.passed.push(name),
            "skipped" | "pending" => {
                report.skipped.insert(name);
            }
            state => report.failed.push((name, state.to_owned(), message())),
        }
    }
    Ok(report)
}

/// The cluster's end-to-end suite, ready to run: its package on the host (from the cluster's
/// test tools) and its repository list, written once into the run directory.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The `kubernetes-e2e` package: `bin/e2e.test`, `VERSION`.
    e2e: PathBuf,
    /// The suite's `KUBE_TEST_REPO_LIST` file ([`REPO_LIST`]).
    repo_list: PathBuf,
}

impl Suite {
    /// The suite of `cluster`'s test tools, its repository list written into the run directory.
    ///
    /// # Errors
    ///
    /// If the test tools have no suite (the package set has none of the cluster's version), or
    /// the list cannot be written.
    pub fn of(cluster: &Cluster) -> crate::Result<Suite> {
        let e2e = cluster
            .tools
            .as_ref()
            .and_then(|tools| tools.e2e.clone())
            .ok_or_else(|| {
                Error::check(
                    "conformance",
                    "the cluster's test tools have no end-to-end suite (kiln's package set has \
                     no kubernetes-e2e of this Kubernetes version)",
                )
            })?;
        let repo_list = cluster.run_dir.join("conformance-repo-list.yaml");
        fs::write(&repo_list, REPO_LIST)
            .map_err(|error| Error::io(format!("writing {}", repo_list.display()), error))?;
        Ok(Suite { e2e, repo_list })
    }

    /// `bin/e2e.test`.
    fn program(&self) -> PathBuf {
        self.e2e.join("bin/e2e.test")
    }
}

/// Whether the cluster's test tools include the end-to-end suite of its version.
pub fn has_suite(cluster: &Cluster) -> bool {
    cluster
        .tools
        .as_ref()
        .is_some_and(|tools| tools.e2e.is_some())
}

/// The suite's version (its package's `VERSION`, `v1.37.2`), without the `v`.
fn suite_version(e2e: &Path) -> crate::Result<String> {
    let path = e2e.join("VERSION");
    let text = fs::read_to_string(&path)
        .map_err(|error| Error::io(format!("reading {}", path.display()), error))?;
    Ok(text.trim().trim_start_matches('v').to_owned())
}

/// Each image the suite names whose last path element is one kiln builds, with kiln's
/// reference for it: `(kiln's reference, the suite's reference)`, from the suite's own
/// `--list-images` (so each release's tags come from that release).
fn image_tags(suite: &Suite) -> crate::Result<Vec<(String, String)>> {
    let program = suite.program();
    let output = Command::new(&program)
        .arg("--list-images")
        .env("KUBE_TEST_REPO_LIST", &suite.repo_list)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| Error::io(format!("running {}", program.display()), error))?;
    if !output.status.success() {
        return Err(Error::check(
            "conformance images",
            format!(
                "`e2e.test --list-images` exited {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        ));
    }
    let version = suite_version(&suite.e2e)?;
    let mut tags = Vec::new();
    for wanted in String::from_utf8_lossy(&output.stdout).lines() {
        let wanted = wanted.trim();
        let Some((repository, _tag)) = wanted.rsplit_once(':') else {
            continue;
        };
        let name = repository.rsplit('/').next().unwrap_or(repository);
        // Only the public registries' names: the suite's private registry's agnhost must stay
        // unpullable, as its tests of private images expect.
        let public = [
            format!("kiln.local/e2e-test-images/{name}"),
            format!("kiln.local/{name}"),
        ];
        if !public.iter().any(|path| path == repository) {
            continue;
        }
        let kiln = SERVED_BY
            .iter()
            .find(|(suite, _)| *suite == name)
            .map_or(name, |(_, kiln)| *kiln);
        if CONFORMANCE_IMAGES.contains(&kiln) {
            tags.push((conformance_reference(kiln, &version), wanted.to_owned()));
        }
    }
    tags.sort();
    for name in CONFORMANCE_IMAGES {
        let reference = conformance_reference(name, &version);
        if !tags.iter().any(|(kiln, _)| *kiln == reference) {
            return Err(Error::check(
                "conformance images",
                format!("the suite's --list-images names no {name} image under kiln.local"),
            ));
        }
    }
    Ok(tags)
}

/// Where a guest's import of the conformance images writes its log and, when done, its exit
/// status.
const IMPORT_LOG: &str = "/run/kiln-conformance-images.log";
const IMPORT_DONE: &str = "/run/kiln-conformance-images.status";

/// Imports the conformance images from the test-tools disk into containerd on every node
/// whose kubelet runs, each also under every name the suite gives it: started on every node at
/// once (each guest has its own vCPUs), then waited for node by node.
pub fn import_images(cluster: &mut Cluster, suite: &Suite) -> crate::Result<()> {
    const STEP: &str = "conformance images";
    let tags = image_tags(suite)?;
    let mut import = format!(
        "for archive in {TOOLS_MOUNT}/{CONFORMANCE_IMAGES_DIR}/*.oci.tar; do\n\
         \x20 start=$(cut -d' ' -f1 /proc/uptime)\n\
         \x20 ctr --namespace k8s.io images import \"$archive\" || exit 1\n\
         \x20 echo \"{IMPORT_TIMING} ${{archive##*/}} $start $(cut -d' ' -f1 /proc/uptime)\"\n\
         done\n"
    );
    for (kiln, wanted) in &tags {
        import.push_str(&format!(
            "ctr --namespace k8s.io images tag --force {kiln} {wanted} || exit 1\n"
        ));
    }
    let start = format!(
        "{mount}\n\
         if ! systemctl is-active -q kubelet; then echo 'no kubelet'; exit 0; fi\n\
         rm -f {IMPORT_DONE}\n\
         cat > /run/kiln-conformance-images.sh <<'KILN_EOF'\n{import}KILN_EOF\n\
         (sh /run/kiln-conformance-images.sh > {IMPORT_LOG} 2>&1; echo $? > {IMPORT_DONE}) \
         > /dev/null 2>&1 < /dev/null &\n\
         echo started",
        mount = mount_script()
    );
    let names: Vec<String> = cluster.nodes.keys().cloned().collect();
    let mut importing = Vec::new();
    for node in &names {
        let output = cluster
            .shell(node)?
            .check(STEP, &start, Duration::from_secs(60))?;
        if output.trim() == "no kubelet" {
            eprintln!("    {node}: no kubelet, no images");
        } else {
            importing.push(node.clone());
        }
    }
    for node in importing {
        let status = wait_for(
            &format!("the conformance images' import on {node}"),
            Duration::from_secs(900),
            POLL,
            || {
                let shell = cluster.shell(&node).map_err(|error| error.to_string())?;
                let output = shell
                    .run(
                        &format!("cat {IMPORT_DONE} 2>/dev/null"),
                        Duration::from_secs(30),
                    )
                    .map_err(|error| error.to_string())?;
                let status = output.output.trim().to_owned();
                if status.is_empty() {
                    Err("still importing".to_owned())
                } else {
                    Ok(status)
                }
            },
        )?;
        // The archives' timing lines, then the number of names under kiln.local.
        let report = cluster.shell(&node)?.check(
            STEP,
            &format!(
                "[ \"$(cat {IMPORT_DONE})\" = 0 ] || {{ tail -20 {IMPORT_LOG}; exit 1; }}\n\
                 grep '^{IMPORT_TIMING} ' {IMPORT_LOG} || true\n\
                 ctr --namespace k8s.io images list -q | grep -c '^kiln.local/'"
            ),
            Duration::from_secs(60),
        )?;
        let count = report.lines().last().unwrap_or_default().trim();
        eprintln!(
            "    {node}: imported {} images under {} names (exit {status}; {count} kiln.local names in all)",
            CONFORMANCE_IMAGES.len(),
            tags.len(),
        );
        eprintln!("    {node}: {}", import_timings(&report));
    }
    Ok(())
}

/// The word that starts each line of the import log saying how long an archive took:
/// `<word> <archive> <start> <end>`, in seconds of the guest's uptime.
const IMPORT_TIMING: &str = "kiln-imported";

/// `agnhost.oci.tar 41.2 s, busybox.oci.tar 1.3 s` from the [`IMPORT_TIMING`] lines of an
/// import log (other lines are ignored; a line that does not parse is shown as it is).
fn import_timings(log: &str) -> String {
    let timings: Vec<String> = log
        .lines()
        .filter_map(|line| line.strip_prefix(IMPORT_TIMING)?.strip_prefix(' '))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [archive, start, end] => match (start.parse::<f64>(), end.parse::<f64>()) {
                    (Ok(start), Ok(end)) => format!("{archive} {:.1} s", end - start),
                    _ => line.to_owned(),
                },
                _ => line.to_owned(),
            }
        })
        .collect();
    if timings.is_empty() {
        "no archive's import time in the log".to_owned()
    } else {
        timings.join(", ")
    }
}

/// What to run of the suite.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Ginkgo's `--focus` within the `[Conformance]` tests (their label `Conformance`); `None`
    /// runs all of them.
    pub focus: Option<String>,
    /// Ginkgo's `--skip`.
    pub skip: Option<String>,
    /// Where the reports and the suite's log go.
    pub report_dir: PathBuf,
    /// Only list what would run (ginkgo's `--dry-run`): no test touches the cluster. Always in
    /// series (ginkgo lists only so).
    pub dry_run: bool,
    /// How many processes run the tests: 1 runs `e2e.test` alone, one test at a time; more
    /// runs the selected tests not labelled `Serial` with `ginkgo --procs` (the suite's own
    /// runner, as upstream's `hack/ginkgo-e2e.sh` does), then those labelled `Serial` one at a
    /// time, as they require.
    pub parallel: u32,
}

/// One run of the suite's program over some of the selected tests, with its reports in a
/// directory of its own.
struct Pass {
    /// What the terminal calls it.
    name: &'static str,
    /// The program: `e2e.test`, or `ginkgo` running it.
    program: PathBuf,
    arguments: Vec<String>,
    /// Where its `report.json` and `junit.xml` go.
    dir: PathBuf,
}

/// The `e2e.test` arguments of every pass: the cluster, through `kubeconfig` with `kubectl`,
/// and the suite's own report directory `dir`.
fn cluster_arguments(kubeconfig: &Path, kubectl: &Path, dir: &Path) -> Vec<String> {
    vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--kubectl-path={}", kubectl.display()),
        "--provider=skeleton".to_owned(),
        format!("--report-dir={}", dir.display()),
    ]
}

/// Ginkgo's flags for `options` and `labels` (a label filter), each after `prefix`: `--ginkgo.`
/// given to `e2e.test`, `--` given to the `ginkgo` runner. The reports are named relative to
/// the runner's `--output-dir`, or within `dir` for `e2e.test`.
fn ginkgo_flags(options: &SuiteOptions, labels: &str, prefix: &str, dir: &Path) -> Vec<String> {
    let report = |name: &str| {
        if prefix == "--" {
            name.to_owned()
        } else {
            dir.join(name).display().to_string()
        }
    };
    let mut flags = vec![
        format!("{prefix}label-filter={labels}"),
        format!("{prefix}no-color"),
        format!("{prefix}v"),
        format!("{prefix}timeout=6h"),
        format!("{prefix}json-report={}", report("report.json")),
        format!("{prefix}junit-report={}", report("junit.xml")),
    ];
    if let Some(focus) = &options.focus {
        flags.push(format!("{prefix}focus={focus}"));
    }
    if let Some(skip) = &options.skip {
        flags.push(format!("{prefix}skip={skip}"));
    }
    if options.dry_run {
        flags.push(format!("{prefix}dry-run"));
    }
    flags
}

/// The passes of a run: `e2e.test` alone over every selected test (in series, or a dry run),
/// or `ginkgo --procs` over those not labelled `Serial` in `parallel/` and then `e2e.test`
/// over the `Serial` ones in `serial/`.
fn passes(suite: &Suite, options: &SuiteOptions, kubeconfig: &Path, kubectl: &Path) -> Vec<Pass> {
    let series = |name, labels: &str, dir: PathBuf| {
        let mut arguments = cluster_arguments(kubeconfig, kubectl, &dir);
        arguments.extend(ginkgo_flags(options, labels, "--ginkgo.", &dir));
        Pass {
            name,
            program: suite.program(),
            arguments,
            dir,
        }
    };
    if options.parallel <= 1 || options.dry_run {
        return vec![series(
            "e2e.test",
            "Conformance",
            options.report_dir.clone(),
        )];
    }
    let dir = options.report_dir.join("parallel");
    let mut arguments = vec![
        format!("--procs={}", options.parallel),
        format!("--output-dir={}", dir.display()),
    ];
    arguments.extend(ginkgo_flags(options, "Conformance && !Serial", "--", &dir));
    arguments.push(suite.program().display().to_string());
    arguments.push("--".to_owned());
    arguments.extend(cluster_arguments(kubeconfig, kubectl, &dir));
    vec![
        Pass {
            name: "ginkgo",
            program: suite.e2e.join("bin/ginkgo"),
            arguments,
            dir,
        },
        series(
            "e2e.test (Serial)",
            "Conformance && Serial",
            options.report_dir.join("serial"),
        ),
    ]
}

/// Runs the `[Conformance]` tests `options` select with the suite of the cluster's test tools,
/// from the host through the cluster's kubeconfig, printing each test's name and outcome as
/// it ends (the whole output goes to `e2e.log` in the report directory), and reads the
/// reports. Run [`import_images`] first.
pub fn run_suite(
    cluster: &Cluster,
    suite: &Suite,
    options: &SuiteOptions,
) -> crate::Result<SuiteReport> {
    fs::create_dir_all(&options.report_dir)
        .map_err(|error| Error::io(format!("creating {}", options.report_dir.display()), error))?;
    let log_path = options.report_dir.join("e2e.log");
    let log = append_log(&log_path)?;
    let started = Instant::now();
    let mut report = SuiteReport::default();
    let mut done = 0usize;
    for pass in passes(
        suite,
        options,
        &cluster.kubectl.kubeconfig,
        &cluster.kubectl.program,
    ) {
        let ran = run_pass(suite, &pass, &log, &log_path, (started, &mut done))?;
        report.merge(ran);
    }
    Ok(report)
}

/// Runs one pass, its standard output and error into `log` (at `log_path`), each test's end
/// to the terminal numbered from `done` and timed from `started`, and reads its report.
fn run_pass(
    suite: &Suite,
    pass: &Pass,
    mut log: &fs::File,
    log_path: &Path,
    (started, done): (Instant, &mut usize),
) -> crate::Result<SuiteReport> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    const STEP: &str = "conformance";
    fs::create_dir_all(&pass.dir)
        .map_err(|error| Error::io(format!("creating {}", pass.dir.display()), error))?;
    eprintln!(
        "    {} {} (log: {})",
        pass.name,
        pass.arguments.join(" "),
        log_path.display()
    );
    let _ = log.write_all(format!("=== {} {}\n", pass.name, pass.arguments.join(" ")).as_bytes());
    let pass_started = Instant::now();
    let mut child = Command::new(&pass.program)
        .args(&pass.arguments)
        .env("KUBE_TEST_REPO_LIST", &suite.repo_list)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that an interruption ends ginkgo's test processes too.
        .process_group(0)
        .spawn()
        .map_err(|error| Error::io(format!("running {}", pass.program.display()), error))?;
    let mut ends = SpecEnds::default();
    let read = tee(&mut child, log, |line| {
        if crate::interrupted() {
            return false;
        }
        if let Some((outcome, name)) = ends.read(line) {
            *done += 1;
            eprintln!(
                "    [{:>5.0} s] {}: {outcome} {name}",
                started.elapsed().as_secs_f64(),
                *done
            );
        }
        true
    });
    if !matches!(read, Ok(false)) {
        // Interrupted, or the output could not be read or logged: the pass ends here, its
        // test processes with it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .status();
        let _ = child.kill();
        let _ = child.wait();
    }
    match read {
        Ok(false) => {}
        Ok(true) => return Err(Error::Interrupted),
        Err(error) => {
            return Err(Error::io(
                format!(
                    "copying the output of {} into {}",
                    pass.name,
                    log_path.display()
                ),
                error,
            ));
        }
    }
    let status = child
        .wait()
        .map_err(|error| Error::io(format!("waiting for {}", pass.program.display()), error))?;
    let json_path = pass.dir.join("report.json");
    let json = fs::read_to_string(&json_path).map_err(|error| {
        Error::check(
            STEP,
            format!(
                "{} exited {status} and wrote no report ({}: {error}); see {}",
                pass.name,
                json_path.display(),
                log_path.display()
            ),
        )
    })?;
    read_report(&json, pass.dir.join("junit.xml"), pass_started.elapsed())
}

/// Creates (or empties) the log at `path` and opens it for appending: every write lands at
/// its end, so two handles on it (a process's standard output and error, copied from two
/// threads) never overwrite each other, as two handles sharing one file position can (a copy
/// blocked in the kernel writes at the position it read before it blocked).
fn append_log(path: &Path) -> crate::Result<fs::File> {
    fs::File::create(path)
        .and_then(|_| fs::OpenOptions::new().append(true).open(path))
        .map_err(|error| Error::io(format!("creating {}", path.display()), error))
}

/// Copies `child`'s standard output and error (both piped) into `log` (opened with
/// [`append_log`]), one whole line per write so that the two never split each other's lines,
/// and hands each line of standard output to `on_line`, which returns false to stop reading.
/// Returns whether `on_line` stopped it; otherwise both streams were read to their end. Bytes
/// that are not UTF-8 are logged and handed on replaced, never a reason to stop reading (a
/// pipe left unread would block the child).
fn tee(
    child: &mut std::process::Child,
    log: &fs::File,
    mut on_line: impl FnMut(&str) -> bool,
) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    fn lines(
        from: impl Read,
        mut log: &fs::File,
        mut each: impl FnMut(&str) -> bool,
    ) -> std::io::Result<bool> {
        let mut reader = BufReader::new(from);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            if reader.read_until(b'\n', &mut buffer)? == 0 {
                return Ok(false);
            }
            if !buffer.ends_with(b"\n") {
                buffer.push(b'\n');
            }
            log.write_all(&buffer)?;
            let line = String::from_utf8_lossy(&buffer[..buffer.len() - 1]);
            if !each(&line) {
                return Ok(true);
            }
        }
    }
    let stderr = child.stderr.take().expect("standard error is piped");
    let stdout = child.stdout.take().expect("standard output is piped");
    let stderr_log = log.try_clone()?;
    let errors = std::thread::spawn(move || lines(stderr, &stderr_log, |_| true));
    let stopped = lines(stdout, log, &mut on_line)?;
    if stopped {
        // The caller ends the child; its standard error's thread ends with it.
        return Ok(true);
    }
    errors
        .join()
        .expect("the standard error thread does not panic")?;
    Ok(false)
}

/// Finds each test's end in ginkgo's verbose output, with its name: run in series, a test's
/// header (its name, then its labels, on a line starting `[sig-`) comes before its end
/// (`• [12.345 seconds]`); from parallel processes, ginkgo's runner prints each finished
/// test's end first, then its header.
#[derive(Default)]
struct SpecEnds {
    /// A header not yet matched with its end.
    header: Option<String>,
    /// An end not yet matched with its header.
    end: Option<String>,
}

impl SpecEnds {
    /// The outcome and name of a test that `line` completes, if it does.
    fn read(&mut self, line: &str) -> Option<(String, String)> {
        if line.starts_with("[sig-") {
            if let Some(end) = self.end.take() {
                return Some((end, line.to_owned()));
            }
            self.header = Some(line.to_owned());
        } else if let Some(outcome) = spec_outcome(line) {
            match self.header.take() {
                Some(header) => return Some((outcome, header)),
                None => self.end = Some(outcome),
            }
        }
        None
    }
}

/// The outcome ginkgo's verbose output gives a spec when it ends, from one of its lines:
/// `• [12.345 seconds]` for a pass, `• [FAILED] [..]` and the like otherwise; `None` for
/// any other line.
fn spec_outcome(line: &str) -> Option<String> {
    let rest = line.strip_prefix("• ")?;
    if rest.starts_with('[') {
        Some(rest.trim().to_owned())
    } else {
        None
    }
}

/// The CI subset as one ginkgo focus: each name, its regular-expression characters escaped,
/// anchored at its end, joined with `|`. (Ginkgo matches a focus against the suite's
/// description and the test's name, so the start is not anchored; [`conformance_subset`]
/// checks that exactly the named tests ran.)
pub fn subset_focus(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("{}$", escape_regex(name)))
        .collect::<Vec<_>>()
        .join("|")
}

/// `text` with every character special to Go's regular expressions escaped.
fn escape_regex(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The conformance step of a scenario: the CI subset ([`CI_SUBSET`]) of the suite of the
/// cluster's version, its images imported first. Fails if any test fails, or if the suite did
/// not run exactly the subset's tests (a renamed or missing test is not silently dropped).
pub fn conformance_subset(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "conformance subset";
    let suite = Suite::of(cluster)?;
    import_images(cluster, &suite)?;
    let options = SuiteOptions {
        focus: Some(subset_focus(CI_SUBSET)),
        skip: None,
        report_dir: cluster.run_dir.join("conformance"),
        dry_run: false,
        parallel: CI_SUBSET_PROCS,
    };
    let report = run_suite(cluster, &suite, &options)?;
    eprintln!("    {}", report.describe());
    let ran: BTreeSet<&str> = report
        .passed
        .iter()
        .map(String::as_str)
        .chain(report.failed.iter().map(|(name, _, _)| name.as_str()))
        .collect();
    let missing: Vec<&str> = CI_SUBSET
        .iter()
        .copied()
        .filter(|name| !ran.contains(name))
        .collect();
    let extra: Vec<&str> = ran
        .iter()
        .copied()
        .filter(|name| !CI_SUBSET.contains(name))
        .collect();
    if !extra.is_empty() {
        return Err(Error::check(
            STEP,
            format!(
                "the focus also ran tests the subset does not name:\n  {}",
                extra.join("\n  ")
            ),
        ));
    }
    if !missing.is_empty() {
        return Err(Error::check(
            STEP,
            format!(
                "the suite ran {} of the subset's {} tests; not run:\n  {}",
                CI_SUBSET.len() - missing.len(),
                CI_SUBSET.len(),
                missing.join("\n  ")
            ),
        ));
    }
    if !report.failed.is_empty() {
        return Err(Error::check(STEP, report.describe()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn import_timings_reads_the_log_lines() {
        let log = "unpacking kiln.local/conformance/agnhost:v1.37.2 (sha256:00)...done\n\
                   kiln-imported agnhost.oci.tar 100.25 141.5\n\
                   kiln-imported busybox.oci.tar 141.5 142.75\n\
                   kiln-imported odd.oci.tar soon\n\
                   27\n";
        assert_eq!(
            import_timings(log),
            "agnhost.oci.tar 41.2 s, busybox.oci.tar 1.2 s, odd.oci.tar soon"
        );
        assert_eq!(
            import_timings("ctr: failed\n"),
            "no archive's import time in the log"
        );
    }

    /// `sh -c script` with its standard output and error piped, as a suite's pass is run.
    fn piped_sh(script: &str) -> std::process::Child {
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs")
    }

    #[test]
    fn tee_logs_every_line_of_both_streams_whole_and_hands_on_standard_output() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("e2e.log");
        let log = append_log(&path).expect("the log");
        (&log).write_all(b"=== header\n").expect("written");
        // Standard error writes once early, then stays quiet while standard output writes a
        // lot, then writes again: a copy blocked on a quiet stream must not write over what
        // the other stream logged meanwhile. Then a line that is not UTF-8 and one without
        // its newline.
        let script = "echo early >&2; sleep 0.3; i=0; while [ $i -lt 300 ]; do echo out$i; \
                      i=$((i+1)); done; sleep 0.3; echo late >&2; printf 'bad \\377\\n'; \
                      printf last";
        let mut child = piped_sh(script);
        let mut seen = Vec::new();
        let stopped = tee(&mut child, &log, |line| {
            seen.push(line.to_owned());
            true
        })
        .expect("read to the end");
        assert!(child.wait().expect("sh ends").success());
        assert!(!stopped);
        let mut expected: Vec<String> = (0..300).map(|i| format!("out{i}")).collect();
        expected.push("bad \u{fffd}".to_owned());
        expected.push("last".to_owned());
        assert_eq!(seen, expected);
        let logged = fs::read(&path).expect("the log");
        let logged: Vec<&[u8]> = logged.split(|byte| *byte == b'\n').collect();
        assert_eq!(logged.first(), Some(&&b"=== header"[..]));
        assert_eq!(
            logged.last(),
            Some(&&b""[..]),
            "the log ends with a newline"
        );
        let mut lines: Vec<Vec<u8>> = logged[1..logged.len() - 1]
            .iter()
            .map(|line| line.to_vec())
            .collect();
        lines.sort();
        let mut wanted: Vec<Vec<u8>> = (0..300)
            .map(|i| format!("out{i}").into_bytes())
            .chain(["early", "late", "last"].map(|line| line.as_bytes().to_vec()))
            .chain([b"bad \xff".to_vec()])
            .collect();
        wanted.sort();
        assert_eq!(lines, wanted);
    }

    #[test]
    fn tee_stops_when_told() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let log = append_log(&dir.path().join("e2e.log")).expect("the log");
        let mut child = piped_sh("echo one; echo two; exec sleep 30");
        let mut seen = Vec::new();
        let stopped = tee(&mut child, &log, |line| {
            seen.push(line.to_owned());
            line != "two"
        })
        .expect("read");
        let _ = child.kill();
        let _ = child.wait();
        assert!(stopped);
        assert_eq!(seen, ["one", "two"]);
    }

    #[test]
    fn the_report_counts_its_and_fails_on_a_failed_suite_node() {
        let json = r#"[{"SpecReports":[
            {"ContainerHierarchyTexts":["[sig-network] DNS"],"LeafNodeText":"should provide DNS for services  [Conformance]","LeafNodeType":"It","State":"passed"},
            {"ContainerHierarchyTexts":["[sig-node] Pods"],"LeafNodeText":"should get a host IP [Conformance]","LeafNodeType":"It","State":"failed","Failure":{"Message":"timed out\nmore"}},
            {"ContainerHierarchyTexts":null,"LeafNodeText":"","LeafNodeType":"SynchronizedBeforeSuite","State":"passed"},
            {"ContainerHierarchyTexts":["x"],"LeafNodeText":"y","LeafNodeType":"It","State":"skipped"}
        ]}]"#;
        let report = read_report(json, PathBuf::from("junit.xml"), Duration::from_secs(3))
            .expect("a report");
        assert_eq!(
            report.passed,
            ["[sig-network] DNS should provide DNS for services  [Conformance]"]
        );
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].1, "failed");
        assert_eq!(report.skipped(), 1);
        assert_eq!(report.ran(), 2);
        assert!(
            report
                .describe()
                .contains("1 of 2 conformance tests passed, 1 failed")
        );
        assert!(report.describe().contains("timed out"));

        let broken = r#"[{"SpecReports":[
            {"LeafNodeText":"","LeafNodeType":"SynchronizedBeforeSuite","State":"failed","Failure":{"Message":"no nodes"}}
        ]}]"#;
        let report =
            read_report(broken, PathBuf::from("junit.xml"), Duration::ZERO).expect("a report");
        assert_eq!(report.ran(), 1, "a failed suite node counts as a failure");
        assert!(read_report("not json", PathBuf::new(), Duration::ZERO).is_err());
    }

    #[test]
    fn the_subset_focus_matches_each_name_exactly() {
        let focus = subset_focus(&["[sig-a] x (y) should z [Conformance]", "b.c"]);
        assert_eq!(focus, r"\[sig-a\] x \(y\) should z \[Conformance\]$|b\.c$");
    }

    #[test]
    fn spec_ends_are_read_from_ginkgo_lines() {
        assert_eq!(
            spec_outcome("• [12.345 seconds]").as_deref(),
            Some("[12.345 seconds]")
        );
        assert_eq!(
            spec_outcome("• [FAILED] [30.1 seconds]").as_deref(),
            Some("[FAILED] [30.1 seconds]")
        );
        assert_eq!(spec_outcome("STEP: creating a pod"), None);
    }

    #[test]
    fn every_registry_of_the_suite_moves_under_kiln_local() {
        for line in REPO_LIST.lines() {
            let (_, registry) = line.split_once(": ").expect("key: value");
            assert!(
                registry.starts_with("kiln.local") || registry.starts_with("kiln.invalid"),
                "{line}"
            );
        }
    }

    /// A test's end is matched with its name whether the header comes first (a run in
    /// series) or last (ginkgo's runner printing a parallel process's finished test).
    #[test]
    fn spec_ends_find_their_names_in_either_order() {
        let mut ends = SpecEnds::default();
        assert_eq!(ends.read("[sig-node] Pods should a [Conformance]"), None);
        assert_eq!(ends.read("  STEP: creating a pod"), None);
        assert_eq!(
            ends.read("• [1.5 seconds]"),
            Some((
                "[1.5 seconds]".to_owned(),
                "[sig-node] Pods should a [Conformance]".to_owned()
            ))
        );
        assert_eq!(ends.read("------------------------------"), None);
        assert_eq!(ends.read("• [FAILED] [2.0 seconds]"), None);
        assert_eq!(
            ends.read("[sig-apps] Job should b [Conformance]"),
            Some((
                "[FAILED] [2.0 seconds]".to_owned(),
                "[sig-apps] Job should b [Conformance]".to_owned()
            ))
        );
        assert_eq!(ends.read("k8s.io/kubernetes/test/e2e/apps/job.go:1"), None);
    }

    /// In series one `e2e.test` pass runs everything; in parallel the runner runs what is not
    /// `Serial` with its own flags, then `e2e.test` the `Serial` tests, each pass with its own
    /// reports, and a dry run stays in series.
    #[test]
    fn a_parallel_run_is_two_passes_with_their_own_reports() {
        let suite = Suite {
            e2e: PathBuf::from("/e2e"),
            repo_list: PathBuf::from("/run/repo-list.yaml"),
        };
        let mut options = SuiteOptions {
            focus: Some("DNS".to_owned()),
            skip: None,
            report_dir: PathBuf::from("/reports"),
            dry_run: false,
            parallel: 1,
        };
        let (kubeconfig, kubectl) = (Path::new("/k.conf"), Path::new("/bin/kubectl"));
        let series = passes(&suite, &options, kubeconfig, kubectl);
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].program, Path::new("/e2e/bin/e2e.test"));
        assert_eq!(series[0].dir, Path::new("/reports"));
        for flag in [
            "--kubeconfig=/k.conf",
            "--ginkgo.label-filter=Conformance",
            "--ginkgo.focus=DNS",
            "--ginkgo.json-report=/reports/report.json",
            "--report-dir=/reports",
        ] {
            assert!(series[0].arguments.iter().any(|a| a == flag), "{flag}");
        }

        options.parallel = 2;
        let parallel = passes(&suite, &options, kubeconfig, kubectl);
        assert_eq!(parallel.len(), 2);
        let runner = &parallel[0];
        assert_eq!(runner.program, Path::new("/e2e/bin/ginkgo"));
        assert_eq!(runner.dir, Path::new("/reports/parallel"));
        let separator = runner
            .arguments
            .iter()
            .position(|a| a == "--")
            .expect("-- before e2e.test's own flags");
        let (flags, rest) = runner.arguments.split_at(separator);
        for flag in [
            "--procs=2",
            "--output-dir=/reports/parallel",
            "--label-filter=Conformance && !Serial",
            "--focus=DNS",
            "--json-report=report.json",
            "/e2e/bin/e2e.test",
        ] {
            assert!(flags.iter().any(|a| a == flag), "{flag} in {flags:?}");
        }
        assert!(rest.iter().any(|a| a == "--kubeconfig=/k.conf"));
        assert!(!rest.iter().any(|a| a.starts_with("--ginkgo.")));
        let serial = &parallel[1];
        assert_eq!(serial.program, Path::new("/e2e/bin/e2e.test"));
        assert_eq!(serial.dir, Path::new("/reports/serial"));
        assert!(
            serial
                .arguments
                .iter()
                .any(|a| a == "--ginkgo.label-filter=Conformance && Serial")
        );

        options.dry_run = true;
        assert_eq!(passes(&suite, &options, kubeconfig, kubectl).len(), 1);
    }

    #[test]
    fn passes_add_up() {
        let parallel = r#"[{"SpecReports":[
            {"ContainerHierarchyTexts":["[sig-a] A"],"LeafNodeText":"one","LeafNodeType":"It","State":"passed"},
            {"ContainerHierarchyTexts":["[sig-a] A"],"LeafNodeText":"two","LeafNodeType":"It","State":"skipped"},
            {"ContainerHierarchyTexts":["[sig-a] A"],"LeafNodeText":"three","LeafNodeType":"It","State":"skipped"}
        ]}]"#;
        let serial = r#"[{"SpecReports":[
            {"ContainerHierarchyTexts":["[sig-a] A"],"LeafNodeText":"one","LeafNodeType":"It","State":"skipped"},
            {"ContainerHierarchyTexts":["[sig-a] A"],"LeafNodeText":"two","LeafNodeType":"It","State":"passed"},
            {"ContainerHierarchyTexts":["[sig-a] A"],"LeafNodeText":"three","LeafNodeType":"It","State":"skipped"}
        ]}]"#;
        // As run_suite merges them: into an empty report.
        let mut report = SuiteReport::default();
        report.merge(
            read_report(
                parallel,
                PathBuf::from("p/junit.xml"),
                Duration::from_secs(2),
            )
            .expect("a report"),
        );
        assert_eq!(report.skipped(), 2);
        report.merge(
            read_report(serial, PathBuf::from("s/junit.xml"), Duration::from_secs(3))
                .expect("a report"),
        );
        assert_eq!(report.passed, ["[sig-a] A one", "[sig-a] A two"]);
        assert_eq!(report.skipped(), 1, "only three was skipped by both passes");
        assert_eq!(report.wall, Duration::from_secs(5));
        assert_eq!(report.junit.len(), 2);
        assert!(
            report
                .describe()
                .contains("2 of 2 conformance tests passed, 0 failed, 1 skipped")
        );
        assert!(report.describe().contains("p/junit.xml, s/junit.xml"));
    }
}
