//! The [`Judge`] plug-in trait and its chat-message types.
//!
//! The types mirror OpenAI's chat-completions wire format (the format OpenAI, vLLM, llama.cpp and
//! Ollama all accept), so a request serialises to exactly the JSON the official benchmark scripts
//! send. Unset optional fields are skipped, because some compatible servers reject unknown or null
//! fields.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The user's turn.
    User,
    /// The model's turn.
    Assistant,
}

/// An image reference inside a message: a `data:` URL or an `http(s)` URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// The URL, usually `data:image/jpeg;base64,...`.
    pub url: String,
    /// Optional detail level (`low`, `high`, `auto`); omitted when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One part of a multi-part message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image.
    ImageUrl {
        /// The image reference.
        image_url: ImageUrl,
    },
}

impl ContentPart {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart::Text { text: text.into() }
    }

    /// An image part with the given URL and no detail level.
    pub fn image_url(url: impl Into<String>) -> Self {
        ContentPart::ImageUrl {
            image_url: ImageUrl {
                url: url.into(),
                detail: None,
            },
        }
    }
}

/// A message's content: a plain string, or a list of parts.
///
/// Both forms exist on the wire and the official scripts use both (GenEval++ sends its system
/// prompt as a string, Imagine-Bench as a one-element list), so both are kept distinct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// `"content": "..."`.
    Text(String),
    /// `"content": [{"type": "text", ...}, {"type": "image_url", ...}]`.
    Parts(Vec<ContentPart>),
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The speaker.
    pub role: Role,
    /// The content.
    pub content: MessageContent,
}

impl ChatMessage {
    /// A message whose content is a plain string.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: MessageContent::Text(text.into()),
        }
    }

    /// A message whose content is a list of parts.
    pub fn parts(role: Role, parts: Vec<ContentPart>) -> Self {
        ChatMessage {
            role,
            content: MessageContent::Parts(parts),
        }
    }
}

/// What a benchmark asks of a judge: the messages and sampling settings. The model name belongs
/// to the judge (its configuration), not to the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature; omitted when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Maximum tokens to generate; omitted when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
}

/// Token counts reported by a chat model.
///
/// Servers disagree on the details (`null`, `12.0`, a missing field): every count is read
/// leniently, so an odd `usage` never costs a valid verdict. A value that is no count at all
/// reads as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt (images included).
    #[serde(default, deserialize_with = "lenient_count")]
    pub prompt_tokens: u64,
    /// Tokens generated.
    #[serde(default, deserialize_with = "lenient_count")]
    pub completion_tokens: u64,
    /// Their sum, as the server reported it.
    #[serde(default, deserialize_with = "lenient_count")]
    pub total_tokens: u64,
}

/// A token count from any JSON value: integers as they are, finite non-negative floats rounded,
/// anything else (null, strings, negatives) as 0.
fn lenient_count<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<u64, D::Error> {
    let v = serde_json::Value::deserialize(d)?;
    Ok(match v {
        serde_json::Value::Number(n) => n.as_u64().unwrap_or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map_or(0, |f| f.round().min(u64::MAX as f64) as u64)
        }),
        _ => 0,
    })
}

/// A whole `usage` object read leniently: one that is not an object at all is no usage.
#[cfg(feature = "openai")]
pub(crate) fn lenient_usage<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Usage>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| serde_json::from_value(v).ok()))
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, rhs: Usage) {
        self.prompt_tokens += rhs.prompt_tokens;
        self.completion_tokens += rhs.completion_tokens;
        self.total_tokens += rhs.total_tokens;
    }
}

/// A judge's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeReply {
    /// The text of the first choice.
    pub text: String,
    /// Token usage, when the server reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// A vision-language chat model that reads messages with images and answers with text: the judge
/// of GenEval++ and Imagine-Bench, and the verifier of the synthesis pipeline.
///
/// # Example: a scripted judge for tests
///
/// ```
/// use async_trait::async_trait;
/// use echo4o_core::{ChatMessage, Judge, JudgeReply, JudgeRequest, Result, Role};
///
/// /// Always approves.
/// struct Lenient;
///
/// #[async_trait]
/// impl Judge for Lenient {
///     fn model(&self) -> String {
///         "lenient".into()
///     }
///     async fn complete(&self, _request: &JudgeRequest) -> Result<JudgeReply> {
///         Ok(JudgeReply { text: r#"{"correct": 1, "reason": "fine"}"#.into(), usage: None })
///     }
/// }
///
/// let request = JudgeRequest {
///     messages: vec![ChatMessage::text(Role::User, "Is this a cat?")],
///     temperature: Some(0.0),
///     max_tokens: Some(200),
/// };
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let reply = Lenient.complete(&request).await?;
/// assert!(reply.text.contains("\"correct\": 1"));
/// # Ok::<(), echo4o_core::Error>(())
/// # }).unwrap();
/// ```
#[async_trait]
pub trait Judge: Send + Sync {
    /// The model name recorded in reports (e.g. `gpt-4.1`).
    fn model(&self) -> String;

    /// Where requests go (a URL without credentials), when there is such a thing: recorded with
    /// a run's results so that a resumed run with another judge is refused. By default none.
    fn endpoint(&self) -> Option<String> {
        None
    }

    /// Sends one request and returns the reply. Transport retries are the implementation's
    /// business; content retries (an unparseable verdict) are the benchmark's.
    async fn complete(&self, request: &JudgeRequest) -> Result<JudgeReply>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_the_openai_sdk() {
        let req = JudgeRequest {
            messages: vec![
                ChatMessage::text(Role::System, "sys"),
                ChatMessage::parts(
                    Role::User,
                    vec![
                        ContentPart::text("hi"),
                        ContentPart::image_url("data:image/jpeg;base64,AAAA"),
                    ],
                ),
            ],
            temperature: Some(0.0),
            max_tokens: None,
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(
            json,
            r#"{"messages":[{"role":"system","content":"sys"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,AAAA"}}]}],"temperature":0.0}"#
        );
        let back: JudgeRequest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn usage_adds_up() {
        let mut total = Usage::default();
        total += Usage {
            prompt_tokens: 10,
            completion_tokens: 2,
            total_tokens: 12,
        };
        total += Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
            total_tokens: 2,
        };
        assert_eq!(total.total_tokens, 14);
        assert_eq!(total.prompt_tokens, 11);
    }
}
