//! An OpenAI-compatible chat-completions client: the [`Judge`] that OpenAI, vLLM, llama.cpp's
//! server and Ollama all answer to. (Feature `openai`.)
//!
//! Transport failures that may pass (connection errors, timeouts, 408, 409, 429, 5xx) are retried
//! with exponential backoff and full jitter, honouring `Retry-After`; a 429 whose error code is
//! `insufficient_quota` is permanent, as are other 4xx. Content problems (a reply that is not the
//! JSON a benchmark wants) are the benchmark's to retry.
//!
//! [`images`] is the images API client (generations and multi-image edits) the synthesis
//! pipeline uses.

pub mod images;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use crate::{Error, Judge, JudgeReply, JudgeRequest, Result, Usage};

/// The default API base (OpenAI's).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The default environment variable holding the API key.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// An API key that never shows up in logs or `Debug` output.
#[derive(Clone, Default)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "ApiKey(none)"
        } else {
            "ApiKey(***)"
        })
    }
}

/// Whether `url` is OpenAI's own API host: the only host that receives `$OPENAI_API_KEY` unless
/// a key is given explicitly.
pub fn is_openai_host(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.host_str() == Some("api.openai.com"))
}

/// Basic-auth credentials taken out of a URL's `user:password@`.
#[derive(Clone)]
pub struct UrlCredentials {
    user: String,
    password: ApiKey,
}

impl std::fmt::Debug for UrlCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UrlCredentials({}:***)", self.user)
    }
}

impl UrlCredentials {
    pub(crate) fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.basic_auth(&self.user, Some(self.password.expose()))
    }
}

/// Splits `user:password@` out of a URL: the URL without it (what is stored, printed and written
/// to results, reports and provenance) and the credentials (sent as basic auth, never written).
///
/// ```
/// let (url, creds) = echo4o_core::openai::split_credentials("http://bob:s3cret@127.0.0.1:8000/v1");
/// assert_eq!(url, "http://127.0.0.1:8000/v1");
/// assert!(!format!("{creds:?}").contains("s3cret"));
/// ```
pub fn split_credentials(url: &str) -> (String, Option<UrlCredentials>) {
    let trimmed = url.trim_end_matches('/');
    match reqwest::Url::parse(trimmed) {
        Ok(mut u) if !u.username().is_empty() || u.password().is_some() => {
            let user = u.username().to_string();
            let password = ApiKey::new(u.password().unwrap_or_default());
            // Both setters only fail for URLs that cannot have credentials at all.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            (
                u.as_str().trim_end_matches('/').to_string(),
                Some(UrlCredentials { user, password }),
            )
        }
        _ => (trimmed.to_string(), None),
    }
}

/// Where a client's API key came from: the default variable is only sent to OpenAI's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `$OPENAI_API_KEY`, read by default.
    DefaultEnv,
    /// Given by the caller (`with_api_key`, `with_api_key_env`).
    Explicit,
}

/// When and how often to retry transient failures.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first try. By default 6.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it. By default 1 s.
    pub base_delay: Duration,
    /// The longest wait between tries, `Retry-After` included. By default 60 s.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based): the server's `Retry-After` when it gave one
    /// (capped), else a full-jitter draw from `[0, base * 2^retry]` (capped).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        ceiling.mul_f64(fastrand::f64())
    }
}

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
    base_url: String,
    credentials: Option<UrlCredentials>,
    model: String,
    api_key: ApiKey,
    key_source: KeySource,
    timeout: Duration,
    retry: RetryPolicy,
}

impl OpenAiConfig {
    /// A configuration for `model` at [`DEFAULT_BASE_URL`], with the key from
    /// `$OPENAI_API_KEY` (if set), a 300 s timeout and the default [`RetryPolicy`].
    pub fn new(model: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            credentials: None,
            model: model.into(),
            api_key: ApiKey::new(std::env::var(DEFAULT_API_KEY_ENV).unwrap_or_default()),
            key_source: KeySource::DefaultEnv,
            timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
        }
    }

    /// Sets the API base (`http://host:port/v1`); a URL that already ends in
    /// `/chat/completions` is used as it is. By default [`DEFAULT_BASE_URL`].
    ///
    /// `user:password@` in the URL is taken out and sent as basic auth ([`split_credentials`]):
    /// it never reaches results or reports. `$OPENAI_API_KEY`, read by default, is dropped for
    /// any host but OpenAI's: a key for another host must be given with
    /// [`OpenAiConfig::with_api_key`] or [`OpenAiConfig::with_api_key_env`].
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        let (base, credentials) = split_credentials(&url.into());
        if self.key_source == KeySource::DefaultEnv && !is_openai_host(&base) {
            self.api_key = ApiKey::default();
        }
        self.base_url = base;
        self.credentials = credentials;
        self
    }

    /// Sets the API key, sent as `Bearer` to whatever host the base URL names.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.api_key = key;
        self.key_source = KeySource::Explicit;
        self
    }

    /// Reads the API key from environment variable `var`; an unset variable means no key (local
    /// servers need none). Without this, `$OPENAI_API_KEY` is used for OpenAI's host only.
    pub fn with_api_key_env(mut self, var: &str) -> Self {
        self.api_key = ApiKey::new(std::env::var(var).unwrap_or_default());
        self.key_source = KeySource::Explicit;
        self
    }

    /// Sets the per-request timeout. By default 300 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the retry policy. By default [`RetryPolicy::default`].
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Whether a key (or URL credentials) will be sent.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some() || !self.api_key.expose().is_empty()
    }

    /// The model name sent with every request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The full chat-completions URL.
    pub fn endpoint(&self) -> String {
        if self.base_url.ends_with("/chat/completions") {
            self.base_url.clone()
        } else {
            format!("{}/chat/completions", self.base_url)
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
#[derive(Debug, Clone)]
pub struct OpenAiJudge {
    config: OpenAiConfig,
    http: reqwest::Client,
}

impl OpenAiJudge {
    /// A judge with `config`.
    pub fn new(config: OpenAiConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::Http {
                url: config.endpoint(),
                status: None,
                message: format!("cannot build the HTTP client: {e}"),
                body: None,
            })?;
        Ok(OpenAiJudge { config, http })
    }

    /// The configuration.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    async fn try_once(&self, url: &str, body: &serde_json::Value) -> Attempt {
        let mut req = self.http.post(url).json(body);
        if let Some(c) = &self.config.credentials {
            req = c.apply(req);
        } else if !self.config.api_key.expose().is_empty() {
            req = req.bearer_auth(self.config.api_key.expose());
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    format!("timed out after {:?}", self.config.timeout)
                } else if e.is_connect() {
                    format!("cannot connect: {e}")
                } else {
                    format!("request failed: {e}")
                };
                return Attempt::Transient {
                    error: http_error(url, None, what, None),
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let text = match response.text().await {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Transient {
                    error: http_error(
                        url,
                        Some(status.as_u16()),
                        format!("reading the body: {e}"),
                        None,
                    ),
                    retry_after,
                };
            }
        };
        if status.is_success() {
            return Attempt::Done(parse_completion(url, &text));
        }
        let error = http_error(
            url,
            Some(status.as_u16()),
            format!("HTTP {status}"),
            Some(text.clone()),
        );
        let quota = text.contains("insufficient_quota");
        let transient = matches!(status.as_u16(), 408 | 409 | 429 | 500..=599) && !quota;
        if transient {
            Attempt::Transient { error, retry_after }
        } else {
            Attempt::Done(Err(error))
        }
    }
}

enum Attempt {
    Done(Result<JudgeReply>),
    Transient {
        error: Error,
        retry_after: Option<Duration>,
    },
}

fn http_error(url: &str, status: Option<u16>, message: String, body: Option<String>) -> Error {
    Error::Http {
        url: url.to_string(),
        status,
        message,
        body,
    }
}

/// `Retry-After` in seconds (or OpenAI's `retry-after-ms`); HTTP dates are ignored.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if let Some(ms) = get("retry-after-ms") {
        return seconds(ms / 1000.0);
    }
    get("retry-after").and_then(seconds)
}

/// A server's number of seconds as a [`Duration`]: negative is zero, NaN is no value, and
/// anything too large (`inf`, `1e300`) saturates, to be capped by [`RetryPolicy::max_delay`];
/// `Duration::from_secs_f64` would panic on those.
pub(crate) fn seconds(s: f64) -> Option<Duration> {
    if s.is_nan() {
        return None;
    }
    Some(Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX))
}

#[derive(Deserialize)]
struct Completion {
    choices: Vec<Choice>,
    #[serde(default, deserialize_with = "crate::judge::lenient_usage")]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: AssistantMessage,
}

#[derive(Deserialize)]
struct AssistantMessage {
    #[serde(default)]
    content: Option<String>,
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
        let mut retry = 0;
        loop {
            match self.try_once(&url, &body).await {
                Attempt::Done(result) => return result,
                Attempt::Transient { error, retry_after } => {
                    if retry >= self.config.retry.max_retries {
                        return Err(error);
                    }
                    let wait = self.config.retry.delay(retry, retry_after);
                    tracing::debug!("{error}; retry {} in {wait:?}", retry + 1);
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_inf_1e20_and_ms_1e300_saturate_instead_of_panicking() {
        let policy = RetryPolicy::default();
        for (name, value) in [
            ("retry-after", "inf"),
            ("retry-after", "1e20"),
            ("retry-after-ms", "1e300"),
            ("retry-after", "-5"),
            ("retry-after", "NaN"),
        ] {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(name, value.parse().unwrap());
            let wait = retry_after(&headers);
            let delay = policy.delay(0, wait);
            assert!(delay <= policy.max_delay, "{name}: {value} -> {delay:?}");
            match value {
                "-5" => assert_eq!(wait, Some(Duration::ZERO)),
                "NaN" => assert_eq!(wait, None),
                _ => assert_eq!(delay, policy.max_delay, "{name}: {value}"),
            }
        }
    }

    #[test]
    fn url_credentials_never_reach_the_endpoint_and_the_default_key_stays_with_openai() {
        let c = OpenAiConfig::new("m")
            .with_api_key(ApiKey::new("sk-x"))
            .with_base_url("http://bob:s3cret@127.0.0.1:9/v1/");
        assert_eq!(c.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            c.api_key.expose(),
            "sk-x",
            "an explicit key goes where it is told"
        );

        let mut c = OpenAiConfig::new("m");
        c.api_key = ApiKey::new("sk-from-env"); // as if $OPENAI_API_KEY were set
        let local = c.clone().with_base_url("http://127.0.0.1:8000/v1");
        assert_eq!(local.api_key.expose(), "", "no OpenAI key for another host");
        let openai = c.with_base_url("https://api.openai.com/v1");
        assert_eq!(openai.api_key.expose(), "sk-from-env");
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let p = RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        for retry in 0..40 {
            let d = p.delay(retry, None);
            let ceiling = (100u64 << retry.min(20)).min(350);
            assert!(d <= Duration::from_millis(ceiling), "{retry}: {d:?}");
        }
        assert_eq!(
            p.delay(0, Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(9))),
            Duration::from_millis(350)
        );
    }

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
