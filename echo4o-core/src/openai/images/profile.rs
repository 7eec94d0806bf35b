//! What each kind of server accepts: the [`Profile`]s, their [`Capabilities`], and the
//! per-request [`ImageOptions`] and [`ReferenceImage`]s they are applied to.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The kind of server behind the base URL; decides which fields are sent and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// OpenAI's API (and faithful proxies): quality, background, moderation, output format and
    /// compression, input fidelity; no seed.
    OpenAi,
    /// stable-diffusion.cpp `sd-server`: prompt, n, size, output format and compression only;
    /// seed, steps, guidance and negative prompt travel inside the prompt as
    /// `<sd_cpp_extra_args>{json}</sd_cpp_extra_args>`.
    SdCpp,
    /// vLLM-Omni (`vllm serve <model> --omni`): `seed`, `num_inference_steps`, `guidance_scale`,
    /// `negative_prompt`; multipart edits.
    VllmOmni,
    /// SGLang diffusion (`sglang serve`): the same extras as vLLM-Omni.
    Sglang,
    /// LocalAI: generations only; references go in `ref_images` as raw base64, steps as `step`;
    /// it answers with URLs unless asked for `b64_json`.
    LocalAi,
}

impl Profile {
    /// Every profile, for help texts.
    pub const ALL: [Profile; 5] = [
        Profile::OpenAi,
        Profile::SdCpp,
        Profile::VllmOmni,
        Profile::Sglang,
        Profile::LocalAi,
    ];

    /// The name used on the command line and in provenance.
    pub fn name(self) -> &'static str {
        match self {
            Profile::OpenAi => "openai",
            Profile::SdCpp => "sd-cpp",
            Profile::VllmOmni => "vllm-omni",
            Profile::Sglang => "sglang",
            Profile::LocalAi => "local-ai",
        }
    }

    /// Parses [`Profile::name`].
    pub fn from_name(name: &str) -> Result<Profile> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                Error::invalid(
                    "profile",
                    format!(
                        "`{name}` is not one of {}",
                        Profile::ALL.map(Profile::name).join(", ")
                    ),
                )
            })
    }

    /// What this server accepts.
    pub fn capabilities(self) -> Capabilities {
        let openai = Capabilities {
            edits: true,
            quality: true,
            background: true,
            moderation: true,
            output_format: true,
            output_compression: true,
            input_fidelity: true,
            extras: Extras::None,
            refs_on_generations: false,
            ask_for_b64: false,
        };
        let minimal = Capabilities {
            quality: false,
            background: false,
            moderation: false,
            output_format: false,
            output_compression: false,
            input_fidelity: false,
            ..openai
        };
        match self {
            Profile::OpenAi => openai,
            Profile::SdCpp => Capabilities {
                output_format: true,
                output_compression: true,
                extras: Extras::InPrompt,
                ..minimal
            },
            Profile::VllmOmni | Profile::Sglang => Capabilities {
                extras: Extras::Fields,
                ..minimal
            },
            Profile::LocalAi => Capabilities {
                edits: false,
                extras: Extras::LocalAi,
                refs_on_generations: true,
                ask_for_b64: true,
                ..minimal
            },
        }
    }
}

/// How a server takes the settings OpenAI has no field for (seed, steps, guidance, negative
/// prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extras {
    /// Not at all: they are left out.
    None,
    /// As top-level fields `seed`, `num_inference_steps`, `guidance_scale`, `negative_prompt`.
    Fields,
    /// JSON inside the prompt, between `<sd_cpp_extra_args>` tags (stable-diffusion.cpp).
    InPrompt,
    /// LocalAI's names: `step` and `negative_prompt` (no seed, no guidance).
    LocalAi,
}

impl Capabilities {
    /// Whether a seed reaches the server (so an image can be reproduced).
    pub fn takes_seed(&self) -> bool {
        matches!(self.extras, Extras::Fields | Extras::InPrompt)
    }
}

/// What a [`Profile`]'s server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `/v1/images/edits` exists (multi-reference requests need it, or `refs_on_generations`).
    pub edits: bool,
    /// `quality`.
    pub quality: bool,
    /// `background`.
    pub background: bool,
    /// `moderation`.
    pub moderation: bool,
    /// `output_format`.
    pub output_format: bool,
    /// `output_compression`.
    pub output_compression: bool,
    /// `input_fidelity` on edits.
    pub input_fidelity: bool,
    /// How seed, steps, guidance and negative prompt are sent.
    pub extras: Extras,
    /// References go on `/generations` as `ref_images` (LocalAI).
    pub refs_on_generations: bool,
    /// Send `response_format: "b64_json"` (servers that answer with URLs by default).
    pub ask_for_b64: bool,
}

/// Per-request settings. `None` fields are never sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageOptions {
    /// `WxH` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Images per request (1-10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// `low`, `medium`, `high`, `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// `transparent`, `opaque`, `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    /// `auto` or `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<String>,
    /// `png`, `jpeg`, `webp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<String>,
    /// 0-100, for jpeg and webp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_compression: Option<u8>,
    /// `low` or `high` (edits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fidelity: Option<String>,
    /// Seed (local servers only; OpenAI has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Denoising steps (local servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Guidance scale (local servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f32>,
    /// Negative prompt (local servers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
}

/// A reference image for an edits request: its encoded bytes and a file name (whose extension
/// gives the MIME type).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceImage {
    /// File name sent with the part, e.g. `ref0.png`.
    pub name: String,
    /// Encoded PNG, JPEG or WebP bytes.
    pub bytes: Vec<u8>,
}

impl ReferenceImage {
    pub(crate) fn mime(&self) -> &'static str {
        let lower = self.name.to_ascii_lowercase();
        if lower.ends_with(".jpg") || lower.ends_with(".jpeg") {
            "image/jpeg"
        } else if lower.ends_with(".webp") {
            "image/webp"
        } else {
            "image/png"
        }
    }
}
