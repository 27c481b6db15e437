//! User-facing errors: a short message (values in backticks, no trailing period), then an
//! optional `hint:` saying what to do. The kind picks the process exit code.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input is wrong: a recipe, a dataset file, a flag. Exit code 2.
    Invalid,
    /// Something the user named does not exist: a dataset id, a model's files. Exit code 3.
    NotFound,
    /// Anything else: I/O, a model that fails to load. Exit code 1.
    Failed,
    /// The user stopped the run (Ctrl-C); its work is kept for a resume. Exit code 130.
    Interrupted,
}

#[derive(Debug)]
pub struct SynthError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl SynthError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Invalid, message: message.into(), hint: None }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::NotFound, message: message.into(), hint: None }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Failed, message: message.into(), hint: None }
    }
    pub fn interrupted(message: impl Into<String>) -> Self {
        Self { kind: ErrorKind::Interrupted, message: message.into(), hint: None }
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for SynthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SynthError {}

/// Shorthand for `Err(SynthError::invalid(..).into())` in functions returning `anyhow::Result`.
#[macro_export]
macro_rules! invalid {
    ($($arg:tt)*) => { ::anyhow::Error::from($crate::error::SynthError::invalid(format!($($arg)*))) };
}

/// The exit code for an error: 2 invalid input, 3 not found, 130 interrupted, 1 anything else.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    match err.chain().find_map(|e| e.downcast_ref::<SynthError>()) {
        Some(e) => match e.kind {
            ErrorKind::Invalid => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Failed => 1,
            ErrorKind::Interrupted => 130,
        },
        None => 1,
    }
}

/// Renders an error for stderr: `error: outer context: inner cause`, then the hint, if any.
pub fn render(err: &anyhow::Error) -> String {
    let mut out = String::from("error: ");
    let parts: Vec<String> = err.chain().map(|e| e.to_string()).collect();
    out.push_str(&parts.join(": "));
    if let Some(hint) = err.chain().find_map(|e| e.downcast_ref::<SynthError>()).and_then(|e| e.hint.as_ref()) {
        out.push_str("\n\nhint: ");
        out.push_str(hint);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_survives_context_and_picks_exit_code() {
        let err: anyhow::Error =
            SynthError::not_found("dataset `x` not found").hint("run `synth datasets list`").into();
        let err = err.context("loading seed dataset");
        assert_eq!(exit_code(&err), 3);
        let text = render(&err);
        assert_eq!(text, "error: loading seed dataset: dataset `x` not found\n\nhint: run `synth datasets list`");
    }
}
