//! Progress reporting: the events of an evaluation and the observers that
//! receive them.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use crate::derivation::DrvId;

/// Something that happened during an evaluation. Events borrow from the
/// graph, so reporting them allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The evaluation has looked up every derivation: `cached` of `total`
    /// are already in the store.
    Planned {
        /// The number of derivations in the graph.
        total: usize,
        /// How many of them are already in the store.
        cached: usize,
    },
    /// A derivation's output was found in the store instead of built.
    Substituted {
        /// The derivation.
        id: &'a DrvId,
    },
    /// A builder started.
    Started {
        /// The derivation.
        id: &'a DrvId,
    },
    /// A running builder reported progress.
    Message {
        /// The derivation.
        id: &'a DrvId,
        /// What it said.
        message: &'a str,
    },
    /// A builder finished and its output is in the store.
    Finished {
        /// The derivation.
        id: &'a DrvId,
        /// How long the build took, for people (never part of an output).
        seconds: f64,
    },
    /// A build failed.
    Failed {
        /// The derivation.
        id: &'a DrvId,
        /// The error, as text.
        error: &'a str,
    },
}

/// Receives [`Event`]s, from several worker threads at once.
pub trait Observer: Sync {
    /// Called for each event.
    fn event(&self, event: &Event<'_>);
}

impl<F: Fn(&Event<'_>) + Sync> Observer for F {
    fn event(&self, event: &Event<'_>) {
        self(event);
    }
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullObserver;

impl Observer for NullObserver {
    fn event(&self, _event: &Event<'_>) {}
}

/// Writes human progress lines, one per event worth a person's attention:
///
/// ```text
/// 12 derivations from the store, 3 to build
/// building pki/ca
/// pki/ca: generating key
/// built pki/ca in 0.4s
/// failed node/n1/image: ...
/// ```
///
/// Meant for a terminal, where someone watches; a log wants
/// [`LogProgress`](crate::LogProgress). Write errors are ignored, as progress is optional.
#[derive(Debug)]
pub struct LineProgress<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> LineProgress<W> {
    /// Writes lines to `out` (usually `std::io::stderr()`).
    pub fn new(out: W) -> LineProgress<W> {
        LineProgress {
            out: Mutex::new(out),
        }
    }

    /// Returns the writer.
    pub fn into_inner(self) -> W {
        match self.out.into_inner() {
            Ok(out) => out,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

impl<W: Write + Send> Observer for LineProgress<W> {
    fn event(&self, event: &Event<'_>) {
        let mut out = match self.out.lock() {
            Ok(out) => out,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Progress is best effort: a closed terminal must not fail a build.
        let _ = match event {
            Event::Planned { total, cached } => writeln!(
                out,
                "{cached} derivations from the store, {} to build",
                total.saturating_sub(*cached)
            ),
            Event::Substituted { .. } => Ok(()),
            Event::Started { id } => writeln!(out, "building {id}"),
            Event::Message { id, message } => writeln!(out, "{id}: {message}"),
            Event::Finished { id, seconds } => writeln!(out, "built {id} in {seconds:.1}s"),
            Event::Failed { id, error } => writeln!(out, "failed {id}: {error}"),
        };
        let _ = out.flush();
    }
}

/// Formats a duration for people as minutes and seconds, `3m10s` (`0m05s`, `75m00s`),
/// rounded down to the second: the one format of kiln's progress lines.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(kiln_graph::format_elapsed(Duration::from_millis(190_900)), "3m10s");
/// ```
pub fn format_elapsed(elapsed: Duration) -> String {
    let seconds = elapsed.as_secs();
    format!("{}m{:02}s", seconds / 60, seconds % 60)
}
