//! Builders and graph constructors shared by the graph's integration tests.

#![allow(dead_code, missing_docs)]

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kiln_graph::{
    BuildContext, BuildError, Builder, Derivation, DrvId, Event, Graph, Observer, Params,
};

/// What a test builder does.
#[derive(Clone)]
pub enum Behavior {
    /// Writes `out/out`: its params, then each input's `out` file, by input name.
    Concat,
    /// Like `Concat`, and also writes `out/counter` from a shared counter, so
    /// no two builds agree.
    Nondeterministic(Arc<AtomicU64>),
    /// Writes these exact bytes to `out/out`.
    Write(Vec<u8>),
    /// Reports a message, then behaves like `Concat`.
    Report(String),
    /// Runs this (which may report, or move a test's clock), then behaves like `Concat`.
    Run(Arc<dyn Fn(&BuildContext<'_>) + Send + Sync>),
    /// Fails with this message after writing a partial file.
    Fail(String),
    /// Panics with this message.
    Panic(String),
}

/// Records which builders ran, in the order they finished.
#[derive(Default)]
pub struct Log {
    finished: Mutex<Vec<DrvId>>,
}

impl Log {
    pub fn finished(&self) -> Vec<DrvId> {
        self.finished.lock().expect("log lock").clone()
    }

    pub fn runs(&self) -> usize {
        self.finished.lock().expect("log lock").len()
    }
}

pub struct TestBuilder {
    pub kind: String,
    pub version: u32,
    pub params: Vec<u8>,
    pub behavior: Behavior,
    pub log: Arc<Log>,
    /// What [`Builder::holds_secrets`] says.
    pub secret: bool,
}

impl TestBuilder {
    pub fn new(params: &str, behavior: Behavior, log: &Arc<Log>) -> TestBuilder {
        TestBuilder {
            kind: "kiln-graph-tests.test".to_owned(),
            version: 1,
            params: params.as_bytes().to_vec(),
            behavior,
            log: Arc::clone(log),
            secret: false,
        }
    }
}

impl Builder for TestBuilder {
    fn kind(&self) -> &str {
        &self.kind
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn params(&self) -> Params {
        Params::of(self.params.as_slice())
    }

    fn holds_secrets(&self) -> bool {
        self.secret
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let out = ctx.out().join("out");
        match &self.behavior {
            Behavior::Fail(message) => {
                fs::write(&out, "partial").map_err(|e| BuildError::io(&out, e))?;
                return Err(BuildError::new(message.clone()));
            }
            Behavior::Panic(message) => panic!("{message}"),
            Behavior::Write(bytes) => {
                fs::write(&out, bytes).map_err(|e| BuildError::io(&out, e))?;
            }
            Behavior::Report(message) => {
                ctx.report(message);
                concat(ctx, &self.params)?;
            }
            Behavior::Run(run) => {
                run(ctx);
                concat(ctx, &self.params)?;
            }
            Behavior::Concat => concat(ctx, &self.params)?,
            Behavior::Nondeterministic(counter) => {
                concat(ctx, &self.params)?;
                let count = counter.fetch_add(1, Ordering::SeqCst);
                let path = ctx.out().join("counter");
                fs::write(&path, count.to_string()).map_err(|e| BuildError::io(&path, e))?;
            }
        }
        self.log
            .finished
            .lock()
            .expect("log lock")
            .push(ctx.id().clone());
        Ok(())
    }
}

/// Reads every input's `out` (which must exist: inputs are built first) and
/// writes the params followed by them.
fn concat(ctx: &BuildContext<'_>, params: &[u8]) -> Result<(), BuildError> {
    let mut contents = params.to_vec();
    let names: Vec<String> = ctx.input_names().map(str::to_owned).collect();
    for name in names {
        let path = ctx.input(&name)?.join("out");
        let input = fs::read(&path)
            .map_err(|e| BuildError::io(&path, e).context(format!("reading input {name}")))?;
        contents.extend_from_slice(format!("\n{name}:").as_bytes());
        contents.extend_from_slice(&input);
    }
    let out = ctx.out().join("out");
    fs::write(&out, contents).map_err(|e| BuildError::io(&out, e))
}

/// A graph of `Concat` derivations from `(id, [(input name, input id)])`;
/// each derivation's params are its id, its store name its id with `/`
/// replaced by `-`.
pub fn concat_graph(spec: &[(&str, &[(&str, &str)])], log: &Arc<Log>) -> Graph {
    let mut graph = Graph::new();
    for (id, inputs) in spec {
        graph
            .add(*id, concat_derivation(id, inputs, Behavior::Concat, log))
            .expect("add");
    }
    graph
}

pub fn concat_derivation(
    id: &str,
    inputs: &[(&str, &str)],
    behavior: Behavior,
    log: &Arc<Log>,
) -> Derivation {
    let mut derivation = Derivation::new(
        id.replace('/', "-"),
        Arc::new(TestBuilder::new(id, behavior, log)),
    );
    for (name, target) in inputs {
        derivation = derivation.input(*name, *target);
    }
    derivation
}

/// An observer that keeps every event as a line of text.
#[derive(Default)]
pub struct Recorder {
    lines: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("recorder lock").clone()
    }
}

impl Observer for Recorder {
    fn event(&self, event: &Event<'_>) {
        let line = match event {
            Event::Planned { total, cached } => format!("planned {total} cached {cached}"),
            Event::Substituted { id } => format!("substituted {id}"),
            Event::Started { id } => format!("started {id}"),
            Event::Message { id, message } => format!("message {id}: {message}"),
            // Durations vary from run to run; only their presence is recorded.
            Event::Finished { id, seconds } => {
                assert!(*seconds >= 0.0);
                format!("finished {id}")
            }
            Event::Failed { id, error } => format!("failed {id}: {error}"),
            other => format!("{other:?}"),
        };
        self.lines.lock().expect("recorder lock").push(line);
    }
}
