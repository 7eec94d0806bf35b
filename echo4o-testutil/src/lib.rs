//! Test support shared by echo4o's crates: a real HTTP server on `127.0.0.1` that speaks enough
//! of OpenAI's chat-completions and images APIs to test clients, benchmark runners and synthesis
//! jobs, replies from a script, and records every request it receives (path, headers, body).
#![deny(missing_docs)]
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// What the server answers to one request.
#[derive(Debug, Clone)]
pub enum MockReply {
    /// A chat completion whose first choice says `content`, with some token usage.
    Content(String),
    /// Any status with a raw body (for errors, or a 200 that is not a completion).
    Raw {
        /// HTTP status.
        status: u16,
        /// Body, sent as it is.
        body: String,
    },
    /// 429 with `Retry-After: secs`.
    RateLimited {
        /// The `Retry-After` value, in seconds (fractions allowed).
        secs: f64,
    },
    /// Any status with a JSON body and extra headers (images replies, errors with request ids).
    Json {
        /// HTTP status.
        status: u16,
        /// Body.
        body: Value,
        /// Extra response headers.
        headers: Vec<(String, String)>,
    },
    /// Wait, then answer with the inner reply.
    Delayed(Duration, Box<MockReply>),
}

impl MockReply {
    /// A completion saying `content`.
    pub fn content(content: impl Into<String>) -> Self {
        MockReply::Content(content.into())
    }

    /// `status` with `body`.
    pub fn raw(status: u16, body: impl Into<String>) -> Self {
        MockReply::Raw {
            status,
            body: body.into(),
        }
    }

    /// 200 with a JSON body.
    pub fn json(body: Value) -> Self {
        MockReply::Json {
            status: 200,
            body,
            headers: vec![],
        }
    }

    /// This reply with an extra response header.
    pub fn with_header(self, name: &str, value: &str) -> Self {
        match self {
            MockReply::Json {
                status,
                body,
                mut headers,
            } => {
                headers.push((name.to_string(), value.to_string()));
                MockReply::Json {
                    status,
                    body,
                    headers,
                }
            }
            other => other,
        }
    }

    /// This reply after `delay`.
    pub fn after(self, delay: Duration) -> Self {
        MockReply::Delayed(delay, Box::new(self))
    }
}

/// Token usage the server reports with every completion.
pub const USAGE: (u64, u64) = (100, 20);

type Script = dyn Fn(&Value, usize) -> MockReply + Send + Sync;

#[derive(Clone)]
struct State {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request path, e.g. `/v1/images/edits`.
    pub path: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The JSON body; a body that is not JSON (multipart) is kept as a lossy UTF-8 string.
    pub body: Value,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A running mock server; it stops when dropped (with the test's runtime).
pub struct MockServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Starts a server on `127.0.0.1:0`. `script(body, n)` decides the reply to the `n`-th request
    /// (0-based, counted over all requests) whose JSON body is `body`. Every POST path is served
    /// (`/v1/chat/completions`, `/v1/images/generations`, `/v1/images/edits`, ...); the script
    /// tells them apart by [`Recorded::path`] via [`MockServer::requests`] or by the body.
    pub async fn start(
        script: impl Fn(&Value, usize) -> MockReply + Send + Sync + 'static,
    ) -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = State {
            script: Arc::new(script),
            requests: requests.clone(),
        };
        let app = Router::new()
            .route("/{*path}", post(handle))
            .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        MockServer {
            addr,
            requests,
            task,
        }
    }

    /// The API base to give a client: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<State>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    let n = {
        let mut requests = state.requests.lock().unwrap();
        requests.push(Recorded {
            path: uri.path().to_string(),
            content_type: headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: body.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        });
        requests.len() - 1
    };
    let mut reply = (state.script)(&body, n);
    loop {
        match reply {
            MockReply::Delayed(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
            }
            MockReply::Content(content) => {
                let model = body.get("model").cloned().unwrap_or(Value::Null);
                return axum::Json(json!({
                    "id": format!("chatcmpl-{n}"),
                    "object": "chat.completion",
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1, "total_tokens": USAGE.0 + USAGE.1}
                }))
                .into_response();
            }
            MockReply::Json {
                status,
                body,
                headers,
            } => {
                let mut response =
                    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
                for (k, v) in headers {
                    response.headers_mut().insert(
                        axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        HeaderValue::from_str(&v).unwrap(),
                    );
                }
                return response;
            }
            MockReply::Raw { status, body } => {
                return (StatusCode::from_u16(status).unwrap(), body).into_response();
            }
            MockReply::RateLimited { secs } => {
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    r#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#,
                )
                    .into_response();
                response.headers_mut().insert(
                    "retry-after",
                    HeaderValue::from_str(&secs.to_string()).unwrap(),
                );
                return response;
            }
        }
    }
}
