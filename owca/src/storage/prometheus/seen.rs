//! The series an encoding has taken, to drop later duplicates.

use rustc_hash::FxHashMap as HashMap;

use super::Series;

/// No further series with the same key.
const END: u32 = u32::MAX;

/// Series taken so far. The table probed for every sample holds only each key (family and
/// label-set hash) and the index of the first series with it, 16 bytes where the series
/// itself is 56: at tens of thousands of samples, the probes' cache misses were most of
/// the encoder's time. The series are appended in order and compared only when keys meet.
pub(super) struct Seen<'a> {
    first: HashMap<u64, u32>,
    series: Vec<Series<'a>>,
    /// The next series with the same key, or [`END`].
    next: Vec<u32>,
}

impl<'a> Seen<'a> {
    /// Room for `n` series.
    pub(super) fn with_capacity(n: usize) -> Self {
        Self {
            first: HashMap::with_capacity_and_hasher(n, Default::default()),
            series: Vec::with_capacity(n),
            next: Vec::with_capacity(n),
        }
    }

    /// Takes `s` unless an equal series was taken: whether it was new.
    pub(super) fn insert(&mut self, s: Series<'a>) -> bool {
        let index = u32::try_from(self.series.len()).unwrap_or(END);
        let key = s.key();
        let mut at = *self.first.entry(key).or_insert(index);
        if at == index {
            self.push(s);
            return true;
        }
        loop {
            if self.series[at as usize] == s {
                return false;
            }
            match self.next[at as usize] {
                END => break,
                n => at = n,
            }
        }
        self.next[at as usize] = index;
        self.push(s);
        true
    }

    fn push(&mut self, s: Series<'a>) {
        self.series.push(s);
        self.next.push(END);
    }
}

#[cfg(test)]
mod tests {
    use crate::metrics::Labels;

    use super::*;

    fn series(labels: &Labels, hash: u64) -> Series<'_> {
        Series {
            family: 0,
            suffix: "",
            own: labels,
            shared: None,
            task_id_only: false,
            hash,
        }
    }

    #[test]
    fn series_whose_keys_collide_are_told_apart_by_their_labels() {
        let a = Labels::from([("le".to_owned(), "1".to_owned())]);
        let b = Labels::from([("le".to_owned(), "2".to_owned())]);
        let c = Labels::from([("le".to_owned(), "3".to_owned())]);
        let mut seen = Seen::with_capacity(1);
        // The same (forced) hash for three different label sets.
        assert!(seen.insert(series(&a, 7)));
        assert!(seen.insert(series(&b, 7)));
        assert!(seen.insert(series(&c, 7)));
        assert!(!seen.insert(series(&b, 7)), "b is a duplicate");
        assert!(
            !seen.insert(series(&c, 7)),
            "c, at the end of the chain, too"
        );
        assert!(seen.insert(series(&a, 8)), "another key is another series");
        assert_eq!(seen.series.len(), 4);
    }
}
