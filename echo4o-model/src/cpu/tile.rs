//! The register block shared by the CPU kernels: `ROWS` rows of a packed tile against a panel
//! of two SIMD vectors of columns, the inner loop of every product they compute.

use pulp::Simd;

/// Rows of the register block: each step broadcasts one value of each of `ROWS` rows against
/// two vectors of a panel, `2 * ROWS` accumulators (12 of AVX2's 16 registers).
pub(crate) const ROWS: usize = 6;

/// Copies `m` rows of `depth` values (row stride `lda`) into `tile` column-major, `[depth][m]`:
/// the order the register block reads them in.
pub(crate) fn pack_tile(a: &[f32], lda: usize, m: usize, depth: usize, tile: &mut Vec<f32>) {
    tile.clear();
    tile.resize(depth * m, 0.0);
    for r in 0..m {
        let row = &a[r * lda..][..depth];
        for (i, x) in row.iter().enumerate() {
            tile[i * m + r] = *x;
        }
    }
}

/// `tile[r] = sum_i a[i][r] * panel[i]` for the `m <= ROWS` rows of a packed tile `a`
/// (`[depth][m]`, see [`pack_tile`]) and a panel of `depth` steps of two vectors: the register
/// block of the kernel, with every index known in range from the chunk sizes.
#[inline(always)]
pub(crate) fn product<S: Simd>(
    simd: S,
    m: usize,
    a: &[f32],
    panel: &[S::f32s],
    tile: &mut [[S::f32s; 2]; ROWS],
) {
    match m {
        6 => block::<S, 6>(simd, a, panel, tile),
        5 => block::<S, 5>(simd, a, panel, tile),
        4 => block::<S, 4>(simd, a, panel, tile),
        3 => block::<S, 3>(simd, a, panel, tile),
        2 => block::<S, 2>(simd, a, panel, tile),
        _ => block::<S, 1>(simd, a, panel, tile),
    }
}

#[inline(always)]
fn block<S: Simd, const M: usize>(
    simd: S,
    a: &[f32],
    panel: &[S::f32s],
    tile: &mut [[S::f32s; 2]; ROWS],
) {
    let mut acc = [[simd.splat_f32s(0.0); 2]; M];
    for (a, b) in a.chunks_exact(M).zip(panel.chunks_exact(2)) {
        let (b0, b1) = (b[0], b[1]);
        for r in 0..M {
            let x = simd.splat_f32s(a[r]);
            acc[r][0] = simd.mul_add_e_f32s(x, b0, acc[r][0]);
            acc[r][1] = simd.mul_add_e_f32s(x, b1, acc[r][1]);
        }
    }
    tile[..M].copy_from_slice(&acc);
}
