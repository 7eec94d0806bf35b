//! The chat-completions client: the [`Judge`] that OpenAI, vLLM, llama.cpp's server and Ollama
//! all answer to.

use std::time::Duration;

use async_trait::async_trait;

use super::transport::{ApiKey, Connection, RetryPolicy, Step, with_retries};
use super::wire::Completion;
use crate::{Error, Judge, JudgeReply, JudgeRequest, Result};

/// Configuration of an [`OpenAiJudge`]: where, which model, with which key, how patiently.
///
/// ```
/// use std::time::Duration;
/// use echo4o_core::openai::OpenAiConfig;
///
/// let config = OpenAiConfig::new("gpt-4.1")
///     .with_base_url("http://127.0.0.1:8000/v1")
///     .with_timeout(Duration::from_secs(120));
/// assert_eq!(config.endpoint(), "http://127.0.0.1:8000/v1/chat/completions");
/// assert!(!format!("{config:?}").contains("sk-"));
/// ```
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    connection: Connection,
    model: String,
}

impl OpenAiConfig {
    /// A configuration for `model` at [`super::DEFAULT_BASE_URL`], with the key from
    /// `$OPENAI_API_KEY` (if set), a 300 s timeout and the default [`RetryPolicy`].
    pub fn new(model: impl Into<String>) -> Self {
        OpenAiConfig {
            connection: Connection::openai(Duration::from_secs(300), RetryPolicy::default()),
            model: model.into(),
        }
    }

    /// Sets the API base (`http://host:port/v1`); a URL that already ends in
    /// `/chat/completions` is used as it is. `user:password@` in it becomes basic auth, and
    /// `$OPENAI_API_KEY` is only kept for OpenAI's host ([`Connection::set_base_url`]).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.connection.set_base_url(&url.into());
        self
    }

    /// Sets the API key, sent as `Bearer` to whatever host the base URL names.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.connection.set_api_key(key);
        self
    }

    /// Reads the API key from environment variable `var`; an unset variable means no key (local
    /// servers need none). Without this, `$OPENAI_API_KEY` is used for OpenAI's host only.
    pub fn with_api_key_env(mut self, var: &str) -> Self {
        self.connection.set_api_key_env(var);
        self
    }

    /// Sets the per-request timeout. By default 300 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.connection.set_timeout(timeout);
        self
    }

    /// Sets the retry policy. By default [`RetryPolicy::default`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.connection.set_retry(retry);
        self
    }

    /// Where and how requests go.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Whether a key (or URL credentials) will be sent.
    pub fn has_credentials(&self) -> bool {
        self.connection.has_credentials()
    }

    /// The model name sent with every request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The full chat-completions URL.
    pub fn endpoint(&self) -> String {
        let base = self.connection.base_url();
        if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        }
    }

    /// The JSON body sent for `request`: the request's fields plus `"model"` first, as the
    /// official scripts' SDK calls send them.
    pub fn body(&self, request: &JudgeRequest) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert("model".into(), self.model.clone().into());
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(request) {
            body.extend(fields);
        }
        serde_json::Value::Object(body)
    }
}

/// A [`Judge`] speaking OpenAI's `/v1/chat/completions`.
///
/// Transport failures that may pass (connection errors, timeouts, 408, 409, 429, 5xx) are
/// retried by the [`RetryPolicy`]; a 429 whose error code is `insufficient_quota` is permanent,
/// as are other 4xx. Content problems (a reply that is not the JSON a benchmark wants) are the
/// benchmark's to retry.
#[derive(Debug, Clone)]
pub struct OpenAiJudge {
    config: OpenAiConfig,
    http: reqwest::Client,
}

impl OpenAiJudge {
    /// A judge with `config`.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        let http = config.connection.http_client(&config.endpoint())?;
        Ok(OpenAiJudge { config, http })
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    async fn try_once(&self, url: &str, body: &serde_json::Value) -> Step<JudgeReply, Error> {
        let exchange = self
            .config
            .connection
            .exchange(self.http.post(url).json(body))
            .await;
        let reply = match exchange {
            Ok(r) => r,
            Err(f) => {
                return Step::Retry {
                    error: http_error(url, f.status, f.message, None),
                    after: f.retry_after,
                };
            }
        };
        if (200..300).contains(&reply.status) {
            return Step::Done(parse_completion(url, &reply.text));
        }
        let transient = matches!(reply.status, 408 | 409 | 429 | 500..=599)
            && !reply.text.contains("insufficient_quota");
        let error = http_error(
            url,
            Some(reply.status),
            format!("HTTP {}", reply.status),
            Some(reply.text),
        );
        if transient {
            Step::Retry {
                error,
                after: reply.retry_after,
            }
        } else {
            Step::Done(Err(error))
        }
    }
}

fn http_error(url: &str, status: Option<u16>, message: String, body: Option<String>) -> Error {
    Error::Http {
        url: url.to_string(),
        status,
        message,
        body,
    }
}

fn parse_completion(url: &str, text: &str) -> Result<JudgeReply> {
    let completion: Completion = serde_json::from_str(text).map_err(|e| {
        http_error(
            url,
            Some(200),
            format!("not a chat completion: {e}"),
            Some(text.to_string()),
        )
    })?;
    let first = completion.choices.into_iter().next().ok_or_else(|| {
        http_error(
            url,
            Some(200),
            "the reply has no choices".into(),
            Some(text.to_string()),
        )
    })?;
    Ok(JudgeReply {
        text: first.message.content.unwrap_or_default(),
        usage: completion.usage,
    })
}

#[async_trait]
impl Judge for OpenAiJudge {
    fn model(&self) -> String {
        self.config.model.clone()
    }

    fn endpoint(&self) -> Option<String> {
        Some(self.config.endpoint())
    }

    async fn complete(&self, request: &JudgeRequest) -> Result<JudgeReply> {
        let url = self.config.endpoint();
        let body = self.config.body(request);
        let (outcome, _) = with_retries(self.config.connection.retry(), || {
            self.try_once(&url, &body)
        })
        .await;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    #[test]
    fn body_puts_the_model_first_and_skips_unset_fields() {
        let config = OpenAiConfig::new("gpt-4.1").with_api_key(ApiKey::new("sk-secret"));
        let req = JudgeRequest {
            messages: vec![crate::ChatMessage::text(crate::Role::User, "hi")],
            temperature: Some(0.0),
            max_tokens: None,
        };
        assert_eq!(
            config.body(&req).to_string(),
            r#"{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}],"temperature":0.0}"#
        );
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn completions_parse_and_bad_bodies_keep_the_raw_text() {
        let ok = parse_completion(
            "u",
            r#"{"choices":[{"message":{"role":"assistant","content":"hi"}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
        )
        .unwrap();
        assert_eq!(ok.text, "hi");
        assert_eq!(ok.usage.unwrap().total_tokens, 4);
        // usage with null and float fields: the verdict is kept, the counts read leniently
        let odd = parse_completion(
            "u",
            r#"{"choices":[{"message":{"role":"assistant","content":"{\"correct\": 1}"}}],"usage":{"prompt_tokens":null,"completion_tokens":7.0,"total_tokens":"x"}}"#,
        )
        .unwrap();
        assert_eq!(odd.text, "{\"correct\": 1}");
        assert_eq!(
            odd.usage.unwrap(),
            Usage {
                prompt_tokens: 0,
                completion_tokens: 7,
                total_tokens: 0
            }
        );
        let odd = parse_completion(
            "u",
            r#"{"choices":[{"message":{"role":"assistant","content":"ok"}}],"usage":"lots"}"#,
        )
        .unwrap();
        assert_eq!((odd.text.as_str(), odd.usage), ("ok", None));
        let err = parse_completion("u", "<html>oops</html>").unwrap_err();
        match err {
            Error::Http { body, .. } => assert_eq!(body.as_deref(), Some("<html>oops</html>")),
            other => panic!("{other}"),
        }
    }
}
