//! Bagel's transforms against the golden vectors of the official code (`bagel_tiny_m`).

#![allow(clippy::unwrap_used)] // tests unwrap: a panic is the failure report

use std::path::PathBuf;

use echo4o_core::image::RgbImage;
use echo4o_data::transforms::{DEFAULT_MAX_PIXELS, ResizeRule, patchify, to_chw_pixels};

fn golden() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../echo4o-model/tests/golden/bagel_tiny_m.cases.safetensors");
    std::fs::read(p).unwrap()
}

fn f32s(st: &safetensors::SafeTensors<'_>, name: &str) -> Vec<f32> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn resize_normalise_and_patchify_match_the_official_outputs() {
    let bytes = golden();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let vae = ResizeRule {
        max_size: 64,
        min_size: 16,
        stride: 4,
        max_pixels: DEFAULT_MAX_PIXELS,
    };
    let vit = ResizeRule {
        max_size: 112,
        min_size: 28,
        stride: 14,
        max_pixels: DEFAULT_MAX_PIXELS,
    };
    for r in ["ref1", "ref2"] {
        let raw = st.tensor(&format!("{r}_raw_u8")).unwrap();
        let img = RgbImage::from_raw(
            raw.shape()[1] as u32,
            raw.shape()[0] as u32,
            raw.data().to_vec(),
        )
        .unwrap();
        let vae_img = vae.apply(&img, 1);
        assert_eq!(
            vae_img.as_raw().as_slice(),
            st.tensor(&format!("{r}_vae_resized_u8")).unwrap().data(),
            "{r} vae resize"
        );
        let vit_img = vit.apply(&vae_img, 1);
        assert_eq!(
            vit_img.as_raw().as_slice(),
            st.tensor(&format!("{r}_vit_resized_u8")).unwrap().data(),
            "{r} vit resize"
        );
        let px = to_chw_pixels(&vae_img);
        let want = f32s(&st, &format!("{r}_vae_pixels"));
        assert!(
            px.iter().zip(&want).all(|(a, b)| (a - b).abs() <= 1e-6),
            "{r} vae pixels"
        );
        let vpx = to_chw_pixels(&vit_img);
        let (w, h) = vit_img.dimensions();
        let tokens = patchify(&vpx, 3, h as usize, w as usize, 14);
        assert_eq!(
            tokens,
            f32s(&st, &format!("{r}_vit_patch_tokens")),
            "{r} vit patches"
        );
        // VAE latents: z [16, H/2, W/2] -> 2x2 patches.
        let z = st.tensor(&format!("{r}_vae_z")).unwrap();
        let (zh, zw) = (z.shape()[2], z.shape()[3]);
        let tokens = patchify(&f32s(&st, &format!("{r}_vae_z")), 16, zh, zw, 2);
        assert_eq!(
            tokens,
            f32s(&st, &format!("{r}_vae_latent_tokens")),
            "{r} latent tokens"
        );
    }
}
