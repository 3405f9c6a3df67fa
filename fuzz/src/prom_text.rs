//! A strict reader of the Prometheus text exposition format 0.0.4, written from the format's
//! rules and from how the Go parser (`expfmt.TextParser`, which `promtool check metrics`
//! and node_exporter's textfile collector use) assigns lines to families:
//!
//! - `# HELP <name> <text>` (escapes `\\` and `\n` only) and `# TYPE <name> <type>`, at
//!   most once per family, `TYPE` before the family's samples; other `#` lines are
//!   comments.
//! - `<name>[{<label>="<value>",...}] <value> [<timestamp>]`: names `[a-zA-Z_:][a-zA-Z0-9_:]*`,
//!   label names `[a-zA-Z_][a-zA-Z0-9_]*` not reserved (`__` prefix), once per sample;
//!   label values escape `\\`, `\"` and `\n` only; values as Go's `ParseFloat` reads them
//!   (the forms an encoder writes: decimal, exponent, `NaN`, `+Inf`, `-Inf`).
//! - A sample belongs to the family of its exact name if there is one, else to the
//!   histogram (or summary) its `_bucket`/`_sum`/`_count` suffix names, else to a new
//!   family. HELP and TYPE lines are resolved the same way and must name their family
//!   exactly (a `# TYPE x_sum gauge` after histogram `x` is the Go parser's "second TYPE").
//! - A family's lines form one group; a series (name and label set) appears once.
//! - Histogram samples are `_bucket` with a float `le`, or `_sum`/`_count` without `le`.
//!
//! Stricter than the Go parser where it accepts text that a scrape would then misread
//! (duplicate series, families split in two, `le` on `_sum`): the encoder promises
//! neither.

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name, suffix included.
    pub name: String,
    /// Labels by name.
    pub labels: BTreeMap<String, String>,
    /// The value.
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

#[derive(Default)]
struct Family {
    kind: Option<Kind>,
    help: bool,
    samples: bool,
    /// Another family's line came after this family's lines.
    closed: bool,
}

/// Reads `text`; `Err` names the 1-based line and what is wrong.
pub fn check(text: &str) -> Result<Vec<Sample>, String> {
    let mut reader = Reader::default();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let Some(body) = text.strip_suffix('\n') else {
        return Err("the text does not end with a newline".into());
    };
    for (i, line) in body.split('\n').enumerate() {
        reader
            .line(line)
            .map_err(|e| format!("line {} {line:?}: {e}", i + 1))?;
    }
    Ok(reader.samples)
}

#[derive(Default)]
struct Reader {
    families: HashMap<String, Family>,
    current: Option<String>,
    series: HashSet<(String, BTreeMap<String, String>)>,
    samples: Vec<Sample>,
}

impl Reader {
    fn line(&mut self, line: &str) -> Result<(), String> {
        if line.trim_matches([' ', '\t']).is_empty() {
            return Ok(());
        }
        match line.strip_prefix('#') {
            Some(rest) => self.comment(rest.trim_start_matches([' ', '\t'])),
            None => self.sample(line),
        }
    }

    fn comment(&mut self, rest: &str) -> Result<(), String> {
        let (keyword, rest) = split_blank(rest);
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        let (name, rest) = split_blank(rest);
        if !is_metric_name(name) {
            return Err(format!("{keyword}: invalid metric name {name:?}"));
        }
        let family = self.enter(name)?;
        if family != name {
            return Err(format!(
                "{keyword} for {name} would be read as the {family} family's"
            ));
        }
        let f = self.families.entry(family.clone()).or_default();
        if keyword == "HELP" {
            if f.help {
                return Err(format!("second HELP for {family}"));
            }
            f.help = true;
            check_escapes(rest, &['\\', 'n']).map_err(|e| format!("HELP text: {e}"))?;
        } else {
            if f.kind.is_some() || f.samples {
                return Err(format!(
                    "second TYPE for {family}, or TYPE after its samples"
                ));
            }
            f.kind = Some(match rest.trim_end_matches([' ', '\t']) {
                "counter" => Kind::Counter,
                "gauge" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                "summary" => Kind::Summary,
                "untyped" => Kind::Untyped,
                other => return Err(format!("unknown type {other:?}")),
            });
        }
        Ok(())
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let (name, mut rest) = line.split_at(name_end);
        if !is_metric_name(name) {
            return Err(format!("invalid metric name {name:?}"));
        }
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = read_labels(after, &mut labels)?;
        }
        let Some(rest) = rest.strip_prefix([' ', '\t']) else {
            return Err("no blank before the value".into());
        };
        let (value, rest) = split_blank(rest.trim_start_matches([' ', '\t']));
        let value = parse_float(value).ok_or_else(|| format!("invalid value {value:?}"))?;
        let (timestamp, rest) = split_blank(rest);
        if !timestamp.is_empty() && timestamp.parse::<i64>().is_err() {
            return Err(format!("invalid timestamp {timestamp:?}"));
        }
        if !rest.trim_matches([' ', '\t']).is_empty() {
            return Err(format!("text after the timestamp: {rest:?}"));
        }

        let family = self.enter(name)?;
        let f = self.families.entry(family.clone()).or_default();
        f.samples = true;
        let kind = f.kind.unwrap_or(Kind::Untyped);
        let suffix = &name[family.len()..];
        match kind {
            Kind::Histogram => {
                let le = labels.get("le");
                match suffix {
                    "_bucket" if le.is_none() => return Err("bucket without le".into()),
                    "_bucket" => {}
                    "_sum" | "_count" if le.is_some() => {
                        return Err(format!("le on histogram {suffix}"));
                    }
                    "_sum" | "_count" => {}
                    _ => return Err(format!("histogram {family} sample without a suffix")),
                }
                if let Some(le) = le
                    && parse_float(le).is_none()
                {
                    return Err(format!("le {le:?} is not a float"));
                }
            }
            Kind::Summary => {
                if let Some(q) = labels.get("quantile")
                    && parse_float(q).is_none()
                {
                    return Err(format!("quantile {q:?} is not a float"));
                }
            }
            Kind::Counter | Kind::Gauge | Kind::Untyped => {}
        }
        if !self.series.insert((name.to_owned(), labels.clone())) {
            return Err(format!("duplicate series {name}{labels:?}"));
        }
        self.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
        Ok(())
    }

    /// The family `name` belongs to, made current; a family whose group has ended may not
    /// come back.
    fn enter(&mut self, name: &str) -> Result<String, String> {
        let family = self.resolve(name);
        if self.current.as_deref() != Some(family.as_str()) {
            let f = self.families.entry(family.clone()).or_default();
            if f.closed {
                return Err(format!("the {family} family's lines are not one group"));
            }
            if let Some(previous) = self.current.take()
                && let Some(p) = self.families.get_mut(&previous)
            {
                p.closed = true;
            }
            self.current = Some(family.clone());
        }
        Ok(family)
    }

    /// The Go parser's `setOrCreateCurrentMF`: exact name, else the summary or histogram
    /// the suffix names, else a new family.
    fn resolve(&self, name: &str) -> String {
        if self.families.contains_key(name) {
            return name.to_owned();
        }
        for (suffix, kinds) in [
            ("_sum", &[Kind::Summary, Kind::Histogram][..]),
            ("_count", &[Kind::Summary, Kind::Histogram]),
            ("_bucket", &[Kind::Histogram]),
        ] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(f) = self.families.get(base)
                && f.kind.is_some_and(|k| kinds.contains(&k))
            {
                return base.to_owned();
            }
        }
        name.to_owned()
    }
}

/// `{...}` after the name; returns the text after the closing brace.
fn read_labels<'a>(
    mut rest: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (label, after) = rest.split_at(end);
        if !is_label_name(label) {
            return Err(format!("invalid or reserved label name {label:?}"));
        }
        let Some(after) = after.trim_start_matches([' ', '\t']).strip_prefix('=') else {
            return Err(format!("no = after label {label}"));
        };
        let Some(after) = after.trim_start_matches([' ', '\t']).strip_prefix('"') else {
            return Err(format!("label {label}: value not quoted"));
        };
        let mut value = String::new();
        let mut chars = after.char_indices();
        let close = loop {
            match chars.next() {
                None => return Err(format!("label {label}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => {
                        return Err(format!("label {label}: invalid escape {other:?}"));
                    }
                },
                Some((_, '\n')) => return Err(format!("label {label}: raw newline")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(label.to_owned(), value).is_some() {
            return Err(format!("label {label} twice"));
        }
        rest = after[close + 1..].trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("no , or }} after label {label}"));
        }
    }
}

/// The first blank-separated token and the rest after the blanks that follow it.
fn split_blank(s: &str) -> (&str, &str) {
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn check_escapes(text: &str, allowed: &[char]) -> Result<(), String> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e) if allowed.contains(&e) => {}
                other => return Err(format!("invalid escape \\{other:?}")),
            }
        }
    }
    Ok(())
}

// Written again rather than taken from `owca::metrics::labels`: the reader is the oracle
// the encoder is checked against, so it must not share the encoder's rules.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// Go's `ParseFloat` grammar for base 10 (the parser reads values and `le` with it): an
/// optional sign and `inf`/`infinity`, or `nan` without a sign (case-insensitive), or a
/// decimal with an optional exponent. Hexadecimal floats, which Go also reads, are left
/// out: an encoder has no reason to write them.
fn parse_float(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.eq_ignore_ascii_case("inf") || digits.eq_ignore_ascii_case("infinity") {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::NAN);
    }
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], Some(&digits[i + 1..])),
        None => (digits, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !all_digits(e) {
            return None;
        }
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::check;

    const GOOD: &str = "# HELP a_seconds Time \\\\ spent.\\nSecond line.\n\
        # TYPE a_seconds histogram\n\
        a_seconds_bucket{le=\"0.5\",task=\"t \\\"1\\\"\\n\"} 1\n\
        a_seconds_bucket{le=\"+Inf\",task=\"t \\\"1\\\"\\n\"} 2\n\
        a_seconds_sum{task=\"t \\\"1\\\"\\n\"} 0.75\n\
        a_seconds_count{task=\"t \\\"1\\\"\\n\"} 2\n\
        # HELP up\n\
        # TYPE up gauge\n\
        up 1\n\
        up{host=\"h\"} NaN\n\
        # TYPE c counter\n\
        c{a=\"\"} 1e300\n\
        c{a=\"x\",} -Inf 1700000000000\n\
        c{a=\"y\"} infinity\n\
        c{a=\"z\"} .5e+3\n";

    #[test]
    fn accepts_text_the_format_allows() {
        let samples = check(GOOD).unwrap();
        assert_eq!(samples.len(), 10);
        assert_eq!(samples[9].value, 500.0);
        assert_eq!(samples[0].labels["task"], "t \"1\"\n");
        assert_eq!(samples[6].value, 1e300);
        assert_eq!(check("").unwrap(), []);
    }

    #[test]
    fn rejects_what_a_parser_or_a_scrape_would_refuse() {
        for (text, why) in [
            ("up 1", "newline"),
            ("up{le=\"1\",le=\"2\"} 1\n", "twice"),
            ("up{__name__=\"x\"} 1\n", "reserved"),
            ("up{__x=\"x\"} 1\n", "reserved"),
            ("up{0a=\"x\"} 1\n", "invalid"),
            ("up{a=\"\\t\"} 1\n", "escape"),
            ("up{a=x} 1\n", "quoted"),
            ("up{a=\"x\" b=\"y\"} 1\n", "after label"),
            ("up 1\nup 2\n", "duplicate series"),
            (
                "up{a=\"1\",b=\"2\"} 1\nup{b=\"2\",a=\"1\"} 2\n",
                "duplicate series",
            ),
            ("up 1\ndown 1\nup{a=\"1\"} 1\n", "one group"),
            ("up 1\n# TYPE up gauge\n", "TYPE after"),
            ("# TYPE up gauge\n# TYPE up gauge\n", "second TYPE"),
            ("# HELP up a\n# HELP up b\n", "second HELP"),
            ("# HELP up a \\t\n", "escape"),
            ("# TYPE up bogus\n", "unknown type"),
            ("# TYPE 1up gauge\n", "invalid metric name"),
            ("1up 1\n", "invalid metric name"),
            ("up 0x1\n", "invalid value"),
            ("up 0x1p-2\n", "invalid value"),
            ("up -NaN\n", "invalid value"),
            ("up 1e\n", "invalid value"),
            ("up .\n", "invalid value"),
            ("up 1 2 3\n", "after the timestamp"),
            ("up 1 1.5\n", "timestamp"),
            ("up1\n", "blank"),
            (
                "# TYPE h histogram\nh_sum{le=\"1\"} 1\n",
                "le on histogram _sum",
            ),
            ("# TYPE h histogram\nh_bucket 1\n", "without le"),
            ("# TYPE h histogram\nh_bucket{le=\"x\"} 1\n", "not a float"),
            ("# TYPE h histogram\nh 1\n", "without a suffix"),
            (
                "# TYPE h histogram\nh_sum 1\n# TYPE h_sum gauge\n",
                "read as the h",
            ),
            (
                "# TYPE h_sum gauge\nh_sum 1\n# TYPE h histogram\nh_sum 2\n",
                "one group",
            ),
        ] {
            let err = check(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
