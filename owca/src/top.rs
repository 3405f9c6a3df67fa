//! `owca top`: a running agent's `/metrics` (its `!PrometheusExporter`) shown as the task
//! table of `!ConsoleStorage`, live on a terminal or printed once.
//!
//! Its own module, above `storage`: it is a client of an agent, not a storage, and uses
//! storage's reader for the text and the console's table and screen for the view, so the
//! two show the same rows. Rates divide by the difference of the agent's
//! `owca_iteration_timestamp_seconds`, not by when the pages were fetched, so they are
//! exact however the polls fall between iterations.

use std::{
    future::Future,
    io::{IsTerminal as _, Write as _},
    time::{Duration, Instant},
};

use crate::storage::{
    console::{KeyAction, Screen, Snapshot, Sort, SortKey, View, render},
    prometheus_reader::{self, ReadError},
};

/// What `owca top` was asked for.
#[derive(Debug, Clone)]
pub struct TopOptions {
    /// The agent's `/metrics` URLs (a second one for an anomalies exporter); merged.
    pub urls: Vec<String>,
    /// Print one table and exit, even on a terminal.
    pub once: bool,
    /// Time between polls of a live screen.
    pub interval: Duration,
    /// The first sort column.
    pub sort: SortKey,
}

/// Why `owca top` could not show the agent.
#[derive(Debug, thiserror::Error)]
pub enum TopError {
    /// The HTTP client could not be created.
    #[error("cannot create an HTTP client: {0}")]
    Client(reqwest::Error),
    /// No answer from the URL (nothing listening, a timeout...).
    #[error("cannot reach the agent at {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// The innermost cause (e.g. "Connection refused (os error 111)").
        reason: String,
    },
    /// The URL answered with an error status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The page is not Prometheus text.
    #[error("{url} is not Prometheus text: {source}")]
    Read {
        /// The URL.
        url: String,
        /// The bad line.
        source: ReadError,
    },
    /// The page has samples but not the agent's iteration time.
    #[error("{url} has no owca_iteration_timestamp_seconds: is it an owca agent's /metrics?")]
    NotOwca {
        /// The URL.
        url: String,
    },
    /// The agent published no new iteration in time.
    #[error("the agent at {url} published no new iteration in {waited} s: is it stuck?")]
    Stale {
        /// The URL.
        url: String,
        /// Seconds waited.
        waited: u64,
    },
    /// The terminal could not be set up or drawn on.
    #[error("terminal: {0}")]
    Terminal(std::io::Error),
}

/// How long `--once` waits for the agent's next iteration (to have rates).
const PATIENCE: Duration = Duration::from_secs(30);
/// How often it looks for it.
const RETRY: Duration = Duration::from_millis(200);
/// Time a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Shows the agent: live until `q`, Ctrl-C or `shutdown` on a terminal, otherwise (or with
/// `once`) one plain table on stdout, with rates over the agent's next iteration.
pub async fn run(opts: &TopOptions, shutdown: impl Future<Output = ()>) -> Result<(), TopError> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(TopError::Client)?;
    let sort = Sort {
        key: opts.sort,
        reversed: false,
    };
    let first = next_iteration(&client, &opts.urls, None).await?;
    if opts.once || !std::io::stdout().is_terminal() {
        let second = next_iteration(&client, &opts.urls, first.taken).await?;
        let text = render::plain(&View::new(Some(&first), &second, sort));
        // Best effort: a closed pipe (`| head`) is the reader's choice.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
        return Ok(());
    }
    live(&client, opts, sort, first, shutdown).await
}

/// The live screen until quit: polls every `interval`, shows each new iteration, and
/// shows (then clears) a failed poll in the summary line rather than quitting.
async fn live(
    client: &reqwest::Client,
    opts: &TopOptions,
    sort: Sort,
    first: Snapshot,
    shutdown: impl Future<Output = ()>,
) -> Result<(), TopError> {
    let mut screen = Screen::new(sort, false).map_err(TopError::Terminal)?;
    let (tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    let _input = crate::storage::console::terminal::Input::spawn(move |e| {
        // The receiver outlives the thread (dropped after `_input`).
        let _ = tx.send(e);
    })
    .map_err(TopError::Terminal)?;
    screen
        .show(View::new(None, &first, sort))
        .map_err(TopError::Terminal)?;
    let mut cur = first;
    let mut ticks = tokio::time::interval(opts.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = ticks.tick() => match fetch(client, &opts.urls).await {
                Ok(s) if s.taken.is_some() && s.taken != cur.taken => {
                    let prev = std::mem::replace(&mut cur, s);
                    screen.set_status(None).map_err(TopError::Terminal)?;
                    screen.show(View::new(Some(&prev), &cur, sort)).map_err(TopError::Terminal)?;
                }
                Ok(_) => {}
                Err(e) => screen.set_status(Some(e.to_string())).map_err(TopError::Terminal)?,
            },
            Some(event) = keys.recv() => {
                if screen.event(&event).map_err(TopError::Terminal)? == KeyAction::Quit {
                    return Ok(());
                }
            }
            () = &mut shutdown => return Ok(()),
        }
    }
}

/// Polls until the agent shows an iteration other than `after`.
async fn next_iteration(
    client: &reqwest::Client,
    urls: &[String],
    after: Option<f64>,
) -> Result<Snapshot, TopError> {
    let start = Instant::now();
    loop {
        let s = fetch(client, urls).await?;
        if s.taken.is_some() && s.taken != after {
            return Ok(s);
        }
        if start.elapsed() > PATIENCE {
            return Err(TopError::Stale {
                url: urls.first().cloned().unwrap_or_default(),
                waited: PATIENCE.as_secs(),
            });
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One snapshot of all `urls`, merged in order; `taken` is `None` while the agent has not
/// finished its first iteration (an empty page).
async fn fetch(client: &reqwest::Client, urls: &[String]) -> Result<Snapshot, TopError> {
    let mut merged = Snapshot::default();
    for (i, url) in urls.iter().enumerate() {
        let text = get(client, url).await?;
        let metrics = prometheus_reader::read(&text).map_err(|source| TopError::Read {
            url: url.clone(),
            source,
        })?;
        let s = Snapshot::from_metrics(&metrics);
        if i == 0 && s.taken.is_none() && !metrics.is_empty() {
            return Err(TopError::NotOwca { url: url.clone() });
        }
        merged.merge(&s);
    }
    Ok(merged)
}

async fn get(client: &reqwest::Client, url: &str) -> Result<String, TopError> {
    let fetch_err = |e: reqwest::Error| TopError::Fetch {
        url: url.to_owned(),
        reason: innermost(&e),
    };
    let response = client.get(url).send().await.map_err(fetch_err)?;
    let status = response.status();
    if !status.is_success() {
        return Err(TopError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
        });
    }
    response.text().await.map_err(fetch_err)
}

/// The last cause in an error's chain: what actually went wrong, without reqwest's
/// wrappers ("error sending request for url (...)").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(source) = last.source() {
        last = source;
    }
    last.to_string()
}
