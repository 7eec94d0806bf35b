//! Helpers shared by the parity tests: golden tensors from safetensors, closeness checks.

#![allow(dead_code)] // each test binary uses its own subset

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Tensor;
use burn_flex::Flex;

pub type B = Flex;

/// Every tensor of a safetensors file, as (shape, f32 values); integer tensors converted.
pub fn read_tensors(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                safetensors::Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                safetensors::Dtype::I32 => data
                    .chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                    .collect(),
                safetensors::Dtype::U8 => data.iter().map(|&b| f32::from(b)).collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

pub fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec().unwrap()
}

/// Shapes equal and the largest absolute difference within `tol`.
pub fn assert_close<const D: usize>(
    what: &str,
    got: Tensor<B, D>,
    want: &(Vec<usize>, Vec<f32>),
    tol: f32,
) {
    assert_eq!(got.dims().to_vec(), want.0, "{what}: shape");
    assert_close_values(what, &values(got), &want.1, tol);
}

pub fn assert_close_values(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let diff = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= tol, "{what}: max |diff| {diff:e} > {tol:e}");
}
