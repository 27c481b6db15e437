//! Models: the registry of known models, finding their files locally, tokenizers, chat templates.
