//! Image I/O: load and save PNG, JPEG and WebP, and encode an image for a judge request.
//!
//! Everything is RGB8: the benchmarks' official scripts convert every image to RGB before use,
//! and so does Bagel's data pipeline.

use std::io::Cursor;
use std::path::Path;

use base64::Engine as _;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageFormat, RgbImage};

use crate::{Error, Result};

/// JPEG quality Pillow uses when `Image.save(..., format="JPEG")` is given none. The official
/// judge scripts re-encode images this way, so judge requests use it too.
pub const PIL_DEFAULT_JPEG_QUALITY: u8 = 75;

/// JPEG quality for images echo4o saves as files (generated samples, contact sheets).
pub const SAVE_JPEG_QUALITY: u8 = 95;

/// Decodes image bytes of any supported format (sniffed from the content) into RGB8.
///
/// `origin` names where the bytes came from (a path, a tar member) and appears in the error.
pub fn decode_image(bytes: &[u8], origin: &str) -> Result<RgbImage> {
    let decode_err = |source| Error::ImageDecode {
        origin: origin.to_string(),
        source,
    };
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(image::ImageError::IoError(e)))?;
    Ok(reader.decode().map_err(decode_err)?.into_rgb8())
}

/// Loads an image file as RGB8, whatever its extension says (the format is sniffed).
///
/// ```no_run
/// let img = echo4o_core::load_image("samples/1.jpg".as_ref())?;
/// println!("{}x{}", img.width(), img.height());
/// # Ok::<(), echo4o_core::Error>(())
/// ```
pub fn load_image(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, &path.display().to_string())
}

/// The formats [`save_image`] writes, chosen by file extension.
fn format_for(path: &Path) -> Result<ImageFormat> {
    match ImageFormat::from_path(path) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::WebP)) => Ok(f),
        _ => Err(Error::UnsupportedImageFormat {
            path: path.to_path_buf(),
        }),
    }
}

/// Checks, before any long work, that [`save_image`] will be able to write `path`: a supported
/// extension, not a folder, a writable parent (see [`crate::fs::check_writable`]).
pub fn check_image_output(path: &Path) -> Result<()> {
    if !path.is_dir() {
        format_for(path)?;
    }
    crate::fs::check_writable(path)
}

/// Encodes an image in `format` (PNG, JPEG at [`SAVE_JPEG_QUALITY`], or lossless WebP).
pub fn encode_image(img: &RgbImage, format: ImageFormat) -> Result<Vec<u8>> {
    if format == ImageFormat::Jpeg {
        return encode_jpeg(img, SAVE_JPEG_QUALITY);
    }
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .map_err(|source| Error::ImageEncode {
            target: format!("{format:?}"),
            source,
        })?;
    Ok(out.into_inner())
}

/// Saves an image, the format chosen by the extension (`.png`, `.jpg`/`.jpeg`, `.webp`).
///
/// The write is atomic (see [`crate::fs::write_atomic`]): an interrupted save never leaves a
/// truncated image where a benchmark runner would pick it up.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let img = image::RgbImage::from_pixel(8, 8, image::Rgb([200, 30, 30]));
/// let path = dir.path().join("red.png");
/// echo4o_core::save_image(&img, &path)?;
/// assert_eq!(echo4o_core::load_image(&path)?, img);
/// # Ok::<(), echo4o_core::Error>(())
/// ```
pub fn save_image(img: &RgbImage, path: &Path) -> Result<()> {
    let format = format_for(path)?;
    let bytes = encode_image(img, format).map_err(|e| match e {
        Error::ImageEncode { source, .. } => Error::ImageEncode {
            target: path.display().to_string(),
            source,
        },
        other => other,
    })?;
    crate::fs::write_atomic(path, &bytes)
}

/// Encodes an image as baseline JPEG at `quality` (1 to 100).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    if !(1..=100).contains(&quality) {
        return Err(Error::invalid(
            "JPEG quality",
            format!("{quality} is outside 1..=100"),
        ));
    }
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(img)
        .map_err(|source| Error::ImageEncode {
            target: "JPEG".into(),
            source,
        })?;
    Ok(out)
}

/// Encodes an image as base64 JPEG the way the official judge scripts do (RGB, Pillow's default
/// quality 75), ready to put in a `data:` URL.
///
/// ```
/// let img = image::RgbImage::new(4, 4);
/// let b64 = echo4o_core::jpeg_base64(&img)?;
/// let url = format!("data:image/jpeg;base64,{b64}");
/// assert!(url.starts_with("data:image/jpeg;base64,/9j/"));
/// # Ok::<(), echo4o_core::Error>(())
/// ```
pub fn jpeg_base64(img: &RgbImage) -> Result<String> {
    let bytes = encode_jpeg(img, PIL_DEFAULT_JPEG_QUALITY)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(16, 8, |x, y| {
            image::Rgb([(x * 16) as u8, (y * 32) as u8, 77])
        })
    }

    #[test]
    fn png_and_webp_round_trip_exactly() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.png", "a.webp"] {
            let path = dir.path().join(name);
            save_image(&gradient(), &path).unwrap();
            assert_eq!(load_image(&path).unwrap(), gradient(), "{name}");
        }
    }

    #[test]
    fn jpeg_round_trip_is_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.JPG");
        save_image(&gradient(), &path).unwrap();
        let back = load_image(&path).unwrap();
        assert_eq!(back.dimensions(), (16, 8));
        let max_diff = back
            .as_raw()
            .iter()
            .zip(gradient().as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(max_diff < 40, "max diff {max_diff}");
    }

    #[test]
    fn format_is_sniffed_not_trusted_from_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("really_png.jpg");
        std::fs::write(&path, encode_image(&gradient(), ImageFormat::Png).unwrap()).unwrap();
        assert_eq!(load_image(&path).unwrap(), gradient());
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.png");
        let err = load_image(&missing).unwrap_err().to_string();
        assert!(err.contains("missing.png"), "{err}");

        let corrupt = dir.path().join("corrupt.jpg");
        std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
        let err = load_image(&corrupt).unwrap_err().to_string();
        assert!(
            err.contains("corrupt.jpg") && err.contains("cannot decode"),
            "{err}"
        );

        let err = save_image(&gradient(), &dir.path().join("x.bmp"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x.bmp") && err.contains("unsupported"),
            "{err}"
        );
    }

    #[test]
    fn judge_encoding_is_pil_default_quality_jpeg() {
        let b64 = jpeg_base64(&gradient()).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(&bytes[..2], b"\xff\xd8");
        assert_eq!(bytes, encode_jpeg(&gradient(), 75).unwrap());
        assert!(encode_jpeg(&gradient(), 0).is_err());
    }
}
