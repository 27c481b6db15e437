//! A model's text side: tokenizer, chat template and stop ids, from a GGUF file's metadata or
//! from a Hugging Face checkpoint's tokenizer files.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::quantized::gguf_file;

use super::chat_template::{self, ChatTemplate};
use super::gguf_header::read_gguf;
use super::registry::{ModelSpec, WeightFormat};
use super::resolve::ResolvedModel;
use super::tokenizer::{TextCodec, TokenizerConfig};
use crate::error::SynthError;
use crate::store::row::Message;

/// Everything between a conversation and token ids for one model: its tokenizer, its chat
/// template, and the ids that end a generation.
#[derive(Debug)]
pub struct ModelText {
    pub tokenizer: TextCodec,
    pub template: ChatTemplate,
    pub stop_ids: Vec<u32>,
    /// The registry name, for messages.
    pub model_name: String,
    /// The longest prompt [`ModelText::encode_chat`] renders: the registry's `contextLength`
    /// at [`chat_template::PROMPT_BYTES_PER_TOKEN`].
    pub max_prompt_bytes: usize,
}

impl ModelText {
    /// Loads the tokenizer and chat template from a resolved model's files.
    pub fn load(resolved: &ResolvedModel) -> Result<ModelText> {
        let spec = &resolved.spec;
        match spec.format {
            WeightFormat::Gguf => {
                let path = resolved
                    .gguf()
                    .ok_or_else(|| SynthError::failed(format!("model `{}` has no `.gguf` file", spec.name)))?;
                let content = read_gguf(path)?;
                ModelText::from_gguf(spec, &content)
            }
            WeightFormat::Safetensors => {
                let tokenizer_json = resolved
                    .file("tokenizer.json")
                    .ok_or_else(|| SynthError::failed(format!("model `{}` lists no `tokenizer.json`", spec.name)))?;
                let config = resolved.file("tokenizer_config.json");
                let tokenizer = TextCodec::from_files(tokenizer_json, config, resolved.file("generation_config.json"))?;
                let config = config.map(TokenizerConfig::load).transpose()?.unwrap_or_default();
                let source = match config.chat_template {
                    Some(source) => source,
                    None => template_file_beside(tokenizer_json)?.ok_or_else(|| no_template(spec))?,
                };
                ModelText::assemble(spec, tokenizer, source, config.bos_token, config.eos_token)
            }
        }
    }

    /// The tokenizer and template of a GGUF file whose metadata is already read (the engine
    /// reads it for the weights too).
    pub fn from_gguf(spec: &ModelSpec, content: &gguf_file::Content) -> Result<ModelText> {
        let tokenizer = TextCodec::from_gguf(content).with_context(|| format!("model `{}`", spec.name))?;
        let source = chat_template::template_from_gguf(content).with_context(|| format!("model `{}`", spec.name))?;
        let bos = tokenizer.bos().map(|t| t.text.clone());
        let eos = tokenizer.eos().map(|t| t.text.clone());
        ModelText::assemble(spec, tokenizer, source, bos, eos)
    }

    fn assemble(
        spec: &ModelSpec,
        tokenizer: TextCodec,
        source: String,
        bos: Option<String>,
        eos: Option<String>,
    ) -> Result<ModelText> {
        let template = ChatTemplate::new(source, bos, eos).with_context(|| format!("model `{}`", spec.name))?;
        let stop_ids = tokenizer.stop_ids(spec);
        if stop_ids.is_empty() {
            return Err(SynthError::invalid(format!(
                "model `{}`: none of its stop tokens ({}) is in the vocabulary",
                spec.name,
                spec.stop_tokens.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
            ))
            .hint(format!("fix `stopTokens` in `{}`", spec.origin))
            .into());
        }
        Ok(ModelText {
            tokenizer,
            template,
            stop_ids,
            model_name: spec.name.clone(),
            max_prompt_bytes: chat_template::max_prompt_bytes(spec.context_length),
        })
    }

    /// The prompt ids for `messages`, ending in the assistant's turn header. A prompt longer
    /// than [`ModelText::max_prompt_bytes`] is refused before it is tokenized.
    pub fn encode_chat(&self, messages: &[Message], enable_thinking: Option<bool>) -> Result<Vec<u32>> {
        chat_template::encode_prompt_within(
            &self.template,
            &self.tokenizer,
            messages,
            enable_thinking,
            self.max_prompt_bytes,
        )
        .with_context(|| format!("model `{}`", self.model_name))
    }
}

/// Newer `transformers` releases save the template as `chat_template.jinja` next to
/// `tokenizer_config.json` rather than inside it.
fn template_file_beside(tokenizer_json: &Path) -> Result<Option<String>> {
    let Some(path) = tokenizer_json.parent().map(|dir| dir.join("chat_template.jinja")) else { return Ok(None) };
    if !path.is_file() {
        return Ok(None);
    }
    std::fs::read_to_string(&path)
        .map(Some)
        .map_err(|err| SynthError::failed(format!("cannot read `{}`: {err}", path.display())).into())
}

fn no_template(spec: &ModelSpec) -> anyhow::Error {
    SynthError::not_found(format!("model `{}` has no chat template in `tokenizer_config.json`", spec.name))
        .hint("use the instruct/chat variant of the model")
        .into()
}
