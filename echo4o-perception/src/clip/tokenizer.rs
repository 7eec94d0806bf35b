//! CLIP's byte-level BPE tokenizer, as open_clip's `SimpleTokenizer` builds and applies it.
//!
//! Upstream: open-clip-torch 2.26.1 `open_clip/tokenizer.py` (`bytes_to_unicode`,
//! `SimpleTokenizer.__init__`/`bpe`/`encode`/`__call__`, the `lower` cleaner). The merges file
//! is the one OpenAI released (`data/bpe_simple_vocab_16e6.txt.gz`, embedded).
//!
//! Cleaning: open_clip lower-cases after `ftfy.fix_text`, a double `html.unescape` and
//! whitespace collapsing. This applies whitespace collapsing, lower-casing and ftfy's
//! quote uncurling; it does not repair mojibake, fold full-width characters or ligatures, or
//! unescape HTML entities, so text that ftfy or `html.unescape` would change can tokenize
//! differently. GenEval's colour templates are plain ASCII and tokenize identically (the parity
//! test checks all 2400 of them).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use regex::Regex;

use crate::Error;

/// The merges file open_clip ships, embedded.
const BPE_GZ: &[u8] = include_bytes!("../../data/bpe_simple_vocab_16e6.txt.gz");

/// How many merges CLIP's vocabulary uses: 49152 - 256 - 2 (open_clip reads lines 1..=48894).
const MERGES: usize = 49152 - 256 - 2;

/// Start and end of text: the two special tokens, the last ids of the vocabulary.
const SOT: &str = "<start_of_text>";
const EOT: &str = "<end_of_text>";

/// CLIP's tokenizer: 49408 ids (256 bytes, 256 word-final bytes, 48894 merges, 2 specials).
#[derive(Debug, Clone)]
pub struct ClipTokenizer {
    byte_encoder: [char; 256],
    encoder: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    pattern: Regex,
    sot: u32,
    eot: u32,
}

/// GPT-2's reversible map from bytes to printable characters (`bytes_to_unicode`).
fn bytes_to_unicode() -> [char; 256] {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut map = ['\0'; 256];
    let mut n = 0;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        map[b as usize] = char::from_u32(c).unwrap_or('\u{fffd}');
    }
    map
}

impl ClipTokenizer {
    /// The tokenizer of every OpenAI CLIP model, from the embedded merges file.
    pub fn openai() -> Result<Self, Error> {
        Self::from_gz_bytes(BPE_GZ, "<embedded bpe_simple_vocab_16e6.txt.gz>")
    }

    /// A tokenizer from a merges file in open_clip's format (gzip), e.g. a copy of
    /// `bpe_simple_vocab_16e6.txt.gz`.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_gz_bytes(&bytes, &path.display().to_string())
    }

    fn from_gz_bytes(gz: &[u8], source: &str) -> Result<Self, Error> {
        let bad = |message: String| Error::Tokenizer {
            source_file: source.to_string(),
            message,
        };
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .map_err(|e| bad(format!("not a gzip UTF-8 merges file: {e}")))?;
        let lines: Vec<&str> = text.split('\n').skip(1).take(MERGES).collect();
        if lines.len() < MERGES {
            return Err(bad(format!(
                "{} merge lines, CLIP's vocabulary needs {MERGES}",
                lines.len()
            )));
        }
        let byte_encoder = bytes_to_unicode();
        // The first 512 ids follow the Python dict's order: the printable bytes, then the rest
        // (each group by byte value), which is the order of their mapped characters.
        let mut symbols: Vec<char> = byte_encoder.to_vec();
        symbols.sort_unstable();
        let mut vocab: Vec<String> = symbols.iter().map(|c| c.to_string()).collect();
        vocab.extend(symbols.iter().map(|c| format!("{c}</w>")));
        let mut ranks = HashMap::with_capacity(MERGES);
        for (i, line) in lines.iter().enumerate() {
            let mut parts = line.split_whitespace();
            let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(bad(format!(
                    "line {}: `{line}` is not a merge `a b`",
                    i + 2
                )));
            };
            vocab.push(format!("{a}{b}"));
            ranks.insert((a.to_string(), b.to_string()), i);
        }
        vocab.push(SOT.to_string());
        vocab.push(EOT.to_string());
        let encoder: HashMap<String, u32> = vocab
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        let pattern = Regex::new(&format!(
            r"(?i){SOT}|{EOT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+"
        ))
        .map_err(|e| bad(format!("token pattern: {e}")))?;
        Ok(ClipTokenizer {
            sot: encoder[SOT],
            eot: encoder[EOT],
            byte_encoder,
            encoder,
            ranks,
            pattern,
        })
    }

    /// The number of ids (49408 for CLIP).
    pub fn vocab_size(&self) -> usize {
        self.encoder.len()
    }

    /// The id that starts every sequence.
    pub fn sot(&self) -> u32 {
        self.sot
    }

    /// The id that ends every sequence (the highest id, which the text tower pools at).
    pub fn eot(&self) -> u32 {
        self.eot
    }

    /// The BPE ids of `text`, without start and end (`SimpleTokenizer.encode`).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let text = clean_lower(text);
        let mut ids = Vec::new();
        for m in self.pattern.find_iter(&text) {
            let token = m.as_str();
            if token == SOT || token == EOT {
                ids.push(self.encoder[token]);
                continue;
            }
            let mapped: Vec<String> = token
                .bytes()
                .map(|b| self.byte_encoder[b as usize].to_string())
                .collect();
            for piece in self.bpe(mapped) {
                // Every piece is a merge result or a single byte symbol, all in the vocabulary.
                if let Some(&id) = self.encoder.get(&piece) {
                    ids.push(id);
                }
            }
        }
        ids
    }

    /// `context` ids per text: start, the BPE ids, end, zero padding; a text too long is cut and
    /// ends with the end id (`SimpleTokenizer.__call__`).
    pub fn tokenize(&self, text: &str, context: usize) -> Vec<u32> {
        let mut ids = Vec::with_capacity(context);
        ids.push(self.sot);
        ids.extend(self.encode(text));
        ids.push(self.eot);
        if ids.len() > context {
            ids.truncate(context);
            if let Some(last) = ids.last_mut() {
                *last = self.eot;
            }
        }
        ids.resize(context, 0);
        ids
    }

    /// Merges the symbols of one word by rank until no ranked pair is left (`bpe`).
    fn bpe(&self, mut word: Vec<String>) -> Vec<String> {
        if let Some(last) = word.last_mut() {
            last.push_str("</w>");
        }
        while word.len() > 1 {
            // The lowest-ranked adjacent pair; pairs without a rank never merge.
            let best = word
                .windows(2)
                .filter_map(|p| {
                    self.ranks
                        .get(&(p[0].clone(), p[1].clone()))
                        .map(|&r| (r, p[0].clone(), p[1].clone()))
                })
                .min();
            let Some((_, first, second)) = best else {
                break;
            };
            let mut merged = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == first && word[i + 1] == second {
                    merged.push(format!("{first}{second}"));
                    i += 2;
                } else {
                    merged.push(word[i].clone());
                    i += 1;
                }
            }
            word = merged;
        }
        word
    }
}

/// open_clip's `lower` cleaner for what this port covers: ftfy's quote uncurling, whitespace
/// runs collapsed to one space, trimmed, lower-cased.
fn clean_lower(text: &str) -> String {
    let uncurled: String = text
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' => '\'',
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' => '"',
            c => c,
        })
        .collect();
    uncurled
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_has_clips_size_and_special_ids() {
        let t = ClipTokenizer::openai().unwrap();
        assert_eq!(t.vocab_size(), 49408);
        assert_eq!((t.sot(), t.eot()), (49406, 49407));
    }

    #[test]
    fn byte_map_is_a_bijection_onto_printable_chars() {
        let m = bytes_to_unicode();
        let set: std::collections::HashSet<char> = m.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(m[b'a' as usize], 'a');
        assert_eq!(m[b' ' as usize], '\u{120}');
    }

    #[test]
    fn padding_and_truncation() {
        let t = ClipTokenizer::openai().unwrap();
        let ids = t.tokenize("a photo", 8);
        assert_eq!(ids, vec![49406, 320, 1125, 49407, 0, 0, 0, 0]);
        let long = t.tokenize(&"a ".repeat(20), 5);
        assert_eq!(long, vec![49406, 320, 320, 320, 49407]);
    }

    static OPENAI: std::sync::LazyLock<ClipTokenizer> =
        std::sync::LazyLock::new(|| ClipTokenizer::openai().unwrap());

    proptest::proptest! {
        /// Any text gives exactly `context` ids: start first, one end token (last when cut),
        /// every id in the vocabulary, zeros only after the end.
        #[test]
        fn any_text_fills_the_context(text in "\\PC{0,120}", context in 2usize..80) {
            let t = &*OPENAI;
            let ids = t.tokenize(&text, context);
            proptest::prop_assert_eq!(ids.len(), context);
            proptest::prop_assert_eq!(ids[0], t.sot());
            let end = ids.iter().rposition(|&i| i == t.eot()).unwrap();
            proptest::prop_assert!(ids[end + 1..].iter().all(|&i| i == 0));
            proptest::prop_assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size()));
            // Cleaning makes case and spacing irrelevant.
            let shouted = format!("  {}  ", text.to_uppercase());
            if shouted.to_lowercase() == format!("  {}  ", text.to_lowercase()) {
                proptest::prop_assert_eq!(t.tokenize(&shouted, context), t.tokenize(&text.to_lowercase(), context));
            }
        }
    }

    #[test]
    fn a_truncated_merges_file_is_refused() {
        let mut gz = Vec::new();
        {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(&mut gz, flate2::Compression::fast());
            e.write_all(b"#version: 0.2\ni n\nt h\n").unwrap();
        }
        let err = ClipTokenizer::from_gz_bytes(&gz, "short.txt.gz").unwrap_err();
        assert!(err.to_string().contains("short.txt.gz"), "{err}");
        assert!(err.to_string().contains("48894"), "{err}");
    }
}
