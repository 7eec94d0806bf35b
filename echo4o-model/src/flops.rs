//! FLOP counts from a configuration, for throughput figures (GFLOP/s) in benches and examples.
//! A multiply-add counts as 2 FLOPs; norms, activations and softmax are left out (they are a few
//! percent of the total at BAGEL's sizes).

use crate::config::{AeConfig, BagelConfig, LlmConfig};

/// Linear-layer FLOPs of one token through the decoder (one expert per token; BAGEL-7B-MoT:
/// 13.05 GFLOP).
///
/// ```
/// let c = echo4o_model::BagelConfig::bagel_7b_mot();
/// let g = echo4o_model::flops::linear_per_token(&c.llm) / 1e9;
/// assert!((g - 13.05).abs() < 0.01, "{g}");
/// ```
pub fn linear_per_token(c: &LlmConfig) -> f64 {
    let h = c.hidden_size as f64;
    let q = (c.num_attention_heads * c.head_dim()) as f64;
    let kv = (c.num_key_value_heads * c.head_dim()) as f64;
    let i = c.intermediate_size as f64;
    2.0 * c.num_hidden_layers as f64 * (h * q + 2.0 * h * kv + q * h + 3.0 * h * i)
}

/// Attention FLOPs (scores and weighted sum) of `nq` queries over `nk` keys, all layers.
pub fn attention(c: &LlmConfig, nq: usize, nk: usize) -> f64 {
    let q = (c.num_attention_heads * c.head_dim()) as f64;
    4.0 * c.num_hidden_layers as f64 * nq as f64 * nk as f64 * q
}

/// One flow forward over `n` latent tokens with a context of `ctx` tokens: the block is `n + 2`
/// tokens (markers), plus `vae2llm`, `llm2vae` and the time MLP.
pub fn flow_forward(c: &BagelConfig, n: usize, ctx: usize) -> f64 {
    let nq = n + 2;
    let h = c.llm.hidden_size as f64;
    let p = c.patch_latent_dim() as f64;
    nq as f64 * linear_per_token(&c.llm)
        + attention(&c.llm, nq, ctx + nq)
        + 2.0 * 2.0 * n as f64 * h * p
        + 2.0 * (256.0 * h + h * h)
}

/// Conv FLOPs of the autoencoder's decoder for a `height x width` output.
pub fn vae_decode(c: &AeConfig, height: usize, width: usize) -> f64 {
    let levels = c.ch_mult.len();
    let d = 1usize << (levels - 1);
    let conv =
        |cin: usize, cout: usize, k: usize, hw: usize| 2.0 * (cin * cout * k * k * hw) as f64;
    let mut block_in = c.ch * c.ch_mult[levels - 1];
    let mut hw = (height / d) * (width / d);
    let mut total = conv(c.z_channels, block_in, 3, hw);
    // mid: two resnets (two 3x3 convs each) and attention (4 1x1 convs + hw^2 c products).
    total += 4.0 * conv(block_in, block_in, 3, hw) + 4.0 * conv(block_in, block_in, 1, hw);
    total += 4.0 * (hw * hw * block_in) as f64;
    for i in (0..levels).rev() {
        let out = c.ch * c.ch_mult[i];
        for _ in 0..=c.num_res_blocks {
            total += conv(block_in, out, 3, hw) + conv(out, out, 3, hw);
            if block_in != out {
                total += conv(block_in, out, 1, hw);
            }
            block_in = out;
        }
        if i != 0 {
            hw *= 4;
            total += conv(block_in, block_in, 3, hw);
        }
    }
    total + conv(block_in, c.out_ch, 3, hw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_size_flow_forward_matches_the_spec_estimate() {
        // BAGEL.md §7: ~60.4 TFLOP per forward at 1024^2 with a ~64-token prompt; 13.85 at 512^2.
        let c = BagelConfig::bagel_7b_mot();
        let t1024 = flow_forward(&c, 4096, 64) / 1e12;
        assert!((t1024 - 60.4).abs() < 1.0, "{t1024}");
        let t512 = flow_forward(&c, 1024, 64) / 1e12;
        assert!((t512 - 13.85).abs() < 0.5, "{t512}");
        let vae = vae_decode(&AeConfig::flux(), 1024, 1024) / 1e12;
        assert!(vae > 5.0 && vae < 15.0, "{vae}");
    }
}
