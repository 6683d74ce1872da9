//! Waiting with a time limit that reports what it last saw, and timed, printed steps.

use std::time::{Duration, Instant};

use crate::Error;

/// Polls `probe` every `interval` until it returns `Ok`, for at most `timeout`. `probe` returns
/// `Err(observation)` while the condition does not hold yet; the last observation (a command's
/// output, serial lines) is what the [`Error::Timeout`] reports. Ctrl-C ends the wait with
/// [`Error::Interrupted`].
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> crate::Result<T> {
    let started = Instant::now();
    loop {
        if crate::interrupted() {
            return Err(Error::Interrupted);
        }
        let last_seen = match probe() {
            Ok(value) => return Ok(value),
            Err(observation) => observation,
        };
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                waited,
                last_seen,
            });
        }
        // Sleep in small slices so Ctrl-C is noticed quickly.
        let until = Instant::now() + interval.min(timeout - waited);
        while Instant::now() < until && !crate::interrupted() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The last `count` lines of `text`.
pub fn tail_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// The steps of a run, each timed and printed as it ends; [`Steps::summary`] lists them all.
#[derive(Debug, Default)]
pub struct Steps {
    done: Vec<(String, Duration, bool)>,
}

impl Steps {
    /// No steps yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `step`, printing its name when it starts and its duration and outcome when it ends.
    pub fn run<T>(
        &mut self,
        name: &str,
        step: impl FnOnce() -> crate::Result<T>,
    ) -> crate::Result<T> {
        eprintln!("==> {name}");
        let started = Instant::now();
        let result = step();
        let elapsed = started.elapsed();
        let ok = result.is_ok();
        eprintln!(
            "<== {name}: {} in {:.1} s",
            if ok { "ok" } else { "FAILED" },
            elapsed.as_secs_f64()
        );
        self.done.push((name.to_owned(), elapsed, ok));
        result
    }

    /// Every finished step with its duration and outcome.
    pub fn finished(&self) -> &[(String, Duration, bool)] {
        &self.done
    }

    /// A table of the steps and the total time.
    pub fn summary(&self) -> String {
        let width = self
            .done
            .iter()
            .map(|(name, _, _)| name.len())
            .max()
            .unwrap_or(0);
        let mut text = String::new();
        let mut total = Duration::ZERO;
        for (name, elapsed, ok) in &self.done {
            total += *elapsed;
            text.push_str(&format!(
                "  {name:<width$}  {:>7.1} s  {}\n",
                elapsed.as_secs_f64(),
                if *ok { "ok" } else { "FAILED" }
            ));
        }
        text.push_str(&format!(
            "  {:<width$}  {:>7.1} s\n",
            "total",
            total.as_secs_f64()
        ));
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_reports_the_last_observation() {
        let mut attempts = 0;
        let error = wait_for(
            "the impossible",
            Duration::from_millis(300),
            Duration::from_millis(100),
            || -> Result<(), String> {
                attempts += 1;
                Err(format!("attempt {attempts}"))
            },
        )
        .expect_err("never holds");
        let text = error.to_string();
        assert!(text.contains("waiting for the impossible"), "{text}");
        assert!(text.contains(&format!("attempt {attempts}")), "{text}");
        assert!(attempts >= 2, "{attempts}");
    }

    #[test]
    fn a_wait_returns_the_probe_value() {
        let mut attempts = 0;
        let value = wait_for("two tries", Duration::from_secs(5), Duration::ZERO, || {
            attempts += 1;
            if attempts == 2 {
                Ok(attempts)
            } else {
                Err("not yet".to_owned())
            }
        })
        .expect("holds");
        assert_eq!(value, 2);
    }

    #[test]
    fn steps_record_outcomes() {
        let mut steps = Steps::new();
        steps.run("one", || Ok(())).expect("ok");
        let _ = steps.run("two", || -> crate::Result<()> {
            Err(Error::check("two", "broken"))
        });
        let names: Vec<_> = steps
            .finished()
            .iter()
            .map(|(name, _, ok)| (name.as_str(), *ok))
            .collect();
        assert_eq!(names, [("one", true), ("two", false)]);
        assert!(steps.summary().contains("FAILED"));
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
    }
}
