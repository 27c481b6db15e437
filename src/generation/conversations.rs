//! `synth generate`: conversations from a JSONL file (or one prompt) completed by a model, one
//! output line per input, in input order.
//!
//! ```text
//! in:  {"messages": [{"role", "content"}, ...]}   or   {"prompt": "..."}
//! out: {"messages": [..., {"role": "assistant", "content": "..."}], "finishReason", "promptTokens", "generatedTokens"}
//! ```

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use super::batch::{generate, mix_seed, BatchContext, EngineOptions, Job};
use crate::engine::{FinishReason, SamplingParams};
use crate::error::SynthError;
use crate::model::LoadedModel;
use crate::progress::Progress;
use crate::store::jsonl::{self, JsonlReader, LineError};
use crate::store::Message;

/// One output line.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    /// The input conversation followed by the model's answer.
    pub messages: Vec<Message>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
}

/// Reads `--input`: one conversation per line, with the store's line cap and role check.
pub fn read_conversations(path: &Path) -> Result<Vec<Vec<Message>>> {
    let file = std::fs::File::open(path)
        .map_err(|e| SynthError::not_found(format!("cannot read `{}`: {e}", path.display())))?;
    let mut conversations = Vec::new();
    for (line, parsed) in JsonlReader::with_parser(std::io::BufReader::new(file), jsonl::parse_conversation) {
        match parsed {
            Ok(messages) => conversations.push(messages),
            Err(LineError::Invalid(why)) => {
                return Err(SynthError::invalid(format!("{}:{line}: {why}", path.display())).into())
            }
            Err(LineError::Io(e)) => {
                return Err(SynthError::failed(format!("{}:{line}: cannot read: {e}", path.display())).into())
            }
        }
    }
    if conversations.is_empty() {
        return Err(SynthError::invalid(format!("`{}` has no conversations", path.display())).into());
    }
    Ok(conversations)
}

/// Completes every conversation; conversation `i` samples with seed `mix_seed(sampling.seed, i)`.
pub fn complete(
    model: &LoadedModel,
    conversations: Vec<Vec<Message>>,
    sampling: &SamplingParams,
    engine: &EngineOptions,
    progress: &mut Progress,
) -> Result<Vec<Completed>> {
    let jobs: Vec<Job> = conversations
        .into_iter()
        .enumerate()
        .map(|(i, messages)| Job {
            messages,
            params: SamplingParams { seed: mix_seed(sampling.seed, i as u64), ..sampling.clone() },
        })
        .collect();
    let context = BatchContext { engine, rate: None, admission: None, progress };
    let results = generate(model, &jobs, context, |_, _| Ok(()))?;
    let mut completed = Vec::with_capacity(jobs.len());
    for (job, result) in jobs.into_iter().zip(results) {
        let result = result.context("a generation did not finish")?;
        let mut messages = job.messages;
        messages.push(Message::new("assistant", result.text));
        completed.push(Completed {
            messages,
            finish_reason: result.finish,
            prompt_tokens: result.prompt_tokens,
            generated_tokens: result.generated_tokens,
        });
    }
    Ok(completed)
}

/// The output as JSON Lines.
pub fn to_jsonl(completed: &[Completed]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for line in completed {
        serde_json::to_writer(&mut out, line)?;
        out.push(b'\n');
    }
    Ok(out)
}
