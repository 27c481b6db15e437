//! Which curation gates run and with what threshold: the recipe's `curation` object (see
//! [`crate::recipe`]) and `synth run`'s flags, which win over it.

use std::collections::BTreeSet;

/// A reason a candidate is dropped, with a stable camelCase key (manifest counts, journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Gate {
    /// Empty or trivially short request or answer.
    TooShort,
    /// The request restates synth's instruction, or talks about "the request" instead of being one.
    InstructionEcho,
    /// The request is an assistant's reply ("I'm ready to help. What would you like to know?").
    AssistantVoice,
    /// The request asks for nothing (a statement) while its seed request asks for something.
    NotARequest,
    /// The request already holds an answer (an answer label, an answer after the ask, code it
    /// was asked to write).
    AnswerInRequest,
    /// The request is in another script or language than its seed request.
    OtherLanguage,
    /// The request near-duplicates its own seed request.
    SeedCopy,
    /// Decontamination: the request near-duplicates a user message of an excluded dataset.
    Excluded,
    /// A refusal or apology where the seed's is not one.
    Refusal,
    /// A repetition loop, or an answer that repeats its request.
    Repetition,
    /// The judge model failed the finished row.
    Judge,
    /// The judge's reply had no verdict that could be read: dropped, never guessed.
    JudgeUnparseable,
    /// The row's user turns equal (normalized) those of a seed row or an accepted row.
    ExactDuplicate,
    /// The row's user turns near-duplicate those of a seed row or an accepted row.
    NearDuplicate,
}

impl Gate {
    /// Every gate, in the order a candidate meets them.
    pub const ALL: [Gate; 14] = [
        Gate::TooShort,
        Gate::InstructionEcho,
        Gate::AssistantVoice,
        Gate::NotARequest,
        Gate::AnswerInRequest,
        Gate::Refusal,
        Gate::Repetition,
        Gate::OtherLanguage,
        Gate::SeedCopy,
        Gate::Excluded,
        Gate::Judge,
        Gate::JudgeUnparseable,
        Gate::ExactDuplicate,
        Gate::NearDuplicate,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Gate::TooShort => "tooShort",
            Gate::InstructionEcho => "instructionEcho",
            Gate::AssistantVoice => "assistantVoice",
            Gate::NotARequest => "notARequest",
            Gate::AnswerInRequest => "answerInRequest",
            Gate::OtherLanguage => "otherLanguage",
            Gate::SeedCopy => "seedCopy",
            Gate::Excluded => "excluded",
            Gate::Refusal => "refusal",
            Gate::Repetition => "repetition",
            Gate::Judge => "judge",
            Gate::JudgeUnparseable => "judgeUnparseable",
            Gate::ExactDuplicate => "exactDuplicate",
            Gate::NearDuplicate => "nearDuplicate",
        }
    }

    pub fn from_key(key: &str) -> Option<Gate> {
        Gate::ALL.into_iter().find(|g| g.key() == key)
    }

    /// Gates a recipe or flag may turn off; `excluded` runs exactly when datasets are excluded,
    /// `judgeUnparseable` exactly when the judge does.
    pub fn switchable(self) -> bool {
        !matches!(self, Gate::Excluded | Gate::JudgeUnparseable)
    }

    /// The keys of the switchable gates, for messages.
    pub fn switchable_keys() -> Vec<&'static str> {
        Gate::ALL.into_iter().filter(|g| g.switchable()).map(Gate::key).collect()
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Two requests (or rows' user turns) whose word-3-gram sets have at least this Jaccard index
/// are near duplicates; also the bar for `seedCopy` and `excluded`.
pub const DEFAULT_NEAR_DUPLICATE_THRESHOLD: f64 = 0.7;

/// The judge gate's rubric unless the recipe gives its own `promptTemplate`. Short, and asking
/// for the verdict word first: small judges (SmolLM2-135M) give readable verdicts to this far
/// more often than to a longer rubric (3 of 4 quickstart rows against 0 of 4, measured).
pub const DEFAULT_RUBRIC: &str = "Request: {prompt}\n\nAnswer: {output}\n\n\
Is this answer a correct and helpful reply to the request? Reply with Yes or No first, then give one reason.";

/// The judge's reply is greedy and at most this many tokens unless the recipe says otherwise.
pub const DEFAULT_JUDGE_MAX_NEW_TOKENS: usize = 96;

/// The judge gate: which model grades the finished rows, with what rubric.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSettings {
    /// A registry model name; `None`: the recipe's own model.
    pub model: Option<String>,
    /// Checked by [`crate::recipe::judge_template::check_template`].
    pub template: String,
    pub max_new_tokens: usize,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self { model: None, template: DEFAULT_RUBRIC.to_string(), max_new_tokens: DEFAULT_JUDGE_MAX_NEW_TOKENS }
    }
}

/// What the recipe and flags settled.
#[derive(Debug, Clone, PartialEq)]
pub struct CurationSettings {
    /// Gates turned off; every other runs (the judge only when it is set).
    pub off: BTreeSet<Gate>,
    pub near_duplicate_threshold: f64,
    /// Datasets whose user messages no new request may near-duplicate, in the order given.
    pub exclude: Vec<String>,
    /// The judge gate, off unless the recipe's `curation.judge` or `--filter judge=on` sets it.
    pub judge: Option<JudgeSettings>,
}

impl Default for CurationSettings {
    fn default() -> Self {
        Self {
            off: BTreeSet::new(),
            near_duplicate_threshold: DEFAULT_NEAR_DUPLICATE_THRESHOLD,
            exclude: Vec::new(),
            judge: None,
        }
    }
}

/// `synth run`'s curation flags, already parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CurationFlags {
    /// `--filter NAME=on|off`, in the order given (a later one wins).
    pub filters: Vec<(Gate, bool)>,
    /// `--dedup-threshold`.
    pub near_duplicate_threshold: Option<f64>,
    /// `--exclude DATASET_ID`, added after the recipe's.
    pub exclude: Vec<String>,
}

impl CurationSettings {
    pub fn is_on(&self, gate: Gate) -> bool {
        match gate {
            Gate::Excluded => !self.exclude.is_empty(),
            Gate::Judge | Gate::JudgeUnparseable => self.judge.is_some() && !self.off.contains(&Gate::Judge),
            _ => !self.off.contains(&gate),
        }
    }

    /// The judge, when its gate runs.
    pub fn judge(&self) -> Option<&JudgeSettings> {
        self.judge.as_ref().filter(|_| self.is_on(Gate::Judge))
    }

    /// These settings with the flags applied: flags win, excluded datasets add up (each once);
    /// `judge=on` without a judge in the recipe sets the default one.
    pub fn with_flags(mut self, flags: &CurationFlags) -> Self {
        for &(gate, on) in &flags.filters {
            if on {
                if gate == Gate::Judge {
                    self.judge.get_or_insert_with(JudgeSettings::default);
                }
                self.off.remove(&gate);
            } else {
                self.off.insert(gate);
            }
        }
        if let Some(t) = flags.near_duplicate_threshold {
            self.near_duplicate_threshold = t;
        }
        self.exclude_too(&flags.exclude);
        self
    }

    /// Adds datasets to exclude (each once), e.g. the evaluated dataset of a failure-mode seed.
    pub fn exclude_too(&mut self, ids: &[String]) {
        for id in ids {
            if !self.exclude.contains(id) {
                self.exclude.push(id.clone());
            }
        }
    }
}

/// Whether `t` is an accepted near-duplicate threshold: more than 0, at most 1.
pub fn valid_threshold(t: f64) -> bool {
    t > 0.0 && t <= 1.0
}

/// `--filter NAME=on|off` (clap value parser).
/// One `--filter NAME=on|off`: the gates it names (`all`: every switchable one) and their state.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterFlag(pub Vec<(Gate, bool)>);

pub fn parse_filter_flag(text: &str) -> Result<FilterFlag, String> {
    let names = || Gate::switchable_keys().join(", ");
    let Some((name, state)) = text.split_once('=') else {
        return Err(format!("expected NAME=on or NAME=off, where NAME is `all` or one of {}", names()));
    };
    let gates: Vec<Gate> = match name {
        // `all=on` leaves the judge as it is: it costs a generation per row, so only its own
        // name (or the recipe) turns it on.
        "all" => Gate::ALL.into_iter().filter(|g| g.switchable() && (*g != Gate::Judge || state == "off")).collect(),
        _ => vec![Gate::from_key(name)
            .filter(|g| g.switchable())
            .ok_or_else(|| format!("`{name}` is not a filter; filters: all, {}", names()))?],
    };
    let on = match state {
        "on" => true,
        "off" => false,
        _ => return Err(format!("`{state}` must be `on` or `off`")),
    };
    Ok(FilterFlag(gates.into_iter().map(|g| (g, on)).collect()))
}

/// `--dedup-threshold X` (clap value parser).
pub fn parse_threshold(text: &str) -> Result<f64, String> {
    let t: f64 = text.parse().map_err(|e| format!("not a number: {e}"))?;
    if valid_threshold(t) {
        Ok(t)
    } else {
        Err("must be more than 0 and at most 1 (a Jaccard index)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_only_excluded_and_judge_unparseable_are_not_switchable() {
        for gate in Gate::ALL {
            assert_eq!(Gate::from_key(gate.key()), Some(gate));
            assert_eq!(gate.switchable(), !matches!(gate, Gate::Excluded | Gate::JudgeUnparseable));
        }
        assert_eq!(Gate::from_key("InstructionEcho"), None);
    }

    #[test]
    fn flags_win_over_the_recipe_and_exclusions_add_up() {
        let recipe = CurationSettings {
            off: [Gate::Refusal].into(),
            near_duplicate_threshold: 0.6,
            exclude: vec!["eval_a".into()],
            judge: None,
        };
        let flags = CurationFlags {
            filters: vec![(Gate::Refusal, true), (Gate::Repetition, false), (Gate::TooShort, false)],
            near_duplicate_threshold: Some(0.8),
            exclude: vec!["eval_b".into(), "eval_a".into()],
        };
        let settled = recipe.with_flags(&flags);
        assert_eq!(settled.off, [Gate::Repetition, Gate::TooShort].into());
        assert_eq!(settled.near_duplicate_threshold, 0.8);
        assert_eq!(settled.exclude, ["eval_a", "eval_b"]);
        assert!(settled.is_on(Gate::Excluded) && !CurationSettings::default().is_on(Gate::Excluded));
    }

    #[test]
    fn the_judge_runs_only_when_set_and_not_turned_off() {
        let default = CurationSettings::default();
        assert!(!default.is_on(Gate::Judge) && !default.is_on(Gate::JudgeUnparseable) && default.judge().is_none());
        let on = |filters| default.clone().with_flags(&CurationFlags { filters, ..CurationFlags::default() });
        let judged = on(vec![(Gate::Judge, true)]);
        assert_eq!(judged.judge(), Some(&JudgeSettings::default()));
        assert!(judged.is_on(Gate::JudgeUnparseable));
        let recipe = CurationSettings {
            judge: Some(JudgeSettings { max_new_tokens: 7, ..JudgeSettings::default() }),
            ..default
        };
        let off = recipe
            .clone()
            .with_flags(&CurationFlags { filters: vec![(Gate::Judge, false)], ..CurationFlags::default() });
        assert!(off.judge().is_none() && !off.is_on(Gate::JudgeUnparseable));
        let again = off.with_flags(&CurationFlags { filters: vec![(Gate::Judge, true)], ..CurationFlags::default() });
        assert_eq!(again.judge().map(|j| j.max_new_tokens), Some(7), "the recipe's judge is kept");
    }

    #[test]
    fn flag_parsers_name_the_rule() {
        assert_eq!(parse_filter_flag("seedCopy=off"), Ok(FilterFlag(vec![(Gate::SeedCopy, false)])));
        assert_eq!(parse_filter_flag("nearDuplicate=on"), Ok(FilterFlag(vec![(Gate::NearDuplicate, true)])));
        let all = parse_filter_flag("all=off").unwrap().0;
        assert!(all.len() == 12 && all.iter().all(|&(g, on)| g.switchable() && !on), "{all:?}");
        let all = parse_filter_flag("all=on").unwrap().0;
        assert!(all.len() == 11 && all.iter().all(|&(g, on)| g != Gate::Judge && on), "{all:?}");
        assert!(parse_filter_flag("seedcopy=off")
            .unwrap_err()
            .contains("instructionEcho, assistantVoice, notARequest, answerInRequest"));
        assert!(parse_filter_flag("excluded=off").unwrap_err().contains("is not a filter"));
        assert!(parse_filter_flag("refusal").unwrap_err().starts_with("expected NAME=on"));
        assert!(parse_filter_flag("refusal=no").unwrap_err().contains("`no` must be"));
        assert_eq!(parse_threshold("0.7"), Ok(0.7));
        assert!(parse_threshold("0").is_err() && parse_threshold("1.5").is_err() && parse_threshold("x").is_err());
        assert!(parse_threshold("NaN").is_err());
    }
}
