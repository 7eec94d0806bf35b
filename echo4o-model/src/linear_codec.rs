//! A linear latent codec fit by principal component analysis: each `d x d` pixel patch (`3 d^2`
//! values) is projected on the `k` directions along which patches of the training images vary
//! most.
//!
//! Why it exists: a flow model predicts the velocity `noise - x0`, so every channel of a token
//! carries noise it must pass through. Raw pixel patches give tiny models tokens of 192 channels
//! that are mostly noise to them, and they learn colours but not shapes. A learned codec puts the
//! signal in a few channels, as FLUX's autoencoder does for the released model. A FLUX-architecture
//! autoencoder at tiny width costs 2.4 s per training step on 64x64 images on a 2-core CPU
//! (`BENCHMARKS.md`); the principal components of flat-coloured shapes are fit in seconds, in
//! closed form, and reconstruct them nearly exactly. The weights are two tensors in
//! `ae.safetensors` (`mean`, `basis`), and `ae_config.json` says `"codec": "linear"`.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::Error;
use crate::autoencoder::LatentCodec;
use crate::codec::PixelCodec;
use crate::config::{AeConfig, CodecKind};

/// Patch -> `k` principal components, scaled as `(z - shift) * scale`.
///
/// ```
/// use burn::tensor::{Distribution, Tensor};
/// use echo4o_model::autoencoder::LatentCodec;
/// use echo4o_model::linear_codec::LinearCodec;
///
/// type B = burn_flex::Flex;
/// let dev = Default::default();
/// // Images whose 2x2 patches are flat: one value per channel, 3 directions in all.
/// let small = Tensor::<B, 4>::random([8, 3, 4, 4], Distribution::Uniform(-1.0, 1.0), &dev);
/// let images = small.reshape([8, 3, 4, 1, 4, 1]).expand([8, 3, 4, 2, 4, 2]).reshape([8, 3, 8, 8]);
/// let fit = LinearCodec::<B>::fit(&images.to_data().to_vec::<f32>()?, [8, 3, 8, 8], 2, 3, &dev)?;
/// assert!(fit.explained > 0.999);
/// let z = fit.codec.encode(images.clone(), None);
/// assert_eq!(z.dims(), [8, 3, 4, 4]);
/// let back = fit.codec.decode(z);
/// back.into_data().assert_approx_eq::<f32>(&images.into_data(), burn::tensor::Tolerance::absolute(1e-4));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Module, Debug)]
pub struct LinearCodec<B: Backend> {
    /// The mean patch, `[3 d^2]` (channel-major, as [`PixelCodec`] lays patches out).
    pub mean: Param<Tensor<B, 1>>,
    /// Orthonormal rows, one per latent channel, `[k, 3 d^2]`, by decreasing variance.
    pub basis: Param<Tensor<B, 2>>,
    patch: usize,
    scale_factor: f64,
    shift_factor: f64,
}

/// A fitted [`LinearCodec`] and how much of the patches' variance its channels keep.
#[derive(Debug)]
pub struct LinearFit<B: Backend> {
    /// The codec.
    pub codec: LinearCodec<B>,
    /// The share of the patch variance (about the mean) the `k` channels keep, in [0, 1].
    pub explained: f64,
    /// The `ae_config.json` that describes it.
    pub config: AeConfig,
}

impl<B: Backend> LinearCodec<B> {
    /// A codec of `c` before fitting: zero mean, the first `z_channels` pixel coordinates (a
    /// valid codec, so a checkpoint can be loaded into it).
    pub fn init(c: &AeConfig, device: &B::Device) -> Self {
        let d = c.downsample();
        let dim = 3 * d * d;
        let k = c.z_channels;
        let mut basis = vec![0f32; k * dim];
        for i in 0..k.min(dim) {
            basis[i * dim + i] = 1.0;
        }
        Self::from_weights(c, vec![0.0; dim], basis, device)
    }

    /// The codec `c` describes with these weights: `mean` of `3 d^2` values, `basis` of
    /// `z_channels` rows of `3 d^2`.
    fn from_weights(c: &AeConfig, mean: Vec<f32>, basis: Vec<f32>, device: &B::Device) -> Self {
        let dim = mean.len();
        LinearCodec {
            mean: Param::from_tensor(Tensor::from_data(TensorData::new(mean, [dim]), device)),
            basis: Param::from_tensor(Tensor::from_data(
                TensorData::new(basis, [c.z_channels, dim]),
                device,
            )),
            patch: c.downsample(),
            scale_factor: c.scale_factor,
            shift_factor: c.shift_factor,
        }
    }

    /// Fits the codec to `images` (`[n, 3, h, w]` row-major in [-1, 1], `h` and `w` multiples of
    /// `patch`): mean and covariance of every patch in f64, the `channels` leading eigenvectors
    /// (each signed so its largest entry is positive, so a fit is reproducible), and the scale
    /// that gives the latents unit variance on average.
    pub fn fit(
        images: &[f32],
        shape: [usize; 4],
        patch: usize,
        channels: usize,
        device: &B::Device,
    ) -> Result<LinearFit<B>, Error> {
        let [n, c, h, w] = shape;
        let dim = c * patch * patch;
        let bad = |message: String| Error::InvalidConfig {
            field: "linear codec".into(),
            message,
        };
        if c != 3 || !patch.is_power_of_two() || h % patch != 0 || w % patch != 0 || n == 0 {
            return Err(bad(format!(
                "cannot fit {patch}x{patch} patches (a power of two) to images of shape {shape:?}"
            )));
        }
        if images.len() != n * c * h * w {
            return Err(bad(format!(
                "{} values for images of shape {shape:?}",
                images.len()
            )));
        }
        if channels == 0 || channels > dim {
            return Err(bad(format!("{channels} channels for {dim}-value patches")));
        }
        // Patches as rows, in the pixel codec's channel order.
        let x = Tensor::<B, 4>::from_data(TensorData::new(images.to_vec(), shape), device);
        let z = LatentCodec::<B>::encode(&raw_patches(patch), x, None); // [n, dim, h/d, w/d]
        let rows = z
            .permute([0, 2, 3, 1])
            .reshape([n * (h / patch) * (w / patch), dim]);
        let count = rows.dims()[0];
        let rows: Vec<f32> = rows
            .into_data()
            .to_vec()
            .map_err(|e| bad(format!("{e:?}")))?;
        if rows.iter().any(|v| !v.is_finite()) {
            return Err(bad("the images hold NaN or infinite values".into()));
        }
        let patches =
            nalgebra::DMatrix::<f64>::from_row_iterator(count, dim, rows.iter().map(|&v| v as f64));
        let mean = patches.row_mean();
        let mut centered = patches;
        for mut row in centered.row_iter_mut() {
            row -= &mean;
        }
        let cov = centered.tr_mul(&centered) / count as f64;
        let eigen = nalgebra::SymmetricEigen::new(cov);
        let mut order: Vec<usize> = (0..dim).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
        let total: f64 = eigen.eigenvalues.iter().map(|v| v.max(0.0)).sum();
        let kept: f64 = order[..channels]
            .iter()
            .map(|&i| eigen.eigenvalues[i].max(0.0))
            .sum();
        let mut basis = Vec::with_capacity(channels * dim);
        for &i in &order[..channels] {
            let v = eigen.eigenvectors.column(i);
            let big = v
                .iter()
                .fold(0.0f64, |m, &x| if x.abs() > m.abs() { x } else { m });
            let sign = if big < 0.0 { -1.0 } else { 1.0 };
            basis.extend(v.iter().map(|&x| (sign * x) as f32));
        }
        let variance = kept / channels as f64;
        let scale = if variance > 0.0 {
            1.0 / variance.sqrt()
        } else {
            1.0
        };
        let levels = patch.trailing_zeros() as usize + 1;
        let config = AeConfig {
            codec: CodecKind::Linear,
            in_channels: 3,
            ch: 0,
            out_ch: 3,
            ch_mult: vec![1; levels],
            num_res_blocks: 0,
            z_channels: channels,
            scale_factor: scale,
            shift_factor: 0.0,
        };
        let mean = mean.iter().map(|&v| v as f32).collect();
        let codec = Self::from_weights(&config, mean, basis, device);
        Ok(LinearFit {
            codec,
            explained: if total > 0.0 { kept / total } else { 1.0 },
            config,
        })
    }

    fn pixel(&self) -> PixelCodec {
        raw_patches(self.patch)
    }
}

/// Unscaled `patch x patch` pixel patches: what the components are fit to and project.
fn raw_patches(patch: usize) -> PixelCodec {
    PixelCodec {
        patch,
        scale: 1.0,
        shift: 0.0,
    }
}

impl<B: Backend> LatentCodec<B> for LinearCodec<B> {
    fn downsample(&self) -> usize {
        self.patch
    }

    fn channels(&self) -> usize {
        self.basis.dims()[0]
    }

    fn encode(&self, images: Tensor<B, 4>, _noise: Option<Tensor<B, 4>>) -> Tensor<B, 4> {
        let dtype = images.dtype();
        let own = self.basis.val().dtype();
        let p = LatentCodec::<B>::encode(&self.pixel(), images.cast(own), None);
        let [b, dim, h, w] = p.dims();
        let k = self.basis.dims()[0];
        let rows = p.permute([0, 2, 3, 1]).reshape([b * h * w, dim]) - self.mean.val().unsqueeze();
        let z = rows
            .matmul(self.basis.val().transpose())
            .reshape([b, h, w, k])
            .permute([0, 3, 1, 2]);
        ((z - self.shift_factor) * self.scale_factor).cast(dtype)
    }

    fn decode(&self, latents: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = latents.dtype();
        let own = self.basis.val().dtype();
        let [b, k, h, w] = latents.dims();
        let dim = self.basis.dims()[1];
        let z = latents.cast(own) / self.scale_factor + self.shift_factor;
        let rows = z.permute([0, 2, 3, 1]).reshape([b * h * w, k]);
        let p = (rows.matmul(self.basis.val()) + self.mean.val().unsqueeze())
            .reshape([b, h, w, dim])
            .permute([0, 3, 1, 2]);
        LatentCodec::<B>::decode(&self.pixel(), p).cast(dtype)
    }
}

#[cfg(all(test, feature = "flex"))]
#[allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use burn_flex::Flex;

    fn images(n: usize, side: usize) -> Vec<f32> {
        Tensor::<Flex, 4>::random(
            [n, 3, side, side],
            Distribution::Uniform(-1.0, 1.0),
            &Default::default(),
        )
        .into_data()
        .to_vec()
        .unwrap()
    }

    #[test]
    fn the_basis_is_orthonormal_and_a_fit_is_reproducible() {
        let x = images(4, 16);
        let dev = Default::default();
        let a = LinearCodec::<Flex>::fit(&x, [4, 3, 16, 16], 4, 10, &dev).unwrap();
        let b = LinearCodec::<Flex>::fit(&x, [4, 3, 16, 16], 4, 10, &dev).unwrap();
        assert_eq!(
            a.codec.basis.val().into_data(),
            b.codec.basis.val().into_data()
        );
        let basis = a.codec.basis.val();
        let gram: Vec<f32> = basis
            .clone()
            .matmul(basis.transpose())
            .into_data()
            .to_vec()
            .unwrap();
        for i in 0..10 {
            for j in 0..10 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (gram[i * 10 + j] - want).abs() < 1e-5,
                    "({i}, {j}): {}",
                    gram[i * 10 + j]
                );
            }
        }
        assert!(a.explained > 0.0 && a.explained < 1.0, "{}", a.explained);
    }

    #[test]
    fn keeping_every_direction_is_lossless() {
        let x = images(2, 8);
        let dev = Default::default();
        let fit = LinearCodec::<Flex>::fit(&x, [2, 3, 8, 8], 2, 12, &dev).unwrap();
        assert!((fit.explained - 1.0).abs() < 1e-9);
        let t = Tensor::<Flex, 4>::from_data(TensorData::new(x, [2, 3, 8, 8]), &dev);
        let back = fit.codec.decode(fit.codec.encode(t.clone(), None));
        back.into_data()
            .assert_approx_eq::<f32>(&t.into_data(), burn::tensor::Tolerance::absolute(1e-4));
    }

    #[test]
    fn bad_shapes_counts_and_values_are_refused() {
        let dev = Default::default();
        let x = images(1, 8);
        for (shape, patch, k, want) in [
            ([1, 3, 8, 8], 3, 4, "patches"),
            ([1, 3, 8, 8], 2, 13, "13 channels"),
            ([1, 3, 8, 8], 2, 0, "0 channels"),
            ([2, 3, 8, 8], 2, 4, "values"),
        ] {
            let err = LinearCodec::<Flex>::fit(&x, shape, patch, k, &dev)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{shape:?} {patch} {k}: {err}");
        }
        let mut nan = x.clone();
        nan[5] = f32::NAN;
        let err = LinearCodec::<Flex>::fit(&nan, [1, 3, 8, 8], 2, 4, &dev)
            .unwrap_err()
            .to_string();
        assert!(err.contains("NaN"), "{err}");
    }
}
