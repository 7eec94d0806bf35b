//! Parity checks against golden vectors in the official format: a case is a folder holding
//! `{case}.config.json`, `{case}.weights.safetensors` (official keys), optionally
//! `{case}.vae.safetensors`, and `{case}.cases.safetensors` (inputs and the official outputs).
//!
//! Three kinds of case are understood, told apart by their config: text-to-image (`llm_config`
//! without `vit_config`), FLUX autoencoder (`params`), and multi-reference generation
//! (`llm_config` with `vit_config`). [`run_case`] recomputes every output it knows from the
//! inputs and reports the error per tensor; the tests and the `parity` example both use it.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use echo4o_core::image;
use echo4o_core::resize::ResizeRule;
use safetensors::{Dtype, SafeTensors};

use crate::Error;
use crate::autoencoder::{AutoEncoder, LatentCodec};
use crate::bagel::{
    Bagel, BagelVelocity, Context, Contexts, FlowTrace, grid_position_ids, patchify, unpatchify,
};
use crate::config::{AeConfig, BagelConfig};
use crate::ops::{cast_params, default_float_dtype};
use crate::sampling::{Renorm, SamplerConfig, denoise, guide};
use crate::weights::{BAGEL_REMAPS, NORM_REMAPS, load_safetensors};

pub use crate::pixels::{chw_tensor, decode_tokens, to_u8};

/// Default tolerance for f32 ports: `|got - want| <= atol + rtol * |want|`.
pub const F32_TOLERANCE: (f64, f64) = (1e-4, 1e-4);

/// A golden tensor file held in memory.
pub struct GoldenFile {
    path: String,
    tensors: HashMap<String, (Vec<usize>, Dtype, Vec<u8>)>,
}

impl GoldenFile {
    /// Reads a safetensors file.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let bytes =
            std::fs::read(path).map_err(|e| Error::Core(echo4o_core::Error::io(path, e)))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| Error::Weights {
            path: path.display().to_string(),
            details: format!("  not a safetensors file: {e}"),
        })?;
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(name, v)| (name, (v.shape().to_vec(), v.dtype(), v.data().to_vec())))
            .collect();
        Ok(GoldenFile {
            path: path.display().to_string(),
            tensors,
        })
    }

    fn get(&self, name: &str, dtype: Dtype) -> Result<(&[usize], &[u8]), Error> {
        match self.tensors.get(name) {
            Some((shape, d, data)) if *d == dtype => Ok((shape, data)),
            Some((_, d, _)) => Err(self.err(format!("{name}: dtype {d:?}, expected {dtype:?}"))),
            None => Err(self.err(format!("{name}: missing"))),
        }
    }

    fn err(&self, message: String) -> Error {
        Error::Weights {
            path: self.path.clone(),
            details: format!("  {message}"),
        }
    }

    /// Whether the file has `name`.
    pub fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// An f32 tensor as data.
    pub fn f32_data(&self, name: &str) -> Result<TensorData, Error> {
        let (shape, bytes) = self.get(name, Dtype::F32)?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(TensorData::new(values, shape.to_vec()))
    }

    /// An f32 tensor on a device (f32 whatever the backend's default dtype: model code casts to
    /// its own).
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        name: &str,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, Error> {
        let data = self.f32_data(name)?;
        if data.shape.len() != D {
            return Err(self.err(format!("{name}: rank {}, expected {D}", data.shape.len())));
        }
        Ok(Tensor::from_data(data, (device, DType::F32)))
    }

    /// An int64 tensor's values.
    pub fn ids(&self, name: &str) -> Result<Vec<i64>, Error> {
        let (_, bytes) = self.get(name, Dtype::I64)?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect())
    }

    /// A scalar f32.
    pub fn scalar(&self, name: &str) -> Result<f32, Error> {
        let d = self.f32_data(name)?;
        d.to_vec::<f32>()
            .ok()
            .and_then(|v| v.first().copied())
            .ok_or_else(|| self.err(format!("{name}: empty")))
    }

    /// A uint8 tensor's values and shape.
    pub fn u8(&self, name: &str) -> Result<(Vec<u8>, Vec<usize>), Error> {
        let (shape, bytes) = self.get(name, Dtype::U8)?;
        Ok((bytes.to_vec(), shape.to_vec()))
    }
}

/// The error of one recomputed tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The golden tensor's name.
    pub name: String,
    /// Largest absolute difference.
    pub max_abs: f64,
    /// Largest relative difference (over non-zero golden values).
    pub max_rel: f64,
    /// Whether every element is within `atol + rtol * |want|`.
    pub passed: bool,
}

/// Compares `got` with golden values elementwise.
pub fn compare_values(name: &str, got: &[f32], want: &[f32], tol: (f64, f64)) -> Comparison {
    let mut c = Comparison {
        name: name.into(),
        max_abs: 0.0,
        max_rel: 0.0,
        passed: got.len() == want.len(),
    };
    for (g, w) in got.iter().zip(want) {
        let (g, w) = (f64::from(*g), f64::from(*w));
        let d = (g - w).abs();
        if d.is_nan() || d > tol.0 + tol.1 * w.abs() {
            c.passed = false;
        }
        c.max_abs = c.max_abs.max(if d.is_nan() { f64::INFINITY } else { d });
        if w != 0.0 {
            c.max_rel = c.max_rel.max(d / w.abs());
        }
    }
    c
}

struct Checker<'a> {
    golden: &'a GoldenFile,
    tol: (f64, f64),
    out: Vec<Comparison>,
}

impl Checker<'_> {
    fn check<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        got: Tensor<B, D>,
    ) -> Result<(), Error> {
        let want = self.golden.f32_data(name)?;
        let got = got.into_data().convert::<f32>();
        let mut c = compare_values(
            name,
            got.as_slice::<f32>().unwrap_or_default(),
            want.as_slice::<f32>().unwrap_or_default(),
            self.tol,
        );
        if got.shape != want.shape {
            c.passed = false;
            c.name = format!("{name} (shape {:?} vs {:?})", got.shape, want.shape);
        }
        self.out.push(c);
        Ok(())
    }

    /// Checks a traced tensor, failing the output when the trace did not record it.
    fn check_traced<B: Backend, const D: usize>(
        &mut self,
        name: &str,
        got: Option<Tensor<B, D>>,
    ) -> Result<(), Error> {
        match got {
            Some(t) => self.check(name, t),
            None => {
                self.out.push(Comparison {
                    name: format!("{name} (not recorded)"),
                    max_abs: f64::INFINITY,
                    max_rel: f64::INFINITY,
                    passed: false,
                });
                Ok(())
            }
        }
    }

    fn check_ids(&mut self, name: &str, got: &[usize]) -> Result<(), Error> {
        let want = self.golden.ids(name)?;
        let got: Vec<f32> = got.iter().map(|&v| v as f32).collect();
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        self.out.push(compare_values(name, &got, &want, (0.0, 0.0)));
        Ok(())
    }

    /// Compares a uint8 image within `tolerance` levels (0 for resizes, which are bit-exact; 1
    /// for decoded images, whose truncating cast turns 1e-6 float differences into one level).
    fn check_u8(&mut self, name: &str, got: &[u8], tolerance: f64) -> Result<(), Error> {
        let (want, _) = self.golden.u8(name)?;
        let got: Vec<f32> = got.iter().map(|&v| f32::from(v)).collect();
        let want: Vec<f32> = want.iter().map(|&v| f32::from(v)).collect();
        self.out
            .push(compare_values(name, &got, &want, (tolerance, 0.0)));
        Ok(())
    }
}

fn usize_ids(v: Vec<i64>) -> Vec<usize> {
    v.into_iter().map(|x| x.max(0) as usize).collect()
}

fn u32_ids(v: Vec<i64>) -> Vec<u32> {
    v.into_iter().map(|x| x.max(0) as u32).collect()
}

fn file(dir: &Path, case: &str, suffix: &str) -> std::path::PathBuf {
    dir.join(format!("{case}.{suffix}"))
}

/// Runs every check of case `case` in `dir` on backend `B`; one [`Comparison`] per output.
pub fn run_case<B: Backend>(
    dir: &Path,
    case: &str,
    device: &B::Device,
) -> Result<Vec<Comparison>, Error> {
    run_case_as::<B>(dir, case, device, default_float_dtype::<B>(), F32_TOLERANCE)
}

/// Tolerance for bf16 runs (`v_cond` and the other single-pass outputs stay within it; the
/// multi-step runs drift further).
pub const BF16_TOLERANCE: (f64, f64) = (5e-2, 5e-2);

/// [`run_case`] with the transformer computing in `dtype` (bf16 on `cuda:N`; any backend with
/// bf16 support can run it) and another `(atol, rtol)`. The autoencoder always computes in f32,
/// as in the pipeline.
pub fn run_case_as<B: Backend>(
    dir: &Path,
    case: &str,
    device: &B::Device,
    dtype: DType,
    tol: (f64, f64),
) -> Result<Vec<Comparison>, Error> {
    let config_path = file(dir, case, "config.json");
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| Error::Core(echo4o_core::Error::io(&config_path, e)))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: config_path.display().to_string(),
        message: e.to_string(),
    })?;
    let golden = GoldenFile::open(&file(dir, case, "cases.safetensors"))?;
    let mut checker = Checker {
        golden: &golden,
        tol,
        out: Vec::new(),
    };
    if json.get("params").is_some() {
        let ae_config: AeConfig =
            serde_json::from_value(json["params"].clone()).map_err(|e| Error::Config {
                path: config_path.display().to_string(),
                message: format!("params: {e}"),
            })?;
        let mut ae = AutoEncoder::<B>::init(&ae_config, device);
        load_safetensors(
            &mut ae,
            &file(dir, case, "weights.safetensors"),
            NORM_REMAPS,
            &[],
        )?;
        let ae = cast_params(ae, DType::F32);
        vae_case(&ae, &mut checker, device)?;
    } else {
        let config = BagelConfig::from_case_json(&config_path)?;
        let mut model = Bagel::<B>::init(&config, device);
        load_safetensors(
            &mut model,
            &file(dir, case, "weights.safetensors"),
            BAGEL_REMAPS,
            &[],
        )?;
        let model = cast_params(model, dtype);
        if config.vit.is_some() {
            let mut ae = AutoEncoder::<B>::init(&config.vae, device);
            load_safetensors(
                &mut ae,
                &file(dir, case, "vae.safetensors"),
                NORM_REMAPS,
                &[],
            )?;
            let ae = cast_params(ae, DType::F32);
            multi_ref_case(&model, &ae, &config, &json, &mut checker, device)?;
        } else {
            t2i_case(&model, &config, &json, &mut checker, device)?;
        }
    }
    Ok(checker.out)
}

fn vae_case<B: Backend>(
    ae: &AutoEncoder<B>,
    c: &mut Checker<'_>,
    device: &B::Device,
) -> Result<(), Error> {
    let g = c.golden;
    let x: Tensor<B, 4> = g.tensor("encode_x", device)?;
    let moments = ae.moments(x.clone());
    let z = ae.channels();
    c.check("encode_moments", moments.clone())?;
    c.check("encode_mean", moments.clone().narrow(1, 0, z))?;
    c.check("encode_logvar", moments.narrow(1, z, z))?;
    c.check(
        "encode_z",
        ae.encode(x, Some(g.tensor("encode_sample_noise", device)?)),
    )?;
    c.check("decode_out", ae.decode(g.tensor("decode_z", device)?))?;
    let tokens: Tensor<B, 2> = g.tensor("tokens", device)?;
    let [_, _, lh, lw] = g.f32_data("tokens_latent")?.shape[..] else {
        return Err(g.err("tokens_latent: rank".into()));
    };
    let latent = unpatchify(tokens.clone(), lh / 2, lw / 2, 2).unsqueeze_dim::<4>(0);
    c.check("tokens_latent", latent)?;
    let (img, u8s) = decode_tokens(ae, tokens, lh / 2, lw / 2, 2)?;
    c.check("tokens_decoded", img)?;
    c.check_u8("tokens_image_u8", &u8s, 1.0)
}

fn sampler_from(run: &serde_json::Value, settings: &serde_json::Value) -> SamplerConfig {
    let f = |v: &serde_json::Value, k: &str, d: f64| {
        v.get(k).and_then(|x| x.as_f64()).unwrap_or(d) as f32
    };
    let interval = run
        .get("cfg_interval")
        .or_else(|| settings.get("cfg_interval"))
        .and_then(|v| v.as_array())
        .map(|a| {
            (
                a[0].as_f64().unwrap_or(0.0) as f32,
                a[1].as_f64().unwrap_or(1.0) as f32,
            )
        })
        .unwrap_or((0.0, 1.0));
    let renorm = run
        .get("cfg_renorm_type")
        .or_else(|| settings.get("cfg_renorm_type"))
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(Renorm::Global);
    SamplerConfig {
        num_timesteps: settings
            .get("num_timesteps")
            .and_then(|v| v.as_u64())
            .unwrap_or(50) as usize,
        shift: f(settings, "timestep_shift", 3.0),
        cfg_text: f(settings, "cfg_text_scale", 4.0),
        cfg_img: f(settings, "cfg_img_scale", 1.0),
        interval,
        renorm,
        renorm_min: f(settings, "cfg_renorm_min", 0.0),
    }
}

/// Runs the sampler from `x_init` and checks the per-step traces under `prefix`.
fn check_generation<B: Backend>(
    c: &mut Checker<'_>,
    prefix: &str,
    velocity: &mut BagelVelocity<'_, B>,
    sampler: &SamplerConfig,
    x_init: Tensor<B, 2>,
) -> Result<Tensor<B, 2>, Error> {
    let mut ts = Vec::new();
    let mut applied = Vec::new();
    let mut xs = Vec::new();
    let mut vs = Vec::new();
    let x0 = denoise(velocity, x_init, sampler, |_, _, s| {
        ts.push(s.t);
        applied.push(usize::from(s.guided));
        xs.push(s.x.clone());
        vs.push(s.v.clone());
    });
    let dev = x0.device();
    let n = ts.len();
    c.check(
        &format!("{prefix}timesteps"),
        Tensor::<B, 1>::from_data(TensorData::new(ts, [n]), &dev),
    )?;
    c.check_ids(&format!("{prefix}cfg_applied"), &applied)?;
    c.check(&format!("{prefix}x_steps"), Tensor::stack::<3>(xs, 0))?;
    if c.golden.has(&format!("{prefix}v_first")) {
        c.check(&format!("{prefix}v_first"), vs[0].clone())?;
    }
    c.check(&format!("{prefix}v_steps"), Tensor::stack::<3>(vs, 0))?;
    c.check(&format!("{prefix}x0"), x0.clone())?;
    Ok(x0)
}

fn markers_of(config: &BagelConfig) -> [u32; 2] {
    [config.tokens.start_of_image, config.tokens.end_of_image]
}

/// The training case: the official `Bagel.forward` loss of one packed T2I example.
fn train_case<B: Backend>(
    model: &Bagel<B>,
    config: &BagelConfig,
    grid: (usize, usize),
    c: &mut Checker<'_>,
    device: &B::Device,
) -> Result<(), Error> {
    use crate::train::objective::{Split, T2iExample, flow_loss, packed_mask, timestep};
    let g = c.golden;
    let prompt = u32_ids(g.ids("prompt_ids")?);
    let t = timestep(g.scalar("train_timestep_logit")?, 1.0);
    c.out.push(compare_values(
        "train_t",
        &[t],
        &[g.scalar("train_t")?],
        c.tol,
    ));
    let example = T2iExample {
        references: Vec::new(),
        text: prompt.clone(),
        x0: g.tensor::<B, 2>("train_x0_tokens", device)?,
        grid,
        t,
        noise: g.tensor::<B, 2>("train_noise", device)?,
    };
    let n = prompt.len();
    let m = grid.0 * grid.1;
    let mut positions: Vec<usize> = (0..n).collect();
    positions.extend(std::iter::repeat_n(n, m + 2));
    c.check_ids("train_packed_position_ids", &positions)?;
    // The mask's pattern (-inf = masked): compared as 0/1.
    let masked =
        |v: Vec<f32>| -> Vec<f32> { v.iter().map(|x| f32::from(x.is_infinite())).collect() };
    let want = g
        .f32_data("train_attention_mask")?
        .to_vec::<f32>()
        .map_err(|e| Error::Config {
            path: "train_attention_mask".into(),
            message: format!("{e:?}"),
        })?;
    c.out.push(compare_values(
        "train_attention_mask",
        &masked(packed_mask(&[vec![Split::Causal(n), Split::Full(m + 2)]])),
        &masked(want),
        (0.0, 0.0),
    ));
    let out = flow_loss(
        model,
        &[example],
        markers_of(config),
        0.0,
        config.max_latent_size,
    );
    c.check("train_v_pred", out.v_pred.clone())?;
    c.check("train_v_target", out.target.clone())?;
    c.check("train_mse", (out.v_pred - out.target).square())?;
    c.check("train_mse_loss", out.mse)?;
    Ok(())
}

fn t2i_case<B: Backend>(
    model: &Bagel<B>,
    config: &BagelConfig,
    json: &serde_json::Value,
    c: &mut Checker<'_>,
    device: &B::Device,
) -> Result<(), Error> {
    let g = c.golden;
    let prompt = u32_ids(g.ids("prompt_ids")?);
    let markers = markers_of(config);
    let pos_ids = usize_ids(g.ids("latent_pos_ids")?);
    let n_tokens = pos_ids.len();
    let hw = &json["case_settings"]["latent_grid_hw"];
    let (h, w) = (
        hw[0].as_u64().unwrap_or(0) as usize,
        hw[1].as_u64().unwrap_or(0) as usize,
    );
    c.check_ids(
        "latent_pos_ids",
        &grid_position_ids(h, w, config.max_latent_size),
    )?;
    if g.has("train_mse_loss") {
        train_case(model, config, (h, w), c, device)?;
    }

    let mut cond = Context::default();
    model.add_text(&mut cond, &prompt, device);
    for l in 0..config.llm.num_hidden_layers {
        if let Some(kv) = cond.cache.layer(l) {
            c.check(&format!("prompt_k_l{l}"), kv.k.clone())?;
            c.check(&format!("prompt_v_l{l}"), kv.v.clone())?;
        }
    }
    let t = g.scalar("t")?;
    c.check(
        "temb",
        model
            .time_embedder
            .forward(&[t], device)
            .reshape([config.llm.hidden_size]),
    )?;
    let x_t: Tensor<B, 2> = g.tensor("x_t", device)?;
    let mut uncond = Context::default();
    for (name, ctx) in [("cond", &mut cond), ("uncond", &mut uncond)] {
        let mut trace = FlowTrace::default();
        let v = model.velocity(ctx, x_t.clone(), t, &pos_ids, markers, Some(&mut trace));
        c.check_ids(
            &format!("{name}_position_ids"),
            &vec![ctx.rope; n_tokens + 2],
        )?;
        c.check_traced(&format!("{name}_input_seq"), trace.input_seq)?;
        c.check_traced(
            &format!("{name}_layer0_out"),
            trace.layers.layer_outputs.first().cloned(),
        )?;
        c.check_traced(&format!("{name}_final_hidden"), trace.final_hidden)?;
        c.check(&format!("v_{name}"), v)?;
    }
    let v_cond = model.velocity(&mut cond, x_t.clone(), t, &pos_ids, markers, None);
    let v_uncond = model.velocity(&mut uncond, x_t, t, &pos_ids, markers, None);
    for (name, renorm) in [
        ("global", Renorm::Global),
        ("channel", Renorm::Channel),
        ("text_channel", Renorm::TextChannel),
    ] {
        let cfg = SamplerConfig {
            renorm,
            ..SamplerConfig::text_to_image()
        };
        c.check(
            &format!("v_cfg_{name}"),
            guide(v_cond.clone(), v_uncond.clone(), None, &cfg),
        )?;
    }

    let settings = &json["case_settings"]["generate_image"];
    let runs = settings["runs"].as_array().cloned().unwrap_or_default();
    for run in runs {
        let name = run["name"].as_str().unwrap_or("settings");
        let sampler = sampler_from(&run, settings);
        let mut contexts = Contexts {
            cond: cond.clone(),
            cfg_text: Context::default(),
            cfg_img: cond.clone(),
        };
        check_generation(
            c,
            &format!("{name}_"),
            &mut BagelVelocity {
                model,
                contexts: &mut contexts,
                pos_ids: pos_ids.clone(),
                markers,
            },
            &sampler,
            g.tensor("x_init", device)?,
        )?;
    }
    Ok(())
}

fn multi_ref_case<B: Backend>(
    model: &Bagel<B>,
    ae: &AutoEncoder<B>,
    config: &BagelConfig,
    json: &serde_json::Value,
    c: &mut Checker<'_>,
    device: &B::Device,
) -> Result<(), Error> {
    let g = c.golden;
    let markers = markers_of(config);
    let p = config.latent_patch_size;
    c.check(
        "ref_vae_temb_t0",
        model.time_embedder.forward(&[0.0], device),
    )?;
    let mut cond = Context::default();
    let mut item_lens = Vec::new();
    let mut item_ropes = Vec::new();
    let vit = model
        .vit_model
        .as_ref()
        .ok_or_else(|| g.err("the model has no ViT".into()))?;
    let rule = |key: &str| -> Result<ResizeRule, Error> {
        let t = &json["transforms"][key];
        let get = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| g.err(format!("transforms.{key}.{k} missing")))
        };
        Ok(ResizeRule {
            max_size: get("max_image_size")? as u32,
            min_size: get("min_image_size")? as u32,
            stride: get("image_stride")? as u32,
            max_pixels: get("max_pixels")?,
        })
    };
    let (vae_rule, vit_rule) = (rule("vae_transform")?, rule("vit_transform")?);
    for r in ["ref1", "ref2"] {
        // The official transforms, from the raw image.
        let (raw, shape) = g.u8(&format!("{r}_raw_u8"))?;
        let raw = image::RgbImage::from_raw(shape[1] as u32, shape[0] as u32, raw)
            .ok_or_else(|| g.err(format!("{r}_raw_u8: not an RGB image")))?;
        let vae_img = vae_rule.apply(&raw, 1);
        c.check_u8(&format!("{r}_vae_resized_u8"), vae_img.as_raw(), 0.0)?;
        let vit_img = vit_rule.apply(&vae_img, 1);
        c.check_u8(&format!("{r}_vit_resized_u8"), vit_img.as_raw(), 0.0)?;
        let pixels: Tensor<B, 4> = chw_tensor::<B>(&vae_img, device).unsqueeze_dim(0);
        c.check(&format!("{r}_vae_pixels"), pixels.clone())?;
        let vit_pixels = chw_tensor::<B>(&vit_img, device);
        c.check(&format!("{r}_vit_pixels"), vit_pixels.clone())?;

        // VAE item.
        c.check(&format!("{r}_vae_moments"), ae.moments(pixels.clone()))?;
        let z = ae.encode(
            pixels,
            Some(g.tensor(&format!("{r}_vae_sample_noise"), device)?),
        );
        c.check(&format!("{r}_vae_z"), z.clone())?;
        let [_, _, zh, zw] = z.dims();
        let z = z.squeeze_dim::<3>(0);
        c.check(&format!("{r}_vae_latent_tokens"), patchify(z.clone(), p))?;
        c.check_ids(
            &format!("{r}_vae_latent_pos_ids"),
            &grid_position_ids(zh / p, zw / p, config.max_latent_size),
        )?;
        c.check_ids(
            &format!("{r}_vae_position_ids"),
            &vec![cond.rope; zh / p * zw / p + 2],
        )?;
        let mut trace = FlowTrace::default();
        model.add_vae_latent(&mut cond, z, markers, Some(&mut trace));
        c.check_traced(&format!("{r}_vae_llm_input"), trace.input_seq)?;
        item_lens.push(cond.cache.len());
        item_ropes.push(cond.rope);

        // ViT item.
        let vpix = vit_pixels;
        let [_, vh, vw] = vpix.dims();
        let patch = vit.patch_size();
        let tokens = patchify(vpix.clone(), patch);
        c.check(&format!("{r}_vit_patch_tokens"), tokens.clone())?;
        let pos = grid_position_ids(vh / patch, vw / patch, config.vit_max_num_patch_per_side);
        c.check_ids(&format!("{r}_vit_pos_ids"), &pos)?;
        let mut trace = crate::siglip::VitTrace::default();
        let out = vit.forward(tokens, &pos, Some(&mut trace));
        if let Some(e) = trace.embeddings.take() {
            c.check(&format!("{r}_vit_embeddings"), e)?;
        }
        c.check(&format!("{r}_vit_layer0_out"), trace.layers[0].clone())?;
        c.check(&format!("{r}_vit_out"), out)?;
        c.check_ids(
            &format!("{r}_vit_position_ids"),
            &vec![cond.rope; pos.len() + 2],
        )?;
        if let Some(table) = &model.vit_pos_embed {
            c.check(&format!("{r}_vit_pos_embed_rows"), table.rows(&pos, device))?;
        }
        let mut trace = FlowTrace::default();
        let connector = model.add_vit_image(&mut cond, vpix, markers, Some(&mut trace));
        c.check_traced(&format!("{r}_connector_out"), connector)?;
        c.check_traced(&format!("{r}_vit_llm_input"), trace.input_seq)?;
        item_lens.push(cond.cache.len());
        item_ropes.push(cond.rope);
    }
    let cfg_text = cond.clone();
    let prompt = u32_ids(g.ids("prompt_ids")?);
    c.check_ids(
        "text_position_ids",
        &(cond.rope..cond.rope + prompt.len()).collect::<Vec<_>>(),
    )?;
    model.add_text(&mut cond, &prompt, device);
    item_lens.push(cond.cache.len());
    item_ropes.push(cond.rope);
    c.check_ids("ctx_item_kv_lens", &item_lens)?;
    c.check_ids("ctx_item_ropes", &item_ropes)?;
    c.check_ids(
        "cfg_text_ctx_kv_len_rope",
        &[cfg_text.cache.len(), cfg_text.rope],
    )?;
    for l in 0..config.llm.num_hidden_layers {
        if let Some(kv) = cond.cache.layer(l) {
            c.check(&format!("cond_k_l{l}"), kv.k.clone())?;
            c.check(&format!("cond_v_l{l}"), kv.v.clone())?;
        }
    }
    let mut cfg_img = Context::default();
    model.add_text(&mut cfg_img, &prompt, device);
    c.check_ids(
        "cfg_img_ctx_kv_len_rope",
        &[cfg_img.cache.len(), cfg_img.rope],
    )?;
    for l in 0..config.llm.num_hidden_layers {
        if let Some(kv) = cfg_img.cache.layer(l) {
            c.check(&format!("cfg_img_k_l{l}"), kv.k.clone())?;
            c.check(&format!("cfg_img_v_l{l}"), kv.v.clone())?;
        }
    }

    // Target: the last reference's VAE size.
    let hw = g.ids("target_image_hw")?;
    let d = config.latent_downsample();
    let (h, w) = (hw[0] as usize / d, hw[1] as usize / d);
    let pos_ids = grid_position_ids(h, w, config.max_latent_size);
    c.check_ids("target_latent_pos_ids", &pos_ids)?;
    let t = g.scalar("t")?;
    let x_t: Tensor<B, 2> = g.tensor("x_t", device)?;
    let mut contexts = Contexts {
        cond,
        cfg_text,
        cfg_img,
    };
    let mut vs = Vec::new();
    for (name, ctx) in [
        ("cond", &mut contexts.cond),
        ("cfg_text", &mut contexts.cfg_text),
        ("cfg_img", &mut contexts.cfg_img),
    ] {
        let mut trace = FlowTrace::default();
        let v = model.velocity(ctx, x_t.clone(), t, &pos_ids, markers, Some(&mut trace));
        c.check_ids(
            &format!("flow_{name}_position_ids"),
            &vec![ctx.rope; pos_ids.len() + 2],
        )?;
        c.check_traced(&format!("flow_{name}_final_hidden"), trace.final_hidden)?;
        if name == "cond" {
            c.check_traced("flow_input_seq", trace.input_seq)?;
            c.check_traced(
                "flow_cond_layer0_out",
                trace.layers.layer_outputs.first().cloned(),
            )?;
        }
        c.check(&format!("v_{name}"), v.clone())?;
        vs.push(v);
    }
    c.check(
        "flow_temb",
        model
            .time_embedder
            .forward(&[t], device)
            .reshape([config.llm.hidden_size]),
    )?;
    let settings = &json["case_settings"]["interleave_inference"];
    let sampler = sampler_from(settings, settings);
    let v_img = vs.pop();
    let v_text = vs.pop().unwrap_or_else(|| Tensor::zeros([1, 1], device));
    let v_cond = vs.pop().unwrap_or_else(|| Tensor::zeros([1, 1], device));
    c.check("v_cfg", guide(v_cond, v_text, v_img, &sampler))?;

    let x0 = check_generation(
        c,
        "gen_",
        &mut BagelVelocity {
            model,
            contexts: &mut contexts,
            pos_ids: pos_ids.clone(),
            markers,
        },
        &sampler,
        g.tensor("x_init", device)?,
    )?;
    let (img, u8s) = decode_tokens(ae, x0, h, w, p)?;
    c.check("gen_decoded", img)?;
    c.check_u8("gen_image_u8", &u8s, 1.0)
}
