//! [`LogProgress`]: progress for a log file or a CI job, where a line per derivation would bury
//! the few steps that take the time, and nothing for minutes looks like a hang.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::derivation::DrvId;
use crate::observer::{Event, Observer, format_elapsed};

/// Writes progress lines for a log that is not a terminal: what takes the time, at least once a
/// minute, and nothing about what is quick. Each line starts with the time since the observer
/// was made:
///
/// ```text
/// [  0m00s] 3 derivations from the store, 41 to build
/// [  0m05s] building image/kubernetes-binaries: fetching source indices with apt
/// [  0m35s] image/kubernetes-binaries: [0m30s] compiling k8s.io/api
/// [ 13m05s] built image/kubernetes-binaries in 785.2s
/// [ 13m06s] failed node/n1/image: ...
/// ```
///
/// - the plan (`Planned`) and every failure are always written;
/// - a derivation is announced (`building ...`, with its builder's latest message) once it has
///   run for 5 s; one that finishes sooner writes nothing, so a graph of thousands of quick
///   derivations writes one line;
/// - an announced derivation's builder messages are written at most once per 30 s per
///   derivation, the latest one each time (the ones in between are dropped);
/// - an announced derivation writes a line at least once a minute, `still building ... (3m10s)`
///   with the latest message if its builder said nothing new;
/// - one that has run for 5 s ends with `built ... in 312.4s`.
///
/// The once-a-minute lines need something to happen when no event does: [`LogProgress::new`]
/// starts a thread that calls [`LogProgress::tick`] every second until the observer is dropped.
/// [`LogProgress::with_clock`] starts none and reads time from the caller, so tests can drive
/// both by hand. Write errors are ignored, as progress is optional.
pub struct LogProgress<W: Write + Send + 'static> {
    shared: Arc<Shared<W>>,
    heartbeat: Option<Heartbeat>,
}

impl<W: Write + Send + 'static> LogProgress<W> {
    /// Writes lines to `out` (usually `std::io::stderr()`), timed by the monotonic clock from
    /// now, with a thread that writes the lines due while no event arrives. The thread stops
    /// when the observer is dropped; if it cannot be started, only events write lines.
    pub fn new(out: W) -> LogProgress<W> {
        let origin = Instant::now();
        let mut progress = LogProgress::with_clock(out, move || origin.elapsed());
        progress.heartbeat = Heartbeat::start(Arc::clone(&progress.shared));
        progress
    }

    /// Writes lines to `out`, reading the time since the build started from `clock`, which
    /// must never go backwards. Starts no thread: the caller calls [`LogProgress::tick`].
    pub fn with_clock(
        out: W,
        clock: impl Fn() -> Duration + Send + Sync + 'static,
    ) -> LogProgress<W> {
        LogProgress {
            shared: Arc::new(Shared {
                clock: Box::new(clock),
                state: Mutex::new(State {
                    out,
                    running: BTreeMap::new(),
                }),
            }),
            heartbeat: None,
        }
    }

    /// Writes the lines due now without an event: announcements of derivations that have
    /// passed 5 s, builder messages held back by the rate limit, and the once-a-minute lines.
    pub fn tick(&self) {
        self.shared.tick();
    }

    /// Stops the thread, if any, and returns the writer.
    pub fn into_inner(mut self) -> W {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.stop();
        }
        let shared = Arc::clone(&self.shared);
        drop(self);
        match Arc::try_unwrap(shared) {
            Ok(shared) => {
                shared
                    .state
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .out
            }
            Err(_) => unreachable!("the heartbeat thread, the only other owner, has been joined"),
        }
    }
}

impl<W: Write + Send + 'static> Observer for LogProgress<W> {
    fn event(&self, event: &Event<'_>) {
        self.shared.event(event);
    }
}

impl<W: Write + Send + 'static> Drop for LogProgress<W> {
    fn drop(&mut self) {
        if let Some(heartbeat) = self.heartbeat.take() {
            heartbeat.stop();
        }
    }
}

impl<W: Write + Send + 'static> fmt::Debug for LogProgress<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogProgress")
            .field("heartbeat", &self.heartbeat.is_some())
            .finish_non_exhaustive()
    }
}

/// How long a derivation runs before it is announced.
const ANNOUNCE_AFTER: Duration = Duration::from_secs(5);
/// The least time between two lines about a derivation that carry new builder messages.
const MESSAGE_INTERVAL: Duration = Duration::from_secs(30);
/// The most time between two lines about an announced derivation.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(60);
/// How often the heartbeat thread ticks: the lateness of a due line.
const TICK: Duration = Duration::from_secs(1);

/// What the observer and its heartbeat thread share.
struct Shared<W> {
    clock: Box<dyn Fn() -> Duration + Send + Sync>,
    state: Mutex<State<W>>,
}

struct State<W> {
    out: W,
    /// The derivations started and not yet finished, by id so that lines come in a stable order.
    running: BTreeMap<DrvId, Running>,
}

/// A derivation whose builder is running.
struct Running {
    started: Duration,
    announced: bool,
    /// When the last line about it was written (meaningful once announced).
    last_line: Duration,
    /// The builder's latest message.
    message: Option<String>,
    /// Whether a line has carried `message` since it arrived.
    message_written: bool,
}

impl<W: Write> Shared<W> {
    fn lock(&self) -> MutexGuard<'_, State<W>> {
        // A panic in one writer leaves nothing half-updated that matters for progress.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn event(&self, event: &Event<'_>) {
        let now = (self.clock)();
        let mut state = self.lock();
        match event {
            Event::Planned { total, cached } => state.write(
                now,
                &format!(
                    "{cached} derivations from the store, {} to build",
                    total.saturating_sub(*cached)
                ),
            ),
            Event::Substituted { .. } => {}
            Event::Started { id } => {
                state.running.insert((*id).clone(), Running::new(now));
            }
            Event::Message { id, message } => {
                let line = state.running.get_mut(*id).and_then(|running| {
                    running.message = Some((*message).to_owned());
                    running.message_written = false;
                    running.due(id, now)
                });
                if let Some(line) = line {
                    state.write(now, &line);
                }
            }
            Event::Finished { id, seconds } => {
                // One that passed the threshold between two ticks is reported all the same:
                // its time is what a reader of the log wants to know.
                let slow = state.running.remove(*id).is_some_and(|running| {
                    running.announced || now.saturating_sub(running.started) >= ANNOUNCE_AFTER
                });
                if slow {
                    state.write(now, &format!("built {id} in {seconds:.1}s"));
                }
            }
            Event::Failed { id, error } => {
                state.running.remove(*id);
                state.write(now, &format!("failed {id}: {error}"));
            }
        }
    }

    fn tick(&self) {
        let now = (self.clock)();
        let mut state = self.lock();
        let lines: Vec<String> = state
            .running
            .iter_mut()
            .filter_map(|(id, running)| running.due(id, now))
            .collect();
        for line in lines {
            state.write(now, &line);
        }
    }
}

impl<W: Write> State<W> {
    fn write(&mut self, now: Duration, line: &str) {
        // Progress is best effort: a closed pipe must not fail a build.
        let _ = writeln!(self.out, "[{:>7}] {line}", format_elapsed(now));
        let _ = self.out.flush();
    }
}

impl Running {
    fn new(now: Duration) -> Running {
        Running {
            started: now,
            announced: false,
            last_line: now,
            message: None,
            message_written: false,
        }
    }

    /// The line due about this derivation at `now`, if any, recorded as written.
    fn due(&mut self, id: &DrvId, now: Duration) -> Option<String> {
        let running_for = now.saturating_sub(self.started);
        let quiet_for = now.saturating_sub(self.last_line);
        let line = if !self.announced {
            if running_for < ANNOUNCE_AFTER {
                return None;
            }
            self.announced = true;
            match &self.message {
                Some(message) => format!("building {id}: {message}"),
                None => format!("building {id}"),
            }
        } else if let Some(message) = self
            .message
            .as_ref()
            .filter(|_| !self.message_written && quiet_for >= MESSAGE_INTERVAL)
        {
            format!("{id}: {message}")
        } else if quiet_for >= HEARTBEAT_INTERVAL {
            let running_for = format_elapsed(running_for);
            match &self.message {
                Some(message) => format!("still building {id} ({running_for}): {message}"),
                None => format!("still building {id} ({running_for})"),
            }
        } else {
            return None;
        };
        self.last_line = now;
        self.message_written = true;
        Some(line)
    }
}

/// The thread behind [`LogProgress::new`] and the way to stop it.
struct Heartbeat {
    stop: Arc<Stop>,
    thread: JoinHandle<()>,
}

#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Heartbeat {
    fn start<W: Write + Send + 'static>(shared: Arc<Shared<W>>) -> Option<Heartbeat> {
        let stop = Arc::new(Stop::default());
        let thread = std::thread::Builder::new()
            .name("kiln-progress".to_owned())
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    loop {
                        let stopped = stop.stopped.lock().unwrap_or_else(PoisonError::into_inner);
                        // Waiting on the condition variable, not sleeping, lets a drop end
                        // the thread at once instead of up to a tick later.
                        let (stopped, _) = stop
                            .wake
                            .wait_timeout_while(stopped, TICK, |stopped| !*stopped)
                            .unwrap_or_else(PoisonError::into_inner);
                        if *stopped {
                            return;
                        }
                        drop(stopped);
                        shared.tick();
                    }
                }
            })
            .ok()?;
        Some(Heartbeat { stop, thread })
    }

    fn stop(self) {
        *self
            .stop
            .stopped
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.wake.notify_all();
        // A panic in the thread lost only progress lines; the build goes on.
        let _ = self.thread.join();
    }
}
