//! Contact sheets: a grid of samples (references, then the target) with their instructions
//! printed underneath, because people would rather look at data than read it.

use echo4o_core::Sample;
use echo4o_core::image::{Rgb, RgbImage, imageops};
use font8x8::UnicodeFonts;

/// Side of one image tile in pixels.
pub const TILE: u32 = 192;
const TEXT_LINES: u32 = 4;
const LINE_H: u32 = 10;
const MARGIN: u32 = 6;

fn draw_text(img: &mut RgbImage, x0: u32, y0: u32, text: &str, max_chars: usize) {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > max_chars {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    lines.push(line);
    if lines.len() > TEXT_LINES as usize {
        lines.truncate(TEXT_LINES as usize);
        if let Some(last) = lines.last_mut() {
            last.truncate(max_chars.saturating_sub(3));
            last.push_str("...");
        }
    }
    for (li, l) in lines.iter().enumerate() {
        for (ci, ch) in l.chars().take(max_chars).enumerate() {
            let glyph = font8x8::BASIC_FONTS
                .get(ch)
                .or_else(|| font8x8::BASIC_FONTS.get('?'))
                .unwrap_or([0; 8]);
            for (gy, row) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if row & (1 << gx) != 0 {
                        let (x, y) = (x0 + ci as u32 * 8 + gx, y0 + li as u32 * LINE_H + gy as u32);
                        if x < img.width() && y < img.height() {
                            img.put_pixel(x, y, Rgb([20, 20, 20]));
                        }
                    }
                }
            }
        }
    }
}

/// A grid of `columns` cells; each cell shows the sample's references (small, on top) and
/// target, then the instruction. Images that fail to decode show as a red tile.
pub fn contact_sheet(samples: &[Sample], columns: u32) -> RgbImage {
    // Never more columns than samples: a huge `columns` would otherwise size a sheet of
    // terabytes (`columns * cell width` overflows or allocates without bound).
    let columns = columns.clamp(1, u32::try_from(samples.len()).unwrap_or(u32::MAX).max(1));
    let rows = (samples.len() as u32).div_ceil(columns).max(1);
    let cell_w = TILE + 2 * MARGIN;
    let ref_h = TILE / 3;
    let cell_h = MARGIN + ref_h + TILE + TEXT_LINES * LINE_H + 2 * MARGIN;
    let mut sheet = RgbImage::from_pixel(columns * cell_w, rows * cell_h, Rgb([245, 245, 245]));
    for (i, s) in samples.iter().enumerate() {
        let (cx, cy) = (
            (i as u32 % columns) * cell_w + MARGIN,
            (i as u32 / columns) * cell_h + MARGIN,
        );
        let n_refs = s.references.len() as u32;
        if let Some(per_ref) = TILE.checked_div(n_refs) {
            let w = per_ref.min(ref_h);
            for (k, r) in s.references.iter().enumerate() {
                let thumb = match r.to_rgb() {
                    Ok(img) => imageops::thumbnail(&img, w, w),
                    Err(_) => RgbImage::from_pixel(w, w, Rgb([200, 40, 40])),
                };
                imageops::overlay(
                    &mut sheet,
                    &thumb,
                    i64::from(cx + k as u32 * w),
                    i64::from(cy),
                );
            }
        }
        let ty = cy + ref_h;
        let tile = match s.target.to_rgb() {
            Ok(img) => {
                let scale = f64::from(TILE) / f64::from(img.width().max(img.height()).max(1));
                let (w, h) = (
                    ((f64::from(img.width()) * scale) as u32).max(1),
                    ((f64::from(img.height()) * scale) as u32).max(1),
                );
                imageops::resize(&img, w, h, imageops::FilterType::Triangle)
            }
            Err(_) => RgbImage::from_pixel(TILE, TILE, Rgb([200, 40, 40])),
        };
        imageops::overlay(&mut sheet, &tile, i64::from(cx), i64::from(ty));
        draw_text(
            &mut sheet,
            cx,
            ty + TILE + MARGIN,
            &s.instruction,
            (TILE / 8) as usize,
        );
    }
    sheet
}

#[cfg(test)]
mod tests {
    use super::*;
    use echo4o_core::SampleImage;

    #[test]
    fn lays_out_cells_and_prints_text() {
        let img = RgbImage::from_pixel(40, 20, Rgb([0, 0, 255]));
        let samples: Vec<Sample> = (0..5)
            .map(|i| {
                Sample::new(
                    i.to_string(),
                    "a blue box next to a much longer description that wraps",
                    SampleImage::decoded(img.clone(), "m"),
                )
            })
            .collect();
        let sheet = contact_sheet(&samples, 3);
        assert_eq!(sheet.width(), 3 * (TILE + 2 * MARGIN));
        // Blue tile at the first cell, dark text pixels under it.
        assert_eq!(
            sheet.get_pixel(MARGIN + 5, MARGIN + TILE / 3 + 5).0,
            [0, 0, 255]
        );
        let text_band =
            (MARGIN + TILE / 3 + TILE + MARGIN)..(MARGIN + TILE / 3 + TILE + MARGIN + LINE_H);
        let dark = text_band
            .flat_map(|y| (MARGIN..MARGIN + TILE).map(move |x| (x, y)))
            .filter(|&(x, y)| sheet.get_pixel(x, y).0 == [20, 20, 20])
            .count();
        assert!(dark > 50, "{dark}");
    }
}
