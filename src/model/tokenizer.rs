//! Text ↔ token ids. Hugging Face checkpoints ship a `tokenizer.json`; GGUF files carry the
//! vocabulary and merges in their metadata, from which we rebuild the same byte-level BPE
//! tokenizer that the model's `tokenizer.json` describes.

use std::path::Path;

use anyhow::Result;
use candle_core::quantized::gguf_file;
use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::registry::ModelSpec;
use crate::error::SynthError;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// The split regexes of the `tokenizer.json` files these GGUF pre-tokenizer names come from.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Builds a Hugging Face tokenizer from GGUF metadata. Only byte-level BPE (`gpt2`) is
/// supported; `tokenizer.ggml.pre` picks the pre-tokenizer the original `tokenizer.json` had.
pub fn tokenizer_from_gguf(content: &gguf_file::Content) -> Result<tokenizers::Tokenizer> {
    let model = meta_str(content, "tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(SynthError::invalid(format!(
            "GGUF tokenizer model `{model}` is not supported; synth reads byte-level BPE (`gpt2`) tokenizers from GGUF files"
        ))
        .hint("use the model's safetensors release, whose `tokenizer.json` synth reads directly")
        .into());
    }
    let tokens = meta_str_array(content, "tokenizer.ggml.tokens")?;
    let types = token_types(content, tokens.len())?;
    let mut tokenizer = tokenizers::Tokenizer::new(gguf_bpe(content, &tokens)?);
    let pre = content.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map(String::as_str);
    let pre_tokenizer = gguf_pre_tokenizer(pre.unwrap_or("default"), &mut tokenizer)?;
    tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

    // Control tokens (`<|im_start|>`) must match whole before BPE sees the text; user-defined
    // ones too, but they are ordinary text when decoding.
    if let Some(types) = &types {
        let mut special = Vec::new();
        let mut added = Vec::new();
        for (token, kind) in tokens.iter().zip(types) {
            match *kind {
                TOKEN_TYPE_CONTROL => special.push(AddedToken::from(token.to_string(), true)),
                TOKEN_TYPE_USER_DEFINED => added.push(AddedToken::from(token.to_string(), false)),
                _ => {}
            }
        }
        tokenizer.add_special_tokens(&special);
        tokenizer.add_tokens(&added);
    }

    if meta_bool(content, "tokenizer.ggml.add_bos_token")? == Some(true) {
        let id = meta_u32(content, "tokenizer.ggml.bos_token_id")?.ok_or_else(|| {
            malformed("`tokenizer.ggml.add_bos_token` is set but `tokenizer.ggml.bos_token_id` is missing".to_string())
        })?;
        let bos = tokens
            .get(id as usize)
            .ok_or_else(|| malformed(format!("`tokenizer.ggml.bos_token_id` {id} is outside the vocabulary")))?;
        tokenizer.with_post_processor(Some(bos_template(bos, id)?));
    }
    Ok(tokenizer)
}

/// `tokenizer.ggml.token_type`, one per token, when the file has it.
fn token_types(content: &gguf_file::Content, tokens: usize) -> Result<Option<Vec<i64>>> {
    let Some(value) = content.metadata.get("tokenizer.ggml.token_type") else { return Ok(None) };
    let types = meta_int_array(value, "tokenizer.ggml.token_type")?;
    if types.len() != tokens {
        return Err(malformed(format!(
            "`tokenizer.ggml.token_type` has {} entries but `tokenizer.ggml.tokens` has {tokens}",
            types.len()
        )));
    }
    Ok(Some(types))
}

/// The byte-level BPE model of the vocabulary and `tokenizer.ggml.merges`.
fn gguf_bpe(content: &gguf_file::Content, tokens: &[&str]) -> Result<BPE> {
    let merges = meta_str_array(content, "tokenizer.ggml.merges")?;
    // Later duplicates of a token string (rare, seen in some converted files) keep the first id.
    let mut vocab = Vocab::default();
    for (id, token) in tokens.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| malformed("`tokenizer.ggml.tokens` is too long".to_string()))?;
        vocab.entry(token.to_string()).or_insert(id);
    }
    let mut pairs = Vec::with_capacity(merges.len());
    for (i, merge) in merges.iter().enumerate() {
        let (a, b) = merge.split_once(' ').ok_or_else(|| {
            malformed(format!("`tokenizer.ggml.merges[{i}]` is `{merge}`, expected two tokens separated by a space"))
        })?;
        pairs.push((a.to_string(), b.to_string()));
    }
    BPE::builder()
        .vocab_and_merges(vocab, pairs)
        .build()
        .map_err(|err| malformed(format!("cannot build the BPE tokenizer: {err}")))
}

/// The pre-tokenizer (and, for Qwen2, the normalizer) that `tokenizer.ggml.pre` names.
fn gguf_pre_tokenizer(pre: &str, tokenizer: &mut tokenizers::Tokenizer) -> Result<PreTokenizerWrapper> {
    let byte_level = |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    let split = |regex: &str| -> Result<PreTokenizerWrapper> {
        let split = Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|err| SynthError::failed(format!("cannot compile the pre-tokenizer regex: {err}")))?;
        Ok(PreTokenizerWrapper::Split(split))
    };
    Ok(match pre {
        "default" | "gpt-2" | "gpt2" => byte_level(true),
        // SmolLM/StarCoder: every digit is its own word, then GPT-2's regex.
        "smollm" | "starcoder" | "refact" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])),
        "llama-bpe" | "llama3" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split(LLAMA3_REGEX)?, byte_level(false)]))
        }
        "qwen2" => {
            tokenizer.with_normalizer(Some(NFC));
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split(QWEN2_REGEX)?, byte_level(false)]))
        }
        other => {
            return Err(SynthError::invalid(format!("GGUF pre-tokenizer `{other}` (`tokenizer.ggml.pre`) is not supported"))
                .hint("supported: `default`, `gpt-2`, `smollm`, `starcoder`, `llama-bpe`, `qwen2`; or use the model's safetensors release")
                .into());
        }
    })
}

/// Loads a Hugging Face `tokenizer.json`.
pub fn load_tokenizer_json(path: &Path) -> Result<tokenizers::Tokenizer> {
    tokenizers::Tokenizer::from_file(path).map_err(|err| {
        SynthError::failed(format!("cannot load tokenizer `{}`: {err}", path.display()))
            .hint("the file may be truncated or from a newer `tokenizers` release; download it again")
            .into()
    })
}

/// A post-processor that puts `bos` in front of every encoded text, like the `TemplateProcessing`
/// in Llama 3's `tokenizer.json`. Built from JSON because the string form splits on `:`.
fn bos_template(bos: &str, id: u32) -> Result<TemplateProcessing> {
    let bos_piece = json!({"SpecialToken": {"id": bos, "type_id": 0}});
    let value = json!({
        "single": [bos_piece, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [bos_piece, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {bos: {"id": bos, "ids": [id], "tokens": [bos]}},
    });
    serde_json::from_value(value)
        .map_err(|err| SynthError::failed(format!("cannot build the BOS template for `{bos}`: {err}")).into())
}

/// A special token's text and, when the vocabulary has it, its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialToken {
    pub text: String,
    pub id: Option<u32>,
}

/// A piece of a prompt for [`TextCodec::encode_pieces`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text, in which special-token text is ordinary text.
    Text(String),
    /// One special token, by id.
    Special(u32),
}

/// A tokenizer plus what generation needs to know about its special tokens.
#[derive(Debug, Clone)]
pub struct TextCodec {
    inner: tokenizers::Tokenizer,
    bos: Option<SpecialToken>,
    eos: Option<SpecialToken>,
    /// End-of-sequence ids declared by the model files (GGUF `eos_token_id`,
    /// `generation_config.json`), beyond the registry's stop tokens.
    eos_ids: Vec<u32>,
    /// The special added tokens (`<|im_end|>`, GGUF control tokens), longest first.
    specials: Vec<(String, u32)>,
    /// For each first byte, indices into `specials` of the tokens starting with it.
    specials_by_first_byte: Vec<Vec<usize>>,
    /// `inner` with special-token matching off, made the first time it is needed.
    plain: std::sync::OnceLock<tokenizers::Tokenizer>,
}

impl TextCodec {
    /// Wraps a tokenizer. `eos_ids` outside the vocabulary are dropped.
    pub fn new(inner: tokenizers::Tokenizer, bos: Option<String>, eos: Option<String>, eos_ids: Vec<u32>) -> TextCodec {
        let special = |text: String| {
            let id = inner.token_to_id(&text);
            SpecialToken { text, id }
        };
        let bos = bos.map(special);
        let eos = eos.map(special);
        let mut eos_ids: Vec<u32> = eos_ids.into_iter().filter(|&id| inner.id_to_token(id).is_some()).collect();
        eos_ids.extend(eos.as_ref().and_then(|e| e.id));
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let mut specials: Vec<(String, u32)> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special && !token.content.is_empty())
            .map(|(id, token)| (token.content, id))
            .collect();
        specials.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
        let mut specials_by_first_byte = vec![Vec::new(); 256];
        for (i, (text, _)) in specials.iter().enumerate() {
            specials_by_first_byte[usize::from(text.as_bytes()[0])].push(i);
        }
        TextCodec { inner, bos, eos, eos_ids, specials, specials_by_first_byte, plain: std::sync::OnceLock::new() }
    }

    /// The tokenizer, BOS and EOS of a GGUF file.
    pub fn from_gguf(content: &gguf_file::Content) -> Result<TextCodec> {
        let inner = tokenizer_from_gguf(content)?;
        let text_of = |key: &str| -> Result<Option<String>> {
            match meta_u32(content, key)? {
                None => Ok(None),
                Some(id) => match inner.id_to_token(id) {
                    Some(text) => Ok(Some(text)),
                    None => Err(malformed(format!("`{key}` {id} is outside the vocabulary"))),
                },
            }
        };
        let bos = text_of("tokenizer.ggml.bos_token_id")?;
        let eos = text_of("tokenizer.ggml.eos_token_id")?;
        let mut eos_ids: Vec<u32> = meta_u32(content, "tokenizer.ggml.eos_token_id")?.into_iter().collect();
        eos_ids.extend(meta_u32(content, "tokenizer.ggml.eot_token_id")?);
        Ok(TextCodec::new(inner, bos, eos, eos_ids))
    }

    /// The tokenizer of a Hugging Face checkpoint: `tokenizer.json`, BOS/EOS from
    /// `tokenizer_config.json`, extra EOS ids from `generation_config.json`.
    pub fn from_files(
        tokenizer_json: &Path,
        tokenizer_config: Option<&Path>,
        generation_config: Option<&Path>,
    ) -> Result<TextCodec> {
        let inner = load_tokenizer_json(tokenizer_json)?;
        let (bos, eos) = match tokenizer_config {
            Some(path) => {
                let config = TokenizerConfig::load(path)?;
                (config.bos_token, config.eos_token)
            }
            None => (None, None),
        };
        let eos_ids = match generation_config {
            Some(path) => generation_eos_ids(path)?,
            None => Vec::new(),
        };
        Ok(TextCodec::new(inner, bos, eos, eos_ids))
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|err| SynthError::failed(format!("cannot tokenize text: {err}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Whether `text` holds the text of a special token, which [`TextCodec::encode`] would
    /// turn into that token.
    pub fn contains_special(&self, text: &str) -> bool {
        self.scan_specials(text, true).next().is_some()
    }

    /// Where `text` holds special-token text, as the tokenizer matches it: leftmost first,
    /// the longest token at a position, no overlaps. Byte ranges and token ids.
    pub fn find_specials(&self, text: &str) -> Vec<(std::ops::Range<usize>, u32)> {
        self.scan_specials(text, false).collect()
    }

    fn scan_specials<'a>(
        &'a self,
        text: &'a str,
        any: bool,
    ) -> impl Iterator<Item = (std::ops::Range<usize>, u32)> + 'a {
        let bytes = text.as_bytes();
        let mut at = 0;
        std::iter::from_fn(move || {
            while at < bytes.len() {
                let start = at;
                let found = self.specials_by_first_byte[usize::from(bytes[start])]
                    .iter()
                    .map(|&i| &self.specials[i])
                    .find(|(special, _)| bytes[start..].starts_with(special.as_bytes()));
                match found {
                    Some((special, id)) => {
                        at = if any { bytes.len() } else { start + special.len() };
                        return Some((start..start + special.len(), *id));
                    }
                    None => at += 1,
                }
            }
            None
        })
    }

    /// Encodes pieces in order: text with special-token matching off (so `<|im_end|>` in it
    /// is ordinary text), special tokens as their ids; then the post-processor adds what it
    /// adds (BOS) when `add_special_tokens`. Text split only at special tokens gives the ids
    /// [`TextCodec::encode`] gives the joined text, as the tokenizer splits there too.
    pub fn encode_pieces(&self, pieces: &[Piece], add_special_tokens: bool) -> Result<Vec<u32>> {
        let failed = |err: tokenizers::Error| SynthError::failed(format!("cannot tokenize text: {err}"));
        let plain = self.plain.get_or_init(|| {
            let mut plain = self.inner.clone();
            plain.set_encode_special_tokens(true);
            plain
        });
        let mut encodings = Vec::with_capacity(pieces.len());
        for piece in pieces {
            encodings.push(match piece {
                Piece::Text(text) => plain.encode_fast(text.as_str(), false).map_err(failed)?,
                Piece::Special(id) => {
                    let text = self
                        .inner
                        .id_to_token(*id)
                        .ok_or_else(|| SynthError::failed(format!("token id {id} is outside the vocabulary")))?;
                    tokenizers::Encoding::from_tokens(vec![tokenizers::Token::new(*id, text, (0, 0))], 0)
                }
            });
        }
        let encoding = self
            .inner
            .post_process(tokenizers::Encoding::merge(encodings, false), None, add_special_tokens)
            .map_err(failed)?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|err| SynthError::failed(format!("cannot decode token ids: {err}")).into())
    }

    /// The id of a token given as its exact vocabulary string (`<|im_end|>`, `Ġthe`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn bos(&self) -> Option<&SpecialToken> {
        self.bos.as_ref()
    }

    pub fn eos(&self) -> Option<&SpecialToken> {
        self.eos.as_ref()
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Ids that end a generation: the registry's stop tokens present in this vocabulary, plus
    /// the model files' own EOS ids. Sorted, no duplicates.
    pub fn stop_ids(&self, spec: &ModelSpec) -> Vec<u32> {
        let mut ids: Vec<u32> = spec.stop_tokens.iter().filter_map(|t| self.token_id(t)).collect();
        ids.extend(&self.eos_ids);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// The parts of `tokenizer_config.json` synth uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenizerConfig {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// `chat_template`: a string, or the template named `default` from a list of
    /// `{name, template}`.
    pub chat_template: Option<String>,
}

impl TokenizerConfig {
    pub fn load(path: &Path) -> Result<TokenizerConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| SynthError::failed(format!("cannot read `{}`: {err}", path.display())))?;
        TokenizerConfig::parse(&text).map_err(|msg| SynthError::invalid(format!("`{}`: {msg}", path.display())).into())
    }

    pub fn parse(text: &str) -> std::result::Result<TokenizerConfig, String> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|err| format!("invalid JSON: {err}"))?;
        let obj = value.as_object().ok_or("expected a JSON object")?;
        // A special token is a plain string or an `AddedToken` object with `content`.
        let token = |key: &str| -> std::result::Result<Option<String>, String> {
            match obj.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(serde_json::Value::Object(o)) => match o.get("content") {
                    Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                    _ => Err(format!("field `{key}` is an object without a string `content`")),
                },
                Some(_) => Err(format!("field `{key}` must be a string or an object with `content`")),
            }
        };
        let chat_template = match obj.get("chat_template") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Array(list)) => {
                let named = |item: &serde_json::Value| -> Option<(String, String)> {
                    Some((item.get("name")?.as_str()?.to_string(), item.get("template")?.as_str()?.to_string()))
                };
                let templates: Vec<(String, String)> = list.iter().filter_map(named).collect();
                if templates.len() != list.len() {
                    return Err(
                        "field `chat_template` is a list whose items are not all `{name, template}` strings".into()
                    );
                }
                let names: Vec<String> = templates.iter().map(|(n, _)| format!("`{n}`")).collect();
                let default = templates.into_iter().find(|(name, _)| name == "default").map(|(_, t)| t);
                Some(default.ok_or_else(|| {
                    format!("field `chat_template` has no template named `default` (has {})", names.join(", "))
                })?)
            }
            Some(_) => return Err("field `chat_template` must be a string or a list of `{name, template}`".into()),
        };
        Ok(TokenizerConfig { bos_token: token("bos_token")?, eos_token: token("eos_token")?, chat_template })
    }
}

/// `eos_token_id` from `generation_config.json`: a number or a list of numbers.
fn generation_eos_ids(path: &Path) -> Result<Vec<u32>> {
    let bad = |msg: String| -> anyhow::Error { SynthError::invalid(format!("`{}`: {msg}", path.display())).into() };
    let text = std::fs::read_to_string(path)
        .map_err(|err| SynthError::failed(format!("cannot read `{}`: {err}", path.display())))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|err| bad(format!("invalid JSON: {err}")))?;
    let id = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    match value.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(list)) => list
            .iter()
            .map(|v| id(v).ok_or_else(|| bad(format!("`eos_token_id` holds `{v}`, expected token ids"))))
            .collect(),
        Some(v) => Ok(vec![id(v).ok_or_else(|| bad(format!("`eos_token_id` is `{v}`, expected a token id")))?]),
    }
}

fn malformed(msg: String) -> anyhow::Error {
    SynthError::invalid(format!("malformed GGUF metadata: {msg}"))
        .hint("the file may be damaged or written by an incompatible converter; download it again")
        .into()
}

fn type_error(key: &str, value: &gguf_file::Value, want: &str) -> anyhow::Error {
    malformed(format!("`{key}` is a {:?}, expected {want}", value.value_type()))
}

fn meta_str<'a>(content: &'a gguf_file::Content, key: &str) -> Result<&'a str> {
    let value = content.metadata.get(key).ok_or_else(|| malformed(format!("`{key}` is missing")))?;
    value.to_string().map(String::as_str).map_err(|_| type_error(key, value, "a string"))
}

fn meta_str_array<'a>(content: &'a gguf_file::Content, key: &str) -> Result<Vec<&'a str>> {
    let value = content.metadata.get(key).ok_or_else(|| malformed(format!("`{key}` is missing")))?;
    let items = value.to_vec().map_err(|_| type_error(key, value, "an array of strings"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| v.to_string().map(String::as_str).map_err(|_| type_error(&format!("{key}[{i}]"), v, "a string")))
        .collect()
}

fn as_int(value: &gguf_file::Value) -> Option<i64> {
    use gguf_file::Value as V;
    match *value {
        V::U8(v) => Some(v.into()),
        V::I8(v) => Some(v.into()),
        V::U16(v) => Some(v.into()),
        V::I16(v) => Some(v.into()),
        V::U32(v) => Some(v.into()),
        V::I32(v) => Some(v.into()),
        V::U64(v) => i64::try_from(v).ok(),
        V::I64(v) => Some(v),
        _ => None,
    }
}

fn meta_int_array(value: &gguf_file::Value, key: &str) -> Result<Vec<i64>> {
    let items = value.to_vec().map_err(|_| type_error(key, value, "an array of integers"))?;
    items
        .iter()
        .enumerate()
        .map(|(i, v)| as_int(v).ok_or_else(|| type_error(&format!("{key}[{i}]"), v, "an integer")))
        .collect()
}

/// An optional token id; present but not a valid id is an error.
fn meta_u32(content: &gguf_file::Content, key: &str) -> Result<Option<u32>> {
    match content.metadata.get(key) {
        None => Ok(None),
        Some(value) => as_int(value)
            .and_then(|v| u32::try_from(v).ok())
            .map(Some)
            .ok_or_else(|| type_error(key, value, "a token id")),
    }
}

fn meta_bool(content: &gguf_file::Content, key: &str) -> Result<Option<bool>> {
    match content.metadata.get(key) {
        None => Ok(None),
        Some(value) => value.to_bool().map(Some).map_err(|_| type_error(key, value, "a bool")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gguf_file::Value as V;

    fn content(entries: Vec<(&str, V)>) -> gguf_file::Content {
        gguf_file::Content {
            magic: gguf_file::VersionedMagic::GgufV3,
            metadata: entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            tensor_infos: Default::default(),
            tensor_data_offset: 0,
        }
    }

    fn strs(items: &[&str]) -> V {
        V::Array(items.iter().map(|s| V::String(s.to_string())).collect())
    }

    /// A toy byte-level vocabulary: "Ġ" is the byte-level form of a space.
    fn toy(extra: Vec<(&str, V)>) -> gguf_file::Content {
        let mut entries = vec![
            ("tokenizer.ggml.model", V::String("gpt2".into())),
            ("tokenizer.ggml.pre", V::String("smollm".into())),
            ("tokenizer.ggml.tokens", strs(&["<s>", "</s>", "a", "b", "Ġ", "1", "2", "ab", "Ġab", "<x>"])),
            ("tokenizer.ggml.token_type", V::Array([3, 3, 1, 1, 1, 1, 1, 1, 1, 4].into_iter().map(V::I32).collect())),
            ("tokenizer.ggml.merges", strs(&["a b", "Ġ ab"])),
            ("tokenizer.ggml.bos_token_id", V::U32(0)),
            ("tokenizer.ggml.eos_token_id", V::U32(1)),
        ];
        entries.extend(extra);
        content(entries)
    }

    #[test]
    fn toy_gguf_tokenizer_merges_splits_digits_and_keeps_control_tokens_whole() {
        let codec = TextCodec::from_gguf(&toy(vec![])).unwrap();
        assert_eq!(codec.encode("ab ab12", true).unwrap(), [7, 8, 5, 6]);
        assert_eq!(codec.encode("<s>ab</s><x>", false).unwrap(), [0, 7, 1, 9]);
        assert_eq!(codec.decode(&[0, 7, 8, 1, 9], true).unwrap(), "ab ab<x>");
        assert_eq!(codec.bos(), Some(&SpecialToken { text: "<s>".into(), id: Some(0) }));
        assert_eq!(codec.eos(), Some(&SpecialToken { text: "</s>".into(), id: Some(1) }));
    }

    #[test]
    fn add_bos_token_prepends_bos_only_with_special_tokens() {
        let codec = TextCodec::from_gguf(&toy(vec![("tokenizer.ggml.add_bos_token", V::Bool(true))])).unwrap();
        assert_eq!(codec.encode("ab", true).unwrap(), [0, 7]);
        assert_eq!(codec.encode("ab", false).unwrap(), [7]);
    }

    #[test]
    fn malformed_metadata_is_an_error_not_a_panic() {
        let cases: Vec<(Vec<(&str, V)>, &str)> = vec![
            (
                vec![("tokenizer.ggml.model", V::String("llama".into()))],
                "GGUF tokenizer model `llama` is not supported",
            ),
            (vec![("tokenizer.ggml.pre", V::String("falcon".into()))], "GGUF pre-tokenizer `falcon`"),
            (vec![("tokenizer.ggml.merges", strs(&["ab"]))], "`tokenizer.ggml.merges[0]` is `ab`"),
            (
                vec![("tokenizer.ggml.tokens", V::U32(3))],
                "`tokenizer.ggml.tokens` is a U32, expected an array of strings",
            ),
            (vec![("tokenizer.ggml.token_type", V::Array(vec![V::I32(1)]))], "has 1 entries but"),
            (
                vec![("tokenizer.ggml.eos_token_id", V::U32(99))],
                "`tokenizer.ggml.eos_token_id` 99 is outside the vocabulary",
            ),
            (
                vec![("tokenizer.ggml.bos_token_id", V::I32(-1))],
                "`tokenizer.ggml.bos_token_id` is a I32, expected a token id",
            ),
        ];
        for (extra, want) in cases {
            // Later entries replace the toy's.
            let err = TextCodec::from_gguf(&toy(extra)).unwrap_err();
            assert!(err.to_string().contains(want), "want {want:?} in {err}");
        }
        let err = TextCodec::from_gguf(&content(vec![])).unwrap_err();
        assert_eq!(err.to_string(), "malformed GGUF metadata: `tokenizer.ggml.model` is missing");
    }

    #[test]
    fn tokenizer_config_special_tokens_and_template_shapes() {
        let c = TokenizerConfig::parse(
            r#"{"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "chat_template": "x"}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            TokenizerConfig {
                bos_token: Some("<s>".into()),
                eos_token: Some("</s>".into()),
                chat_template: Some("x".into())
            }
        );
        let c = TokenizerConfig::parse(
            r#"{"bos_token": null, "chat_template": [{"name": "tool_use", "template": "t"}, {"name": "default", "template": "d"}]}"#,
        )
        .unwrap();
        assert_eq!((c.bos_token, c.chat_template.as_deref()), (None, Some("d")));
        let err = TokenizerConfig::parse(r#"{"chat_template": [{"name": "rag", "template": "r"}]}"#).unwrap_err();
        assert_eq!(err, "field `chat_template` has no template named `default` (has `rag`)");
        assert!(TokenizerConfig::parse(r#"{"bos_token": 3}"#).unwrap_err().contains("`bos_token`"));
    }

    #[test]
    fn generation_config_eos_is_a_number_or_a_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("generation_config.json");
        std::fs::write(&path, r#"{"eos_token_id": [128001, 128008, 128009]}"#).unwrap();
        assert_eq!(generation_eos_ids(&path).unwrap(), [128001, 128008, 128009]);
        std::fs::write(&path, r#"{"eos_token_id": 7}"#).unwrap();
        assert_eq!(generation_eos_ids(&path).unwrap(), [7]);
        std::fs::write(&path, r#"{"eos_token_id": "x"}"#).unwrap();
        assert!(generation_eos_ids(&path).unwrap_err().to_string().contains("`eos_token_id` is `\"x\"`"));
    }
}
