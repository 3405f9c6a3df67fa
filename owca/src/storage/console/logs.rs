//! Where the agent's log goes while a console screen is shown.
//!
//! The screen draws on stdout's alternate screen; log lines written to the same terminal
//! through stderr would land in the middle of it. So while the screen is up and stderr is
//! a terminal, the log writer ([`log_writer`], installed by the binary) keeps the lines
//! instead: the screen shows the latest ones, and all kept lines (the last
//! [`KEPT_LINES`]) are written to stderr when the screen closes. With stderr redirected
//! (to a file, journald), lines go there as always.

use std::{
    collections::VecDeque,
    io::{self, Write},
    sync::{Mutex, MutexGuard, PoisonError, TryLockError},
};

/// Lines kept while the screen is shown; older ones are counted, not kept.
pub const KEPT_LINES: usize = 1000;

static CAPTURE: Mutex<Option<Captured>> = Mutex::new(None);

#[derive(Default)]
struct Captured {
    lines: VecDeque<String>,
    partial: String,
    dropped: usize,
}

fn capture() -> MutexGuard<'static, Option<Captured>> {
    CAPTURE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A writer for the log (tracing-subscriber's `with_writer(log_writer)`): stderr, or the
/// console's kept lines while a screen is shown.
pub fn log_writer() -> LogWriter {
    LogWriter
}

/// See [`log_writer`].
#[derive(Debug, Clone, Copy)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut captured = capture();
        match captured.as_mut() {
            Some(c) => {
                c.push(&String::from_utf8_lossy(buf));
                Ok(buf.len())
            }
            None => {
                drop(captured);
                io::stderr().write_all(buf)?;
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl Captured {
    fn push(&mut self, text: &str) {
        self.partial.push_str(&strip_ansi(text));
        while let Some(end) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=end).collect();
            if self.lines.len() == KEPT_LINES {
                self.lines.pop_front();
                self.dropped += 1;
            }
            self.lines.push_back(line.trim_end().to_owned());
        }
    }
}

/// Starts keeping log lines.
pub(super) fn start() {
    capture().get_or_insert_with(Captured::default);
}

/// Stops keeping log lines and writes the kept ones to stderr. Without `wait` (in the
/// panic hook, where the panicking thread may hold the lock) it gives up rather than
/// hang when another thread holds it.
pub(super) fn stop(wait: bool) {
    let mut guard = match CAPTURE.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(p)) => p.into_inner(),
        Err(TryLockError::WouldBlock) if wait => capture(),
        Err(TryLockError::WouldBlock) => return,
    };
    let Some(c) = guard.take() else { return };
    drop(guard);
    let mut err = io::stderr().lock();
    // Best effort: there is nowhere else to report that stderr is gone.
    if c.dropped > 0 {
        let _ = writeln!(err, "({} earlier log lines were not kept)", c.dropped);
    }
    for line in c
        .lines
        .iter()
        .chain(Some(&c.partial).filter(|p| !p.is_empty()))
    {
        let _ = writeln!(err, "{line}");
    }
}

/// The last `n` kept lines (none when not keeping).
pub(super) fn latest(n: usize) -> Vec<String> {
    capture().as_ref().map_or_else(Vec::new, |c| {
        c.lines
            .iter()
            .skip(c.lines.len().saturating_sub(n))
            .cloned()
            .collect()
    })
}

/// `text` without ANSI escape sequences (colours the log writer adds on a terminal).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            // Parameters and intermediates up to the final byte (@ to ~).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_whole_lines_without_colours_and_counts_the_dropped() {
        let mut c = Captured::default();
        c.push("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m started\npart");
        c.push("ial\n");
        assert_eq!(c.lines, ["2026  INFO started", "partial"]);
        for i in 0..KEPT_LINES {
            c.push(&format!("{i}\n"));
        }
        assert_eq!((c.lines.len(), c.dropped), (KEPT_LINES, 2));
    }
}
