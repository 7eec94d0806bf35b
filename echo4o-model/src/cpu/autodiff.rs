//! The kernels as operations of burn's autodiff over Flex, each with its own backward pass, so
//! that training records one node where burn's graph records a dozen per segment, head layout
//! and expert (each a copy forward and one or two backward).
//!
//! Model code is generic over the backend; [`as_flex_autodiff`] recognises `Autodiff<Flex>` by
//! its type (a safe downcast) and the callers in `fused` take burn's graph for anything else.

use std::any::Any;
use std::sync::Arc;

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::tensor::TensorMetadata;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
use burn_flex::{Flex, FlexTensor};

use super::segments::{self, Heads};
use super::{rows, rows_backward};
use crate::packing::PackedSegments;

/// A float tensor of `Autodiff<Flex>`: Flex's tensor and its node in the graph.
type AdTensor = FloatTensor<Autodiff<Flex>>;

/// `t` as a `U`, when `T` is `U` (a type check at run time, no conversion).
fn cast<T: 'static, U: 'static>(t: T) -> Result<U, T> {
    let boxed: Box<dyn Any> = Box::new(t);
    match boxed.downcast::<U>() {
        Ok(u) => Ok(*u),
        Err(boxed) => match boxed.downcast::<T>() {
            Ok(t) => Err(*t),
            Err(_) => unreachable!("the box holds the T it was made from"),
        },
    }
}

/// `x`'s autodiff tensor over Flex, when `B` is `Autodiff<Flex>` and `x` is f32 (else `x`
/// back, untouched).
pub(crate) fn as_flex_autodiff<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> Result<AdTensor, Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    match x.into_primitive() {
        TensorPrimitive::Float(p) => cast::<B::FloatTensorPrimitive, AdTensor>(p)
            .map_err(|p| Tensor::from_primitive(TensorPrimitive::Float(p))),
        other => Err(Tensor::from_primitive(other)),
    }
}

/// The tensor of `B` that `t` is, `B` being `Autodiff<Flex>` (checked by the caller through
/// [`as_flex_autodiff`]).
pub(crate) fn from_flex_autodiff<B: Backend, const D: usize>(t: AdTensor) -> Tensor<B, D> {
    match cast::<AdTensor, B::FloatTensorPrimitive>(t) {
        Ok(p) => Tensor::from_primitive(TensorPrimitive::Float(p)),
        Err(_) => unreachable!("callers hold inputs of Autodiff<Flex>, so B is Autodiff<Flex>"),
    }
}

/// `t` in row-major order (a view is copied once).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The f32 values of a contiguous tensor made by [`contiguous`].
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .unwrap_or_else(|| unreachable!("made contiguous f32 before it is read"))
}

fn flex(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[derive(Debug)]
struct SegmentAttention;

/// What the backward pass of [`segment_attention`] reads.
#[derive(Debug, Clone)]
struct SegmentAttentionState {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    out: Arc<Vec<f32>>,
    probs: Arc<Vec<Vec<f32>>>,
    segments: Arc<PackedSegments>,
    heads: Heads,
}

impl Backward<Flex, 3> for SegmentAttention {
    type State = SegmentAttentionState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let s = ops.state;
        let d_out = contiguous(grads.consume::<Flex>(&ops.node));
        let g = segments::backward(
            (values(&s.q), values(&s.k), values(&s.v)),
            (&s.out, &s.probs),
            values(&d_out),
            &s.segments,
            s.heads,
        );
        let [pq, pk, pv] = ops.parents;
        for (parent, grad, like) in [(pq, g.q, &s.q), (pk, g.k, &s.k), (pv, g.v, &s.v)] {
            if let Some(node) = parent {
                grads.register::<Flex>(node.id, flex(grad, like.shape().to_vec()));
            }
        }
    }
}

/// Attention of packed segments (`q` `[rows, heads, hd]`, `k`, `v` `[rows, kv_heads, hd]`) as
/// one autodiff operation: `[rows, heads * hd]`.
pub(crate) fn segment_attention(
    q: AdTensor,
    k: AdTensor,
    v: AdTensor,
    segments: &Arc<PackedSegments>,
) -> AdTensor {
    let (qp, kp, vp) = (
        contiguous(q.primitive.clone()),
        contiguous(k.primitive.clone()),
        contiguous(v.primitive.clone()),
    );
    let (qs, ks) = (qp.shape().dims::<3>(), kp.shape().dims::<3>());
    let heads = Heads {
        heads: qs[1],
        kv_heads: ks[1],
        head_dim: qs[2],
    };
    let fwd = segments::forward(values(&qp), values(&kp), values(&vp), segments, heads);
    let out = flex(fwd.out.clone(), vec![qs[0], qs[1] * qs[2]]);
    let state = SegmentAttentionState {
        q: qp,
        k: kp,
        v: vp,
        out: Arc::new(fwd.out),
        probs: Arc::new(fwd.probs),
        segments: Arc::clone(segments),
        heads,
    };
    finish(SegmentAttention, [&q, &k, &v], state, out)
}

/// A routed RMSNorm (optionally followed by RoPE) as one autodiff operation: parents `x` and
/// the `N - 1` distinct gammas the runs index.
#[derive(Debug)]
struct RoutedNorm<const N: usize>;

/// What the backward pass of [`routed_norm`] reads.
#[derive(Debug, Clone)]
struct RoutedNormState {
    x: FlexTensor,
    gammas: Vec<FlexTensor>,
    /// `(tokens, index into gammas)`.
    runs: Vec<(usize, usize)>,
    rows_per_token: usize,
    eps: f32,
    rope: Option<(FlexTensor, FlexTensor)>,
}

impl<const N: usize> Backward<Flex, N> for RoutedNorm<N> {
    type State = RoutedNormState;

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let s = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let gammas: Vec<&[f32]> = s.gammas.iter().map(values).collect();
        let g = rows_backward::rms_norm_backward(
            values(&s.x),
            values(&dy),
            rows_backward::RoutedGammas {
                gammas: &gammas,
                runs: &s.runs,
                rows_per_token: s.rows_per_token,
            },
            s.eps,
            s.rope.as_ref().map(|(c, si)| (values(c), values(si))),
        );
        let mut parents = ops.parents.into_iter();
        if let Some(Some(node)) = parents.next() {
            grads.register::<Flex>(node.id, flex(g.x, s.x.shape().to_vec()));
        }
        for (parent, dgamma) in parents.zip(g.gammas) {
            if let Some(node) = parent {
                let width = dgamma.len();
                grads.register::<Flex>(node.id, flex(dgamma, vec![width]));
            }
        }
    }
}

/// A routed RMSNorm over the last axis of `x` (tokens along the first), each run of tokens
/// `(tokens, gamma)` its own weights, followed by RoPE when `rope` holds the tables
/// `[tokens, head_dim]` (`x` then `[tokens, heads, head_dim]`): `Ok` on `Autodiff<Flex>` in f32
/// with at most two distinct gammas of `x`'s width, `Err(x)` untouched otherwise.
pub(crate) fn routed_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    runs: &[(usize, &burn::nn::RmsNorm<B>)],
    rope: Option<(&Tensor<B, 2>, &Tensor<B, 2>)>,
) -> Result<Tensor<B, D>, Tensor<B, D>> {
    let dims = x.dims();
    // Distinct norms by identity, each run an index into them.
    let mut norms: Vec<&burn::nn::RmsNorm<B>> = Vec::new();
    let mut idx_runs = Vec::with_capacity(runs.len());
    for &(n, norm) in runs {
        let i = match norms.iter().position(|m| std::ptr::eq(*m, norm)) {
            Some(i) => i,
            None => {
                norms.push(norm);
                norms.len() - 1
            }
        };
        idx_runs.push((n, i));
    }
    let width = dims[D - 1];
    let fits = D >= 2
        && (1..=2).contains(&norms.len())
        && runs.iter().map(|r| r.0).sum::<usize>() == dims[0]
        && norms
            .iter()
            .all(|m| m.gamma.dims() == [width] && m.epsilon == norms[0].epsilon)
        && rope.is_none_or(|(c, s)| D == 3 && c.dims() == [dims[0], width] && s.dims() == c.dims());
    if !fits {
        return Err(x);
    }
    let x = as_flex_autodiff(x)?;
    let mut gammas = Vec::with_capacity(norms.len());
    for m in &norms {
        match as_flex_autodiff(m.gamma.val()) {
            Ok(g) => gammas.push(g),
            Err(_) => return Err(from_flex_autodiff(x)),
        }
    }
    let rope = match rope.map(|(c, s)| (as_flex_autodiff(c.clone()), as_flex_autodiff(s.clone()))) {
        None => None,
        Some((Ok(c), Ok(s))) => Some((contiguous(c.primitive), contiguous(s.primitive))),
        Some(_) => return Err(from_flex_autodiff(x)),
    };
    let eps = norms[0].epsilon as f32;
    let rows_per_token = dims[1..D - 1].iter().product::<usize>();
    let xp = contiguous(x.primitive.clone());
    let gp: Vec<FlexTensor> = gammas
        .iter()
        .map(|g| contiguous(g.primitive.clone()))
        .collect();
    let host_runs: Vec<(usize, &[f32])> =
        idx_runs.iter().map(|&(n, i)| (n, values(&gp[i]))).collect();
    let out = match &rope {
        Some((c, s)) => rows::norm_rope(
            values(&xp),
            dims[1],
            width,
            values(c),
            values(s),
            &host_runs,
            eps,
        ),
        None => rows::rms_norm(values(&xp), &host_runs, rows_per_token, eps),
    };
    let out = flex(out, dims.to_vec());
    let state = RoutedNormState {
        x: xp,
        gammas: gp,
        runs: idx_runs,
        rows_per_token,
        eps,
        rope,
    };
    let ad = match gammas.as_slice() {
        [g] => finish(RoutedNorm::<2>, [&x, g], state, out),
        [g0, g1] => finish(RoutedNorm::<3>, [&x, g0, g1], state, out),
        _ => unreachable!("one or two gammas, checked above"),
    };
    Ok(from_flex_autodiff(ad))
}

/// Records `op` over `parents` with `state` for its backward pass, `out` its forward value.
fn finish<O, S, const N: usize>(
    op: O,
    parents: [&AdTensor; N],
    state: S,
    out: FlexTensor,
) -> AdTensor
where
    O: Backward<Flex, N, State = S>,
    S: Clone + Send + std::fmt::Debug + 'static,
{
    match op
        .prepare::<NoCheckpointing>(parents.map(|p| p.node.clone()))
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

#[derive(Debug)]
struct SiluMul;

/// `gate` and `up`, contiguous.
#[derive(Debug, Clone)]
struct SiluMulState(FlexTensor, FlexTensor);

impl Backward<Flex, 2> for SiluMul {
    type State = SiluMulState;

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let SiluMulState(gate, up) = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let (dg, du) = rows_backward::silu_mul_backward(values(&gate), values(&up), values(&dy));
        let [pg, pu] = ops.parents;
        let shape = gate.shape().to_vec();
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, flex(dg, shape.clone()));
        }
        if let Some(node) = pu {
            grads.register::<Flex>(node.id, flex(du, shape));
        }
    }
}

/// `silu(gate) * up` as one autodiff operation: `Ok` on `Autodiff<Flex>` in f32, the inputs
/// back untouched otherwise.
pub(crate) fn silu_mul<B: Backend, const D: usize>(
    gate: Tensor<B, D>,
    up: Tensor<B, D>,
) -> Result<Tensor<B, D>, (Tensor<B, D>, Tensor<B, D>)> {
    if gate.dims() != up.dims() {
        return Err((gate, up));
    }
    let dims = gate.dims();
    let (gate, up) = match (as_flex_autodiff(gate), as_flex_autodiff(up)) {
        (Ok(g), Ok(u)) => (g, u),
        (g, u) => {
            return Err((
                g.map_or_else(|t| t, from_flex_autodiff),
                u.map_or_else(|t| t, from_flex_autodiff),
            ));
        }
    };
    let (gp, up_) = (
        contiguous(gate.primitive.clone()),
        contiguous(up.primitive.clone()),
    );
    let out = flex(rows::silu_mul(values(&gp), values(&up_)), dims.to_vec());
    let ad = finish(SiluMul, [&gate, &up], SiluMulState(gp, up_), out);
    Ok(from_flex_autodiff(ad))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
mod tests {
    use burn::backend::Autodiff;
    use burn::nn::{RmsNorm, RmsNormConfig};
    use burn::tensor::{Distribution, Tensor};
    use burn_flex::Flex;

    use crate::cpu::fused;
    use crate::qwen2_mot::{apply_rope, rope_tables};

    type Ad = Autodiff<Flex>;

    fn random<const D: usize>(shape: [usize; D]) -> Tensor<Ad, D> {
        Tensor::from_inner(Tensor::<Flex, D>::random(
            shape,
            Distribution::Normal(0.0, 1.0),
            &Default::default(),
        ))
    }

    fn max_diff<const D: usize>(a: Tensor<Flex, D>, b: Tensor<Flex, D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    fn norm(width: usize, seed: f64) -> RmsNorm<Ad> {
        let mut n = RmsNormConfig::new(width)
            .with_epsilon(1e-6)
            .init(&Default::default());
        let gamma = random([width]).inner() * seed + 1.0;
        n.gamma = burn::module::Param::from_tensor(Tensor::from_inner(gamma).require_grad());
        n
    }

    /// Routed RMSNorm and q/k norm + RoPE as autodiff operations against burn's graph of the same
    /// computation: outputs and the gradients of the input and of both gammas.
    #[test]
    fn routed_norms_and_their_gradients_match_burns_graph() {
        let (tokens, heads, d) = (9, 3, 16);
        let (und, gen_) = (norm(d, 0.3), norm(d, 0.7));
        let runs = [(2, &und), (5, &gen_), (2, &und)];
        let (cos, sin) =
            rope_tables::<Ad>(&[0, 1, 2, 3, 3, 3, 3, 4, 5], d, 1e4, &Default::default());
        let x0 = random([tokens, heads, d]).inner();
        let w = random([tokens, heads, d]);
        for with_rope in [false, true] {
            let run = |fused_path: bool| {
                let x = Tensor::<Ad, 3>::from_inner(x0.clone()).require_grad();
                let reference = |x: Tensor<Ad, 3>| {
                    let mut at = 0;
                    let parts = runs
                        .iter()
                        .map(|(n, m)| {
                            let part = m.forward(x.clone().narrow(0, at, *n));
                            at += n;
                            part
                        })
                        .collect();
                    let y = Tensor::cat(parts, 0);
                    if with_rope {
                        apply_rope(y, &cos, &sin)
                    } else {
                        y
                    }
                };
                let y = if !fused_path {
                    reference(x.clone())
                } else if with_rope {
                    fused::norm_rope(x.clone(), &runs, &cos, &sin, |_| {
                        panic!("the kernel serves")
                    })
                } else {
                    fused::rms_norm(x.clone(), &runs, |_| panic!("the kernel serves"))
                };
                let grads = (y.clone() * w.clone()).sum().backward();
                (
                    y.inner(),
                    x.grad(&grads).unwrap(),
                    und.gamma.val().grad(&grads).unwrap(),
                    gen_.gamma.val().grad(&grads).unwrap(),
                )
            };
            let (a, b) = (run(true), run(false));
            assert!(max_diff(a.0, b.0) < 1e-5, "rope {with_rope}: outputs");
            assert!(max_diff(a.1, b.1) < 1e-4, "rope {with_rope}: dx");
            assert!(max_diff(a.2, b.2) < 1e-4, "rope {with_rope}: d gamma und");
            assert!(max_diff(a.3, b.3) < 1e-4, "rope {with_rope}: d gamma gen");
        }
    }

    #[test]
    fn silu_mul_and_its_gradients_match_burns_graph() {
        let (g0, u0) = (random([33, 20]).inner(), random([33, 20]).inner());
        let w = random([33, 20]);
        let run = |fused_path: bool| {
            let g = Tensor::<Ad, 2>::from_inner(g0.clone()).require_grad();
            let u = Tensor::<Ad, 2>::from_inner(u0.clone()).require_grad();
            let y = if fused_path {
                fused::silu_mul(g.clone(), u.clone())
            } else {
                burn::tensor::activation::silu(g.clone()) * u.clone()
            };
            let grads = (y.clone() * w.clone()).sum().backward();
            (y.inner(), g.grad(&grads).unwrap(), u.grad(&grads).unwrap())
        };
        let (a, b) = (run(true), run(false));
        assert!(max_diff(a.0, b.0) < 1e-5, "outputs");
        assert!(max_diff(a.1, b.1) < 1e-5, "d gate");
        assert!(max_diff(a.2, b.2) < 1e-5, "d up");
    }
}
