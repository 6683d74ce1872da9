//! Tests of `LogProgress`, the observer for logs: what a build writes when no terminal
//! watches it, with time driven by hand so each test asserts exact lines.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use expect_test::expect;
use kiln_graph::{DrvId, EvalOptions, Event, Graph, LogProgress, Observer};
use kiln_store::Store;

use support::{Behavior, Log, concat_derivation};

/// A clock that moves only when a test says so.
#[derive(Clone, Default)]
struct Clock(Arc<Mutex<Duration>>);

impl Clock {
    /// Sets the time since the build started.
    fn at(&self, seconds: f64) {
        let mut now = self.0.lock().expect("clock lock");
        let then = Duration::from_secs_f64(seconds);
        assert!(then >= *now, "the test moved its clock backwards");
        *now = then;
    }

    fn now(&self) -> Duration {
        *self.0.lock().expect("clock lock")
    }
}

/// A log the test can read while the observer still writes to it.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    /// What was written since the last call.
    fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.lock().expect("buffer lock"));
        String::from_utf8(bytes).expect("utf-8")
    }
}

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An observer timed by `clock`, and the buffer it writes to.
fn log_progress(clock: &Clock) -> (LogProgress<Buffer>, Buffer) {
    let buffer = Buffer::default();
    let clock = clock.clone();
    let progress = LogProgress::with_clock(buffer.clone(), move || clock.now());
    (progress, buffer)
}

/// Ticks once a second from `from` to `to` seconds, inclusive, as the heartbeat thread does.
fn tick_each_second(progress: &LogProgress<Buffer>, clock: &Clock, from: u32, to: u32) {
    for second in from..=to {
        clock.at(f64::from(second));
        progress.tick();
    }
}

#[test]
fn quick_derivations_write_nothing_but_the_plan() {
    let clock = Clock::default();
    let (progress, log) = log_progress(&clock);
    progress.event(&Event::Planned {
        total: 8_100,
        cached: 100,
    });
    progress.event(&Event::Substituted {
        id: &DrvId::from("pki/ca"),
    });
    // A 1000-node cluster's 8,000 derivations, 4 ms each, two at a time, with ticks between.
    for pair in 0..4_000_u32 {
        let ids = [0, 1].map(|half| {
            let index = pair * 2 + half;
            DrvId::new(format!("node/n{}/file{}", index / 8, index % 8))
        });
        let start = f64::from(pair) * 0.005;
        clock.at(start);
        for id in &ids {
            progress.event(&Event::Started { id });
            progress.event(&Event::Message {
                id,
                message: "rendering",
            });
        }
        if pair % 50 == 0 {
            progress.tick();
        }
        clock.at(start + 0.004);
        for id in &ids {
            progress.event(&Event::Finished { id, seconds: 0.004 });
        }
    }
    progress.tick();
    expect![[r#"
        [  0m00s] 100 derivations from the store, 8000 to build
    "#]]
    .assert_eq(&log.take());
}

#[test]
fn a_slow_derivation_is_announced_and_its_end_reported() {
    let clock = Clock::default();
    let (progress, log) = log_progress(&clock);
    let kubernetes = DrvId::from("image/kubernetes-binaries");
    let quick = DrvId::from("pki/ca");
    let between_ticks = DrvId::from("image/base-os");
    progress.event(&Event::Started { id: &kubernetes });
    progress.event(&Event::Started { id: &quick });
    clock.at(0.2);
    progress.event(&Event::Started { id: &between_ticks });
    clock.at(0.5);
    progress.event(&Event::Finished {
        id: &quick,
        seconds: 0.5,
    });
    tick_each_second(&progress, &clock, 1, 4);
    // Up to here each could have been quick.
    assert_eq!(log.take(), "");

    tick_each_second(&progress, &clock, 5, 5);
    // Past the threshold but finished before the tick that would have announced it: the
    // time it took is still worth a line.
    clock.at(5.5);
    progress.event(&Event::Finished {
        id: &between_ticks,
        seconds: 5.3,
    });
    tick_each_second(&progress, &clock, 6, 20);
    clock.at(20.3);
    progress.event(&Event::Finished {
        id: &kubernetes,
        seconds: 20.3,
    });
    expect![[r#"
        [  0m05s] building image/kubernetes-binaries
        [  0m05s] built image/base-os in 5.3s
        [  0m20s] built image/kubernetes-binaries in 20.3s
    "#]]
    .assert_eq(&log.take());
}

#[test]
fn builder_messages_are_rate_limited_to_the_latest() {
    let clock = Clock::default();
    let (progress, log) = log_progress(&clock);
    let kubernetes = DrvId::from("image/kubernetes-binaries");
    progress.event(&Event::Started { id: &kubernetes });
    progress.event(&Event::Message {
        id: &kubernetes,
        message: "fetching source indices",
    });
    // Like the Kubernetes build: a message every 10 s, ticks every second.
    for second in 1..=130_u32 {
        clock.at(f64::from(second));
        if second % 10 == 0 {
            progress.event(&Event::Message {
                id: &kubernetes,
                message: &format!("compiling package {}", second / 10),
            });
        }
        progress.tick();
    }
    progress.event(&Event::Finished {
        id: &kubernetes,
        seconds: 130.0,
    });
    // 14 messages in 130 s, 5 lines of them, each the latest when written.
    expect![[r#"
        [  0m05s] building image/kubernetes-binaries: fetching source indices
        [  0m35s] image/kubernetes-binaries: compiling package 3
        [  1m05s] image/kubernetes-binaries: compiling package 6
        [  1m35s] image/kubernetes-binaries: compiling package 9
        [  2m05s] image/kubernetes-binaries: compiling package 12
        [  2m10s] built image/kubernetes-binaries in 130.0s
    "#]]
    .assert_eq(&log.take());
}

#[test]
fn a_silent_derivation_writes_a_line_at_least_once_a_minute() {
    let clock = Clock::default();
    let (progress, log) = log_progress(&clock);
    let silent = DrvId::from("image/silent");
    let squashfs = DrvId::from("node/n1/image");
    progress.event(&Event::Started { id: &silent });
    progress.event(&Event::Started { id: &squashfs });
    progress.event(&Event::Message {
        id: &squashfs,
        message: "packing rootfs.squashfs",
    });
    tick_each_second(&progress, &clock, 1, 70);
    // A message just after a heartbeat waits out the rate limit.
    clock.at(70.5);
    progress.event(&Event::Message {
        id: &squashfs,
        message: "packing the layer",
    });
    tick_each_second(&progress, &clock, 71, 190);
    expect![[r#"
        [  0m05s] building image/silent
        [  0m05s] building node/n1/image: packing rootfs.squashfs
        [  1m05s] still building image/silent (1m05s)
        [  1m05s] still building node/n1/image (1m05s): packing rootfs.squashfs
        [  1m35s] node/n1/image: packing the layer
        [  2m05s] still building image/silent (2m05s)
        [  2m35s] still building node/n1/image (2m35s): packing the layer
        [  3m05s] still building image/silent (3m05s)
    "#]]
    .assert_eq(&log.take());
}

#[test]
fn failures_are_always_written() {
    let clock = Clock::default();
    let (progress, log) = log_progress(&clock);
    let quick = DrvId::from("pki/ca");
    let slow = DrvId::from("image/base-os");
    let never_started = DrvId::from("node/n1/plan");
    progress.event(&Event::Started { id: &quick });
    progress.event(&Event::Started { id: &slow });
    clock.at(0.1);
    progress.event(&Event::Failed {
        id: &quick,
        error: "disk full",
    });
    progress.event(&Event::Failed {
        id: &never_started,
        error: "the store is read-only",
    });
    tick_each_second(&progress, &clock, 1, 10);
    progress.event(&Event::Failed {
        id: &slow,
        error: "mmdebstrap exited with 1",
    });
    // A failed derivation is no longer running: no line a minute later.
    tick_each_second(&progress, &clock, 11, 120);
    expect![[r#"
        [  0m00s] failed pki/ca: disk full
        [  0m00s] failed node/n1/plan: the store is read-only
        [  0m05s] building image/base-os
        [  0m10s] failed image/base-os: mmdebstrap exited with 1
    "#]]
    .assert_eq(&log.take());
}

#[test]
fn an_evaluation_writes_only_what_takes_time() {
    let clock = Clock::default();
    let (progress, log) = log_progress(&clock);
    let builds = Arc::new(Log::default());
    let slow = {
        let clock = clock.clone();
        Behavior::Run(Arc::new(move |ctx| {
            clock.at(6.0);
            ctx.report("compiling");
            clock.at(20.0);
            ctx.report("still compiling");
            clock.at(40.0);
            ctx.report("linking");
        }))
    };
    let mut graph = Graph::new();
    for (id, inputs) in [
        ("pki/ca", &[][..]),
        ("pki/apiserver", &[("ca", "pki/ca")][..]),
        ("node/n1/plan", &[("api", "pki/apiserver")][..]),
    ] {
        graph
            .add(id, concat_derivation(id, inputs, Behavior::Concat, &builds))
            .expect("add");
    }
    graph
        .add(
            "image/kubernetes-binaries",
            concat_derivation("image/kubernetes-binaries", &[], slow, &builds),
        )
        .expect("add");
    graph
        .add(
            "node/n1/image",
            concat_derivation(
                "node/n1/image",
                &[
                    ("plan", "node/n1/plan"),
                    ("kubernetes", "image/kubernetes-binaries"),
                ],
                Behavior::Report("packing".to_owned()),
                &builds,
            ),
        )
        .expect("add");
    let graph = graph.validate().expect("valid");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("open");
    // One job: a quick builder running beside the slow one would see the test's clock jump.
    graph
        .evaluate(&store, &EvalOptions { jobs: 1 }, &progress)
        .expect("evaluate");
    assert_eq!(builds.runs(), 5);

    // The builder took microseconds by the real clock; only its line's number says so.
    let text = log.take();
    let (text, seconds) = text
        .trim_end()
        .rsplit_once(" in ")
        .expect("a last line with a time");
    assert!(seconds.ends_with('s') && seconds.trim_end_matches('s').parse::<f64>().is_ok());
    expect![[r#"
        [  0m00s] 0 derivations from the store, 5 to build
        [  0m06s] building image/kubernetes-binaries: compiling
        [  0m40s] image/kubernetes-binaries: linking
        [  0m40s] built image/kubernetes-binaries"#]]
    .assert_eq(text);

    // Built again, everything comes from the store: one line.
    graph
        .evaluate(&store, &EvalOptions { jobs: 1 }, &progress)
        .expect("evaluate");
    assert_eq!(
        log.take(),
        "[  0m40s] 5 derivations from the store, 0 to build\n"
    );
}

#[test]
fn the_real_clock_and_its_thread() {
    let progress = LogProgress::new(Buffer::default());
    progress.event(&Event::Planned {
        total: 3,
        cached: 1,
    });
    // Stopping the heartbeat thread returns: into_inner and drop join it.
    let text =
        String::from_utf8(progress.into_inner().0.lock().expect("lock").clone()).expect("utf-8");
    assert!(text.starts_with('['), "{text}");
    assert!(
        text.ends_with("] 1 derivations from the store, 2 to build\n"),
        "{text}"
    );
    drop(LogProgress::new(std::io::sink()));
}
