//! "No invalid images, only invalid prompts": a [`Verifier`] checks each image against its prompt;
//! on a mismatch a [`Rewriter`] writes the prompt the image does satisfy, which is verified again.
//!
//! Built in here: [`ChecklistVerifier`] and [`ChatRewriter`], both over any vision chat model (a
//! [`Judge`]). `echo4o-bench` adds the GenEval rule engine as a verifier and a rule-based rewriter
//! from detections (for detector-verified data such as the shapes world).

use async_trait::async_trait;
use echo4o_core::{ChatMessage, ContentPart, Judge, JudgeRequest, Role, Usage};
use image::RgbImage;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::SynthPrompt;

/// What a verifier sees: the prompt as it stands (original or rewritten) and the image.
#[derive(Debug, Clone, Copy)]
pub struct VerifyInput<'a> {
    /// The prompt the recipe wrote (references, category, checklist).
    pub original: &'a SynthPrompt,
    /// The text being checked.
    pub prompt: &'a str,
    /// Its GenEval-form metadata, when it has one.
    pub metadata: Option<&'a Map<String, Value>>,
    /// Its checklist note.
    pub checklist: &'a str,
    /// The image.
    pub image: &'a RgbImage,
}

/// A verifier's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    /// The image satisfies the prompt.
    pub aligned: bool,
    /// Why not (or what was checked).
    pub reasons: Vec<String>,
    /// What the verifier measured (detections, the judge's raw reply).
    #[serde(default)]
    pub evidence: Value,
    /// Tokens a chat model spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A rewritten prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rewrite {
    /// The new text.
    pub prompt: String,
    /// Its metadata, when the rewriter can state it (rule-based rewrites do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Tokens a chat model spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// Checks an image against its prompt.
#[async_trait]
pub trait Verifier: Send + Sync {
    /// Name for provenance (`geneval-rules+shapes`, `checklist:gpt-4.1`).
    fn name(&self) -> String;
    /// The verdict.
    async fn verify(&self, input: &VerifyInput<'_>) -> echo4o_core::Result<Verification>;
}

/// Writes the prompt an image does satisfy.
#[async_trait]
pub trait Rewriter: Send + Sync {
    /// Name for provenance.
    fn name(&self) -> String;
    /// A prompt `input.image` satisfies, given the verifier's verdict; `None` when it cannot say.
    async fn rewrite(
        &self,
        input: &VerifyInput<'_>,
        verdict: &Verification,
    ) -> echo4o_core::Result<Option<Rewrite>>;
    /// A prompt the safety system may accept, keeping the attributes of one it refused (the
    /// instruction recipe rewrites a refused prompt once). By default `None`: drop it.
    async fn rewrite_refused(
        &self,
        _prompt: &SynthPrompt,
        _reason: &str,
    ) -> echo4o_core::Result<Option<Rewrite>> {
        Ok(None)
    }
}

fn image_part(image: &RgbImage) -> echo4o_core::Result<ContentPart> {
    Ok(ContentPart::image_url(format!(
        "data:image/jpeg;base64,{}",
        echo4o_core::jpeg_base64(image)?
    )))
}

/// The outermost `{...}` of a chat reply (models wrap JSON in prose or code fences).
fn json_object(text: &str) -> Option<&str> {
    let s = text.find('{')?;
    let e = text.rfind('}')?;
    (e > s).then(|| &text[s..=e])
}

/// Asks `judge` (temperature 0) and parses the JSON object in its reply as `T`; `what` names the
/// reply in the error, which quotes the start of the text.
pub(crate) async fn ask_json<T: serde::de::DeserializeOwned>(
    judge: &dyn Judge,
    messages: Vec<ChatMessage>,
    max_tokens: u32,
    what: &str,
) -> echo4o_core::Result<(T, echo4o_core::JudgeReply)> {
    let request = JudgeRequest {
        messages,
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
    };
    let reply = judge.complete(&request).await?;
    let text = reply.text.trim();
    let parsed = serde_json::from_str(json_object(text).unwrap_or(text)).map_err(|e| {
        echo4o_core::Error::invalid(
            what,
            format!("{e}: {}", text.chars().take(300).collect::<String>()),
        )
    })?;
    Ok((parsed, reply))
}

/// A GenEval++-style checklist judge over any vision chat model: the image, the prompt and its
/// checklist, and a JSON verdict `{"aligned": bool, "reasons": [...]}`.
pub struct ChecklistVerifier<J> {
    judge: J,
}

impl<J: Judge> ChecklistVerifier<J> {
    /// A verifier asking `judge`.
    pub fn new(judge: J) -> Self {
        ChecklistVerifier { judge }
    }
}

/// The system prompt of [`ChecklistVerifier`].
pub const CHECKLIST_SYSTEM: &str = "You are a strict judge of text-to-image alignment. Check the \
image against every item of the checklist: objects, counts, colors, sizes, positions, materials, \
settings. Answer with one JSON object: {\"aligned\": true or false, \"reasons\": [\"one short \
line per item that fails\"]}. aligned is true only if every item holds.";

#[async_trait]
impl<J: Judge> Verifier for ChecklistVerifier<J> {
    fn name(&self) -> String {
        format!("checklist:{}", self.judge.model())
    }

    async fn verify(&self, input: &VerifyInput<'_>) -> echo4o_core::Result<Verification> {
        #[derive(Deserialize)]
        struct V {
            aligned: bool,
            #[serde(default)]
            reasons: Vec<String>,
        }
        let messages = vec![
            ChatMessage::text(Role::System, CHECKLIST_SYSTEM),
            ChatMessage::parts(
                Role::User,
                vec![
                    image_part(input.image)?,
                    ContentPart::text(format!(
                        "Prompt: {}\nChecklist: {}",
                        input.prompt, input.checklist
                    )),
                ],
            ),
        ];
        let (v, reply): (V, _) =
            ask_json(&self.judge, messages, 400, "checklist judge reply").await?;
        Ok(Verification {
            aligned: v.aligned,
            reasons: v.reasons,
            evidence: Value::String(reply.text),
            usage: reply.usage,
        })
    }
}

/// A chat-model rewriter: given the image, the prompt and the verifier's reasons, it writes the
/// prompt in the same style that the image satisfies (Echo-4o's "four -> three" fix).
pub struct ChatRewriter<J> {
    judge: J,
}

impl<J: Judge> ChatRewriter<J> {
    /// A rewriter asking `judge`.
    pub fn new(judge: J) -> Self {
        ChatRewriter { judge }
    }
}

fn clean(text: &str) -> String {
    text.trim().trim_matches('"').trim().to_string()
}

#[async_trait]
impl<J: Judge> Rewriter for ChatRewriter<J> {
    fn name(&self) -> String {
        format!("chat:{}", self.judge.model())
    }

    async fn rewrite(
        &self,
        input: &VerifyInput<'_>,
        verdict: &Verification,
    ) -> echo4o_core::Result<Option<Rewrite>> {
        let request = JudgeRequest {
            messages: vec![ChatMessage::parts(
                Role::User,
                vec![
                    image_part(input.image)?,
                    ContentPart::text(format!(
                        "This image was generated for the prompt below but does not match it:\n{}\n\
                         Prompt: {}\n\nWrite the prompt this image does match, in the same style and \
                         wording, changing only what is wrong (counts, colors, positions, objects). \
                         Answer with the prompt only.",
                        verdict.reasons.join("\n"),
                        input.prompt
                    )),
                ],
            )],
            temperature: Some(0.0),
            max_tokens: Some(200),
        };
        let reply = self.judge.complete(&request).await?;
        let text = clean(&reply.text);
        Ok((!text.is_empty() && text != input.prompt).then(|| Rewrite {
            prompt: text,
            metadata: None,
            usage: reply.usage,
        }))
    }

    async fn rewrite_refused(
        &self,
        prompt: &SynthPrompt,
        reason: &str,
    ) -> echo4o_core::Result<Option<Rewrite>> {
        let request = JudgeRequest {
            messages: vec![ChatMessage::text(
                Role::User,
                format!(
                    "An image generator's safety system refused this prompt ({reason}):\n{}\n\n\
                     Rewrite it so it is clearly harmless while keeping every object, count, color \
                     and position. Answer with the prompt only.",
                    prompt.prompt
                ),
            )],
            temperature: Some(0.0),
            max_tokens: Some(200),
        };
        let reply = self.judge.complete(&request).await?;
        let text = clean(&reply.text);
        Ok(
            (!text.is_empty() && text != prompt.prompt).then(|| Rewrite {
                prompt: text,
                metadata: None,
                usage: reply.usage,
            }),
        )
    }
}
