//! `owca top` against a real agent and its `!PrometheusExporter` on 127.0.0.1, against
//! addresses where no agent answers, and `!ConsoleStorage` without a terminal.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    process::{Command, Output},
    time::{Duration, Instant},
};

use support::{Agent, PlacedTask, agent::OWCA, placed, sleep_s, workload::busy};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn top_once(url: &str) -> Output {
    Command::new(OWCA)
        .args(["top", "--url", url, "--once"])
        .output()
        .expect("running owca top")
}

/// The row of `task` in a plain table: its cells.
fn row<'a>(table: &'a str, task: &str) -> Option<Vec<&'a str>> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&task))
}

#[test]
fn top_once_prints_the_table_of_a_running_agent() {
    require_root!();
    let PlacedTask { rel, .. } = &placed("top", &["cpu", "cpuacct"], busy());
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut agent = Agent::start(
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: [{rel}]}}\n  action_delay: 0.5\n  \
             metrics_storage: !PrometheusExporter {{listen: '127.0.0.1:{port}'}}\n"
        ),
    );
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(agent.alive(), "the agent exited:\n{}", agent.log());
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the exporter never listened"
        );
        sleep_s(0.1);
    }

    let out = top_once(&format!("http://127.0.0.1:{port}/metrics"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let header: Vec<&str> = stdout.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "TASK",
            "CPU",
            "WAIT%",
            "P99",
            "CSW/s(v/i)",
            "THR%",
            "MEM",
            "IPC",
            "ALLOC(q/s/c)",
            "CONTENTION"
        ]
    );
    let cells = row(&stdout, rel).unwrap_or_else(|| panic!("no row of {rel}:\n{stdout}"));
    assert_eq!(cells.len(), header.len(), "{stdout}");
    let cpu: f64 = cells[1]
        .parse()
        .unwrap_or_else(|_| panic!("CPU of {rel}:\n{stdout}"));
    assert!(cpu > 0.0, "a busy loop ran:\n{stdout}");
    let switches = cells[4].split_once('/').expect("voluntary/involuntary");
    assert!(
        switches.0.parse::<f64>().is_ok() && switches.1.parse::<f64>().is_ok(),
        "{stdout}"
    );
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.starts_with("# ")
            && summary.contains("1 tasks")
            && summary.contains("errors: none"),
        "{stdout}"
    );
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");

    // The agent is gone now: a clear line, exit code 1.
    let out = top_once(&format!("http://127.0.0.1:{port}/metrics"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the agent"), "{stderr}");
}

#[test]
fn an_unreachable_agent_is_one_line_and_exit_code_1() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = top_once(&url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("owca top: cannot reach the agent at {url}: "))
            && stderr.contains("refused"),
        "{stderr}"
    );
}

/// A server on 127.0.0.1 that answers each of `n` requests with `response`.
fn serve(n: usize, response: &'static str) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let thread = std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            stream.write_all(response.as_bytes()).unwrap();
        }
    });
    (port, thread)
}

#[test]
fn a_page_that_is_not_an_agents_is_one_line_and_exit_code_1() {
    for (response, needle) in [
        (
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            "answered HTTP 404",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nup 1\n",
            "has no owca_iteration_timestamp_seconds",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\n<html>",
            "is not Prometheus text: line 1",
        ),
    ] {
        let (port, server) = serve(1, response);
        let out = top_once(&format!("http://127.0.0.1:{port}/metrics"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(needle), "{needle}: {stderr}");
        server.join().unwrap();
    }
}

/// Without a terminal, `!ConsoleStorage` writes the plain table to stdout each iteration.
#[test]
fn console_storage_without_a_terminal_prints_the_plain_table() {
    require_root!();
    let PlacedTask { rel, .. } = &placed("console", &["cpu", "cpuacct"], busy());
    let dir = tempfile::tempdir().unwrap();
    let stdout = dir.path().join("stdout.txt");
    let redirect = format!("exec \"$0\" \"$@\" >{}", stdout.display());
    let mut agent = Agent::start_under(
        &["sh", "-c", &redirect],
        dir.path(),
        &format!(
            "runner: !MeasurementRunner\n  node: !StaticNode {{tasks: [{rel}]}}\n  action_delay: 0.3\n  \
             metrics_storage: !ConsoleStorage {{sort: memory}}\n"
        ),
        &[],
        &[],
    );
    // The first table has no rates yet; the third has them for sure.
    let text = agent.wait_for(&stdout, "three tables", |t| {
        t.lines().filter(|l| l.starts_with("# ")).count() >= 3
    });
    let (status, log) = agent.terminate();
    assert!(status.success(), "{log}");
    let tables: Vec<&str> = text
        .split("\n\n")
        .filter(|t| !t.trim().is_empty())
        .collect();
    assert!(tables.len() >= 3, "{text}");
    for table in &tables {
        assert!(table.starts_with("TASK "), "{table}");
        assert!(row(table, rel).is_some(), "no row of {rel}:\n{table}");
    }
    let cells = row(tables[2], rel).unwrap();
    assert!(
        cells[1].parse::<f64>().is_ok_and(|c| c > 0.0),
        "{}",
        tables[2]
    );
    assert!(
        !log.contains("TASK "),
        "the table goes to stdout, the log to stderr:\n{log}"
    );
}
