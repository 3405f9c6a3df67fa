//! A stand-in Mesos agent for tests: answers `POST /api/v1` over HTTP or HTTPS on an
//! ephemeral 127.0.0.1 port with what the test sets, and records what it was asked.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

/// The real Mesos captures (see their ORIGIN.md).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mesos");

/// What the stand-in agent answers to every request.
#[derive(Clone)]
pub enum Answer {
    Json(Value),
    Status(u16),
    Garbage,
    SlowJson(Duration, Value),
    /// These bytes as the body, with status 200 and a Content-Length.
    Bytes(Vec<u8>),
}

/// A request as the agent received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub body: Vec<u8>,
}

/// An HTTP(S) server on an ephemeral 127.0.0.1 port, stopped on drop.
pub struct Agent {
    addr: SocketAddr,
    tls: bool,
    seen: Arc<Mutex<Vec<Seen>>>,
    answer: Arc<Mutex<Answer>>,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Agent {
    pub async fn start(answer: Answer, tls: Option<Arc<ServerConfig>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (is_tls, acceptor) = (tls.is_some(), tls.map(TlsAcceptor::from));
        let record = Arc::clone(&seen);
        let answer = Arc::new(Mutex::new(answer));
        let current = Arc::clone(&answer);
        let accept_loop = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, record, acceptor) =
                    (Arc::clone(&current), Arc::clone(&record), acceptor.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let answer = answer.lock().unwrap().clone();
                        respond(req, answer, Arc::clone(&record))
                    });
                    let served = match acceptor {
                        // A failed handshake is the client's error to report, not ours.
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => {
                                http1::Builder::new()
                                    .serve_connection(TokioIo::new(tls), service)
                                    .await
                            }
                            Err(_) => return,
                        },
                        None => {
                            http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                    };
                    drop(served);
                });
            }
        });
        Self {
            addr,
            tls: is_tls,
            seen,
            answer,
            accept_loop,
        }
    }

    pub fn endpoint(&self) -> String {
        format!(
            "{}://127.0.0.1:{}",
            if self.tls { "https" } else { "http" },
            self.addr.port()
        )
    }

    /// Changes what the agent answers from now on.
    pub fn set_answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn respond(
    req: Request<hyper::body::Incoming>,
    answer: Answer,
    record: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (content_type, accept) = (header("content-type"), header("accept"));
    let (method, path) = (req.method().to_string(), req.uri().path().to_owned());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    record.lock().unwrap().push(Seen {
        method,
        path,
        content_type,
        accept,
        body,
    });
    let (status, body) = match answer {
        Answer::Json(v) => (200, Bytes::from(v.to_string())),
        Answer::Status(status) => (status, Bytes::from("Agent is recovering")),
        Answer::Garbage => (200, Bytes::from("<html>not json")),
        Answer::SlowJson(delay, v) => {
            tokio::time::sleep(delay).await;
            (200, Bytes::from(v.to_string()))
        }
        Answer::Bytes(bytes) => (200, Bytes::from(bytes)),
    };
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    Ok(response.body(Full::new(body)).unwrap())
}

/// mesos_get_state.json with the task's executor `pid` and container id replaced.
pub fn get_state(pid: u32, container_id: &str) -> Value {
    let path = Path::new(FIXTURES).join("mesos_get_state.json");
    let mut answer: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for status in answer["get_state"]["get_tasks"]["launched_tasks"][0]["statuses"]
        .as_array_mut()
        .unwrap()
    {
        status["container_status"]["executor_pid"] = json!(pid);
        status["container_status"]["container_id"]["value"] = json!(container_id);
    }
    answer
}

/// One running task of [`get_state_of`]: its id, executor process and container id.
pub struct RunningTask {
    pub task_id: String,
    pub executor_pid: u32,
    pub container_id: String,
}

/// mesos_get_state.json with its one launched task repeated for each of `tasks`, with
/// that task's id, executor `pid` and container id.
pub fn get_state_of(tasks: &[RunningTask]) -> Value {
    let mut answer = get_state(0, "");
    let launched = &mut answer["get_state"]["get_tasks"]["launched_tasks"];
    let template = launched[0].clone();
    *launched = tasks
        .iter()
        .map(|t| {
            let mut task = template.clone();
            task["task_id"]["value"] = json!(t.task_id);
            task["name"] = json!(format!("root/bench/{}", t.task_id));
            for status in task["statuses"].as_array_mut().unwrap() {
                status["task_id"]["value"] = json!(t.task_id);
                status["container_status"]["executor_pid"] = json!(t.executor_pid);
                status["container_status"]["container_id"]["value"] = json!(t.container_id);
            }
            task
        })
        .collect();
    answer
}

/// Sets the labels of the `index`th launched task of a `GET_STATE` answer.
pub fn set_labels(answer: &mut Value, index: usize, labels: &[(&str, &str)]) {
    answer["get_state"]["get_tasks"]["launched_tasks"][index]["labels"]["labels"] = labels
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
}

/// Serves every connection on an ephemeral 127.0.0.1 port with one HTTP/1.1 200 answer
/// whose body is `total` bytes of spaces sent in chunks (`Transfer-Encoding: chunked`, no
/// Content-Length), as fast as the client reads; returns the endpoint. Stops with the
/// test's runtime.
pub async fn serve_chunked(total: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                // The request: headers and a small JSON body; read what arrives first.
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let mut sent = 0;
                while sent < total {
                    let n = chunk.len().min(total - sent);
                    let framed = [format!("{n:x}\r\n").as_bytes(), &chunk[..n], b"\r\n"].concat();
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                    sent += n;
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    format!("http://{addr}")
}
