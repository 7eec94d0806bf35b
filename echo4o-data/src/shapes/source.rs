//! The shapes world as a [`DataSource`]: an endless, deterministic stream of rendered samples
//! drawn from a weighted [`Mix`] of caption recipes.
//!
//! ```
//! use echo4o_data::DataSource;
//! use echo4o_data::shapes::source::{Mix, ShapesSource};
//!
//! let source = ShapesSource::new(Mix::web_plus_echo(), 64, 7).with_len(10);
//! let samples: Vec<_> = source.samples().collect::<Result<_, _>>()?;
//! assert_eq!(samples.len(), 10);
//! assert_eq!(samples[0].target.to_rgb()?.dimensions(), (64, 64));
//! # Ok::<(), echo4o_core::Error>(())
//! ```

use echo4o_core::{DataSource, Result, Sample, SampleImage};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::Layout;
use super::captions::{
    Difficulty, Prompt, echo_instruction, echo_multiref, echo_surreal, web_like,
};
use super::layout::place_in;

/// A caption recipe of the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recipe {
    /// What web alt-text gives ([`web_like`]).
    Web,
    /// Echo-style complete instructions, 1 to 3 attributes.
    InstructionEasy,
    /// 3 to 5 attributes.
    InstructionMedium,
    /// 6 or more.
    InstructionHard,
    /// Echo-style rare shape-color pairs ([`echo_surreal`]).
    Surreal,
    /// Echo-style multi-reference composition ([`echo_multiref`]).
    Multiref,
}

impl Recipe {
    /// The recipe's name (as in configs).
    pub fn name(self) -> &'static str {
        match self {
            Recipe::Web => "web",
            Recipe::InstructionEasy => "instruction_easy",
            Recipe::InstructionMedium => "instruction_medium",
            Recipe::InstructionHard => "instruction_hard",
            Recipe::Surreal => "surreal",
            Recipe::Multiref => "multiref",
        }
    }

    /// The prompt of sample `seed`.
    pub fn prompt(self, seed: u64) -> Prompt {
        match self {
            Recipe::Web => web_like(seed),
            Recipe::InstructionEasy => echo_instruction(seed, Difficulty::Easy),
            Recipe::InstructionMedium => echo_instruction(seed, Difficulty::Medium),
            Recipe::InstructionHard => echo_instruction(seed, Difficulty::Hard),
            Recipe::Surreal => echo_surreal(seed),
            Recipe::Multiref => echo_multiref(seed),
        }
    }
}

/// Recipes with sampling weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mix(pub Vec<(Recipe, f64)>);

impl Mix {
    /// Arm (a) of the experiment: web-like data only.
    pub fn web_only() -> Self {
        Mix(vec![(Recipe::Web, 1.0)])
    }

    /// Arm (b): the same web-like data, plus Echo-style data as half the stream: instructions
    /// (easy, medium, hard), surreal pairs and multi-reference compositions.
    pub fn web_plus_echo() -> Self {
        Mix(vec![
            (Recipe::Web, 0.5),
            (Recipe::InstructionEasy, 0.1),
            (Recipe::InstructionMedium, 0.1),
            (Recipe::InstructionHard, 0.1),
            (Recipe::Surreal, 0.1),
            (Recipe::Multiref, 0.1),
        ])
    }

    fn pick(&self, u: f64) -> Recipe {
        let total: f64 = self.0.iter().map(|(_, w)| w.max(0.0)).sum();
        let mut acc = 0.0;
        for &(r, w) in &self.0 {
            acc += w.max(0.0) / total;
            if u < acc {
                return r;
            }
        }
        self.0.last().map_or(Recipe::Web, |(r, _)| *r)
    }
}

/// Rendered shapes samples from a [`Mix`]: sample `i` is fully determined by `(seed, i)`.
#[derive(Debug, Clone)]
pub struct ShapesSource {
    mix: Mix,
    size: u32,
    layout: Layout,
    seed: u64,
    len: Option<usize>,
}

impl ShapesSource {
    /// An endless source of `size x size` images.
    pub fn new(mix: Mix, size: u32, seed: u64) -> Self {
        ShapesSource {
            mix,
            size,
            layout: Layout::Free,
            seed,
            len: None,
        }
    }

    /// Objects placed by `layout` (references too) instead of anywhere.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// The first `len` samples only.
    pub fn with_len(mut self, len: usize) -> Self {
        self.len = Some(len);
        self
    }

    /// Sample `i`, or `None` when its scene cannot be placed (then the stream skips it).
    pub fn sample(&self, i: u64) -> Option<Sample> {
        let key = self.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ i;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(key);
        let recipe = self.mix.pick(rng.random::<f64>());
        let prompt = recipe.prompt(key);
        let scene = place_in(&prompt.request, self.size, self.size, self.layout, key).ok()?;
        let mut references = Vec::new();
        for (k, r) in prompt.references.iter().enumerate() {
            let s = place_in(r, self.size, self.size, self.layout, key ^ (k as u64 + 1)).ok()?;
            references.push(SampleImage::decoded(
                s.render(),
                format!("shapes:{i}:ref{k}"),
            ));
        }
        let mut sample = Sample::new(
            format!("shapes/{}/{i}", recipe.name()),
            prompt.prompt.clone(),
            SampleImage::decoded(scene.render(), format!("shapes:{i}")),
        );
        sample.references = references;
        sample.subset = Some(recipe.name().to_string());
        sample.metadata = prompt.metadata;
        Some(sample)
    }
}

impl DataSource for ShapesSource {
    fn name(&self) -> String {
        let parts: Vec<String> = self
            .mix
            .0
            .iter()
            .map(|(r, w)| format!("{} {w}", r.name()))
            .collect();
        match self.layout {
            Layout::Free => format!("shapes world ({})", parts.join(", ")),
            Layout::Cells(n) => format!("shapes world in {n}x{n} cells ({})", parts.join(", ")),
        }
    }

    fn len_hint(&self) -> Option<usize> {
        self.len
    }

    fn samples(&self) -> Box<dyn Iterator<Item = Result<Sample>> + Send + '_> {
        let it = (0u64..).filter_map(move |i| self.sample(i)).map(Ok);
        match self.len {
            Some(n) => Box::new(it.take(n)),
            None => Box::new(it),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_follow_their_weights_and_streams_are_deterministic() {
        let s = ShapesSource::new(Mix::web_plus_echo(), 64, 1).with_len(400);
        let subsets: Vec<String> = s.samples().map(|x| x.unwrap().subset.unwrap()).collect();
        let web = subsets.iter().filter(|x| *x == "web").count();
        assert!((150..250).contains(&web), "{web} of 400 web");
        assert!(subsets.iter().any(|x| x == "multiref"));
        let again: Vec<String> = s.samples().map(|x| x.unwrap().id).collect();
        let first: Vec<String> = s.samples().map(|x| x.unwrap().id).collect();
        assert_eq!(again, first);
        let web_only = ShapesSource::new(Mix::web_only(), 64, 1).with_len(50);
        assert!(
            web_only
                .samples()
                .all(|x| x.unwrap().subset.as_deref() == Some("web"))
        );
    }

    #[test]
    fn multiref_samples_carry_their_references() {
        let s = ShapesSource::new(Mix(vec![(Recipe::Multiref, 1.0)]), 64, 3).with_len(5);
        for x in s.samples() {
            let x = x.unwrap();
            assert!((2..=3).contains(&x.references.len()), "{}", x.instruction);
        }
    }
}
