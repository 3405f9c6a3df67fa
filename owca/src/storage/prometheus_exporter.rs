//! `!PrometheusExporter`: serves the latest iteration's metrics at `/metrics`.

use std::{
    net::SocketAddr,
    sync::{Arc, RwLock},
};

use axum::{Router, http::header, routing::get};
use serde::Deserialize;
use tracing::{error, info, warn};

use super::{Storage, StorageError, prometheus};
use crate::metrics::Metric;

/// Settings of the Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExporterConfig {
    /// Address to listen on; loopback unless configured otherwise.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9487))
}

/// Keeps the last encoded iteration and serves it to scrapers.
pub struct PrometheusExporter {
    latest: Arc<RwLock<Arc<String>>>,
    dropped_reported: usize,
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
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;
        let latest = Arc::new(RwLock::new(Arc::new(String::new())));
        let served = Arc::clone(&latest);
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let text = served.read().map(|t| Arc::clone(&t)).unwrap_or_default();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text.as_str().to_owned(),
                    )
                }
            }),
        );
        let addr = config.listen;
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                error!(%addr, "Prometheus endpoint stopped: {e}");
            }
        });
        info!(%addr, "serving metrics at /metrics");
        Ok(Self {
            latest,
            dropped_reported: 0,
        })
    }
}

impl Storage for PrometheusExporter {
    fn store(&mut self, metrics: &[Metric]) -> Result<(), StorageError> {
        let encoded = prometheus::encode(metrics);
        if encoded.dropped() != self.dropped_reported {
            warn!(
                dropped = encoded.dropped(),
                "samples the Prometheus format cannot hold were dropped"
            );
            self.dropped_reported = encoded.dropped();
        }
        let text = Arc::new(encoded.text);
        match self.latest.write() {
            Ok(mut latest) => *latest = text,
            // A panicked scrape handler cannot have left the string half-written.
            Err(poisoned) => *poisoned.into_inner() = text,
        }
        Ok(())
    }
}
