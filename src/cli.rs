//! The command line: flags mirror into clap structs, then each command calls the library.
//! Data goes to stdout; progress, logs and errors to stderr.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::curation::settings::{self, CurationFlags, FilterFlag};
use crate::device::{self, DeviceChoice};
use crate::engine::SamplingParams;
use crate::error::{self, SynthError};
use crate::evaluation::recipe::{is_evaluation_text, EvalRecipe};
use crate::evaluation::{self, EvalOptions};
use crate::generation::conversations;
use crate::generation::journal::Journal;
use crate::generation::EngineOptions;
use crate::model::{presence, LoadedModel, Presence, Registry};
use crate::progress::{Progress, ProgressMode};
use crate::recipe::{read_text, Recipe};
use crate::report;
use crate::slurm::{SlurmRequest, MERGE_FILE, REQUEUE_FILE, SHARDS_FILE, SUBMIT_FILE};
use crate::store::atomic;
use crate::store::{ExportFormat, Message, Store};
use crate::synthesis::{merge, synthesize, RunOptions, Shard};

#[derive(Parser, Debug)]
#[command(
    name = "synth",
    version,
    about = "Turn data synthesis recipes into training datasets with LLMs on your own hardware"
)]
pub struct Cli {
    /// Where `run`, `eval` and `generate` run the model (also accepted after those commands):
    /// `auto`, `cpu`, `cuda`, `metal`, a device number `cuda:1`, a list `cuda:0,2`, or `cuda:all`.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<DeviceChoice>,
    /// Print no progress or summary lines on stderr (errors still print).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check recipes without running them.
    Validate {
        /// Recipe files (JSON): synthesis or evaluation recipes.
        #[arg(required = true, value_name = "RECIPE")]
        recipes: Vec<PathBuf>,
    },
    /// Run a synthesis recipe and publish the new dataset.
    Run(RunArgs),
    /// Run an evaluation recipe (`synth eval RECIPE`), or look at a stored run (`synth eval show RUN`).
    Eval(EvalArgs),
    /// Complete conversations with a model: one completion per input, in input order.
    Generate(GenerateArgs),
    /// Manage stored datasets (under `SYNTH_HOME`).
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Known models and their local files.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Write Slurm job scripts for a sharded run: an sbatch array (one task per shard) and a
    /// merge job that runs when every shard succeeded; prints the command that submits them.
    Slurm(SlurmArgs),
}

#[derive(Args, Debug)]
pub struct SlurmArgs {
    /// The synthesis recipe file (JSON), on a filesystem the compute nodes share.
    pub recipe: PathBuf,
    /// How many shards (array tasks).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub shards: usize,
    /// Id of the merged dataset (each shard's own dataset is named after it).
    #[arg(long)]
    pub output_id: String,
    /// GPUs per shard (`--gres=gpu:G`); 0 runs the shards on the CPU. Each shard runs on the
    /// GPUs Slurm gives it (`--device cuda`, or `cuda:all` for more than one) unless `--device`
    /// says otherwise.
    #[arg(long, value_name = "G", default_value_t = 0)]
    pub gpus_per_shard: usize,
    /// CPUs per shard (`--cpus-per-task`).
    #[arg(long, value_name = "C", value_parser = at_least_one)]
    pub cpus_per_shard: Option<usize>,
    /// Most shards running at once (`--array=0-N%K`).
    #[arg(long, value_name = "K", value_parser = at_least_one)]
    pub max_running: Option<usize>,
    /// Slurm partition (`--partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per job (`--time`), e.g. `4:00:00` or `1-12:00:00`.
    #[arg(long)]
    pub time: Option<String>,
    /// Account charged (`--account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Another sbatch option for both jobs, e.g. `--sbatch-arg=--mem=32G` (repeatable).
    #[arg(long, value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_arg: Vec<String>,
    /// Where the scripts and the jobs' logs go [default: `slurm-<output-id>`].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The synth binary the jobs run [default: this one]; it must be at that path on the nodes.
    #[arg(long, value_name = "PATH")]
    pub synth: Option<PathBuf>,
    /// Replace scripts left in `--dir` by an earlier `synth slurm`.
    #[arg(long)]
    pub overwrite: bool,
    /// More `synth run` flags for every shard, after `--` (e.g. `-- --num-samples 100000 --max-batch 64`).
    #[arg(last = true, value_name = "RUN FLAGS")]
    pub run_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Where the model runs: `auto` picks CUDA, then Metal, then CPU; `cuda` is `cuda:0`; also
    /// `cuda:1`, a list `cuda:0,2` or `cuda:all` (one engine per device), likewise `metal:`.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<DeviceChoice>,
    /// Load the model from this file (`.gguf`) or directory instead of looking it up.
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// Most sequences generated at once.
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub max_batch: usize,
    /// Prompt tokens fed to the model per step (longer prompts are fed in pieces).
    #[arg(long, default_value_t = 512, value_parser = at_least_one)]
    pub prefill_chunk: usize,
    /// KV-cache memory budget in MiB.
    #[arg(long, default_value_t = 4096, value_parser = at_least_one)]
    pub kv_cache_mib: usize,
    /// `synth run`: engines sharing the run, each with its share of `--max-batch`, the KV-cache
    /// budget and the CPU threads (a many-core CPU can do better with several).
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub engines: usize,
}

impl EngineArgs {
    fn options(&self) -> EngineOptions {
        EngineOptions {
            max_batch: self.max_batch,
            prefill_chunk: self.prefill_chunk,
            kv_cache_bytes: self.kv_cache_mib << 20,
            enable_thinking: None,
            engines: self.engines,
        }
    }

    /// The device named after the command, else before it, else `auto`.
    fn device(&self, before: Option<DeviceChoice>) -> DeviceChoice {
        self.device.or(before).unwrap_or(DeviceChoice::AUTO)
    }
}

fn at_least_one(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".into()),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

fn temperature(text: &str) -> std::result::Result<f64, String> {
    let t: f64 = text.parse().map_err(|e| format!("not a number: {e}"))?;
    if (0.0..=2.0).contains(&t) {
        Ok(t)
    } else {
        Err("must be between 0 and 2".into())
    }
}

fn top_p(text: &str) -> std::result::Result<f64, String> {
    let p: f64 = text.parse().map_err(|e| format!("not a number: {e}"))?;
    if p > 0.0 && p <= 1.0 {
        Ok(p)
    } else {
        Err("must be more than 0 and at most 1".into())
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The recipe file (JSON).
    pub recipe: PathBuf,
    /// Id of the new dataset (default: `<seed dataset id>_synth_<n>`).
    #[arg(long)]
    pub output_id: Option<String>,
    /// Use only the first N seed rows.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub limit: Option<usize>,
    /// Replace the output dataset if it exists.
    #[arg(long)]
    pub overwrite: bool,
    /// Discard the journal of an interrupted run of this recipe and start over (by default
    /// `synth run` resumes it).
    #[arg(long)]
    pub restart: bool,
    /// Extra attempts for an empty or cut-off generation, each with a new sampling seed (only
    /// when sampling: at temperature 0 a retry would repeat itself).
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Publish N rows (wins over the recipe's `numSamples`): seed rows are used round-robin, each
    /// pass a new variant, and dropped candidates are replaced until N rows are made.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub num_samples: Option<usize>,
    /// With `--num-samples`: the most candidates (seed row, variant) to try before publishing
    /// fewer rows than asked for [default: 3 × N].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub max_candidates: Option<usize>,
    /// Later variants of a seed see two other seed rows and a rewrite direction (`on`), or are
    /// prompted as the first pass is (`off`, for comparison).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = on_off, action = clap::ArgAction::Set)]
    pub diversity: bool,
    /// Make only shard I (from 0) of N: the rows of seed rows r with r % N == I, as dataset
    /// `<output id>.shard-I-of-N`; `synth datasets merge <output id> --shards N` joins them.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub curation: CurationArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `synth run`'s curation flags; they win over the recipe's `curation` object.
#[derive(Args, Debug)]
pub struct CurationArgs {
    /// Turn one curation filter on or off (repeatable, later ones win): tooShort, instructionEcho,
    /// assistantVoice, notARequest, answerInRequest, refusal, repetition, otherLanguage, seedCopy,
    /// judge (off unless turned on here or in the recipe: a local judge model grades each row),
    /// exactDuplicate, nearDuplicate, or `all` (`all=on` leaves the judge as it is).
    #[arg(long = "filter", value_name = "NAME=on|off", value_parser = settings::parse_filter_flag)]
    pub filters: Vec<FilterFlag>,
    /// Jaccard index of word 3-gram sets at or above which two requests are near duplicates
    /// (also the bar for `seedCopy` and `--exclude`) [default: 0.7].
    #[arg(long, value_name = "X", value_parser = settings::parse_threshold)]
    pub dedup_threshold: Option<f64>,
    /// Drop any new request that near-duplicates a user message of this dataset (an eval or test
    /// set: decontamination); repeatable, added to the recipe's `curation.exclude`.
    #[arg(long = "exclude", value_name = "DATASET_ID", value_parser = dataset_id)]
    pub exclude: Vec<String>,
}

impl CurationArgs {
    pub fn flags(&self) -> CurationFlags {
        CurationFlags {
            filters: self.filters.iter().flat_map(|f| f.0.iter().copied()).collect(),
            near_duplicate_threshold: self.dedup_threshold,
            exclude: self.exclude.clone(),
        }
    }
}

fn dataset_id(text: &str) -> std::result::Result<String, String> {
    crate::store::id::validate_dataset_id(text).map(|()| text.to_string())
}

fn on_off(text: &str) -> std::result::Result<bool, String> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("must be `on` or `off`".into()),
    }
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct EvalArgs {
    #[command(subcommand)]
    pub command: Option<EvalCommand>,
    /// The evaluation recipe file (JSON).
    #[arg(required = true)]
    pub recipe: Option<PathBuf>,
    /// Id of the new run (default: the next free `eval_run_<n>`); existing runs are never replaced.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Evaluate only the first N dataset rows.
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub limit: Option<usize>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Print a stored run's summary and its worst rows.
    Show {
        /// The run id, e.g. `eval_run_1`.
        run: String,
        /// How many of the worst rows (most failed evaluators first) to print.
        #[arg(long, default_value_t = 5)]
        worst: usize,
    },
    /// Write a stored run's report, one HTML file to open in a browser, and print its path.
    Report {
        /// The run id, e.g. `eval_run_1`.
        run: String,
        /// Where to write it, replacing the file there [default: `evals/<run>/report.html`].
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model name from the registry (see `synth models list`; `NAME:QUANT` for a GGUF variant).
    /// Optional with a `.gguf` `--model-path`, whose metadata names the model.
    #[arg(long, required_unless_present = "model_path")]
    pub model: Option<String>,
    /// One user message to complete.
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    pub prompt: Option<String>,
    /// JSONL file: one `{"messages": [...]}` or `{"prompt": "..."}` per line.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Sampling temperature, 0 to 2; 0 is greedy.
    #[arg(long, default_value_t = 0.0, value_parser = temperature)]
    pub temperature: f64,
    /// Most tokens generated per completion.
    #[arg(long, default_value_t = 256, value_parser = at_least_one)]
    pub max_new_tokens: usize,
    /// Sampling seed; completion `i` samples with a seed mixed from this one and `i`.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Nucleus sampling threshold, in (0, 1]; 1 is off.
    #[arg(long, default_value_t = 1.0, value_parser = top_p)]
    pub top_p: f64,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Write JSONL here instead of stdout (never replaces an existing file unless `--overwrite`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Replace an existing `--output` file (a device or FIFO is written in place).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Subcommand, Debug)]
pub enum DatasetsCommand {
    /// Import a JSONL, Parquet (`.parquet`) or CSV (`.csv`) file (chat, prompt/response or
    /// Alpaca rows) as a dataset.
    Import {
        /// The JSONL file to import (or a `.parquet` or `.csv` file).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The new dataset's id.
        #[arg(long)]
        id: String,
        /// Replace an existing dataset with this id.
        #[arg(long)]
        overwrite: bool,
    },
    /// List stored datasets, and interrupted runs that can be resumed.
    List,
    /// Print rows of a dataset as JSONL.
    Show {
        /// The dataset id (see `synth datasets list`).
        #[arg(value_name = "ID")]
        id: String,
        /// Which split: `train`, `validation` or `test`.
        #[arg(long, default_value = "train")]
        split: String,
        /// Most rows to print.
        #[arg(long, value_name = "N", default_value_t = 10)]
        limit: usize,
    },
    /// Write a dataset's report, one HTML file to open in a browser, and print its path.
    Report {
        /// The dataset id.
        #[arg(value_name = "ID")]
        id: String,
        /// Where to write it, replacing the file there [default: `datasets/<id>/report.html`].
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Print a dataset's figures: splits, lengths, rows per seed row, diversity, quality flags.
    Stats {
        /// The dataset id.
        #[arg(value_name = "ID")]
        id: String,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a dataset out as JSONL, Parquet, or the Hugging Face `datasets` layout.
    Export {
        /// The dataset id.
        #[arg(value_name = "ID")]
        id: String,
        /// `jsonl`, `parquet`, or `hf` (Parquet files under `data/` and a `README.md` dataset card).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The new directory to write.
        #[arg(long)]
        output: PathBuf,
        /// Replace `--output` if it exists.
        #[arg(long)]
        overwrite: bool,
    },
    /// Delete a dataset (refused while a run is writing it).
    Delete {
        /// The dataset id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Delete the journals of interrupted runs (they can then no longer be resumed) and any
    /// leftover temporary directories; a run in progress is left alone.
    Clean,
    /// Publish the N shards of a run (`synth run --shard I/N --output-id ID`) as dataset ID,
    /// the same bytes a single process would have made.
    Merge {
        /// The merged dataset's id (the runs' `--output-id`).
        #[arg(value_name = "ID")]
        id: String,
        /// How many shards the run was split into.
        #[arg(long, value_name = "N", value_parser = at_least_one)]
        shards: usize,
        /// Replace an existing dataset with this id.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Registered models and whether their files are present locally.
    List,
    /// Download a registered model's files into the Hugging Face cache (the only command that
    /// uses the network; honors `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_CACHE`, `HF_HOME`).
    Download {
        /// Model name or alias.
        name: String,
    },
}

/// Parses arguments, runs, prints any error with its hint; returns the exit code. A closed
/// stdout (`synth datasets show ID | head -1`) ends the command quietly.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => 0,
        Err(err) if closed_stdout(&err) => 0,
        Err(err) => {
            eprintln!("{}", error::render(&err));
            error::exit_code(&err)
        }
    }
}

/// Writes a line of data to stdout; an error (a closed pipe) is returned, not a panic.
macro_rules! out {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(StdoutError)?
    };
}

/// Writing to stdout failed.
#[derive(Debug)]
struct StdoutError(std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write to stdout: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

fn closed_stdout(err: &anyhow::Error) -> bool {
    err.downcast_ref::<StdoutError>().is_some_and(|e| e.0.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Summary lines on stderr, unless `--quiet`.
struct Say(bool);

impl Say {
    fn line(&self, text: impl std::fmt::Display) {
        if self.0 {
            eprintln!("{text}");
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let progress = if cli.quiet { ProgressMode::Quiet } else { ProgressMode::Auto };
    let say = Say(!cli.quiet);
    match cli.command {
        Command::Validate { recipes } => validate(&recipes, &say),
        Command::Run(args) => run_command(args, cli.device, progress, &say),
        Command::Eval(args) => eval_command(args, cli.device, progress, &say),
        Command::Generate(args) => generate_command(args, cli.device, progress),
        Command::Datasets(command) => datasets_command(command, &say),
        Command::Models(ModelsCommand::List) => models_list(),
        Command::Models(ModelsCommand::Download { name }) => models_download(&name),
        Command::Slurm(args) => slurm_command(args, cli.device, &say),
    }
}

/// `n row` or `n rows`.
fn rows(n: usize) -> String {
    if n == 1 {
        "1 row".to_string()
    } else {
        format!("{n} rows")
    }
}

fn validate(paths: &[PathBuf], say: &Say) -> Result<()> {
    let mut failures = Vec::new();
    for path in paths {
        match validate_one(path, say) {
            Ok(line) => out!("{line}"),
            Err(err) => failures.push(err),
        }
    }
    match failures.len() {
        0 => Ok(()),
        1 => Err(failures.remove(0)),
        n => {
            for err in &failures[..n - 1] {
                eprintln!("{}", error::render(err));
            }
            Err(failures.pop().expect("n > 1"))
        }
    }
}

/// Reads the recipe once (a pipe or FIFO can be read only once), then checks it by its kind.
fn validate_one(path: &Path, say: &Say) -> Result<String> {
    let (origin, text) = read_text(path)?;
    if is_evaluation_text(&text) {
        let r = EvalRecipe::from_json_str(&text, &origin)?;
        warn_slow_rate_cap(
            &origin,
            "recipeConfig.evaluationConfig.inferenceConfig",
            &r.dataset_id,
            r.inference.requests_per_minute,
            1,
            say,
        );
        return Ok(format!(
            "ok: {origin} (evaluation: model `{}`, dataset `{}`, {} evaluators)",
            r.model.model_name,
            r.dataset_id,
            r.evaluators.len()
        ));
    }
    let recipe = Recipe::from_json_str(&text, &origin)?;
    let dataset = &recipe.synthesis.dataset_id;
    warn_slow_rate_cap(&origin, "inferenceConfig", dataset, recipe.inference.requests_per_minute, 2, say);
    Ok(format!("ok: {origin} (model `{}`, dataset `{dataset}`)", recipe.model.model_name))
}

/// Warns when `requestsPerMinute` alone makes a run over the stored dataset take more than a
/// day (`per_row` requests per row at least). Nothing is said when the dataset is not stored.
fn warn_slow_rate_cap(origin: &str, at: &str, dataset: &str, cap: Option<f64>, per_row: usize, say: &Say) {
    let Some(cap) = cap else { return };
    let Ok(count) = Store::open_default().and_then(|s| s.manifest(dataset)).map(|m| m.total_rows()) else { return };
    let minutes = (count * per_row) as f64 / cap;
    if minutes > 24.0 * 60.0 {
        say.line(format!(
            "warning: {origin}: {at}.requestsPerMinute: `{cap}` makes the {} of dataset `{dataset}` take at least {:.1} days ({} requests)",
            rows(count),
            minutes / (24.0 * 60.0),
            count * per_row
        ));
    }
}

fn run_command(args: RunArgs, device: Option<DeviceChoice>, progress: ProgressMode, say: &Say) -> Result<()> {
    let store = Store::open_default()?;
    let options = RunOptions {
        device: args.engine.device(device),
        output_id: args.output_id,
        limit: args.limit,
        model_path: args.engine.model_path.clone(),
        overwrite: args.overwrite,
        restart: args.restart,
        retries: args.retries,
        stop: Some(stop_on_ctrl_c()?),
        progress,
        engine: args.engine.options(),
        num_samples: args.num_samples,
        max_candidates: args.max_candidates,
        diversity: args.diversity,
        shard: args.shard,
        curation: args.curation.flags(),
    };
    let report = synthesize(&args.recipe, &store, &options)?;
    let [train, validation, test] = report.splits;
    if let Some((asked, candidates, dropped_by)) = &report.volume {
        let made = train + validation + test;
        if made < *asked {
            eprintln!(
                "{}",
                format_args!(
                "warning: made {made} of the {asked} rows asked for: the candidate budget ran out after {candidates} candidates (dropped: {}); raise `--max-candidates` or `inferenceMaxNewTokens`",
                    serde_json::to_string(dropped_by).unwrap_or_default()
                )
            );
        } else {
            say.line(format!("made {made} rows from {candidates} candidates"));
        }
    }
    say.line(format!(
        "synthesized {} from {} seed rows ({} dropped) in {:.1}s, {} tokens at {:.1} tok/s",
        rows(train + validation + test),
        report.seed_rows,
        report.dropped,
        report.wall_seconds,
        report.generated_tokens,
        report.tokens_per_second()
    ));
    match (options.shard, &options.output_id) {
        (Some(shard), Some(base)) => say.line(format!(
            "shard {}/{} of `{base}`: {train} rows kept in candidate order; when every shard is done: `synth datasets merge {base} --shards {}`",
            shard.index, shard.count, shard.count
        )),
        _ => say.line(format!("splits: train {train}, validation {validation}, test {test}")),
    }
    out!("{}", report.id);
    say.line(format!("dataset `{}` is at {}", report.id, report.path.display()));
    Ok(())
}

/// The first Ctrl-C sets the returned flag: the run stops admitting new generations, finishes
/// the ones in flight (each is journaled) and exits as interrupted. A second one exits at once;
/// the journal already holds every finished generation.
fn stop_on_ctrl_c() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nstopping now; run the same command again to resume");
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the generations in flight, then stopping (Ctrl-C again stops at once)");
    })
    .context("cannot install the Ctrl-C handler")?;
    Ok(stop)
}

fn eval_command(args: EvalArgs, device: Option<DeviceChoice>, progress: ProgressMode, say: &Say) -> Result<()> {
    let store = Store::open_default()?;
    match args.command {
        Some(EvalCommand::Show { run, worst }) => {
            write!(std::io::stdout().lock(), "{}", evaluation::show::show(&store, &run, worst)?)
                .map_err(StdoutError)?;
            return Ok(());
        }
        Some(EvalCommand::Report { run, output }) => {
            out!("{}", report::write_eval_report(&store, &run, output.as_deref())?.display());
            return Ok(());
        }
        None => {}
    }
    let recipe = args.recipe.context("clap requires a recipe")?;
    let options = EvalOptions {
        device: args.engine.device(device),
        run_id: args.run_id,
        limit: args.limit,
        model_path: args.engine.model_path.clone(),
        progress,
        engine: args.engine.options(),
    };
    let report = evaluation::evaluate(&recipe, &store, &options)?;
    for e in &report.evaluators {
        let rate = e.pass_rate().map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        say.line(format!(
            "{}: {rate} passed ({} pass, {} fail, {} unparseable, {} skipped)",
            e.name, e.pass, e.fail, e.unparseable, e.skipped
        ));
    }
    say.line(format!(
        "evaluated {} in {:.1}s, {} failed; run `{}` is at {}",
        rows(report.rows),
        report.wall_seconds,
        report.failed_rows,
        report.run_id,
        report.path.display()
    ));
    out!("{}", report.run_id);
    match &report.failure_modes_dataset {
        Some(id) => {
            say.line(format!(
                "{} failure modes over {} failed rows: dataset `{id}`",
                report.failure_modes, report.failed_rows
            ));
            out!("{id}");
        }
        None if report.failed_rows == 0 => say.line("no row failed, so there is no failure-mode dataset"),
        None => {}
    }
    say.line(format!("see `synth eval show {}`", report.run_id));
    Ok(())
}

fn generate_command(args: GenerateArgs, device: Option<DeviceChoice>, progress: ProgressMode) -> Result<()> {
    let engine = args.engine.options();
    if let Some(out) = &args.output {
        atomic::check_writable(out, args.overwrite)?;
    }
    let conversations = match (&args.prompt, &args.input) {
        (Some(prompt), _) => vec![vec![Message::new("user", prompt.clone())]],
        (None, Some(path)) => conversations::read_conversations(path)?,
        (None, None) => return Err(SynthError::invalid("give `--prompt TEXT` or `--input FILE`").into()),
    };
    let store = Store::open_default()?;
    let device = device::open(args.engine.device(device))?;
    let registry = Registry::load(Some(store.root()))?;
    let model = match (&args.model, &args.engine.model_path) {
        (None, Some(path)) if path.is_file() => LoadedModel::load_file(path, &device)?,
        (None, _) => {
            return Err(SynthError::invalid("`--model-path` without `--model` must be a `.gguf` file")
                .hint("name the model with `--model NAME`")
                .into())
        }
        (Some(name), path) => LoadedModel::load(&registry, name, path.as_deref(), store.root(), &device)?,
    };
    let sampling = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        max_new_tokens: args.max_new_tokens,
        seed: args.seed,
    };
    let mut bar = Progress::new("generating", conversations.len(), progress);
    let completed = conversations::complete(&model, conversations, &sampling, &engine, &mut bar)?;
    bar.finish();
    let out = conversations::to_jsonl(&completed)?;
    match &args.output {
        Some(path) => atomic::write_file(path, &out, args.overwrite),
        None => std::io::stdout().lock().write_all(&out).map_err(|e| StdoutError(e).into()),
    }
}

fn datasets_command(command: DatasetsCommand, say: &Say) -> Result<()> {
    let store = Store::open_default()?;
    match command {
        DatasetsCommand::Import { file, id, overwrite } => {
            let report = store.import_file(&file, &id, overwrite)?;
            out!("{}", report.id);
            say.line(format!("imported {} from {} as `{}`", rows(report.rows), file.display(), report.id));
        }
        DatasetsCommand::List => {
            let datasets = store.list()?;
            let interrupted = Journal::interrupted(&store)?;
            if datasets.is_empty() && interrupted.is_empty() {
                say.line(format!("no datasets in {}", store.datasets_dir().display()));
            }
            for d in datasets {
                let splits: Vec<String> = d.splits.iter().map(|s| format!("{} {}", s.name, s.rows)).collect();
                let problem = d.problem.map(|p| format!("  ({p})")).unwrap_or_default();
                out!("{}\t{}\t{}\t{}{problem}", d.id, d.kind, d.created_at, splits.join(", "));
            }
            for run in interrupted {
                let state = if run.running {
                    "running now".to_string()
                } else {
                    "resume: run the same `synth run` again; discard: `synth datasets clean`".to_string()
                };
                out!("{}\tinterrupted\t-\t{} generations journaled ({state})", run.id, run.generations);
            }
        }
        DatasetsCommand::Show { id, split, limit } => {
            for row in store.read_split(&id, &split, Some(limit))? {
                out!("{}", serde_json::to_string(&row)?);
            }
        }
        DatasetsCommand::Merge { id, shards, overwrite } => {
            let merged = merge(&store, &id, shards, overwrite)?;
            let [train, validation, test] = merged.splits;
            out!("{id}");
            say.line(format!("merged {shards} shards: train {train}, validation {validation}, test {test}"));
            say.line(format!("dataset `{id}` is at {}", merged.path.display()));
        }
        DatasetsCommand::Report { id, output } => {
            out!("{}", report::write_dataset_report(&store, &id, output.as_deref())?.display());
        }
        DatasetsCommand::Stats { id, json } => {
            let stats = report::explore(&store, &id)?.stats;
            if json {
                out!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                write!(std::io::stdout().lock(), "{}", report::stats_table(&stats)).map_err(StdoutError)?;
            }
        }
        DatasetsCommand::Export { id, format, output, overwrite } => {
            let exported = store.export(&id, format, &output, overwrite)?;
            for f in &exported.files {
                say.line(format!("{}: {} in {}", f.split, rows(f.rows), f.path.display()));
            }
            out!("{}", exported.dir.display());
        }
        DatasetsCommand::Delete { id } => {
            out!("{}", store.delete(&id)?.display());
            say.line(format!("deleted dataset `{id}`"));
        }
        DatasetsCommand::Clean => {
            let removed = Journal::clean(&store)?;
            for path in &removed {
                out!("{}", path.display());
            }
            say.line(format!(
                "removed {} interrupted runs and leftover directories from {}",
                removed.len(),
                store.datasets_dir().display()
            ));
        }
    }
    Ok(())
}

fn slurm_command(args: SlurmArgs, device: Option<DeviceChoice>, say: &Say) -> Result<()> {
    let store = Store::open_default()?;
    let synth = match args.synth {
        Some(path) => path,
        None => std::env::current_exe().context("cannot tell where this synth binary is; give `--synth PATH`")?,
    };
    let request = SlurmRequest {
        dir: args.dir.unwrap_or_else(|| PathBuf::from(format!("slurm-{}", args.output_id))),
        recipe: args.recipe,
        output_id: args.output_id,
        shards: args.shards,
        gpus_per_shard: args.gpus_per_shard,
        cpus_per_shard: args.cpus_per_shard,
        max_running: args.max_running,
        partition: args.partition,
        time: args.time,
        account: args.account,
        sbatch_args: args.sbatch_arg,
        run_args: args.run_args,
        device,
        synth,
        synth_home: store.root().to_path_buf(),
    };
    let plan = request.plan()?;
    let submit = plan.write(args.overwrite)?;
    let dir = plan.dir().display();
    say.line(format!(
        "wrote {dir}/{SHARDS_FILE} (the shards, an array job), {dir}/{MERGE_FILE} (the merge), {dir}/{SUBMIT_FILE} \
         and {dir}/{REQUEUE_FILE} (runs cancelled or failed shards again)"
    ));
    say.line("submit both jobs (the merge waits for every shard to succeed) with:");
    out!("bash {}", shlex::try_quote(&submit.to_string_lossy()).map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok(())
}

fn models_list() -> Result<()> {
    let store = Store::open_default()?;
    let registry = Registry::load(Some(store.root()))?;
    for spec in registry.models() {
        let state = match presence(spec, store.root()) {
            Presence::Present(source) => format!("present ({})", source.path().display()),
            Presence::Missing { missing, total } => format!("missing {missing} of {total} files"),
        };
        out!("{}\t{}\t{:?}\t{}", spec.name, spec.hf_repo, spec.format, state);
        for (quant, variant) in spec.gguf.iter().filter_map(|v| Some((&v.quant, spec.variant(&v.quant)?))) {
            let state = match presence(&variant, store.root()) {
                Presence::Present(source) => format!("present ({})", source.path().display()),
                Presence::Missing { .. } => "missing".to_string(),
            };
            out!("{}:{quant}\t{}\t{:?}\t{}", spec.name, variant.hf_repo, variant.format, state);
        }
    }
    Ok(())
}

fn models_download(name: &str) -> Result<()> {
    let store = Store::open_default()?;
    let registry = Registry::load(Some(store.root()))?;
    let spec = crate::model::choose::named_spec(&registry, name)?;
    let env = |key: &str| std::env::var_os(key);
    let hub = crate::model::resolve::hf_hub_cache_dir(env).ok_or_else(|| {
        SynthError::invalid("cannot tell where the Hugging Face cache is").hint("set `HF_HUB_CACHE` or `HF_HOME`")
    })?;
    let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty());
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let paths = crate::model::download::download(&spec, &hub, endpoint, token)?;
    for path in paths {
        out!("{}", path.display());
    }
    Ok(())
}
