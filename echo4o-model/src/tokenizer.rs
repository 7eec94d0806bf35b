//! The Qwen2 tokenizer BAGEL uses, from the checkpoint's `tokenizer.json` (the `tokenizers`
//! crate with its pure-Rust regex backend), and BAGEL's prompt template.
//!
//! Upstream: `ByteDance-Seed/Bagel@056b5fd` `modeling/bagel/bagel.py` `prepare_prompts`: a text
//! segment is `[<|im_start|>] + encode(text) + [<|im_end|>]`, no chat template, no BOS of the
//! tokenizer's own.

use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::Error;
use crate::config::SpecialTokens;

/// The special tokens' texts, looked up in the vocabulary.
pub const SPECIAL_TOKENS: [&str; 4] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
];

/// A loaded tokenizer and the special ids it defines.
#[derive(Clone)]
pub struct BagelTokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
}

impl std::fmt::Debug for BagelTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BagelTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("special", &self.special)
            .finish()
    }
}

impl BagelTokenizer {
    /// Loads `tokenizer.json`; the four special ids are taken from its vocabulary (an error names
    /// any that is missing).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bad = |message: String| Error::Config {
            path: path.display().to_string(),
            message,
        };
        if !path.is_file() {
            return Err(bad("tokenizer file not found".into()));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| bad(e.to_string()))?;
        let id = |t: &str| {
            inner
                .token_to_id(t)
                .ok_or_else(|| bad(format!("the vocabulary has no `{t}`")))
        };
        let special = SpecialTokens {
            bos_token_id: id(SPECIAL_TOKENS[0])?,
            eos_token_id: id(SPECIAL_TOKENS[1])?,
            start_of_image: id(SPECIAL_TOKENS[2])?,
            end_of_image: id(SPECIAL_TOKENS[3])?,
        };
        Ok(BagelTokenizer { inner, special })
    }

    /// The special ids.
    pub fn special(&self) -> SpecialTokens {
        self.special
    }

    /// Token ids of `text`, without special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, Error> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| Error::Config {
                path: "tokenizer".into(),
                message: format!("cannot encode {text:?}: {e}"),
            })
    }

    /// The text segment BAGEL feeds: `[im_start] + ids + [im_end]`.
    pub fn prompt(&self, text: &str) -> Result<Vec<u32>, Error> {
        let mut ids = vec![self.special.bos_token_id];
        ids.extend(self.encode(text)?);
        ids.push(self.special.eos_token_id);
        Ok(ids)
    }

    /// Writes the tokenizer back as a `tokenizer.json` (checkpoints carry their tokenizer).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let text = self.inner.to_string(false).map_err(|e| Error::Config {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        echo4o_core::fs::write_atomic(path, text.as_bytes()).map_err(Error::Core)
    }
}

/// Writes a byte-level BPE `tokenizer.json` without merges (one token per UTF-8 byte; Qwen2's
/// kind of tokenizer, minus the learned merges) whose four special tokens get ids
/// `base..base + 4`: the tokenizer of tiny models trained from scratch.
pub fn write_byte_level_tokenizer(path: &Path, base: u32) -> Result<(), Error> {
    let mut vocab = tokenizers::models::bpe::Vocab::new();
    // `alphabet()` is a HashSet: sort it, or every call numbers the bytes differently.
    let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
    alphabet.sort_unstable();
    for (i, ch) in alphabet.into_iter().enumerate() {
        vocab.insert(ch.to_string(), i as u32);
    }
    let bad = |message: String| Error::Config {
        path: path.display().to_string(),
        message,
    };
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, vec![])
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tok.with_decoder(Some(ByteLevel::default()));
    // Pad the vocabulary so the specials land at `base`.
    let filler: Vec<AddedToken> = (tok.get_vocab_size(true) as u32..base)
        .map(|i| AddedToken::from(format!("<|extra_{i}|>"), true))
        .collect();
    tok.add_special_tokens(&filler);
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tok.add_special_tokens(&specials);
    tok.save(path, false).map_err(|e| bad(e.to_string()))
}

/// Writes a word-level `tokenizer.json` (the `WordLevel` model of the `tokenizers` format:
/// lower-cased, split on whitespace and punctuation, one id per word, `<unk>` for any other)
/// over `words`, with the four special tokens at ids `base..base + 4`. For tiny models over a
/// closed vocabulary (the shapes world): a 3-layer model should not have to learn to spell.
///
/// ```
/// use echo4o_model::tokenizer::{BagelTokenizer, write_word_level_tokenizer};
///
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("tokenizer.json");
/// write_word_level_tokenizer(&path, &["a", "red", "circle"], 996)?;
/// let t = BagelTokenizer::from_file(&path)?;
/// assert_eq!(t.prompt("A red circle")?.len(), 2 + 3);
/// # Ok::<(), echo4o_model::Error>(())
/// ```
pub fn write_word_level_tokenizer(path: &Path, words: &[&str], base: u32) -> Result<(), Error> {
    let bad = |message: String| Error::Config {
        path: path.display().to_string(),
        message,
    };
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), 0.into());
    let mut sorted: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    sorted.sort();
    sorted.dedup();
    for w in &sorted {
        if w.is_empty() || w.chars().any(char::is_whitespace) {
            return Err(bad(format!("{w:?} is not one word")));
        }
        let id = vocab.len() as u32;
        vocab.insert(w.clone(), id.into());
    }
    if vocab.len() as u32 > base {
        return Err(bad(format!(
            "{} words do not fit below the special ids at {base}",
            vocab.len()
        )));
    }
    // Placeholders up to the special ids keep the vocabulary contiguous: the `tokenizers` crate
    // prints a warning naming every missing id each time it serialises a vocabulary with holes
    // (every checkpoint save). Their ids are never produced by encoding (no text splits into
    // `<unused..>`), so the words keep their ids and the model is unchanged.
    for id in vocab.len() as u32..base {
        vocab.insert(format!("<unused{id}>"), id.into());
    }
    let added: Vec<serde_json::Value> = SPECIAL_TOKENS
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"id": base + i as u32, "content": t, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    for (i, t) in SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert(t.to_string(), (base + i as u32).into());
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": null,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    });
    let text = serde_json::to_string_pretty(&json).map_err(|e| bad(e.to_string()))?;
    echo4o_core::fs::write_atomic(path, text.as_bytes()).map_err(Error::Core)?;
    // Loaded back here, so a file the `tokenizers` crate would refuse never leaves this function.
    BagelTokenizer::from_file(path).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_level_tokenizers_give_one_id_per_word_and_unk_for_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        write_word_level_tokenizer(&path, &["a", "photo", "of", "red", "circle", ","], 996)
            .unwrap();
        let t = BagelTokenizer::from_file(&path).unwrap();
        assert_eq!(t.special().start_of_image, 998);
        let ids = t.encode("A photo of a RED circle, a teapot").unwrap();
        assert_eq!(ids.len(), 9);
        assert_eq!(ids[0], ids[3], "`a` is one id wherever it stands");
        assert_eq!(ids[8], 0, "an unknown word is <unk>");
        assert!(ids.iter().all(|&i| i < 996));
        assert_eq!(t.encode("<unused7> unused7").unwrap(), [0, 0, 0, 0]);
        // No holes below the special ids: saving it must not make `tokenizers` warn.
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut ids: Vec<u64> = file["model"]["vocab"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..1000).collect::<Vec<u64>>());
    }

    #[test]
    fn takes_special_ids_from_the_vocabulary_and_wraps_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        write_byte_level_tokenizer(&path, 996).unwrap();
        let t = BagelTokenizer::from_file(&path).unwrap();
        assert_eq!(
            t.special(),
            SpecialTokens {
                bos_token_id: 996,
                eos_token_id: 997,
                start_of_image: 998,
                end_of_image: 999
            }
        );
        let ids = t.prompt("a red cube").unwrap();
        assert_eq!(ids.first(), Some(&996));
        assert_eq!(ids.last(), Some(&997));
        assert_eq!(
            ids.len(),
            2 + "a red cube".len(),
            "one byte-level token per byte without merges"
        );

        std::fs::write(&path, "{}").unwrap();
        assert!(
            BagelTokenizer::from_file(&path)
                .unwrap_err()
                .to_string()
                .contains("tokenizer.json")
        );
    }
}
