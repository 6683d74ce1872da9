//! The package set's declarations: kiln's own parse, and bad ones are refused naming the file,
//! the line and what is wrong.

use kiln_image::{
    ImageError,
    kubernetes::KUBERNETES_BINARIES,
    packages::{PackageSet, VersionSource},
};

const HASH: &str = "89458d9dec073047556d0778bb6e11a97fa9c89b739f34b05d92e857549796f2";

fn repository_set() -> PackageSet {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packages");
    PackageSet::load(&dir).expect("kiln's own package set parses")
}

#[test]
fn kilns_kubernetes_declares_every_binary_and_current_versions() {
    let set = repository_set();
    let kubernetes = set.package("kubernetes").expect("a kubernetes package");
    let go = kubernetes.go.as_ref().expect("built from Go modules");
    let names: Vec<&str> = go.binaries.keys().map(String::as_str).collect();
    let mut expected = KUBERNETES_BINARIES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for minor in [35, 36, 37] {
        assert!(
            kubernetes
                .versions
                .iter()
                .any(|version| version.numeric().1 == minor
                    && matches!(version.source, VersionSource::Go { .. })),
            "a 1.{minor} version built from Go modules"
        );
    }
    assert_eq!(
        set.version("kubernetes", "1.20.2").expect("1.20.2").source,
        VersionSource::Debian
    );
}

#[test]
fn kube_bench_ships_its_benchmarks() {
    let set = repository_set();
    let go = set
        .package("kube-bench")
        .expect("a kube-bench package")
        .go
        .as_ref()
        .expect("built from Go modules");
    assert_eq!(go.data, ["cfg"], "the benchmarks' YAML files");
    assert!(set.version("kube-bench", "0.14.1").is_ok());
}

/// The end-to-end suite is built as upstream builds it: `e2e.test` with `go test -c` from the
/// wrapper's copy of upstream's `e2e_test.go`, ginkgo, agnhost and nnp as programs, for a version
/// the set builds Kubernetes of, with the same version stamps.
#[test]
fn the_end_to_end_suite_is_built_from_the_kubernetes_module() {
    let set = repository_set();
    let e2e = set.package("kubernetes-e2e").expect("declared");
    let kubernetes = set.package("kubernetes").expect("declared");
    let go = e2e.go.as_ref().expect("a Go recipe");
    let kube_go = kubernetes.go.as_ref().expect("a Go recipe");
    assert_eq!(go.module, kube_go.module);
    assert_eq!(go.tags, kube_go.tags);
    assert_eq!(go.ldflags, kube_go.ldflags, "the same version stamps");
    assert_eq!(go.tests["e2e.test"], "./e2e");
    assert!(go.files["e2e/e2e_test.go"].contains("e2e.RunE2ETests(t)"));
    assert_eq!(
        go.binaries.keys().map(String::as_str).collect::<Vec<_>>(),
        ["agnhost", "ginkgo", "nnp"]
    );
    for version in &e2e.versions {
        set.version("kubernetes", &version.version)
            .expect("a suite of a Kubernetes version the set builds");
    }
}

/// The conformance images' sample-apiserver is a version the set builds, from upstream's
/// module, as the one program of its recipe.
#[test]
fn the_conformance_images_sample_apiserver_is_in_the_set() {
    let set = repository_set();
    let (name, version) = kiln_image::oci::SAMPLE_APISERVER_PACKAGE;
    let go = set
        .package(name)
        .expect("declared")
        .go
        .as_ref()
        .expect("a Go recipe");
    assert_eq!(go.module, "k8s.io/sample-apiserver");
    assert_eq!(
        go.binaries.iter().collect::<Vec<_>>(),
        [(
            &"sample-apiserver".to_owned(),
            &"k8s.io/sample-apiserver".to_owned()
        )]
    );
    set.version(name, version)
        .expect("the version the images are built from");
}

#[test]
fn an_unknown_version_names_the_versions_there_are() {
    let set = repository_set();
    let error = set.version("kubernetes", "1.31.0").expect_err("no 1.31.0");
    assert!(matches!(error, ImageError::UnknownPackage { .. }));
    let text = error.to_string();
    assert!(
        text.starts_with("kiln has no kubernetes 1.31.0; it has 1.37."),
        "{text}"
    );
    assert!(text.ends_with(", 1.20.2"), "{text}");
    let error = set.package("kube-router").expect_err("no such package");
    let text = error.to_string();
    assert!(
        text.starts_with("kiln has no package named kube-router; it has ")
            && text.contains(" kubernetes"),
        "{text}"
    );
}

fn parse_error(text: &str) -> String {
    PackageSet::parse([("packages/tool.toml", text)])
        .expect_err("refused")
        .to_string()
}

fn declaration(binaries: &str, versions: &str) -> String {
    format!(
        "description = \"a tool\"\n[go]\nmodule = \"example.com/tool\"\ncgo = false\n[go.binaries]\n{binaries}\n{versions}"
    )
}

#[test]
fn bad_declarations_are_refused_naming_file_line_and_field() {
    let good_binaries = "tool = \"example.com/tool/cmd/tool\"";
    let version = |body: &str| format!("[[versions]]\n{body}\n");

    expect_test::expect!["packages/tool.toml:8: versions: 1.2.3 needs both go (the toolchain version) and vendor-hash (a build with a wrong one names the right one)"]
        .assert_eq(&parse_error(&declaration(good_binaries, &version("version = \"1.2.3\"\ngo = \"1.26.8\""))));
    expect_test::expect![
        "packages/tool.toml:8: versions: `v1.2.3` is not MAJOR.MINOR.PATCH (without a v)"
    ]
    .assert_eq(&parse_error(&declaration(
        good_binaries,
        &version(&format!(
            "version = \"v1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"{HASH}\""
        )),
    )));
    expect_test::expect![
        "packages/tool.toml:10: versions: vendor-hash `abc` is not a SHA-256 (64 hex digits)"
    ]
    .assert_eq(&parse_error(&declaration(
        good_binaries,
        &version("version = \"1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"abc\""),
    )));
    let twice = format!(
        "{}{}",
        version(&format!(
            "version = \"1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"{HASH}\""
        )),
        version(&format!(
            "version = \"1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"{HASH}\""
        ))
    );
    expect_test::expect!["packages/tool.toml:8: versions: 1.2.3 is listed twice"]
        .assert_eq(&parse_error(&declaration(good_binaries, &twice)));
    expect_test::expect!["packages/tool.toml:7: go.binaries: a and b are built from packages with the same last path element, which `go build -o` cannot tell apart"]
        .assert_eq(&parse_error(&declaration(
            "a = \"example.com/x/cmd/tool\"\nb = \"example.com/y/tool\"",
            &version(&format!("version = \"1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"{HASH}\"")),
        )));
    expect_test::expect!["packages/tool.toml:6: go.binaries.tool: ./cmd/tool is a package of the wrapper module, but go.files has no file under cmd/tool/"]
        .assert_eq(&parse_error(&declaration(
            "tool = \"./cmd/tool\"",
            &version(&format!("version = \"1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"{HASH}\"")),
        )));
    let data = |path: &str| {
        declaration(good_binaries, "").replace(
            "cgo = false\n",
            &format!("cgo = false\ndata = [\"{path}\"]\n"),
        ) + &version(&format!(
            "version = \"1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"{HASH}\""
        ))
    };
    expect_test::expect!["packages/tool.toml:5: go.data: `../cfg` is not a plain relative path of a file or directory in example.com/tool's module"]
        .assert_eq(&parse_error(&data("../cfg")));
    expect_test::expect!["packages/tool.toml:5: go.data: `/etc` is not a plain relative path of a file or directory in example.com/tool's module"]
        .assert_eq(&parse_error(&data("/etc")));
    let tests = |table: &str, files: &str| {
        declaration(good_binaries, "")
            + &format!("[go.tests]\n{table}\n[go.files]\n{files}\n")
            + &version(&format!(
                "version = \"1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"{HASH}\""
            ))
    };
    expect_test::expect!["packages/tool.toml:8: go.tests.e2e.test: example.com/tool/e2e is not a package of the wrapper module (`./dir`); a vendor tree holds no test files of other modules, so only the wrapper's own tests can be compiled"]
        .assert_eq(&parse_error(&tests("\"e2e.test\" = \"example.com/tool/e2e\"", "")));
    expect_test::expect![
        "packages/tool.toml:8: go.tests.e2e.test: go.files has no `_test.go` file under e2e/"
    ]
    .assert_eq(&parse_error(&tests(
        "\"e2e.test\" = \"./e2e\"",
        "\"e2e/e2e.go\" = \"package e2e\"",
    )));
    expect_test::expect![
        "packages/tool.toml:8: go.tests.tool: go.binaries has a program of that name too"
    ]
    .assert_eq(&parse_error(&tests(
        "tool = \"./e2e\"",
        "\"e2e/e2e_test.go\" = \"package e2e\"",
    )));
    let set = PackageSet::parse([(
        "packages/tool.toml",
        tests(
            "\"e2e.test\" = \"./e2e\"",
            "\"e2e/e2e_test.go\" = \"package e2e\"",
        )
        .as_str(),
    )])
    .expect("parses");
    let go = set.package("tool").expect("tool").go.as_ref().expect("go");
    assert_eq!(go.tests["e2e.test"], "./e2e");
    let set =
        PackageSet::parse([("packages/tool.toml", data("cfg/cis").as_str())]).expect("parses");
    let go = set.package("tool").expect("tool").go.as_ref().expect("go");
    assert_eq!(go.data, ["cfg/cis"]);
    let unknown = parse_error(&format!(
        "{}colour = \"blue\"\n",
        declaration(
            good_binaries,
            &version(&format!(
                "version = \"1.2.3\"\ngo = \"1.26.8\"\nvendor-hash = \"{HASH}\""
            ))
        )
    ));
    assert!(
        unknown.starts_with("packages/tool.toml:11: unknown field `colour`"),
        "{unknown}"
    );
}
