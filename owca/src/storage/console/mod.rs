//! `!ConsoleStorage`: the operator's view of the agent's own snapshot, one row per task,
//! like htop or `kubectl top` (and `owca top`, which shows a running agent's `/metrics`
//! the same way).
//!
//! - [`snapshot`]: one package's samples as the table needs them.
//! - [`table`]: rows from two consecutive snapshots (rates), the summary, the order.
//! - [`render`]: cells, the plain table, the terminal screen.
//! - [`screen`], [`terminal`], `logs`: the live screen, the terminal's state, the log
//!   kept while the screen hides stderr.
//!
//! On a terminal (stdout), the storage shows the live screen, redrawn at each store; the
//! agent's log is kept and shown at the bottom while stderr is the terminal too, and
//! written out when the screen closes. `q` or Ctrl-C stops the agent as SIGINT would.
//! Without a terminal it writes the plain table to stdout, once per iteration.
//!
//! A runner with several storages (metrics, anomalies, allocations) configured as
//! `!ConsoleStorage` has one console: each storage's latest package is merged into the
//! same rows (anomaly marks, allocations), and the plain table is written once per
//! iteration, when the last-created of them (the runners store in creation order) has
//! stored.

mod logs;
pub mod render;
pub mod screen;
pub mod snapshot;
pub mod table;
pub mod terminal;

use std::{
    io::{self, IsTerminal as _, Write as _},
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
};

use ratatui::crossterm::event::Event;
use serde::Deserialize;

pub use self::{
    logs::{LogWriter, log_writer},
    screen::{KeyAction, Screen},
    snapshot::Snapshot,
    table::{Sort, SortKey, View},
};
use super::{Storage, StorageError};
use crate::metrics::Metric;

/// Configuration of `!ConsoleStorage`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleStorageConfig {
    /// The column the rows are first sorted by: `cpu` (default), `wait`, `p99`,
    /// `switches`, `throttled`, `memory`, `ipc` or `task`.
    #[serde(default)]
    pub sort: SortKey,
}

/// Shows each iteration's metrics as the task table (see the module doc).
pub struct ConsoleStorage {
    /// This storage's package among the console's.
    slot: usize,
    /// The keys thread, held by the storage that created the console; stopped before the
    /// console itself goes.
    input: Option<terminal::Input>,
    console: Arc<Mutex<Console>>,
}

/// The one console of the process, shared by its `ConsoleStorage`s.
static CONSOLE: Mutex<Weak<Mutex<Console>>> = Mutex::new(Weak::new());

struct Console {
    /// Per storage: its previous and latest package.
    slots: Vec<Slot>,
    out: Output,
    sort: Sort,
}

#[derive(Default)]
struct Slot {
    prev: Option<Snapshot>,
    cur: Option<Snapshot>,
}

enum Output {
    Screen(Box<Screen>),
    Plain,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ConsoleStorage {
    /// Joins the process's console, or creates it: the live screen when stdout is a
    /// terminal (an error if the terminal cannot be set up), the plain table otherwise.
    pub fn new(config: &ConsoleStorageConfig) -> Result<Self, StorageError> {
        let mut shared = lock(&CONSOLE);
        if let Some(console) = shared.upgrade() {
            let slot = {
                let mut c = lock(&console);
                c.slots.push(Slot::default());
                c.slots.len() - 1
            };
            return Ok(Self {
                slot,
                input: None,
                console,
            });
        }
        let sort = Sort {
            key: config.sort,
            reversed: false,
        };
        let terminal_err = |source| StorageError::Console { source };
        let out = if io::stdout().is_terminal() {
            let screen = Screen::new(sort, io::stderr().is_terminal()).map_err(terminal_err)?;
            Output::Screen(Box::new(screen))
        } else {
            Output::Plain
        };
        let live = matches!(out, Output::Screen(_));
        let console = Arc::new(Mutex::new(Console {
            slots: vec![Slot::default()],
            out,
            sort,
        }));
        *shared = Arc::downgrade(&console);
        let input = if live {
            let weak = Arc::downgrade(&console);
            let input = terminal::Input::spawn(move |e| on_event(&weak, &e));
            Some(input.map_err(terminal_err)?)
        } else {
            None
        };
        Ok(Self {
            slot: 0,
            input,
            console,
        })
    }
}

/// A key on the agent's screen: handled by the screen; quitting stops the agent as
/// Ctrl-C would without raw mode (SIGINT), so the runner shuts down cleanly.
fn on_event(console: &Weak<Mutex<Console>>, event: &Event) {
    let Some(console) = console.upgrade() else {
        return;
    };
    let mut c = lock(&console);
    let Output::Screen(screen) = &mut c.out else {
        return;
    };
    match screen.event(event) {
        Ok(KeyAction::Handled) => {}
        Ok(KeyAction::Quit) => {
            use nix::{sys::signal, unistd::Pid};
            if let Err(e) = signal::kill(Pid::this(), signal::Signal::SIGINT) {
                tracing::error!("cannot stop the agent from its console: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot draw the console: {e}"),
    }
}

impl Console {
    /// The view of every storage's latest package, with rates since the previous ones.
    fn view(&self) -> View {
        let merged = |pick: fn(&Slot) -> Option<&Snapshot>| {
            self.slots
                .iter()
                .filter_map(pick)
                .fold(None, |acc: Option<Snapshot>, s| {
                    let mut acc = acc.unwrap_or_default();
                    acc.merge(s);
                    Some(acc)
                })
        };
        let prev = merged(|s| s.prev.as_ref());
        let cur = merged(|s| s.cur.as_ref()).unwrap_or_default();
        View::new(prev.as_ref(), &cur, self.sort)
    }
}

impl Storage for ConsoleStorage {
    fn store(&mut self, metrics: &[Metric]) -> Result<(), StorageError> {
        let snapshot = Snapshot::from_metrics(metrics);
        let mut c = lock(&self.console);
        let slot = &mut c.slots[self.slot];
        slot.prev = slot.cur.replace(snapshot);
        let last = self.slot + 1 == c.slots.len();
        let view = c.view();
        let shown = match &mut c.out {
            Output::Screen(screen) => screen.show(view),
            Output::Plain if last => io::stdout()
                .lock()
                .write_all(format!("{}\n", render::plain(&view)).as_bytes()),
            Output::Plain => Ok(()),
        };
        shown.map_err(|source| StorageError::Console { source })
    }
}

impl Drop for ConsoleStorage {
    fn drop(&mut self) {
        // Before the console (and the screen) can go: the thread may be drawing.
        drop(self.input.take());
    }
}
