//! The HTTP side of `!MesosNode`: building the client from the TLS settings, and one
//! `GET_STATE` call of the agent's v1 operator API.

use std::{path::Path, time::Duration};

use reqwest::{Certificate, Client, Identity, header};

use tracing::warn;

use super::{MesosError, MesosNode, ServerVerify};

/// Longest piece of an HTTP error answer kept in the error message.
const BODY_START_CHARS: usize = 200;

/// Builds the client `node` asks the agent with, reading the CA bundle and client
/// certificate files it names.
pub(super) fn build(node: &MesosNode) -> Result<Client, MesosError> {
    let endpoint = node.mesos_agent_endpoint.as_str();
    if node.timeout.is_zero() {
        return Err(MesosError::ZeroTimeout {
            endpoint: endpoint.to_owned(),
        });
    }
    let (verify, verify_field) = match (&node.ssl_verify, &node.ssl) {
        (Some(_), Some(_)) => {
            return Err(MesosError::BothSslSettings {
                endpoint: endpoint.to_owned(),
            });
        }
        (Some(v), None) => (v.clone(), "ssl_verify"),
        (None, Some(ssl)) => (ssl.server_verify.clone(), "ssl.server_verify"),
        (None, None) => (ServerVerify::SystemRoots, "ssl_verify"),
    };
    // The agent runs on this node; a proxy set for the service's outbound traffic must not
    // sit between them.
    let mut builder = Client::builder().timeout(node.timeout).no_proxy();
    match verify {
        ServerVerify::SystemRoots => {}
        ServerVerify::Disabled => {
            warn!(
                endpoint,
                "{verify_field}: false: the Mesos agent's certificate is not verified"
            );
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        ServerVerify::CaBundle(path) => {
            let pem = read(endpoint, verify_field, &path)?;
            let certs = Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad_pem(endpoint, verify_field, &path, &e))?;
            if certs.is_empty() {
                return Err(bad_pem(
                    endpoint,
                    verify_field,
                    &path,
                    &"no PEM certificate in the file",
                ));
            }
            // requests' `verify=<path>` trusts only that bundle; so do we.
            builder = builder.tls_certs_only(certs);
        }
    }
    if let Some(ssl) = &node.ssl {
        let identity = match (&ssl.client_cert_path, &ssl.client_key_path) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(MesosError::KeyWithoutCert {
                    endpoint: endpoint.to_owned(),
                });
            }
            (Some(cert), key) => {
                let mut pem = read(endpoint, "ssl.client_cert_path", cert)?;
                if let Some(key) = key {
                    pem.push(b'\n');
                    pem.extend(read(endpoint, "ssl.client_key_path", key)?);
                }
                let (field, path) = match key {
                    Some(key) => ("ssl.client_key_path", key),
                    None => ("ssl.client_cert_path", cert),
                };
                Some(Identity::from_pem(&pem).map_err(|e| bad_pem(endpoint, field, path, &e))?)
            }
        };
        if let Some(identity) = identity {
            builder = builder.identity(identity);
        }
    }
    builder.build().map_err(|error| MesosError::Client {
        endpoint: endpoint.to_owned(),
        error,
    })
}

fn read(endpoint: &str, field: &'static str, path: &Path) -> Result<Vec<u8>, MesosError> {
    std::fs::read(path).map_err(|source| MesosError::ReadFile {
        endpoint: endpoint.to_owned(),
        field,
        path: path.to_owned(),
        source,
    })
}

fn bad_pem(
    endpoint: &str,
    field: &'static str,
    path: &Path,
    reason: &dyn std::fmt::Display,
) -> MesosError {
    MesosError::BadPem {
        endpoint: endpoint.to_owned(),
        field,
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Most bytes of an HTTP error answer read, for its beginning.
const ERROR_BODY_BYTES: usize = 4096;

/// `POST <url>` with `{"type": "GET_STATE"}`; the answer's body, of at most `limit` bytes,
/// read into a buffer of `size` bytes (the last answer's) or of the announced length.
pub(super) async fn get_state(
    client: &Client,
    url: &str,
    timeout: Duration,
    limit: u64,
    size: usize,
) -> Result<Vec<u8>, MesosError> {
    let request_error = |error: reqwest::Error| {
        if error.is_timeout() {
            MesosError::Timeout {
                url: url.to_owned(),
                timeout,
            }
        } else {
            // The URL is already in our message.
            MesosError::Request {
                url: url.to_owned(),
                error: error.without_url(),
            }
        }
    };
    let mut response = client
        .post(url)
        .header(header::ACCEPT, "application/json")
        .json(&serde_json::json!({"type": "GET_STATE"}))
        .send()
        .await
        .map_err(request_error)?;
    let status = response.status();
    let too_large = || MesosError::TooLarge {
        url: url.to_owned(),
        limit,
    };
    if !status.is_success() {
        // Only the beginning is shown; the rest is not read.
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_BYTES
            && let Some(chunk) = response.chunk().await.map_err(request_error)?
        {
            body.extend_from_slice(&chunk);
        }
        return Err(MesosError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            body_start: String::from_utf8_lossy(&body)
                .chars()
                .take(BODY_START_CHARS)
                .collect(),
        });
    }
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    // Read chunk by chunk: a body without a length (chunked) must not grow without bound.
    // One buffer of the expected size rather than a dozen doublings of megabytes.
    let expected = response.content_length().map_or(size, |n| n as usize);
    let mut body = Vec::with_capacity(expected.saturating_add(4096).min(limit as usize));
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
