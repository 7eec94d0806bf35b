//! A seeded initialisation of a model's random weights, so a training run started from a preset
//! is reproducible: burn draws its initial weights from a generator no seed reaches.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};

/// Redraws every random parameter of `module` from a ChaCha8 stream seeded by `seed`, with burn's
/// default distributions: embeddings N(0, 1); linear weights `[in, out]` and their biases
/// U(-1/sqrt(in), 1/sqrt(in)). Norm weights and biases and the sin-cos position tables keep their
/// constant values.
///
/// ```
/// use echo4o_model::bagel::Bagel;
/// use echo4o_model::config::BagelConfig;
/// use echo4o_model::train::seeded_init;
///
/// let dev = Default::default();
/// let c = BagelConfig::tiny();
/// let a = seeded_init(Bagel::<burn_flex::Flex>::init(&c, &dev), 7)?;
/// let b = seeded_init(Bagel::<burn_flex::Flex>::init(&c, &dev), 7)?;
/// assert_eq!(a.vae2llm.weight.val().into_data(), b.vae2llm.weight.val().into_data());
/// # Ok::<(), echo4o_model::Error>(())
/// ```
///
/// A parameter whose range cannot be drawn is an error naming it, never silently zeros.
pub fn seeded_init<B: Backend, M: Module<B>>(module: M, seed: u64) -> Result<M, crate::Error> {
    let mut redraw = Redraw {
        rng: ChaCha8Rng::seed_from_u64(seed),
        path: Vec::new(),
        fan_in: 1,
        error: None,
    };
    let module = module.map(&mut redraw);
    match redraw.error {
        Some(e) => Err(e),
        None => Ok(module),
    }
}

/// Initialises every parameter of `module` that is still waiting for its first use. burn defers
/// a fresh module's random initialisation to the first access of each parameter, so without this
/// the first forward of a randomly initialised model pays for drawing all of its weights: 12.6 s
/// against 2.0 s for a steady forward at BAGEL's width (`bagel_full_size`, BENCHMARKS.md).
/// Loaded weights are not lazy and gain nothing.
pub fn materialize<B: Backend, M: Module<B>>(module: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
        fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<B, D, Int>>) {
            let _ = param.val();
        }
        fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<B, D, Bool>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

struct Redraw {
    rng: ChaCha8Rng,
    path: Vec<String>,
    fan_in: usize,
    error: Option<crate::Error>,
}

impl<B: Backend> ModuleMapper<B> for Redraw {
    fn enter_module(&mut self, name: &str, _container: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path = self.path.join(".");
        if path.contains("norm") || path.contains("pos_embed") {
            return param;
        }
        let embedding = path.ends_with("embed_tokens") || path.ends_with("position_embedding");
        let rng = &mut self.rng;
        let fan_in = &mut self.fan_in;
        let error = &mut self.error;
        param.map(|t| {
            let dims = t.dims();
            let n: usize = dims.iter().product();
            let values: Vec<f32> = if embedding {
                (0..n).map(|_| StandardNormal.sample(rng)).collect()
            } else {
                if D == 2 {
                    *fan_in = dims[0];
                }
                let bound = 1.0 / (*fan_in as f32).sqrt();
                match Uniform::new_inclusive(-bound, bound) {
                    Ok(u) => (0..n).map(|_| u.sample(rng)).collect(),
                    Err(e) => {
                        error.get_or_insert(crate::Error::InvalidConfig {
                            field: path.clone(),
                            message: format!(
                                "cannot draw initial weights from U(-{bound}, {bound}) (fan-in {}): {e}",
                                *fan_in
                            ),
                        });
                        vec![0.0; n]
                    }
                }
            };
            let device = t.device();
            Tensor::from_data(TensorData::new(values, dims), (&device, t.dtype()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bagel::Bagel;
    use crate::config::BagelConfig;

    /// Counts a module's parameters and how many of them hold values.
    struct Count(usize, usize);

    impl<B: Backend> ModuleVisitor<B> for Count {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0 += 1;
            self.1 += usize::from(param.is_initialized());
        }
    }

    #[test]
    fn materialize_draws_every_lazy_parameter_once() {
        let dev = Default::default();
        let model = Bagel::<burn_flex::Flex>::init(&BagelConfig::tiny(), &dev);
        let mut before = Count(0, 0);
        model.visit(&mut before);
        assert!(before.1 < before.0, "burn builds parameters lazily");
        materialize(&model.vae2llm);
        let drawn = model.vae2llm.weight.val().into_data();
        materialize(&model);
        let mut after = Count(0, 0);
        model.visit(&mut after);
        assert_eq!(after.1, after.0, "every parameter holds its values");
        // A drawn parameter is not drawn again.
        assert_eq!(model.vae2llm.weight.val().into_data(), drawn);
    }
}
