//! `echo4o data`: inspect, sample, convert and unpack Echo-4o-style datasets.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use echo4o::core::Sample;
use echo4o::data::contact_sheet::contact_sheet;
use echo4o::data::{Kind, convert, detect, echo4o_image, folder, open_source};
use indicatif::{ProgressBar, ProgressStyle};

/// Arguments of `echo4o data`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DataCommand {
    /// Counts per subset and category, image sizes, and every unreadable item with its location.
    Stats {
        /// An Echo-4o-Image snapshot, a .jsonl manifest (or a folder with data.jsonl), or Bagel
        /// .parquet files (a file or a folder).
        path: PathBuf,
    },
    /// A contact sheet of samples with their instructions (references above the target).
    Sample {
        /// The dataset (as for `stats`).
        path: PathBuf,
        /// How many samples (1 to 256: one sheet stays a viewable image).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=MAX_SHEET as i64))]
        n: u16,
        /// Grid columns (1 to 256).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=MAX_SHEET as i64))]
        columns: u32,
        /// Seed of the (reservoir) sample.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output image (.png, .jpg).
        #[arg(long)]
        out: PathBuf,
    },
    /// Converts a dataset to another layout.
    Convert {
        /// The dataset (as for `stats`).
        path: PathBuf,
        /// Target layout.
        #[arg(long, value_enum)]
        to: Target,
        /// Output folder (echo4o, folder) or .parquet file (parquet).
        #[arg(long)]
        out: PathBuf,
        /// Subset name for `--to echo4o`.
        #[arg(long, default_value = "Instruction-Following-Image")]
        subset: String,
        /// Images per shard (echo4o) or rows per row group (parquet).
        #[arg(long, default_value_t = 5000)]
        shard_size: usize,
        /// Skip (count and list) bad samples instead of stopping at the first.
        #[arg(long)]
        skip_bad: bool,
    },
    /// Extracts an Echo-4o-Image snapshot's shards to plain image files.
    Unpack {
        /// The snapshot folder.
        path: PathBuf,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The most samples (and columns) one contact sheet holds.
const MAX_SHEET: u16 = 256;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Target {
    /// Echo-4o-Image layout (JSONL + tar.gz shards).
    Echo4o,
    /// JSONL manifest + image folder.
    Folder,
    /// Bagel parquet (multi_ref if any sample has references, else t2i).
    Parquet,
}

fn progress(quiet: bool, len: Option<usize>, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n as u64),
        None => ProgressBar::new_spinner(),
    };
    let template = if len.is_some() {
        "{spinner} {msg} {bar:30} {pos}/{len} ({per_sec}, ETA {eta})"
    } else {
        "{spinner} {msg} {pos} ({per_sec})"
    };
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

fn size_bucket(side: u32) -> &'static str {
    match side {
        0..=255 => "< 256",
        256..=511 => "256-511",
        512..=1023 => "512-1023",
        1024..=1535 => "1024-1535",
        _ => ">= 1536",
    }
}

fn dimensions(s: &Sample) -> Result<(u32, u32), String> {
    match s.target.encoded_bytes() {
        Some(bytes) => echo4o::core::image::ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| e.to_string())?
            .into_dimensions()
            .map_err(|e| format!("{}: {e}", s.target.origin())),
        None => s
            .target
            .to_rgb()
            .map(|i| i.dimensions())
            .map_err(|e| e.to_string()),
    }
}

fn stats(path: &Path, quiet: bool) -> anyhow::Result<()> {
    let (kind, source) = open_source(path, 0)?;
    let bar = progress(quiet, source.len_hint(), "reading");
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut per_subset: BTreeMap<String, usize> = BTreeMap::new();
    let mut sizes: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut total, mut multi) = (0usize, 0usize);
    let mut bad = Vec::new();
    for s in source.samples() {
        bar.inc(1);
        let s = match s {
            Ok(s) => s,
            Err(e) => {
                bad.push(e.to_string());
                continue;
            }
        };
        match dimensions(&s) {
            Ok((w, h)) => *sizes.entry(size_bucket(w.max(h))).or_default() += 1,
            Err(e) => {
                bad.push(e);
                continue;
            }
        }
        total += 1;
        multi += usize::from(s.is_multi_reference());
        let subset = s.subset.clone().unwrap_or_else(|| "-".into());
        *per_subset.entry(subset.clone()).or_default() += 1;
        let key = (subset, s.category.clone().unwrap_or_else(|| "-".into()));
        *counts.entry(key).or_default() += 1;
    }
    bar.finish_and_clear();
    println!("{} ({kind:?})", path.display());
    println!("{:<32} {:<12} {:>8}", "subset", "category", "samples");
    for ((subset, cat), n) in &counts {
        println!("{subset:<32} {cat:<12} {n:>8}");
    }
    for (subset, n) in &per_subset {
        println!("{subset:<32} {:<12} {n:>8}", "(all)");
    }
    println!(
        "\ntotal: {} records, {total} readable ({multi} multi-reference), {} unreadable",
        total + bad.len(),
        bad.len()
    );
    if total > 0 {
        println!("\nlongest side (px)  images");
        for bucket in ["< 256", "256-511", "512-1023", "1024-1535", ">= 1536"] {
            if let Some(n) = sizes.get(bucket) {
                println!("{bucket:<18} {n:>6}");
            }
        }
    }
    if !bad.is_empty() {
        println!("\nunreadable:");
        for b in &bad {
            println!("  {b}");
        }
    }
    if total == 0 {
        bail!(
            "{}: no readable sample ({} unreadable)",
            path.display(),
            bad.len()
        );
    }
    Ok(())
}

fn sample(
    path: &Path,
    n: u16,
    columns: u32,
    seed: u64,
    out: &Path,
    quiet: bool,
) -> anyhow::Result<()> {
    use rand::{Rng, SeedableRng};
    let n = usize::from(n);
    let (_, source) = open_source(path, seed)?;
    let bar = progress(quiet, source.len_hint(), "sampling");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut chosen: Vec<Sample> = Vec::with_capacity(n);
    for (i, s) in source.samples().filter_map(Result::ok).enumerate() {
        bar.inc(1);
        if chosen.len() < n {
            chosen.push(s);
        } else {
            let j = rng.random_range(0..=i);
            if j < n {
                chosen[j] = s;
            }
        }
    }
    bar.finish_and_clear();
    if chosen.is_empty() {
        bail!("{}: no readable sample", path.display());
    }
    echo4o::core::save_image(&contact_sheet(&chosen, columns), out)?;
    if !quiet {
        println!("wrote {} ({} samples)", out.display(), chosen.len());
    }
    Ok(())
}

fn convert(
    path: &Path,
    to: Target,
    out: &Path,
    subset: &str,
    shard_size: usize,
    skip_bad: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    let (kind, source) = open_source(path, 0)?;
    // Multi-reference parquet if the source can hold references at all; decided before reading
    // so that samples stream to the writer instead of being held in memory.
    let multi_ref = match kind {
        Kind::ParquetMultiRef => true,
        Kind::Folder => {
            let manifest = if path.is_dir() {
                path.join("data.jsonl")
            } else {
                path.to_path_buf()
            };
            folder::FolderDataset::open(&manifest)?.has_references()
        }
        Kind::ParquetT2i | Kind::Echo4oImage => false,
    };
    let bar = progress(quiet, source.len_hint(), "converting");
    let target_layout = match to {
        Target::Echo4o => convert::Target::Echo4o {
            subset: subset.to_string(),
        },
        Target::Folder => convert::Target::Folder,
        Target::Parquet => convert::Target::Parquet { multi_ref },
    };
    let result = convert::convert(
        source.as_ref(),
        &target_layout,
        out,
        shard_size,
        skip_bad,
        &mut |n| bar.set_position(n as u64),
    );
    bar.finish_and_clear();
    let convert::Converted {
        written: n,
        skipped,
    } = match result {
        Ok(c) => c,
        Err(e) => {
            let left = match to {
                Target::Parquet => "nothing was written".to_string(),
                _ => format!("{} has no index, so it is not a dataset", out.display()),
            };
            bail!("{e} (use --skip-bad to skip bad samples; {left})")
        }
    };
    if !quiet {
        println!("wrote {n} samples to {}", out.display());
        if !skipped.is_empty() {
            println!("skipped {}:", skipped.len());
            for s in &skipped {
                println!("  {s}");
            }
        }
    }
    Ok(())
}

pub fn run(args: DataArgs, quiet: bool) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Stats { path } => stats(&path, quiet),
        DataCommand::Sample {
            path,
            n,
            columns,
            seed,
            out,
        } => sample(&path, n, columns, seed, &out, quiet),
        DataCommand::Convert {
            path,
            to,
            out,
            subset,
            shard_size,
            skip_bad,
        } => convert(&path, to, &out, &subset, shard_size, skip_bad, quiet),
        DataCommand::Unpack { path, out } => {
            if detect(&path)? != Kind::Echo4oImage {
                bail!("{}: unpack reads an Echo-4o-Image snapshot", path.display());
            }
            let n = echo4o_image::Echo4oImage::open(&path)?
                .unpack(&out)
                .with_context(|| format!("unpacking into {}", out.display()))?;
            if !quiet {
                println!("unpacked {n} images to {}", out.display());
            }
            Ok(())
        }
    }
}
