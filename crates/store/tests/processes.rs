//! Tests that need real processes: several processes building one path at
//! once, a build killed with SIGKILL in the middle of writing, a store open in
//! one process holding off a collection in another, and a collection killed
//! with SIGKILL in the middle of deleting.
//!
//! The test binary re-executes itself as the helper process (selected by the
//! `KILN_STORE_TEST_HELPER` environment variable), so it has its own `main`
//! instead of libtest's; it prints libtest-style result lines.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;
use std::{env, fs, thread};

use kiln_store::{Collector, Digest, DigestBuilder, Durability, GarbageKind, Store};

const HELPER_ENV: &str = "KILN_STORE_TEST_HELPER";
const STORE_ENV: &str = "KILN_STORE_TEST_STORE";
const RUNS_ENV: &str = "KILN_STORE_TEST_RUNS";
const GO_ENV: &str = "KILN_STORE_TEST_GO";

/// How many processes race to build one path.
const RACERS: usize = 4;
/// The slowly written file is this many chunks of `CHUNK_LEN` bytes (16 MiB).
const CHUNKS: usize = 256;
const CHUNK_LEN: usize = 64 * 1024;
/// The slow builder announces itself after writing this many chunks.
const CHUNKS_BEFORE_KILL: usize = 8;
/// The path a collection is killed while deleting holds this many
/// directories of this many files, so deleting it takes a while.
const DOOMED_DIRS: usize = 100;
const DOOMED_FILES: usize = 100;

type Test = (&'static str, fn());

const TESTS: &[Test] = &[
    (
        "several_processes_build_one_path_once",
        several_processes_build_one_path_once,
    ),
    (
        "a_build_killed_with_sigkill_leaves_nothing_behind",
        a_build_killed_with_sigkill_leaves_nothing_behind,
    ),
    (
        "a_store_open_in_another_process_holds_off_a_collection",
        a_store_open_in_another_process_holds_off_a_collection,
    ),
    (
        "a_collection_killed_with_sigkill_leaves_no_half_deleted_path",
        a_collection_killed_with_sigkill_leaves_no_half_deleted_path,
    ),
];

fn main() -> ExitCode {
    if let Ok(role) = env::var(HELPER_ENV) {
        return helper(&role);
    }
    let args: Vec<String> = env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "--list") {
        for (name, _) in TESTS {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    // Like libtest, run only the tests whose names contain a filter, if any
    // were given; option values (such as a thread count) never match.
    let filters: Vec<&String> = args.iter().filter(|arg| !arg.starts_with('-')).collect();
    let selected: Vec<&Test> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in &selected {
        let outcome = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    let passed = selected.len() - failed.len();
    if failed.is_empty() {
        println!(
            "\ntest result: ok. {passed} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n"
        );
        ExitCode::SUCCESS
    } else {
        println!("\nfailures:\n    {}", failed.join("\n    "));
        println!(
            "\ntest result: FAILED. {passed} passed; {} failed; 0 ignored; 0 measured; 0 filtered out\n",
            failed.len()
        );
        ExitCode::FAILURE
    }
}

fn shared_digest() -> Digest {
    DigestBuilder::new("kiln-store-process-tests")
        .str("shared")
        .finish()
}

fn doomed_digest() -> Digest {
    DigestBuilder::new("kiln-store-process-tests")
        .str("doomed")
        .finish()
}

fn killed_digest() -> Digest {
    DigestBuilder::new("kiln-store-process-tests")
        .str("killed")
        .finish()
}

/// The bytes of one chunk of the slowly written image: different in every
/// chunk, so a truncated file cannot hash like a whole one.
fn chunk(index: usize) -> Vec<u8> {
    (0..CHUNK_LEN)
        .map(|offset| (index.wrapping_mul(31) ^ offset.wrapping_mul(7)) as u8)
        .collect()
}

fn write_image(out: &Path, pause: Option<Duration>) -> std::io::Result<()> {
    let mut file = fs::File::create(out.join("image.raw"))?;
    for index in 0..CHUNKS {
        file.write_all(&chunk(index))?;
        if let Some(pause) = pause {
            file.flush()?;
            if index + 1 == CHUNKS_BEFORE_KILL {
                println!("writing");
                std::io::stdout().flush()?;
            }
            thread::sleep(pause);
        }
    }
    Ok(())
}

/// The helper process's side. Its exit code and stdout are checked by the tests.
fn helper(role: &str) -> ExitCode {
    let store_root = PathBuf::from(env::var_os(STORE_ENV).expect("store root"));
    if role == "collect" {
        let collector = Collector::open(&store_root).expect("open collector");
        for piece in collector.garbage(&[]).expect("garbage") {
            println!("removing");
            std::io::stdout().flush().expect("flush");
            collector.remove(&piece).expect("remove");
        }
        // Reaching here means the parent failed to kill us in time.
        return ExitCode::from(3);
    }
    let store = Store::open(&store_root).expect("open store");
    match role {
        "build-once" => {
            let runs = PathBuf::from(env::var_os(RUNS_ENV).expect("runs dir"));
            let go = PathBuf::from(env::var_os(GO_ENV).expect("go file"));
            // Start together, so the builds really overlap.
            while !go.exists() {
                thread::sleep(Duration::from_millis(2));
            }
            let object = store
                .build(&shared_digest(), "shared", |out| {
                    fs::write(runs.join(std::process::id().to_string()), "")?;
                    thread::sleep(Duration::from_millis(200));
                    fs::write(out.join("file"), "built by one process")
                })
                .expect("build");
            println!("{}", object.content_hash);
            ExitCode::SUCCESS
        }
        "slow-build" => {
            store
                .build(&killed_digest(), "image", |out| {
                    write_image(out, Some(Duration::from_millis(20)))
                })
                .expect("build");
            // Reaching here means the parent failed to kill us in time.
            ExitCode::from(3)
        }
        "hold-open" => {
            let go = PathBuf::from(env::var_os(GO_ENV).expect("go file"));
            println!("open");
            std::io::stdout().flush().expect("flush");
            while !go.exists() {
                thread::sleep(Duration::from_millis(2));
            }
            drop(store);
            ExitCode::SUCCESS
        }
        other => panic!("unknown helper role {other:?}"),
    }
}

fn spawn_helper(role: &str, store: &Path, extra: &[(&str, &Path)]) -> Child {
    let mut command = Command::new(env::current_exe().expect("current exe"));
    command
        .env(HELPER_ENV, role)
        .env(STORE_ENV, store)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().expect("spawn helper")
}

fn several_processes_build_one_path_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let runs = dir.path().join("runs");
    let go = dir.path().join("go");
    fs::create_dir(&runs).expect("mkdir");
    let children: Vec<Child> = (0..RACERS)
        .map(|_| spawn_helper("build-once", &root, &[(RUNS_ENV, &runs), (GO_ENV, &go)]))
        .collect();
    fs::write(&go, "").expect("start the race");
    let hashes: Vec<String> = children
        .into_iter()
        .map(|child| {
            let output = child.wait_with_output().expect("wait");
            assert!(
                output.status.success(),
                "helper failed: {:?}",
                output.status
            );
            String::from_utf8(output.stdout)
                .expect("utf-8")
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(
        fs::read_dir(&runs).expect("ls runs").count(),
        1,
        "exactly one process ran the builder"
    );
    let store = Store::open(&root).expect("open");
    let object = store
        .get(&shared_digest(), "shared")
        .expect("get")
        .expect("built");
    for hash in &hashes {
        assert_eq!(*hash, object.content_hash.to_string());
    }
}

fn a_build_killed_with_sigkill_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let mut child = spawn_helper("slow-build", &root, &[]);
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    assert_eq!(line, "writing\n", "the helper started writing");

    let store = Store::open(&root).expect("open");
    let digest = killed_digest();
    let partial = root
        .join(".tmp")
        .join(format!("{digest}-image"))
        .join("image.raw");
    let written = fs::metadata(&partial)
        .expect("the partial file exists")
        .len();
    assert!(
        written >= (CHUNKS_BEFORE_KILL * CHUNK_LEN) as u64 && written < (CHUNKS * CHUNK_LEN) as u64,
        "killed mid-write, after {written} bytes"
    );

    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "the helper died of SIGKILL");

    assert!(!store.path_of(&digest, "image").exists());
    assert_eq!(store.get(&digest, "image").expect("get"), None);

    // The next build takes the dead process's lock, clears its remains and
    // produces what an uninterrupted build produces.
    let rebuilt = store
        .build(&digest, "image", |out| write_image(out, None))
        .expect("rebuild");
    let reference_store = Store::open(&dir.path().join("reference")).expect("open");
    let reference = reference_store
        .build(&digest, "image", |out| write_image(out, None))
        .expect("reference build");
    assert_eq!(rebuilt.content_hash, reference.content_hash);
    assert_eq!(
        fs::metadata(rebuilt.path.join("image.raw"))
            .expect("stat")
            .len(),
        (CHUNKS * CHUNK_LEN) as u64
    );
    assert_eq!(fs::read_dir(root.join(".tmp")).expect("ls").count(), 0);
}

fn a_store_open_in_another_process_holds_off_a_collection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let go = dir.path().join("go");
    let mut child = spawn_helper("hold-open", &root, &[(GO_ENV, &go)]);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "open\n", "the helper opened the store");
    assert!(
        Collector::try_open(&root).expect("try").is_none(),
        "a collection while another process has the store open"
    );
    // A build in this process runs beside the other process's.
    drop(Store::open(&root).expect("a second store"));
    fs::write(&go, "").expect("let the helper go");
    assert!(child.wait().expect("wait").success());
    assert!(Collector::try_open(&root).expect("try").is_some());
}

fn a_collection_killed_with_sigkill_leaves_no_half_deleted_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let digest = doomed_digest();
    let store = Store::open_with(&root, Durability::ProcessCrashOnly).expect("open");
    let doomed = store
        .build(&digest, "doomed", |out| {
            for dir_index in 0..DOOMED_DIRS {
                let dir = out.join(dir_index.to_string());
                fs::create_dir(&dir)?;
                for file_index in 0..DOOMED_FILES {
                    fs::write(dir.join(file_index.to_string()), file_index.to_string())?;
                }
            }
            Ok::<(), std::io::Error>(())
        })
        .expect("build");
    drop(store);

    let mut child = spawn_helper("collect", &root, &[]);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    assert_eq!(line, "removing\n", "the helper started removing");
    // Into the deletion, most likely; the assertions below hold wherever it lands.
    thread::sleep(Duration::from_millis(20));
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "the helper died of SIGKILL");

    // The path is whole where it was, or gone from there: never half deleted.
    let store = Store::open(&root).expect("reopen");
    match store.get(&digest, "doomed").expect("get") {
        Some(object) => {
            assert_eq!(object.content_hash, doomed.content_hash);
            assert_eq!(
                kiln_store::tree_hash(&object.path).expect("hash"),
                doomed.content_hash,
                "a path in place is complete"
            );
        }
        None => assert!(!doomed.path.exists()),
    }
    drop(store);

    // The next collection removes whatever is left.
    let collector = Collector::open(&root).expect("collector");
    for piece in collector.garbage(&[]).expect("garbage") {
        assert!(
            piece.kind == GarbageKind::Leftover || piece.path == doomed.path,
            "{piece:?}"
        );
        collector.remove(&piece).expect("remove");
    }
    assert!(!doomed.path.exists());
    assert_eq!(fs::read_dir(root.join(".tmp")).expect("ls").count(), 0);
}
