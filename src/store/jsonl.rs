//! JSON Lines in and out. Reading accepts three row shapes and turns each into a chat [`Row`]:
//!
//! - chat: `{"messages": [{"role", "content"}, ...], "metadata"?: {...}}`
//! - prompt/response: `{"prompt", "response"}` → user, assistant
//! - Alpaca: `{"instruction", "input"?, "output"}` → user (instruction, plus a blank line and the
//!   input when the input is not empty), assistant
//!
//! Any other top-level key is kept in the row's `metadata` rather than dropped, so ids and labels
//! from exported datasets survive an import. Writing always produces the chat shape, one row per
//! `\n`-terminated line, `messages` before `metadata`.

use std::io::{self, BufRead, Read, Write};

use serde_json::{Map, Value};

use super::row::{Message, Row};

/// The longest line read (8 MiB): far past any training example, and a bound on what one bad
/// line (a binary file, a missing newline) can make the reader hold in memory.
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// Roles a stored message may have.
pub const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// The shape a row had in its source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RowFormat {
    Chat,
    PromptResponse,
    Alpaca,
}

/// Why one line could not be read.
#[derive(Debug)]
pub enum LineError {
    /// Reading the file failed; the reader stops after this.
    Io(io::Error),
    /// The line is not a row; the message says why, without the file name or line number.
    Invalid(String),
}

/// Reads rows from JSON Lines, yielding `(line_number, row)`; line numbers start at 1 and blank
/// lines are skipped. A bad line does not stop the reader, so callers can report several.
pub struct JsonlReader<R, T = (Row, RowFormat)> {
    inner: R,
    line: usize,
    buf: Vec<u8>,
    done: bool,
    parse: fn(&[u8]) -> Result<T, String>,
}

impl<R: BufRead> JsonlReader<R> {
    /// Reads dataset rows (see [`parse_line`]).
    pub fn new(inner: R) -> Self {
        Self::with_parser(inner, parse_line)
    }
}

impl<R: BufRead, T> JsonlReader<R, T> {
    /// Reads lines with `parse`, with the same line cap, numbering and blank-line rule.
    pub fn with_parser(inner: R, parse: fn(&[u8]) -> Result<T, String>) -> Self {
        Self { inner, line: 0, buf: Vec::new(), done: false, parse }
    }

    /// Hands back the underlying reader, e.g. to finish a hash computed while reading.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: BufRead, T> Iterator for JsonlReader<R, T> {
    type Item = (usize, Result<T, LineError>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            match (&mut self.inner).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut self.buf) {
                Ok(0) => self.done = true,
                Ok(n) if n > MAX_LINE_BYTES && self.buf.last() != Some(&b'\n') => {
                    self.line += 1;
                    if let Err(e) = skip_line(&mut self.inner) {
                        self.done = true;
                        return Some((self.line, Err(LineError::Io(e))));
                    }
                    let message =
                        format!("the line is longer than {} MiB, the most a row may take", MAX_LINE_BYTES >> 20);
                    return Some((self.line, Err(LineError::Invalid(message))));
                }
                Ok(_) => {
                    self.line += 1;
                    let mut bytes = self.buf.as_slice();
                    if self.line == 1 {
                        bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
                    }
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    return Some((self.line, (self.parse)(bytes).map_err(LineError::Invalid)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Some((self.line + 1, Err(LineError::Io(e))));
                }
            }
        }
        None
    }
}

/// Consumes the rest of an over-long line without keeping it.
fn skip_line<R: BufRead>(reader: &mut R) -> io::Result<()> {
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

/// Parses one line (without requiring the trailing newline) into a chat row.
pub fn parse_line(bytes: &[u8]) -> Result<(Row, RowFormat), String> {
    parse_object(parse_json_object(bytes)?)
}

/// Parses one line of `synth generate --input`: a conversation to complete, as
/// `{"messages": [...]}` (roles checked as for rows) or `{"prompt": "..."}`.
pub fn parse_conversation(bytes: &[u8]) -> Result<Vec<Message>, String> {
    let mut object = parse_json_object(bytes)?;
    match (object.remove("prompt"), object.remove("messages")) {
        (Some(Value::String(prompt)), _) => Ok(vec![Message::new("user", prompt)]),
        (Some(other), _) => Err(format!("`prompt` must be a string, found {}", describe(&other))),
        (None, Some(messages)) => parse_messages(Some(messages)),
        (None, None) => Err(r#"expected {"messages": [...]} or {"prompt": "..."}"#.into()),
    }
}

fn parse_json_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| format!("not valid UTF-8 (bad byte at column {})", e.valid_up_to() + 1))?;
    let value: Value = serde_json::from_str(text.trim_end_matches(['\n', '\r'])).map_err(|e| {
        let full = e.to_string();
        let location = format!(" at line {} column {}", e.line(), e.column());
        let reason = full.strip_suffix(&location).unwrap_or(&full);
        format!("not valid JSON: {reason} (column {})", e.column())
    })?;
    let Value::Object(object) = value else {
        return Err(format!("expected a JSON object, found {}", describe(&value)));
    };
    Ok(object)
}

/// Turns one JSON object in any accepted shape into a chat row.
pub fn parse_object(mut object: Map<String, Value>) -> Result<(Row, RowFormat), String> {
    let has = |k: &str| object.contains_key(k);
    let chat = has("messages");
    let prompt = has("prompt") || has("response");
    let alpaca = has("instruction") || has("output");
    let shapes = [chat, prompt, alpaca].iter().filter(|&&b| b).count();
    if shapes != 1 {
        let found =
            if object.is_empty() { "an empty object".to_string() } else { format!("keys {}", key_list(&object)) };
        let what = if shapes == 0 { "expected" } else { "ambiguous row, expected only one of" };
        return Err(format!(
            r#"{what} {{"messages": [...]}}, {{"prompt", "response"}} or {{"instruction", "input", "output"}}, found {found}"#
        ));
    }

    let metadata = match object.remove("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => return Err(format!("`metadata` must be an object, found {}", describe(&other))),
    };

    let (messages, format) = if chat {
        (parse_messages(object.remove("messages"))?, RowFormat::Chat)
    } else if prompt {
        let prompt = take_string(&mut object, "prompt", "response")?;
        let response = take_string(&mut object, "response", "prompt")?;
        (vec![Message::new("user", prompt), Message::new("assistant", response)], RowFormat::PromptResponse)
    } else {
        let instruction = take_string(&mut object, "instruction", "output")?;
        let output = take_string(&mut object, "output", "instruction")?;
        let input = match object.remove("input") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(other) => return Err(format!("`input` must be a string, found {}", describe(&other))),
        };
        let user = if input.is_empty() { instruction } else { format!("{instruction}\n\n{input}") };
        (vec![Message::new("user", user), Message::new("assistant", output)], RowFormat::Alpaca)
    };

    let metadata = merge_extra_keys(metadata, object)?;
    Ok((Row { messages, metadata }, format))
}

fn parse_messages(value: Option<Value>) -> Result<Vec<Message>, String> {
    let items = match value {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("`messages` must be an array, found {}", describe(&other))),
        None => return Err("`messages` is missing".into()),
    };
    if items.is_empty() {
        return Err("`messages` must hold at least one message, found an empty array".into());
    }
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut m) = item else {
            return Err(format!(
                "`messages[{i}]` must be an object with `role` and `content`, found {}",
                describe(&item)
            ));
        };
        let role = match m.remove("role") {
            Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r,
            Some(Value::String(r)) => {
                return Err(format!("`messages[{i}].role` must be `system`, `user` or `assistant`, found `{r}`"))
            }
            Some(other) => return Err(format!("`messages[{i}].role` must be a string, found {}", describe(&other))),
            None => return Err(format!("`messages[{i}].role` is missing")),
        };
        let content = match m.remove("content") {
            Some(Value::String(c)) => c,
            Some(other) => return Err(format!("`messages[{i}].content` must be a string, found {}", describe(&other))),
            None => return Err(format!("`messages[{i}].content` is missing")),
        };
        if !m.is_empty() {
            return Err(format!(
                "`messages[{i}]` has unexpected keys {}, a message holds only `role` and `content`",
                key_list(&m)
            ));
        }
        messages.push(Message { role, content });
    }
    Ok(messages)
}

fn take_string(object: &mut Map<String, Value>, key: &str, partner: &str) -> Result<String, String> {
    match object.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`{key}` must be a string, found {}", describe(&other))),
        None => Err(format!("found `{partner}` without `{key}`")),
    }
}

/// Keeps unrecognized top-level keys in the metadata; a key in both places is ambiguous.
fn merge_extra_keys(
    metadata: Option<Map<String, Value>>,
    extra: Map<String, Value>,
) -> Result<Option<Map<String, Value>>, String> {
    if extra.is_empty() {
        return Ok(metadata);
    }
    let mut metadata = metadata.unwrap_or_default();
    for (key, value) in extra {
        if metadata.contains_key(&key) {
            return Err(format!("key `{key}` appears both at the top level and in `metadata`"));
        }
        metadata.insert(key, value);
    }
    Ok(Some(metadata))
}

fn key_list(object: &Map<String, Value>) -> String {
    object.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
}

/// `a string`, `an array`, ... for error messages.
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Writes rows as JSON Lines and returns the number of bytes written.
pub fn write_rows<W: Write>(mut out: W, rows: &[Row]) -> io::Result<usize> {
    let mut bytes = 0;
    let mut line = Vec::new();
    for row in rows {
        line.clear();
        serde_json::to_writer(&mut line, row)?;
        line.push(b'\n');
        out.write_all(&line)?;
        bytes += line.len();
    }
    out.flush()?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<(Row, RowFormat), String> {
        parse_line(s.as_bytes())
    }

    #[test]
    fn reads_the_three_shapes() {
        let (row, f) =
            parse(r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}],"metadata":{"k":1}}"#)
                .unwrap();
        assert_eq!(f, RowFormat::Chat);
        assert_eq!(row.messages, vec![Message::new("system", "s"), Message::new("user", "u")]);
        assert_eq!(row.metadata.unwrap()["k"], 1);

        let (row, f) = parse(r#"{"prompt":"p","response":"r"}"#).unwrap();
        assert_eq!(f, RowFormat::PromptResponse);
        assert_eq!(row.messages, vec![Message::new("user", "p"), Message::new("assistant", "r")]);
        assert_eq!(row.metadata, None);

        let (row, _) = parse(r#"{"instruction":"i","input":"x","output":"o"}"#).unwrap();
        assert_eq!(row.messages, vec![Message::new("user", "i\n\nx"), Message::new("assistant", "o")]);
        let (row, f) = parse(r#"{"instruction":"i","input":"","output":"o"}"#).unwrap();
        assert_eq!(f, RowFormat::Alpaca);
        assert_eq!(row.messages[0].content, "i");
    }

    #[test]
    fn keeps_extra_keys_in_metadata() {
        let (row, _) = parse(r#"{"id":7,"prompt":"p","response":"r","metadata":{"a":1}}"#).unwrap();
        let m = row.metadata.unwrap();
        assert_eq!(m["id"], 7);
        assert_eq!(m["a"], 1);
        assert!(parse(r#"{"id":7,"prompt":"p","response":"r","metadata":{"id":1}}"#).unwrap_err().contains("`id`"));
    }

    #[test]
    fn explains_bad_lines() {
        let cases = [
            ("[1]", "expected a JSON object, found an array"),
            ("{\"a\":", "not valid JSON"),
            (r#"{"foo":1,"bar":2}"#, "found keys `foo`, `bar`"),
            ("{}", "found an empty object"),
            (r#"{"messages":[]}"#, "at least one message"),
            (r#"{"messages":[{"role":"bot","content":"x"}]}"#, "found `bot`"),
            (r#"{"messages":[{"role":"user","content":3}]}"#, "`messages[0].content` must be a string, found a number"),
            (r#"{"messages":[{"role":"user","content":"x","name":"n"}]}"#, "unexpected keys `name`"),
            (r#"{"prompt":"p"}"#, "found `prompt` without `response`"),
            (r#"{"prompt":"p","response":null}"#, "`response` must be a string, found null"),
            (r#"{"prompt":"p","response":"r","output":"o"}"#, "ambiguous row"),
            (r#"{"prompt":"p","response":"r","metadata":[]}"#, "`metadata` must be an object"),
        ];
        for (line, want) in cases {
            let err = parse(line).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
        let err = parse_line(b"{\"prompt\":\"\xff\"}").unwrap_err();
        assert_eq!(err, "not valid UTF-8 (bad byte at column 12)");
    }

    #[test]
    fn reader_numbers_lines_and_skips_blanks() {
        let text = "\u{feff}{\"prompt\":\"a\",\"response\":\"b\"}\r\n\n  \nnope\n{\"prompt\":\"c\",\"response\":\"d\"}";
        let items: Vec<_> = JsonlReader::new(text.as_bytes()).collect();
        let lines: Vec<usize> = items.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [1, 4, 5]);
        assert!(items[0].1.is_ok());
        assert!(matches!(&items[1].1, Err(LineError::Invalid(m)) if m.starts_with("not valid JSON")));
        assert!(items[2].1.is_ok());
    }

    #[test]
    fn writes_chat_rows_that_read_back() {
        let mut meta = Map::new();
        meta.insert("z".into(), 1.into());
        meta.insert("a".into(), 2.into());
        let rows = vec![Row { messages: vec![Message::new("user", "hi\nthere")], metadata: Some(meta) }];
        let mut out = Vec::new();
        let n = write_rows(&mut out, &rows).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(n, text.len());
        assert_eq!(
            text,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\\nthere\"}],\"metadata\":{\"z\":1,\"a\":2}}\n"
        );
        let back: Vec<Row> = JsonlReader::new(text.as_bytes()).map(|(_, r)| r.unwrap().0).collect();
        assert_eq!(back, rows);
    }
}
