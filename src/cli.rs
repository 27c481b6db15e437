//! The command line: flags mirror into clap structs, then each command calls the library.
//! Data goes to stdout; progress, logs and errors to stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::device::{self, DeviceChoice};
use crate::engine::SamplingParams;
use crate::error::{self, SynthError};
use crate::evaluation::recipe::{is_evaluation_recipe, EvalRecipe};
use crate::evaluation::{self, EvalOptions};
use crate::generation::conversations;
use crate::generation::EngineOptions;
use crate::model::{presence, LoadedModel, Presence, Registry};
use crate::progress::{Progress, ProgressMode};
use crate::recipe::Recipe;
use crate::store::atomic;
use crate::store::{Message, Store};
use crate::synthesis::{synthesize, RunOptions};

#[derive(Parser, Debug)]
#[command(name = "synth", version, about = "Turn data synthesis recipes into training datasets with LLMs on your own hardware")]
pub struct Cli {
    /// Where the model runs: `auto` picks CUDA, then Metal, then CPU.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub device: DeviceChoice,
    /// Print no progress on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check recipes without running them.
    Validate {
        /// Recipe files (JSON).
        #[arg(required = true)]
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
}

#[derive(Args, Debug)]
pub struct EngineArgs {
    /// Load the model from this file (`.gguf`) or directory instead of looking it up.
    #[arg(long)]
    pub model_path: Option<PathBuf>,
    /// Most sequences generated at once.
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// Prompt tokens fed to the model per step (longer prompts are fed in pieces).
    #[arg(long, default_value_t = 512)]
    pub prefill_chunk: usize,
    /// KV-cache memory budget in MiB.
    #[arg(long, default_value_t = 4096)]
    pub kv_cache_mib: usize,
}

impl EngineArgs {
    fn options(&self) -> Result<EngineOptions> {
        if self.max_batch == 0 || self.prefill_chunk == 0 || self.kv_cache_mib == 0 {
            return Err(SynthError::invalid("`--max-batch`, `--prefill-chunk` and `--kv-cache-mib` must be at least 1").into());
        }
        Ok(EngineOptions { max_batch: self.max_batch, prefill_chunk: self.prefill_chunk, kv_cache_bytes: self.kv_cache_mib << 20, enable_thinking: None })
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
    #[arg(long)]
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
    #[command(flatten)]
    pub engine: EngineArgs,
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
    #[arg(long)]
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
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Model name from the registry (see `synth models list`).
    #[arg(long)]
    pub model: String,
    /// One user message to complete.
    #[arg(long, conflicts_with = "input", required_unless_present = "input")]
    pub prompt: Option<String>,
    /// JSONL file: one `{"messages": [...]}` or `{"prompt": "..."}` per line.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Nucleus sampling threshold (1.0 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Write JSONL here instead of stdout (never replaces an existing file unless `--overwrite`).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Subcommand, Debug)]
pub enum DatasetsCommand {
    /// Import a JSONL file (chat, prompt/response or Alpaca rows) as a dataset.
    Import {
        file: PathBuf,
        /// The new dataset's id.
        #[arg(long)]
        id: String,
        /// Replace an existing dataset with this id.
        #[arg(long)]
        overwrite: bool,
    },
    /// List stored datasets.
    List,
    /// Print rows of a dataset as JSONL.
    Show {
        id: String,
        #[arg(long, default_value = "train")]
        split: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
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

/// Parses arguments, runs, prints any error with its hint; returns the exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("{}", error::render(&err));
            error::exit_code(&err)
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    let progress = if cli.quiet { ProgressMode::Quiet } else { ProgressMode::Auto };
    match cli.command {
        Command::Validate { recipes } => validate(&recipes),
        Command::Run(args) => run_command(args, cli.device, progress),
        Command::Eval(args) => eval_command(args, cli.device, progress),
        Command::Generate(args) => generate_command(args, cli.device, progress),
        Command::Datasets(command) => datasets_command(command),
        Command::Models(ModelsCommand::List) => models_list(),
        Command::Models(ModelsCommand::Download { name }) => models_download(&name),
    }
}

fn validate(paths: &[PathBuf]) -> Result<()> {
    let mut failures = Vec::new();
    for path in paths {
        if is_evaluation_recipe(path) {
            match EvalRecipe::from_path(path) {
                Ok(r) => println!("ok: {} (evaluation: model `{}`, dataset `{}`, {} evaluators)", path.display(), r.model.model_name, r.dataset_id, r.evaluators.len()),
                Err(err) => failures.push(err),
            }
            continue;
        }
        match Recipe::from_path(path) {
            Ok(recipe) => println!("ok: {} (model `{}`, dataset `{}`)", path.display(), recipe.model.model_name, recipe.synthesis.dataset_id),
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

fn run_command(args: RunArgs, device: DeviceChoice, progress: ProgressMode) -> Result<()> {
    let store = Store::open_default()?;
    let options = RunOptions {
        device,
        output_id: args.output_id,
        limit: args.limit,
        model_path: args.engine.model_path.clone(),
        overwrite: args.overwrite,
        restart: args.restart,
        retries: args.retries,
        stop: Some(stop_on_ctrl_c()?),
        progress,
        engine: args.engine.options()?,
    };
    let report = synthesize(&args.recipe, &store, &options)?;
    let [train, validation, test] = report.splits;
    eprintln!(
        "synthesized {} rows from {} seed rows ({} dropped) in {:.1}s, {} tokens at {:.1} tok/s",
        train + validation + test,
        report.seed_rows,
        report.dropped,
        report.wall_seconds,
        report.generated_tokens,
        report.tokens_per_second()
    );
    eprintln!("splits: train {train}, validation {validation}, test {test}");
    println!("{}", report.id);
    eprintln!("dataset `{}` is at {}", report.id, report.path.display());
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

fn eval_command(args: EvalArgs, device: DeviceChoice, progress: ProgressMode) -> Result<()> {
    let store = Store::open_default()?;
    if let Some(EvalCommand::Show { run, worst }) = args.command {
        print!("{}", evaluation::show::show(&store, &run, worst)?);
        return Ok(());
    }
    let recipe = args.recipe.context("clap requires a recipe")?;
    let options = EvalOptions {
        device,
        run_id: args.run_id,
        limit: args.limit,
        model_path: args.engine.model_path.clone(),
        progress,
        engine: args.engine.options()?,
    };
    let report = evaluation::evaluate(&recipe, &store, &options)?;
    for e in &report.evaluators {
        let rate = e.pass_rate().map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        eprintln!("{}: {rate} passed ({} pass, {} fail, {} unparseable, {} skipped)", e.name, e.pass, e.fail, e.unparseable, e.skipped);
    }
    eprintln!("evaluated {} rows in {:.1}s, {} failed; run `{}` is at {}", report.rows, report.wall_seconds, report.failed_rows, report.run_id, report.path.display());
    println!("{}", report.run_id);
    match &report.failure_modes_dataset {
        Some(id) => {
            eprintln!("{} failure modes over {} failed rows: dataset `{id}`", report.failure_modes, report.failed_rows);
            println!("{id}");
        }
        None if report.failed_rows == 0 => eprintln!("no row failed, so there is no failure-mode dataset"),
        None => {}
    }
    eprintln!("see `synth eval show {}`", report.run_id);
    Ok(())
}

fn generate_command(args: GenerateArgs, device: DeviceChoice, progress: ProgressMode) -> Result<()> {
    if !((0.0..=2.0).contains(&args.temperature) && args.top_p > 0.0 && args.top_p <= 1.0) || args.max_new_tokens == 0 {
        return Err(SynthError::invalid("`--temperature` must be in [0, 2], `--top-p` in (0, 1] and `--max-new-tokens` at least 1").into());
    }
    let engine = args.engine.options()?;
    if let Some(out) = &args.output {
        atomic::check_writable(out, args.overwrite)?;
    }
    let conversations = match (&args.prompt, &args.input) {
        (Some(prompt), _) => vec![vec![Message::new("user", prompt.clone())]],
        (None, Some(path)) => conversations::read_conversations(path)?,
        (None, None) => return Err(SynthError::invalid("give `--prompt TEXT` or `--input FILE`").into()),
    };
    let store = Store::open_default()?;
    let device = device::open(device)?;
    let registry = Registry::load(Some(store.root()))?;
    let model = LoadedModel::load(&registry, &args.model, args.engine.model_path.as_deref(), store.root(), &device)?;
    let sampling = SamplingParams { temperature: args.temperature, top_p: args.top_p, top_k: args.top_k, max_new_tokens: args.max_new_tokens, seed: args.seed };
    let mut bar = Progress::new("generating", conversations.len(), progress);
    let completed = conversations::complete(&model, conversations, &sampling, &engine, &mut bar)?;
    bar.finish();
    let out = conversations::to_jsonl(&completed)?;
    match &args.output {
        Some(path) => atomic::write_file(path, &out, args.overwrite),
        None => std::io::stdout().write_all(&out).context("writing to stdout"),
    }
}

fn datasets_command(command: DatasetsCommand) -> Result<()> {
    let store = Store::open_default()?;
    match command {
        DatasetsCommand::Import { file, id, overwrite } => {
            let report = store.import_jsonl(&file, &id, overwrite)?;
            println!("{}", report.id);
            eprintln!("imported {} rows from {} as `{}`", report.rows, file.display(), report.id);
        }
        DatasetsCommand::List => {
            let datasets = store.list()?;
            if datasets.is_empty() {
                eprintln!("no datasets in {}", store.datasets_dir().display());
            }
            for d in datasets {
                let splits: Vec<String> = d.splits.iter().map(|s| format!("{} {}", s.name, s.rows)).collect();
                let problem = d.problem.map(|p| format!("  ({p})")).unwrap_or_default();
                println!("{}\t{}\t{}\t{}{problem}", d.id, d.kind, d.created_at, splits.join(", "));
            }
        }
        DatasetsCommand::Show { id, split, limit } => {
            for row in store.read_split(&id, &split, Some(limit))? {
                println!("{}", serde_json::to_string(&row)?);
            }
        }
    }
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
        println!("{}\t{}\t{:?}\t{}", spec.name, spec.hf_repo, spec.format, state);
    }
    Ok(())
}

fn models_download(name: &str) -> Result<()> {
    let store = Store::open_default()?;
    let registry = Registry::load(Some(store.root()))?;
    let spec = registry.get(name)?;
    let env = |key: &str| std::env::var_os(key);
    let hub = crate::model::resolve::hf_hub_cache_dir(env)
        .ok_or_else(|| SynthError::invalid("cannot tell where the Hugging Face cache is").hint("set `HF_HUB_CACHE` or `HF_HOME`"))?;
    let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty());
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let paths = crate::model::download::download(spec, &hub, endpoint, token)?;
    for path in paths {
        println!("{}", path.display());
    }
    Ok(())
}
