//! The BAGEL sampler as pure functions: the shifted schedule, classifier-free guidance with its
//! renorm variants, and the Euler loop, generic over a [`VelocityModel`] so any model (or a mock)
//! can drive it.
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `modeling/bagel/bagel.py` `generate_image`
//! (l.644-755) and `_forward_flow` (l.757-907).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Which context a velocity is computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guidance {
    /// The full context (references and text).
    Cond,
    /// Without the last text (text CFG's unconditional branch).
    CfgText,
    /// Without the reference images (image CFG's branch).
    CfgImg,
}

/// Anything that predicts a flow velocity for latent tokens at a time, in one of the contexts.
pub trait VelocityModel<B: Backend> {
    /// The velocity `[N, C]` of `x` `[N, C]` at time `t` in context `which`.
    fn velocity(&mut self, x: Tensor<B, 2>, t: f32, which: Guidance) -> Tensor<B, 2>;
}

/// How the guided velocity is rescaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renorm {
    /// One scale over all tokens and channels.
    Global,
    /// One scale per token (over its channels).
    Channel,
    /// Per token, applied to the text-guided velocity before image guidance.
    TextChannel,
}

impl std::str::FromStr for Renorm {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self, crate::Error> {
        match s {
            "global" => Ok(Renorm::Global),
            "channel" => Ok(Renorm::Channel),
            "text_channel" => Ok(Renorm::TextChannel),
            o => Err(crate::Error::InvalidConfig {
                field: "renorm".into(),
                message: format!("unknown renorm `{o}` (global, channel, text_channel)"),
            }),
        }
    }
}

/// Sampler settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    /// Points of the time grid, 0 included: `num_timesteps - 1` model evaluations. By default 50.
    pub num_timesteps: usize,
    /// Timestep shift. By default 3.0.
    pub shift: f32,
    /// Text guidance scale. By default 4.0.
    pub cfg_text: f32,
    /// Image guidance scale. By default 1.0 (off).
    pub cfg_img: f32,
    /// Guidance is applied where `interval.0 < t <= interval.1` (shifted t). By default (0.4, 1).
    pub interval: (f32, f32),
    /// Renorm type. By default global.
    pub renorm: Renorm,
    /// Lower clamp of the renorm scale. By default 0.
    pub renorm_min: f32,
}

impl SamplerConfig {
    /// The official text-to-image settings: 4.0 / 1.0 / [0.4, 1] / global, shift 3, 50 steps.
    pub fn text_to_image() -> Self {
        SamplerConfig {
            num_timesteps: 50,
            shift: 3.0,
            cfg_text: 4.0,
            cfg_img: 1.0,
            interval: (0.4, 1.0),
            renorm: Renorm::Global,
            renorm_min: 0.0,
        }
    }

    /// Checks the settings before any work: NaN or infinite scales would otherwise run the whole
    /// sampler and decode an all-black image.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |field: &str, message: String| {
            Err(crate::Error::InvalidConfig {
                field: field.to_string(),
                message,
            })
        };
        if !(2..=10_000).contains(&self.num_timesteps) {
            return bad(
                "num_timesteps",
                format!("{} is outside 2..=10000", self.num_timesteps),
            );
        }
        if !(self.shift.is_finite() && self.shift > 0.0) {
            return bad(
                "shift",
                format!("{} must be finite and positive", self.shift),
            );
        }
        for (field, v) in [
            ("cfg_text", self.cfg_text),
            ("cfg_img", self.cfg_img),
            ("renorm_min", self.renorm_min),
        ] {
            if !v.is_finite() {
                return bad(field, format!("{v} must be finite"));
            }
        }
        let (lo, hi) = self.interval;
        if !(lo.is_finite() && hi.is_finite() && (0.0..=1.0).contains(&lo) && lo <= hi && hi <= 1.0)
        {
            return bad(
                "interval",
                format!("({lo}, {hi}) must satisfy 0 <= low <= high <= 1"),
            );
        }
        Ok(())
    }

    /// The official multi-reference settings: 4.0 / 2.0 / [0, 1] / text_channel.
    pub fn multi_reference() -> Self {
        SamplerConfig {
            cfg_img: 2.0,
            interval: (0.0, 1.0),
            renorm: Renorm::TextChannel,
            ..Self::text_to_image()
        }
    }
}

/// `torch.linspace(1, 0, n)` in f32, then shifted: `s t / (1 + (s - 1) t)`. `n` points including 0.
///
/// ```
/// let ts = echo4o_model::sampling::schedule(50, 3.0);
/// assert_eq!(ts.len(), 50);
/// assert_eq!((ts[0], ts[49]), (1.0, 0.0));
/// assert!((ts[1] - 0.9931).abs() < 1e-4);
/// ```
pub fn schedule(n: usize, shift: f32) -> Vec<f32> {
    if n < 2 {
        return vec![1.0; n];
    }
    let (start, end) = (1.0f32, 0.0f32);
    let step = (end - start) / (n - 1) as f32;
    let half = n / 2;
    (0..n)
        .map(|i| {
            // torch's CPU linspace fills the two halves from either end.
            if i < half {
                start + step * i as f32
            } else {
                end - step * (n - i - 1) as f32
            }
        })
        .map(|t| shift * t / (1.0 + (shift - 1.0) * t))
        .collect()
}

fn row_norm<B: Backend>(v: &Tensor<B, 2>) -> Tensor<B, 2> {
    v.clone().square().sum_dim(1).sqrt()
}

fn frobenius<B: Backend>(v: &Tensor<B, 2>) -> Tensor<B, 2> {
    v.clone().square().sum().sqrt().reshape([1, 1])
}

/// Combines the velocities as `_forward_flow` does: text guidance, then image guidance (if a
/// `v_img` is given), with the renorm of `cfg`.
pub fn guide<B: Backend>(
    v_cond: Tensor<B, 2>,
    v_text: Tensor<B, 2>,
    v_img: Option<Tensor<B, 2>>,
    cfg: &SamplerConfig,
) -> Tensor<B, 2> {
    let [n, c] = v_cond.dims();
    let guided = v_text.clone() + (v_cond.clone() - v_text) * cfg.cfg_text;
    let clamp = |s: Tensor<B, 2>| s.clamp(cfg.renorm_min, 1.0);
    match cfg.renorm {
        Renorm::TextChannel => {
            let scale = clamp(row_norm(&v_cond) / (row_norm(&guided) + 1e-8));
            let guided = guided * scale.expand([n, c]);
            match v_img {
                Some(vi) => vi.clone() + (guided - vi) * cfg.cfg_img,
                None => guided,
            }
        }
        Renorm::Global | Renorm::Channel => {
            let v = match v_img {
                Some(vi) => vi.clone() + (guided - vi) * cfg.cfg_img,
                None => guided,
            };
            let scale = if cfg.renorm == Renorm::Global {
                clamp(frobenius(&v_cond) / (frobenius(&v) + 1e-8)).expand([n, c])
            } else {
                clamp(row_norm(&v_cond) / (row_norm(&v) + 1e-8)).expand([n, c])
            };
            v * scale
        }
    }
}

/// One step's record.
#[derive(Debug, Clone)]
pub struct Step<B: Backend> {
    /// The time of the step.
    pub t: f32,
    /// Whether guidance was applied.
    pub guided: bool,
    /// The input `x_t`.
    pub x: Tensor<B, 2>,
    /// The velocity used in the Euler update.
    pub v: Tensor<B, 2>,
}

/// The guided velocity at `t` for `x`, running only the passes the scales need.
pub fn guided_velocity<B: Backend, M: VelocityModel<B>>(
    model: &mut M,
    x: Tensor<B, 2>,
    t: f32,
    cfg: &SamplerConfig,
) -> (Tensor<B, 2>, bool) {
    let apply = cfg.interval.0 < t && t <= cfg.interval.1;
    let v_cond = model.velocity(x.clone(), t, Guidance::Cond);
    if !apply || cfg.cfg_text <= 1.0 {
        return (v_cond, false);
    }
    let v_text = model.velocity(x.clone(), t, Guidance::CfgText);
    let v_img = (cfg.cfg_img > 1.0).then(|| model.velocity(x, t, Guidance::CfgImg));
    (guide(v_cond, v_text, v_img, cfg), true)
}

/// Integrates from `x_init` (pure noise at t = 1) to t = 0 with Euler steps
/// `x <- x - v (t_i - t_{i+1})`; `on_step` sees every step (progress, traces).
pub fn denoise<B: Backend, M: VelocityModel<B>>(
    model: &mut M,
    x_init: Tensor<B, 2>,
    cfg: &SamplerConfig,
    mut on_step: impl FnMut(usize, usize, &Step<B>),
) -> Tensor<B, 2> {
    let ts = schedule(cfg.num_timesteps, cfg.shift);
    let steps = ts.len().saturating_sub(1);
    let mut x = x_init;
    for i in 0..steps {
        let (t, dt) = (ts[i], ts[i] - ts[i + 1]);
        let (v, guided) = guided_velocity(model, x.clone(), t, cfg);
        let step = Step {
            t,
            guided,
            x: x.clone(),
            v: v.clone(),
        };
        on_step(i, steps, &step);
        x = x - v * dt;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    type B = burn_flex::Flex;

    #[test]
    fn schedule_matches_the_documented_values() {
        let ts = schedule(50, 3.0);
        for (i, want) in [
            (0, 1.0),
            (1, 0.9931),
            (2, 0.9860),
            (3, 0.9787),
            (46, 0.1636),
            (47, 0.1132),
            (48, 0.0588),
        ] {
            assert!((ts[i] - want).abs() < 1e-4, "ts[{i}] = {}", ts[i]);
        }
    }

    /// A velocity field whose flow reaches a known point: v = x - target, so each Euler step
    /// moves x towards `target` and guidance with equal branches changes nothing.
    struct Towards(Tensor<B, 2>, usize);
    impl VelocityModel<B> for Towards {
        fn velocity(&mut self, x: Tensor<B, 2>, _t: f32, _w: Guidance) -> Tensor<B, 2> {
            self.1 += 1;
            x - self.0.clone()
        }
    }

    #[test]
    fn denoise_runs_n_minus_one_steps_and_skips_unneeded_passes() {
        let dev = Default::default();
        let target = Tensor::<B, 2>::ones([3, 4], &dev);
        let mut m = Towards(target, 0);
        let cfg = SamplerConfig {
            num_timesteps: 10,
            ..SamplerConfig::text_to_image()
        };
        let mut seen = 0;
        denoise(&mut m, Tensor::zeros([3, 4], &dev), &cfg, |_, n, _| {
            seen += 1;
            assert_eq!(n, 9);
        });
        assert_eq!(seen, 9);
        // Guidance applies where 0.4 < t <= 1: 2 passes there, 1 elsewhere (cfg_img is 1).
        let ts = schedule(10, 3.0);
        let guided = ts[..9].iter().filter(|t| **t > 0.4).count();
        assert_eq!(m.1, 9 + guided);
    }
}
