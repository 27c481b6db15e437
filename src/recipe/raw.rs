//! Stage one: serde structs that mirror the recipe JSON field for field, and the translation of
//! serde's errors into `<json.path>: <problem>` messages.
//!
//! Leaves are small newtypes ([`Number`], [`Count`], [`Text`], [`Flag`]) with their own
//! messages, and every object goes through [`Obj`], because serde's derived structs would
//! otherwise also accept a JSON array of positional values.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_path_to_error::Segment;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawRecipe {
    pub model_identifier: Obj<RawModelIdentifier>,
    pub inference_config: Option<Obj<RawInferenceConfig>>,
    pub synthesis_config: Obj<RawSynthesisConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawModelIdentifier {
    pub model_type: Option<Text>,
    pub model_name: Text,
    pub model_id: Option<Text>,
    pub model_version_id: Option<Text>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawInferenceConfig {
    pub inference_temperature: Option<Number>,
    pub inference_max_new_tokens: Option<Count>,
    pub inference_seed: Option<Count>,
    pub requests_per_minute: Option<Number>,
    // synth extensions, not in Oumi's schema.
    pub inference_top_p: Option<Number>,
    pub inference_top_k: Option<Count>,
    pub enable_thinking: Option<Flag>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawSynthesisConfig {
    pub synthesis_type: Text,
    pub synthesis_config: Obj<RawGeneralConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawGeneralConfig {
    pub dataset_id: Text,
    pub dataset_distribution: Option<Obj<RawDistribution>>,
    // synth extensions, not in Oumi's schema.
    pub num_samples: Option<Count>,
    pub curation: Option<Obj<RawCuration>>,
}

/// `synthesisConfig.synthesisConfig.curation` (synth extension).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawCuration {
    /// Filter name → on or off.
    pub filters: Option<Obj<std::collections::BTreeMap<String, Flag>>>,
    pub near_duplicate_threshold: Option<Number>,
    pub exclude: Option<Vec<Text>>,
    pub judge: Option<Obj<RawJudgeGate>>,
}

/// `…curation.judge` (synth extension).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RawJudgeGate {
    pub model_name: Option<Text>,
    pub prompt_template: Option<Text>,
    pub max_new_tokens: Option<Count>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDistribution {
    pub train: Option<Number>,
    pub validation: Option<Number>,
    pub test: Option<Number>,
}

/// Parses `text` into the raw shapes. On failure returns the JSON path (empty for the whole
/// document or a syntax error) and a message without the file name.
pub(crate) fn parse(text: &str) -> Result<RawRecipe, Failure> {
    parse_as(text)
}

/// Parses `text` into any raw shape built from this module's pieces (the evaluation recipe's too).
pub(crate) fn parse_as<T: DeserializeOwned>(text: &str) -> Result<T, Failure> {
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: Obj<T> = serde_path_to_error::deserialize(&mut de).map_err(|e| translate(text, e))?;
    de.end().map_err(|e| syntax(&e))?;
    Ok(raw.0)
}

/// A parse failure: where in the document, what is wrong, and what to do about it.
#[derive(Debug)]
pub(crate) struct Failure {
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
}

fn translate(text: &str, err: serde_path_to_error::Error<serde_json::Error>) -> Failure {
    let mut path = render_path(err.path());
    let inner = err.inner();
    let location = location(inner);
    let raw = inner.to_string();
    let message = raw.strip_suffix(&format!(" at line {} column {}", inner.line(), inner.column())).unwrap_or(&raw);

    if !matches!(inner.classify(), serde_json::error::Category::Data) {
        if message.starts_with("number out of range") {
            let literal = number_before(text, inner.line(), inner.column()).unwrap_or_else(|| "number".into());
            return Failure {
                path,
                message: format!("`{literal}` is out of range, must be a finite number{location}"),
                hint: None,
            };
        }
        return syntax(inner);
    }

    let mut hint = None;
    let message = if let Some(rest) = message.strip_prefix("unknown field `") {
        // `unknown field `typo`, expected one of `a`, `b``; the path already ends in `typo`.
        let expected = rest.split_once("`, ").map_or("", |(_, expected)| expected);
        let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        let typo = match err.path().iter().next_back() {
            Some(Segment::Map { key }) => key.as_str(),
            _ => "",
        };
        hint = closest(typo, &names).map(|name| format!("did you mean `{name}`?"));
        if names.is_empty() {
            format!("unknown field, this object has no fields{location}")
        } else {
            format!(
                "unknown field, expected one of {}{location}",
                names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            )
        }
    } else if let Some(field) = field_named(message, "missing field `") {
        path = join(&path, field);
        format!("required field is missing{location}")
    } else if let Some(field) = field_named(message, "duplicate field `") {
        path = join(&path, field);
        format!("field appears more than once{location}")
    } else if let Some(rest) = message.strip_prefix("invalid type: ") {
        // From serde itself, for example `invalid type: sequence, expected an object`.
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "something else"));
        let found = match found {
            "sequence" => "an array".to_string(),
            "map" => "an object".to_string(),
            other => match other.strip_prefix("string \"").and_then(|s| s.strip_suffix('"')) {
                Some(s) => format!("string `{s}`"),
                None => other.to_string(),
            },
        };
        format!("expected {expected}, found {found}{location}")
    } else {
        format!("{}{location}", as_written(message, text, inner))
    };
    Failure { path, message, hint }
}

fn syntax(err: &serde_json::Error) -> Failure {
    let raw = err.to_string();
    let message = raw.strip_suffix(&format!(" at line {} column {}", err.line(), err.column())).unwrap_or(&raw);
    let message = match message.strip_prefix("EOF while parsing ") {
        Some(what) => format!("the file ends in the middle of {what}"),
        None => message.to_string(),
    };
    Failure { path: String::new(), message: format!("invalid JSON: {message}{}", location(err)), hint: None }
}

fn location(err: &serde_json::Error) -> String {
    if err.line() == 0 {
        String::new()
    } else {
        // serde_json says column 0 before the first character of a line.
        format!(" (line {}, column {})", err.line(), err.column().max(1))
    }
}

fn field_named<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.strip_suffix('`')
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn render_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = join(&out, key),
            Segment::Enum { variant } => out = join(&out, variant),
            Segment::Unknown => out = join(&out, "?"),
        }
    }
    out
}

/// Puts a number back as the user wrote it into a message that starts with it as parsed:
/// `99999999999999999999` rather than `1e20`, `1e3` rather than `1000.0`.
fn as_written(message: &str, text: &str, err: &serde_json::Error) -> String {
    let written = || {
        let (shown, tail) = message.strip_prefix('`')?.split_once('`')?;
        let literal = number_before(text, err.line(), err.column())?;
        // The position can be past the value; only a literal with the same value is the one.
        let same = shown.parse::<f64>().ok()? == literal.parse::<f64>().ok()?;
        same.then(|| format!("`{literal}`{tail}"))
    };
    written().unwrap_or_else(|| message.to_string())
}

/// The number literal at serde_json's error position (1-based line, column of the last
/// character read), for values that serde_json cannot represent such as `1e999`.
fn number_before(text: &str, line: usize, column: usize) -> Option<String> {
    let line: Vec<char> = text.lines().nth(line.checked_sub(1)?)?.chars().collect();
    let is_number = |c: &char| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E');
    let mut end = column.min(line.len());
    // Sometimes the position is the character just after the number.
    if end > 0 && !line.get(end - 1).is_some_and(is_number) {
        end -= 1;
    }
    while end < line.len() && line.get(end).is_some_and(is_number) {
        end += 1;
    }
    let mut start = end;
    while start > 0 && line.get(start - 1).is_some_and(is_number) {
        start -= 1;
    }
    let literal: String = line.get(start..end)?.iter().take(40).collect();
    (!literal.is_empty()).then_some(literal)
}

/// The expected name closest to a misspelt one, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(typo: &str, names: &[&'a str]) -> Option<&'a str> {
    let typo = typo.to_lowercase();
    let (distance, name) = names.iter().map(|n| (edit_distance(&typo, &n.to_lowercase()), *n)).min()?;
    (distance <= (name.len() / 3).max(2)).then_some(name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// A JSON object deserialized into `T`; arrays are refused.
pub(crate) struct Obj<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: DeserializeOwned> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        deserializer.deserialize_map(ObjVisitor(PhantomData))
    }
}

/// Any JSON value, reduced to what the leaf types need to accept it or say what they found.
enum Scalar {
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Null,
    Array,
    Object,
}

impl Scalar {
    fn found(&self) -> String {
        match self {
            Scalar::Bool(b) => format!("found `{b}`"),
            Scalar::Int(i) => format!("found `{i}`"),
            Scalar::UInt(u) => format!("found `{u}`"),
            Scalar::Float(f) => format!("found `{}`", show_float(*f)),
            Scalar::Str(s) => format!("found string `{}`", show_text(s)),
            Scalar::Null => "found `null`".into(),
            Scalar::Array => "found an array".into(),
            Scalar::Object => "found an object".into(),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            // Containers are read to their end so that serde_json's own bracket checks pass and
            // the leaf type gets to say what it expected.
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Object)
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Any JSON number, as f64. Range rules are checked in stage two.
/// `shown` is the value as written, for messages: `-1` stays `-1`, `1.0` stays `1.0`.
pub(crate) struct Number {
    pub value: f64,
    pub shown: String,
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Int(i) => Ok(Number { value: i as f64, shown: i.to_string() }),
            Scalar::UInt(u) => Ok(Number { value: u as f64, shown: u.to_string() }),
            Scalar::Float(f) => Ok(Number { value: f, shown: show_float(f) }),
            other => Err(de::Error::custom(format!("expected a number, {}", other.found()))),
        }
    }
}

/// A non-negative integer that fits in u64, written without a fraction or exponent.
pub(crate) struct Count(pub u64);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let message = match Scalar::deserialize(deserializer)? {
            Scalar::UInt(u) => return Ok(Count(u)),
            Scalar::Int(i) => match u64::try_from(i) {
                Ok(u) => return Ok(Count(u)),
                Err(_) => format!("`{i}` must be a non-negative integer"),
            },
            // 18446744073709551616 and beyond arrive here as floats too.
            Scalar::Float(f) if f.fract() == 0.0 && f.abs() >= 18_446_744_073_709_551_616.0 => {
                format!("`{}` is too large, must be an integer from 0 to {}", show_float(f), u64::MAX)
            }
            Scalar::Float(f) if f.fract() == 0.0 && f >= 0.0 => {
                format!("`{}` must be written as an integer, like `{}`", show_float(f), f as u64)
            }
            Scalar::Float(f) => format!("`{}` must be a non-negative integer", show_float(f)),
            other => format!("expected a non-negative integer, {}", other.found()),
        };
        Err(de::Error::custom(message))
    }
}

pub(crate) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Str(s) => Ok(Text(s)),
            other => Err(de::Error::custom(format!("expected a string, {}", other.found()))),
        }
    }
}

pub(crate) struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Bool(b) => Ok(Flag(b)),
            other => Err(de::Error::custom(format!("expected `true` or `false`, {}", other.found()))),
        }
    }
}

/// A float as the user most likely wrote it: `512.0` keeps its point, huge values use exponents.
pub(crate) fn show_float(f: f64) -> String {
    if f != 0.0 && (f.abs() >= 1e16 || f.abs() < 1e-6) {
        format!("{f:e}")
    } else {
        format!("{f:?}")
    }
}

/// A string for a message in backticks: as is when that is unambiguous, else as JSON.
pub(crate) fn show_text(s: &str) -> String {
    let plain =
        !s.is_empty() && s.chars().count() <= 60 && s.trim() == s && !s.chars().any(|c| c.is_control() || c == '`');
    if plain {
        s.to_string()
    } else {
        show_str(s)
    }
}

/// A string as JSON (quoted, escaped), cut short so a pasted document does not flood the terminal.
pub(crate) fn show_str(s: &str) -> String {
    const MAX_CHARS: usize = 60;
    if s.chars().count() <= MAX_CHARS {
        serde_json::Value::from(s).to_string()
    } else {
        let head: String = s.chars().take(MAX_CHARS).collect();
        let quoted = serde_json::Value::from(head).to_string();
        format!("{}…\"", quoted.strip_suffix('"').unwrap_or(&quoted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("inferencetempreature", "inferencetemperature"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn closest_ignores_far_names() {
        assert_eq!(closest("trian", &["train", "validation", "test"]), Some("train"));
        assert_eq!(closest("colour", &["train", "validation", "test"]), None);
        assert_eq!(closest("x", &[]), None);
    }

    #[test]
    fn number_before_finds_literal_and_tolerates_bad_positions() {
        let text = "{\n  \"a\": 1e999,\n}";
        assert_eq!(number_before(text, 2, 12).as_deref(), Some("1e999"));
        assert_eq!(number_before(text, 2, 13).as_deref(), Some("1e999"));
        assert_eq!(number_before(text, 2, 6), None);
        assert_eq!(number_before(text, 0, 3), None);
        assert_eq!(number_before(text, 99, 3), None);
        assert_eq!(number_before("", 1, 99), None);
    }

    #[test]
    fn show_float_keeps_the_decimal_point() {
        assert_eq!(show_float(512.0), "512.0");
        assert_eq!(show_float(1.5), "1.5");
        assert_eq!(show_float(1e300), "1e300");
        assert_eq!(show_float(-1.0), "-1.0");
    }

    #[test]
    fn show_text_quotes_only_when_needed() {
        assert_eq!(show_text("../etc"), "../etc");
        assert_eq!(show_text(""), "\"\"");
        assert_eq!(show_text(" x"), "\" x\"");
        assert_eq!(show_text("a\u{0}b"), "\"a\\u0000b\"");
    }

    #[test]
    fn show_str_cuts_long_strings() {
        assert_eq!(show_str("hot"), "\"hot\"");
        let long = show_str(&"x".repeat(500));
        assert!(long.len() < 80 && long.ends_with("…\""), "{long}");
    }
}
