//! An OpenAI-compatible images client: `POST /v1/images/generations` (JSON) and multi-image
//! `POST /v1/images/edits` (multipart, one `image[]` part per reference), for OpenAI's image
//! models and the local servers that copy the API (stable-diffusion.cpp's `sd-server`,
//! vLLM-Omni, SGLang diffusion, LocalAI). (Feature `openai`.)
//!
//! The servers differ in what they accept, so every request goes through a [`Profile`]: fields a
//! server does not take are left out (and listed in [`ImagesReply::omitted`]), extras such as a
//! seed or a step count are sent only where they are accepted, in the form that server wants.
//!
//! Failures come back classified ([`FailureKind`]) because a synthesis job must treat them
//! differently: a moderation refusal is never retried unchanged, an exhausted quota or a bad key
//! stops the job, rate limits and overloads are retried honouring `Retry-After`. Timeouts are not
//! retried by default: the server may have finished (and billed) the image anyway.
//!
//! ```no_run
//! use echo4o_core::openai::images::{ImageOptions, ImagesClient, ImagesConfig, Profile};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ImagesClient::new(
//!     ImagesConfig::new("gpt-image-1.5").with_profile(Profile::OpenAi),
//! )?;
//! let options = ImageOptions { size: Some("1024x1024".into()), quality: Some("medium".into()), ..Default::default() };
//! let reply = client.create("A photo of two red apples", &[], &options).await?;
//! std::fs::write("apples.png", &reply.images[0])?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    ApiKey, DEFAULT_API_KEY_ENV, DEFAULT_BASE_URL, KeySource, RetryPolicy, UrlCredentials,
    is_openai_host, retry_after, split_credentials,
};
use crate::{Error, GenerationRequest, Generator, Result};

/// The kind of server behind the base URL; decides which fields are sent and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// OpenAI's API (and faithful proxies): quality, background, moderation, output format and
    /// compression, input fidelity; no seed.
    OpenAi,
    /// stable-diffusion.cpp `sd-server`: prompt, n, size, output format and compression only;
    /// seed, steps, guidance and negative prompt travel inside the prompt as
    /// `<sd_cpp_extra_args>{json}</sd_cpp_extra_args>`.
    SdCpp,
    /// vLLM-Omni (`vllm serve <model> --omni`): `seed`, `num_inference_steps`, `guidance_scale`,
    /// `negative_prompt`; multipart edits.
    VllmOmni,
    /// SGLang diffusion (`sglang serve`): the same extras as vLLM-Omni.
    Sglang,
    /// LocalAI: generations only; references go in `ref_images` as raw base64, steps as `step`;
    /// it answers with URLs unless asked for `b64_json`.
    LocalAi,
}

impl Profile {
    /// Every profile, for help texts.
    pub const ALL: [Profile; 5] = [
        Profile::OpenAi,
        Profile::SdCpp,
        Profile::VllmOmni,
        Profile::Sglang,
        Profile::LocalAi,
    ];

    /// The name used on the command line and in provenance.
    pub fn name(self) -> &'static str {
        match self {
            Profile::OpenAi => "openai",
            Profile::SdCpp => "sd-cpp",
            Profile::VllmOmni => "vllm-omni",
            Profile::Sglang => "sglang",
            Profile::LocalAi => "local-ai",
        }
    }

    /// Parses [`Profile::name`].
    pub fn from_name(name: &str) -> Result<Profile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                Error::invalid(
                    "profile",
                    format!(
                        "`{name}` is not one of {}",
                        Profile::ALL.map(Profile::name).join(", ")
                    ),
                )
            })
    }

    /// What this server accepts.
    pub fn capabilities(self) -> Capabilities {
        let openai = Capabilities {
            edits: true,
            quality: true,
            background: true,
            moderation: true,
            output_format: true,
            output_compression: true,
            input_fidelity: true,
            extras: Extras::None,
            refs_on_generations: false,
            ask_for_b64: false,
        };
        let minimal = Capabilities {
            quality: false,
            background: false,
            moderation: false,
            output_format: false,
            output_compression: false,
            input_fidelity: false,
            ..openai
        };
        match self {
            Profile::OpenAi => openai,
            Profile::SdCpp => Capabilities {
                output_format: true,
                output_compression: true,
                extras: Extras::InPrompt,
                ..minimal
            },
            Profile::VllmOmni | Profile::Sglang => Capabilities {
                extras: Extras::Fields,
                ..minimal
            },
            Profile::LocalAi => Capabilities {
                edits: false,
                extras: Extras::LocalAi,
                refs_on_generations: true,
                ask_for_b64: true,
                ..minimal
            },
        }
    }
}

/// How a server takes the settings OpenAI has no field for (seed, steps, guidance, negative
/// prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extras {
    /// Not at all: they are left out.
    None,
    /// As top-level fields `seed`, `num_inference_steps`, `guidance_scale`, `negative_prompt`.
    Fields,
    /// JSON inside the prompt, between `<sd_cpp_extra_args>` tags (stable-diffusion.cpp).
    InPrompt,
    /// LocalAI's names: `step` and `negative_prompt` (no seed, no guidance).
    LocalAi,
}

impl Capabilities {
    /// Whether a seed reaches the server (so an image can be reproduced).
    pub fn takes_seed(&self) -> bool {
        matches!(self.extras, Extras::Fields | Extras::InPrompt)
    }
}

/// What a [`Profile`]'s server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `/v1/images/edits` exists (multi-reference requests need it, or `refs_on_generations`).
    pub edits: bool,
    /// `quality`.
    pub quality: bool,
    /// `background`.
    pub background: bool,
    /// `moderation`.
    pub moderation: bool,
    /// `output_format`.
    pub output_format: bool,
    /// `output_compression`.
    pub output_compression: bool,
    /// `input_fidelity` on edits.
    pub input_fidelity: bool,
    /// How seed, steps, guidance and negative prompt are sent.
    pub extras: Extras,
    /// References go on `/generations` as `ref_images` (LocalAI).
    pub refs_on_generations: bool,
    /// Send `response_format: "b64_json"` (servers that answer with URLs by default).
    pub ask_for_b64: bool,
}

/// Per-request settings. `None` fields are never sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOptions {
    /// `WxH` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Images per request (1-10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// `low`, `medium`, `high`, `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// `transparent`, `opaque`, `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    /// `auto` or `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<String>,
    /// `png`, `jpeg`, `webp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// 0-100, for jpeg and webp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_compression: Option<u8>,
    /// `low` or `high` (edits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fidelity: Option<String>,
    /// Seed (local servers only; OpenAI has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Denoising steps (local servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Guidance scale (local servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f32>,
    /// Negative prompt (local servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
}

/// A reference image for an edits request: its encoded bytes and a file name (whose extension
/// gives the MIME type).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceImage {
    /// File name sent with the part, e.g. `ref0.png`.
    pub name: String,
    /// Encoded PNG, JPEG or WebP bytes.
    pub bytes: Vec<u8>,
}

impl ReferenceImage {
    fn mime(&self) -> &'static str {
        let lower = self.name.to_ascii_lowercase();
        if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
            "image/jpeg"
        } else if lower.ends_with(".webp") {
            "image/webp"
        } else {
            "image/png"
        }
    }
}

/// Configuration of an [`ImagesClient`].
///
/// ```
/// use echo4o_core::openai::images::{ImagesConfig, Profile};
///
/// let config = ImagesConfig::new("Qwen/Qwen-Image").with_base_url("http://127.0.0.1:8091/v1")
///     .with_profile(Profile::VllmOmni);
/// assert_eq!(config.url("generations"), "http://127.0.0.1:8091/v1/images/generations");
/// ```
#[derive(Debug, Clone)]
pub struct ImagesConfig {
    base_url: String,
    credentials: Option<UrlCredentials>,
    model: String,
    api_key: ApiKey,
    key_source: KeySource,
    profile: Profile,
    timeout: Duration,
    retry: RetryPolicy,
    retry_timeouts: bool,
}

impl ImagesConfig {
    /// `model` at [`DEFAULT_BASE_URL`] with the OpenAI profile, the key from `$OPENAI_API_KEY`,
    /// a 600 s timeout (image requests take minutes), and 3 retries of rate limits and overloads.
    pub fn new(model: impl Into<String>) -> Self {
        ImagesConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            credentials: None,
            model: model.into(),
            api_key: ApiKey::new(std::env::var(DEFAULT_API_KEY_ENV).unwrap_or_default()),
            key_source: KeySource::DefaultEnv,
            profile: Profile::OpenAi,
            timeout: Duration::from_secs(600),
            retry: RetryPolicy {
                max_retries: 3,
                ..RetryPolicy::default()
            },
            retry_timeouts: false,
        }
    }

    /// Sets the API base (`http://host:port/v1`). As for the chat client
    /// ([`super::OpenAiConfig::with_base_url`]): `user:password@` becomes basic auth and is never
    /// written anywhere, and `$OPENAI_API_KEY` is only kept for OpenAI's host.
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

    /// Reads the API key from environment variable `var` (unset: no key).
    pub fn with_api_key_env(mut self, var: &str) -> Self {
        self.api_key = ApiKey::new(std::env::var(var).unwrap_or_default());
        self.key_source = KeySource::Explicit;
        self
    }

    /// Sets the server profile. By default [`Profile::OpenAi`].
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Sets the per-request timeout. By default 600 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the retry policy for 408/409/429/5xx and connection errors.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Also retry requests that timed out. Off by default: the image may have been made and
    /// billed anyway, and a retry pays again.
    pub fn with_retry_timeouts(mut self, yes: bool) -> Self {
        self.retry_timeouts = yes;
        self
    }

    /// Whether a key (or URL credentials) will be sent.
    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some() || !self.api_key.expose().is_empty()
    }

    /// The model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The profile.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The URL of `/images/{endpoint}`.
    pub fn url(&self, endpoint: &str) -> String {
        format!("{}/images/{endpoint}", self.base_url)
    }
}

/// Why a request failed, as a synthesis job must act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The safety system refused the prompt or a reference (`moderation_blocked`): permanent for
    /// this request; change the prompt or drop it.
    Refused,
    /// The account is out of credit or over its spend limit (`insufficient_quota`): stop the job.
    Quota,
    /// 401/403: a wrong or missing key, or a model the organisation may not use: stop the job.
    Unauthorized,
    /// Rate limits, overloads, connection errors or a timeout, still failing after the retries:
    /// worth trying again later (a timed-out request may have been billed).
    Retryable,
    /// Any other 4xx or an unreadable reply: this request will not succeed as it is.
    Permanent,
}

impl FailureKind {
    /// Whether the whole job should stop.
    pub fn stops_job(self) -> bool {
        matches!(self, FailureKind::Quota | FailureKind::Unauthorized)
    }
}

/// A failed images request: its class, and everything the server said.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{url}: {kind:?}: {message}{}", body.as_deref().map(|b| format!(" (body: {})", b.chars().take(500).collect::<String>())).unwrap_or_default())]
pub struct ImagesError {
    /// The class.
    pub kind: FailureKind,
    /// The URL requested.
    pub url: String,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// What went wrong.
    pub message: String,
    /// The raw response body.
    pub body: Option<String>,
    /// `x-request-id`, when the server sent one.
    pub request_id: Option<String>,
    /// Requests sent, retries included.
    pub attempts: u32,
}

impl From<ImagesError> for Error {
    fn from(e: ImagesError) -> Self {
        Error::Http {
            url: e.url,
            status: e.status,
            message: format!("{:?}: {}", e.kind, e.message),
            body: e.body,
        }
    }
}

/// Classifies a non-success reply from its status and body.
///
/// ```
/// use echo4o_core::openai::images::{FailureKind, classify};
///
/// let refusal = r#"{"error":{"code":"moderation_blocked","message":"rejected by the safety system"}}"#;
/// assert_eq!(classify(400, refusal), FailureKind::Refused);
/// assert_eq!(classify(429, r#"{"error":{"type":"insufficient_quota"}}"#), FailureKind::Quota);
/// assert_eq!(classify(429, r#"{"error":{"code":"rate_limit_exceeded"}}"#), FailureKind::Retryable);
/// assert_eq!(classify(400, r#"{"error":"bad size"}"#), FailureKind::Permanent);
/// ```
pub fn classify(status: u16, body: &str) -> FailureKind {
    let quota = [
        "insufficient_quota",
        "credit_balance_exhausted",
        "spend_limit_exceeded",
        "billing_hard_limit_reached",
    ];
    if quota.iter().any(|q| body.contains(q)) {
        return FailureKind::Quota;
    }
    let refusal = [
        "moderation_blocked",
        "content_policy_violation",
        "safety_violations",
        "rejected by the safety system",
    ];
    if refusal.iter().any(|r| body.contains(r)) {
        return FailureKind::Refused;
    }
    match status {
        401 | 403 => FailureKind::Unauthorized,
        408 | 409 | 429 | 500..=599 => FailureKind::Retryable,
        _ => FailureKind::Permanent,
    }
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagesReply {
    /// The images' encoded bytes (PNG, JPEG or WebP, as the server chose).
    pub images: Vec<Vec<u8>>,
    /// `revised_prompt` per image, when the server rewrote the prompt.
    pub revised_prompts: Vec<Option<String>>,
    /// `usage` as sent (token counts); `None` for servers that send none.
    pub usage: Option<Value>,
    /// `created`.
    pub created: Option<i64>,
    /// `x-request-id` (or the body's `id`).
    pub request_id: Option<String>,
    /// `generations` or `edits`.
    pub endpoint: &'static str,
    /// The request's fields as sent, without the image bytes (for provenance).
    pub sent: Map<String, Value>,
    /// Options set by the caller but left out because the profile does not take them.
    pub omitted: Vec<String>,
    /// Requests sent, retries included.
    pub attempts: u32,
}

/// The client.
#[derive(Debug, Clone)]
pub struct ImagesClient {
    config: ImagesConfig,
    http: reqwest::Client,
}

/// A request body before it is sent: JSON fields, and the references for a multipart edit.
struct Prepared {
    endpoint: &'static str,
    fields: Map<String, Value>,
    /// The references sent as multipart parts (edits); empty when they travel in `fields`.
    references: Vec<ReferenceImage>,
    /// How many references the request carries, either way.
    n_references: usize,
    omitted: Vec<String>,
}

impl ImagesClient {
    /// A client with `config`.
    pub fn new(config: ImagesConfig) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| Error::Http {
                url: config.url("generations"),
                status: None,
                message: format!("cannot build the HTTP client: {e}"),
                body: None,
            })?;
        Ok(ImagesClient { config, http })
    }

    /// The configuration.
    pub fn config(&self) -> &ImagesConfig {
        &self.config
    }

    /// The fields that would be sent for this request, per the profile, and the options left out.
    /// Errors when references are given to a server that cannot take them.
    fn prepare(
        &self,
        prompt: &str,
        references: &[ReferenceImage],
        options: &ImageOptions,
    ) -> Result<Prepared> {
        let caps = self.config.profile.capabilities();
        let mut fields = Map::new();
        let mut omitted = Vec::new();
        let mut prompt = prompt.to_string();
        fields.insert("model".into(), json!(self.config.model));
        let mut put = |name: &str, allowed: bool, value: Option<Value>, fields: &mut Map<_, _>| {
            if let Some(v) = value {
                if allowed {
                    fields.insert(name.to_string(), v);
                } else {
                    omitted.push(name.to_string());
                }
            }
        };
        let edits = !references.is_empty() && !caps.refs_on_generations;
        if !references.is_empty() && !caps.edits && !caps.refs_on_generations {
            return Err(Error::invalid(
                "references",
                format!(
                    "the {} profile has no multi-image endpoint",
                    self.config.profile.name()
                ),
            ));
        }
        put("n", true, options.n.map(|v| json!(v)), &mut fields);
        put(
            "size",
            true,
            options.size.clone().map(Value::from),
            &mut fields,
        );
        put(
            "quality",
            caps.quality,
            options.quality.clone().map(Value::from),
            &mut fields,
        );
        put(
            "background",
            caps.background,
            options.background.clone().map(Value::from),
            &mut fields,
        );
        put(
            "moderation",
            caps.moderation,
            options.moderation.clone().map(Value::from),
            &mut fields,
        );
        put(
            "output_format",
            caps.output_format,
            options.output_format.clone().map(Value::from),
            &mut fields,
        );
        put(
            "output_compression",
            caps.output_compression,
            options.output_compression.map(|v| json!(v)),
            &mut fields,
        );
        put(
            "input_fidelity",
            caps.input_fidelity && edits,
            options.input_fidelity.clone().map(Value::from),
            &mut fields,
        );
        let extras = [
            ("seed", options.seed.map(|v| json!(v))),
            ("steps", options.steps.map(|v| json!(v))),
            ("guidance_scale", options.guidance_scale.map(|v| json!(v))),
            (
                "negative_prompt",
                options.negative_prompt.clone().map(Value::from),
            ),
        ];
        match caps.extras {
            Extras::None => {
                for (name, v) in extras {
                    put(name, false, v, &mut fields);
                }
            }
            Extras::Fields | Extras::LocalAi => {
                for (name, v) in extras {
                    let wire = match (caps.extras, name) {
                        (Extras::Fields, "steps") => "num_inference_steps",
                        (Extras::LocalAi, "steps") => "step",
                        (Extras::LocalAi, "guidance_scale" | "seed") => {
                            put(name, false, v, &mut fields);
                            continue;
                        }
                        _ => name,
                    };
                    put(wire, true, v, &mut fields);
                }
            }
            Extras::InPrompt => {
                let mut args = Map::new();
                for (name, v) in extras {
                    let wire = match name {
                        "steps" => "sample_steps",
                        "guidance_scale" => "cfg_scale",
                        other => other,
                    };
                    if let Some(v) = v {
                        args.insert(wire.into(), v);
                    }
                }
                if !args.is_empty() {
                    prompt = format!(
                        "{prompt}<sd_cpp_extra_args>{}</sd_cpp_extra_args>",
                        Value::Object(args)
                    );
                }
            }
        }
        if caps.ask_for_b64 {
            fields.insert("response_format".into(), json!("b64_json"));
        }
        if !references.is_empty() && caps.refs_on_generations {
            let b64 = &base64::engine::general_purpose::STANDARD;
            fields.insert(
                "ref_images".into(),
                Value::Array(
                    references
                        .iter()
                        .map(|r| Value::from(b64.encode(&r.bytes)))
                        .collect(),
                ),
            );
        }
        fields.insert("prompt".into(), json!(prompt));
        Ok(Prepared {
            endpoint: if edits { "edits" } else { "generations" },
            fields,
            references: if edits { references.to_vec() } else { vec![] },
            n_references: references.len(),
            omitted,
        })
    }

    /// Generates images for `prompt`, composing `references` when given (an edits request with
    /// one `image[]` part each, or LocalAI's `ref_images`).
    pub async fn create(
        &self,
        prompt: &str,
        references: &[ReferenceImage],
        options: &ImageOptions,
    ) -> std::result::Result<ImagesReply, ImagesError> {
        let prepared = self
            .prepare(prompt, references, options)
            .map_err(|e| ImagesError {
                kind: FailureKind::Permanent,
                url: self.config.url("edits"),
                status: None,
                message: e.to_string(),
                body: None,
                request_id: None,
                attempts: 0,
            })?;
        let url = self.config.url(prepared.endpoint);
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.try_once(&url, &prepared).await {
                Ok((text, request_id)) => {
                    return parse_reply(&url, &text, request_id, &prepared, attempts);
                }
                Err((mut error, retry_after, timed_out)) => {
                    error.attempts = attempts;
                    let retry = error.kind == FailureKind::Retryable
                        && (!timed_out || self.config.retry_timeouts)
                        && attempts <= self.config.retry.max_retries;
                    if !retry {
                        return Err(error);
                    }
                    let wait = self.config.retry.delay(attempts - 1, retry_after);
                    tracing::debug!("{error}; retry {attempts} in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn try_once(
        &self,
        url: &str,
        prepared: &Prepared,
    ) -> std::result::Result<(String, Option<String>), (ImagesError, Option<Duration>, bool)> {
        let mut req = self.http.post(url);
        if let Some(c) = &self.config.credentials {
            req = c.apply(req);
        } else if !self.config.api_key.expose().is_empty() {
            req = req.bearer_auth(self.config.api_key.expose());
        }
        req = if prepared.endpoint == "edits" {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in &prepared.fields {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                form = form.text(k.clone(), text);
            }
            for r in &prepared.references {
                let part = reqwest::multipart::Part::bytes(r.bytes.clone())
                    .file_name(r.name.clone())
                    .mime_str(r.mime())
                    .map_err(|e| {
                        (
                            failure(url, FailureKind::Permanent, None, e.to_string(), None),
                            None,
                            false,
                        )
                    })?;
                form = form.part("image[]", part);
            }
            req.multipart(form)
        } else {
            req.json(&Value::Object(prepared.fields.clone()))
        };
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let timed_out = e.is_timeout();
                let message = if timed_out {
                    format!(
                        "timed out after {:?} (the image may still have been made and billed)",
                        self.config.timeout
                    )
                } else {
                    format!("request failed: {e}")
                };
                return Err((
                    failure(url, FailureKind::Retryable, None, message, None),
                    None,
                    timed_out,
                ));
            }
        };
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.map_err(|e| {
            (
                failure(
                    url,
                    FailureKind::Retryable,
                    Some(status),
                    format!("reading the body: {e}"),
                    None,
                ),
                wait,
                e.is_timeout(),
            )
        })?;
        if (200..300).contains(&status) {
            return Ok((text, request_id));
        }
        let kind = classify(status, &text);
        let mut error = failure(
            url,
            kind,
            Some(status),
            format!("HTTP {status}"),
            Some(text),
        );
        error.request_id = request_id;
        Err((error, wait, false))
    }
}

fn failure(
    url: &str,
    kind: FailureKind,
    status: Option<u16>,
    message: String,
    body: Option<String>,
) -> ImagesError {
    ImagesError {
        kind,
        url: url.to_string(),
        status,
        message,
        body,
        request_id: None,
        attempts: 0,
    }
}

#[derive(Deserialize)]
struct WireReply {
    #[serde(default)]
    created: Option<i64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    data: Vec<WireImage>,
    #[serde(default)]
    usage: Option<Value>,
}

#[derive(Deserialize)]
struct WireImage {
    #[serde(default)]
    b64_json: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    revised_prompt: Option<String>,
}

fn parse_reply(
    url: &str,
    text: &str,
    request_id: Option<String>,
    prepared: &Prepared,
    attempts: u32,
) -> std::result::Result<ImagesReply, ImagesError> {
    let bad = |message: String| ImagesError {
        kind: FailureKind::Permanent,
        url: url.to_string(),
        status: Some(200),
        message,
        body: Some(text.to_string()),
        request_id: request_id.clone(),
        attempts,
    };
    let reply: WireReply =
        serde_json::from_str(text).map_err(|e| bad(format!("not an images reply: {e}")))?;
    if reply.data.is_empty() {
        return Err(bad("the reply has no images".into()));
    }
    let b64 = &base64::engine::general_purpose::STANDARD;
    let mut images = Vec::new();
    let mut revised = Vec::new();
    for (i, d) in reply.data.into_iter().enumerate() {
        let Some(data) = d.b64_json else {
            let what = d
                .url
                .map(|u| format!("a URL ({u})"))
                .unwrap_or("nothing".into());
            return Err(bad(format!(
                "image {i} came as {what}, not b64_json; this client reads base64 only"
            )));
        };
        let data = data.trim();
        let data = data
            .strip_prefix("data:")
            .and_then(|d| d.split_once(',').map(|(_, b)| b))
            .unwrap_or(data);
        let bytes = b64
            .decode(data)
            .map_err(|e| bad(format!("image {i}: bad base64: {e}")))?;
        images.push(bytes);
        revised.push(d.revised_prompt);
    }
    let mut sent = prepared.fields.clone();
    if let Some(refs) = sent.get_mut("ref_images") {
        *refs = json!(format!("[{} images]", prepared.n_references));
    }
    if !prepared.references.is_empty() {
        sent.insert(
            "image[]".into(),
            Value::Array(prepared.references.iter().map(|r| json!(r.name)).collect()),
        );
    }
    Ok(ImagesReply {
        images,
        revised_prompts: revised,
        usage: reply.usage,
        created: reply.created,
        request_id: request_id.or(reply.id),
        endpoint: prepared.endpoint,
        sent,
        omitted: prepared.omitted.clone(),
        attempts,
    })
}

/// Token counts of an images reply's `usage`, read leniently (any field may be missing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageUsage {
    /// Text tokens in (prompt).
    pub text_input_tokens: u64,
    /// Image tokens in (references).
    pub image_input_tokens: u64,
    /// Tokens out (the images).
    pub output_tokens: u64,
}

impl ImageUsage {
    /// Reads `usage`: `input_tokens_details.{text_tokens,image_tokens}` when present, else all of
    /// `input_tokens` as text.
    pub fn from_value(usage: &Value) -> ImageUsage {
        let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        let input = get(usage, "input_tokens").unwrap_or(0);
        let details = usage.get("input_tokens_details");
        let (text, image) = match details {
            Some(d) => (
                get(d, "text_tokens").unwrap_or(input),
                get(d, "image_tokens").unwrap_or(0),
            ),
            None => (input, 0),
        };
        ImageUsage {
            text_input_tokens: text,
            image_input_tokens: image,
            output_tokens: get(usage, "output_tokens").unwrap_or(0),
        }
    }
}

/// The client as a [`Generator`]: size `WxH`, n, seed and steps from the request (each sent only
/// where the profile takes it), references as PNG parts.
#[async_trait]
impl Generator for ImagesClient {
    fn name(&self) -> String {
        format!("{}:{}", self.config.profile.name(), self.config.model)
    }

    async fn generate(&self, req: &GenerationRequest) -> Result<Vec<RgbImage>> {
        let references = req
            .references
            .iter()
            .enumerate()
            .map(|(i, img)| {
                Ok(ReferenceImage {
                    name: format!("ref{i}.png"),
                    bytes: crate::encode_image(img, image::ImageFormat::Png)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let options = ImageOptions {
            size: Some(format!("{}x{}", req.width, req.height)),
            n: Some(req.num_images as u32),
            seed: Some(req.seed),
            steps: req.sampler.steps,
            guidance_scale: req.sampler.cfg_text,
            ..ImageOptions::default()
        };
        let reply = self.create(&req.prompt, &references, &options).await?;
        reply
            .images
            .iter()
            .enumerate()
            .map(|(i, b)| crate::decode_image(b, &format!("request `{}` image {i}", req.id)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(profile: Profile) -> ImagesClient {
        ImagesClient::new(ImagesConfig::new("m").with_profile(profile)).unwrap()
    }

    fn all_options() -> ImageOptions {
        ImageOptions {
            size: Some("512x512".into()),
            n: Some(1),
            quality: Some("low".into()),
            background: Some("opaque".into()),
            moderation: Some("low".into()),
            output_format: Some("png".into()),
            output_compression: None,
            input_fidelity: Some("high".into()),
            seed: Some(7),
            steps: Some(20),
            guidance_scale: Some(4.0),
            negative_prompt: None,
        }
    }

    #[test]
    fn openai_profile_sends_openai_fields_and_omits_local_extras() {
        let p = client(Profile::OpenAi)
            .prepare("a cat", &[], &all_options())
            .unwrap();
        assert_eq!(p.endpoint, "generations");
        for k in ["quality", "background", "moderation", "output_format"] {
            assert!(p.fields.contains_key(k), "{k}");
        }
        assert!(!p.fields.contains_key("seed"));
        assert!(!p.fields.contains_key("input_fidelity"), "edits only");
        assert_eq!(
            p.omitted,
            ["input_fidelity", "seed", "steps", "guidance_scale"]
        );
    }

    #[test]
    fn sd_cpp_puts_extras_in_the_prompt() {
        let p = client(Profile::SdCpp)
            .prepare("a cat", &[], &all_options())
            .unwrap();
        assert_eq!(
            p.fields["prompt"],
            r#"a cat<sd_cpp_extra_args>{"seed":7,"sample_steps":20,"cfg_scale":4.0}</sd_cpp_extra_args>"#
        );
        assert!(!p.fields.contains_key("quality") && !p.fields.contains_key("seed"));
    }

    #[test]
    fn vllm_and_local_ai_name_extras_their_way() {
        let p = client(Profile::VllmOmni)
            .prepare("x", &[], &all_options())
            .unwrap();
        assert_eq!(p.fields["num_inference_steps"], 20);
        assert_eq!(p.fields["seed"], 7);
        let refs = [ReferenceImage {
            name: "a.png".into(),
            bytes: vec![1, 2, 3],
        }];
        let p = client(Profile::LocalAi)
            .prepare("x", &refs, &all_options())
            .unwrap();
        assert_eq!(p.endpoint, "generations");
        assert_eq!(p.fields["step"], 20);
        assert!(!p.fields.contains_key("seed") && p.omitted.contains(&"seed".to_string()));
        assert_eq!(p.fields["ref_images"], json!(["AQID"]));
        assert_eq!(p.fields["response_format"], "b64_json");
        let p = client(Profile::OpenAi)
            .prepare("x", &refs, &all_options())
            .unwrap();
        assert_eq!(p.endpoint, "edits");
        assert_eq!(p.fields["input_fidelity"], "high");
    }

    #[test]
    fn usage_is_read_leniently() {
        let u = ImageUsage::from_value(&json!({"input_tokens": 50, "output_tokens": 1056,
            "input_tokens_details": {"text_tokens": 40, "image_tokens": 10}}));
        assert_eq!(
            (u.text_input_tokens, u.image_input_tokens, u.output_tokens),
            (40, 10, 1056)
        );
        let u = ImageUsage::from_value(&json!({"input_tokens": 12}));
        assert_eq!((u.text_input_tokens, u.output_tokens), (12, 0));
    }
}
