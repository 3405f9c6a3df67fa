//! The live screen: the latest view on the terminal, redrawn on each new view and on each
//! key that changes the order or the scroll position. Closing it (drop) restores the
//! terminal.

use std::io;

use ratatui::{
    crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers},
    widgets::TableState,
};

use super::{
    logs,
    render::{self, Extras, SORT_KEYS},
    table::{Sort, View},
    terminal::{self, Term},
};

/// What a key asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Nothing, or a change already drawn.
    Handled,
    /// Quit (`q`, Esc, Ctrl-C).
    Quit,
}

/// The terminal in the screen's state, and what it shows.
pub struct Screen {
    term: Term,
    view: View,
    table: TableState,
    sort: Sort,
    status: Option<String>,
}

impl Screen {
    /// Takes over the terminal (see [`terminal::enter`]).
    pub fn new(sort: Sort, keep_logs: bool) -> io::Result<Self> {
        Ok(Self {
            term: terminal::enter(keep_logs)?,
            view: View::default(),
            table: TableState::default(),
            sort,
            status: None,
        })
    }

    /// Shows `view` in the screen's current order.
    pub fn show(&mut self, mut view: View) -> io::Result<()> {
        view.sort = self.sort;
        view.sort_rows();
        self.view = view;
        self.draw()
    }

    /// Sets (or clears) the problem shown in the summary line.
    pub fn set_status(&mut self, status: Option<String>) -> io::Result<()> {
        if self.status != status {
            self.status = status;
            self.draw()?;
        }
        Ok(())
    }

    /// Redraws everything (only what changed reaches the terminal).
    pub fn draw(&mut self) -> io::Result<()> {
        let logs = logs::latest(4);
        let extras = Extras {
            status: self.status.as_deref(),
            logs: &logs,
        };
        let (view, table) = (&self.view, &mut self.table);
        self.term.draw(|f| render::draw(f, view, table, &extras))?;
        Ok(())
    }

    /// Acts on a terminal event: sort keys (again to reverse), `r`, arrows, page keys,
    /// Home/End, a resize; quitting is left to the caller.
    pub fn event(&mut self, event: &Event) -> io::Result<KeyAction> {
        let key = match event {
            Event::Key(k) if k.kind != KeyEventKind::Release => k,
            Event::Resize(..) => {
                self.draw()?;
                return Ok(KeyAction::Handled);
            }
            _ => return Ok(KeyAction::Handled),
        };
        if is_quit(key) {
            return Ok(KeyAction::Quit);
        }
        let page = self
            .term
            .size()
            .map_or(10, |s| s.height.saturating_sub(4).max(1));
        match key.code {
            KeyCode::Char('r') => self.sort.reversed = !self.sort.reversed,
            KeyCode::Char(c) => match SORT_KEYS.iter().find(|(k, ..)| *k == c) {
                Some(&(_, key, _)) if key == self.sort.key => {
                    self.sort.reversed = !self.sort.reversed
                }
                Some(&(_, key, _)) => {
                    self.sort = Sort {
                        key,
                        reversed: false,
                    }
                }
                None => return Ok(KeyAction::Handled),
            },
            KeyCode::Down => self.table.select_next(),
            KeyCode::Up => self.table.select_previous(),
            KeyCode::PageDown => self.table.scroll_down_by(page),
            KeyCode::PageUp => self.table.scroll_up_by(page),
            KeyCode::Home => self.table.select_first(),
            KeyCode::End => self.table.select_last(),
            _ => return Ok(KeyAction::Handled),
        }
        self.view.sort = self.sort;
        self.view.sort_rows();
        self.draw()?;
        Ok(KeyAction::Handled)
    }
}

fn is_quit(key: &KeyEvent) -> bool {
    matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
        || (key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL))
}

impl Drop for Screen {
    fn drop(&mut self) {
        terminal::leave();
    }
}
