//! `cargo xtask push` and `build-cluster --substituter oci://...` as a user runs them, against a
//! real registry: Debian's `docker-registry` (the distribution registry) on loopback, with
//! htpasswd authentication on and credentials in a container tool's auth file.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{base64_encode, examples, hashes, private_keys_in, succeeded};

const USER: &str = "kiln";
const PASSWORD: &str = "s3cret-Pa55";

/// A registry on 127.0.0.1, its storage under `dir`.
struct Registry {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Registry {
        std::fs::create_dir_all(dir).expect("mkdir");
        let htpasswd = Command::new(kiln_testkit::tool("htpasswd", "apache2-utils"))
            .args(["-Bbn", USER, PASSWORD])
            .output()
            .expect("htpasswd runs");
        assert!(htpasswd.status.success(), "htpasswd: {htpasswd:?}");
        std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).expect("write");
        // A free port: bound, then released for the registry.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test\n\
             auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
            dir.join("data").display(),
            dir.join("htpasswd").display()
        );
        std::fs::write(dir.join("config.yml"), config).expect("write");
        let log = std::fs::File::create(dir.join("registry.log")).expect("log");
        let child = Command::new(kiln_testkit::tool("docker-registry", "docker-registry"))
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let registry = Registry {
            child: Some(child),
            dir: dir.to_owned(),
            port,
        };
        registry.wait_ready();
        registry
    }

    /// Waits until `/v2/` asks for credentials (401): the registry serves, auth on.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.0 401") || answer.starts_with("HTTP/1.1 401") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the registry did not serve within 60 s: {}",
                std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn repository(&self, name: &str) -> String {
        format!("oci://127.0.0.1:{}/{name}", self.port)
    }

    /// Writes an auth file (as `podman login` would) with `password`; returns its path.
    fn auth_file(&self, password: &str) -> PathBuf {
        let path = self.dir.join(format!("auth-{}.json", password.len()));
        let auth = base64_encode(format!("{USER}:{password}").as_bytes());
        let text = format!(
            r#"{{"auths": {{"127.0.0.1:{}": {{"auth": "{auth}"}}}}}}"#,
            self.port
        );
        std::fs::write(&path, text).expect("write");
        path
    }

    /// Every blob's data file in the registry's storage.
    fn blobs(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.file_name().is_some_and(|name| name == "data") {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        walk(&self.dir.join("data/docker/registry/v2/blobs"), &mut found);
        found.sort();
        found
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the xtask in `dir` with `env` (the caller's `HOME` replaced by `dir`, so no credential
/// file of the machine's own is read).
fn xtask(dir: &Path, env: &[(&str, &Path)], args: &[&str]) -> Output {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let mut all: Vec<(&str, &str)> = vec![("HOME", home.to_str().expect("utf-8"))];
    all.extend(
        env.iter()
            .map(|(key, value)| (*key, value.to_str().expect("utf-8"))),
    );
    common::xtask(dir, "022", &all, args)
}

fn build(
    dir: &Path,
    example: &str,
    store: &str,
    out: &str,
    env: &[(&str, &Path)],
    extra: &[&str],
) -> Output {
    let spec = examples().join(format!("{example}.toml"));
    let mut args = vec![
        "build-cluster",
        "--no-images",
        "--spec",
        spec.to_str().expect("utf-8"),
        "--store",
        store,
        "--secrets",
        "s",
        "--out",
        out,
    ];
    args.extend(extra);
    xtask(dir, env, &args)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The manifest's entries that hold secrets, and those that do not: id → store path.
fn split_by_secrecy(result: &Path) -> (BTreeMap<String, PathBuf>, BTreeMap<String, PathBuf>) {
    let (mut secret, mut public) = (BTreeMap::new(), BTreeMap::new());
    for (id, entry) in common::artifacts(result) {
        let path = PathBuf::from(entry["store_path"].as_str().expect("a path"));
        if entry["secret"].as_bool().expect("secret recorded") {
            secret.insert(id, path);
        } else {
            public.insert(id, path);
        }
    }
    (secret, public)
}

/// Every file's bytes under `root`, not following links.
fn files(root: &Path) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("list") {
                stack.push(entry.expect("entry").path());
            }
        } else if metadata.is_file() {
            found.push(std::fs::read(&path).expect("read"));
        }
    }
    found
}

/// Every entry under `root` with its permission bits, not following links.
fn modes(root: &Path) -> BTreeMap<PathBuf, u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let metadata = std::fs::symlink_metadata(&path).expect("metadata");
        let relative = path.strip_prefix(root).expect("below root").to_owned();
        found.insert(relative, metadata.permissions().mode() & 0o777);
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path).expect("list") {
                stack.push(entry.expect("entry").path());
            }
        }
    }
    found
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[test]
fn push_then_substitute_the_ha_configuration_and_no_secret_leaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::start(&dir.path().join("registry"));
    let auth = registry.auth_file(PASSWORD);
    let env = [("REGISTRY_AUTH_FILE", auth.as_path())];
    let repository = registry.repository("kiln/ha");

    succeeded(&build(dir.path(), "ha", "a", "result", &[], &[]));
    let result = dir.path().join("result");
    let (secret, public) = split_by_secrecy(&result);
    // The graph decides: every PKI output, kubeconfig, node bundle and node manifest set (the
    // encryption key) is secret; units, network files and the rest are not.
    for id in secret.keys() {
        assert!(
            id.starts_with("pki/")
                || id.contains("kubeconfig")
                || id.ends_with("/pki")
                || id.ends_with("/manifests"),
            "{id} is withheld, but holds no secret"
        );
    }
    assert!(
        public.keys().any(|id| id.ends_with("/units")),
        "units are shared: {public:?}"
    );
    assert!(secret.keys().any(|id| id.starts_with("pki/")), "{secret:?}");

    let pushed = xtask(dir.path(), &env, &["push", "--store", "a", &repository]);
    succeeded(&pushed);
    let said = stderr(&pushed);
    assert!(
        said.contains(&format!("{} sent", public.len()))
            && said.contains(&format!("{} withheld", secret.len())),
        "{said}"
    );

    // Nothing in the registry holds a private key, in PEM or as a kubeconfig embeds it, nor the
    // encryption key, nor the root secret.
    let mut needles: Vec<(String, Vec<u8>)> = Vec::new();
    for marker in [
        "-----BEGIN PRIVATE KEY",
        "-----BEGIN EC PRIVATE KEY",
        "-----BEGIN RSA PRIVATE KEY",
        "PRIVATE KEY-----",
    ] {
        needles.push((marker.to_owned(), marker.as_bytes().to_vec()));
        let aligned = &marker.as_bytes()[..marker.len() / 3 * 3];
        needles.push((
            format!("base64 of {marker}"),
            base64_encode(aligned).into_bytes(),
        ));
    }
    for (id, path) in &secret {
        for bytes in files(path) {
            for key in private_keys_in(&bytes) {
                needles.push((format!("a key of {id}"), base64_encode(&key).into_bytes()));
                for line in key.split(|&b| b == b'\n').filter(|line| line.len() >= 40) {
                    needles.push((format!("a key line of {id}"), line.to_vec()));
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines() {
                if let Some(value) = line.trim().strip_prefix("secret: ") {
                    needles.push((
                        format!("the encryption key of {id}"),
                        value.as_bytes().to_vec(),
                    ));
                }
            }
        }
    }
    for root in files(&dir.path().join("s")) {
        assert!(root.len() >= 16, "a root secret");
        needles.push(("the root secret".to_owned(), root.clone()));
        needles.push((
            "the root secret, base64".to_owned(),
            base64_encode(&root).into_bytes(),
        ));
    }
    assert!(
        needles
            .iter()
            .any(|(what, _)| what.starts_with("the encryption key")),
        "found the encryption key"
    );
    let blobs = registry.blobs();
    assert!(
        blobs.len() > public.len(),
        "a layer and config per path, and manifests: {}",
        blobs.len()
    );
    for blob in &blobs {
        let bytes = std::fs::read(blob).expect("read");
        for (what, needle) in &needles {
            assert!(!contains(&bytes, needle), "{} holds {what}", blob.display());
        }
    }

    // A fresh store takes every shared path from the registry and builds only the secret ones.
    let fresh = build(
        dir.path(),
        "ha",
        "b",
        "result-b",
        &env,
        &["--substituter", &repository],
    );
    succeeded(&fresh);
    let said = stderr(&fresh);
    assert!(
        said.contains(&format!("substituted {} of {}", public.len(), public.len())),
        "{said}"
    );
    assert_eq!(hashes(&result), hashes(&dir.path().join("result-b")));
    // With the permission bits builders read from their inputs (the content hash covers only
    // the owner's `x`).
    let (_, substituted) = split_by_secrecy(&dir.path().join("result-b"));
    for (id, path) in &public {
        assert_eq!(modes(path), modes(&substituted[id]), "{id}");
    }
    // And it is what a build makes: --check rebuilds everything and compares.
    succeeded(&build(
        dir.path(),
        "ha",
        "b",
        "result-b",
        &env,
        &["--check"],
    ));

    // Pushing again sends nothing.
    let again = xtask(dir.path(), &env, &["push", "--store", "a", &repository]);
    succeeded(&again);
    assert!(
        stderr(&again).contains(&format!("0 sent (0.0 MiB), {} already there", public.len())),
        "{}",
        stderr(&again)
    );
    registry.stop();
}

#[test]
fn wrong_credentials_a_corrupt_blob_and_a_stopped_registry_end_in_clear_words_and_a_correct_store()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let mut registry = Registry::start(&dir.path().join("registry"));
    let repository = registry.repository("kiln/two-node");
    let good = registry.auth_file(PASSWORD);
    let wrong = registry.auth_file("not-the-password");
    succeeded(&build(dir.path(), "two-node", "a", "result", &[], &[]));
    let expected = hashes(&dir.path().join("result"));

    // No credentials at all, then the wrong ones: refused before anything is sent.
    let none = dir.path().join("none.json");
    std::fs::write(&none, "{}").expect("write");
    let refused = xtask(
        dir.path(),
        &[("REGISTRY_AUTH_FILE", &none)],
        &["push", "--store", "a", &repository],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("asks for credentials and none were found"),
        "{}",
        stderr(&refused)
    );
    let refused = xtask(
        dir.path(),
        &[("REGISTRY_AUTH_FILE", &wrong)],
        &["push", "--store", "a", &repository],
    );
    assert!(!refused.status.success());
    let said = stderr(&refused);
    assert!(
        said.contains(&format!("refused the credentials for \"{USER}\""))
            && said.contains(&wrong.display().to_string()),
        "{said}"
    );
    assert!(
        registry.blobs().is_empty(),
        "nothing was sent: {:?}",
        registry.blobs()
    );

    succeeded(&xtask(
        dir.path(),
        &[("REGISTRY_AUTH_FILE", &good)],
        &["push", "--store", "a", &repository],
    ));

    // One layer corrupted in the registry's storage: refused, built instead, the store right.
    let layer = registry
        .blobs()
        .into_iter()
        .max_by_key(|blob| std::fs::metadata(blob).map(|m| m.len()).unwrap_or(0))
        .expect("a blob");
    let mut bytes = std::fs::read(&layer).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&layer, bytes).expect("corrupt");
    let env = [("REGISTRY_AUTH_FILE", good.as_path())];
    let built = build(
        dir.path(),
        "two-node",
        "c",
        "result-c",
        &env,
        &["--substituter", &repository],
    );
    succeeded(&built);
    let said = stderr(&built);
    assert!(
        said.contains("warning: not substituting") && said.contains("corrupt"),
        "{said}"
    );
    assert_eq!(hashes(&dir.path().join("result-c")), expected);
    succeeded(&build(
        dir.path(),
        "two-node",
        "c",
        "result-c",
        &env,
        &["--check"],
    ));

    // The registry gone: said once, everything built.
    registry.stop();
    let built = build(
        dir.path(),
        "two-node",
        "d",
        "result-d",
        &env,
        &["--substituter", &repository],
    );
    succeeded(&built);
    let said = stderr(&built);
    assert_eq!(said.matches("cannot be reached").count(), 1, "{said}");
    assert_eq!(hashes(&dir.path().join("result-d")), expected);
}
