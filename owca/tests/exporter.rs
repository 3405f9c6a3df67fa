//! `!PrometheusExporter` against real sockets on 127.0.0.1, on a single-threaded runtime as
//! the agent runs it: scrapes work, and clients that send nothing, hold connections or
//! never read are cut off without slowing down the agent's stores.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on what it did not expect"
)]

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use owca::{
    metrics::Metric,
    storage::{PrometheusExporter, PrometheusExporterConfig, Storage, prometheus},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpSocket, TcpStream},
    time::timeout,
};

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: owca\r\n\r\n";

fn exporter(header_timeout: f64, write_timeout: f64, max_connections: usize) -> PrometheusExporter {
    PrometheusExporter::start(&PrometheusExporterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        header_timeout: Duration::from_secs_f64(header_timeout),
        write_timeout: Duration::from_secs_f64(write_timeout),
        max_connections,
        ..PrometheusExporterConfig::default()
    })
    .expect("listening on a free port")
}

/// One scrape on a new connection (`Connection: close`): the status line and the body.
async fn scrape(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: owca\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("a scrape answered within 5 s")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    (head.to_owned(), body.to_owned())
}

/// Waits for the server to close `stream`, reading (and counting) what it still sends;
/// the time it took, or `None` if it stayed open for `patience`.
async fn closed_within(stream: &mut TcpStream, patience: Duration) -> Option<(Duration, usize)> {
    let start = Instant::now();
    let mut received = 0;
    let mut buf = vec![0; 1 << 16];
    loop {
        let left = patience.checked_sub(start.elapsed())?;
        match timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some((start.elapsed(), received)),
            Ok(Ok(n)) => received += n,
        }
    }
}

fn package(value: f64) -> Vec<Metric> {
    vec![Metric::gauge("owca_up", "Up.", value).with_label("host", "node1")]
}

#[tokio::test(flavor = "current_thread")]
async fn a_scrape_gets_the_latest_metrics() {
    let mut exporter = exporter(10.0, 10.0, 64);
    let addr = exporter.local_addr();
    exporter.store(&package(1.0)).unwrap();
    let (head, body) = scrape(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    assert_eq!(body, prometheus::encode(&package(1.0)).text);

    exporter.store(&package(2.0)).unwrap();
    let (_, body) = scrape(addr, "/metrics").await;
    assert_eq!(body, prometheus::encode(&package(2.0)).text);

    let (head, _) = scrape(addr, "/other").await;
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

/// `task_labels: info`: the scrape has each task's labels once, on `task_info`.
#[tokio::test(flavor = "current_thread")]
async fn task_labels_info_is_served_as_configured() {
    let task = std::sync::Arc::new(owca::metrics::Labels::from(
        [("task_id", "t1"), ("application", "db")].map(|(k, v)| (k.to_owned(), v.to_owned())),
    ));
    let package = vec![Metric::gauge("task_up", "Up.", 1.0).with_shared(&task)];
    let mut exporter = PrometheusExporter::start(&PrometheusExporterConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        task_labels: prometheus::TaskLabels::Info,
        ..PrometheusExporterConfig::default()
    })
    .unwrap();
    exporter.store(&package).unwrap();
    let (head, body) = scrape(exporter.local_addr(), "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(body.contains("\ntask_up{task_id=\"t1\"} 1\n"), "{body}");
    assert!(
        body.ends_with("\ntask_info{application=\"db\",task_id=\"t1\"} 1\n"),
        "{body}"
    );
}

/// An iteration nobody scrapes is never encoded (with a scrape every 15 s, 14 of 15
/// iterations would be encoded for nobody), and the scrapes of one iteration share one text.
#[tokio::test(flavor = "current_thread")]
async fn an_iteration_is_encoded_once_and_only_when_scraped() {
    let mut exporter = exporter(10.0, 10.0, 64);
    let addr = exporter.local_addr();
    for v in 1..=5 {
        exporter.store(&package(f64::from(v))).unwrap();
    }
    assert_eq!(exporter.encodings(), 0);
    let (_, first) = scrape(addr, "/metrics").await;
    let (_, second) = scrape(addr, "/metrics").await;
    assert_eq!(first, prometheus::encode(&package(5.0)).text);
    assert_eq!(first, second);
    assert_eq!(exporter.encodings(), 1);
    exporter.store(&package(6.0)).unwrap();
    let (_, next) = scrape(addr, "/metrics").await;
    assert_eq!(next, prometheus::encode(&package(6.0)).text);
    assert_eq!(exporter.encodings(), 2);
}

/// A client that connects and sends nothing, or half a request, or stays after its
/// scrape, is disconnected once the header timeout has passed (it used to be kept forever).
#[tokio::test(flavor = "current_thread")]
async fn clients_that_send_no_request_are_disconnected_after_the_header_timeout() {
    let exporter = exporter(0.5, 10.0, 64);
    let addr = exporter.local_addr();

    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive.write_all(SCRAPE).await.unwrap();

    for (what, stream) in [
        ("a silent client", &mut silent),
        ("half a request", &mut half),
        ("an idle kept-alive connection", &mut kept_alive),
    ] {
        let (after, _) = closed_within(stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what} was still connected after 5 s"));
        assert!(
            after < Duration::from_secs(3),
            "{what}: closed after {after:?}"
        );
    }
    // Not at once: the timeout is what closed them.
    let mut late = TcpStream::connect(addr).await.unwrap();
    let (after, _) = closed_within(&mut late, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        after >= Duration::from_millis(400),
        "closed after {after:?}"
    );
}

/// Past `max_connections`, a new connection is closed at once; when one ends, scrapes
/// work again.
#[tokio::test(flavor = "current_thread")]
async fn connections_beyond_the_limit_are_closed() {
    let mut exporter = exporter(30.0, 10.0, 4);
    let addr = exporter.local_addr();
    exporter.store(&package(1.0)).unwrap();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the server accept them.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for _ in 0..3 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let _ = extra.write_all(SCRAPE).await;
        let (after, received) = closed_within(&mut extra, Duration::from_secs(3))
            .await
            .expect("a connection past the limit stayed open");
        assert_eq!(received, 0, "a connection past the limit was served");
        assert!(after < Duration::from_secs(1), "closed after {after:?}");
    }
    // The idle ones are still there.
    for stream in &mut idle {
        assert!(
            closed_within(stream, Duration::from_millis(100))
                .await
                .is_none()
        );
    }

    drop(idle.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (head, body) = scrape(addr, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, prometheus::encode(&package(1.0)).text);
}

/// A client that asks for a large text and never reads: the agent's stores and other
/// scrapes go on meanwhile, and the connection is closed after the write timeout (it
/// used to stay, holding its response, as long as the client liked).
#[tokio::test(flavor = "current_thread")]
async fn a_client_that_never_reads_neither_stalls_the_agent_nor_stays() {
    let mut exporter = exporter(10.0, 0.5, 64);
    let addr = exporter.local_addr();
    // About 8 MB: more than the server's socket buffer and the client's small one hold.
    let big: Vec<Metric> = (0..100_000)
        .map(|i| {
            Metric::gauge("task_big", "A large package.", f64::from(i))
                .with_label("task_id", format!("{i:0>60}"))
        })
        .collect();
    let big_len = prometheus::encode(&big).text.len();
    assert!(big_len > 8_000_000, "{big_len}");
    exporter.store(&big).unwrap();

    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(addr).await.unwrap();
    slow.write_all(SCRAPE).await.unwrap();
    // The server fills the buffers and waits for the client.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for i in 0..5 {
        let start = Instant::now();
        exporter.store(&package(f64::from(i))).unwrap();
        assert!(
            start.elapsed() < Duration::from_millis(50),
            "a store took {:?}",
            start.elapsed()
        );
        let (head, body) = scrape(addr, "/metrics").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, prometheus::encode(&package(f64::from(i))).text);
    }

    // Well past the write timeout, the client starts reading: the response was cut off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, received) = closed_within(&mut slow, Duration::from_secs(10))
        .await
        .expect("the slow reader's connection closed");
    assert!(
        received < big_len,
        "the whole response ({received} of {big_len} bytes) waited for a client that did not read"
    );
}
