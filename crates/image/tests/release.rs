//! The `release` source: binaries downloaded over HTTP from a server on
//! 127.0.0.1 that serves the fixture binaries, each checked by SHA-256.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_graph::{DrvId, EvalError, EvalOptions, Graph, NullObserver, ValidatedGraph};
use kiln_image::{
    ImageError,
    kubernetes::{KUBERNETES_BINARIES, KubernetesSource, ReleaseBinary, kubernetes_binaries},
};
use kiln_store::{Digest, Store};

fn fixture_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin")
}

fn sha256_of(path: &Path) -> Digest {
    Digest::of(&fs::read(path).expect("read a file"))
}

/// A plain HTTP/1.1 server on 127.0.0.1 serving `GET /<name>` from `dir`
/// (404 otherwise), counting requests. Runs until the test process ends.
struct Server {
    base: String,
    requests: Arc<AtomicUsize>,
}

fn serve(dir: PathBuf) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let base = format!("http://{}", listener.local_addr().expect("local address"));
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Skip the headers.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|read| read > 2) {
                header.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let file = dir.join(path.trim_start_matches('/'));
            let response = match fs::read(&file) {
                Ok(body) if path.len() > 1 && !path.contains("..") => {
                    let mut response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    response.extend_from_slice(&body);
                    response
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    Server { base, requests }
}

/// Every binary at `<base>/<name>`, pinned to the fixture's SHA-256.
fn pins(base: &str) -> BTreeMap<String, ReleaseBinary> {
    KUBERNETES_BINARIES
        .iter()
        .map(|name| {
            (
                (*name).to_owned(),
                ReleaseBinary {
                    url: format!("{base}/{name}"),
                    sha256: sha256_of(&fixture_bin().join(name)),
                },
            )
        })
        .collect()
}

fn release(binaries: BTreeMap<String, ReleaseBinary>) -> KubernetesSource {
    KubernetesSource::Release {
        version: "v1.20.2".to_owned(),
        binaries,
    }
}

fn graph_of(source: &KubernetesSource) -> ValidatedGraph {
    let mut graph = Graph::new();
    graph
        .add(
            "kubernetes",
            kubernetes_binaries(source).expect("describe the derivation"),
        )
        .expect("add the derivation");
    graph.validate().expect("validate the graph")
}

#[test]
fn downloads_and_verifies_every_binary_then_comes_from_the_store() {
    let server = serve(fixture_bin());
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let store = Store::open(&scratch.path().join("store")).expect("open the store");
    let graph = graph_of(&release(pins(&server.base)));

    let messages = std::sync::Mutex::new(Vec::new());
    let observer = |event: &kiln_graph::Event<'_>| {
        if let kiln_graph::Event::Message { message, .. } = event {
            messages.lock().expect("lock").push((*message).to_owned());
        }
    };
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &observer)
        .expect("evaluate the graph");
    assert_eq!(evaluation.built, 1);
    let output = &evaluation.outputs[&DrvId::from("kubernetes")].path;
    for name in KUBERNETES_BINARIES {
        let installed = output.join("bin").join(name);
        assert_eq!(
            fs::read(&installed).expect("read a file"),
            fs::read(fixture_bin().join(name)).expect("read a file")
        );
        assert_eq!(
            fs::metadata(&installed)
                .expect("stat a file")
                .permissions()
                .mode()
                & 0o111,
            0o111
        );
    }
    assert_eq!(
        fs::read_to_string(output.join("VERSION")).expect("read a file"),
        "v1.20.2\n"
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        KUBERNETES_BINARIES.len()
    );
    assert!(
        messages
            .lock()
            .expect("lock")
            .iter()
            .any(|message| message == &format!("downloading kubelet from {}/kubelet", server.base)),
        "progress names each download"
    );

    // The second time, nothing is downloaded.
    let again = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect("evaluate the graph");
    assert_eq!((again.built, again.substituted), (0, 1));
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        KUBERNETES_BINARIES.len()
    );
}

#[test]
fn a_binary_with_other_bytes_fails_naming_it_and_both_hashes() {
    let server = serve(fixture_bin());
    let mut binaries = pins(&server.base);
    let wrong = Digest::of(b"what the release notes promised");
    binaries
        .get_mut("kube-proxy")
        .expect("the binary is pinned")
        .sha256 = wrong;
    let actual = sha256_of(&fixture_bin().join("kube-proxy"));

    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let store = Store::open(&scratch.path().join("store")).expect("open the store");
    let graph = graph_of(&release(binaries));
    let error = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect_err("a failing build");
    let EvalError::Build { error, .. } = &error else {
        panic!("expected a build error, got {error}");
    };
    let Some(ImageError::ChecksumMismatch {
        binary,
        origin,
        expected,
        actual: got,
    }) = error
        .cause()
        .and_then(|cause| cause.downcast_ref::<ImageError>())
    else {
        panic!("expected a checksum mismatch, got {error}");
    };
    assert_eq!(binary, "kube-proxy");
    assert_eq!(origin, &format!("{}/kube-proxy", server.base));
    assert_eq!((*expected, *got), (wrong, actual));
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "kube-proxy from {}/kube-proxy: expected SHA-256 {wrong}, got {actual}",
            server.base
        )),
        "{message}"
    );
}

#[test]
fn a_missing_download_fails_naming_the_binary_and_url() {
    let server = serve(fixture_bin());
    let mut binaries = pins(&server.base);
    let url = format!("{}/no-such-file", server.base);
    binaries
        .get_mut("kubeadm")
        .expect("the binary is pinned")
        .url
        .clone_from(&url);
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let store = Store::open(&scratch.path().join("store")).expect("open the store");
    let message = graph_of(&release(binaries))
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect_err("a failing build")
        .to_string();
    assert!(
        message.contains(&format!("downloading kubeadm from {url}")),
        "{message}"
    );
    assert!(message.contains("404"), "{message}");
}

#[test]
fn the_store_path_depends_on_the_hashes_not_the_urls() {
    let store_dir = tempfile::tempdir().expect("create a temporary directory");
    let store = Store::open(&store_dir.path().join("store")).expect("open the store");
    let id = DrvId::from("kubernetes");
    let here = graph_of(&release(pins("http://127.0.0.1:1")));
    let mirror = graph_of(&release(pins("http://127.0.0.1:2/mirror")));
    assert_eq!(here.store_path(&store, &id), mirror.store_path(&store, &id));

    let mut changed = pins("http://127.0.0.1:1");
    changed
        .get_mut("kubectl")
        .expect("the binary is pinned")
        .sha256 = Digest::of(b"another kubectl");
    assert_ne!(
        here.store_path(&store, &id),
        graph_of(&release(changed)).store_path(&store, &id)
    );
}

#[test]
fn the_binary_list_must_be_exactly_the_kubernetes_binaries() {
    let mut binaries = pins("http://127.0.0.1:1");
    binaries.remove("kubelet");
    let extra = binaries["kubectl"].clone();
    binaries.insert("kubectl-convert".to_owned(), extra);
    let error = kubernetes_binaries(&release(binaries))
        .expect_err("an invalid source")
        .to_string();
    assert!(
        error.contains("release source: missing kubelet; unexpected kubectl-convert; the binaries are: kube-apiserver"),
        "{error}"
    );
}
