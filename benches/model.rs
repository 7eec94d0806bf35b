//! Model throughput on the default CPU backend: one MoT layer, attention, flow forwards of the
//! tiny and a mid-size config, VAE decodes and a guided sampler step.
//!
//! ```sh
//! cargo bench --bench model
//! ```
//!
//! Throughput is reported in elements/s where one element is one FLOP, counted from the config
//! by `echo4o_model::flops` (so `Gelem/s` reads as GFLOP/s).

#[path = "common/device.rs"]
mod device;
use device::bench_device;

use std::time::Duration;

use criterion::{Criterion, Throughput};
use echo4o::model::autoencoder::{AutoEncoder, LatentCodec};
use echo4o::model::bagel::{Bagel, BagelVelocity, Context, Contexts, grid_position_ids};
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::burn::tensor::{Distribution, Tensor};
use echo4o::model::config::{AeConfig, BagelConfig, LlmConfig};
use echo4o::model::qwen2_mot::{
    AttentionMode, Expert, KvCache, Routing, attention, attention_reference,
};
use echo4o::model::sampling::{SamplerConfig, guided_velocity};
use echo4o::model::{BackendTask, flops};

/// A mid-size config: hidden 512, 8 heads (2 kv), intermediate 1536, `layers` layers.
fn mid(layers: usize) -> BagelConfig {
    let mut c = BagelConfig::tiny();
    c.llm = LlmConfig {
        vocab_size: 1000,
        hidden_size: 512,
        intermediate_size: 1536,
        num_hidden_layers: layers,
        num_attention_heads: 8,
        num_key_value_heads: 2,
        head_dim: Some(64),
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
    };
    c.max_latent_size = 32;
    c
}

struct Benches<'a>(&'a mut Criterion);

impl BackendTask for Benches<'_> {
    type Output = ();

    fn run<B: Backend>(self, dev: B::Device) {
        let c = self.0;
        let mut g = c.benchmark_group("model");
        g.sample_size(10)
            .measurement_time(Duration::from_secs(4))
            .warm_up_time(Duration::from_secs(1));

        // One MoT layer over 256 latent tokens (gen expert, full attention, no cache).
        let cfg = mid(1);
        let model = Bagel::<B>::init(&cfg, &dev);
        let x = Tensor::<B, 2>::random([256, 512], Distribution::Normal(0.0, 1.0), &dev);
        let positions = vec![0; 256];
        g.throughput(Throughput::Elements(
            (flops::linear_per_token(&cfg.llm) * 256.0 + flops::attention(&cfg.llm, 256, 256))
                as u64,
        ));
        g.bench_function("mot_layer/mid_256tok", |b| {
            b.iter(|| {
                let mut cache = KvCache::new();
                let out = model.language_model.forward_block(
                    x.clone(),
                    &Routing::all(256, Expert::Gen),
                    &positions,
                    1e6,
                    &mut cache,
                    &AttentionMode::Full,
                    false,
                    None,
                );
                B::sync(&dev).ok();
                out
            })
        });

        // Attention alone: 1024 queries over 1024 keys, 8 heads (2 kv), head dim 64.
        let q = Tensor::<B, 3>::random([1024, 8, 64], Distribution::Normal(0.0, 1.0), &dev);
        let k = Tensor::<B, 3>::random([1024, 2, 64], Distribution::Normal(0.0, 1.0), &dev);
        let v = k.clone();
        g.throughput(Throughput::Elements((4.0 * 1024.0 * 1024.0 * 512.0) as u64));
        g.bench_function("attention/1024x1024_h8_kv2_d64", |b| {
            b.iter(|| attention(q.clone(), k.clone(), v.clone(), None).into_data())
        });
        // The written-out path (heads expanded, scores materialised) it replaced at inference:
        // the in-process baseline of the line above.
        g.bench_function("attention_reference/1024x1024_h8_kv2_d64", |b| {
            b.iter(|| attention_reference(q.clone(), k.clone(), v.clone(), None).into_data())
        });
        // The shapes model's block: 64 latent tokens after a 24-token prompt, 4 heads (2 kv),
        // head dim 64, causal-free with the cache in front.
        let qs = Tensor::<B, 3>::random([64, 4, 64], Distribution::Normal(0.0, 1.0), &dev);
        let ks = Tensor::<B, 3>::random([88, 2, 64], Distribution::Normal(0.0, 1.0), &dev);
        g.throughput(Throughput::Elements((4.0 * 64.0 * 88.0 * 256.0) as u64));
        g.bench_function("attention/shapes_64x88_h4_kv2_d64", |b| {
            b.iter(|| attention(qs.clone(), ks.clone(), ks.clone(), None).into_data())
        });
        g.bench_function("attention_reference/shapes_64x88_h4_kv2_d64", |b| {
            b.iter(|| attention_reference(qs.clone(), ks.clone(), ks.clone(), None).into_data())
        });

        // Flow forwards: tiny (16 tokens, 7-token prompt), mid 4 layers (256 tokens, 16-token prompt).
        for (name, cfg, n, prompt) in [
            ("tiny_16tok", BagelConfig::tiny(), 16usize, 7usize),
            ("mid4_256tok", mid(4), 256, 16),
        ] {
            let model = Bagel::<B>::init(&cfg, &dev);
            let mut ctx = Context::default();
            let ids: Vec<u32> = (0..prompt as u32).collect();
            model.add_text(&mut ctx, &ids, &dev);
            let side = (n as f64).sqrt() as usize;
            let pos = grid_position_ids(side, side, cfg.max_latent_size);
            let x = Tensor::<B, 2>::random(
                [n, cfg.patch_latent_dim()],
                Distribution::Normal(0.0, 1.0),
                &dev,
            );
            g.throughput(Throughput::Elements(
                flops::flow_forward(&cfg, n, prompt) as u64
            ));
            g.bench_function(format!("flow_forward/{name}"), |b| {
                b.iter(|| {
                    model
                        .velocity(&mut ctx, x.clone(), 0.5, &pos, [998, 999], None)
                        .into_data()
                })
            });
        }

        // A full sampler step with text CFG (2 passes) on the mid config.
        let cfg = mid(4);
        let model = Bagel::<B>::init(&cfg, &dev);
        let mut contexts = Contexts::default();
        model.add_text(&mut contexts.cond, &(0..16).collect::<Vec<u32>>(), &dev);
        contexts.cfg_img = contexts.cond.clone();
        let pos = grid_position_ids(16, 16, cfg.max_latent_size);
        let x = Tensor::<B, 2>::random([256, 64], Distribution::Normal(0.0, 1.0), &dev);
        let sampler = SamplerConfig::text_to_image();
        g.throughput(Throughput::Elements(
            (flops::flow_forward(&cfg, 256, 16) + flops::flow_forward(&cfg, 256, 0)) as u64,
        ));
        g.bench_function("sampler_step/mid4_256tok_cfg", |b| {
            b.iter(|| {
                let mut vm = BagelVelocity {
                    model: &model,
                    contexts: &mut contexts,
                    pos_ids: pos.clone(),
                    markers: [998, 999],
                };
                let (v, guided) = guided_velocity(&mut vm, x.clone(), 0.9, &sampler);
                assert!(guided);
                (x.clone() - v * 0.02).into_data()
            })
        });

        // VAE decodes: the tiny AE at 64x64 px, FLUX's AE at 64x64 px.
        for (name, ae_cfg) in [
            ("tiny_64px", BagelConfig::tiny().vae),
            ("flux_64px", AeConfig::flux()),
        ] {
            let ae = AutoEncoder::<B>::init(&ae_cfg, &dev);
            let d = ae.downsample();
            let z = Tensor::<B, 4>::random(
                [1, ae_cfg.z_channels, 64 / d, 64 / d],
                Distribution::Normal(0.0, 1.0),
                &dev,
            );
            g.throughput(Throughput::Elements(
                flops::vae_decode(&ae_cfg, 64, 64) as u64
            ));
            g.bench_function(format!("vae_decode/{name}"), |b| {
                b.iter(|| ae.decode(z.clone()).into_data())
            });
        }
        g.finish();
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let device = bench_device();
    if let Err(e) = device.run(Benches(&mut c)) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    c.final_summary();
}
