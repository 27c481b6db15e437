//! Models: the registry of known models, finding their files locally, tokenizers, chat templates.
//!
//! A recipe's `modelName` → [`registry::Registry::get`] → [`resolve::resolve`] (files on disk)
//! → [`text::ModelText::load`] (tokenizer + chat template) → prompt token ids for the engine.

pub mod chat_template;
pub mod choose;
pub mod download;
pub mod gguf_header;
pub mod load;
pub mod memory;
pub mod registry;
pub mod resolve;
pub mod text;
pub mod tokenizer;

pub use chat_template::{encode_prompt, ChatTemplate};
pub use gguf_header::read_gguf;
pub use load::{load_gguf_decoder, LoadedModel};
pub use registry::{Architecture, ChatTemplateSource, ModelSpec, Registry, WeightFormat};
pub use resolve::{presence, resolve, ModelSource, Presence, ResolvedModel};
pub use text::ModelText;
pub use tokenizer::{TextCodec, TokenizerConfig};
