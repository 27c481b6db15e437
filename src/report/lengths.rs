//! How long texts are: in tokens of the model that made the dataset when its files are on this
//! machine, else in words (the report says which).

use std::path::Path;

use rayon::prelude::*;

use crate::model::{resolve, ModelText, Registry, TextCodec};
use crate::store::artifacts::ModelRecord;

pub enum Measure {
    Tokens { model: String, tokenizer: Box<TextCodec> },
    Words,
}

impl Measure {
    /// The tokenizer of `model` (found as `synth run` finds it, or at the file it was loaded
    /// from), else words.
    pub fn for_model(model: Option<&ModelRecord>, synth_home: &Path) -> Measure {
        let Some(model) = model else { return Measure::Words };
        let load = || -> anyhow::Result<ModelText> {
            let registry = Registry::load(Some(synth_home))?;
            let spec = registry.get(&model.name)?;
            let resolved = resolve(spec, None, synth_home)
                .or_else(|_| resolve(spec, Some(Path::new(&model.source)), synth_home))?;
            ModelText::load(&resolved)
        };
        match load() {
            Ok(text) => Measure::Tokens { model: model.name.clone(), tokenizer: Box::new(text.tokenizer) },
            Err(_) => Measure::Words,
        }
    }

    /// `tokens (NAME tokenizer)` or `words`.
    pub fn unit(&self) -> String {
        match self {
            Measure::Tokens { model, .. } => format!("tokens ({model} tokenizer)"),
            Measure::Words => "words".to_string(),
        }
    }

    pub fn lengths(&self, texts: &[&str]) -> Vec<usize> {
        texts.par_iter().map(|t| self.length(t)).collect()
    }

    fn length(&self, text: &str) -> usize {
        match self {
            Measure::Tokens { tokenizer, .. } => {
                tokenizer.encode(text, false).map_or_else(|_| text.split_whitespace().count(), |ids| ids.len())
            }
            Measure::Words => text.split_whitespace().count(),
        }
    }
}
