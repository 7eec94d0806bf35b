//! The training loop's state: model, AdamW, EMA, schedule, freezing, checkpoints and resume.

use std::path::Path;

use burn::grad_clipping::GradientClippingConfig;
use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::ToElement;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{DType, Tensor, TensorData};
use echo4o_core::Sample;
use echo4o_core::image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::Distribution;
use serde::{Deserialize, Serialize};

use super::adamw::{AdamWSettings, FusedAdamW};
use super::objective::{T2iExample, flow_loss, timestep};
use crate::Error;
use crate::autoencoder::LatentCodec;
use crate::bagel::{Bagel, patchify};
use crate::codec::Codec;
use crate::config::BagelConfig;
use crate::pipeline::{BagelPipeline, save_checkpoint};
use crate::pixels::chw_tensor;
use crate::tokenizer::BagelTokenizer;

/// Optimisation settings. Defaults are the official ones (`TrainingArguments`), except the
/// learning rate, warm-up and EMA decay, which suit tiny models trained from scratch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSettings {
    /// Optimiser steps.
    pub steps: usize,
    /// Examples per step (packed into one sequence).
    pub batch_size: usize,
    /// Peak learning rate (official fine-tune: 2e-5; pre-training: 1e-4).
    pub lr: f64,
    /// Linear warm-up steps, then constant (official: 2000) or decaying (`lr_end`).
    pub warmup_steps: usize,
    /// When set, the learning rate falls from `lr` to this value along a half cosine between
    /// the end of warm-up and the last step (`steps`), as small diffusion models are usually
    /// trained; unset, it stays at `lr` (the official schedule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr_end: Option<f64>,
    /// AdamW beta1 (0.9).
    pub beta1: f32,
    /// AdamW beta2 (0.95).
    pub beta2: f32,
    /// AdamW epsilon (1e-15).
    pub eps: f32,
    /// Decoupled weight decay (0).
    pub weight_decay: f32,
    /// Gradient norm clip (1.0).
    pub grad_clip: f32,
    /// EMA decay of the weights that are saved and sampled (official 0.9999).
    pub ema_decay: f64,
    /// Probability of dropping the text of an example, so CFG works (0.1).
    pub text_dropout: f64,
    /// Timestep shift of training (1.0).
    pub timestep_shift: f32,
    /// Weight of the next-token cross-entropy on text (0: T2I data has no text loss).
    pub ce_weight: f32,
    /// Freeze the understanding expert (und weights, embeddings, `norm`, `lm_head`).
    pub freeze_und: bool,
    /// Freeze the ViT and connector.
    pub freeze_vit: bool,
    /// Seed of every random draw (dropout, timesteps, noise).
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            steps: 1000,
            batch_size: 16,
            lr: 1e-3,
            warmup_steps: 100,
            lr_end: None,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-15,
            weight_decay: 0.0,
            grad_clip: 1.0,
            ema_decay: 0.999,
            text_dropout: 0.1,
            timestep_shift: 1.0,
            ce_weight: 0.0,
            freeze_und: false,
            freeze_vit: false,
            seed: 0,
        }
    }
}

impl TrainSettings {
    /// Checks every value before a run starts, naming the field that is out of range (a
    /// `text_dropout` of 7 would panic inside the RNG, an `lr` of 1e300 would train to NaN).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &str, message: String| {
            Err(Error::InvalidConfig {
                field: format!("train.{field}"),
                message,
            })
        };
        if !(1..=4096).contains(&self.batch_size) {
            return bad(
                "batch_size",
                format!("{} is outside 1..=4096", self.batch_size),
            );
        }
        let ranges: [(&str, f64, f64, f64, bool); 10] = [
            // (field, value, low, high, high is inclusive)
            ("lr", self.lr, f64::MIN_POSITIVE, 1.0, true),
            ("text_dropout", self.text_dropout, 0.0, 1.0, true),
            ("ema_decay", self.ema_decay, 0.0, 1.0, true),
            ("beta1", f64::from(self.beta1), 0.0, 1.0, false),
            ("beta2", f64::from(self.beta2), 0.0, 1.0, false),
            ("eps", f64::from(self.eps), 0.0, 1.0, true),
            ("weight_decay", f64::from(self.weight_decay), 0.0, 1.0, true),
            (
                "grad_clip",
                f64::from(self.grad_clip),
                f64::MIN_POSITIVE,
                1e6,
                true,
            ),
            (
                "timestep_shift",
                f64::from(self.timestep_shift),
                1e-3,
                1e3,
                true,
            ),
            ("ce_weight", f64::from(self.ce_weight), 0.0, 1e3, true),
        ];
        if let Some(end) = self.lr_end
            && !(end.is_finite() && (0.0..=self.lr).contains(&end))
        {
            return bad("lr_end", format!("{end} is outside [0, lr = {}]", self.lr));
        }
        for (field, v, low, high, inclusive) in ranges {
            let inside = v.is_finite() && v >= low && if inclusive { v <= high } else { v < high };
            if !inside {
                let close = if inclusive { "]" } else { ")" };
                return bad(field, format!("{v} is outside [{low}, {high}{close}"));
            }
        }
        Ok(())
    }

    /// The learning rate at `step` (0-based): linear warm-up, then constant, or a half cosine
    /// down to `lr_end` at the last step.
    ///
    /// ```
    /// use echo4o_model::train::TrainSettings;
    ///
    /// let s = TrainSettings { steps: 110, warmup_steps: 10, lr: 1e-3, lr_end: Some(1e-4), ..Default::default() };
    /// assert_eq!(s.lr_at(4), 5e-4);
    /// assert_eq!(s.lr_at(10), 1e-3);
    /// assert!((s.lr_at(60) - 5.5e-4).abs() < 1e-5); // half way down
    /// assert!((s.lr_at(109) - 1e-4).abs() < 1e-6);
    /// assert_eq!(TrainSettings { lr_end: None, ..s }.lr_at(109), 1e-3);
    /// ```
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let Some(end) = self.lr_end else {
            return self.lr;
        };
        let span = self.steps.saturating_sub(self.warmup_steps + 1).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        end + (self.lr - end) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// What one step reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Steps done after this one.
    pub step: usize,
    /// The loss.
    pub loss: f32,
    /// Its flow-matching part.
    pub mse: f32,
    /// The learning rate used.
    pub lr: f64,
}

/// Where a step is in a run, saved with checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    step: usize,
    settings: TrainSettings,
}

/// Sets `require_grad` by module path: off for frozen parts, on for the rest (weights loaded from
/// a file come without it).
struct Freeze {
    path: Vec<String>,
    und: bool,
    vit: bool,
}

impl Freeze {
    fn frozen(&self) -> bool {
        let path = self.path.join(".");
        let vit = path.starts_with("vit_model") || path.starts_with("connector");
        // Every gen-expert module has `moe_gen` in its name; the rest of the language model
        // (und layers, embeddings, `norm`, `lm_head`) is the understanding expert.
        let und = path.starts_with("language_model") && !path.contains("moe_gen");
        (self.vit && vit) || (self.und && und)
    }
}

impl<B: Backend> ModuleMapper<B> for Freeze {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        param.set_require_grad(!self.frozen())
    }
}

/// Collects every float parameter, flattened, in visiting order.
struct Collect<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.0.push(t.reshape([n]));
    }
}

/// `ema <- decay ema + (1 - decay) new`, parameters matched by visiting order.
struct Blend<B: Backend> {
    new: std::vec::IntoIter<Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let decay = self.decay;
        match self.new.next() {
            Some(new) => param.map(|ema| {
                let dims = ema.dims();
                ema * decay + new.reshape(dims) * (1.0 - decay)
            }),
            None => param,
        }
    }
}

/// A training run: the model being trained (on an autodiff backend), its optimiser, the EMA
/// copy that is saved and sampled, the codec, tokenizer and schedule.
pub struct Trainer<B: AutodiffBackend> {
    model: Option<Bagel<B>>,
    optim: OptimizerAdaptor<FusedAdamW, Bagel<B>, B>,
    ema: Bagel<B::InnerBackend>,
    codec: Codec<B::InnerBackend>,
    tokenizer: BagelTokenizer,
    config: BagelConfig,
    settings: TrainSettings,
    step: usize,
    device: B::Device,
}

fn optimizer<B: AutodiffBackend>(s: &TrainSettings) -> OptimizerAdaptor<FusedAdamW, Bagel<B>, B> {
    OptimizerAdaptor::from(FusedAdamW::new(AdamWSettings {
        beta_1: s.beta1,
        beta_2: s.beta2,
        epsilon: s.eps,
        weight_decay: s.weight_decay,
    }))
    .with_grad_clipping(GradientClippingConfig::Norm(s.grad_clip).init())
}

/// A training-state file that cannot be read or written (not a weights mismatch: a missing
/// `state.json` must say so).
/// Replaces the folder `to` by the complete folder `from`: `to` moves aside, `from` takes its
/// place, the old one is removed.
fn swap_in(from: &Path, to: &Path) -> Result<(), Error> {
    let io = |p: &Path, e| Error::Core(echo4o_core::Error::io(p, e));
    let old = to.with_extension("old");
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    }
    if to.exists() {
        std::fs::rename(to, &old).map_err(|e| io(to, e))?;
    }
    std::fs::rename(from, to).map_err(|e| io(from, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io(&old, e))?;
    }
    Ok(())
}

fn state_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::TrainState {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl<B: AutodiffBackend> Trainer<B> {
    /// A run starting from `pipeline`'s weights (a fresh random model, or a checkpoint to
    /// fine-tune), in f32. Settings out of range ([`TrainSettings::validate`]) are an error.
    pub fn new(
        pipeline: BagelPipeline<B::InnerBackend>,
        settings: TrainSettings,
        device: &B::Device,
    ) -> Result<Self, Error> {
        settings.validate()?;
        let BagelPipeline {
            model,
            vae,
            tokenizer,
            config,
            ..
        } = pipeline;
        let ema = model.clone();
        let trained = Bagel::<B>::from_inner(model).map(&mut Freeze {
            path: Vec::new(),
            und: settings.freeze_und,
            vit: settings.freeze_vit,
        });
        Ok(Trainer {
            model: Some(trained),
            optim: optimizer::<B>(&settings),
            ema,
            codec: vae,
            tokenizer,
            config,
            settings,
            step: 0,
            device: device.clone(),
        })
    }

    /// Steps done.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// The settings.
    pub fn settings(&self) -> &TrainSettings {
        &self.settings
    }

    /// The model configuration.
    pub fn config(&self) -> &BagelConfig {
        &self.config
    }

    /// The image side the model trains on is the data's; this is the latent grid of an image.
    fn examples(
        &self,
        batch: &[Sample],
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<T2iExample<B>>, Error> {
        let p = self.config.latent_patch_size;
        let d = self.config.latent_downsample();
        let mut out = Vec::with_capacity(batch.len());
        let encode =
            |img: &RgbImage, what: &str| -> Result<(Tensor<B, 2>, (usize, usize)), Error> {
                let (w, h) = img.dimensions();
                if !(w as usize).is_multiple_of(d) || !(h as usize).is_multiple_of(d) {
                    return Err(Error::Shape {
                        what: what.to_string(),
                        expected: format!("sides multiples of {d}"),
                        got: vec![w as usize, h as usize],
                    });
                }
                let pixels = chw_tensor::<B::InnerBackend>(img, &self.device).unsqueeze_dim::<4>(0);
                let z = self.codec.encode(pixels, None).squeeze_dim::<3>(0);
                let [_, lh, lw] = z.dims();
                Ok((Tensor::<B, 2>::from_inner(patchify(z, p)), (lh / p, lw / p)))
            };
        for s in batch {
            let img: RgbImage = s.target.to_rgb()?;
            let (x0, grid) = encode(
                &img,
                &format!("training image {} ({})", s.id, s.target.origin()),
            )?;
            let mut references = Vec::new();
            for (k, r) in s.references.iter().enumerate() {
                references.push(encode(&r.to_rgb()?, &format!("reference {k} of {}", s.id))?);
            }
            let text = if rng.random_bool(self.settings.text_dropout) {
                Vec::new()
            } else {
                self.tokenizer.prompt(&s.instruction)?
            };
            let logit: f32 = rand_distr::StandardNormal.sample(rng);
            let [n, dim] = x0.dims();
            let noise: Vec<f32> = (0..n * dim)
                .map(|_| rand_distr::StandardNormal.sample(rng))
                .collect();
            out.push(T2iExample {
                references,
                text,
                x0,
                grid,
                t: timestep(logit, self.settings.timestep_shift),
                noise: Tensor::from_data(
                    TensorData::new(noise, [n, dim]),
                    (&self.device, DType::F32),
                ),
            });
        }
        Ok(out)
    }

    /// One optimiser step on `batch`: the official loss, AdamW with clipping at the scheduled
    /// learning rate, then the EMA update. Draws are seeded by (seed, step), so a resumed run
    /// continues exactly.
    pub fn train_step(&mut self, batch: &[Sample]) -> Result<StepStats, Error> {
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.settings.seed ^ (self.step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let examples = self.examples(batch, &mut rng)?;
        let model = self.model.take().ok_or_else(|| Error::InvalidConfig {
            field: "trainer".into(),
            message: "a previous step failed midway".into(),
        })?;
        let markers = [
            self.config.tokens.start_of_image,
            self.config.tokens.end_of_image,
        ];
        let out = flow_loss(
            &model,
            &examples,
            markers,
            self.settings.ce_weight,
            self.config.max_latent_size,
        );
        let loss: f32 = out.loss.clone().into_scalar().to_f32();
        let mse: f32 = out.mse.clone().into_scalar().to_f32();
        if !loss.is_finite() {
            // Stop before the optimiser spreads NaN into the moments; the weights stay as they
            // were, and so does every checkpoint on disk.
            self.model = Some(model);
            return Err(Error::Diverged {
                step: self.step + 1,
                what: format!(
                    "the loss is {loss} (learning rate {})",
                    self.settings.lr_at(self.step)
                ),
            });
        }
        let grads = GradientsParams::from_grads(out.loss.backward(), &model);
        let lr = self.settings.lr_at(self.step);
        let model = self.optim.step(lr, model, grads);
        // EMA with the usual warm-up of its decay, so early EMA weights are not mostly the init.
        let decay = self
            .settings
            .ema_decay
            .min((1 + self.step) as f64 / (10 + self.step) as f64);
        let mut collect = Collect(Vec::new());
        model.valid().visit(&mut collect);
        let ema = std::mem::replace(&mut self.ema, model.valid());
        self.ema = ema.map(&mut Blend {
            new: collect.0.into_iter(),
            decay,
        });
        self.model = Some(model);
        self.step += 1;
        Ok(StepStats {
            step: self.step,
            loss,
            mse,
            lr,
        })
    }

    /// The EMA weights as a generation pipeline (sample grids, evaluation).
    pub fn ema_pipeline(&self) -> BagelPipeline<B::InnerBackend> {
        let codec = self.codec.duplicate();
        BagelPipeline::from_parts(
            self.ema.clone(),
            codec,
            self.tokenizer.clone(),
            self.config.clone(),
            &self.device,
        )
    }

    /// Saves `dir/` as a loadable checkpoint of the EMA weights (official layout, with
    /// `tokenizer.json`) and `dir/train_state/` (the trained weights with their parameter ids,
    /// the optimiser state, the step), from which [`Trainer::resume`] continues.
    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        // Never replace a good checkpoint with a diverged one.
        if !crate::weights::non_finite_params(&self.ema, 1).is_empty() {
            return Err(Error::Diverged {
                step: self.step,
                what: "the EMA weights are not finite; the last saved checkpoint is kept".into(),
            });
        }
        save_checkpoint(dir, &self.ema, &self.codec, &self.config)?;
        self.tokenizer.save(&dir.join("tokenizer.json"))?;
        // The train state is written whole into a fresh folder, then swapped in: a run killed
        // mid-save keeps the previous state (and burn's recorder never overwrites a file).
        let state = dir.join("train_state");
        let fresh = dir.join("train_state.new");
        let io = |p: &Path, e| Error::Core(echo4o_core::Error::io(p, e));
        if fresh.exists() {
            std::fs::remove_dir_all(&fresh).map_err(|e| io(&fresh, e))?;
        }
        std::fs::create_dir_all(&fresh).map_err(|e| io(&fresh, e))?;
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        if let Some(model) = &self.model {
            model
                .clone()
                .save_file(fresh.join("model"), &recorder)
                .map_err(|e| state_error(&fresh.join("model.mpk"), e))?;
        }
        Recorder::<B>::record(&recorder, self.optim.to_record(), fresh.join("optim"))
            .map_err(|e| state_error(&fresh.join("optim.mpk"), e))?;
        let json = serde_json::to_string_pretty(&TrainState {
            step: self.step,
            settings: self.settings.clone(),
        })
        .map_err(|e| state_error(&fresh, e))?;
        echo4o_core::fs::write_atomic(&fresh.join("state.json"), json.as_bytes())
            .map_err(Error::Core)?;
        swap_in(&fresh, &state)
    }

    /// Continues the run saved in `dir` by [`Trainer::save`]; `steps` (if given) replaces the
    /// saved total, so a finished run can be extended.
    pub fn resume(dir: &Path, steps: Option<usize>, device: &B::Device) -> Result<Self, Error> {
        let pipeline = BagelPipeline::<B::InnerBackend>::load(dir, device)?;
        let state_dir = dir.join("train_state");
        // A save killed between its two renames left only the complete new folder.
        let fresh = dir.join("train_state.new");
        if !state_dir.exists() && fresh.join("state.json").is_file() {
            swap_in(&fresh, &state_dir)?;
        }
        let path = state_dir.join("state.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Core(echo4o_core::Error::io(&path, e)))?;
        let state: TrainState = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        let mut settings = state.settings;
        if let Some(s) = steps {
            settings.steps = s;
        }
        let mut trainer = Trainer::new(pipeline, settings, device)?;
        let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
        let model = trainer
            .model
            .take()
            .ok_or_else(|| state_error(dir, "no model"))?
            .load_file(state_dir.join("model"), &recorder, device)
            .map_err(|e| state_error(&state_dir.join("model.mpk"), e))?;
        let record = Recorder::<B>::load(&recorder, state_dir.join("optim"), device)
            .map_err(|e| state_error(&state_dir.join("optim.mpk"), e))?;
        trainer.optim = optimizer::<B>(&trainer.settings).load_record(record);
        trainer.model = Some(model);
        trainer.step = state.step;
        Ok(trainer)
    }
}
