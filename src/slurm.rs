//! `synth slurm`: a sharded run as Slurm jobs. Writes an sbatch array script (one task per
//! shard, each `synth run --shard I/N`, requeued and resumed from its journal when preempted),
//! a merge job script (`synth datasets merge`), a driver that submits the array, then the
//! merge with `--dependency=afterok` on it, and a script that runs cancelled shards again.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::device::DeviceChoice;
use crate::error::SynthError;
use crate::recipe::{read_text, Recipe};
use crate::store::atomic;
use crate::store::id::validate_dataset_id;

/// What the user asked for, as given on the command line.
#[derive(Debug, Clone)]
pub struct SlurmRequest {
    pub recipe: PathBuf,
    pub output_id: String,
    pub shards: usize,
    pub gpus_per_shard: usize,
    pub cpus_per_shard: Option<usize>,
    pub max_running: Option<usize>,
    pub partition: Option<String>,
    pub time: Option<String>,
    pub account: Option<String>,
    pub sbatch_args: Vec<String>,
    pub run_args: Vec<String>,
    pub device: Option<DeviceChoice>,
    /// The synth binary the jobs run.
    pub synth: PathBuf,
    /// `SYNTH_HOME` for the jobs: the store the shards and the merged dataset go to.
    pub synth_home: PathBuf,
    /// Where the scripts and the jobs' logs go.
    pub dir: PathBuf,
}

/// A checked request: absolute paths, values safe in sbatch headers and shell lines.
#[derive(Debug, Clone)]
pub struct SlurmPlan {
    request: SlurmRequest,
    /// `#SBATCH` options both jobs take (partition, time, account, the user's own).
    common: Vec<String>,
    device: String,
}

/// The files `synth slurm` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripts {
    pub shards: String,
    pub merge: String,
    pub submit: String,
    pub requeue: String,
}

pub const SHARDS_FILE: &str = "shards.sbatch";
pub const MERGE_FILE: &str = "merge.sbatch";
pub const SUBMIT_FILE: &str = "submit.sh";
pub const REQUEUE_FILE: &str = "requeue.sh";
/// Written by the driver: the job ids, as `ARRAY=<id>` and `MERGE=<id>` lines.
pub const JOBS_FILE: &str = "jobs.env";

/// Options synth sets itself; the user's `--sbatch-arg` may not change them.
const OWN_SBATCH_OPTIONS: &[&str] =
    &["--array", "-a", "--dependency", "-d", "--output", "-o", "--error", "-e", "--open-mode", "--no-requeue"];
/// `synth run` flags synth sets itself for each shard.
const OWN_RUN_FLAGS: &[&str] = &["--shard", "--output-id"];

impl SlurmRequest {
    /// Checks everything before a file is written: the recipe, the id, every value that goes
    /// into a script.
    pub fn plan(mut self) -> Result<SlurmPlan> {
        check_recipe(&self.recipe)?;
        validate_dataset_id(&self.output_id).map_err(|rule| {
            SynthError::invalid(format!("--output-id: invalid dataset id `{}`: {rule}", self.output_id.escape_debug()))
        })?;
        check_counts(&self)?;
        for path in [&mut self.recipe, &mut self.synth, &mut self.synth_home, &mut self.dir] {
            *path = absolute(path)?;
        }
        let common = common_options(&self)?;
        check_run_args(&self.run_args)?;
        let device = self.device.map_or_else(|| default_device(self.gpus_per_shard), |d| d.to_string());
        Ok(SlurmPlan { request: self, common, device })
    }
}

fn check_recipe(path: &Path) -> Result<()> {
    if !path.is_file() {
        let what = if path.exists() { "is not a regular file" } else { "no such file" };
        return Err(SynthError::not_found(format!("{}: {what}", path.display()))
            .hint("the jobs read the recipe when they start: give a file on the shared filesystem")
            .into());
    }
    let (origin, text) = read_text(path)?;
    Recipe::from_json_str(&text, &origin)?;
    Ok(())
}

fn check_counts(request: &SlurmRequest) -> Result<()> {
    if request.shards > 100_000 {
        return Err(SynthError::invalid(format!("--shards: `{}` is too many: at most 100000", request.shards)).into());
    }
    if request.gpus_per_shard > 64 {
        return Err(SynthError::invalid(format!(
            "--gpus-per-shard: `{}` is too many: at most 64 (synth opens at most 64 devices)",
            request.gpus_per_shard
        ))
        .into());
    }
    Ok(())
}

/// `cpu` without GPUs; with them, the GPUs Slurm gave the task (it sets `CUDA_VISIBLE_DEVICES`).
fn default_device(gpus: usize) -> String {
    match gpus {
        0 => "cpu".into(),
        1 => "cuda".into(),
        _ => "cuda:all".into(),
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).map_err(|e| SynthError::invalid(format!("{}: {e}", path.display())).into())
}

/// The `#SBATCH` options of both jobs, each value checked for what would break a header line.
fn common_options(request: &SlurmRequest) -> Result<Vec<String>> {
    let mut options = Vec::new();
    if let Some(partition) = &request.partition {
        options.push(format!("--partition={}", header_word("--partition", partition)?));
    }
    if let Some(time) = &request.time {
        options.push(format!("--time={}", slurm_time(time)?));
    }
    if let Some(account) = &request.account {
        options.push(format!("--account={}", header_word("--account", account)?));
    }
    for arg in &request.sbatch_args {
        options.push(sbatch_arg(arg)?.to_string());
    }
    Ok(options)
}

/// A header value: not empty, no whitespace or control characters (sbatch splits on them).
fn header_word<'a>(flag: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SynthError::invalid(format!(
            "{flag}: `{}` must be one word without spaces or control characters",
            value.escape_debug()
        ))
        .into());
    }
    Ok(value)
}

/// Slurm's time formats: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`, or
/// `UNLIMITED`/`INFINITE`.
fn slurm_time(value: &str) -> Result<&str> {
    let numbers = |part: &str, most: usize| {
        let fields: Vec<&str> = part.split(':').collect();
        fields.len() <= most && fields.iter().all(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
    };
    let ok = match value.split_once('-') {
        _ if matches!(value, "UNLIMITED" | "INFINITE") => true,
        Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
        None => numbers(value, 3),
    };
    if !ok {
        return Err(SynthError::invalid(format!("--time: `{}` is not a Slurm time limit", value.escape_debug()))
            .hint("write minutes `90`, `HH:MM:SS` such as `4:00:00`, or `D-HH:MM:SS` such as `1-12:00:00`")
            .into());
    }
    Ok(value)
}

/// One sbatch option (`--mem=16G`, `--qos=high`), not one of those synth sets itself.
fn sbatch_arg(arg: &str) -> Result<&str> {
    let name = arg.split('=').next().unwrap_or(arg);
    let problem = if !arg.starts_with('-') {
        Some("must be an sbatch option starting with `-`, such as `--mem=16G`".to_string())
    } else if arg.chars().any(|c| c.is_control()) {
        Some("must be one line".to_string())
    } else if OWN_SBATCH_OPTIONS.contains(&name)
        || OWN_SBATCH_OPTIONS.iter().any(|o| o.len() == 2 && name.starts_with(o))
    {
        Some(format!("`{name}` is set by synth slurm itself"))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(SynthError::invalid(format!("--sbatch-arg: `{}` {problem}", arg.escape_debug()))
            .hint("pass one sbatch option per `--sbatch-arg`; the array, dependency and log files are synth's")
            .into()),
        None => Ok(arg),
    }
}

fn check_run_args(args: &[String]) -> Result<()> {
    for arg in args {
        let name = arg.split('=').next().unwrap_or(arg);
        if OWN_RUN_FLAGS.contains(&name) {
            return Err(SynthError::invalid(format!("`{arg}` after `--`: synth slurm sets `{name}` for each shard"))
                .hint("give the dataset id with `synth slurm --output-id ID`")
                .into());
        }
    }
    Ok(())
}

/// Shell-quotes a word for the scripts (a NUL cannot be quoted).
fn quote(word: &str) -> Result<String> {
    shlex::try_quote(word).map(|q| q.into_owned()).map_err(|_| {
        SynthError::invalid(format!("`{}` cannot be written in a shell script", word.escape_debug())).into()
    })
}

fn quote_path(path: &Path) -> Result<String> {
    let text = path.to_str().ok_or_else(|| SynthError::invalid(format!("{}: not valid UTF-8", path.display())))?;
    quote(text)
}

impl SlurmPlan {
    pub fn dir(&self) -> &Path {
        &self.request.dir
    }

    pub fn submit_path(&self) -> PathBuf {
        self.request.dir.join(SUBMIT_FILE)
    }

    /// The scripts' text.
    pub fn scripts(&self) -> Result<Scripts> {
        Ok(Scripts {
            shards: self.shards_script()?,
            merge: self.merge_script()?,
            submit: self.submit_script()?,
            requeue: self.requeue_script()?,
        })
    }

    fn logs(&self) -> PathBuf {
        self.request.dir.join("logs")
    }

    /// How every job script starts: what it is, its own headers, the common ones, strict mode
    /// and the store.
    fn preamble(&self, comment: &str, headers: Vec<String>) -> Result<String> {
        let mut text = format!("#!/bin/bash\n# Written by `synth slurm`: {comment}\n");
        for option in headers.iter().chain(&self.common) {
            text += &format!("#SBATCH {option}\n");
        }
        text += "set -euo pipefail\n";
        text += &format!("export SYNTH_HOME={}\n", quote_path(&self.request.synth_home)?);
        Ok(text)
    }

    fn shards_script(&self) -> Result<String> {
        let r = &self.request;
        let array = match r.max_running {
            Some(k) => format!("0-{}%{k}", r.shards - 1),
            None => format!("0-{}", r.shards - 1),
        };
        let mut headers = vec![
            format!("--job-name=synth-{}", r.output_id),
            format!("--array={array}"),
            // A preempted or requeued task starts again and resumes from its shard's journal.
            "--requeue".into(),
            "--open-mode=append".into(),
            format!("--output={}", self.logs().join("shard-%a.out").display()),
        ];
        if r.gpus_per_shard > 0 {
            headers.push(format!("--gres=gpu:{}", r.gpus_per_shard));
        }
        if let Some(cpus) = r.cpus_per_shard {
            headers.push(format!("--cpus-per-task={cpus}"));
        }
        let comment = format!("shard $SLURM_ARRAY_TASK_ID of {} of dataset `{}`.", r.shards, r.output_id);
        let mut text = self.preamble(&comment, headers)?;
        let mut command = vec![quote_path(&r.synth)?, "--device".into(), quote(&self.device)?, "run".into()];
        command.push(quote_path(&r.recipe)?);
        command.push("--shard".into());
        command.push(format!("\"$SLURM_ARRAY_TASK_ID/{}\"", r.shards));
        command.extend(["--output-id".into(), quote(&r.output_id)?]);
        for arg in &r.run_args {
            command.push(quote(arg)?);
        }
        text += &format!("exec {}\n", command.join(" "));
        Ok(text)
    }

    fn merge_script(&self) -> Result<String> {
        let r = &self.request;
        let headers = vec![
            format!("--job-name=synth-{}-merge", r.output_id),
            format!("--output={}", self.logs().join("merge.out").display()),
        ];
        let comment = format!("merges the {} shards into dataset `{}`.", r.shards, r.output_id);
        let mut text = self.preamble(&comment, headers)?;
        let id = quote(&r.output_id)?;
        text += &format!("exec {} datasets merge {id} --shards {}\n", quote_path(&r.synth)?, r.shards);
        Ok(text)
    }

    fn submit_script(&self) -> Result<String> {
        let r = &self.request;
        Ok(format!(
            r#"#!/bin/bash
# Written by `synth slurm`: submits the {n} shards of dataset `{id}` as an array job, then the
# merge job, which starts only when every shard succeeded (afterok). Prints the two job ids on
# stdout and keeps them in {jobs_name} for {requeue_name}.
set -euo pipefail
mkdir -p {logs}
array=$(sbatch --parsable {shards})
array=${{array%%;*}}
merge=$(sbatch --parsable --dependency=afterok:"$array" {merge})
merge=${{merge%%;*}}
printf 'ARRAY=%s\nMERGE=%s\n' "$array" "$merge" >{jobs}
echo "submitted: shards job $array ({n} tasks), merge job $merge after all of them succeed" >&2
echo "logs: {log_dir}; watch: squeue -j $array,$merge" >&2
echo "$array $merge"
"#,
            n = r.shards,
            id = r.output_id,
            jobs_name = JOBS_FILE,
            requeue_name = REQUEUE_FILE,
            logs = quote_path(&self.logs())?,
            log_dir = self.logs().display(),
            shards = quote_path(&r.dir.join(SHARDS_FILE))?,
            merge = quote_path(&r.dir.join(MERGE_FILE))?,
            jobs = quote_path(&r.dir.join(JOBS_FILE))?,
        ))
    }

    /// Runs shards again after a `scancel` or a failure. Slurm counts a cancelled or failed
    /// array task against `afterok:<array>` for good, even once the task is requeued and
    /// succeeds, so the merge is pointed at the tasks one by one instead (a dependency set anew
    /// is judged anew).
    fn requeue_script(&self) -> Result<String> {
        let r = &self.request;
        Ok(format!(
            r#"#!/bin/bash
# Written by `synth slurm`: `bash {requeue_name} SHARD...` runs those shards of dataset `{id}` again
# after they were cancelled or failed; each resumes from its journal. The merge job then waits
# for every shard anew (Slurm holds a cancelled task against `afterok` on the whole array).
set -euo pipefail
[ $# -gt 0 ] || {{ echo "usage: $0 SHARD... (0 to {last})" >&2; exit 2; }}
source {jobs}
for shard in "$@"; do
  scontrol requeue "${{ARRAY}}_$shard"
  # A requeued job is held for a while before it may start again; let it start now.
  scontrol update jobid="${{ARRAY}}_$shard" starttime=now 2>/dev/null || true
done
deps=afterok:$(seq 0 {last} | sed "s/^/${{ARRAY}}_/" | paste -sd:)
if ! scontrol update jobid="$MERGE" dependency="$deps" 2>/dev/null; then
  # The merge job is gone (the site cancels jobs whose dependency cannot be met): submit it again.
  MERGE=$(sbatch --parsable --dependency="$deps" {merge})
  MERGE=${{MERGE%%;*}}
  printf 'ARRAY=%s\nMERGE=%s\n' "$ARRAY" "$MERGE" >{jobs}
fi
echo "requeued shards $* of job $ARRAY; merge job $MERGE waits for every shard" >&2
"#,
            requeue_name = REQUEUE_FILE,
            id = r.output_id,
            last = r.shards - 1,
            jobs = quote_path(&r.dir.join(JOBS_FILE))?,
            merge = quote_path(&r.dir.join(MERGE_FILE))?,
        ))
    }

    /// Writes the scripts into the plan's directory (none unless all can be written) and its
    /// `logs/`; returns the driver's path.
    pub fn write(&self, overwrite: bool) -> Result<PathBuf> {
        let scripts = self.scripts()?;
        let dir = &self.request.dir;
        std::fs::create_dir_all(self.logs())
            .map_err(|e| SynthError::failed(format!("cannot create `{}`: {e}", self.logs().display())))?;
        let files = [
            (SHARDS_FILE, &scripts.shards),
            (MERGE_FILE, &scripts.merge),
            (SUBMIT_FILE, &scripts.submit),
            (REQUEUE_FILE, &scripts.requeue),
        ];
        for (name, _) in &files {
            let path = dir.join(name);
            if !overwrite && path.symlink_metadata().is_ok() {
                return Err(SynthError::invalid(format!("`{}` already exists", path.display()))
                    .hint("choose another `--dir`, or pass `--overwrite` to replace the scripts there")
                    .into());
            }
            atomic::check_writable(&path, overwrite)?;
        }
        for (name, text) in &files {
            atomic::write_file(&dir.join(name), text.as_bytes(), overwrite)?;
        }
        Ok(self.submit_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(dir: &Path) -> SlurmRequest {
        let recipe = dir.join("recipe.json");
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/quickstart.json")).unwrap();
        std::fs::write(&recipe, text).unwrap();
        SlurmRequest {
            recipe,
            output_id: "big".into(),
            shards: 16,
            gpus_per_shard: 1,
            cpus_per_shard: None,
            max_running: None,
            partition: Some("gpu".into()),
            time: Some("4:00:00".into()),
            account: Some("lab".into()),
            sbatch_args: vec!["--mem=32G".into()],
            run_args: vec!["--num-samples".into(), "1000".into()],
            device: None,
            synth: "/opt/synth bin/synth".into(),
            synth_home: "/shared/synth".into(),
            dir: dir.join("slurm-big"),
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn the_array_script_runs_one_shard_per_task_on_its_gpus() {
        let dir = tempfile::tempdir().unwrap();
        let plan = request(dir.path()).plan().unwrap();
        let shards = plan.scripts().unwrap().shards;
        let logs = dir.path().join("slurm-big/logs");
        let recipe = dir.path().join("recipe.json");
        let expected = [
            "#!/bin/bash".to_string(),
            "# Written by `synth slurm`: shard $SLURM_ARRAY_TASK_ID of 16 of dataset `big`.".into(),
            "#SBATCH --job-name=synth-big".into(),
            "#SBATCH --array=0-15".into(),
            "#SBATCH --requeue".into(),
            "#SBATCH --open-mode=append".into(),
            format!("#SBATCH --output={}/shard-%a.out", logs.display()),
            "#SBATCH --gres=gpu:1".into(),
            "#SBATCH --partition=gpu".into(),
            "#SBATCH --time=4:00:00".into(),
            "#SBATCH --account=lab".into(),
            "#SBATCH --mem=32G".into(),
            "set -euo pipefail".into(),
            "export SYNTH_HOME=/shared/synth".into(),
            format!(
                "exec '/opt/synth bin/synth' --device cuda run {} --shard \"$SLURM_ARRAY_TASK_ID/16\" --output-id big --num-samples 1000",
                recipe.display()
            ),
        ];
        assert_eq!(lines(&shards), expected);
    }

    #[test]
    fn without_gpus_the_shards_run_on_the_cpu_and_ask_for_no_gres() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = request(dir.path());
        (r.gpus_per_shard, r.cpus_per_shard, r.max_running) = (0, Some(8), Some(4));
        let shards = r.plan().unwrap().scripts().unwrap().shards;
        assert!(!shards.contains("--gres"), "{shards}");
        assert!(shards.contains("#SBATCH --cpus-per-task=8\n") && shards.contains("#SBATCH --array=0-15%4\n"));
        assert!(shards.contains("--device cpu run"), "{shards}");
        let mut r = request(dir.path());
        r.gpus_per_shard = 4;
        assert!(r.plan().unwrap().scripts().unwrap().shards.contains("#SBATCH --gres=gpu:4\n"));
        let mut r = request(dir.path());
        (r.gpus_per_shard, r.device) = (4, Some("cuda:all".parse().unwrap()));
        assert!(r.plan().unwrap().scripts().unwrap().shards.contains("--device cuda:all run"));
    }

    #[test]
    fn the_merge_job_and_the_driver() {
        let dir = tempfile::tempdir().unwrap();
        let scripts = request(dir.path()).plan().unwrap().scripts().unwrap();
        let logs = dir.path().join("slurm-big/logs");
        let merge = lines(&scripts.merge);
        assert_eq!(merge[2], "#SBATCH --job-name=synth-big-merge");
        assert_eq!(merge[3], format!("#SBATCH --output={}/merge.out", logs.display()));
        assert_eq!(
            &merge[4..8],
            ["#SBATCH --partition=gpu", "#SBATCH --time=4:00:00", "#SBATCH --account=lab", "#SBATCH --mem=32G"]
        );
        assert!(!scripts.merge.contains("--gres") && !scripts.merge.contains("--array"));
        assert_eq!(merge.last().unwrap(), &"exec '/opt/synth bin/synth' datasets merge big --shards 16");
        let shards = dir.path().join("slurm-big/shards.sbatch");
        let submit = &scripts.submit;
        assert!(submit.contains(&format!("array=$(sbatch --parsable {})\n", shards.display())), "{submit}");
        assert!(submit.contains("merge=$(sbatch --parsable --dependency=afterok:\"$array\" "), "{submit}");
        assert!(submit.ends_with("echo \"$array $merge\"\n"));
        let requeue = &scripts.requeue;
        assert!(requeue.contains("scontrol requeue \"${ARRAY}_$shard\"\n"), "{requeue}");
        assert!(requeue.contains("deps=afterok:$(seq 0 15 | sed \"s/^/${ARRAY}_/\" | paste -sd:)\n"), "{requeue}");
    }

    #[test]
    fn bad_values_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        type Change = Box<dyn Fn(&mut SlurmRequest)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|r| r.partition = Some("gpu a100".into())), "--partition: `gpu a100` must be one word"),
            (
                Box::new(|r| r.account = Some("lab\n#SBATCH --x".into())),
                "--account: `lab\\n#SBATCH --x` must be one word",
            ),
            (Box::new(|r| r.time = Some("4h".into())), "--time: `4h` is not a Slurm time limit"),
            (Box::new(|r| r.sbatch_args = vec!["mem=4G".into()]), "`mem=4G` must be an sbatch option"),
            (Box::new(|r| r.sbatch_args = vec!["--array=0-3".into()]), "`--array` is set by synth slurm itself"),
            (Box::new(|r| r.sbatch_args = vec!["-o/tmp/x".into()]), "`-o/tmp/x` is set by synth slurm itself"),
            (Box::new(|r| r.run_args = vec!["--shard=1/2".into()]), "synth slurm sets `--shard`"),
            (Box::new(|r| r.output_id = "../x".into()), "--output-id: invalid dataset id `../x`"),
            (Box::new(|r| r.shards = 200_000), "--shards: `200000` is too many"),
            (Box::new(|r| r.recipe = "/nonexistent.json".into()), "/nonexistent.json: no such file"),
        ];
        for (change, message) in cases {
            let mut r = request(dir.path());
            change(&mut r);
            let text = crate::error::render(&r.plan().unwrap_err());
            assert!(text.contains(message), "{message}: {text}");
        }
        for time in ["90", "4:00:00", "1-12", "1-12:00:00", "UNLIMITED"] {
            let mut r = request(dir.path());
            r.time = Some(time.into());
            assert!(r.plan().is_ok(), "{time}");
        }
        assert!(!dir.path().join("slurm-big").exists());
    }

    #[test]
    fn files_are_written_once_and_replaced_only_with_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let plan = request(dir.path()).plan().unwrap();
        let submit = plan.write(false).unwrap();
        let scripts = plan.scripts().unwrap();
        assert_eq!(std::fs::read_to_string(&submit).unwrap(), scripts.submit);
        assert_eq!(std::fs::read_to_string(plan.dir().join(SHARDS_FILE)).unwrap(), scripts.shards);
        assert!(plan.dir().join("logs").is_dir());
        std::fs::write(plan.dir().join(MERGE_FILE), "mine").unwrap();
        let text = crate::error::render(&plan.write(false).unwrap_err());
        assert!(text.contains("shards.sbatch` already exists") && text.contains("`--dir`"), "{text}");
        assert_eq!(std::fs::read_to_string(plan.dir().join(MERGE_FILE)).unwrap(), "mine");
        plan.write(true).unwrap();
        assert_eq!(std::fs::read_to_string(plan.dir().join(MERGE_FILE)).unwrap(), scripts.merge);
    }
}
