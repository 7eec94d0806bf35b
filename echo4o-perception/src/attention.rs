//! PyTorch's `nn.MultiheadAttention` (one packed input projection, then `out_proj`), shared by
//! open_clip's towers and Mask2Former's decoder, with PyTorch's parameter names.

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};

/// `nn.MultiheadAttention` with `batch_first` tensors.
#[derive(Module, Debug)]
pub struct MultiheadAttention<B: Backend> {
    /// `[3 * width, width]`, PyTorch layout (rows: q, k, v).
    pub in_proj_weight: Param<Tensor<B, 2>>,
    /// `[3 * width]`.
    pub in_proj_bias: Param<Tensor<B, 1>>,
    /// Output projection.
    pub out_proj: Linear<B>,
    heads: usize,
}

impl<B: Backend> MultiheadAttention<B> {
    /// Zero-initialised (weights are loaded from a checkpoint).
    pub fn init(width: usize, heads: usize, device: &B::Device) -> Self {
        MultiheadAttention {
            in_proj_weight: Param::from_tensor(Tensor::zeros([3 * width, width], device)),
            in_proj_bias: Param::from_tensor(Tensor::zeros([3 * width], device)),
            out_proj: LinearConfig::new(width, width).init(device),
            heads,
        }
    }

    /// The `i`-th of the packed projections (0: q, 1: k, 2: v) of `x`, as `[b, heads, n, d]`.
    fn project(&self, x: Tensor<B, 3>, i: usize) -> Tensor<B, 4> {
        let [b, n, w] = x.dims();
        let weight = self.in_proj_weight.val().narrow(0, i * w, w);
        let bias = self.in_proj_bias.val().narrow(0, i * w, w);
        (x.matmul(weight.transpose().unsqueeze()) + bias.unsqueeze::<3>())
            .reshape([b, n, self.heads, w / self.heads])
            .swap_dims(1, 2)
    }

    /// Self-attention over `x` (`[b, n, w]`), `bias` added to the scores (`-inf` where masked,
    /// broadcast over `[b, heads, n, n]`).
    pub fn forward_self(&self, x: Tensor<B, 3>, bias: Option<Tensor<B, 4>>) -> Tensor<B, 3> {
        self.forward(x.clone(), x.clone(), x, bias)
    }

    /// `softmax(q k^T / sqrt(d) + bias) v`, projected: `query` `[b, nq, w]`, `key` and `value`
    /// `[b, nk, w]`; `bias` broadcasts over `[b, heads, nq, nk]`.
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        key: Tensor<B, 3>,
        value: Tensor<B, 3>,
        bias: Option<Tensor<B, 4>>,
    ) -> Tensor<B, 3> {
        let [b, nq, w] = query.dims();
        let d = w / self.heads;
        let q = self.project(query, 0) * (1.0 / (d as f64).sqrt());
        let k = self.project(key, 1);
        let v = self.project(value, 2);
        let mut scores = q.matmul(k.transpose());
        if let Some(bias) = bias {
            scores = scores + bias;
        }
        let out = softmax(scores, 3)
            .matmul(v)
            .swap_dims(1, 2)
            .reshape([b, nq, w]);
        self.out_proj.forward(out)
    }
}

/// The additive form of a boolean attention mask (`true`: do not attend), as PyTorch turns one
/// into `-inf` scores.
pub fn mask_to_bias<B: Backend>(mask: Tensor<B, 4, Bool>) -> Tensor<B, 4> {
    let device = mask.device();
    Tensor::zeros(mask.dims(), &device).mask_fill(mask, f32::NEG_INFINITY)
}
