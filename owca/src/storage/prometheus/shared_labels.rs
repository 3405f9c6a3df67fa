//! The encoder's cache of shared label sets (a task's labels, the node's), each rendered
//! once while samples carry it, and the `task_info` family of [`TaskLabels::Info`](super::TaskLabels::Info).

use std::fmt::Write as _;
use std::sync::Arc;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::{escape_help, label_hash, write_labels, written_shared};
use crate::metrics::{
    Labels,
    labels::is_valid_label_name,
    names::{TASK_ID_LABEL, TASK_INFO, TASK_INFO_HELP},
};

/// Shared label sets rendered once each (`a="x",b="y"`), kept across encodings while
/// samples carry them. A set is known by its `Arc`, which is kept so that its address is
/// not reused by another set while known. Equal sets behind different `Arc`s are rendered
/// twice but still compared as one series: [`Series`](super::Series) compares content.
#[derive(Default)]
pub(super) struct SharedLabels {
    /// Set (its address) → its slot.
    by_ptr: HashMap<usize, usize>,
    /// Rendered sets; slot 0 is "no shared labels".
    slots: Vec<Slot>,
    /// Slots free for reuse.
    free: Vec<usize>,
    /// The current encoding, to tell the sets it used.
    generation: u64,
    /// [`TaskLabels::Info`](super::TaskLabels::Info): task sets are rendered as their `task_id` alone, and in full
    /// for `task_info`.
    info: bool,
    /// Slots with a `task_info` text that the current encoding used, in order of first use.
    info_order: Vec<usize>,
}

struct Slot {
    /// The set, kept so that its address stays its own.
    _pin: Option<Arc<Labels>>,
    /// Its text, `None` when a label name is invalid.
    text: Option<String>,
    /// A task's set under [`TaskLabels::Info`](super::TaskLabels::Info): the whole set's text, for `task_info`
    /// (`text` is then its `task_id` alone).
    info: Option<String>,
    /// The sum of its labels' [`label_hash`]es (see [`Series`](super::Series)).
    hash: u64,
    /// The last encoding that used it.
    used: u64,
}

impl SharedLabels {
    /// A cache whose task sets are written as their `task_id` alone when `info`.
    pub(super) fn new(info: bool) -> Self {
        Self {
            info,
            ..Self::default()
        }
    }

    /// Whether task sets go to `task_info` ([`TaskLabels::Info`](super::TaskLabels::Info)).
    pub(super) fn info(&self) -> bool {
        self.info
    }

    /// Sets known now.
    pub(super) fn len(&self) -> usize {
        self.by_ptr.len()
    }

    /// Starts an encoding: the sets it renders are told from the last one's.
    pub(super) fn start_encoding(&mut self) {
        self.generation += 1;
        self.info_order.clear();
    }

    /// Slot of the rendered set (0 = none); `None` when a label name is invalid.
    pub(super) fn render(&mut self, labels: Option<&Arc<Labels>>) -> Option<usize> {
        if self.slots.is_empty() {
            self.slots.push(Slot {
                _pin: None,
                text: Some(String::new()),
                info: None,
                hash: 0,
                used: u64::MAX,
            });
        }
        let Some(labels) = labels else {
            return Some(0);
        };
        let i = match self.by_ptr.get(&(Arc::as_ptr(labels) as usize)) {
            Some(&i) => i,
            None => {
                let valid = labels.keys().all(|k| is_valid_label_name(k));
                let task_id_only = self.info && labels.contains_key(TASK_ID_LABEL);
                let written = || written_shared(Some(labels), task_id_only);
                let slot = Slot {
                    _pin: Some(Arc::clone(labels)),
                    text: rendered(valid, written()),
                    info: rendered(valid && task_id_only, labels.iter()),
                    hash: written().fold(0u64, |h, (k, v)| h.wrapping_add(label_hash(k, v))),
                    used: 0,
                };
                let i = match self.free.pop() {
                    Some(i) => {
                        self.slots[i] = slot;
                        i
                    }
                    None => {
                        self.slots.push(slot);
                        self.slots.len() - 1
                    }
                };
                self.by_ptr.insert(Arc::as_ptr(labels) as usize, i);
                i
            }
        };
        let slot = &mut self.slots[i];
        if slot.info.is_some() && slot.used != self.generation {
            self.info_order.push(i);
        }
        slot.used = self.generation;
        slot.text.is_some().then_some(i)
    }

    /// Whether samples of the rendered set `i` carry only its `task_id`.
    pub(super) fn task_id_only(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.info.is_some())
    }

    pub(super) fn text(&self, i: usize) -> &str {
        self.slots
            .get(i)
            .and_then(|s| s.text.as_deref())
            .unwrap_or("")
    }

    pub(super) fn hash(&self, i: usize) -> u64 {
        self.slots.get(i).map_or(0, |s| s.hash)
    }

    /// Drops the sets the last encoding did not use (gone tasks).
    pub(super) fn forget_unused(&mut self) {
        let generation = self.generation;
        let (slots, free) = (&mut self.slots, &mut self.free);
        self.by_ptr.retain(|_, &mut i| {
            let slot = &mut slots[i];
            if slot.used == generation {
                return true;
            }
            *slot = Slot {
                _pin: None,
                text: None,
                info: None,
                hash: 0,
                used: 0,
            };
            free.push(i);
            false
        });
    }
}

/// The text of a set, `None` when a label name is not `valid`.
fn rendered<'a>(
    valid: bool,
    labels: impl Iterator<Item = (&'a String, &'a String)>,
) -> Option<String> {
    valid.then(|| {
        let mut text = String::new();
        write_labels(&mut text, labels);
        text
    })
}

/// Writes the `task_info` family of [`TaskLabels::Info`](super::TaskLabels::Info): one sample per task label set
/// the encoding used (equal sets once), calling `flush` as [`write_family`](super::write_family) does.
pub(super) fn write_task_info<E>(
    text: &mut String,
    shared: &SharedLabels,
    chunk: usize,
    flush: &mut impl FnMut(&mut String) -> Result<(), E>,
) -> Result<(), E> {
    if shared.info_order.is_empty() {
        return Ok(());
    }
    let _ = writeln!(text, "# HELP {TASK_INFO} {}", escape_help(TASK_INFO_HELP));
    let _ = writeln!(text, "# TYPE {TASK_INFO} gauge");
    let mut written: HashSet<&str> = HashSet::default();
    for &i in &shared.info_order {
        let Some(labels) = shared.slots[i].info.as_deref() else {
            continue;
        };
        if !written.insert(labels) {
            continue;
        }
        text.push_str(TASK_INFO);
        text.push('{');
        text.push_str(labels);
        text.push_str("} 1\n");
        if text.len() >= chunk {
            flush(text)?;
        }
    }
    Ok(())
}
