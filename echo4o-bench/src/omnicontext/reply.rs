//! The official reply parser: `mllm_output_to_dict` with its `fix_json` fallback, and the score
//! read from the parsed object.

use std::sync::OnceLock;

use regex::Regex;
use serde_json::{Map, Value};

/// A parsed judge reply: the score (0..10) and the reasoning as the judge wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The `score` field as a number (a one-element list, as `fix_json` makes it, is read as
    /// its element).
    pub score: f64,
    /// The `reasoning` field (`null` when absent).
    pub reasoning: Value,
}

/// Python's `int(s)` accepting `s` as an integer in `0..=10` (surrounding whitespace, a sign and
/// underscores between digits allowed, as Python allows them).
fn python_int_0_to_10(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    let ok = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !ok {
        return None;
    }
    let v: i64 = t.replace('_', "").parse().ok()?;
    (0..=10).contains(&v).then_some(v)
}

fn key_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(\w+):").expect("valid regex"))
}

fn pair_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r#"(".*?"):(.*?)(,|\})"#).expect("valid regex"))
}

fn number_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"^-?\d+(\.\d+)?$").expect("valid regex"))
}

fn literal_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| Regex::new(r"(?i)^(true|false|null)$").expect("valid regex"))
}

/// The official `fix_json`: quotes bare `word:` keys, then for each `"key": value` pair wraps a
/// numeric value in `[...]`, keeps `true`/`false`/`null`, and quotes anything else.
///
/// ```
/// use echo4o_bench::omnicontext::fix_json;
/// assert_eq!(fix_json("{score: 7, reasoning: fine}"), r#"{"score": [7], "reasoning": "fine"}"#);
/// ```
pub fn fix_json(input: &str) -> String {
    let quoted = key_regex().replace_all(input, "\"$1\":");
    pair_regex()
        .replace_all(&quoted, |c: &regex::Captures<'_>| {
            let value = c[2].trim();
            let value = if number_regex().is_match(value) {
                format!("[{value}]")
            } else if literal_regex().is_match(value) {
                value.to_string()
            } else {
                format!("\"{value}\"")
            };
            format!("{}: {value}{}", &c[1], &c[3])
        })
        .into_owned()
}

/// The official `mllm_output_to_dict`: the text from the first `{` to the last `}` (or a reply
/// that is just an integer 0..10), newlines removed, parsed as JSON, else through [`fix_json`].
/// `Err` is a failed attempt, with why.
pub fn reply_to_object(text: &str) -> Result<Map<String, Value>, String> {
    let start = text.find('{');
    let end = text.rfind('}').map(|i| i + 1);
    let json = match (start, end) {
        (Some(s), Some(e)) => {
            // Python's slice of a '}' before the first '{' is empty, which then fails to parse.
            if s < e {
                text[s..e].trim().replace('\n', "")
            } else {
                String::new()
            }
        }
        _ => match python_int_0_to_10(text) {
            Some(n) => {
                let mut m = Map::new();
                m.insert("score".into(), n.into());
                m.insert(
                    "reasoning".into(),
                    "System: output is simply a number".into(),
                );
                return Ok(m);
            }
            None => return Err(format!("no JSON object in the reply: {text:?}")),
        },
    };
    let parsed = serde_json::from_str::<Value>(&json)
        .or_else(|_| serde_json::from_str::<Value>(&fix_json(&json)))
        .map_err(|e| format!("unparseable JSON even after fix_json ({e}): {json:?}"))?;
    match parsed {
        Value::Object(m) => Ok(m),
        other => Err(format!("the reply's JSON is not an object: {other}")),
    }
}

/// Parses a reply into its score and reasoning. A reply without a numeric `score` (the
/// official script would crash on it) is a failed attempt.
///
/// ```
/// use echo4o_bench::omnicontext::parse_reply;
/// let p = parse_reply("Sure!\n{\n  \"score\": 8,\n  \"reasoning\": \"close\"\n}").unwrap();
/// assert_eq!(p.score, 8.0);
/// assert_eq!(parse_reply(" 7\n").unwrap().score, 7.0);
/// assert!(parse_reply("I cannot rate this.").is_err());
/// ```
pub fn parse_reply(text: &str) -> Result<Parsed, String> {
    let mut object = reply_to_object(text)?;
    let score = match object.get("score") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::Array(a)) if a.len() == 1 => a[0].as_f64(),
        _ => None,
    }
    .filter(|s| s.is_finite())
    .ok_or_else(|| format!("no numeric `score` in {}", Value::Object(object.clone())))?;
    Ok(Parsed {
        score,
        reasoning: object.remove("reasoning").unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_official_parser_parses() {
        // Values checked by hand against the official functions.
        let p = parse_reply("```json\n{\"score\": 6, \"reasoning\": \"a\"}\n```").unwrap();
        assert_eq!((p.score, p.reasoning), (6.0, Value::from("a")));
        // Bare keys: fix_json quotes them and wraps the number in a list. It quotes every
        // non-numeric value again, so a reply mixing bare and quoted values stays unparseable,
        // as it is for the official parser.
        assert_eq!(parse_reply("{score: 4, reasoning: ok}").unwrap().score, 4.0);
        assert_eq!(
            fix_json(r#"{score: 4, "reasoning": "ok"}"#),
            r#"{"score": [4], "reasoning": ""ok""}"#
        );
        assert!(parse_reply(r#"{score: 4, "reasoning": "ok"}"#).is_err());
        // Plain integers, as Python's int() reads them.
        for (t, v) in [("10", 10.0), (" +3 ", 3.0), ("0", 0.0), ("1_0", 10.0)] {
            assert_eq!(parse_reply(t).unwrap().score, v, "{t:?}");
        }
        for bad in [
            "11",
            "-1",
            "7.5",
            "",
            "}{",
            "{\"reasoning\": \"no score\"}",
            "[6, 0]",
        ] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
        // Floats and a one-element list are numbers; booleans and strings are not scores.
        assert_eq!(parse_reply("{\"score\": 7.5}").unwrap().score, 7.5);
        assert_eq!(parse_reply("{\"score\": [9]}").unwrap().score, 9.0);
        assert!(parse_reply("{\"score\": \"9\"}").is_err());
        // Newlines inside the object are removed before parsing, as the official does.
        assert_eq!(parse_reply("{\"score\":\n5}").unwrap().score, 5.0);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse_reply(&s);
            let _ = fix_json(&s);
        }

        #[test]
        fn any_json_score_round_trips(score in 0u32..=10, reason in "[a-z ]{0,20}") {
            let text = serde_json::json!({"score": score, "reasoning": reason}).to_string();
            let p = parse_reply(&text).unwrap();
            proptest::prop_assert_eq!(p.score, score as f64);
        }
    }
}
