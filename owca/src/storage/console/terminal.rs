//! The terminal while a screen is shown: raw mode and the alternate screen on stdout,
//! restored on every way out (a normal close, a panic through the hook installed here,
//! SIGTERM and SIGINT through the owner's shutdown, which drops the screen), and keys read
//! on a thread of their own so that they act at once rather than at the next iteration.

use std::{
    io::{self, Stdout, stdout},
    sync::{
        Arc, Once,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        cursor::{Hide, Show},
        event::{self, Event},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
};

use super::logs;

/// The terminal a screen draws on.
pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Whether the terminal is in the screen's state (so that leaving twice does nothing).
static ACTIVE: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

/// Puts the terminal in the screen's state; with `keep_logs`, log lines are kept for the
/// screen rather than written over it (see `logs`).
pub fn enter(keep_logs: bool) -> io::Result<Term> {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Before the message, so that it is printed on the normal screen.
            restore(false);
            previous(info);
        }));
    });
    enable_raw_mode()?;
    ACTIVE.store(true, Ordering::SeqCst);
    if keep_logs {
        logs::start();
    }
    let entered = execute!(stdout(), EnterAlternateScreen, Hide)
        .and_then(|()| Terminal::new(CrosstermBackend::new(stdout())));
    if entered.is_err() {
        leave();
    }
    entered
}

/// Restores the terminal (once; later calls do nothing) and writes the kept log lines.
pub fn leave() {
    restore(true);
}

/// [`leave`]; without `wait_for_log`, kept log lines another thread is adding to are
/// given up rather than waited for (the panic hook).
fn restore(wait_for_log: bool) {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    // Best effort: a terminal that cannot be restored cannot be told so either.
    let _ = disable_raw_mode();
    let _ = execute!(stdout(), LeaveAlternateScreen, Show);
    logs::stop(wait_for_log);
}

/// The thread that reads the terminal's events; stopped and joined on drop.
#[derive(Debug)]
pub struct Input {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How long a wait for a key lasts before the thread looks whether it should stop.
const POLL: Duration = Duration::from_millis(100);

impl Input {
    /// Starts reading events, calling `on_event` for each on the reading thread.
    pub fn spawn(mut on_event: impl FnMut(Event) + Send + 'static) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("console-keys".to_owned())
            .spawn(move || {
                while !stopping.load(Ordering::SeqCst) {
                    match event::poll(POLL) {
                        Ok(false) => {}
                        Ok(true) => match event::read() {
                            Ok(e) => on_event(e),
                            Err(_) => break,
                        },
                        // No terminal to read (stdin closed): keys are simply not read.
                        Err(_) => break,
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            // A panic of the thread was already reported by the hook.
            let _ = t.join();
        }
    }
}
