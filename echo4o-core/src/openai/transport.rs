//! The transport every OpenAI-compatible client here shares: where to connect (the base URL,
//! with any `user:password@` taken out), which key to send (and to which host), how long to wait,
//! how to retry, and one HTTP exchange with its failure classified as retryable or not.
//!
//! The chat client ([`super::OpenAiJudge`]) and the images client ([`super::images`]) differ
//! only in what they send and how they read the reply.

use std::future::Future;
use std::time::Duration;

use super::{DEFAULT_API_KEY_ENV, DEFAULT_BASE_URL};
use crate::{Error, Result};

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

/// Where and how a client connects: base URL (credentials split out), API key (scoped to the
/// host it was meant for), timeout and retry policy. The chat and images configurations each
/// hold one.
#[derive(Debug, Clone)]
pub struct Connection {
    base_url: String,
    credentials: Option<UrlCredentials>,
    api_key: ApiKey,
    key_source: KeySource,
    timeout: Duration,
    retry: RetryPolicy,
}

impl Connection {
    /// OpenAI's API, with the key from `$OPENAI_API_KEY` (if set), `timeout` and `retry`.
    pub fn openai(timeout: Duration, retry: RetryPolicy) -> Self {
        Connection {
            base_url: DEFAULT_BASE_URL.to_string(),
            credentials: None,
            api_key: ApiKey::new(std::env::var(DEFAULT_API_KEY_ENV).unwrap_or_default()),
            key_source: KeySource::DefaultEnv,
            timeout,
            retry,
        }
    }

    /// Points at `url`: `user:password@` in it becomes basic auth ([`split_credentials`]), and
    /// `$OPENAI_API_KEY`, read by default, is dropped for any host but OpenAI's.
    pub fn set_base_url(&mut self, url: &str) {
        let (base, credentials) = split_credentials(url);
        if self.key_source == KeySource::DefaultEnv && !is_openai_host(&base) {
            self.api_key = ApiKey::default();
        }
        self.base_url = base;
        self.credentials = credentials;
    }

    /// Sends `key` as `Bearer` to whatever host the base URL names.
    pub fn set_api_key(&mut self, key: ApiKey) {
        self.api_key = key;
        self.key_source = KeySource::Explicit;
    }

    /// Reads the key from environment variable `var` (unset: no key).
    pub fn set_api_key_env(&mut self, var: &str) {
        self.set_api_key(ApiKey::new(std::env::var(var).unwrap_or_default()));
    }

    /// Sets the per-request timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sets the retry policy.
    pub fn set_retry(&mut self, retry: RetryPolicy) {
        self.retry = retry;
    }

    /// The base URL, without credentials: safe to print and record.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Whether a key (or URL credentials) will be sent.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some() || !self.api_key.expose().is_empty()
    }

    /// An HTTP client with this timeout; `url` names the endpoint in the error.
    pub(crate) fn http_client(&self, url: &str) -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| Error::Http {
                url: url.to_string(),
                status: None,
                message: format!("cannot build the HTTP client: {e}"),
                body: None,
            })
    }

    /// One request and its whole reply. `req` is sent with this connection's credentials.
    pub(crate) async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
    ) -> std::result::Result<Exchange, Failed> {
        let req = match &self.credentials {
            Some(c) => c.apply(req),
            None if !self.api_key.expose().is_empty() => req.bearer_auth(self.api_key.expose()),
            None => req,
        };
        let response = req.send().await.map_err(|e| Failed {
            message: if e.is_timeout() {
                format!("timed out after {:?}", self.timeout)
            } else if e.is_connect() {
                format!("cannot connect: {e}")
            } else {
                format!("request failed: {e}")
            },
            timed_out: e.is_timeout(),
            status: None,
            retry_after: None,
        })?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.map_err(|e| Failed {
            message: format!("reading the body: {e}"),
            timed_out: e.is_timeout(),
            status: Some(status),
            retry_after: wait,
        })?;
        Ok(Exchange {
            status,
            text,
            request_id,
            retry_after: wait,
        })
    }
}

/// A reply, whatever its status.
#[derive(Debug)]
pub(crate) struct Exchange {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub text: String,
    /// `x-request-id`, when sent.
    pub request_id: Option<String>,
    /// `Retry-After`, when sent.
    pub retry_after: Option<Duration>,
}

/// No complete reply: the connection, the send or the body read failed (retryable).
#[derive(Debug)]
pub(crate) struct Failed {
    /// What happened.
    pub message: String,
    /// Whether it was the timeout.
    pub timed_out: bool,
    /// The status, when headers arrived before the failure.
    pub status: Option<u16>,
    /// `Retry-After`, when headers arrived.
    pub retry_after: Option<Duration>,
}

/// What one attempt of a retried request came to.
pub(crate) enum Step<T, E> {
    /// Finished, well or for good.
    Done(std::result::Result<T, E>),
    /// Failed in a way that may pass: try again after the policy's wait (or the server's).
    Retry {
        /// The failure, returned if no retry is left.
        error: E,
        /// The server's `Retry-After`.
        after: Option<Duration>,
    },
}

/// Runs `attempt` until it is done or `policy`'s retries run out, waiting between tries with
/// exponential backoff and full jitter (or the server's `Retry-After`, capped). Returns the
/// outcome and how many attempts were made.
pub(crate) async fn with_retries<T, E: std::fmt::Display, F, Fut>(
    policy: &RetryPolicy,
    mut attempt: F,
) -> (std::result::Result<T, E>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Step<T, E>>,
{
    let mut tries = 0u32;
    loop {
        tries += 1;
        match attempt().await {
            Step::Done(outcome) => return (outcome, tries),
            Step::Retry { error, after } => {
                if tries > policy.max_retries {
                    return (Err(error), tries);
                }
                let wait = policy.delay(tries - 1, after);
                tracing::debug!("{error}; retry {tries} in {wait:?}");
                tokio::time::sleep(wait).await;
            }
        }
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
    fn url_credentials_never_reach_the_base_url_and_the_default_key_stays_with_openai() {
        let mut c = Connection::openai(Duration::from_secs(1), RetryPolicy::default());
        c.set_api_key(ApiKey::new("sk-x"));
        c.set_base_url("http://bob:s3cret@127.0.0.1:9/v1/");
        assert_eq!(c.base_url(), "http://127.0.0.1:9/v1");
        assert!(!format!("{c:?}").contains("s3cret"));
        assert_eq!(
            c.api_key.expose(),
            "sk-x",
            "an explicit key goes where it is told"
        );

        let mut c = Connection::openai(Duration::from_secs(1), RetryPolicy::default());
        c.api_key = ApiKey::new("sk-from-env"); // as if $OPENAI_API_KEY were set
        let mut local = c.clone();
        local.set_base_url("http://127.0.0.1:8000/v1");
        assert_eq!(local.api_key.expose(), "", "no OpenAI key for another host");
        let mut openai = c;
        openai.set_base_url("https://api.openai.com/v1");
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
}
