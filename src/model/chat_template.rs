//! Chat templates: the Jinja program each model ships to turn a conversation into its prompt
//! text. Rendered with minijinja, set up to behave like `transformers`' `apply_chat_template`
//! (`trim_blocks`, `lstrip_blocks`, Python string methods, `raise_exception`, `strftime_now`,
//! a `tojson` that writes what Python's `json.dumps` writes).

use std::cell::Cell;
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use anyhow::Result;
use candle_core::quantized::gguf_file;
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind};

use super::tokenizer::{Piece, TextCodec};
use crate::error::SynthError;
use crate::store::row::Message;

const NAME: &str = "chat_template";

/// Instructions one render may run (minijinja fuel). The Llama 3.1, Qwen3 and SmolLM2
/// templates take under 60 per message (they render 80,000 messages within it), while a
/// template that loops (`range(10000)` inside `range(10000)`) stops in well under a second
/// instead of hanging.
pub const TEMPLATE_FUEL: u64 = 5_000_000;
/// Prompt bytes allowed per token of context. A token covers about 4 bytes of English and
/// rarely more than 16 outside runs of spaces or punctuation, so a rendered prompt longer than
/// `context_len * 64` bytes cannot fit the context; it is refused before it is tokenized, which
/// on a prompt of hundreds of megabytes would take many times that in memory.
pub const PROMPT_BYTES_PER_TOKEN: usize = 64;
/// The most any render may write when no context is known ([`ChatTemplate::render`],
/// [`encode_prompt`]): 131072 tokens (the largest context of a built-in model) at
/// [`PROMPT_BYTES_PER_TOKEN`].
pub const MAX_RENDER_BYTES: usize = 131_072 * PROMPT_BYTES_PER_TOKEN;

const TOO_LONG_HINT: &str =
    "synth refuses a prompt longer than 64 bytes per token of the model's context before tokenizing it; shorten the conversation (the seed row or `--prompt`)";

/// The longest prompt, in bytes, a model with `context_len` tokens of context is given.
pub fn max_prompt_bytes(context_len: usize) -> usize {
    context_len.saturating_mul(PROMPT_BYTES_PER_TOKEN)
}

/// The date `strftime_now` reports. Templates such as Llama 3.2's print today's date into the
/// system prompt; a fixed one keeps a recipe's dataset identical whenever it is re-run. It is
/// the date Llama 3.1's own template falls back to.
const FIXED_DATE: (i32, u32, u32) = (2024, 7, 26);

/// A compiled chat template and the special-token strings it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl ChatTemplate {
    pub fn new(source: String, bos_token: Option<String>, eos_token: Option<String>) -> Result<ChatTemplate> {
        quiet_panics_while_rendering();
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.set_formatter(|out, state, value| {
            check_depth(value)?;
            minijinja::escape_formatter(out, state, value)
        });
        env.add_template_owned(NAME, source.clone()).map_err(|err| {
            SynthError::invalid(format!("chat template does not compile: {err}"))
                .hint("check the template in the model's `tokenizer_config.json` or GGUF metadata")
        })?;
        Ok(ChatTemplate { env, source, bos_token, eos_token })
    }

    /// Renders `messages`. `enable_thinking` is passed only when given, so templates that
    /// test `enable_thinking is defined` see what they would in `transformers`. At most
    /// [`MAX_RENDER_BYTES`] of output and [`TEMPLATE_FUEL`] instructions.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        enable_thinking: Option<bool>,
    ) -> Result<String> {
        self.render_within(messages, add_generation_prompt, enable_thinking, MAX_RENDER_BYTES)
    }

    /// [`render`](Self::render), refusing a prompt longer than `max_bytes` as soon as the
    /// template has written that much.
    pub fn render_within(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        enable_thinking: Option<bool>,
        max_bytes: usize,
    ) -> Result<String> {
        let template = self.env.get_template(NAME).map_err(|err| SynthError::failed(err.to_string()))?;
        // `transformers` passes `tools` and `documents` as None and the special tokens it has.
        let mut ctx = vec![
            ("messages", Value::from_serialize(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
        ];
        if let Some(bos) = &self.bos_token {
            ctx.push(("bos_token", Value::from(bos.as_str())));
        }
        if let Some(eos) = &self.eos_token {
            ctx.push(("eos_token", Value::from(eos.as_str())));
        }
        if let Some(thinking) = enable_thinking {
            ctx.push(("enable_thinking", Value::from(thinking)));
        }
        let ctx: Value = ctx.into_iter().collect();
        let mut out = BoundedWriter { bytes: Vec::new(), max: max_bytes, overflowed: false };
        let rendered = RENDERING.with(|flag| {
            flag.set(true);
            let rendered =
                std::panic::catch_unwind(AssertUnwindSafe(|| template.render_captured_to(ctx, &mut out).map(|_| ())));
            flag.set(false);
            rendered
        });
        let rendered = rendered.map_err(|panic| {
            let what =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            anyhow::Error::from(
                SynthError::invalid(format!(
                    "the chat template crashed the template engine (minijinja): {}",
                    what.as_deref().unwrap_or("no message")
                ))
                .hint("use the model's original chat template, or a model from a source you trust"),
            )
        })?;
        if let Err(err) = rendered {
            if out.overflowed {
                return Err(SynthError::invalid(format!(
                    "the chat template renders a prompt longer than {max_bytes} bytes"
                ))
                .hint(TOO_LONG_HINT)
                .into());
            }
            let source = std::error::Error::source(&err);
            if source.is_some_and(|s| s.is::<TooDeep>()) {
                return Err(SynthError::invalid(format!(
                    "the chat template prints a value nested more than {MAX_VALUE_DEPTH} levels deep or holding more than {MAX_VALUE_NODES} values (a namespace that holds itself?)"
                ))
                .hint("use the model's original chat template, or a model from a source you trust")
                .into());
            }
            let raised = source.and_then(|s| s.downcast_ref::<RaisedException>());
            return Err(match (raised, err.kind()) {
                (Some(RaisedException(msg)), _) => SynthError::invalid(format!("the chat template rejects this conversation: {msg}"))
                    .hint("change the conversation's roles or order to what the model supports"),
                (None, ErrorKind::OutOfFuel) => SynthError::invalid(format!(
                    "the chat template did not finish within {TEMPLATE_FUEL} steps; a chat template that runs this long loops without end or is hostile"
                ))
                .hint("use the model's original chat template, or a model from a source you trust"),
                (None, _) => SynthError::failed(format!("cannot render the chat template: {err}")),
            }
            .into());
        }
        String::from_utf8(out.bytes)
            .map_err(|err| SynthError::failed(format!("the chat template rendered invalid UTF-8: {err}")).into())
    }

    /// The template's source text.
    fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }
}

/// The template in GGUF metadata `tokenizer.chat_template`.
pub fn template_from_gguf(content: &gguf_file::Content) -> Result<String> {
    match content.metadata.get("tokenizer.chat_template") {
        Some(value) => value.to_string().cloned().map_err(|_| {
            SynthError::invalid(format!(
                "malformed GGUF metadata: `tokenizer.chat_template` is a {:?}, expected a string",
                value.value_type()
            ))
            .into()
        }),
        None => Err(SynthError::not_found("the GGUF file has no chat template (`tokenizer.chat_template`)")
            .hint("use a chat (instruct) model; base models have no template")
            .into()),
    }
}

/// Renders `messages` with a generation prompt and tokenizes the result; the prompt may be at
/// most [`MAX_RENDER_BYTES`] long. See [`encode_prompt_within`].
pub fn encode_prompt(
    template: &ChatTemplate,
    tokenizer: &TextCodec,
    messages: &[Message],
    enable_thinking: Option<bool>,
) -> Result<Vec<u32>> {
    encode_prompt_within(template, tokenizer, messages, enable_thinking, MAX_RENDER_BYTES)
}

/// Renders `messages` with a generation prompt and tokenizes the result, refusing a prompt
/// longer than `max_bytes` before tokenizing it (see [`max_prompt_bytes`]).
///
/// The template decides where BOS goes: when the text already starts with the tokenizer's BOS
/// (Llama 3 templates write `<|begin_of_text|>`), it is tokenized without special tokens, else
/// Llama 3's post-processor would add a second one. Otherwise the tokenizer's own rule applies
/// (a GGUF with `add_bos_token`, a `tokenizer.json` post-processor); Qwen3 has no BOS at all.
///
/// Message content (and role) is text, never control tokens: a seed row holding `<|im_end|>`
/// must not close its turn. Messages without special-token text (nearly all) take the plain
/// path, the whole prompt tokenized at once, so their ids are exactly what they always were;
/// messages with such text take [`encode_prompt_plain_content`].
pub fn encode_prompt_within(
    template: &ChatTemplate,
    tokenizer: &TextCodec,
    messages: &[Message],
    enable_thinking: Option<bool>,
    max_bytes: usize,
) -> Result<Vec<u32>> {
    if messages.iter().any(|m| tokenizer.contains_special(&m.content) || tokenizer.contains_special(&m.role)) {
        return encode_prompt_plain_content(template, tokenizer, messages, enable_thinking, max_bytes);
    }
    let text = template.render_within(messages, true, enable_thinking, max_bytes)?;
    let has_bos = tokenizer.bos().is_some_and(|bos| !bos.text.is_empty() && text.starts_with(&bos.text));
    tokenizer.encode(&text, !has_bos)
}

/// Tokenizes the prompt so that only the template's own special tokens are control tokens.
///
/// Each special-token text in a message's content or role is swapped for a sentinel (a
/// private-use character from `U+E000` on, its index, the character again; the character is
/// one that appears in neither the messages nor the template) and the conversation is rendered. The special tokens left in
/// that text are the template's. The text between them, with the sentinels put back, is
/// tokenized with special-token matching off; the template's special tokens become their ids.
/// The pieces are those the tokenizer's own added-token split would make, so for content
/// without special-token text this gives the same ids as [`encode_prompt_within`]'s plain
/// path (tested on the Llama 3.1, Qwen3 and SmolLM2 tokenizers).
pub fn encode_prompt_plain_content<'a>(
    template: &ChatTemplate,
    tokenizer: &TextCodec,
    messages: &'a [Message],
    enable_thinking: Option<bool>,
    max_bytes: usize,
) -> Result<Vec<u32>> {
    // One pass over the text, so content holding every private-use character costs no more.
    let mut used = vec![false; 0xF8FF - 0xE000 + 1];
    let texts =
        std::iter::once(template.source()).chain(messages.iter().flat_map(|m| [m.role.as_str(), m.content.as_str()]));
    for c in texts.flat_map(str::chars) {
        if let Some(slot) = (c as usize).checked_sub(0xE000).and_then(|i| used.get_mut(i)) {
            *slot = true;
        }
    }
    let sentinel =
        used.iter().position(|used| !used).and_then(|i| char::from_u32(0xE000 + i as u32)).ok_or_else(|| {
            SynthError::invalid(
                "the conversation uses every private-use character; synth cannot mark its special-token text",
            )
        })?;
    let mut originals: Vec<&str> = Vec::new();
    let mut mask = |text: &'a str| {
        let mut masked = String::with_capacity(text.len());
        let mut last = 0;
        for (range, _) in tokenizer.find_specials(text) {
            masked.push_str(&text[last..range.start]);
            let _ = write!(masked, "{sentinel}{}{sentinel}", originals.len());
            originals.push(&text[range.clone()]);
            last = range.end;
        }
        masked.push_str(&text[last..]);
        masked
    };
    let masked: Vec<Message> =
        messages.iter().map(|m| Message { role: mask(&m.role), content: mask(&m.content) }).collect();
    // A sentinel may be longer than the text it stands for; the exact length is checked below.
    let slack = originals.len().saturating_mul(2 * '\u{E000}'.len_utf8() + 20);
    let text = template.render_within(&masked, true, enable_thinking, max_bytes.saturating_add(slack))?;
    let has_bos = tokenizer.bos().is_some_and(|bos| !bos.text.is_empty() && text.starts_with(&bos.text));

    let mut pieces = Vec::new();
    let mut total = 0usize;
    let mut text_piece = |piece: &str, pieces: &mut Vec<Piece>| {
        let restored = unmask(piece, sentinel, &originals);
        total = total.saturating_add(restored.len());
        if !restored.is_empty() {
            pieces.push(Piece::Text(restored));
        }
    };
    let mut last = 0;
    let mut specials_len = 0usize;
    for (range, id) in tokenizer.find_specials(&text) {
        text_piece(&text[last..range.start], &mut pieces);
        pieces.push(Piece::Special(id));
        specials_len += range.len();
        last = range.end;
    }
    text_piece(&text[last..], &mut pieces);
    let total = total.saturating_add(specials_len);
    if total > max_bytes {
        return Err(SynthError::invalid(format!("the chat template renders a prompt longer than {max_bytes} bytes"))
            .hint(TOO_LONG_HINT)
            .into());
    }
    tokenizer.encode_pieces(&pieces, !has_bos)
}

/// `text` with each `{sentinel}{index}{sentinel}` replaced by `originals[index]`.
fn unmask(text: &str, sentinel: char, originals: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(sentinel) {
        out.push_str(&rest[..start]);
        let after = &rest[start + sentinel.len_utf8()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let original = after[..digits].parse::<usize>().ok().and_then(|i| originals.get(i));
        match original {
            Some(original) if after[digits..].starts_with(sentinel) => {
                out.push_str(original);
                rest = &after[digits + sentinel.len_utf8()..];
            }
            _ => {
                out.push(sentinel);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

thread_local! {
    /// Set while this thread renders a template.
    static RENDERING: Cell<bool> = const { Cell::new(false) };
}

/// minijinja 2.24 panics on some inputs (`[][::-1]` indexes past the end of the empty list),
/// so a render runs under `catch_unwind` and a panic becomes an error. This wraps the panic
/// hook once so that such a caught panic prints nothing; panics elsewhere print as before.
fn quiet_panics_while_rendering() {
    static WRAP: Once = Once::new();
    WRAP.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !RENDERING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Collects rendered output, failing the render once it passes `max` bytes so that a template
/// that writes gigabytes stops at the limit.
struct BoundedWriter {
    bytes: Vec<u8>,
    max: usize,
    overflowed: bool,
}

impl std::io::Write for BoundedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.max {
            self.overflowed = true;
            return Err(std::io::Error::other("the rendered prompt is too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How deeply nested a value a template may print or serialize.
const MAX_VALUE_DEPTH: usize = 64;
/// How many values (items, keys, nested containers) one printed or serialized value may hold;
/// shared parts count each time they appear, as they are printed each time.
const MAX_VALUE_NODES: usize = 1_000_000;

/// A namespace can be made to hold itself (`{% set ns.me = ns %}`); minijinja would print or
/// serialize it by recursing until the stack overflows, which aborts the process. Values
/// nested deeper than [`MAX_VALUE_DEPTH`], or holding more than [`MAX_VALUE_NODES`] values
/// (a list of the list of the list..., doubling at each level), are refused instead.
fn check_depth(value: &Value) -> Result<(), minijinja::Error> {
    fn walk(value: &Value, depth: usize, budget: &mut usize) -> bool {
        use minijinja::value::ValueKind;
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        if !matches!(value.kind(), ValueKind::Seq | ValueKind::Map | ValueKind::Iterable) {
            return true;
        }
        if depth >= MAX_VALUE_DEPTH {
            return false;
        }
        let Ok(items) = value.try_iter() else { return true };
        let is_map = value.kind() == ValueKind::Map;
        for item in items {
            let child = if is_map { value.get_item(&item).unwrap_or_default() } else { item };
            if !walk(&child, depth + 1, budget) {
                return false;
            }
        }
        true
    }
    if walk(value, 0, &mut { MAX_VALUE_NODES }) {
        Ok(())
    } else {
        Err(minijinja::Error::new(ErrorKind::InvalidOperation, "value nested too deep or too large")
            .with_source(TooDeep))
    }
}

/// Marks [`check_depth`]'s error.
#[derive(Debug)]
struct TooDeep;

impl std::fmt::Display for TooDeep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a value nested more than {MAX_VALUE_DEPTH} levels deep or holding more than {MAX_VALUE_NODES} values"
        )
    }
}

impl std::error::Error for TooDeep {}

/// Carries a template's `raise_exception` message out of minijinja.
#[derive(Debug)]
struct RaisedException(String);

impl std::fmt::Display for RaisedException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(RaisedException(message)))
}

/// Python's `strftime` on [`FIXED_DATE`] at midnight, for the directives templates use.
fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
    let (year, month, day) = FIXED_DATE;
    let month_name = MONTHS[month as usize - 1];
    let weekday = DAYS[4]; // 26 Jul 2024 was a Friday.
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match chars.next() {
            Some('d') => write!(out, "{day:02}"),
            Some('e') => write!(out, "{day:>2}"),
            Some('m') => write!(out, "{month:02}"),
            Some('Y') => write!(out, "{year}"),
            Some('y') => write!(out, "{:02}", year % 100),
            Some('b') => write!(out, "{}", &month_name[..3]),
            Some('B') => write!(out, "{month_name}"),
            Some('a') => write!(out, "{}", &weekday[..3]),
            Some('A') => write!(out, "{weekday}"),
            Some('H' | 'M' | 'S') => write!(out, "00"),
            Some('j') => write!(out, "{:03}", 31 + 29 + 31 + 30 + 31 + 30 + day),
            Some('F') => write!(out, "{year}-{month:02}-{day:02}"),
            Some('%') => write!(out, "%"),
            Some(other) => {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("strftime_now: unsupported directive `%{other}`"),
                ))
            }
            None => write!(out, "%"),
        };
    }
    Ok(out)
}

/// `transformers`' `tojson`: `json.dumps(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`. minijinja's own filter writes compact, HTML-escaped JSON instead.
fn tojson(value: Value, indent: Option<Value>, kwargs: Kwargs) -> Result<String, minijinja::Error> {
    let indent = match indent.or(kwargs.get::<Option<Value>>("indent")?) {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(usize::try_from(v)?),
    };
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let separators = kwargs.get::<Option<Vec<String>>>("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: separators must be a pair")),
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    if value.is_undefined() {
        return Err(minijinja::Error::new(ErrorKind::UndefinedError, "tojson of an undefined value"));
    }
    check_depth(&value)?;
    let json = serde_json::to_value(&value).map_err(|err| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "tojson: cannot serialize").with_source(err)
    })?;
    let style = JsonStyle { indent, sort_keys, ensure_ascii, item_sep, key_sep };
    let mut out = String::new();
    style.write(&mut out, &json, 0);
    Ok(out)
}

struct JsonStyle {
    indent: Option<usize>,
    sort_keys: bool,
    ensure_ascii: bool,
    item_sep: String,
    key_sep: String,
}

impl JsonStyle {
    fn write(&self, out: &mut String, value: &serde_json::Value, depth: usize) {
        use serde_json::Value as J;
        match value {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Number(n) => out.push_str(&n.to_string()),
            J::String(s) => self.string(out, s),
            J::Array(items) if items.is_empty() => out.push_str("[]"),
            J::Object(map) if map.is_empty() => out.push_str("{}"),
            J::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    self.separate(out, i, depth + 1);
                    self.write(out, item, depth + 1);
                }
                self.newline(out, depth);
                out.push(']');
            }
            J::Object(map) => {
                let mut entries: Vec<(&String, &J)> = map.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    self.separate(out, i, depth + 1);
                    self.string(out, key);
                    out.push_str(&self.key_sep);
                    self.write(out, item, depth + 1);
                }
                self.newline(out, depth);
                out.push('}');
            }
        }
    }

    fn separate(&self, out: &mut String, index: usize, depth: usize) {
        if index > 0 {
            out.push_str(&self.item_sep);
        }
        self.newline(out, depth);
    }

    fn newline(&self, out: &mut String, depth: usize) {
        if let Some(indent) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', indent * depth));
        }
    }

    fn string(&self, out: &mut String, s: &str) {
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
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[Message]) -> Result<String> {
        ChatTemplate::new(source.to_string(), Some("<s>".into()), Some("</s>".into()))?.render(messages, true, None)
    }

    #[test]
    fn python_string_methods_and_trim_blocks() {
        let source = "{% for m in messages %}\n  {% if m['content'].strip().startswith('x') %}\n{{ m['role'].upper() }}:{{ m['content'].strip() | replace('x', 'y') }};\n  {% endif %}\n{% endfor %}";
        let out = render(source, &[Message::new("user", "  xa \n"), Message::new("user", "b")]).unwrap();
        assert_eq!(out, "USER:ya;\n");
    }

    #[test]
    fn raise_exception_is_an_invalid_input_error_with_the_message() {
        let source =
            "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok";
        assert_eq!(render(source, &[Message::new("user", "hi")]).unwrap(), "ok");
        let err = render(source, &[Message::new("system", "hi")]).unwrap_err();
        assert_eq!(crate::error::exit_code(&err), 2);
        assert_eq!(err.to_string(), "the chat template rejects this conversation: System role not supported");
    }

    #[test]
    fn strftime_now_is_a_fixed_date() {
        let out =
            render(r#"{{ strftime_now("%d %b %Y") }}|{{ strftime_now("%A %B %e, %y %F %H:%M %j %%") }}"#, &[]).unwrap();
        assert_eq!(out, "26 Jul 2024|Friday July 26, 24 2024-07-26 00:00 208 %");
        assert!(render(r#"{{ strftime_now("%Z") }}"#, &[]).is_err());
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let source = r#"{{ {"a": {}, "b": [1, "é\n\"", none, true]} | tojson }}|{{ {"b": 1, "a": [2, []]} | tojson(indent=2, sort_keys=true) }}|{{ "<&>" | tojson }}"#;
        let out = render(source, &[]).unwrap();
        assert_eq!(
            out,
            "{\"a\": {}, \"b\": [1, \"é\\n\\\"\", null, true]}|{\n  \"a\": [\n    2,\n    []\n  ],\n  \"b\": 1\n}|\"<&>\""
        );
    }

    #[test]
    fn special_tokens_and_thinking_flag_are_defined_only_when_given() {
        let source = "{{ bos_token is defined }} {{ eos_token }} {{ enable_thinking is defined }} {{ tools is none }}";
        let t = ChatTemplate::new(source.into(), None, Some("</s>".into())).unwrap();
        assert_eq!(t.render(&[], false, None).unwrap(), "False </s> False True");
        assert_eq!(
            ChatTemplate::new("{{ enable_thinking }}".into(), None, None)
                .unwrap()
                .render(&[], false, Some(false))
                .unwrap(),
            "False"
        );
    }

    /// Found by the chat-template fuzz target: minijinja 2.24 indexes past the end when it
    /// reverses an empty list, as `messages[::-1]` in Qwen3's template does.
    #[test]
    fn a_panic_inside_minijinja_is_an_error() {
        for source in ["{{ [][::-1] }}", "{% for m in messages[::-1] %}{{ m }}{% endfor %}"] {
            let template = ChatTemplate::new(source.into(), None, None).unwrap();
            let err = template.render(&[], true, None).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2);
            assert!(
                err.to_string()
                    .starts_with("the chat template crashed the template engine (minijinja): index out of bounds"),
                "{err}"
            );
        }
        // The thread renders normally afterwards.
        assert_eq!(render("{{ 'ok' }}", &[]).unwrap(), "ok");
    }

    /// Found by the chat-template fuzz target: printing a namespace that holds itself recursed
    /// until the stack overflowed and aborted the process.
    #[test]
    fn a_namespace_that_holds_itself_is_an_error_not_a_stack_overflow() {
        for source in [
            "{% set s = namespace(t='') %}{% set s.t = s %}{{ s.t }}",
            "{% set s = namespace(t='') %}{% set s.t = [s] %}{{ s }}",
            "{% set s = namespace(t='') %}{% set s.t = {'a': s} %}{{ s | tojson }}",
        ] {
            let err = render(source, &[]).unwrap_err();
            assert_eq!(crate::error::exit_code(&err), 2);
            assert!(
                err.to_string().starts_with("the chat template prints a value nested more than 64 levels deep"),
                "{err}"
            );
        }
        // Doubling at each level: 2^40 items to print, refused after a million.
        let doubling = format!("{{% set a = [1] %}}{}{{{{ a }}}}", "{% set a = [a, a] %}".repeat(40));
        let started = std::time::Instant::now();
        assert!(render(&doubling, &[]).unwrap_err().to_string().contains("holding more than 1000000 values"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let nested = format!("{}{}", "[".repeat(60), "]".repeat(60));
        assert_eq!(render(&format!("{{{{ {nested} | tojson }}}}"), &[]).unwrap(), nested);
    }

    #[test]
    fn syntax_error_is_reported_at_compile_time() {
        let err = ChatTemplate::new("{% for m in messages %}".into(), None, None).unwrap_err();
        assert!(err.to_string().starts_with("chat template does not compile: "), "{err}");
    }
}
