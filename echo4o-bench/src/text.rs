//! Text helpers that reproduce Python behaviour the official scripts rely on.

use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Python's `round(x, ndigits)`: the exact binary value rounded to `ndigits` decimals, ties to
/// even. Rust's `{:.N}` formatting rounds the same way, so the result is exactly Python's.
///
/// ```
/// use echo4o_bench::py_round;
/// assert_eq!(py_round(0.125, 2), 0.12); // a tie, to even
/// assert_eq!(py_round(0.375, 2), 0.38);
/// assert_eq!(py_round(8.6134, 3), 8.613);
/// ```
pub fn py_round(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{x:.ndigits$}").parse().unwrap_or(x)
}

/// Substitutes `{name}` placeholders in one left-to-right pass, like a Python f-string: text that
/// a substituted value brings in is never scanned again. Other braces stay as they are.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    'scan: while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        for (name, value) in values {
            let placeholder_len = name.len() + 2;
            if after.len() >= placeholder_len
                && after[1..].starts_with(name)
                && after[1 + name.len()..].starts_with('}')
            {
                out.push_str(value);
                rest = &after[placeholder_len..];
                continue 'scan;
            }
        }
        out.push('{');
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

/// Parses a JSONL text into records, one per non-empty line; an error names `origin` and the
/// 1-based line.
pub fn parse_jsonl<T: DeserializeOwned>(text: &str, origin: &str) -> Result<Vec<T>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Line {
                origin: origin.to_string(),
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_like_python() {
        // Values checked against CPython 3.11's round().
        for (x, n, want) in [
            (2.5, 0, 2.0),
            (3.5, 0, 4.0),
            (0.0625, 3, 0.062),
            (0.07500000000000001, 2, 0.08),
            (27.0 / 40.0, 4, 0.675),
            (190.0 / 280.0, 4, 0.6786),
            (-1.0, 3, -1.0),
        ] {
            assert_eq!(py_round(x, n), want, "round({x}, {n})");
        }
    }

    #[test]
    fn fills_placeholders_once() {
        assert_eq!(
            fill("a {x} b {y} {z}", &[("x", "{y}"), ("y", "2")]),
            "a {y} b 2 {z}"
        );
        assert_eq!(fill("{x", &[("x", "1")]), "{x");
        assert_eq!(fill("{}{x}}", &[("x", "1")]), "{}1}");
    }

    #[test]
    fn jsonl_errors_name_the_line() {
        let text = "{\"a\": 1}\n\n{\"a\": }\n";
        let err = parse_jsonl::<serde_json::Value>(text, "prompts.jsonl").unwrap_err();
        assert!(err.to_string().starts_with("prompts.jsonl:3: "), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn parse_jsonl_never_panics(s in "\\PC*") {
            let _ = parse_jsonl::<serde_json::Value>(&s, "x");
        }

        #[test]
        fn fill_without_placeholders_is_identity(s in "[^{]*") {
            proptest::prop_assert_eq!(fill(&s, &[("x", "1")]), s);
        }
    }
}

/// Python's `json.dumps(value)` with its defaults: `", "` and `": "` separators, non-ASCII
/// escaped as `\uXXXX`, floats in `repr` form (`1.0`, `2.5e-05`, `1e+16`). The official GenEval
/// script stores `metadata` and `details` as such strings inside its results lines.
///
/// ```
/// let v = serde_json::json!({"class": "café", "box": [1.0, 2.5e-05, 3]});
/// assert_eq!(echo4o_bench::py_json_dumps(&v), r#"{"class": "caf\u00e9", "box": [1.0, 2.5e-05, 3]}"#);
/// ```
pub fn py_json_dumps(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_py(value, &mut out, true);
    out
}

/// Python's `json.dumps(value, ensure_ascii=False)`: as [`py_json_dumps`], but only control
/// characters are escaped (OmniContext writes its score files so).
///
/// ```
/// let v = serde_json::json!({"k": "café\n", "s": 7.0});
/// assert_eq!(echo4o_bench::py_json_dumps_unicode(&v), r#"{"k": "café\n", "s": 7.0}"#);
/// ```
pub fn py_json_dumps_unicode(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_py(value, &mut out, false);
    out
}

fn write_py(value: &serde_json::Value, out: &mut String, ascii: bool) {
    use serde_json::Value;
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) if !n.is_f64() => out.push_str(&i.to_string()),
            (_, Some(u), _) if !n.is_f64() => out.push_str(&u.to_string()),
            (_, _, Some(f)) => out.push_str(&py_float_repr(f)),
            _ => out.push_str(&n.to_string()),
        },
        Value::String(s) => write_py_str(s, out, ascii),
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py(v, out, ascii);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_str(k, out, ascii);
                out.push_str(": ");
                write_py(v, out, ascii);
            }
            out.push('}');
        }
    }
}

fn write_py_str(s: &str, out: &mut String, ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && (c as u32) > 0x7e) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `repr(float)`: the shortest round-trip digits, in exponent form below 1e-4 and from
/// 1e16 up.
fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let a = f.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        let s = format!("{f}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    // `{:e}` gives the shortest digits as `d.ddde-5`; Python writes `d.ddde-05`.
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod py_json_tests {
    use super::*;

    #[test]
    fn floats_print_like_python_repr() {
        // CPython 3.11: json.dumps([...]) of these values.
        let v = serde_json::json!([
            1.0,
            0.1,
            123.25,
            2.5e-05,
            1e16,
            1.5e300,
            -0.0001,
            0.0,
            12.345600128173828
        ]);
        assert_eq!(
            py_json_dumps(&v),
            "[1.0, 0.1, 123.25, 2.5e-05, 1e+16, 1.5e+300, -0.0001, 0.0, 12.345600128173828]"
        );
        assert_eq!(
            py_json_dumps(&serde_json::json!("tab\t\"q\" ☃")),
            "\"tab\\t\\\"q\\\" \\u2603\""
        );
    }
}
