//! `synth models download`: the one command that uses the network. It fetches a registry
//! entry's files into the Hugging Face cache (the layout `synth run` resolves from), through
//! hf-hub, honoring `HF_ENDPOINT` (mirrors, tests) and `HF_TOKEN` (gated models like Llama).

use std::path::{Path, PathBuf};

use anyhow::Result;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Repo, RepoType};

use super::ModelSpec;
use crate::error::SynthError;

/// Downloads every file of `spec` into `hub_cache`; returns their snapshot paths.
pub fn download(
    spec: &ModelSpec,
    hub_cache: &Path,
    endpoint: Option<String>,
    token: Option<String>,
) -> Result<Vec<PathBuf>> {
    if !spec.downloadable {
        return Err(SynthError::invalid(format!(
            "model `{}` is not downloadable: its files are not on the Hugging Face Hub at `{}`",
            spec.name, spec.hf_repo
        ))
        .hint(super::resolve::how_to_get(spec))
        .into());
    }
    let mut builder = ApiBuilder::new()
        .with_cache_dir(hub_cache.to_path_buf())
        .with_token(token)
        .with_progress(false)
        .with_retries(2);
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let api = builder.build().map_err(|e| SynthError::failed(format!("cannot set up the Hugging Face client: {e}")))?;
    let repo = api.repo(Repo::with_revision(spec.hf_repo.clone(), RepoType::Model, spec.revision.clone()));
    let mut paths = Vec::new();
    for file in &spec.files {
        eprintln!("downloading {}/{} ...", spec.hf_repo, file);
        let path = repo.download(file).map_err(|e| {
            SynthError::failed(format!("cannot download `{file}` of `{}` (revision `{}`): {e}", spec.hf_repo, spec.revision))
                .hint("check the network, `HF_ENDPOINT`, and for gated models `HF_TOKEN` (accept the license on huggingface.co first)")
        })?;
        paths.push(path);
    }
    Ok(paths)
}
