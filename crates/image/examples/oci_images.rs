//! Builds kiln's container images (Debian's busybox fetched with apt, then
//! the pause and test images as OCI archives) into a store and prints where
//! they are: `cargo run -p kiln-image --example oci_images -- <store-dir> [epoch]`.

use std::path::PathBuf;

use kiln_graph::{DrvId, EvalOptions, Graph, NullObserver};
use kiln_image::{
    lock::Lock,
    oci::{IMAGES_INDEX_FILE, busybox_static, container_images},
    resolve::AptSources,
};
use kiln_store::Store;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let store_dir = PathBuf::from(args.next().ok_or("usage: oci_images <store-dir> [epoch]")?);
    let epoch: u64 = args.next().map_or(Ok(0), |text| text.parse())?;

    // busybox as the repository's kiln.lock pins it, from the machine's apt sources.
    let lock_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../kiln.lock");
    let lock = Lock::parse(&std::fs::read_to_string(lock_file)?, lock_file)?;
    let sources = AptSources::machine("/etc/apt".as_ref())?;
    let mut graph = Graph::new();
    graph.add("busybox", busybox_static(&lock.busybox, &sources)?)?;
    graph.add("images", container_images("busybox", epoch))?;
    let graph = graph.validate()?;
    let store = Store::open(&store_dir)?;
    let evaluation = graph.evaluate(&store, &EvalOptions::default(), &NullObserver)?;
    let output = &evaluation.outputs[&DrvId::from("images")].path;
    println!("{}", output.display());
    print!(
        "{}",
        std::fs::read_to_string(output.join(IMAGES_INDEX_FILE))?
    );
    Ok(())
}
