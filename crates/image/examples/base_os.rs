//! Builds the base OS into a directory outside any store and prints its content hash: how the
//! pin `BASE_OS_CONTENT_HASH` and `crates/image/base-os.lock` are made (or remade, when Debian's
//! point releases move the packages on). A build through the graph then proves the pin.
//!
//! ```text
//! cargo run --release -p kiln-image --example base_os -- <new-dir>
//! ```

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: base_os <new-dir>");
        return ExitCode::FAILURE;
    };
    let out = std::path::PathBuf::from(out);
    let started = Instant::now();
    let result = (|| -> Result<kiln_store::Digest, Box<dyn std::error::Error>> {
        kiln_image::ensure_image_tools()?;
        std::fs::create_dir(&out)?;
        kiln_image::BaseOs::new()
            .with_lock("")
            .build_into(&out, &|message| {
                eprintln!("[{:>4}s] {message}", started.elapsed().as_secs())
            })?;
        Ok(kiln_store::tree_hash(&out)?)
    })();
    match result {
        Ok(hash) => {
            println!("content hash: {hash}");
            println!("lock file: {}", out.join("packages.lock").display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
