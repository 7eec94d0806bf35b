//! Where images come from: any [`SynthBackend`]. Two are built in: [`ImagesBackend`], an
//! OpenAI-compatible images API (OpenAI or a local server), and [`GeneratorBackend`], any
//! [`echo4o_core::Generator`] plug-in (the BAGEL generator, a folder of images, your own).

use std::sync::Arc;

use async_trait::async_trait;
use echo4o_core::openai::images::{
    FailureKind, ImageOptions, ImageUsage, ImagesClient, ReferenceImage,
};
use echo4o_core::{GenerationRequest, Generator, SamplerSettings};
use serde_json::{Map, Value, json};

/// One generated image and what the backend said about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    /// Encoded bytes (PNG, JPEG or WebP).
    pub image: Vec<u8>,
    /// The prompt as the backend rewrote it, if it did.
    pub revised_prompt: Option<String>,
    /// Raw `usage`, when sent.
    pub usage: Option<Value>,
    /// `x-request-id` or the reply's id.
    pub request_id: Option<String>,
    /// `created`.
    pub created: Option<i64>,
    /// Requests sent, retries included.
    pub attempts: u32,
    /// The request's fields as sent (no image bytes).
    pub sent: Map<String, Value>,
    /// Options the backend does not take and that were left out.
    pub omitted: Vec<String>,
}

/// A failed generation, classified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct BackendFailure {
    /// How the job must treat it.
    pub kind: FailureKind,
    /// What happened.
    pub message: String,
    /// The raw error body, when there was one.
    pub body: Option<String>,
    /// The request id, when the server sent one.
    pub request_id: Option<String>,
    /// Requests sent.
    pub attempts: u32,
}

/// An image source for synthesis jobs.
#[async_trait]
pub trait SynthBackend: Send + Sync {
    /// A stable description: name, model, endpoint and parameters. It is part of every job key
    /// (change a parameter, get new keys) and of every sample's provenance.
    fn describe(&self) -> Value;

    /// Whether the backend takes a seed (OpenAI does not: provenance records `seed: null`).
    fn takes_seed(&self) -> bool;

    /// One image for `prompt`, composing `references` (encoded bytes) when given.
    async fn generate(
        &self,
        prompt: &str,
        references: &[ReferenceImage],
        seed: u64,
    ) -> Result<Generated, BackendFailure>;

    /// Token counts from a `usage` value, for cost.
    fn usage_tokens(&self, usage: &Value) -> ImageUsage {
        ImageUsage::from_value(usage)
    }
}

/// An OpenAI-compatible images API with fixed options.
#[derive(Debug, Clone)]
pub struct ImagesBackend {
    client: ImagesClient,
    options: ImageOptions,
}

impl ImagesBackend {
    /// `client` with `options` for every request (`n` is forced to 1).
    pub fn new(client: ImagesClient, options: ImageOptions) -> Self {
        ImagesBackend {
            client,
            options: ImageOptions { n: None, ..options },
        }
    }
}

#[async_trait]
impl SynthBackend for ImagesBackend {
    fn describe(&self) -> Value {
        let c = self.client.config();
        json!({"backend": "openai-images", "profile": c.profile().name(), "model": c.model(),
               "base_url": c.url(""), "options": self.options})
    }

    fn takes_seed(&self) -> bool {
        self.client.config().profile().capabilities().takes_seed()
    }

    async fn generate(
        &self,
        prompt: &str,
        references: &[ReferenceImage],
        seed: u64,
    ) -> Result<Generated, BackendFailure> {
        let mut options = self.options.clone();
        if self.takes_seed() && options.seed.is_none() {
            options.seed = Some(seed);
        }
        match self.client.create(prompt, references, &options).await {
            Ok(mut reply) => Ok(Generated {
                image: reply.images.swap_remove(0),
                revised_prompt: reply.revised_prompts.into_iter().next().flatten(),
                usage: reply.usage,
                request_id: reply.request_id,
                created: reply.created,
                attempts: reply.attempts,
                sent: reply.sent,
                omitted: reply.omitted,
            }),
            Err(e) => Err(BackendFailure {
                kind: e.kind,
                message: format!("{} ({})", e.message, e.url),
                body: e.body,
                request_id: e.request_id,
                attempts: e.attempts,
            }),
        }
    }
}

/// Any [`Generator`] as a backend: one image per request at a fixed size and sampler, PNG bytes.
/// Generator errors are permanent for that prompt.
pub struct GeneratorBackend {
    generator: Arc<dyn Generator>,
    width: u32,
    height: u32,
    sampler: SamplerSettings,
}

impl GeneratorBackend {
    /// `generator` at `width` x `height`.
    pub fn new(generator: Arc<dyn Generator>, width: u32, height: u32) -> Self {
        GeneratorBackend {
            generator,
            width,
            height,
            sampler: SamplerSettings::default(),
        }
    }

    /// Sets the sampler overrides.
    pub fn with_sampler(mut self, sampler: SamplerSettings) -> Self {
        self.sampler = sampler;
        self
    }
}

#[async_trait]
impl SynthBackend for GeneratorBackend {
    fn describe(&self) -> Value {
        json!({"backend": "generator", "generator": self.generator.name(),
               "size": format!("{}x{}", self.width, self.height), "sampler": self.sampler})
    }

    fn takes_seed(&self) -> bool {
        true
    }

    async fn generate(
        &self,
        prompt: &str,
        references: &[ReferenceImage],
        seed: u64,
    ) -> Result<Generated, BackendFailure> {
        let fail = |message: String| BackendFailure {
            kind: FailureKind::Permanent,
            message,
            body: None,
            request_id: None,
            attempts: 1,
        };
        let refs = references
            .iter()
            .map(|r| echo4o_core::decode_image(&r.bytes, &r.name))
            .collect::<echo4o_core::Result<Vec<_>>>()
            .map_err(|e| fail(e.to_string()))?;
        let request = GenerationRequest::new("synth", prompt)
            .with_size(self.width, self.height)
            .with_seed(seed)
            .with_references(refs)
            .with_sampler(self.sampler.clone());
        let images = self
            .generator
            .generate(&request)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let first = images
            .into_iter()
            .next()
            .ok_or_else(|| fail("the generator returned no image".into()))?;
        let image = echo4o_core::encode_image(&first, echo4o_core::image::ImageFormat::Png)
            .map_err(|e| fail(e.to_string()))?;
        let mut sent = Map::new();
        sent.insert("prompt".into(), json!(prompt));
        sent.insert("seed".into(), json!(seed));
        sent.insert("references".into(), json!(references.len()));
        Ok(Generated {
            image,
            revised_prompt: None,
            usage: None,
            request_id: None,
            created: None,
            attempts: 1,
            sent,
            omitted: vec![],
        })
    }
}
