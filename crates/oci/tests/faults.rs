//! kiln-oci against a registry that fails in the middle: a tiny in-process registry (the
//! distribution protocol's blob upload, blob and manifest endpoints, kept in memory) that can
//! cut a blob off partway or flip a byte of it. Whatever happens, the store ends with the whole
//! path or without it, and nothing is left in its build directory.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kiln_oci::{Client, OciError, Pulled, Pushed, Repository, pull_path, push_path};
use kiln_store::{DigestBuilder, Store};

/// What the registry does to a blob it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// Sends the headers and this many bytes of a blob over 64 KiB, then closes.
    CutAfter(usize),
    /// Flips a byte in the middle of a blob over 64 KiB.
    Flip,
}

#[derive(Default)]
struct State {
    blobs: BTreeMap<String, Vec<u8>>,
    manifests: BTreeMap<String, Vec<u8>>,
    uploads: BTreeMap<usize, Vec<u8>>,
    next: usize,
}

struct FakeRegistry {
    port: u16,
    state: Arc<Mutex<State>>,
    fault: Arc<Mutex<Fault>>,
    blob_gets: Arc<AtomicUsize>,
}

impl FakeRegistry {
    fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let registry = FakeRegistry {
            port,
            state: Arc::default(),
            fault: Arc::new(Mutex::new(Fault::None)),
            blob_gets: Arc::default(),
        };
        let (state, fault, gets) = (
            Arc::clone(&registry.state),
            Arc::clone(&registry.fault),
            Arc::clone(&registry.blob_gets),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, fault, gets) =
                    (Arc::clone(&state), Arc::clone(&fault), Arc::clone(&gets));
                std::thread::spawn(move || serve(stream, &state, &fault, &gets));
            }
        });
        registry
    }

    fn client(&self) -> Client {
        let repository = Repository::parse(&format!("oci://127.0.0.1:{}/kiln/test", self.port))
            .expect("a repository");
        Client::new(repository, None, "nowhere")
    }

    fn set(&self, fault: Fault) {
        *self.fault.lock().expect("lock") = fault;
    }
}

/// Serves requests on one connection until it closes.
fn serve(stream: TcpStream, state: &Mutex<State>, fault: &Mutex<Fault>, gets: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let body = read_body(&mut reader, &headers);
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        let digest_param = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("digest="))
            .map(|value| value.replace("%3A", ":"));
        let mut state = state.lock().expect("lock");
        let respond =
            |writer: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]| {
                let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
                for (name, value) in headers {
                    head.push_str(&format!("{name}: {value}\r\n"));
                }
                head.push_str("\r\n");
                let _ = writer.write_all(head.as_bytes());
                let _ = writer.write_all(body);
            };
        let rest = path.strip_prefix("/v2/kiln/test/").unwrap_or("");
        match (method.as_str(), rest) {
            ("POST", "blobs/uploads/") => {
                state.next += 1;
                let id = state.next;
                state.uploads.insert(id, Vec::new());
                respond(
                    &mut writer,
                    "202 Accepted",
                    &[("location", format!("/v2/kiln/test/blobs/uploads/{id}"))],
                    b"",
                );
            }
            ("PATCH" | "PUT", upload) if upload.starts_with("blobs/uploads/") => {
                let id: usize = upload
                    .trim_start_matches("blobs/uploads/")
                    .parse()
                    .unwrap_or(0);
                let Some(data) = state.uploads.get_mut(&id) else {
                    respond(&mut writer, "404 Not Found", &[], b"");
                    continue;
                };
                data.extend_from_slice(&body);
                if method == "PATCH" {
                    respond(
                        &mut writer,
                        "202 Accepted",
                        &[("location", format!("/v2/kiln/test/blobs/uploads/{id}"))],
                        b"",
                    );
                } else {
                    let data = state.uploads.remove(&id).unwrap_or_default();
                    let digest = digest_param.unwrap_or_default();
                    state.blobs.insert(digest, data);
                    respond(&mut writer, "201 Created", &[], b"");
                }
            }
            ("HEAD" | "GET", blob) if blob.starts_with("blobs/") => {
                let digest = blob.trim_start_matches("blobs/");
                let Some(mut data) = state.blobs.get(digest).cloned() else {
                    respond(&mut writer, "404 Not Found", &[], b"");
                    continue;
                };
                if method == "HEAD" {
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", data.len());
                    let _ = writer.write_all(head.as_bytes());
                    continue;
                }
                gets.fetch_add(1, Ordering::SeqCst);
                let fault = *fault.lock().expect("lock");
                if data.len() > 64 << 10 {
                    match fault {
                        Fault::CutAfter(count) => {
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                data.len()
                            );
                            let _ = writer.write_all(head.as_bytes());
                            let _ = writer.write_all(&data[..count]);
                            return;
                        }
                        Fault::Flip => {
                            let middle = data.len() / 2;
                            data[middle] ^= 1;
                        }
                        Fault::None => {}
                    }
                }
                respond(&mut writer, "200 OK", &[], &data);
            }
            ("PUT", manifest) if manifest.starts_with("manifests/") => {
                state
                    .manifests
                    .insert(manifest.trim_start_matches("manifests/").to_owned(), body);
                respond(&mut writer, "201 Created", &[], b"");
            }
            ("GET", manifest) if manifest.starts_with("manifests/") => {
                match state
                    .manifests
                    .get(manifest.trim_start_matches("manifests/"))
                    .cloned()
                {
                    Some(bytes) => respond(&mut writer, "200 OK", &[], &bytes),
                    None => respond(&mut writer, "404 Not Found", &[], b""),
                }
            }
            _ => respond(&mut writer, "404 Not Found", &[], b""),
        }
    }
}

/// A request's body, by its length or chunked.
fn read_body(reader: &mut BufReader<TcpStream>, headers: &BTreeMap<String, String>) -> Vec<u8> {
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|value| value.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            if reader.read_line(&mut size).unwrap_or(0) == 0 {
                break;
            }
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0u8; size + 2];
            if reader.read_exact(&mut chunk).is_err() {
                break;
            }
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = headers
        .get("content-length")
        .and_then(|value| value.parse::<usize>().ok())
    {
        body.resize(length, 0);
        let _ = reader.read_exact(&mut body);
    }
    body
}

/// A store holding one path of about 4 MiB; its digest and name.
fn store_with_path(dir: &Path) -> (Store, kiln_store::StoreObject, &'static str) {
    let store = Store::open(&dir.join("source")).expect("store");
    let digest = DigestBuilder::new("kiln-oci-faults").str("big").finish();
    let object = store
        .build(&digest, "big", |out| {
            std::fs::create_dir(out.join("bin"))?;
            let bytes: Vec<u8> = (0..4u32 << 20)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect();
            std::fs::write(out.join("bin/blob"), bytes)
        })
        .map_err(|failure| failure.to_string())
        .expect("built");
    (store, object, "big")
}

/// Whether `store` has nothing in its build directory.
fn nothing_half_built(store: &Store) -> bool {
    std::fs::read_dir(store.root().join(".tmp"))
        .map(|entries| entries.count() == 0)
        .unwrap_or(true)
}

#[test]
fn a_blob_cut_off_or_corrupted_leaves_the_store_without_the_path_then_a_good_one_adds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = FakeRegistry::start();
    let client = registry.client();
    let (_, object, name) = store_with_path(dir.path());
    let pushed = push_path(&client, name, &object).expect("pushed");
    assert!(
        matches!(pushed, Pushed::Sent(ref layer) if layer.size > 4 << 20),
        "{pushed:?}"
    );
    assert_eq!(
        push_path(&client, name, &object).expect("again"),
        Pushed::Present
    );

    let target = Store::open(&dir.path().join("target")).expect("store");
    for fault in [Fault::CutAfter(1 << 20), Fault::CutAfter(0), Fault::Flip] {
        registry.set(fault);
        let error = pull_path(&client, &target, &object.digest, name, None).expect_err("refused");
        match fault {
            Fault::Flip => assert!(
                matches!(error, OciError::BlobDigest { .. }),
                "{fault:?}: {error}"
            ),
            // The connection ends before the blob does: an I/O error reading the layer.
            _ => assert!(
                matches!(error, OciError::Io { .. }) && error.to_string().contains("the layer"),
                "{fault:?}: {error}"
            ),
        }
        assert!(
            target.get(&object.digest, name).expect("get").is_none(),
            "{fault:?}: no path"
        );
        assert!(nothing_half_built(&target), "{fault:?}: nothing half-built");
    }

    registry.set(Fault::None);
    let gets = registry.blob_gets.load(Ordering::SeqCst);
    let Pulled::Added(added) =
        pull_path(&client, &target, &object.digest, name, None).expect("pulled")
    else {
        panic!("the registry has it");
    };
    assert!(registry.blob_gets.load(Ordering::SeqCst) > gets);
    assert_eq!(added.content_hash, object.content_hash);
    assert_eq!(
        std::fs::read(added.path.join("bin/blob")).expect("read"),
        std::fs::read(object.path.join("bin/blob")).expect("read")
    );
    assert!(nothing_half_built(&target));

    // A pin the artifact does not match is refused before anything is fetched.
    let other = DigestBuilder::new("kiln-oci-faults").str("other").finish();
    let fresh = Store::open(&dir.path().join("fresh")).expect("store");
    let before = registry.blob_gets.load(Ordering::SeqCst);
    let error = pull_path(&client, &fresh, &object.digest, name, Some(&other))
        .expect_err("pinned elsewhere");
    assert!(error.to_string().contains("pinned to"), "{error}");
    assert_eq!(
        registry.blob_gets.load(Ordering::SeqCst),
        before + 1,
        "only the config was read"
    );
    // A path the registry lacks is missing, not an error.
    assert_eq!(
        pull_path(&client, &fresh, &other, name, None).expect("asked"),
        Pulled::Missing
    );
}
