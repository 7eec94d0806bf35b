//! `echo4o synth`: make Echo-4o-style data with any image generator: an OpenAI-compatible images
//! API (OpenAI, sd-server, vLLM-Omni, SGLang, LocalAI) or a BAGEL / Echo-4o checkpoint; verify
//! and rewrite; resume by rerunning the same command.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use echo4o::bench::geneval::EngineConfig;
use echo4o::bench::geneval::shapes::{ShapesColorClassifier, ShapesDetector};
use echo4o::bench::geneval::verify::{DetectionRewriter, GenEvalVerifier};
use echo4o::core::SamplerSettings;
use echo4o::core::openai::images::{ImageOptions, ImagesClient, ImagesConfig, Profile};
use echo4o::core::openai::{
    DEFAULT_BASE_URL, OpenAiConfig, OpenAiJudge, RetryPolicy, is_openai_host,
};
use echo4o::data::synth::backend::{GeneratorBackend, ImagesBackend, SynthBackend};
use echo4o::data::synth::export::{ExportMode, export};
use echo4o::data::synth::instruction::InstructionRecipe;
use echo4o::data::synth::job::{JobConfig, Prices, Stats, SynthJob, read_provenance};
use echo4o::data::synth::multiref::{MultirefRecipe, label_reference, read_pool, reword};
use echo4o::data::synth::surreal::{ObjectAttributes, SurrealRecipe, construct_attributes};
use echo4o::data::synth::verify::{ChatRewriter, ChecklistVerifier, Rewriter, Verifier};
use echo4o::data::synth::{RecipeKind, SynthPrompt};
use echo4o::model::burn::tensor::backend::Backend;
use echo4o::model::generator::BagelGenerator;
use echo4o::model::pipeline::BagelPipeline;
use echo4o::model::{BackendTask, DeviceSpec};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Recipe {
    /// "A photo of ..." prompts with counts, colors, sizes, regions, relations (GenEval metadata).
    Instruction,
    /// Attribute construction, then color/size/material/combination/environment/era deflection.
    Surreal,
    /// Compositions of 2-4 labelled reference images (needs --pool).
    Multiref,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendChoice {
    /// An OpenAI-compatible images API (--base-url, --model, --profile).
    Openai,
    /// A BAGEL / Echo-4o checkpoint folder (--bagel-model), run here.
    Bagel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum VerifyChoice {
    /// Keep every image with its prompt.
    None,
    /// A vision chat model checks the prompt's checklist (--judge-url, --judge-model).
    Checklist,
    /// The GenEval rule engine with the shapes-world detector (instruction prompts).
    GenevalShapes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RewriteChoice {
    /// Drop misaligned images.
    None,
    /// A vision chat model writes the prompt the image matches.
    Chat,
    /// Rule-based, from the shapes detector's detections.
    Rules,
}

/// Arguments of `echo4o synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Which Echo-4o recipe writes the prompts.
    #[arg(long, value_enum)]
    recipe: Recipe,
    /// How many prompts (1 to 1,000,000; Echo-4o-Image holds about 179k).
    #[arg(long, default_value_t = 100, value_parser = parse_count)]
    count: usize,
    /// Seed of the recipe and of per-prompt seeds (local backends).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Job folder: ledger, images, provenance.jsonl, and dataset/ at the end. Rerun the same
    /// command to resume.
    #[arg(long)]
    out: PathBuf,

    /// Instruction: objects, one per line [default: the 80 COCO classes]. Surreal: one object
    /// per line, either a name (attributes constructed by the judge) or a JSON object
    /// {"object","color","size","material","structure"} [default: the built-in table].
    #[arg(long)]
    objects: Option<PathBuf>,
    /// Instruction: largest count stated (2-8).
    #[arg(long, default_value_t = 4)]
    max_count: u32,
    /// Instruction: share of easy,medium,hard prompts.
    #[arg(long, default_value = "1,1,1")]
    mix: String,
    /// Instruction: the text before the objects.
    #[arg(long, default_value = "A photo of")]
    prefix: String,
    /// Multiref: the reference pool manifest (JSONL: path, label, name, licence, source).
    #[arg(long)]
    pool: Option<PathBuf>,
    /// Multiref: reword every instruction with the judge model, for diversity.
    #[arg(long)]
    reword: bool,

    /// Where images come from.
    #[arg(long, value_enum, default_value = "openai")]
    backend: BackendChoice,
    /// Images API base (`http://HOST:PORT/v1` for a local server).
    #[arg(long, default_value = DEFAULT_BASE_URL)]
    base_url: String,
    /// Image model, sent as given.
    #[arg(long, default_value = "gpt-image-1.5")]
    model: String,
    /// Server profile: openai, sd-cpp, vllm-omni, sglang, local-ai.
    #[arg(long, default_value = "openai", value_parser = parse_profile)]
    profile: Profile,
    /// Environment variable holding the images API key, sent as Bearer to --base-url
    /// [default: OPENAI_API_KEY, and only to api.openai.com]. `user:password@` in --base-url is
    /// sent as basic auth and never written to job.json or provenance.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Image size WxH (images API: sent as given; BAGEL: the output size).
    #[arg(long, default_value = "1024x1024")]
    size: String,
    /// low, medium, high, auto (OpenAI).
    #[arg(long)]
    quality: Option<String>,
    /// transparent, opaque, auto (OpenAI).
    #[arg(long)]
    background: Option<String>,
    /// png, jpeg, webp.
    #[arg(long)]
    output_format: Option<String>,
    /// auto or low (OpenAI).
    #[arg(long)]
    moderation: Option<String>,
    /// low or high, for multi-reference edits (OpenAI).
    #[arg(long)]
    input_fidelity: Option<String>,
    /// Denoising steps (local servers; BAGEL timesteps).
    #[arg(long)]
    steps: Option<u32>,
    /// Guidance scale (local servers; BAGEL text CFG).
    #[arg(long)]
    guidance: Option<f32>,
    /// BAGEL timestep shift.
    #[arg(long)]
    shift: Option<f32>,
    /// Seconds before an image or chat request times out (image requests are not retried on a
    /// timeout: they may be billed); 1 to 86400.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Retries of 429/5xx per image or chat request.
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// BAGEL checkpoint folder (with --backend bagel).
    #[arg(long)]
    bagel_model: Option<PathBuf>,
    /// BAGEL device: cpu (flex), ndarray, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,

    /// How images are verified.
    #[arg(long, value_enum, default_value = "none")]
    verify: VerifyChoice,
    /// How the prompt of a misaligned image is rewritten.
    #[arg(long, value_enum, default_value = "none")]
    rewrite: RewriteChoice,
    /// Rewrites per image before it is dropped.
    #[arg(long, default_value_t = 1)]
    max_rewrites: usize,
    /// Chat API base of the judge / rewriter / attribute writer.
    #[arg(long, default_value = DEFAULT_BASE_URL)]
    judge_url: String,
    /// Chat model of the judge / rewriter / attribute writer.
    #[arg(long, default_value = "gpt-4.1")]
    judge_model: String,
    /// Environment variable holding the chat API key, sent as Bearer to --judge-url
    /// [default: OPENAI_API_KEY, and only to api.openai.com].
    #[arg(long)]
    judge_api_key_env: Option<String>,

    /// Prompts in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Most image requests started per minute.
    #[arg(long)]
    rpm: Option<f64>,
    /// Stop once the job holds this many images (all runs together).
    #[arg(long)]
    max_images: Option<usize>,
    /// Stop once the job has spent this many dollars, all runs together (needs --prices).
    #[arg(long)]
    max_cost: Option<f64>,
    /// Prices JSON: {"text_input", "image_input", "image_output", "per_image", "chat_input",
    /// "chat_output", "version"}, dollars per million tokens (per_image: per image).
    #[arg(long)]
    prices: Option<PathBuf>,
    /// Also export every generated image with its original prompt to OUT/dataset-unfiltered.
    #[arg(long)]
    export_unfiltered: bool,
    /// Print sample prompts and the estimated number of requests; send nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(super) fn parse_profile(s: &str) -> Result<Profile, String> {
    Profile::from_name(s).map_err(|e| e.to_string())
}

fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .with_context(|| format!("--size `{s}`: expected WxH"))?;
    Ok((
        w.trim().parse().with_context(|| format!("--size `{s}`"))?,
        h.trim().parse().with_context(|| format!("--size `{s}`"))?,
    ))
}

fn parse_count(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if !(1..=MAX_COUNT).contains(&n) {
        return Err(format!("{n} is outside 1..={MAX_COUNT}"));
    }
    Ok(n)
}

/// The most prompts one job takes: every prompt is held in memory and written to prompts.jsonl.
const MAX_COUNT: usize = 1_000_000;

fn judge(args: &SynthArgs) -> anyhow::Result<OpenAiJudge> {
    let mut config = OpenAiConfig::new(&args.judge_model).with_base_url(&args.judge_url);
    if let Some(var) = &args.judge_api_key_env {
        config = config.with_api_key_env(var);
    }
    if is_openai_host(&args.judge_url) && !config.has_credentials() {
        bail!(
            "the chat model at {} needs an API key: set ${} (or --judge-url for a local server)",
            args.judge_url,
            args.judge_api_key_env
                .as_deref()
                .unwrap_or("OPENAI_API_KEY")
        );
    }
    Ok(OpenAiJudge::new(
        config
            .with_timeout(Duration::from_secs(args.timeout))
            .with_retry(RetryPolicy {
                max_retries: args.retries,
                ..RetryPolicy::default()
            }),
    )?)
}

fn read_lines(path: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .collect())
}

/// The recipe's prompts (chat calls for attributes, labels and rewording included).
async fn prompts(args: &SynthArgs) -> anyhow::Result<Vec<SynthPrompt>> {
    match args.recipe {
        Recipe::Instruction => {
            let mut recipe = InstructionRecipe {
                seed: args.seed,
                max_count: args.max_count,
                prefix: args.prefix.clone(),
                ..Default::default()
            };
            let mix: Vec<f64> = args
                .mix
                .split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--mix `{}`: expected three numbers", args.mix))?;
            recipe.mix = mix
                .try_into()
                .map_err(|_| anyhow::anyhow!("--mix `{}`: expected three numbers", args.mix))?;
            if let Some(path) = &args.objects {
                recipe.objects = read_lines(path)?.into_iter().map(|(_, l)| l).collect();
            }
            Ok(recipe.prompts(args.count)?)
        }
        Recipe::Surreal => {
            let mut recipe = SurrealRecipe {
                seed: args.seed,
                ..Default::default()
            };
            if let Some(path) = &args.objects {
                let mut objects = Vec::new();
                let mut chat = None;
                for (line, text) in read_lines(path)? {
                    if text.starts_with('{') {
                        let o: ObjectAttributes =
                            serde_json::from_str(&text).with_context(|| {
                                format!("{}:{line}: not an attributes object", path.display())
                            })?;
                        objects.push(o);
                    } else {
                        if chat.is_none() {
                            chat = Some(judge(args).with_context(|| {
                                format!("{}:{line}: `{text}` has no attributes, so the judge model constructs them", path.display())
                            })?);
                        }
                        let j = chat.as_ref().context("judge")?;
                        objects.push(construct_attributes(j, &text).await.with_context(|| {
                            format!(
                                "{}:{line}: attribute construction for `{text}`",
                                path.display()
                            )
                        })?);
                    }
                }
                recipe.objects = objects;
            }
            Ok(recipe.prompts(args.count)?)
        }
        Recipe::Multiref => {
            let pool_path = args
                .pool
                .as_ref()
                .context("--recipe multiref needs --pool FILE (a JSONL of reference images)")?;
            let entries = read_pool(pool_path)?;
            let mut pool = Vec::new();
            let mut chat = None;
            for e in entries {
                let mut r = e.reference;
                if !e.labelled {
                    if chat.is_none() {
                        chat = Some(judge(args).with_context(|| {
                            format!(
                                "{}: {} has no label or name, so the judge model labels it",
                                pool_path.display(),
                                r.path.display()
                            )
                        })?);
                    }
                    label_reference(chat.as_ref().context("judge")?, &mut r).await?;
                }
                pool.push(r);
            }
            let mut ps = MultirefRecipe::new(pool, args.seed).prompts(args.count)?;
            if args.reword && !args.dry_run {
                let j = judge(args)?;
                for p in &mut ps {
                    reword(&j, p).await?;
                }
            }
            Ok(ps)
        }
    }
}

fn verifier(args: &SynthArgs) -> anyhow::Result<Option<Arc<dyn Verifier>>> {
    Ok(match args.verify {
        VerifyChoice::None => None,
        VerifyChoice::Checklist => Some(Arc::new(ChecklistVerifier::new(judge(args)?))),
        VerifyChoice::GenevalShapes => {
            if args.recipe != Recipe::Instruction {
                bail!("--verify geneval-shapes needs GenEval metadata: use --recipe instruction");
            }
            Some(Arc::new(GenEvalVerifier {
                detector: ShapesDetector::default(),
                classifier: ShapesColorClassifier,
                config: EngineConfig::default(),
                name: "geneval-rules+shapes".into(),
            }))
        }
    })
}

fn rewriter(args: &SynthArgs) -> anyhow::Result<Option<Arc<dyn Rewriter>>> {
    Ok(match args.rewrite {
        RewriteChoice::None => None,
        RewriteChoice::Chat => Some(Arc::new(ChatRewriter::new(judge(args)?))),
        RewriteChoice::Rules => Some(Arc::new(DetectionRewriter {
            detector: ShapesDetector::default(),
            classifier: ShapesColorClassifier,
            config: EngineConfig::default(),
        })),
    })
}

fn job_config(args: &SynthArgs) -> anyhow::Result<JobConfig> {
    let mut c = JobConfig::new(&args.out);
    c.seed = args.seed;
    c.concurrency = args.concurrency.max(1);
    c.requests_per_minute = args.rpm;
    c.max_images = args.max_images;
    c.max_cost = args.max_cost;
    c.max_rewrites = args.max_rewrites;
    if let Some(p) = &args.prices {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        c.prices = serde_json::from_str::<Prices>(&text)
            .with_context(|| format!("{}: not a prices object", p.display()))?;
    } else if args.max_cost.is_some() {
        bail!("--max-cost needs --prices FILE to compute what a request costs");
    }
    Ok(c)
}

fn bar(quiet: bool, total: usize) -> ProgressBar {
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn describe(s: &Stats) -> String {
    format!(
        "done: {} aligned, {} rewritten, {} unverified, {} dropped, {} refused, {} failed, {} to retry; ${:.4}",
        s.aligned, s.rewritten, s.unverified, s.dropped, s.refused, s.failed, s.retryable, s.cost
    )
}

async fn run_job(
    args: &SynthArgs,
    backend: Arc<dyn SynthBackend>,
    prompts: Vec<SynthPrompt>,
    quiet: bool,
) -> anyhow::Result<()> {
    let config = job_config(args)?;
    let progress = bar(quiet, prompts.len());
    let p2 = progress.clone();
    let mut job = SynthJob::new(config, backend).with_observer(move |s: &Stats| {
        p2.set_position((s.resumed + s.finished) as u64);
        p2.set_message(format!(
            "{} requests, {} rewritten, {} dropped, {} refused, ${:.4}",
            s.requests, s.rewritten, s.dropped, s.refused, s.cost
        ));
    });
    if let Some(v) = verifier(args)? {
        job = job.with_verifier(v);
    }
    if let Some(r) = rewriter(args)? {
        job = job.with_rewriter(r);
    }
    let stats = job.run(prompts).await?;
    progress.finish_and_clear();
    let dataset = args.out.join("dataset");
    let summary = export(&args.out, &dataset, ExportMode::Verified)?;
    if args.export_unfiltered {
        export(
            &args.out,
            &args.out.join("dataset-unfiltered"),
            ExportMode::Unfiltered,
        )?;
    }
    if !quiet {
        println!(
            "{} prompts ({} finished before), {} requests this run",
            stats.total, stats.resumed, stats.requests
        );
        println!("{}", describe(&stats));
        if stats.stopped.is_none() && stats.retryable > 0 {
            println!(
                "{} prompts failed in ways that may pass; rerun the same command to retry them",
                stats.retryable
            );
        }
        for (subset, n) in &summary.written {
            println!("wrote {n} samples to {}", dataset.join(subset).display());
        }
        println!(
            "provenance: {}",
            args.out.join("provenance.jsonl").display()
        );
    }
    // A job that stopped early (quota, key, budget) did not do what was asked: say so in the
    // exit status, after everything it made was exported.
    if let Some(why) = &stats.stopped {
        bail!(
            "stopped early: {why}; what was made is exported; rerun the same command to continue"
        );
    }
    Ok(())
}

fn dry_run(args: &SynthArgs, prompts: &[SynthPrompt]) -> anyhow::Result<()> {
    let done: std::collections::HashSet<String> =
        read_provenance(&args.out.join("provenance.jsonl"))?
            .into_iter()
            .map(|p| p.prompt.id)
            .collect();
    let todo = prompts.iter().filter(|p| !done.contains(&p.id)).count();
    println!(
        "{} prompts ({} already finished in {})",
        prompts.len(),
        prompts.len() - todo,
        args.out.display()
    );
    for p in prompts.iter().take(5) {
        println!("\n[{}] {} / {}", p.id, p.recipe.name(), p.category);
        println!("  prompt:    {}", p.prompt);
        println!("  checklist: {}", p.checklist);
        for (i, r) in p.references.iter().enumerate() {
            println!(
                "  image {}:   {} ({}, {})",
                i + 1,
                r.path.display(),
                r.label.name(),
                r.name
            );
        }
    }
    let images = args.max_images.map_or(todo, |m| todo.min(m));
    let rounds = args.max_rewrites + 1;
    let judge_calls = match args.verify {
        VerifyChoice::Checklist => images * rounds,
        _ => 0,
    };
    let rewrite_calls = match args.rewrite {
        RewriteChoice::Chat => images * args.max_rewrites,
        _ => 0,
    };
    let reword_calls = if args.reword && args.recipe == Recipe::Multiref {
        prompts.len()
    } else {
        0
    };
    println!("\nestimated requests: {images} image requests (plus retries of 429/5xx)");
    if judge_calls + rewrite_calls + reword_calls > 0 {
        println!(
            "  chat requests: up to {judge_calls} verifications, {rewrite_calls} rewrites, {reword_calls} rewordings"
        );
    }
    if let Some(p) = &args.prices {
        let prices: Prices = serde_json::from_str(&std::fs::read_to_string(p)?)
            .with_context(|| format!("{}: not a prices object", p.display()))?;
        if prices.per_image > 0.0 {
            println!(
                "  estimated image cost: ${:.2} at ${} per image",
                images as f64 * prices.per_image,
                prices.per_image
            );
        }
    }
    Ok(())
}

struct BagelJob<'a> {
    args: &'a SynthArgs,
    prompts: Vec<SynthPrompt>,
    quiet: bool,
}

impl BackendTask for BagelJob<'_> {
    type Output = anyhow::Result<()>;

    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let dir = self
            .args
            .bagel_model
            .as_ref()
            .context("--backend bagel needs --bagel-model DIR")?;
        let (w, h) = parse_size(&self.args.size)?;
        let pipeline = BagelPipeline::<B>::load(dir, &device)
            .with_context(|| format!("loading {}", dir.display()))?;
        let name = format!("bagel:{}", dir.display());
        let generator = Arc::new(BagelGenerator::new(pipeline, name));
        let backend = GeneratorBackend::new(generator, w, h).with_sampler(SamplerSettings {
            steps: self.args.steps,
            cfg_text: self.args.guidance,
            cfg_img: None,
            shift: self.args.shift,
            cfg_interval: None,
        });
        let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        runtime.block_on(run_job(
            self.args,
            Arc::new(backend),
            self.prompts,
            self.quiet,
        ))
    }
}

pub fn run(args: SynthArgs, quiet: bool) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let prompts = runtime.block_on(prompts(&args))?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let lines: String = prompts
        .iter()
        .map(|p| serde_json::to_string(p).map(|s| s + "\n"))
        .collect::<Result<_, _>>()?;
    echo4o::core::fs::write_atomic(&args.out.join("prompts.jsonl"), lines.as_bytes())?;
    if args.dry_run {
        return dry_run(&args, &prompts);
    }
    if prompts.iter().any(|p| p.recipe == RecipeKind::Multiref)
        && args.verify == VerifyChoice::GenevalShapes
    {
        bail!("--verify geneval-shapes cannot check multi-reference prompts");
    }
    match args.backend {
        BackendChoice::Openai => {
            let mut config = ImagesConfig::new(&args.model).with_base_url(&args.base_url);
            if let Some(var) = &args.api_key_env {
                config = config.with_api_key_env(var);
            }
            if is_openai_host(&args.base_url) && !config.has_credentials() {
                bail!(
                    "the images API at {} needs an API key: set ${} (or --base-url for a local server)",
                    args.base_url,
                    args.api_key_env.as_deref().unwrap_or("OPENAI_API_KEY")
                );
            }
            let client = ImagesClient::new(
                config
                    .with_profile(args.profile)
                    .with_timeout(Duration::from_secs(args.timeout))
                    .with_retry(RetryPolicy {
                        max_retries: args.retries,
                        ..RetryPolicy::default()
                    }),
            )?;
            let options = ImageOptions {
                size: Some(args.size.clone()),
                quality: args.quality.clone(),
                background: args.background.clone(),
                output_format: args.output_format.clone(),
                moderation: args.moderation.clone(),
                input_fidelity: args.input_fidelity.clone(),
                steps: args.steps,
                guidance_scale: args.guidance,
                ..ImageOptions::default()
            };
            let backend = ImagesBackend::new(client, options);
            runtime.block_on(run_job(&args, Arc::new(backend), prompts, quiet))
        }
        BackendChoice::Bagel => {
            drop(runtime);
            let device = args.device;
            device.run(BagelJob {
                args: &args,
                prompts,
                quiet,
            })?
        }
    }
}
