//! How much concurrent judging buys: all 280 GenEval++ items against a local chat server that
//! answers every request after 200 ms, at concurrency 1 and 16.
//!
//! ```sh
//! cargo run --release --example judge_concurrency
//! ```
//!
//! The server is a real HTTP server on 127.0.0.1 (the one echo4o's tests use); the images are
//! small generated JPEGs, so the figure measures the runner, not the network or a model.

use std::time::{Duration, Instant};

use echo4o::bench::geneval_pp::GenEvalPp;
use echo4o::bench::runner::{NoProgress, RunOptions, run};
use echo4o::core::openai::{OpenAiConfig, OpenAiJudge};
use echo4o_testutil::{MockReply, MockServer};

const LATENCY: Duration = Duration::from_millis(200);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let images = tempfile::tempdir()?;
    for line in 1..=280u32 {
        let img = image::RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([x as u8 * 4, y as u8 * 4, line as u8])
        });
        echo4o::core::save_image(&img, &images.path().join(format!("{line}.jpg")))?;
    }
    let server = MockServer::start(|_, _| {
        MockReply::content(r#"{"correct": 1, "reason": "ok"}"#).after(LATENCY)
    })
    .await;
    let judge = OpenAiJudge::new(OpenAiConfig::new("gpt-4.1").with_base_url(server.base_url()))?;
    let bench = GenEvalPp::official();

    let mut times = Vec::new();
    for concurrency in [1usize, 16] {
        let out = tempfile::tempdir()?;
        let mut opts = RunOptions::new(images.path(), out.path());
        opts.concurrency = concurrency;
        let start = Instant::now();
        let outcome = run(&bench, &judge, &opts, &NoProgress).await?;
        let secs = start.elapsed().as_secs_f64();
        anyhow::ensure!(outcome.summary.scored == 280 && outcome.summary.overall == 1.0);
        println!(
            "concurrency {concurrency:>2}: 280 items in {secs:6.2} s ({:.1} items/s)",
            280.0 / secs
        );
        times.push(secs);
    }
    println!(
        "speed-up 16 vs 1: {:.1}x (ideal 16x at {} ms per request)",
        times[0] / times[1],
        LATENCY.as_millis()
    );
    Ok(())
}
