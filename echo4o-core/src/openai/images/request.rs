//! Building a request as the server's [`Profile`] wants it: which fields are sent, which are
//! left out, and where the extras (seed, steps, guidance) go.

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::{Extras, ImageOptions, ImagesConfig, ReferenceImage};
use crate::{Error, Result};

/// A request body before it is sent: JSON fields, and the references for a multipart edit.
pub(crate) struct Prepared {
    pub endpoint: &'static str,
    pub fields: Map<String, Value>,
    /// The references sent as multipart parts (edits); empty when they travel in `fields`.
    pub references: Vec<ReferenceImage>,
    /// How many references the request carries, either way.
    pub n_references: usize,
    pub omitted: Vec<String>,
}

/// The fields that would be sent for this request, per the profile, and the options left out.
/// Errors when references are given to a server that cannot take them.
pub(crate) fn prepare(
    config: &ImagesConfig,
    prompt: &str,
    references: &[ReferenceImage],
    options: &ImageOptions,
) -> Result<Prepared> {
    let caps = config.profile.capabilities();
    let mut fields = Map::new();
    let mut omitted = Vec::new();
    let mut prompt = prompt.to_string();
    fields.insert("model".into(), json!(config.model));
    let mut put = |name: &str, allowed: bool, value: Option<Value>, fields: &mut Map<_, _>| {
        if let Some(v) = value {
            if allowed {
                fields.insert(name.to_string(), v);
            } else {
                omitted.push(name.to_string());
            }
        }
    };
    let edits = !references.is_empty() && !caps.refs_on_generations;
    if !references.is_empty() && !caps.edits && !caps.refs_on_generations {
        return Err(Error::invalid(
            "references",
            format!(
                "the {} profile has no multi-image endpoint",
                config.profile.name()
            ),
        ));
    }
    put("n", true, options.n.map(|v| json!(v)), &mut fields);
    put(
        "size",
        true,
        options.size.clone().map(Value::from),
        &mut fields,
    );
    put(
        "quality",
        caps.quality,
        options.quality.clone().map(Value::from),
        &mut fields,
    );
    put(
        "background",
        caps.background,
        options.background.clone().map(Value::from),
        &mut fields,
    );
    put(
        "moderation",
        caps.moderation,
        options.moderation.clone().map(Value::from),
        &mut fields,
    );
    put(
        "output_format",
        caps.output_format,
        options.output_format.clone().map(Value::from),
        &mut fields,
    );
    put(
        "output_compression",
        caps.output_compression,
        options.output_compression.map(|v| json!(v)),
        &mut fields,
    );
    put(
        "input_fidelity",
        caps.input_fidelity && edits,
        options.input_fidelity.clone().map(Value::from),
        &mut fields,
    );
    let extras = [
        ("seed", options.seed.map(|v| json!(v))),
        ("steps", options.steps.map(|v| json!(v))),
        ("guidance_scale", options.guidance_scale.map(|v| json!(v))),
        (
            "negative_prompt",
            options.negative_prompt.clone().map(Value::from),
        ),
    ];
    match caps.extras {
        Extras::None => {
            for (name, v) in extras {
                put(name, false, v, &mut fields);
            }
        }
        Extras::Fields | Extras::LocalAi => {
            for (name, v) in extras {
                let wire = match (caps.extras, name) {
                    (Extras::Fields, "steps") => "num_inference_steps",
                    (Extras::LocalAi, "steps") => "step",
                    (Extras::LocalAi, "guidance_scale" | "seed") => {
                        put(name, false, v, &mut fields);
                        continue;
                    }
                    _ => name,
                };
                put(wire, true, v, &mut fields);
            }
        }
        Extras::InPrompt => {
            let mut args = Map::new();
            for (name, v) in extras {
                let wire = match name {
                    "steps" => "sample_steps",
                    "guidance_scale" => "cfg_scale",
                    other => other,
                };
                if let Some(v) = v {
                    args.insert(wire.into(), v);
                }
            }
            if !args.is_empty() {
                prompt = format!(
                    "{prompt}<sd_cpp_extra_args>{}</sd_cpp_extra_args>",
                    Value::Object(args)
                );
            }
        }
    }
    if caps.ask_for_b64 {
        fields.insert("response_format".into(), json!("b64_json"));
    }
    if !references.is_empty() && caps.refs_on_generations {
        let b64 = &base64::engine::general_purpose::STANDARD;
        fields.insert(
            "ref_images".into(),
            Value::Array(
                references
                    .iter()
                    .map(|r| Value::from(b64.encode(&r.bytes)))
                    .collect(),
            ),
        );
    }
    fields.insert("prompt".into(), json!(prompt));
    Ok(Prepared {
        endpoint: if edits { "edits" } else { "generations" },
        fields,
        references: if edits { references.to_vec() } else { vec![] },
        n_references: references.len(),
        omitted,
    })
}
