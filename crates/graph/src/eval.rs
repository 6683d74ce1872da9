//! Evaluation: realising a validated graph in a store, in parallel, and
//! checking that rebuilding each derivation reproduces its output.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use kiln_store::{
    BuildFailure, Difference, Digest, Store, StoreError, StoreObject, first_difference,
};

use crate::builder::{BuildContext, BuildError};
use crate::derivation::{Addressing, Derivation, DrvId};
use crate::error::EvalError;
use crate::graph::{Node, ValidatedGraph};
use crate::observer::{Event, Observer};
use crate::parallel::{join, map_chunks, threads_for};

/// How to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOptions {
    /// How many builders run at once (0 is taken as 1).
    pub jobs: usize,
}

impl Default for EvalOptions {
    /// As many jobs as the machine has cores.
    fn default() -> EvalOptions {
        EvalOptions {
            jobs: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

/// The result of [`ValidatedGraph::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Every derivation's output.
    pub outputs: BTreeMap<DrvId, StoreObject>,
    /// How many derivations were built by this evaluation.
    pub built: usize,
    /// How many were found already in the store.
    pub substituted: usize,
}

/// A derivation whose rebuild differs from its output in the store, found
/// by [`ValidatedGraph::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The derivation.
    pub id: DrvId,
    /// Its store name.
    pub name: String,
    /// The content hash of the output in the store.
    pub expected: Digest,
    /// The content hash of the rebuild.
    pub actual: Digest,
    /// The first differing file, relative to the output's root (`None` if
    /// the trees could not be compared).
    pub first_difference: Option<Difference>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}) is not reproducible: content hash {} in the store, {} when rebuilt",
            self.id, self.name, self.expected, self.actual
        )?;
        if let Some(difference) = &self.first_difference {
            write!(f, "; first difference: {difference}")?;
        }
        Ok(())
    }
}

/// Outputs indexed by topological position, filled as builds finish.
type Outputs = Vec<OnceLock<StoreObject>>;

/// The outcome of rechecking one derivation.
type CheckResult = Result<Option<Mismatch>, EvalError>;

impl ValidatedGraph {
    /// Realises every derivation in `store`: those already present are
    /// substituted (looked up, never rebuilt or re-hashed), the rest are
    /// built in dependency order, independent ones in parallel on
    /// `options.jobs` threads.
    ///
    /// On the first failure no new build starts; running ones finish, and
    /// the error names the failed derivation.
    ///
    /// # Errors
    ///
    /// A builder failed, a fixed output did not match, or the store failed.
    pub fn evaluate(
        &self,
        store: &Store,
        options: &EvalOptions,
        observer: &dyn Observer,
    ) -> Result<Evaluation, EvalError> {
        let realised = self.realise(store, options, observer);
        // Whatever was built, even before a failure, is made durable in one flush.
        let committed = store.commit().map_err(|error| EvalError::Commit { error });
        let (outputs, built, substituted) = realised?;
        committed?;
        let outputs = self
            .nodes
            .iter()
            .zip(outputs)
            .filter_map(|(node, output)| Some((node.id.clone(), output.into_inner()?)))
            .collect();
        Ok(Evaluation {
            outputs,
            built,
            substituted,
        })
    }

    /// Checks that every derivation is reproducible: evaluates the graph in
    /// `store` (if needed), then rebuilds each derivation into `scratch`
    /// from its inputs in `store`, and compares content hashes. Because the
    /// inputs come from `store`, one nondeterministic derivation shows up
    /// alone rather than making all its dependents differ too.
    ///
    /// Returns the mismatches in topological order, each naming the first
    /// differing file; empty when everything is reproducible. Whatever was
    /// in `scratch` for these derivations is replaced.
    ///
    /// # Errors
    ///
    /// As [`ValidatedGraph::evaluate`], and if `scratch` is `store`.
    pub fn check(
        &self,
        store: &Store,
        scratch: &Store,
        options: &EvalOptions,
        observer: &dyn Observer,
    ) -> Result<Vec<Mismatch>, EvalError> {
        self.check_selected(store, scratch, options, observer, &|_, _| true)
    }

    /// Like [`ValidatedGraph::check`], rebuilding only the derivations `select` picks (given
    /// each one's id and derivation). The others are realised in `store` but not rebuilt; a
    /// fixed-output one among them is still compared with its pin, from the content hash the
    /// store recorded. This is how a caller skips ten-minute fixed-output builds, whose pins
    /// already prove every build of them.
    ///
    /// # Errors
    ///
    /// As [`ValidatedGraph::check`].
    pub fn check_selected(
        &self,
        store: &Store,
        scratch: &Store,
        options: &EvalOptions,
        observer: &dyn Observer,
        select: &(dyn Fn(&DrvId, &Derivation) -> bool + Sync),
    ) -> Result<Vec<Mismatch>, EvalError> {
        if store.root() == scratch.root() {
            return Err(EvalError::ScratchIsStore {
                root: store.root().to_owned(),
            });
        }
        let (outputs, _, _) = self.realise(store, options, observer)?;
        observer.event(&Event::Planned {
            total: self.nodes.len(),
            cached: 0,
        });
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let workers = options.jobs.clamp(1, self.nodes.len().max(1));
        let results: Vec<Vec<(usize, CheckResult)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut found = Vec::new();
                        while !stop.load(Ordering::SeqCst) {
                            let index = next.fetch_add(1, Ordering::SeqCst);
                            if index >= self.nodes.len() {
                                break;
                            }
                            let node = &self.nodes[index];
                            let result = if select(&node.id, &node.derivation) {
                                self.recheck(index, scratch, &outputs, observer)
                            } else {
                                Ok(self.pin_mismatch(index, &outputs))
                            };
                            if result.is_err() {
                                stop.store(true, Ordering::SeqCst);
                            }
                            found.push((index, result));
                        }
                        found
                    })
                })
                .collect();
            handles.into_iter().map(join).collect()
        });
        let mut results: Vec<_> = results.into_iter().flatten().collect();
        results.sort_unstable_by_key(|(index, _)| *index);
        let mut mismatches = Vec::new();
        for (_, result) in results {
            if let Some(mismatch) = result? {
                mismatches.push(mismatch);
            }
        }
        Ok(mismatches)
    }

    /// A fixed-output derivation's recorded content hash against its pin (`None` for others).
    fn pin_mismatch(&self, index: usize, outputs: &[OnceLock<StoreObject>]) -> Option<Mismatch> {
        let node = &self.nodes[index];
        let Addressing::Fixed { content_hash } = node.derivation.addressing else {
            return None;
        };
        let original = outputs[index].get()?;
        (original.content_hash != content_hash).then(|| Mismatch {
            id: node.id.clone(),
            name: node.derivation.name.clone(),
            expected: content_hash,
            actual: original.content_hash,
            first_difference: None,
        })
    }

    fn recheck(
        &self,
        index: usize,
        scratch: &Store,
        outputs: &[OnceLock<StoreObject>],
        observer: &dyn Observer,
    ) -> Result<Option<Mismatch>, EvalError> {
        let node = &self.nodes[index];
        let store_error = |error| EvalError::Store {
            id: node.id.clone(),
            error,
        };
        let Some(original) = outputs[index].get() else {
            unreachable!("realise returns every output or an error");
        };
        scratch
            .remove_path(&node.digest, &node.derivation.name)
            .map_err(store_error)?;
        let (rebuilt, _) = guarded(node, || {
            self.build_one(index, scratch, outputs, observer, false)
        })?;
        if rebuilt.content_hash == original.content_hash {
            return Ok(None);
        }
        Ok(Some(Mismatch {
            id: node.id.clone(),
            name: node.derivation.name.clone(),
            expected: original.content_hash,
            actual: rebuilt.content_hash,
            first_difference: first_difference(&original.path, &rebuilt.path)
                .ok()
                .flatten(),
        }))
    }

    /// Looks everything up, then builds what is missing. Returns the outputs
    /// by topological position, and the numbers built and substituted.
    fn realise(
        &self,
        store: &Store,
        options: &EvalOptions,
        observer: &dyn Observer,
    ) -> Result<(Outputs, usize, usize), EvalError> {
        let jobs = options.jobs.max(1);
        let found = self.lookup_all(store, jobs)?;
        let cached = found.iter().filter(|object| object.is_some()).count();
        observer.event(&Event::Planned {
            total: self.nodes.len(),
            cached,
        });
        for (node, object) in self.nodes.iter().zip(&found) {
            if object.is_some() {
                observer.event(&Event::Substituted { id: &node.id });
            }
        }
        let outputs: Outputs = found
            .into_iter()
            .map(|object| match object {
                Some(object) => OnceLock::from(object),
                None => OnceLock::new(),
            })
            .collect();

        let to_build = self.nodes.len() - cached;
        if to_build == 0 {
            return Ok((outputs, 0, cached));
        }
        let mut waiting = vec![0usize; self.nodes.len()];
        let mut ready = BinaryHeap::new();
        for (index, node) in self.nodes.iter().enumerate() {
            if outputs[index].get().is_some() {
                continue;
            }
            waiting[index] = node
                .inputs
                .iter()
                .filter(|(_, input)| outputs[*input].get().is_none())
                .count();
            if waiting[index] == 0 {
                ready.push(Reverse(index));
            }
        }
        let scheduler = Scheduler {
            state: Mutex::new(State {
                ready,
                waiting,
                remaining: to_build,
                built: 0,
                substituted: cached,
                failure: None,
            }),
            wake: Condvar::new(),
        };
        let workers = jobs.min(to_build);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| scope.spawn(|| self.work(&scheduler, store, &outputs, observer)))
                .collect();
            for handle in handles {
                join(handle);
            }
        });
        let state = scheduler
            .state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        match state.failure {
            Some(error) => Err(error),
            None => Ok((outputs, state.built, state.substituted)),
        }
    }

    /// One worker thread: takes ready derivations until everything is built
    /// or something failed.
    fn work(
        &self,
        scheduler: &Scheduler,
        store: &Store,
        outputs: &Outputs,
        observer: &dyn Observer,
    ) {
        loop {
            let index = {
                let mut state = scheduler.lock();
                loop {
                    if state.failure.is_some() || state.remaining == 0 {
                        return;
                    }
                    if let Some(Reverse(index)) = state.ready.pop() {
                        break index;
                    }
                    state = scheduler
                        .wake
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            let node = &self.nodes[index];
            let result = guarded(node, || {
                self.build_one(index, store, outputs, observer, true)
            });
            let mut state = scheduler.lock();
            state.remaining -= 1;
            match result {
                Ok((object, ran)) => {
                    if outputs[index].set(object).is_err() {
                        unreachable!("each derivation is built once");
                    }
                    if ran {
                        state.built += 1;
                    } else {
                        state.substituted += 1;
                    }
                    for &dependent in &node.dependents {
                        if outputs[dependent].get().is_some() {
                            continue;
                        }
                        // A dependent may take this output under several names.
                        let uses = self.nodes[dependent]
                            .inputs
                            .iter()
                            .filter(|(_, input)| *input == index)
                            .count();
                        state.waiting[dependent] -= uses;
                        if state.waiting[dependent] == 0 {
                            state.ready.push(Reverse(dependent));
                        }
                    }
                }
                Err(error) => {
                    if state.failure.is_none() {
                        state.failure = Some(error);
                    }
                }
            }
            drop(state);
            scheduler.wake.notify_all();
        }
    }

    /// Builds one derivation into `store`, reporting events. Returns the
    /// output and whether its builder ran (it does not if another process
    /// built the same path meanwhile).
    fn build_one(
        &self,
        index: usize,
        store: &Store,
        outputs: &[OnceLock<StoreObject>],
        observer: &dyn Observer,
        verify_fixed: bool,
    ) -> Result<(StoreObject, bool), EvalError> {
        let node = &self.nodes[index];
        let mut started = None;
        let run = |out: &Path| -> Result<(), BuildError> {
            observer.event(&Event::Started { id: &node.id });
            started = Some(Instant::now());
            let ctx = BuildContext::in_graph(&node.id, out, &node.inputs, outputs, observer);
            node.derivation.builder.build(&ctx)
        };
        let name = &node.derivation.name;
        let result = match node.derivation.addressing {
            Addressing::Fixed { content_hash } if verify_fixed => {
                store.build_fixed(&node.digest, name, &content_hash, run)
            }
            _ => store.build(&node.digest, name, run),
        };
        match result {
            Ok(object) => {
                match started {
                    Some(start) => observer.event(&Event::Finished {
                        id: &node.id,
                        seconds: start.elapsed().as_secs_f64(),
                    }),
                    None => observer.event(&Event::Substituted { id: &node.id }),
                }
                Ok((object, started.is_some()))
            }
            Err(failure) => {
                let error = match failure {
                    BuildFailure::Builder(error) => EvalError::Build {
                        id: node.id.clone(),
                        error,
                    },
                    BuildFailure::Store(StoreError::ContentHashMismatch {
                        expected,
                        actual,
                        ..
                    }) => EvalError::FixedOutputMismatch {
                        id: node.id.clone(),
                        expected,
                        actual,
                    },
                    BuildFailure::Store(error) => EvalError::Store {
                        id: node.id.clone(),
                        error,
                    },
                };
                report_failure(observer, &node.id, &error);
                Err(error)
            }
        }
    }

    /// Looks up every derivation in the store, on up to `jobs` threads.
    fn lookup_all(
        &self,
        store: &Store,
        jobs: usize,
    ) -> Result<Vec<Option<StoreObject>>, EvalError> {
        // Below this, starting threads costs more than the lookups.
        const MIN_PER_THREAD: usize = 512;
        let threads = threads_for(self.nodes.len(), jobs, MIN_PER_THREAD);
        let chunks = map_chunks(&self.nodes, threads, |nodes| {
            nodes
                .iter()
                .map(|node| lookup(store, node))
                .collect::<Result<Vec<_>, _>>()
        });
        let mut found = Vec::with_capacity(self.nodes.len());
        for chunk in chunks {
            found.extend(chunk?);
        }
        Ok(found)
    }
}

/// Finds a derivation's output in the store, checking a fixed output's
/// recorded hash against its promise.
fn lookup(store: &Store, node: &Node) -> Result<Option<StoreObject>, EvalError> {
    let object = store
        .get(&node.digest, &node.derivation.name)
        .map_err(|error| EvalError::Store {
            id: node.id.clone(),
            error,
        })?;
    if let (Some(object), Addressing::Fixed { content_hash }) =
        (&object, node.derivation.addressing)
        && object.content_hash != content_hash
    {
        return Err(EvalError::FixedOutputMismatch {
            id: node.id.clone(),
            expected: content_hash,
            actual: object.content_hash,
        });
    }
    Ok(object)
}

fn report_failure(observer: &dyn Observer, id: &DrvId, error: &EvalError) {
    // The event carries the id already, so give just the cause.
    let text = match error {
        EvalError::Build { error, .. } => error.to_string(),
        EvalError::Store { error, .. } => error.to_string(),
        other => other.to_string(),
    };
    observer.event(&Event::Failed { id, error: &text });
}

/// Runs `f`, turning a panic (in a builder or an observer) into a build
/// error for `node`, so a panicking builder fails its evaluation instead of
/// stalling the other workers.
fn guarded<T>(node: &Node, f: impl FnOnce() -> Result<T, EvalError>) -> Result<T, EvalError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|message| (*message).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        Err(EvalError::Build {
            id: node.id.clone(),
            error: BuildError::new(format!("builder panicked: {message}")),
        })
    })
}

struct Scheduler {
    state: Mutex<State>,
    wake: Condvar,
}

impl Scheduler {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct State {
    /// Derivations whose inputs are all present, smallest topological position first.
    ready: BinaryHeap<Reverse<usize>>,
    /// For each derivation to build, how many of its inputs are not yet present.
    waiting: Vec<usize>,
    /// Derivations still to build.
    remaining: usize,
    built: usize,
    substituted: usize,
    failure: Option<EvalError>,
}
