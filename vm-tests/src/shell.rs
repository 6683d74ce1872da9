//! Commands inside a guest, through a root shell on its second serial port (`ttyS1`), which
//! QEMU connects to a Unix socket on the host.
//!
//! The protocol needs only `sh` and `base64` in the guest and tolerates a terminal that echoes
//! input and prints prompts (an autologin getty): each script travels base64-encoded on one
//! line, runs with its output in a file, and the output comes back base64-encoded between two
//! marker lines. The markers are printed as two `printf` arguments, so the echoed command line
//! never contains them.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::{Error, wait_for};

/// The longest script [`GuestShell::run`] sends: one terminal line (Linux's canonical-mode
/// limit is 4096 bytes) must carry it base64-encoded with the protocol around it.
pub const MAX_SCRIPT_BYTES: usize = 2400;

/// What a script printed (standard output and error, interleaved) and its exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestOutput {
    /// The script's exit status.
    pub status: i32,
    /// Its output.
    pub output: String,
}

/// A connection to a guest's root shell.
#[derive(Debug)]
pub struct GuestShell {
    name: String,
    stream: UnixStream,
    received: Vec<u8>,
    sequence: u64,
}

impl GuestShell {
    /// Connects to the shell socket of guest `name` (QEMU creates it at start-up).
    pub fn connect(socket: &Path, name: &str) -> crate::Result<Self> {
        let stream = wait_for(
            &format!("{name}'s shell socket {}", socket.display()),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || UnixStream::connect(socket).map_err(|error| error.to_string()),
        )?;
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|error| Error::io("configuring the shell socket", error))?;
        Ok(Self {
            name: name.to_owned(),
            stream,
            received: Vec::new(),
            sequence: 0,
        })
    }

    /// Waits until the guest's shell answers, probing every two seconds; `console` is called
    /// for the observation a timeout reports (the serial console's last lines).
    ///
    /// Until the guest opens `ttyS1`, what the harness sends queues up and reaches the shell
    /// in one burst once it starts, so the probes are short lines (`echo kiln-ready-$((N+1))`,
    /// whose answer differs from its echo); once one is answered, the backlog is drained and
    /// one full command checks the protocol.
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        console: impl Fn() -> String,
    ) -> crate::Result<()> {
        let started = Instant::now();
        let mut transcript: Vec<u8> = Vec::new();
        let mut probe: u32 = 0;
        let mut last_probe: Option<Instant> = None;
        loop {
            if crate::interrupted() {
                return Err(Error::Interrupted);
            }
            if started.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: format!("{}'s root shell on ttyS1", self.name),
                    waited: started.elapsed(),
                    last_seen: format!(
                        "console:\n{}\nshell (last bytes):\n{}",
                        console(),
                        String::from_utf8_lossy(&transcript)
                    ),
                });
            }
            if last_probe.is_none_or(|at| at.elapsed() >= Duration::from_secs(2)) {
                probe += 1;
                let line = format!("echo kiln-ready-$(({probe}+1))\n");
                self.stream.write_all(line.as_bytes()).map_err(|error| {
                    Error::io(format!("writing to {}'s shell", self.name), error)
                })?;
                last_probe = Some(Instant::now());
            }
            let count = self.read_some()?;
            transcript.extend_from_slice(&self.received[self.received.len() - count..]);
            let keep_from = transcript.len().saturating_sub(2000);
            transcript.drain(..keep_from);
            if answered(&self.received) {
                break;
            }
        }
        // Drain the backlog of probes: wait for two quiet seconds (at most a minute).
        let draining = Instant::now();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_secs(2)
            && draining.elapsed() < Duration::from_secs(60)
        {
            if self.read_some()? > 0 {
                quiet_since = Instant::now();
            }
        }
        self.received.clear();
        let check = self.run("true", Duration::from_secs(60))?;
        if check.status != 0 {
            return Err(Error::check(
                "guest shell",
                format!("`true` exited {} on {}", check.status, self.name),
            ));
        }
        Ok(())
    }

    /// Reads what the guest sent within the read timeout into `received`; the byte count.
    fn read_some(&mut self) -> crate::Result<usize> {
        let mut buffer = [0_u8; 8192];
        match self.stream.read(&mut buffer) {
            Ok(0) => Err(Error::io(
                format!("reading {}'s shell", self.name),
                std::io::ErrorKind::UnexpectedEof.into(),
            )),
            Ok(count) => {
                self.received.extend_from_slice(&buffer[..count]);
                Ok(count)
            }
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Ok(0)
            }
            Err(error) => Err(Error::io(format!("reading {}'s shell", self.name), error)),
        }
    }

    /// Runs `script` with `sh` in the guest and returns its output and status. A script that
    /// does not finish within `timeout` is interrupted (Ctrl-C on the terminal) and reported
    /// as [`Error::Timeout`].
    pub fn run(&mut self, script: &str, timeout: Duration) -> crate::Result<GuestOutput> {
        if script.len() > MAX_SCRIPT_BYTES {
            return Err(Error::check(
                "guest shell",
                format!(
                    "a script of {} bytes is longer than {MAX_SCRIPT_BYTES}",
                    script.len()
                ),
            ));
        }
        self.sequence += 1;
        let nonce = format!("{}x{}", std::process::id(), self.sequence);
        let line = command_line(script, &nonce);
        self.stream
            .write_all(line.as_bytes())
            .map_err(|error| Error::io(format!("writing to {}'s shell", self.name), error))?;
        let started = Instant::now();
        loop {
            if let Some((output, consumed)) = parse_reply(&self.received, &nonce) {
                self.received.drain(..consumed);
                return Ok(output);
            }
            if crate::interrupted() {
                return Err(Error::Interrupted);
            }
            if started.elapsed() >= timeout {
                // Interrupt the script so the shell takes the next command.
                let _ = self.stream.write_all(b"\x03\n");
                let seen = String::from_utf8_lossy(&self.received).into_owned();
                self.received.clear();
                return Err(Error::Timeout {
                    what: format!("`{script}` on {}", self.name),
                    waited: started.elapsed(),
                    last_seen: crate::tail_lines(&seen, 20),
                });
            }
            self.read_some()?;
        }
    }

    /// Runs `script` and returns its output, failing with [`Error::Check`] (naming `step`) if
    /// it exits non-zero.
    pub fn check(&mut self, step: &str, script: &str, timeout: Duration) -> crate::Result<String> {
        let result = self.run(script, timeout)?;
        if result.status != 0 {
            return Err(Error::check(
                step,
                format!(
                    "on {}, `{script}` exited {}:\n{}",
                    self.name, result.status, result.output
                ),
            ));
        }
        Ok(result.output)
    }
}

/// Whether a readiness probe was answered: `kiln-ready-` followed by a digit appears only in
/// answers (the echoed probe has `kiln-ready-$((`).
fn answered(received: &[u8]) -> bool {
    received
        .windows(12)
        .any(|window| window.starts_with(b"kiln-ready-") && window[11].is_ascii_digit())
}

/// The one line that runs `script` and prints its output between the markers of `nonce`.
fn command_line(script: &str, nonce: &str) -> String {
    let encoded = STANDARD.encode(script);
    format!(
        "echo {encoded} | base64 -d > /tmp/kiln-cmd; \
         sh /tmp/kiln-cmd > /tmp/kiln-out 2>&1 < /dev/null; kiln_rc=$?; \
         printf '\\n%s%s\\n' KILN-B {nonce}; base64 /tmp/kiln-out; \
         printf '%s%s %s\\n' KILN-E {nonce} $kiln_rc\n"
    )
}

/// Finds the reply to `nonce` in what the shell printed: the output and status, and how many
/// bytes of `received` the reply ends at.
fn parse_reply(received: &[u8], nonce: &str) -> Option<(GuestOutput, usize)> {
    let text = String::from_utf8_lossy(received);
    let begin_marker = format!("KILN-B{nonce}");
    let end_marker = format!("KILN-E{nonce} ");
    let begin = text.find(&begin_marker)?;
    let after_begin = begin + begin_marker.len();
    let end = after_begin + text[after_begin..].find(&end_marker)?;
    let status_start = end + end_marker.len();
    let status_end = status_start + text[status_start..].find('\n')?;
    let status = text[status_start..status_end].trim().parse().ok()?;
    let encoded: String = text[after_begin..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let output = STANDARD
        .decode(encoded.as_bytes())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|error| format!("(undecodable output: {error})"));
    // Byte offsets in the lossy text match `received` only when it was valid UTF-8; the markers
    // are ASCII, so find the end again in the raw bytes.
    let consumed = find_bytes(received, end_marker.as_bytes())
        .and_then(|at| {
            received[at..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|newline| at + newline + 1)
        })
        .unwrap_or(received.len());
    Some((GuestOutput { status, output }, consumed))
}

fn find_bytes(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_an_answer_not_an_echo() {
        assert!(!answered(b"echo kiln-ready-$((3+1))\r\n"));
        assert!(answered(b"echo kiln-ready-$((3+1))\r\nkiln-ready-4\r\n# "));
    }

    #[test]
    fn the_echoed_command_line_never_contains_a_marker() {
        let line = command_line("echo hello", "42x1");
        assert!(!line.contains("KILN-B42x1"), "{line}");
        assert!(!line.contains("KILN-E42x1 "), "{line}");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    }

    #[test]
    fn parses_a_reply_among_echo_prompts_and_carriage_returns() {
        let line = command_line("echo hello", "42x1");
        let encoded = STANDARD.encode("hello\nworld\n");
        let transcript = format!(
            "root@node1:~# {line}\r\nKILN-B42x1\r\n{}\r\n{}\r\nKILN-E42x1 3\r\nroot@node1:~# ",
            &encoded[..8],
            &encoded[8..]
        );
        let (reply, consumed) = parse_reply(transcript.as_bytes(), "42x1").expect("a reply");
        assert_eq!(
            reply,
            GuestOutput {
                status: 3,
                output: "hello\nworld\n".to_owned()
            }
        );
        assert_eq!(&transcript[consumed..], "root@node1:~# ");
        // An unfinished reply, and a reply to another command, are not this command's reply.
        assert!(parse_reply(&transcript.as_bytes()[..transcript.len() - 20], "42x1").is_none());
        assert!(parse_reply(transcript.as_bytes(), "42x2").is_none());
    }
}
