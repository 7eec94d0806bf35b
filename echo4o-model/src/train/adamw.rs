//! AdamW in one pass over each parameter on the CPU backends: burn's `AdamW` takes a dozen
//! tensor operations per parameter and step (moments, bias corrections, square root, decay),
//! each a full read and write of the tensor; this computes the same values, operation for
//! operation in the same order, in one read of the parameter, its gradient and its moments.
//!
//! The state is burn's `AdamWState`, so optimiser records saved by either load into the other,
//! and on any backend the kernel does not serve (CUDA, bf16) the step is burn's own.

use burn::optim::LearningRate;
use burn::optim::{AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, SimpleOptimizer};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::cpu::fused::serves;
use crate::cpu::host::HostF32;

/// AdamW's hyper-parameters (no AMSGrad, no cautious weight decay: what the trainer uses).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Added to the root of the second moment.
    pub epsilon: f32,
    /// Decoupled weight decay (multiplied by the learning rate).
    pub weight_decay: f32,
}

/// burn's AdamW with its update fused on the CPU (see the module docs).
#[derive(Clone)]
pub struct FusedAdamW {
    settings: AdamWSettings,
    burn: AdamW,
}

impl FusedAdamW {
    /// The optimiser for `settings`.
    pub fn new(settings: AdamWSettings) -> Self {
        let burn = AdamWConfig::new()
            .with_beta_1(settings.beta_1)
            .with_beta_2(settings.beta_2)
            .with_epsilon(settings.epsilon)
            .with_weight_decay(settings.weight_decay)
            .build();
        FusedAdamW { settings, burn }
    }
}

/// One AdamW step of a parameter on the host: `p`, its gradient `g`, its moments from the
/// previous step (`None` on the first), the step number `time` (from 1). Returns the new
/// parameter and moments. Each value is computed as burn's tensor operations compute it.
fn step_host(
    s: AdamWSettings,
    lr: LearningRate,
    p: &[f32],
    g: &[f32],
    moments: Option<(&[f32], &[f32])>,
    time: i32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c1 = 1f32 - s.beta_1.powi(time);
    let c2 = 1f32 - s.beta_2.powi(time);
    let decay_rate = lr * f64::from(s.weight_decay);
    let keep = (1.0 - decay_rate) as f32;
    let lr = lr as f32;
    let n = p.len();
    let (mut p2, mut m2, mut v2) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
    pulp::Arch::new().dispatch(StepHost {
        s,
        p,
        g,
        moments,
        keep: (decay_rate != 0.0).then_some(keep),
        lr,
        c: (c1, c2),
        out: (&mut p2, &mut m2, &mut v2),
    });
    (p2, m2, v2)
}

/// The loop of [`step_host`] as a `WithSimd` operation, so that it compiles with the CPU's SIMD
/// features (a closure passed to `dispatch` need not be inlined into them).
struct StepHost<'a> {
    s: AdamWSettings,
    p: &'a [f32],
    g: &'a [f32],
    moments: Option<(&'a [f32], &'a [f32])>,
    /// `1 - lr * weight_decay`, when there is decay.
    keep: Option<f32>,
    lr: f32,
    /// The bias corrections `1 - beta^t`.
    c: (f32, f32),
    out: (&'a mut [f32], &'a mut [f32], &'a mut [f32]),
}

impl pulp::WithSimd for StepHost<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let Self {
            s,
            p,
            g,
            moments,
            keep,
            lr,
            c: (c1, c2),
            out: (p2, m2, v2),
        } = self;
        let (f1, f2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
        for i in 0..p.len() {
            let gi = g[i];
            let (m, v) = match moments {
                Some((m, v)) => (m[i] * s.beta_1 + gi * f1, v[i] * s.beta_2 + gi * gi * f2),
                None => (gi * f1, gi * gi * f2),
            };
            let delta = (m / c1) / ((v / c2).sqrt() + s.epsilon);
            let decayed = match keep {
                Some(k) => p[i] * k,
                None => p[i],
            };
            p2[i] = decayed - delta * lr;
            m2[i] = m;
            v2[i] = v;
        }
    }
}

impl<B: Backend> SimpleOptimizer<B> for FusedAdamW {
    type State<const D: usize> = AdamWState<B, D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<B, D>,
        grad: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let device = tensor.device();
        let mut dtypes = vec![tensor.dtype(), grad.dtype()];
        if let Some(s) = &state {
            dtypes.extend([s.momentum.moment_1.dtype(), s.momentum.moment_2.dtype()]);
        }
        let fits = state.as_ref().is_none_or(|s| {
            s.momentum.max_moment_2.is_none()
                && s.momentum.moment_1.dims() == tensor.dims()
                && s.momentum.moment_2.dims() == tensor.dims()
        }) && grad.dims() == tensor.dims();
        if !fits || !serves::<B>(&device, &dtypes) {
            return self.burn.step(lr, tensor, grad, state);
        }
        let dims = tensor.dims();
        let time = state.as_ref().map_or(1, |s| s.momentum.time + 1);
        let (ph, gh) = (HostF32::new(tensor), HostF32::new(grad));
        let moments = state.map(|s| {
            (
                HostF32::new(s.momentum.moment_1),
                HostF32::new(s.momentum.moment_2),
            )
        });
        let host_moments = match &moments {
            None => Some(None),
            Some((m, v)) => m.as_f32().zip(v.as_f32()).map(Some),
        };
        let (Some(p), Some(g), Some(mv)) = (ph.as_f32(), gh.as_f32(), host_moments) else {
            unreachable!("f32 tensors of a CPU backend read as f32 slices")
        };
        let (p2, m2, v2) = step_host(self.settings, lr, p, g, mv, time as i32);
        let t = |v: Vec<f32>| Tensor::<B, D>::from_data(TensorData::new(v, dims), &device);
        let state = AdamWState {
            momentum: AdaptiveMomentumState::new(time, t(m2), t(v2)),
        };
        (t(p2), Some(state))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        <AdamW as SimpleOptimizer<B>>::to_device(state, device)
    }
}

#[cfg(all(test, feature = "flex"))]
#[allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn_flex::Flex;

    /// Three steps of the fused optimiser and of burn's on the same parameter and gradients give
    /// the same bits, with and without weight decay.
    #[test]
    fn fused_steps_are_burns_steps_bit_for_bit() {
        let dev = Default::default();
        for weight_decay in [0.0, 0.1] {
            let settings = AdamWSettings {
                beta_1: 0.9,
                beta_2: 0.95,
                epsilon: 1e-8,
                weight_decay,
            };
            let fused = FusedAdamW::new(settings);
            let r = || Tensor::<Flex, 2>::random([7, 13], Distribution::Normal(0.0, 1.0), &dev);
            let mut pa = r();
            let mut pb = pa.clone();
            let (mut sa, mut sb) = (None, None);
            for step in 0..3 {
                let g = r();
                let lr = 1e-3 * (step + 1) as f64;
                (pa, sa) = SimpleOptimizer::<Flex>::step(&fused, lr, pa, g.clone(), sa);
                (pb, sb) = SimpleOptimizer::<Flex>::step(&fused.burn, lr, pb, g, sb);
                let same = |a: Tensor<Flex, 2>, b: Tensor<Flex, 2>| {
                    a.into_data().to_vec::<f32>().unwrap() == b.into_data().to_vec::<f32>().unwrap()
                };
                assert!(
                    same(pa.clone(), pb.clone()),
                    "decay {weight_decay} step {step}: parameter"
                );
                let (ma, mb) = (
                    &sa.as_ref().unwrap().momentum,
                    &sb.as_ref().unwrap().momentum,
                );
                assert_eq!(ma.time, mb.time);
                assert!(
                    same(ma.moment_1.clone(), mb.moment_1.clone()),
                    "first moment"
                );
                assert!(
                    same(ma.moment_2.clone(), mb.moment_2.clone()),
                    "second moment"
                );
            }
        }
    }
}
