//! Errors that may repeat every iteration: logged once per cause and counted, so a broken
//! input neither floods the log nor goes unnoticed.

use std::collections::{BTreeMap, HashSet};

use tracing::warn;

use crate::metrics::{Metric, names};

/// Counts errors per component and logs each distinct problem once until it clears.
#[derive(Debug, Default)]
pub struct ErrorCounter {
    totals: BTreeMap<&'static str, u64>,
    active: HashSet<String>,
    seen_this_iteration: HashSet<String>,
}

impl ErrorCounter {
    /// Records a failure of `component` about `subject` (a task, a file...). Logged the
    /// first time; again only after it has cleared for one iteration.
    pub fn record(
        &mut self,
        component: &'static str,
        subject: &str,
        error: &dyn std::error::Error,
    ) {
        self.record_n(component, subject, error, 1);
    }

    /// [`Self::record`] for one failure that lost `count` things (e.g. packages).
    pub fn record_n(
        &mut self,
        component: &'static str,
        subject: &str,
        error: &dyn std::error::Error,
        count: u64,
    ) {
        *self.totals.entry(component).or_default() += count;
        // The whole chain: wrappers often hide the errno in their source.
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            let s_text = s.to_string();
            if !message.contains(&s_text) {
                message = format!("{message}: {s_text}");
            }
            source = s.source();
        }
        // A different failure of the same subject is a new problem, worth its own line.
        let key = format!("{component}\0{subject}\0{message}");
        if !self.active.contains(&key) {
            warn!(component, subject, "{message}");
            self.active.insert(key.clone());
        }
        self.seen_this_iteration.insert(key);
    }

    /// Ends an iteration: problems not seen in it are considered cleared.
    pub fn end_iteration(&mut self) {
        let seen = std::mem::take(&mut self.seen_this_iteration);
        self.active.retain(|k| seen.contains(k));
    }

    /// Total errors of a component so far.
    pub fn total(&self, component: &str) -> u64 {
        self.totals.get(component).copied().unwrap_or(0)
    }

    /// `owca_errors_total{component}` for the given components (zero when none yet) and
    /// any other component that had errors.
    pub fn metrics(&self, components: &[&'static str]) -> Vec<Metric> {
        let others = self.totals.keys().filter(|c| !components.contains(c));
        components
            .iter()
            .chain(others)
            .map(|c| {
                Metric::counter(
                    names::OWCA_ERRORS,
                    names::OWCA_ERRORS_HELP,
                    self.total(c) as f64,
                )
                .with_label("component", *c)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_error_and_rearms_after_clearing() {
        let mut e = ErrorCounter::default();
        let down = std::io::Error::other("down");
        e.record("node", "agent", &down);
        e.end_iteration();
        e.record("node", "agent", &down);
        assert_eq!(e.active.len(), 1);
        e.end_iteration();
        e.end_iteration();
        assert!(e.active.is_empty(), "cleared after an iteration without it");
        assert_eq!(e.total("node"), 2);
        let m = e.metrics(&["node", "storage"]);
        assert_eq!(m[0].value, 2.0);
        assert_eq!(m[1].labels["component"], "storage");
    }
}
