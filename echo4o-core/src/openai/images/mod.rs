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

mod failure;
mod profile;
mod request;

pub use failure::{FailureKind, ImagesError, classify};
pub use profile::{Capabilities, Extras, ImageOptions, Profile, ReferenceImage};

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::transport::{ApiKey, Connection, RetryPolicy, Step, with_retries};
use super::wire::WireReply;
use crate::{GenerationRequest, Generator, Result};
use failure::failure;
use request::Prepared;

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
    connection: Connection,
    model: String,
    profile: Profile,
    retry_timeouts: bool,
}

impl ImagesConfig {
    /// `model` at [`DEFAULT_BASE_URL`](super::DEFAULT_BASE_URL) with the OpenAI profile, the key
    /// from `$OPENAI_API_KEY`, a 600 s timeout (image requests take minutes), and 3 retries of
    /// rate limits and overloads.
    pub fn new(model: impl Into<String>) -> Self {
        ImagesConfig {
            connection: Connection::openai(
                Duration::from_secs(600),
                RetryPolicy {
                    max_retries: 3,
                    ..RetryPolicy::default()
                },
            ),
            model: model.into(),
            profile: Profile::OpenAi,
            retry_timeouts: false,
        }
    }

    /// Sets the API base (`http://host:port/v1`). As for the chat client: `user:password@`
    /// becomes basic auth and is never written anywhere, and `$OPENAI_API_KEY` is only kept for
    /// OpenAI's host ([`Connection::set_base_url`]).
    pub fn with_base_url(mut self, url: impl Into<String>) -> Self {
        self.connection.set_base_url(&url.into());
        self
    }

    /// Sets the API key, sent as `Bearer` to whatever host the base URL names.
    pub fn with_api_key(mut self, key: ApiKey) -> Self {
        self.connection.set_api_key(key);
        self
    }

    /// Reads the API key from environment variable `var` (unset: no key).
    pub fn with_api_key_env(mut self, var: &str) -> Self {
        self.connection.set_api_key_env(var);
        self
    }

    /// Sets the server profile. By default [`Profile::OpenAi`].
    pub fn with_profile(mut self, profile: Profile) -> Self {
        self.profile = profile;
        self
    }

    /// Sets the per-request timeout. By default 600 s.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.connection.set_timeout(timeout);
        self
    }

    /// Sets the retry policy for 408/409/429/5xx and connection errors.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.connection.set_retry(retry);
        self
    }

    /// Also retry requests that timed out. Off by default: the image may have been made and
    /// billed anyway, and a retry pays again.
    pub fn with_retry_timeouts(mut self, yes: bool) -> Self {
        self.retry_timeouts = yes;
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
        format!("{}/images/{endpoint}", self.connection.base_url())
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

impl ImagesClient {
    /// A client with `config`.
    pub fn new(config: ImagesConfig) -> Result<Self> {
        let http = config.connection.http_client(&config.url("generations"))?;
        Ok(ImagesClient { config, http })
    }

    /// The configuration.
    pub fn config(&self) -> &ImagesConfig {
        &self.config
    }

    /// Generates images for `prompt`, composing `references` when given (an edits request with
    /// one `image[]` part each, or LocalAI's `ref_images`).
    pub async fn create(
        &self,
        prompt: &str,
        references: &[ReferenceImage],
        options: &ImageOptions,
    ) -> std::result::Result<ImagesReply, ImagesError> {
        let prepared =
            request::prepare(&self.config, prompt, references, options).map_err(|e| {
                ImagesError {
                    kind: FailureKind::Permanent,
                    url: self.config.url("edits"),
                    status: None,
                    message: e.to_string(),
                    body: None,
                    request_id: None,
                    attempts: 0,
                }
            })?;
        let url = self.config.url(prepared.endpoint);
        let (outcome, attempts) = with_retries(self.config.connection.retry(), || {
            self.try_once(&url, &prepared)
        })
        .await;
        match outcome {
            Ok((text, request_id)) => parse_reply(&url, &text, request_id, &prepared, attempts),
            Err(mut error) => {
                error.attempts = attempts;
                Err(error)
            }
        }
    }

    /// One request: a reply, a failure for good, or one worth retrying (a timeout only when
    /// [`ImagesConfig::with_retry_timeouts`] allows it: the image may have been billed).
    async fn try_once(
        &self,
        url: &str,
        prepared: &Prepared,
    ) -> Step<(String, Option<String>), ImagesError> {
        let req = self.http.post(url);
        let req = if prepared.endpoint == "edits" {
            let mut form = reqwest::multipart::Form::new();
            for (k, v) in &prepared.fields {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                form = form.text(k.clone(), text);
            }
            for r in &prepared.references {
                let part = match reqwest::multipart::Part::bytes(r.bytes.clone())
                    .file_name(r.name.clone())
                    .mime_str(r.mime())
                {
                    Ok(p) => p,
                    Err(e) => {
                        return Step::Done(Err(failure(
                            url,
                            FailureKind::Permanent,
                            None,
                            e.to_string(),
                            None,
                        )));
                    }
                };
                form = form.part("image[]", part);
            }
            req.multipart(form)
        } else {
            req.json(&Value::Object(prepared.fields.clone()))
        };
        let reply = match self.config.connection.exchange(req).await {
            Ok(r) => r,
            Err(f) => {
                let message = if f.timed_out {
                    format!(
                        "{} (the image may still have been made and billed)",
                        f.message
                    )
                } else {
                    f.message
                };
                let error = failure(url, FailureKind::Retryable, f.status, message, None);
                return if f.timed_out && !self.config.retry_timeouts {
                    Step::Done(Err(error))
                } else {
                    Step::Retry {
                        error,
                        after: f.retry_after,
                    }
                };
            }
        };
        if (200..300).contains(&reply.status) {
            return Step::Done(Ok((reply.text, reply.request_id)));
        }
        let kind = classify(reply.status, &reply.text);
        let mut error = failure(
            url,
            kind,
            Some(reply.status),
            format!("HTTP {}", reply.status),
            Some(reply.text),
        );
        error.request_id = reply.request_id;
        if kind == FailureKind::Retryable {
            Step::Retry {
                error,
                after: reply.retry_after,
            }
        } else {
            Step::Done(Err(error))
        }
    }
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

    fn accepts_references(&self) -> bool {
        let caps = self.config.profile.capabilities();
        caps.edits || caps.refs_on_generations
    }

    async fn generate(&self, req: &GenerationRequest) -> Result<Vec<RgbImage>> {
        // A size rule that needs the model (the last reference after its VAE resize) has no
        // meaning for an API: it gets the request's fixed size.
        let (width, height) = req.resolved_size().unwrap_or((req.width, req.height));
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
            size: Some(format!("{width}x{height}")),
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
impl ImagesClient {
    fn prepare(
        &self,
        prompt: &str,
        references: &[ReferenceImage],
        options: &ImageOptions,
    ) -> Result<Prepared> {
        request::prepare(&self.config, prompt, references, options)
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
