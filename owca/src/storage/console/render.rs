//! The task table as text: the cells of a row (one formatting for both outputs), the plain
//! table for pipes, scripts and bug reports, and the terminal screen (ratatui).

use ratatui::{
    Frame,
    layout::{Constraint, Flex, Layout, Rect},
    style::{Modifier, Style, Stylize as _},
    text::{Line, Span},
    widgets::{
        Block, Borders, Cell, HighlightSpacing, Paragraph, Row as TableRow, Table, TableState,
    },
};

use super::table::{Quantile, Row, SortKey, Summary, View};

/// A column: its header, the sort key it is ordered by, and its width on a terminal.
struct Column {
    title: &'static str,
    key: Option<SortKey>,
    width: Constraint,
}

/// The columns, task id first. Headers hold no spaces, so that `awk` can split the plain
/// table's header line as it splits the rows.
const COLUMNS: [Column; 10] = [
    col("TASK", Some(SortKey::Task), Constraint::Fill(3)),
    col("CPU", Some(SortKey::Cpu), Constraint::Length(6)),
    col("WAIT%", Some(SortKey::Wait), Constraint::Length(6)),
    col("P99", Some(SortKey::P99), Constraint::Length(7)),
    col(
        "CSW/s(v/i)",
        Some(SortKey::Switches),
        Constraint::Length(11),
    ),
    col("THR%", Some(SortKey::Throttled), Constraint::Length(5)),
    col("MEM", Some(SortKey::Memory), Constraint::Length(6)),
    col("IPC", Some(SortKey::Ipc), Constraint::Length(5)),
    col("ALLOC(q/s/c)", None, Constraint::Length(13)),
    col("CONTENTION", None, Constraint::Fill(2)),
];

/// Whether column `i` holds numbers (right-aligned): CPU to IPC.
fn is_numeric(i: usize) -> bool {
    (1..8).contains(&i)
}

const fn col(title: &'static str, key: Option<SortKey>, width: Constraint) -> Column {
    Column { title, key, width }
}

/// The sort keys and the key that selects each, in the order the help line shows them.
pub const SORT_KEYS: [(char, SortKey, &str); 8] = [
    ('c', SortKey::Cpu, "cpu"),
    ('w', SortKey::Wait, "wait"),
    ('p', SortKey::P99, "p99"),
    ('s', SortKey::Switches, "switches"),
    ('t', SortKey::Throttled, "throttled"),
    ('m', SortKey::Memory, "memory"),
    ('i', SortKey::Ipc, "ipc"),
    ('n', SortKey::Task, "name"),
];

/// The cells of a row, in `COLUMNS` order; `-` where there is no value.
pub fn cells(r: &Row) -> [String; 10] {
    let num = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    let pct = |v: Option<f64>| num(v.map(|v| v * 100.0), 1);
    let switches = match (r.switches_voluntary, r.switches_involuntary) {
        (None, None) => "-".to_owned(),
        (v, i) => format!("{}/{}", num(v, 0), num(i, 0)),
    };
    let alloc = match (r.cpu_quota, r.cpu_shares, r.cpuset_cpus) {
        (None, None, None) => "-".to_owned(),
        (q, s, c) => [q, s, c].map(short).join("/"),
    };
    [
        r.task_id.clone(),
        num(r.cpu, 2),
        pct(r.wait_share),
        match r.wait_p99 {
            None => "-".to_owned(),
            Some(Quantile::Within(s)) => seconds(s),
            Some(Quantile::Above(s)) => format!(">{}", seconds(s)),
        },
        switches,
        pct(r.throttled_share),
        r.memory_bytes.map_or("-".to_owned(), bytes),
        num(r.ipc, 2),
        alloc,
        contention(r),
    ]
}

/// `!a,b` for an anomaly (its contenders), else who ran while the task waited most and
/// its share of the wait, `b(63%)`.
fn contention(r: &Row) -> String {
    if !r.anomaly.is_empty() {
        return format!("!{}", r.anomaly.join(","));
    }
    match &r.top_contender {
        Some((by, share)) => format!("{by}({:.0}%)", share * 100.0),
        None => "-".to_owned(),
    }
}

/// A value without needless decimals: `2`, `0.5`, `0.25`.
fn short(v: Option<f64>) -> String {
    let Some(v) = v else { return "-".to_owned() };
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Seconds in the unit that suits them: `820us`, `4.2ms`, `1.50s`.
fn seconds(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0}us", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1}ms", s * 1e3)
    } else {
        format!("{s:.2}s")
    }
}

/// Bytes in binary units as top shows them: `512K`, `6.9M`, `198M`, `21G`.
fn bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let (mut v, mut unit) = (b, 0);
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 && unit > 0 {
        format!("{v:.1}{}", UNITS[unit])
    } else {
        format!("{v:.0}{}", UNITS[unit])
    }
}

/// The line above the table: the node, the agent, errors by component.
pub fn summary_line(s: &Summary) -> String {
    let host = s.host.as_deref().unwrap_or("?");
    let cpus = s.cpus.map_or("?".to_owned(), |c| c.to_string());
    let agent_cpu = s
        .agent_cpu
        .map_or("-".to_owned(), |c| format!("{:.1}%", c * 100.0));
    let rss = s.agent_rss_bytes.map_or("-".to_owned(), bytes);
    let errors = if s.errors.is_empty() {
        "none".to_owned()
    } else {
        let each = s.errors.iter().map(|(c, n, new)| {
            if *new > 0.0 {
                format!("{c} {n} (+{new})")
            } else {
                format!("{c} {n}")
            }
        });
        each.collect::<Vec<_>>().join(", ")
    };
    format!(
        "{host}: {cpus} CPUs, {} tasks | agent: {agent_cpu} CPU, {rss} RSS | errors: {errors}",
        s.tasks
    )
}

/// The plain table: the column header line, one line per row, then the summary as a
/// `#` comment line. Columns are separated by two spaces, numbers right-aligned.
pub fn plain(view: &View) -> String {
    let rows: Vec<[String; 10]> = view.rows.iter().map(cells).collect();
    let titles = COLUMNS.map(|c| c.title.to_owned());
    let mut widths = titles.clone().map(|t| t.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(&titles).chain(&rows) {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(widths).enumerate() {
            let numeric = is_numeric(i);
            if i > 0 {
                text.push_str("  ");
            }
            if numeric {
                text.push_str(&format!("{cell:>w$}"));
            } else {
                text.push_str(&format!("{cell:<w$}"));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out.push_str("# ");
    out.push_str(&summary_line(&view.summary));
    out.push('\n');
    out
}

/// What the screen shows besides the view.
#[derive(Debug, Default)]
pub struct Extras<'a> {
    /// A problem to show in the summary line (e.g. the agent cannot be reached).
    pub status: Option<&'a str>,
    /// The latest log lines (the agent's own, while the screen hides its stderr).
    pub logs: &'a [String],
}

/// Draws the whole screen: summary, keys, table, and the latest log lines if any.
pub fn draw(frame: &mut Frame<'_>, view: &View, table: &mut TableState, extras: &Extras<'_>) {
    let log_height = if extras.logs.is_empty() {
        0
    } else {
        extras.logs.len().min(4) as u16 + 1
    };
    let [summary, keys, body, logs] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(log_height),
    ])
    .areas(frame.area());

    let mut line = vec![Span::from(summary_line(&view.summary)).bold()];
    if let Some(status) = extras.status {
        line.push(Span::from(format!(" | {status}")).red().bold());
    }
    frame.render_widget(Line::from(line), summary);
    frame.render_widget(keys_line(view), keys);
    draw_table(frame, body, view, table);
    if log_height > 0 {
        let shown = &extras.logs[extras.logs.len().saturating_sub(4)..];
        let text: Vec<Line<'_>> = shown.iter().map(|l| Line::from(l.as_str())).collect();
        let block = Block::default().borders(Borders::TOP).title(" log ").dim();
        frame.render_widget(Paragraph::new(text).block(block), logs);
    }
}

fn keys_line(view: &View) -> Line<'static> {
    let mut spans = vec![Span::from("sort:")];
    for (key, sort, name) in SORT_KEYS {
        let text = format!(" {key}:{name}");
        spans.push(if sort == view.sort.key {
            Span::from(text).reversed()
        } else {
            Span::from(text)
        });
    }
    spans.push(Span::from("  r:reverse  ↑↓:scroll  q:quit"));
    Line::from(spans).dim()
}

fn draw_table(frame: &mut Frame<'_>, area: Rect, view: &View, state: &mut TableState) {
    let widths = COLUMNS.map(|c| c.width);
    let columns = Layout::horizontal(widths)
        .flex(Flex::Start)
        .spacing(1)
        .split(Rect::new(0, 0, area.width, 1));
    let (task_width, contention_width) = (columns[0].width, columns[9].width);
    let header = COLUMNS.iter().enumerate().map(|(i, c)| {
        let mark = match (c.key == Some(view.sort.key), view.sort.reversed) {
            (false, _) => "",
            (true, false) if view.sort.key == SortKey::Task => "▲",
            (true, false) => "▼",
            (true, true) if view.sort.key == SortKey::Task => "▼",
            (true, true) => "▲",
        };
        let title = Line::from(format!("{}{mark}", c.title));
        Cell::from(if is_numeric(i) {
            title.right_aligned()
        } else {
            title
        })
    });
    let rows = view.rows.iter().map(|r| {
        let mut cells = cells(r);
        cells[0] = fit(&cells[0], task_width);
        cells[9] = match r.anomaly.as_slice() {
            // The first contender whole enough to recognise, and how many more.
            [first, rest @ ..] if !rest.is_empty() => {
                let more = format!("+{}", rest.len());
                let room = contention_width.saturating_sub(1 + more.len() as u16);
                format!("!{}{more}", fit(first, room))
            }
            _ => fit(&cells[9], contention_width),
        };
        let row = TableRow::new(cells.into_iter().enumerate().map(|(i, c)| {
            let cell = Line::from(c);
            Cell::from(if is_numeric(i) {
                cell.right_aligned()
            } else {
                cell
            })
        }));
        if r.anomaly.is_empty() {
            row
        } else {
            row.red().bold()
        }
    });
    let table = Table::new(rows, widths)
        .header(
            TableRow::new(header)
                .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
        )
        .flex(Flex::Start)
        .column_spacing(1)
        .highlight_spacing(HighlightSpacing::Never)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_stateful_widget(table, area, state);
}

/// `text` cut to `width` characters in the middle (`process_api/5f…b5a2`), so that both
/// a task id's prefix and its distinguishing end stay visible.
fn fit(text: &str, width: u16) -> String {
    let width = usize::from(width);
    let n = text.chars().count();
    if n <= width || width < 3 {
        return text.to_owned();
    }
    let tail = (width - 1) / 2;
    let head = width - 1 - tail;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(seconds(0.00082), "820us");
        assert_eq!(seconds(0.0042), "4.2ms");
        assert_eq!(seconds(1.5), "1.50s");
        assert_eq!(bytes(7_200_768.0), "6.9M");
        assert_eq!(bytes(207_572_992.0), "198M");
        assert_eq!(bytes(512.0), "512B");
        assert_eq!(short(Some(0.5)), "0.5");
        assert_eq!(short(Some(2.0)), "2");
        assert_eq!(fit("process_api/5f82c8d49ee4", 10), "proce…9ee4");
        assert_eq!(fit("short", 10), "short");
    }
}
