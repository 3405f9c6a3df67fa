//! Prometheus text exposition format 0.0.4: the only place that knows how a [`Metric`]
//! is written as text.
//!
//! The encoder never emits text that the Prometheus parser (and `promtool check metrics`)
//! rejects: samples with invalid names, duplicate series and family type conflicts are
//! dropped and counted in [`Encoded`] so the caller can log once and export the count.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

// Fx rather than SipHash: the keys are our own samples, not attacker-chosen, and hashing
// was a quarter of the encoder's time at thousands of tasks.
use rustc_hash::{FxHashMap as HashMap, FxHasher};

mod seen;
mod shared_labels;

use self::seen::Seen;
use self::shared_labels::{SharedLabels, write_task_info};
use crate::metrics::{
    Labels, Metric, MetricType,
    labels::{is_valid_label_name, is_valid_metric_name},
    names::{TASK_ID_LABEL, TASK_INFO},
};

/// How a task's labels are written: the `task_labels` setting of the storages that write
/// Prometheus text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskLabels {
    /// On every sample of the task, as OWCA wrote them (the default).
    #[default]
    EverySample,
    /// Once per task, on a `task_info` sample of value 1; the task's other samples carry
    /// only `task_id` (`... * on(task_id) group_left(application) task_info` joins them
    /// back). With Mesos labels this writes a third of the bytes or less.
    Info,
}

/// The result of [`encode`]: the text and how many samples were left out of it, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encoded {
    /// The exposition text; empty or ending in a newline.
    pub text: String,
    /// Samples dropped because an earlier sample had the same name, suffix and labels
    /// (own and shared together).
    pub duplicates: usize,
    /// Samples dropped for an invalid metric name, label name, suffix or `le` label.
    pub invalid: usize,
    /// Samples dropped because their family first appeared with a different type, or
    /// because their family's name is a sample name of a histogram that appeared first
    /// (`a_sum` beside histogram `a`), or the reverse, or, with [`TaskLabels::Info`],
    /// because their family is named `task_info`.
    pub type_conflicts: usize,
}

impl Encoded {
    /// All samples dropped, whatever the reason.
    pub fn dropped(&self) -> usize {
        self.duplicates + self.invalid + self.type_conflicts
    }
}

/// The samples of one family, in order of first appearance.
struct Family<'a> {
    name: &'a str,
    /// Whether the family name is valid, checked once rather than per sample.
    valid_name: bool,
    kind: MetricType,
    help: &'a str,
    /// Each sample, its rendered shared set and whether an own label replaces a shared one.
    samples: Vec<(&'a Metric, usize, bool)>,
}

/// A sample's series within its family: its suffix and its labels, own and shared
/// together (an own label wins over a shared one of the same name), compared as a set
/// however they are split between own and shared.
struct Series<'a> {
    /// Index of its family.
    family: usize,
    suffix: &'static str,
    own: &'a Labels,
    shared: Option<&'a Labels>,
    /// Whether only the shared `task_id` is written ([`TaskLabels::Info`]).
    task_id_only: bool,
    /// Order-independent hash of the label set (sum of per-label hashes), so that the
    /// shared part is hashed once per shared set rather than once per sample.
    hash: u64,
}

impl<'a> Series<'a> {
    /// `overlap`: whether an own label replaces a shared one (else no shared set is
    /// searched for the own labels); `task_id_only`: whether only the shared `task_id` is
    /// written.
    fn new(
        family: usize,
        metric: &'a Metric,
        shared_hash: u64,
        overlap: bool,
        task_id_only: bool,
    ) -> Self {
        let shared = metric.shared.as_deref().filter(|_| overlap);
        let mut hash = shared_hash;
        for (k, v) in metric.labels.iter() {
            hash = hash.wrapping_add(label_hash(k, v));
            if let Some(replaced) = shared.and_then(|s| written_get(s, task_id_only, k)) {
                hash = hash.wrapping_sub(label_hash(k, replaced));
            }
        }
        Self {
            family,
            suffix: metric.suffix,
            own: &metric.labels,
            shared: metric.shared.as_deref(),
            task_id_only,
            hash,
        }
    }

    /// The labels in name order.
    fn labels(&self) -> impl Iterator<Item = (&'a String, &'a String)> {
        let own = self.own;
        let mut own_iter = own.iter().peekable();
        let mut shared = written_shared(self.shared, self.task_id_only)
            .filter(move |(k, _)| !own.contains_key(*k))
            .peekable();
        std::iter::from_fn(move || match (own_iter.peek(), shared.peek()) {
            (Some(o), Some(s)) if s.0 < o.0 => shared.next(),
            (Some(_), _) => own_iter.next(),
            (None, _) => shared.next(),
        })
    }
}

impl PartialEq for Series<'_> {
    fn eq(&self, other: &Self) -> bool {
        // Cheapest first: most calls are probes that differ in the hash.
        self.hash == other.hash
            && self.family == other.family
            && self.suffix == other.suffix
            && self.labels().eq(other.labels())
    }
}

impl Eq for Series<'_> {}

impl Series<'_> {
    /// What equal series share: the family and the label-set hash. The suffix is left to
    /// `eq`: a family's few suffixes rarely share a label set.
    fn key(&self) -> u64 {
        let mut h = FxHasher::default();
        self.family.hash(&mut h);
        self.hash.hash(&mut h);
        h.finish()
    }
}

/// The shared labels a sample is written with: all of them, or only `task_id` when the
/// task's labels go to `task_info` instead.
fn written_shared(
    set: Option<&Labels>,
    task_id_only: bool,
) -> impl Iterator<Item = (&String, &String)> {
    let (all, one) = match set {
        Some(s) if task_id_only => (None, s.get_key_value(TASK_ID_LABEL)),
        s => (s, None),
    };
    all.into_iter().flatten().chain(one)
}

/// The value a sample is written with for the shared label `name`, as [`written_shared`]
/// decides which are written.
fn written_get<'a>(set: &'a Labels, task_id_only: bool, name: &str) -> Option<&'a String> {
    if task_id_only && name != TASK_ID_LABEL {
        return None;
    }
    set.get(name)
}

/// One label's part of a [`Series`] hash.
fn label_hash(name: &str, value: &str) -> u64 {
    let mut h = FxHasher::default();
    name.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// Encodes `metrics` as Prometheus text, grouped by family in order of first appearance.
///
/// Each family gets one `# HELP` (the first sample's help) and one `# TYPE` line, then its
/// samples in input order. No timestamps are written: the scraper (or the textfile
/// collector) stamps them, as OWCA's Prometheus output did by default.
pub fn encode(metrics: &[Metric]) -> Encoded {
    Encoder::default().encode(metrics)
}

/// Text gathered before [`Encoder::encode_to`] hands it on: large enough that writing it
/// costs a few syscalls per megabyte, small next to a thousand tasks' megabytes.
const CHUNK: usize = 256 * 1024;

/// [`encode`] iteration after iteration, keeping what does not change between them: each
/// shared label set (a task's labels, the node's) is rendered once, when it first appears,
/// and kept while samples carry it; the text is written into one buffer of the last
/// text's size, or handed on in chunks by [`Encoder::encode_to`]. [`Encoder::new`] sets
/// how task labels are written; the default writes them on every sample.
#[derive(Default)]
pub struct Encoder {
    shared: SharedLabels,
    /// Length of the last text, to reserve the next one's buffer at once.
    last_len: usize,
    /// [`Encoder::encode_to`]'s chunk buffer, kept rather than allocated and faulted in
    /// anew each iteration.
    spare: String,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("label_sets", &self.shared.len())
            .field("last_len", &self.last_len)
            .finish()
    }
}

impl Encoder {
    /// An encoder writing task labels as `task_labels` says. A task's label set is a
    /// shared set with a `task_id` label.
    pub fn new(task_labels: TaskLabels) -> Self {
        Self {
            shared: SharedLabels::new(task_labels == TaskLabels::Info),
            ..Self::default()
        }
    }

    /// Encodes `metrics` as [`encode`] does.
    pub fn encode(&mut self, metrics: &[Metric]) -> Encoded {
        let mut text = String::new();
        // A flush that keeps the text is never needed: the chunk is never full.
        let Ok(mut out) =
            self.encode_chunks(metrics, &mut text, usize::MAX, |_| Ok::<_, Infallible>(()));
        out.text = text;
        out
    }

    /// Encodes `metrics` as [`encode`] does, handing the text to `write` in chunks of
    /// about `CHUNK` bytes, so that megabytes of output never sit whole in memory. The
    /// returned [`Encoded`] has the counts and an empty text; stops at `write`'s first
    /// error.
    pub fn encode_to(
        &mut self,
        metrics: &[Metric],
        mut write: impl FnMut(&str) -> std::io::Result<()>,
    ) -> std::io::Result<Encoded> {
        let mut text = std::mem::take(&mut self.spare);
        text.clear();
        let out = self.encode_chunks(metrics, &mut text, CHUNK, |t: &mut String| {
            let written = write(t);
            t.clear();
            written
        });
        self.spare = text;
        out
    }

    /// The encoding: `flush` is called whenever `text` holds `chunk` bytes or more, and at
    /// the end; it is expected to empty `text` (see [`Encoder::encode_to`]).
    fn encode_chunks<E>(
        &mut self,
        metrics: &[Metric],
        text: &mut String,
        chunk: usize,
        mut flush: impl FnMut(&mut String) -> Result<(), E>,
    ) -> Result<Encoded, E> {
        let mut out = Encoded::default();
        let mut families: Vec<Family<'_>> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::default();
        // Most names are OWCA's constants: known by address, they need no string
        // hashing or comparison. Every sample is alive for the whole call, so an address
        // stands for one name throughout.
        let mut by_address: HashMap<(usize, usize), usize> = HashMap::default();
        // Series already taken, to drop later duplicates; sized at once rather than
        // rehashed a dozen times on the way to thousands.
        let mut seen = Seen::with_capacity(metrics.len());
        let shared = &mut self.shared;
        shared.start_encoding();

        for metric in metrics {
            let name: &str = metric.name.as_ref();
            if shared.info() && name == TASK_INFO {
                // The name is the agent's own in this mode: two families would clash.
                out.type_conflicts += 1;
                continue;
            }
            let rendered = shared.render(metric.shared.as_ref());
            let address = (name.as_ptr() as usize, name.len());
            let known = by_address.get(&address).copied().or_else(|| {
                let i = index.get(name).copied()?;
                by_address.insert(address, i);
                Some(i)
            });
            let (family_index, family) = match known {
                Some(i) => (i, &mut families[i]),
                None => {
                    by_address.insert(address, families.len());
                    index.insert(name, families.len());
                    families.push(Family {
                        name: &metric.name,
                        valid_name: is_valid_metric_name(&metric.name),
                        kind: metric.kind,
                        help: metric.help,
                        samples: Vec::new(),
                    });
                    let last = families.len() - 1;
                    (last, &mut families[last])
                }
            };
            let Some(rendered) = rendered.filter(|_| family.valid_name && is_valid_sample(metric))
            else {
                out.invalid += 1;
                continue;
            };
            let task_id_only = shared.task_id_only(rendered);
            let overlap = !metric.labels.is_empty()
                && metric.shared.as_ref().is_some_and(|s| {
                    metric
                        .labels
                        .keys()
                        .any(|k| written_get(s, task_id_only, k).is_some())
                });
            if family.kind != metric.kind {
                out.type_conflicts += 1;
            } else if !seen.insert(Series::new(
                family_index,
                metric,
                shared.hash(rendered),
                overlap,
                task_id_only,
            )) {
                out.duplicates += 1;
            } else {
                family.samples.push((metric, rendered, overlap));
            }
        }

        drop_histogram_name_clashes(&mut families, &index, &mut out);

        // One allocation for the whole text rather than a dozen doublings of megabytes.
        let estimate: usize = families
            .iter()
            .map(|f| {
                f.samples.len() * (f.name.len() + 32)
                    + f.samples
                        .iter()
                        .map(|&(_, r, _)| shared.text(r).len())
                        .sum::<usize>()
            })
            .sum();
        if chunk == usize::MAX {
            text.reserve(estimate.max(self.last_len));
        } else {
            // A chunk may overrun by one sample line.
            text.reserve(chunk + (chunk >> 2));
        }
        // Families whose every sample was dropped get no HELP/TYPE either.
        let written = families
            .iter()
            .filter(|f| !f.samples.is_empty())
            .try_for_each(|family| write_family(text, family, shared, chunk, &mut flush))
            .and_then(|()| write_task_info(text, shared, chunk, &mut flush))
            .and_then(|()| if text.is_empty() { Ok(()) } else { flush(text) });
        shared.forget_unused();
        if chunk == usize::MAX {
            self.last_len = text.len();
        }
        written.map(|()| out)
    }
}

/// The Go parser reads `a_bucket`, `a_sum` and `a_count` as samples of histogram `a` when
/// `a` exists and as their own family otherwise, so a histogram `a` and a family named
/// one of these cannot both be written: the one that appeared later is dropped.
fn drop_histogram_name_clashes(
    families: &mut [Family<'_>],
    index: &HashMap<&str, usize>,
    out: &mut Encoded,
) {
    for i in 0..families.len() {
        let name = families[i].name;
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix));
        let Some(&j) = base.and_then(|b| index.get(b)) else {
            continue;
        };
        if families[j].kind != MetricType::Histogram
            || families[i].samples.is_empty()
            || families[j].samples.is_empty()
        {
            continue;
        }
        let later = &mut families[i.max(j)];
        out.type_conflicts += later.samples.len();
        later.samples.clear();
    }
}

/// Writes `name="value"` pairs separated by commas.
fn write_labels<'a>(text: &mut String, labels: impl Iterator<Item = (&'a String, &'a String)>) {
    for (i, (name, value)) in labels.enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(name);
        text.push_str("=\"");
        push_escaped_label_value(text, value);
        text.push('"');
    }
}

/// Writes one family, calling `flush` whenever `text` holds `chunk` bytes or more.
fn write_family<E>(
    text: &mut String,
    family: &Family<'_>,
    shared: &SharedLabels,
    chunk: usize,
    flush: &mut impl FnMut(&mut String) -> Result<(), E>,
) -> Result<(), E> {
    // Writing into a String cannot fail, so the fmt::Results below carry no information.
    if family.help.is_empty() {
        let _ = writeln!(text, "# HELP {}", family.name);
    } else {
        let _ = writeln!(text, "# HELP {} {}", family.name, escape_help(family.help));
    }
    let kind = match family.kind {
        MetricType::Gauge => "gauge",
        MetricType::Counter => "counter",
        MetricType::Histogram => "histogram",
    };
    let _ = writeln!(text, "# TYPE {} {kind}", family.name);
    for &(sample, rendered, overlap) in &family.samples {
        text.push_str(&sample.name);
        text.push_str(sample.suffix);
        let shared_text = shared.text(rendered);
        if !sample.labels.is_empty() || !shared_text.is_empty() {
            text.push('{');
            write_labels(text, sample.labels.iter());
            if overlap {
                // Rare: an own label replaces a shared one, so render this sample's rest.
                let rest = written_shared(sample.shared.as_deref(), shared.task_id_only(rendered))
                    .filter(|(k, _)| !sample.labels.contains_key(*k));
                let mut rest_text = String::new();
                write_labels(&mut rest_text, rest);
                if !sample.labels.is_empty() && !rest_text.is_empty() {
                    text.push(',');
                }
                text.push_str(&rest_text);
            } else if !shared_text.is_empty() {
                if !sample.labels.is_empty() {
                    text.push(',');
                }
                text.push_str(shared_text);
            }
            text.push('}');
        }
        text.push(' ');
        push_value(text, sample.value);
        text.push('\n');
        if text.len() >= chunk {
            flush(text)?;
        }
    }
    Ok(())
}

/// Whether a sample (whose family name is valid) can be written without the parser
/// rejecting or misreading it.
fn is_valid_sample(metric: &Metric) -> bool {
    if !metric.labels.keys().all(|l| is_valid_label_name(l)) {
        return false;
    }
    match metric.kind {
        // Any other suffix would make the parser start a new, untyped family.
        MetricType::Gauge | MetricType::Counter => metric.suffix.is_empty(),
        // Own or shared: a shared `le` is written too.
        MetricType::Histogram => match (metric.suffix, metric.label("le")) {
            // The parser requires a float `le` on every bucket and nowhere else.
            ("_bucket", le) => le.is_some_and(is_go_float),
            ("_sum" | "_count", le) => le.is_none(),
            _ => false,
        },
    }
}

/// Whether Go's `ParseFloat`, which the parser reads `le` with, takes `v`. Rust's parser
/// takes the same decimal forms and `inf`/`infinity`, but also a signed `nan`, which Go
/// refuses.
fn is_go_float(v: &str) -> bool {
    let unsigned = v.strip_prefix(['+', '-']);
    v.parse::<f64>().is_ok() && !unsigned.is_some_and(|u| u.eq_ignore_ascii_case("nan"))
}

/// Escapes a HELP text: only `\` and newline are special there.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Appends a label value escaped: `\`, `"` and newline are special inside the quotes.
fn push_escaped_label_value(text: &mut String, value: &str) {
    if !value.contains(['\\', '"', '\n']) {
        text.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

/// Formats a sample value the way the Go parser reads it back exactly.
///
/// Integral values below 2^63 print as integers (counters such as `12345678901`), the
/// usual range prints positionally, and very large or small magnitudes use an exponent
/// so that `1e300` does not become 301 digits. All forms are shortest round-trip.
pub fn format_value(v: f64) -> String {
    let mut out = String::new();
    push_value(&mut out, v);
    out
}

/// Appends a sample value as [`format_value`] formats it, without an allocation.
fn push_value(text: &mut String, v: f64) {
    if v.is_nan() {
        text.push_str("NaN");
    } else if v.is_infinite() {
        text.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == 0.0 {
        // Also turns -0 into 0, which reads better and compares equal.
        text.push('0');
    } else if v.fract() == 0.0 && v.abs() < 9.007_199_254_740_992e15 {
        // Exact as an integer (below 2^53), and much cheaper to format than a float.
        text.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        let magnitude = v.abs();
        // Writing into a String cannot fail.
        let _ = if (v.fract() == 0.0 && magnitude < 9.223_372_036_854_776e18)
            || (1e-4..1e16).contains(&magnitude)
        {
            write!(text, "{v}")
        } else {
            write!(text, "{v:e}")
        };
    }
}
