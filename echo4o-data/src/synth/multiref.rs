//! The multi-reference recipe: a pool of reference images labelled human / object / scene,
//! sampled combinations of 2 to 4 of them, an explicit instruction saying which element of each
//! image to take and how to combine them, then a rewording pass for diversity (templates offline,
//! or a chat model via [`reword`]).
//!
//! The pool is a JSONL manifest, one reference per line:
//! `{"path": "refs/woman.jpg", "label": "human", "name": "a woman in a red coat",
//! "licence": "CC-BY-4.0", "source": "https://..."}`; paths are relative to the manifest. A line
//! without `label` or `name` can be filled in by a vision chat model ([`label_reference`]).

use std::path::{Path, PathBuf};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{RecipeKind, RefLabel, Reference, SynthPrompt};
use crate::shapes::captions::join;
use crate::{Error, Result};
use echo4o_core::{ChatMessage, ContentPart, Judge, JudgeRequest, Role};

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolLine {
    path: PathBuf,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    licence: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// A pool entry before labelling: label and name may still be missing.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolEntry {
    /// The reference, with `label`/`name` filled when the manifest gave them.
    pub reference: Reference,
    /// Whether the manifest gave a label and a name.
    pub labelled: bool,
}

/// Reads a pool manifest. Every line's image must exist; errors name the file and line.
pub fn read_pool(manifest: &Path) -> Result<Vec<PoolEntry>> {
    let text = std::fs::read_to_string(manifest).map_err(|e| Error::io(manifest, e))?;
    let base = manifest.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| Error::Line {
            path: manifest.to_path_buf(),
            line: i + 1,
            message,
        };
        let l: PoolLine = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let path = base.join(&l.path);
        let bytes = std::fs::read(&path).map_err(|e| at(format!("{}: {e}", path.display())))?;
        echo4o_core::decode_image(&bytes, &path.display().to_string())
            .map_err(|e| at(e.to_string()))?;
        let label = match l.label.as_deref() {
            Some(s) => Some(
                RefLabel::from_name(s)
                    .ok_or_else(|| at(format!("label `{s}` is not human, object or scene")))?,
            ),
            None => None,
        };
        let labelled = label.is_some() && l.name.as_deref().is_some_and(|n| !n.trim().is_empty());
        out.push(PoolEntry {
            reference: Reference {
                path,
                label: label.unwrap_or(RefLabel::Object),
                name: l.name.unwrap_or_default(),
                sha256: sha256_hex(&bytes),
                licence: l.licence,
                source: l.source,
                labelled_by: None,
            },
            labelled,
        });
    }
    Ok(out)
}

/// Labels one reference with a vision chat model: human, object or scene, and a short name.
pub async fn label_reference(
    judge: &dyn Judge,
    reference: &mut Reference,
) -> echo4o_core::Result<()> {
    let img = echo4o_core::load_image(&reference.path)?;
    let url = format!("data:image/jpeg;base64,{}", echo4o_core::jpeg_base64(&img)?);
    let messages = vec![ChatMessage::parts(
        Role::User,
        vec![
            ContentPart::image_url(url),
            ContentPart::text(
                "Is the main subject of this image a human, an object or a scene? Name it in a \
                 short noun phrase (\"a woman in a red coat\", \"a wooden rocking chair\", \"a \
                 snowy mountain village\"). Answer as {\"label\": \"human|object|scene\", \"name\": \"...\"}.",
            ),
        ],
    )];
    #[derive(Deserialize)]
    struct Label {
        label: String,
        name: String,
    }
    let what = format!("label of {}", reference.path.display());
    let (l, _): (Label, _) = super::verify::ask_json(judge, messages, 100, &what).await?;
    let bad = |m: String| echo4o_core::Error::invalid(&what, m);
    reference.label =
        RefLabel::from_name(&l.label).ok_or_else(|| bad(format!("label `{}`", l.label)))?;
    reference.name = l.name;
    reference.labelled_by = Some(judge.model());
    Ok(())
}

/// Settings of the multi-reference recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct MultirefRecipe {
    /// The labelled pool.
    pub pool: Vec<Reference>,
    /// Fewest references per prompt (at least 2). By default 2.
    pub min_refs: usize,
    /// Most references per prompt (at most 4). By default 4.
    pub max_refs: usize,
    /// Seed of every draw.
    pub seed: u64,
}

impl MultirefRecipe {
    /// A recipe over `pool` with 2 to 4 references per prompt.
    pub fn new(pool: Vec<Reference>, seed: u64) -> Self {
        MultirefRecipe {
            pool,
            min_refs: 2,
            max_refs: 4,
            seed,
        }
    }

    /// `n` prompts, ids `multiref-000000`...; prompt `i` does not depend on `n`. Each uses at
    /// most one scene (the setting); the others are people and objects.
    pub fn prompts(&self, n: usize) -> Result<Vec<SynthPrompt>> {
        let lo = self.min_refs.max(2);
        let hi = self.max_refs.min(4);
        let subjects = self
            .pool
            .iter()
            .filter(|r| r.label != RefLabel::Scene)
            .count();
        let scenes = self.pool.len() - subjects;
        if lo > hi || subjects + scenes.min(1) < lo || subjects < 1 {
            return Err(echo4o_core::Error::invalid(
                "multiref recipe",
                format!(
                    "a pool of {subjects} people/objects and {scenes} scenes cannot make {lo} to {hi} references per prompt"
                ),
            )
            .into());
        }
        Ok((0..n).map(|i| self.prompt(i, lo, hi)).collect())
    }

    fn prompt(&self, i: usize, lo: usize, hi: usize) -> SynthPrompt {
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.seed ^ 0x6d75_6c74 ^ (i as u64).wrapping_mul(0x9e37_79b9),
        );
        let subjects: Vec<&Reference> = self
            .pool
            .iter()
            .filter(|r| r.label != RefLabel::Scene)
            .collect();
        let scenes: Vec<&Reference> = self
            .pool
            .iter()
            .filter(|r| r.label == RefLabel::Scene)
            .collect();
        let k = rng.random_range(lo..=hi);
        let use_scene = !scenes.is_empty() && (subjects.len() < k || rng.random_bool(0.5));
        let n_subjects = (if use_scene { k - 1 } else { k }).min(subjects.len());
        let mut refs: Vec<Reference> = subjects
            .choose_multiple(&mut rng, n_subjects)
            .map(|r| (*r).clone())
            .collect();
        refs.shuffle(&mut rng);
        refs.sort_by_key(|r| r.label);
        if use_scene && let Some(s) = scenes.choose(&mut rng) {
            refs.push((*s).clone());
        }
        let mut labels: Vec<&str> = refs.iter().map(|r| r.label.name()).collect();
        labels.sort();
        let category = labels.join("+");
        let element = |(j, r): (usize, &Reference)| {
            format!("{} from image {}", strip_article(&r.name), j + 1)
        };
        let subjects_text: Vec<String> = refs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.label != RefLabel::Scene)
            .map(element)
            .collect();
        let scene = refs
            .iter()
            .enumerate()
            .find(|(_, r)| r.label == RefLabel::Scene)
            .map(|(j, r)| (j + 1, strip_article(&r.name)));
        let list = join(
            &subjects_text
                .iter()
                .map(|s| format!("the {s}"))
                .collect::<Vec<_>>(),
        );
        let variant = rng.random_range(0..3);
        let prompt = match (scene, variant) {
            (Some((j, s)), 0) => format!(
                "Place {list} in the {s} of image {j}, keeping each one's appearance unchanged."
            ),
            (Some((j, s)), 1) => format!(
                "Using the {s} of image {j} as the setting, show {list} together, exactly as they look in their images."
            ),
            (Some((j, s)), _) => format!(
                "Compose one photo: {list}, set in the {s} shown in image {j}; keep faces, colors and shapes as in the references."
            ),
            (None, 0) => format!(
                "Combine {list} in one natural photo, keeping each one's appearance unchanged."
            ),
            (None, 1) => format!(
                "Show {list} together in a single scene, exactly as they look in their images."
            ),
            (None, _) => format!(
                "Compose one photo with {list}; keep faces, colors and shapes as in the references."
            ),
        };
        let checklist = refs
            .iter()
            .enumerate()
            .map(|(j, r)| match r.label {
                RefLabel::Scene => format!(
                    "the setting is the {} of image {}",
                    strip_article(&r.name),
                    j + 1
                ),
                _ => format!(
                    "the {} of image {} appears, recognisably the same",
                    strip_article(&r.name),
                    j + 1
                ),
            })
            .collect::<Vec<_>>()
            .join("; ");
        SynthPrompt {
            id: format!("multiref-{i:06}"),
            recipe: RecipeKind::Multiref,
            category,
            template: format!("multiref/compose-{variant}@1"),
            attributes: json!({"references": refs.iter().map(|r| json!({"label": r.label, "name": r.name})).collect::<Vec<_>>()}),
            prompt,
            metadata: None,
            checklist: format!("One image in which {checklist}."),
            written_by: std::iter::once("template".to_string())
                .chain(
                    refs.iter()
                        .filter_map(|r| r.labelled_by.as_ref())
                        .map(|m| format!("labels:{m}")),
                )
                .collect(),
            references: refs,
        }
    }
}

fn strip_article(name: &str) -> &str {
    let n = name.trim();
    for a in ["a ", "an ", "the ", "A ", "An ", "The "] {
        if let Some(rest) = n.strip_prefix(a) {
            return rest;
        }
    }
    n
}

/// The rewording pass by a chat model: rewrites the instruction for diversity and clarity. The
/// new text is kept only if it still names every `image N` the original names; otherwise the
/// original stays. Returns whether the prompt changed.
pub async fn reword(judge: &dyn Judge, prompt: &mut SynthPrompt) -> echo4o_core::Result<bool> {
    let request = JudgeRequest {
        messages: vec![ChatMessage::text(
            Role::User,
            format!(
                "Rewrite this image-composition instruction in different words, clear and natural. \
                 Keep every reference to \"image 1\", \"image 2\", ... exactly, and keep what is taken \
                 from each image. Answer with the instruction only.\n\n{}",
                prompt.prompt
            ),
        )],
        temperature: Some(0.7),
        max_tokens: Some(200),
    };
    let reply = judge.complete(&request).await?;
    let text = reply.text.trim().trim_matches('"').trim();
    let keeps_refs = (1..=prompt.references.len()).all(|j| text.contains(&format!("image {j}")));
    if text.is_empty() || !keeps_refs {
        return Ok(false);
    }
    prompt.prompt = text.to_string();
    prompt
        .written_by
        .push(format!("reworded:{}", judge.model()));
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pool() -> Vec<Reference> {
        let mk = |label, name: &str| Reference {
            path: PathBuf::from(format!("{name}.png")),
            label,
            name: name.into(),
            sha256: sha256_hex(name.as_bytes()),
            licence: None,
            source: None,
            labelled_by: None,
        };
        vec![
            mk(RefLabel::Human, "a woman in a red coat"),
            mk(RefLabel::Human, "an old fisherman"),
            mk(RefLabel::Object, "a wooden rocking chair"),
            mk(RefLabel::Object, "a blue bicycle"),
            mk(RefLabel::Scene, "a snowy mountain village"),
            mk(RefLabel::Scene, "a beach at sunset"),
        ]
    }

    proptest! {
        /// Every prompt names each of its references as `image N` in order, uses 2 to 4 of
        /// them, at most one scene, and its category lists their labels.
        #[test]
        fn prompts_name_every_reference(seed in 0u64..5000, i in 0usize..50) {
            let r = MultirefRecipe::new(pool(), seed);
            let p = r.prompts(i + 1).unwrap().pop().unwrap();
            prop_assert!((2..=4).contains(&p.references.len()));
            prop_assert!(p.references.iter().filter(|r| r.label == RefLabel::Scene).count() <= 1);
            for (j, rf) in p.references.iter().enumerate() {
                prop_assert!(p.prompt.contains(&format!("image {}", j + 1)), "{}", p.prompt);
                prop_assert!(p.prompt.contains(strip_article(&rf.name)), "{}", p.prompt);
                prop_assert!(p.category.contains(rf.label.name()));
            }
        }
    }

    #[test]
    fn a_pool_too_small_is_refused() {
        let one = vec![pool()[4].clone()];
        assert!(MultirefRecipe::new(one, 0).prompts(1).is_err());
    }
}
