//! Running external commands: quietly (output kept for the error), or
//! streamed line by line to a progress callback while the output is logged.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::ImageError;

/// The `PATH` builds run with: the system's directories only, whatever the caller's is.
pub(crate) use kiln_tools::SYSTEM_PATH;

/// [`ImageError::MissingBuildTools`] if any of `tools` is missing.
pub(crate) fn require_tools(tools: &[kiln_tools::Tool]) -> Result<(), ImageError> {
    let missing = kiln_tools::missing(tools);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ImageError::MissingBuildTools {
        tools: missing.iter().map(ToString::to_string).collect(),
        packages: kiln_tools::packages(&missing)
            .into_iter()
            .map(str::to_owned)
            .collect(),
    })
}

/// Runs `body` in a new scratch directory (in the temporary directory, its name starting with
/// `prefix`), which is removed afterwards; after a failure it is kept, with whatever logs the
/// build wrote there, and `report` says where.
pub(crate) fn in_scratch<T>(
    prefix: &str,
    report: &dyn Fn(&str),
    body: impl FnOnce(&Path) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let scratch = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|error| ImageError::io(std::env::temp_dir(), error))?;
    match body(scratch.path()) {
        Ok(value) => Ok(value),
        Err(error) => {
            let kept = scratch.keep();
            report(&format!(
                "build failed; its files are kept in {}",
                kept.display()
            ));
            Err(error)
        }
    }
}

/// How many lines of output a failed command's error shows.
const TAIL_LINES: usize = 25;

/// Runs `command`, keeping its output only to show it if it fails.
pub(crate) fn run_quiet(command: Command) -> Result<(), ImageError> {
    run_output(command).map(drop)
}

/// Runs `command` and returns its standard output; if it fails, the error holds the last lines
/// of its standard output and error.
pub(crate) fn run_output(mut command: Command) -> Result<String, ImageError> {
    let description = describe(&command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|error| spawn_error(&description, &error))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(ImageError::Command {
        command: description,
        status: output.status.to_string(),
        log_tail: last_lines(&text, TAIL_LINES),
    })
}

/// One line of a streamed command's output, or a heartbeat when it has been
/// quiet for a while.
pub(crate) enum Output<'a> {
    /// A line the command printed (stdout and stderr interleaved).
    Line(&'a str),
    /// Nothing new for the heartbeat interval.
    Quiet,
}

/// Runs `command`, writing all its output to `log` and passing each line to
/// `on_output` as it arrives, plus [`Output::Quiet`] after every `heartbeat`
/// without output.
pub(crate) fn run_streaming(
    mut command: Command,
    log: &Path,
    heartbeat: Duration,
    on_output: &mut dyn FnMut(Output<'_>),
) -> Result<(), ImageError> {
    let description = describe(&command);
    let mut log_file = File::create(log).map_err(|error| ImageError::io(log, error))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| spawn_error(&description, &error))?;

    let (sender, receiver) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(forward_lines(stdout, sender.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(forward_lines(stderr, sender.clone()));
    }
    drop(sender);

    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut last_output = Instant::now();
    loop {
        match receiver.recv_timeout(heartbeat) {
            Ok(line) => {
                // The log is for people after the fact; failing to write it
                // must not fail the build.
                let _ = writeln!(log_file, "{line}");
                on_output(Output::Line(&line));
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
                last_output = Instant::now();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if last_output.elapsed() >= heartbeat {
                    on_output(Output::Quiet);
                    last_output = Instant::now();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child
        .wait()
        .map_err(|error| spawn_error(&description, &error))?;
    if status.success() {
        Ok(())
    } else {
        let mut log_tail: Vec<String> = tail.into_iter().collect();
        log_tail.push(format!("(the whole output is in {})", log.display()));
        Err(ImageError::Command {
            command: description,
            status: status.to_string(),
            log_tail,
        })
    }
}

fn forward_lines(
    stream: impl Read + Send + 'static,
    sender: mpsc::Sender<String>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer).trim_end().to_owned();
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// The command line, for errors.
pub(crate) fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

fn spawn_error(description: &str, error: &std::io::Error) -> ImageError {
    ImageError::Command {
        command: description.to_owned(),
        status: format!("could not run: {error}"),
        log_tail: Vec::new(),
    }
}

fn last_lines(text: &str, count: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_both_outputs_and_reports_failure_with_the_tail() {
        let scratch = tempfile::tempdir().expect("create a temporary directory");
        let log = scratch.path().join("build.log");
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo one; echo two >&2; sleep 0.3; echo three; exit 3",
        ]);
        let mut lines = Vec::new();
        let mut quiet = 0;
        let error =
            run_streaming(
                command,
                &log,
                Duration::from_millis(100),
                &mut |output| match output {
                    Output::Line(line) => lines.push(line.to_owned()),
                    Output::Quiet => quiet += 1,
                },
            )
            .expect_err("the command exits 3");
        lines.sort();
        assert_eq!(lines, ["one", "three", "two"]);
        assert!(quiet >= 1, "a heartbeat while the command sleeps");
        let logged = std::fs::read_to_string(&log).expect("read a file");
        assert_eq!(logged.lines().count(), 3);
        let message = error.to_string();
        assert!(message.contains("exit status: 3"), "{message}");
        assert!(message.contains("\n  three\n"), "{message}");
        assert!(message.contains(&log.display().to_string()), "{message}");
    }

    #[test]
    fn a_quiet_failure_shows_its_output() {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "echo 'E: Unable to find a source package' >&2; exit 100",
        ]);
        let message = run_quiet(command)
            .expect_err("the command exits 100")
            .to_string();
        assert!(message.starts_with("`sh -c"), "{message}");
        assert!(
            message.contains("E: Unable to find a source package"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_tool_fails_the_build_naming_its_package() {
        use kiln_tools::Tool;
        assert!(require_tools(&[Tool::program("sh", "dash")]).is_ok());
        let message = require_tools(&[
            Tool::program("sh", "dash"),
            Tool::program("kiln-no-such-tool", "kiln-no-such-package"),
            Tool::file("/kiln/no/such/file", "kiln-no-such-package"),
        ])
        .expect_err("two are missing")
        .to_string();
        assert_eq!(
            message,
            "missing build tools kiln-no-such-tool (kiln-no-such-package), /kiln/no/such/file (kiln-no-such-package)\n  help: `cargo xtask build-cluster` installs them, or run `apt-get install kiln-no-such-package`"
        );
    }
}
