//! The surreal-fantasy recipe, as Echo-4o describes it: "attribute construction" (an object's
//! regular color, size, material and structure), then "conceptual deflection" away from them:
//! attribute shift (color, size), hybridization (material, combination with another object),
//! spatiotemporal anomaly (impossible environment or era), and multi-object scenes of several
//! deflected objects. Each prompt carries an Imagine-Bench-style checklist note and the
//! Imagine-Bench type (`COLOR`, `SIZE`, `MATERIAL`, `COMBINATION`, `ENVIRONMENT`, `TIME`,
//! `Multi-Object`) as its category.
//!
//! A built-in table covers a default object list offline; [`construct_attributes`] asks a chat
//! model for any other object.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{RecipeKind, SynthPrompt};
use crate::shapes::captions::article;
use echo4o_core::{ChatMessage, Judge, Role};

/// An object's regular attributes: what deflection departs from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectAttributes {
    /// The object ("banana").
    pub object: String,
    /// Its usual color (`colour` is read too: files written before the spelling was unified).
    #[serde(alias = "colour")]
    pub color: String,
    /// Its usual size ("hand-sized").
    pub size: String,
    /// What it is usually made of.
    pub material: String,
    /// Its usual structure or shape.
    pub structure: String,
    /// The chat model that constructed these attributes (`None`: the built-in table or the
    /// user's file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constructed_by: Option<String>,
}

/// The built-in attribute table (COCO objects).
pub fn builtin_attributes() -> Vec<ObjectAttributes> {
    const TABLE: [(&str, &str, &str, &str, &str); 24] = [
        (
            "banana",
            "yellow",
            "hand-sized",
            "soft fruit flesh",
            "a curved, elongated peel",
        ),
        (
            "apple",
            "red",
            "fist-sized",
            "crisp fruit flesh",
            "a round body with a short stem",
        ),
        (
            "orange",
            "orange",
            "fist-sized",
            "juicy fruit flesh",
            "a round, dimpled peel",
        ),
        (
            "broccoli",
            "green",
            "hand-sized",
            "vegetable stalks",
            "a tree-like head of florets",
        ),
        (
            "carrot",
            "orange",
            "hand-length",
            "root vegetable",
            "a long tapering root",
        ),
        (
            "cake",
            "white",
            "plate-sized",
            "sponge and frosting",
            "round layered tiers",
        ),
        (
            "cup",
            "white",
            "palm-sized",
            "ceramic",
            "a cylinder with a handle",
        ),
        (
            "clock",
            "white",
            "plate-sized",
            "plastic and glass",
            "a round face with two hands",
        ),
        (
            "vase",
            "blue",
            "knee-high",
            "glazed ceramic",
            "a narrow neck and a round belly",
        ),
        (
            "chair",
            "brown",
            "knee-high seat",
            "wood",
            "four legs, a seat and a backrest",
        ),
        (
            "umbrella",
            "black",
            "arm-span wide",
            "waterproof fabric",
            "a dome on a thin shaft",
        ),
        (
            "bicycle",
            "black",
            "person-sized",
            "steel",
            "two wheels joined by a frame",
        ),
        (
            "car",
            "silver",
            "several metres long",
            "painted steel",
            "a box body on four wheels",
        ),
        (
            "boat",
            "white",
            "several metres long",
            "fibreglass",
            "a hull that floats",
        ),
        (
            "bird",
            "brown",
            "palm-sized",
            "feathers",
            "two wings and a beak",
        ),
        ("cat", "grey", "knee-high", "fur", "four legs and a tail"),
        (
            "dog",
            "brown",
            "knee-high",
            "fur",
            "four legs, floppy ears and a tail",
        ),
        (
            "horse",
            "brown",
            "taller than a person",
            "hair and muscle",
            "four long legs and a mane",
        ),
        (
            "elephant",
            "grey",
            "as tall as a house",
            "thick skin",
            "a trunk and large ears",
        ),
        (
            "giraffe",
            "yellow with brown patches",
            "taller than a tree",
            "patterned hide",
            "a very long neck",
        ),
        (
            "teddy bear",
            "brown",
            "arm-sized",
            "plush fabric",
            "a stuffed bear with round ears",
        ),
        (
            "book",
            "blue",
            "hand-sized",
            "paper",
            "bound rectangular pages",
        ),
        (
            "laptop",
            "silver",
            "lap-sized",
            "aluminium",
            "a hinged screen and keyboard",
        ),
        (
            "toothbrush",
            "white",
            "hand-length",
            "plastic and nylon",
            "a thin handle with bristles",
        ),
    ];
    TABLE
        .iter()
        .map(
            |&(object, color, size, material, structure)| ObjectAttributes {
                object: object.into(),
                color: color.into(),
                size: size.into(),
                material: material.into(),
                structure: structure.into(),
                constructed_by: None,
            },
        )
        .collect()
}

const COLORS: [&str; 10] = echo4o_core::vocab::GENEVAL_COLORS;
const MATERIALS: [&str; 10] = [
    "crystal",
    "glass",
    "wood",
    "polished metal",
    "ice",
    "paper",
    "stone",
    "knitted wool",
    "chocolate",
    "jelly",
];
const ENVIRONMENTS: [&str; 6] = [
    "floating in outer space",
    "resting on the ocean floor among coral",
    "standing on the surface of the moon",
    "growing out of a desert dune",
    "hovering above the clouds",
    "inside a soap bubble",
];
const ERAS: [&str; 5] = [
    "painted on an ancient Egyptian tomb wall",
    "in a medieval castle courtyard, lit by torches",
    "in a prehistoric cave beside dinosaurs",
    "in a 1920s black-and-white film scene",
    "in a futuristic neon city of the year 3000",
];

/// The deflection families and their Imagine-Bench types.
const KINDS: [&str; 7] = [
    "COLOR",
    "SIZE",
    "MATERIAL",
    "COMBINATION",
    "ENVIRONMENT",
    "TIME",
    "Multi-Object",
];

/// Settings of the surreal recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct SurrealRecipe {
    /// Objects and their regular attributes. By default [`builtin_attributes`].
    pub objects: Vec<ObjectAttributes>,
    /// Seed of every draw.
    pub seed: u64,
}

impl Default for SurrealRecipe {
    fn default() -> Self {
        SurrealRecipe {
            objects: builtin_attributes(),
            seed: 0,
        }
    }
}

/// One deflected object: its phrase and its checklist line.
fn deflect(
    rng: &mut ChaCha8Rng,
    o: &ObjectAttributes,
    kind: &str,
    other: &ObjectAttributes,
) -> (String, String) {
    let name = &o.object;
    match kind {
        "COLOR" => {
            let c = loop {
                let c = *COLORS.choose(rng).unwrap_or(&"blue");
                if !o.color.contains(c) {
                    break c;
                }
            };
            (
                format!("{} {c} {name}", article(c)),
                format!(
                    "the {name} is entirely {c}, not its usual {}; otherwise a normal {name}",
                    o.color
                ),
            )
        }
        "SIZE" => {
            if rng.random_bool(0.5) {
                (
                    format!("a giant {name}, towering over the houses around it"),
                    format!(
                        "the {name} is enormous (its usual size is {}), larger than the buildings",
                        o.size
                    ),
                )
            } else {
                (
                    format!("a tiny {name} standing on a fingertip"),
                    format!(
                        "the {name} is tiny (its usual size is {}), small enough to stand on a fingertip",
                        o.size
                    ),
                )
            }
        }
        "MATERIAL" => {
            let m = loop {
                let m = *MATERIALS.choose(rng).unwrap_or(&"glass");
                if !o.material.contains(m) {
                    break m;
                }
            };
            (
                format!("{} {name} made of {m}", article(name)),
                format!(
                    "the {name} keeps its shape ({}) but is made of {m}, not {}",
                    o.structure, o.material
                ),
            )
        }
        "COMBINATION" => (
            format!("{} {name} with {}", article(name), other.structure),
            format!(
                "a single hybrid object: a recognisable {name} that has {} of a {}",
                other.structure, other.object
            ),
        ),
        "ENVIRONMENT" => {
            let e = *ENVIRONMENTS.choose(rng).unwrap_or(&ENVIRONMENTS[0]);
            (
                format!("{} {name} {e}", article(name)),
                format!("an ordinary {name}, {e}; the setting is clearly visible"),
            )
        }
        _ => {
            let e = *ERAS.choose(rng).unwrap_or(&ERAS[0]);
            (
                format!("{} {name} {e}", article(name)),
                format!("a modern {name} placed anachronistically {e}"),
            )
        }
    }
}

impl SurrealRecipe {
    /// `n` prompts, ids `surreal-000000`...; prompt `i` does not depend on `n`.
    pub fn prompts(&self, n: usize) -> crate::Result<Vec<SynthPrompt>> {
        if self.objects.len() < 2 {
            return Err(echo4o_core::Error::invalid(
                "surreal recipe",
                "needs at least two objects with attributes",
            )
            .into());
        }
        Ok((0..n).map(|i| self.prompt(i)).collect())
    }

    fn prompt(&self, i: usize) -> SynthPrompt {
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.seed ^ 0x5eed_0000 ^ (i as u64).wrapping_mul(0x9e37_79b9),
        );
        let kind = KINDS[i % KINDS.len()];
        let pick = |rng: &mut ChaCha8Rng| {
            let a = rng.random_range(0..self.objects.len());
            let mut b = rng.random_range(0..self.objects.len() - 1);
            if b >= a {
                b += 1;
            }
            (a, b)
        };
        let (a, b) = pick(&mut rng);
        let (oa, ob) = (&self.objects[a], &self.objects[b]);
        let (prompt, checklist, objects) = if kind == "Multi-Object" {
            let k1 = KINDS[rng.random_range(0..4)];
            let k2 = KINDS[rng.random_range(0..4)];
            let (p1, c1) = deflect(&mut rng, oa, k1, ob);
            let (p2, c2) = deflect(&mut rng, ob, k2, oa);
            (
                format!("A photo of {p1} next to {p2}"),
                format!("Two objects: {c1}; and {c2}."),
                vec![oa.clone(), ob.clone()],
            )
        } else {
            let (p, c) = deflect(&mut rng, oa, kind, ob);
            let mut objects = vec![oa.clone()];
            if kind == "COMBINATION" {
                objects.push(ob.clone());
            }
            (
                format!("A photo of {p}"),
                format!("{}{}.", c[..1].to_uppercase(), &c[1..]),
                objects,
            )
        };
        SynthPrompt {
            id: format!("surreal-{i:06}"),
            recipe: RecipeKind::Surreal,
            category: kind.into(),
            template: format!("surreal/{}@1", kind.to_ascii_lowercase()),
            attributes: json!({"kind": kind, "objects": objects}),
            prompt,
            metadata: None,
            checklist,
            references: vec![],
            written_by: std::iter::once("template".to_string())
                .chain(
                    objects
                        .iter()
                        .filter_map(|o| o.constructed_by.as_ref())
                        .map(|m| format!("attributes:{m}")),
                )
                .collect(),
        }
    }
}

/// Attribute construction by a chat model: asks `judge` for `object`'s regular color, size,
/// material and structure as JSON.
pub async fn construct_attributes(
    judge: &dyn Judge,
    object: &str,
) -> echo4o_core::Result<ObjectAttributes> {
    let messages = vec![
        ChatMessage::text(
            Role::System,
            "You describe everyday objects. Answer with one JSON object and nothing else.",
        ),
        ChatMessage::text(
            Role::User,
            format!(
                "List the regular attributes of a typical {object}: its usual color, its usual size, \
                 what it is usually made of, and its structure or shape. Answer as \
                 {{\"color\": \"...\", \"size\": \"...\", \"material\": \"...\", \"structure\": \"...\"}}."
            ),
        ),
    ];
    #[derive(Deserialize)]
    struct Attrs {
        #[serde(alias = "colour")]
        color: String,
        size: String,
        material: String,
        structure: String,
    }
    let (a, _): (Attrs, _) =
        super::verify::ask_json(judge, messages, 200, "attribute construction reply").await?;
    Ok(ObjectAttributes {
        object: object.to_string(),
        color: a.color,
        size: a.size,
        material: a.material,
        structure: a.structure,
        constructed_by: Some(judge.model()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_appears_and_prompts_are_deterministic() {
        let r = SurrealRecipe {
            seed: 1,
            ..Default::default()
        };
        let ps = r.prompts(14).unwrap();
        for k in KINDS {
            assert!(ps.iter().any(|p| p.category == k), "{k}");
        }
        assert_eq!(r.prompts(14).unwrap(), ps);
    }

    proptest! {
        /// The prompt names each object in its attributes, a color shift never repeats the
        /// usual color, and the checklist names the objects too.
        #[test]
        fn prompts_name_their_objects(seed in 0u64..5000, i in 0usize..100) {
            let r = SurrealRecipe { seed, ..Default::default() };
            let p = r.prompt(i);
            for o in p.attributes["objects"].as_array().unwrap() {
                let name = o["object"].as_str().unwrap();
                prop_assert!(p.checklist.contains(name), "{} / {}", p.checklist, name);
                if p.category != "COMBINATION" {
                    prop_assert!(p.prompt.contains(name), "{} / {}", p.prompt, name);
                }
            }
            if p.category == "COLOR" {
                let usual = p.attributes["objects"][0]["color"].as_str().unwrap();
                let said = p.prompt.split_whitespace().nth(4).unwrap();
                prop_assert!(!usual.contains(said), "{}", p.prompt);
            }
        }
    }
}
