//! OpenAI-compatible clients (feature `openai`): the chat-completions [`Judge`](crate::Judge)
//! ([`OpenAiJudge`]) and the images API ([`images`]: generations and multi-image edits, for the
//! synthesis pipeline). Both share one [`Connection`] (base URL with credentials split out, a
//! key scoped to its host, timeout, retries with backoff honouring `Retry-After`).

mod chat;
pub mod images;
mod transport;
mod wire;

pub use chat::{OpenAiConfig, OpenAiJudge};
pub use transport::{
    ApiKey, Connection, RetryPolicy, UrlCredentials, is_openai_host, split_credentials,
};

/// The default API base (OpenAI's).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The default environment variable holding the API key.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";
