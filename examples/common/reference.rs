//! Reading a reference made by the official Python code and comparing with it, shared by the
//! full-size parity examples.

/// One f32 tensor of a safetensors file's bytes.
pub fn reference(bytes: &[u8], name: &str) -> anyhow::Result<Vec<f32>> {
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let view = st.tensor(name)?;
    anyhow::ensure!(view.dtype() == safetensors::Dtype::F32, "{name}: not f32");
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "shapes differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
