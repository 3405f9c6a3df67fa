//! `!PrometheusExporter`: serves the latest iteration's metrics at `/metrics`.
//!
//! Whoever can reach the port is a stranger, so each connection is bounded: its request
//! headers must arrive within `header_timeout` (after connecting, and again after each
//! response, which makes it the keep-alive idle timeout too), a response that cannot be
//! written for `write_timeout` (a client that does not read) ends the connection, and at
//! most `max_connections` are served at once; past that, new connections are closed at
//! once.
//!
//! The text is encoded at the first scrape after an iteration, not at every iteration:
//! with a scrape every 15 s, fourteen of fifteen iterations would be encoded for nobody.
//! It is one shared buffer: every response to that iteration holds a reference to it, not
//! a copy.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode, header, server::conn::http1, service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    time::Sleep,
};
use tracing::{debug, info, warn};

use super::{Storage, StorageError, prometheus};
use crate::{config::duration_secs, metrics::Metric};

/// The content type of Prometheus text exposition format 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Settings of the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExporterConfig {
    /// Address to listen on; loopback unless configured otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Time a client has to send a request's headers, after connecting or after the
    /// previous response (so also how long an idle kept-alive connection stays open).
    /// Default 10 s: scrapers send their request at once.
    #[serde(default = "default_timeout", deserialize_with = "duration_secs")]
    pub header_timeout: Duration,
    /// Time a response may go without any byte written (the client does not read)
    /// before the connection is closed. Default 10 s, Prometheus' default scrape timeout.
    #[serde(default = "default_timeout", deserialize_with = "duration_secs")]
    pub write_timeout: Duration,
    /// Connections served at once; more are closed as soon as they are accepted.
    /// Default 64: a few scrapers need one each.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// `every_sample` (default) or `info`: see [`prometheus::TaskLabels`].
    #[serde(default)]
    pub task_labels: prometheus::TaskLabels,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9487))
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_max_connections() -> usize {
    64
}

impl Default for PrometheusExporterConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            header_timeout: default_timeout(),
            write_timeout: default_timeout(),
            max_connections: default_max_connections(),
            task_labels: prometheus::TaskLabels::default(),
        }
    }
}

/// Keeps the last iteration's samples and serves their text to scrapers.
pub struct PrometheusExporter {
    latest: Arc<Mutex<Latest>>,
    addr: SocketAddr,
}

/// The last iteration's samples and, once a scraper asked for them, their text.
#[derive(Default)]
struct Latest {
    metrics: Vec<Metric>,
    text: Option<Bytes>,
    encoder: prometheus::Encoder,
    dropped_reported: usize,
    /// Texts encoded since start.
    encodings: u64,
}

impl Latest {
    /// The last iteration's text, encoded by the first scrape that asks for it.
    fn text(&mut self) -> Bytes {
        if let Some(text) = &self.text {
            return text.clone();
        }
        let encoded = self.encoder.encode(&self.metrics);
        self.encodings += 1;
        if encoded.dropped() != self.dropped_reported {
            warn!(
                dropped = encoded.dropped(),
                "samples the Prometheus format cannot hold were dropped"
            );
            self.dropped_reported = encoded.dropped();
        }
        let text = Bytes::from(encoded.text);
        self.text = Some(text.clone());
        text
    }
}

impl PrometheusExporter {
    /// Binds the address and starts serving on the current tokio runtime.
    pub fn start(config: &PrometheusExporterConfig) -> Result<Self, StorageError> {
        let bind_err = |source| StorageError::Listen {
            addr: config.listen,
            source,
        };
        let std_listener = std::net::TcpListener::bind(config.listen).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = std_listener.local_addr().map_err(bind_err)?;
        let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;
        let latest = Arc::new(Mutex::new(Latest {
            encoder: prometheus::Encoder::new(config.task_labels),
            ..Latest::default()
        }));
        tokio::spawn(serve(listener, Arc::clone(&latest), config.clone()));
        info!(%addr, "serving metrics at /metrics");
        Ok(Self { latest, addr })
    }

    /// Texts encoded since start: at most one per iteration, none for an iteration nobody
    /// scraped.
    pub fn encodings(&self) -> u64 {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .encodings
    }

    /// The address it listens on (the port chosen by the system when `listen` has port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Storage for PrometheusExporter {
    fn store(&mut self, metrics: &[Metric]) -> Result<(), StorageError> {
        self.store_owned(metrics.to_vec())
    }

    fn store_owned(&mut self, metrics: Vec<Metric>) -> Result<(), StorageError> {
        // A panicked scrape handler cannot have left these half-written: each is replaced
        // whole. Responses being written keep the previous text alive; it goes with the
        // last of them.
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let last = std::mem::replace(&mut latest.metrics, metrics);
        latest.text = None;
        // Freed after the lock: a scrape need not wait for it.
        drop(latest);
        drop(last);
        Ok(())
    }
}

/// Accepts connections until the runtime stops, each served in its own task.
async fn serve(
    listener: TcpListener,
    latest: Arc<Mutex<Latest>>,
    config: PrometheusExporterConfig,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    // Logged once per episode, not per connection.
    let (mut full, mut failing) = (false, false);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                failing = false;
                accepted
            }
            Err(e) => {
                // Out of file descriptors, typically: wait instead of spinning.
                if !failing {
                    warn!(
                        addr = %config.listen,
                        "Prometheus endpoint cannot accept connections: {e}"
                    );
                    failing = true;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            if !full {
                warn!(
                    max_connections = config.max_connections,
                    "Prometheus endpoint: too many connections, closing new ones until some end"
                );
                full = true;
            }
            drop(stream);
            continue;
        };
        if full {
            info!("Prometheus endpoint: accepting connections again");
            full = false;
        }
        let latest = Arc::clone(&latest);
        let io = TokioIo::new(WriteTimeout::new(stream, config.write_timeout));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let response = respond(&latest, &request);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http.serve_connection(io, service).await {
                debug!(%peer, "scrape connection closed: {e}");
            }
            drop(slot);
        });
    }
}

/// `GET /metrics`: the latest text; anything else: 404 or 405.
fn respond(
    latest: &Mutex<Latest>,
    request: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let status = if request.uri().path() != "/metrics" {
        StatusCode::NOT_FOUND
    } else if !matches!(*request.method(), Method::GET | Method::HEAD) {
        StatusCode::METHOD_NOT_ALLOWED
    } else {
        let text = latest.lock().unwrap_or_else(PoisonError::into_inner).text();
        let mut response = Response::new(Full::new(text));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(CONTENT_TYPE),
        );
        return response;
    };
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// A connection whose writes fail with `TimedOut` once they have made no progress for
/// `timeout`, so that a client that never reads cannot keep it (and its response) forever.
struct WriteTimeout {
    stream: TcpStream,
    timeout: Duration,
    /// Running while a write waits for the client.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteTimeout {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        Self {
            stream,
            timeout,
            stalled: None,
        }
    }

    /// After a write that made progress (`Ready`), forgets the stall; after one that waits,
    /// fails once the stall has lasted `timeout`.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let timeout = self.timeout;
        let stall = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(stall.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("the client read nothing for {timeout:?}"),
        )))
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.stream).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}
