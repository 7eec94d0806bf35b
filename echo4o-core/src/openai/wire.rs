//! The JSON the OpenAI-compatible APIs reply with, as read here (apart from the clients, which
//! decide what to do with it). Every field a server may leave out has a default.

use serde::Deserialize;

use serde_json::Value;

use crate::Usage;

/// A chat completion.
#[derive(Deserialize)]
pub(crate) struct Completion {
    pub choices: Vec<Choice>,
    #[serde(default, deserialize_with = "crate::judge::lenient_usage")]
    pub usage: Option<Usage>,
}

/// One choice of a completion.
#[derive(Deserialize)]
pub(crate) struct Choice {
    pub message: AssistantMessage,
}

/// The assistant's message.
#[derive(Deserialize)]
pub(crate) struct AssistantMessage {
    #[serde(default)]
    pub content: Option<String>,
}

/// An images reply.
#[derive(Deserialize)]
pub(crate) struct WireReply {
    #[serde(default)]
    pub created: Option<i64>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub data: Vec<WireImage>,
    #[serde(default)]
    pub usage: Option<Value>,
}

/// One image of an images reply.
#[derive(Deserialize)]
pub(crate) struct WireImage {
    #[serde(default)]
    pub b64_json: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub revised_prompt: Option<String>,
}
