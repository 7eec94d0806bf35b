//! `echo4o eval`: from a generator to a benchmark score in one command, resumable and shardable;
//! `echo4o eval merge`: join shard outputs and score once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use echo4o::bench::eval::{self, EvalPlan, GenProgress, Manifest, Shard};
use echo4o::bench::report::Summary;
use echo4o::bench::runner::NoProgress;
use echo4o::bench::suite::{self, Benchmark, ScoreContext};
use echo4o::core::Generator;
use echo4o::core::openai::images::{ImagesClient, ImagesConfig, Profile};
use echo4o::core::openai::{DEFAULT_BASE_URL, RetryPolicy, is_openai_host};
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::generator::BagelGenerator;
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::{BackendTask, DeviceSpec};
use indicatif::ProgressBar;

use super::judge_opts::JudgeOptions;
use super::perception_opts::PerceptionOptions;

/// Arguments of `echo4o eval`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    merge: Option<EvalCommand>,
    /// The benchmark: geneval, geneval-long, geneval-pp, imagine, omnicontext, geneval-shapes,
    /// geneval-pp-shapes.
    #[arg(long, required = true)]
    bench: Option<String>,
    /// `bagel:DIR` (a BAGEL / Echo-4o checkpoint folder), `openai:MODEL[@URL]` (an images API;
    /// OpenAI's by default), or `folder:DIR` (images made elsewhere, in the official layout).
    #[arg(long, required = true)]
    generator: Option<GeneratorSpec>,
    /// Output folder: images/ (official layout), eval.json, then the scores and reports.
    #[arg(long, required = true)]
    out: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    /// Images per item [default: the benchmark's official count: 4 for GenEval, 1 otherwise].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    samples: Option<u32>,
    /// Base seed; every image's seed is a hash of (benchmark, item, sample, this), so results
    /// do not depend on sharding.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// This process's share: item i belongs to shard i % N (0-based I, as SLURM array and
    /// Kubernetes completion indices). A shard only generates; `eval merge` scores.
    #[arg(long, default_value = "0/1")]
    shard: Shard,
    /// Only the first N items (smoke runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Device for bagel and GenEval's models: cpu (flex), ndarray, cuda:N, cuda-f32:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    /// Generate only; score later with `echo4o eval merge` or `echo4o bench`.
    #[arg(long)]
    no_score: bool,
    /// Images API server profile for `openai:` generators: openai, sd-cpp, vllm-omni, sglang,
    /// local-ai.
    #[arg(long, default_value = "openai", value_parser = super::synth::parse_profile)]
    profile: Profile,
    /// Environment variable holding the images API key [default: OPENAI_API_KEY, and only to
    /// api.openai.com].
    #[arg(long)]
    images_api_key_env: Option<String>,
}

/// What scoring needs, shared by `eval` and `eval merge`.
#[derive(Debug, clap::Args)]
struct Common {
    /// The downloaded data of a benchmark that does not ship its items (omnicontext: the HF
    /// dataset's parquet files or folder, or the flattened folder with metadata.json).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Reproduce the official scripts' quirks (OmniContext: 6 requests per item and guessed
    /// scores; Imagine-Bench: the dropped Multi-Object weight).
    #[arg(long)]
    strict_official: bool,
    /// OmniContext's average: `all` 8 task types (OmniGen2's README), or `multi`, Echo-4o's 6
    /// multi-input types.
    #[arg(long, value_enum, default_value_t = Subset::All)]
    subset: Subset,
    /// Seed of OmniContext's guessed scores under --strict-official.
    #[arg(long, default_value_t = 0)]
    guess_seed: u64,
    #[command(flatten)]
    judge: JudgeOptions,
    #[command(flatten)]
    models: PerceptionOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Subset {
    All,
    Multi,
}

#[derive(Debug, clap::Subcommand)]
enum EvalCommand {
    /// Join shard folders into --out and score the whole benchmark once.
    Merge {
        /// The merged output folder.
        #[arg(long)]
        out: PathBuf,
        /// The shard output folders (each with eval.json and images/).
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        #[command(flatten)]
        common: Common,
        /// Device for GenEval's models: cpu (flex), ndarray, cuda:N, cuda-f32:N.
        #[arg(long, default_value = "cpu")]
        device: DeviceSpec,
    },
}

/// Where images come from.
#[derive(Debug, Clone)]
enum GeneratorSpec {
    Bagel(PathBuf),
    OpenAi { model: String, url: Option<String> },
    Folder(PathBuf),
}

impl std::str::FromStr for GeneratorSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            format!("`{s}`: expected bagel:DIR, openai:MODEL[@URL] or folder:DIR")
        })?;
        if rest.is_empty() {
            return Err(format!("`{s}`: nothing after `{kind}:`"));
        }
        match kind {
            "bagel" => Ok(GeneratorSpec::Bagel(rest.into())),
            "folder" => Ok(GeneratorSpec::Folder(rest.into())),
            "openai" => Ok(match rest.split_once('@') {
                Some((model, url)) => GeneratorSpec::OpenAi {
                    model: model.into(),
                    url: Some(url.into()),
                },
                None => GeneratorSpec::OpenAi {
                    model: rest.into(),
                    url: None,
                },
            }),
            other => Err(format!(
                "`{other}`: unknown generator kind (bagel, openai, folder)"
            )),
        }
    }
}

/// The benchmark `name`, limited to its first `limit` items; GenEval's models loaded on
/// `device` when it will score real GenEval images (`None`: it will not score).
fn benchmark(
    name: &str,
    common: &Common,
    limit: Option<usize>,
    device: Option<DeviceSpec>,
) -> anyhow::Result<Box<dyn Benchmark>> {
    let real_geneval = matches!(name, "geneval" | "geneval-long");
    if common.models.any() && !real_geneval {
        bail!("--detector-weights and --clip-weights are for geneval and geneval-long, not {name}");
    }
    let perception = match device {
        Some(device) if real_geneval => common.models.perception(device)?,
        _ => None,
    };
    let options = suite::Options {
        data: common.data.clone(),
        strict_official: common.strict_official,
        multi_only: common.subset == Subset::Multi,
        limit,
        perception,
    };
    if name == "omnicontext" {
        // Built here rather than by name: the CLI also sets the seed of guessed scores.
        let data = common.data.as_deref().context(
            "omnicontext needs --data: the downloaded OmniGen2/OmniContext dataset (its parquet \
             files or folder) or the flattened folder with metadata.json",
        )?;
        let mut items = echo4o::bench::omnicontext::load(data)?;
        items.truncate(limit.unwrap_or(usize::MAX));
        return Ok(Box::new(
            echo4o::bench::omnicontext::OmniContext::with_items(items)
                .with_strict_official(options.strict_official)
                .with_multi_only(options.multi_only)
                .with_guess_seed(common.guess_seed),
        ));
    }
    Ok(suite::by_name(name, &options)?)
}

struct Bar(ProgressBar);

impl GenProgress for Bar {
    fn start(&self, total: usize, existing: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(existing as u64);
        self.0.reset_eta();
        if existing > 0 {
            self.0.println(format!(
                "resuming: {existing} of {total} images already written"
            ));
        }
    }
    fn image(&self, _id: &str, _sample: usize) {
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn generation_bar(quiet: bool) -> Bar {
    Bar(super::styled_bar(
        quiet,
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} images, {per_sec}, ETA {eta}",
    ))
}

pub fn run(args: EvalArgs, quiet: bool) -> anyhow::Result<()> {
    if let Some(EvalCommand::Merge {
        out,
        shards,
        common,
        device,
    }) = &args.merge
    {
        return merge(out, shards, common, *device, quiet);
    }
    let (Some(name), Some(generator), Some(out)) = (&args.bench, &args.generator, &args.out) else {
        bail!("--bench, --generator and --out are required");
    };
    let bench = benchmark(
        name,
        &args.common,
        args.limit,
        (!args.no_score).then_some(args.device),
    )?;
    if !args.no_score {
        bench.check_scorable()?;
    }
    let mut plan = EvalPlan::new(out, args.seed).with_shard(args.shard);
    plan.samples = args.samples.map(|n| n as usize);
    plan.limit = args.limit;
    match generator {
        GeneratorSpec::Folder(dir) => {
            if args.shard != Shard::ALL {
                bail!(
                    "--shard splits generation; folder:{} generates nothing",
                    dir.display()
                );
            }
            score_folder(bench.as_ref(), dir, out, &args, quiet)
        }
        GeneratorSpec::OpenAi { model, url } => {
            let url = url.clone().unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
            let mut config = ImagesConfig::new(model)
                .with_base_url(&url)
                .with_profile(args.profile)
                .with_timeout(Duration::from_secs(args.common.judge.timeout))
                .with_retry(RetryPolicy::default());
            if let Some(var) = &args.images_api_key_env {
                config = config.with_api_key_env(var);
            }
            if is_openai_host(&url) && !config.has_credentials() {
                bail!(
                    "the images API at {url} needs an API key: set ${} (or name another \
                     variable with --images-api-key-env)",
                    args.images_api_key_env
                        .as_deref()
                        .unwrap_or("OPENAI_API_KEY")
                );
            }
            let client = ImagesClient::new(config)?;
            generate_and_score(bench.as_ref(), &client, &plan, &args, quiet)
        }
        GeneratorSpec::Bagel(dir) => args.device.run(BagelEval {
            dir: dir.clone(),
            bench: bench.as_ref(),
            plan: &plan,
            args: &args,
            quiet,
        })?,
    }
}

struct BagelEval<'a> {
    dir: PathBuf,
    bench: &'a dyn Benchmark,
    plan: &'a EvalPlan,
    args: &'a EvalArgs,
    quiet: bool,
}

impl BackendTask for BagelEval<'_> {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let pipeline = BagelPipeline::<B>::load(&self.dir, &device)
            .with_context(|| format!("loading {}", self.dir.display()))?;
        // The canonical path names the model, so shards launched from different working
        // folders still merge.
        let dir = self.dir.canonicalize().unwrap_or(self.dir.clone());
        let generator = BagelGenerator::new(pipeline, format!("bagel:{}", dir.display()));
        generate_and_score(self.bench, &generator, self.plan, self.args, self.quiet)
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn generate_and_score(
    bench: &dyn Benchmark,
    generator: &dyn Generator,
    plan: &EvalPlan,
    args: &EvalArgs,
    quiet: bool,
) -> anyhow::Result<()> {
    let rt = runtime()?;
    let bar = generation_bar(quiet);
    let report = rt.block_on(eval::generate(bench, generator, plan, &bar))?;
    if !quiet {
        eprintln!(
            "{}: {} images generated, {} already there (shard {})",
            bench.name(),
            report.generated,
            report.existing,
            plan.shard
        );
    }
    if !report.failed.is_empty() {
        let list: Vec<String> = report
            .failed
            .iter()
            .take(10)
            .map(|(id, e)| format!("  {id}: {e}"))
            .collect();
        bail!(
            "{} items failed to generate; their images are missing, and a rerun of the same \
             command retries them:\n{}",
            report.failed.len(),
            list.join("\n")
        );
    }
    if plan.shard.count > 1 || args.no_score {
        if !quiet {
            println!(
                "images in {}; score them with `echo4o eval merge --out DIR <shard folders>`",
                plan.images().display()
            );
        }
        return Ok(());
    }
    let manifest = Manifest::read(&plan.out)?;
    let missing = eval::missing_images(bench, &manifest, &plan.images());
    if !missing.is_empty() {
        bail!(
            "{} images are missing (first: {}); rerun to generate them",
            missing.len(),
            missing[0].display()
        );
    }
    let summary = score(bench, &plan.images(), &plan.out, &args.common, &rt, quiet)?;
    print_summary(&summary, &plan.out, quiet);
    Ok(())
}

fn score_folder(
    bench: &dyn Benchmark,
    images: &Path,
    out: &Path,
    args: &EvalArgs,
    quiet: bool,
) -> anyhow::Result<()> {
    if !images.is_dir() {
        bail!("folder:{}: not a folder", images.display());
    }
    if args.no_score {
        bail!("--no-score with folder: has nothing to do");
    }
    let rt = runtime()?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let summary = score(bench, images, out, &args.common, &rt, quiet)?;
    print_summary(&summary, out, quiet);
    Ok(())
}

fn score(
    bench: &dyn Benchmark,
    images: &Path,
    out: &Path,
    common: &Common,
    rt: &tokio::runtime::Runtime,
    quiet: bool,
) -> anyhow::Result<Summary> {
    let judge = match bench.default_judge_model() {
        Some(model) if bench.needs_judge() => Some(common.judge.judge(model)?),
        _ => None,
    };
    // Judging and Mask2Former scoring take minutes to hours: they get a bar.
    let slow = judge.is_some() || matches!(bench.name(), "geneval" | "geneval-long");
    let verb = if judge.is_some() { "judged" } else { "scored" };
    let bar = super::bench::progress_bar(quiet, verb);
    let ctx = ScoreContext {
        judge: judge.as_ref().map(|j| j as &dyn echo4o::core::Judge),
        concurrency: common.judge.concurrency as usize,
        attempts: 3,
        progress: if slow { &bar } else { &NoProgress },
    };
    Ok(rt.block_on(bench.score(images, out, &ctx))?)
}

fn print_summary(summary: &Summary, out: &Path, quiet: bool) {
    if !quiet {
        print!("{}", summary.to_markdown());
        println!(
            "\nwrote {} (summary.json, report.md, report.html)",
            out.display()
        );
    }
}

fn merge(
    out: &Path,
    shards: &[PathBuf],
    common: &Common,
    device: DeviceSpec,
    quiet: bool,
) -> anyhow::Result<()> {
    let first = Manifest::read(&shards[0])?;
    let bench = benchmark(&first.benchmark, common, Some(first.items), Some(device))?;
    let merged = eval::merge(bench.as_ref(), out, shards)?;
    let missing = eval::missing_images(bench.as_ref(), &merged, &out.join("images"));
    if !missing.is_empty() {
        bail!(
            "{} images are missing after the merge (first: {}); rerun the shard that owns it",
            missing.len(),
            missing[0].display()
        );
    }
    let rt = runtime()?;
    let summary = score(bench.as_ref(), &out.join("images"), out, common, &rt, quiet)?;
    print_summary(&summary, out, quiet);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_specs_parse() {
        assert!(
            matches!("bagel:ckpt".parse(), Ok(GeneratorSpec::Bagel(p)) if p == Path::new("ckpt"))
        );
        match "openai:gpt-image-1@http://127.0.0.1:9/v1".parse() {
            Ok(GeneratorSpec::OpenAi { model, url }) => {
                assert_eq!(model, "gpt-image-1");
                assert_eq!(url.as_deref(), Some("http://127.0.0.1:9/v1"));
            }
            other => panic!("{other:?}"),
        }
        for bad in ["bagel", "bagel:", "dalle:x"] {
            assert!(bad.parse::<GeneratorSpec>().is_err(), "{bad}");
        }
    }
}
