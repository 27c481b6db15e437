//! Progress on stderr: a bar with rows done, tokens/s and ETA on a terminal; a plain line every
//! few seconds otherwise (logs, CI); nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Auto,
    Quiet,
}

pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    tokens: u64,
    started: Instant,
    bar: Option<ProgressBar>,
    plain: bool,
    last_line: Instant,
    /// Said after the counts (candidates tried, dropped).
    note: String,
    /// The plain line for `done == total` was printed.
    reported_total: bool,
}

/// How often the plain (non-terminal) output prints a line.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl Progress {
    pub fn new(label: &str, total: usize, mode: ProgressMode) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (mode == ProgressMode::Auto && terminal).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template("[{bar:30}] {pos}/{len} {msg}, {prefix} tok/s, ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label.to_string());
            bar.set_prefix("0");
            bar
        });
        Self {
            label: label.to_string(),
            total: total as u64,
            done: 0,
            tokens: 0,
            started: Instant::now(),
            bar,
            plain: mode == ProgressMode::Auto && !terminal,
            last_line: Instant::now(),
            note: String::new(),
            reported_total: false,
        }
    }

    /// One row finished, having generated `tokens` tokens.
    pub fn row_done(&mut self, tokens: usize) {
        self.done += 1;
        self.tokens += tokens as u64;
        self.show();
    }

    /// A generation that is not a row by itself finished, with `tokens` tokens.
    pub fn tokens(&mut self, tokens: usize) {
        self.tokens += tokens as u64;
        self.show();
    }

    /// `done` rows made so far; `note` says more (such as candidates tried).
    pub fn rows(&mut self, done: usize, note: &str) {
        if self.done == done as u64 && self.note == note {
            return;
        }
        self.done = done as u64;
        self.note = note.to_string();
        self.show();
    }

    fn show(&mut self) {
        let rate = self.tokens_per_second();
        let note = if self.note.is_empty() { String::new() } else { format!(", {}", self.note) };
        if let Some(bar) = &self.bar {
            bar.set_prefix(format!("{rate:.0}"));
            bar.set_position(self.done);
            bar.set_message(format!("{}{note}", self.label));
        } else if self.plain && (self.last_line.elapsed() >= PLAIN_EVERY || self.done == self.total) {
            if self.done == self.total && self.reported_total {
                return;
            }
            self.reported_total = self.done == self.total;
            self.last_line = Instant::now();
            eprintln!(
                "{}: {}/{} rows{note}, {} tokens, {rate:.1} tok/s, {:.0}s elapsed",
                self.label,
                self.done,
                self.total,
                self.tokens,
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    /// A handle that prints notes (such as a wait) above the bar, or as plain lines; nothing
    /// when quiet.
    pub fn notifier(&self) -> Notifier {
        Notifier { label: self.label.clone(), bar: self.bar.clone(), quiet: self.bar.is_none() && !self.plain }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Prints one-off notes for a [`Progress`] without disturbing its bar.
#[derive(Clone)]
pub struct Notifier {
    label: String,
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Notifier {
    pub fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        let line = format!("{}: {text}", self.label);
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
