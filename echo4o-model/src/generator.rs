//! [`BagelGenerator`]: the BAGEL / Echo-4o model as an [`echo4o_core::Generator`] plug-in, for
//! text-to-image and multi-reference requests.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use burn::tensor::backend::Backend;
use echo4o_core::image::RgbImage;
use echo4o_core::{GenerationRequest, Generator};

use crate::pipeline::{BagelPipeline, PipelineRequest};
use crate::sampling::SamplerConfig;

/// Progress callback: `(request id, step, steps)`.
pub type StepCallback = Arc<dyn Fn(&str, usize, usize) + Send + Sync>;

/// A [`BagelPipeline`] behind the [`Generator`] trait.
///
/// Requests run one at a time on a blocking thread (the model uses every core already), each
/// image `k` of a request with seed `request.seed + k`. Unset sampler fields take the official
/// defaults of the task: text-to-image 4.0 / 1.0 / [0.4, 1] / global, with references
/// 4.0 / 2.0 / [0, 1] / text_channel; shift 3, 50 timesteps. The output size follows the
/// request's [`SizeRule`](echo4o_core::SizeRule); references enter as VAE then ViT context each,
/// before the text, as the official multi-reference scripts add them.
pub struct BagelGenerator<B: Backend> {
    pipeline: Arc<Mutex<BagelPipeline<B>>>,
    name: String,
    on_step: Option<StepCallback>,
}

impl<B: Backend> BagelGenerator<B> {
    /// Wraps a loaded pipeline; `name` is what reports and provenance record.
    pub fn new(pipeline: BagelPipeline<B>, name: impl Into<String>) -> Self {
        BagelGenerator {
            pipeline: Arc::new(Mutex::new(pipeline)),
            name: name.into(),
            on_step: None,
        }
    }

    /// Calls `f(id, step, steps)` after every denoising step. By default nothing is called.
    pub fn with_progress(mut self, f: StepCallback) -> Self {
        self.on_step = Some(f);
        self
    }
}

/// The pipeline request for image `k` of `req`.
pub fn pipeline_request(req: &GenerationRequest, k: usize) -> PipelineRequest {
    let mut sampler = if req.references.is_empty() {
        SamplerConfig::text_to_image()
    } else {
        SamplerConfig::multi_reference()
    };
    let s = &req.sampler;
    if let Some(v) = s.steps {
        sampler.num_timesteps = v as usize;
    }
    if let Some(v) = s.cfg_text {
        sampler.cfg_text = v;
    }
    if let Some(v) = s.cfg_img {
        sampler.cfg_img = v;
    }
    if let Some(v) = s.shift {
        sampler.shift = v;
    }
    if let Some(v) = s.cfg_interval {
        sampler.interval = v;
    }
    PipelineRequest {
        prompt: req.prompt.clone(),
        references: req.references.clone(),
        // `LastReference` (and a first-reference rule without references, which the pipeline
        // then treats as text-to-image) leave the size to the pipeline's own VAE rule.
        size: req.resolved_size(),
        sampler,
        seed: req.seed.wrapping_add(k as u64),
    }
}

#[async_trait]
impl<B: Backend> Generator for BagelGenerator<B>
where
    BagelPipeline<B>: Send,
{
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn generate(&self, request: &GenerationRequest) -> echo4o_core::Result<Vec<RgbImage>> {
        let pipeline = self.pipeline.clone();
        let request = request.clone();
        let on_step = self.on_step.clone();
        let name = self.name.clone();
        let fail = move |message: String| echo4o_core::Error::Generator {
            generator: name.clone(),
            message,
        };
        let fail2 = fail.clone();
        tokio::task::spawn_blocking(move || {
            let pipe = pipeline
                .lock()
                .map_err(|_| fail2("a previous generation panicked".into()))?;
            (0..request.num_images)
                .map(|k| {
                    let pr = pipeline_request(&request, k);
                    pipe.generate(&pr, |i, n| {
                        if let Some(f) = &on_step {
                            f(&request.id, i, n);
                        }
                    })
                    .map_err(|e| fail2(e.to_string()))
                })
                .collect()
        })
        .await
        .map_err(|e| fail(format!("generation task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo4o_core::{SamplerSettings, SizeRule};

    #[test]
    fn requests_map_to_the_official_recipe_of_their_task() {
        let t2i = GenerationRequest::new("1", "p")
            .with_size(64, 32)
            .with_seed(7)
            .with_sampler(SamplerSettings {
                cfg_interval: Some((0.0, 1.0)),
                ..Default::default()
            });
        let pr = pipeline_request(&t2i, 2);
        assert_eq!((pr.size, pr.seed), (Some((64, 32)), 9));
        assert_eq!(pr.sampler.interval, (0.0, 1.0));
        assert_eq!(pr.sampler.cfg_img, 1.0);

        let refs = vec![RgbImage::new(300, 200), RgbImage::new(640, 640)];
        let omni = GenerationRequest::new("2", "p")
            .with_references(refs.clone())
            .with_size_rule(SizeRule::FirstReference);
        let pr = pipeline_request(&omni, 0);
        assert_eq!(
            pr.size,
            Some((768, 512)),
            "Echo-4o's rule on the first image"
        );
        assert_eq!((pr.sampler.cfg_img, pr.sampler.interval), (2.0, (0.0, 1.0)));

        let inferencer = GenerationRequest::new("3", "p")
            .with_references(refs)
            .with_size_rule(SizeRule::LastReference);
        assert_eq!(
            pipeline_request(&inferencer, 0).size,
            None,
            "the pipeline decides"
        );
    }
}
