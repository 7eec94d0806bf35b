//! The judge connection options shared by `echo4o bench` and `echo4o eval`.

use std::time::Duration;

use anyhow::bail;
use echo4o::core::openai::{
    DEFAULT_BASE_URL, OpenAiConfig, OpenAiJudge, RetryPolicy, is_openai_host,
};

/// Where the judge is and how it is called.
#[derive(Debug, Clone, clap::Args)]
pub struct JudgeOptions {
    /// OpenAI-compatible API base (vLLM, llama.cpp, Ollama: `http://HOST:PORT/v1`).
    /// `user:password@` in it is sent as basic auth and never written to any output.
    #[arg(long, default_value = DEFAULT_BASE_URL)]
    pub judge_url: String,
    /// Judge model [default: the official one: gpt-4.1 for GenEval++ and OmniContext,
    /// gpt-4.1-2025-04-14 for Imagine-Bench].
    #[arg(long)]
    pub judge_model: Option<String>,
    /// Environment variable holding the judge's API key, sent as Bearer to --judge-url
    /// [default: OPENAI_API_KEY, and only to api.openai.com: another host gets no key unless
    /// this names one].
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// Items judged at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Seconds before a judge request times out (it is then retried); 1 to 86400.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Transport retries per request (connection errors, timeouts, 429, 5xx).
    #[arg(long, default_value_t = 6)]
    pub retries: u32,
}

impl JudgeOptions {
    /// The client configuration, with `default_model` unless --judge-model names another.
    pub fn config(&self, default_model: &str) -> OpenAiConfig {
        let model = self
            .judge_model
            .clone()
            .unwrap_or_else(|| default_model.to_string());
        let mut config = OpenAiConfig::new(model).with_base_url(&self.judge_url);
        if let Some(var) = &self.api_key_env {
            config = config.with_api_key_env(var);
        }
        config
            .with_timeout(Duration::from_secs(self.timeout))
            .with_retry(RetryPolicy {
                max_retries: self.retries,
                ..RetryPolicy::default()
            })
    }

    /// The judge, refusing before any work when OpenAI's API is named without a key.
    pub fn judge(&self, default_model: &str) -> anyhow::Result<OpenAiJudge> {
        let config = self.config(default_model);
        if is_openai_host(&self.judge_url) && !config.has_credentials() {
            bail!(
                "the judge at {} needs an API key: set ${} (or name another variable \
                 with --api-key-env, or point --judge-url at a local server)",
                self.judge_url,
                self.api_key_env.as_deref().unwrap_or("OPENAI_API_KEY")
            );
        }
        Ok(OpenAiJudge::new(config)?)
    }
}
