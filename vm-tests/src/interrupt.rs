//! Ctrl-C and SIGTERM: a flag the wait loops poll, so an interrupted run unwinds normally and
//! every [`crate::Vm`] is dropped (and its QEMU killed) on the way out.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler: the first Ctrl-C (or SIGTERM, SIGHUP) sets the flag that the harness's
/// waits check; a second one exits at once (QEMU still dies with the harness, through its
/// parent-death signal). Call once, from a program's `main`; a second call is an error.
pub fn install_interrupt_handler() -> crate::Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            eprintln!("interrupted twice: exiting without cleanup");
            std::process::exit(130);
        }
        eprintln!("interrupted: stopping the guests (Ctrl-C again to exit at once)");
    })
    .map_err(|error| {
        crate::Error::io(
            "installing the Ctrl-C handler",
            std::io::Error::other(error),
        )
    })
}

/// Whether the user asked the run to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}
