//! `synth eval show`: a stored run's summary and its worst rows (most failed evaluators first),
//! with every dataset and model string escaped for the terminal.

use anyhow::Result;

use super::evaluators::short;
use super::runs::read_run;
use crate::store::artifacts::{EvalResult, EvalSummary};
use crate::store::Store;
use crate::terminal::escape;

pub fn show(store: &Store, run_id: &str, worst: usize) -> Result<String> {
    let (summary, results) = read_run(store, run_id)?;
    Ok(render(&summary, &results, worst))
}

fn render(summary: &EvalSummary, results: &[EvalResult], worst: usize) -> String {
    let mut out = render_summary(summary);
    let mut order: Vec<&EvalResult> = results.iter().filter(|r| r.count("fail") + r.count("unparseable") > 0).collect();
    order.sort_by_key(|r| (std::cmp::Reverse(r.count("fail")), std::cmp::Reverse(r.count("unparseable")), r.row));
    if worst > 0 && !order.is_empty() {
        out.push_str(&format!("worst rows ({} of {} shown):\n", order.len().min(worst), order.len()));
    }
    for result in order.into_iter().take(worst) {
        out.push_str(&render_row(result));
    }
    out
}

fn render_summary(s: &EvalSummary) -> String {
    let mut out = format!(
        "eval run `{}`: model `{}` on dataset `{}` ({} rows), {}\n",
        escape(&s.run_id),
        escape(&s.model.name),
        escape(&s.dataset.id),
        s.rows,
        escape(&s.created_at)
    );
    out.push_str(&format!(
        "{:<20} {:<14} {:>5} {:>5} {:>11} {:>7} {:>9}\n",
        "evaluator", "type", "pass", "fail", "unparseable", "skipped", "pass rate"
    ));
    for e in &s.evaluators {
        let rate = e.pass_rate.map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        out.push_str(&format!(
            "{:<20} {:<14} {:>5} {:>5} {:>11} {:>7} {:>9}\n",
            escape(&e.name),
            escape(&e.type_name),
            e.pass,
            e.fail,
            e.unparseable,
            e.skipped,
            rate
        ));
    }
    let t = &s.tokens;
    out.push_str(&format!(
        "rows failed: {} of {}; tokens: {} prompt, {} generated (judges: {} prompt, {} generated); {}s\n",
        s.failed_rows, s.rows, t.prompt, t.generated, t.judge_prompt, t.judge_generated, s.wall_seconds
    ));
    if !s.failure_modes.is_empty() {
        out.push_str(&format!(
            "failure modes (dataset `{}`):\n",
            escape(s.failure_modes_dataset.as_deref().unwrap_or("-"))
        ));
        for m in &s.failure_modes {
            out.push_str(&format!("  {:>4}  {}: {}\n", m.count, escape(&m.label), escape(&m.description)));
        }
    }
    out
}

fn render_row(r: &EvalResult) -> String {
    let prompt = r.prompt.iter().rev().find(|m| m.role == "user").map_or("", |m| m.content.as_str());
    let finish =
        serde_json::to_value(r.finish_reason).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let mut out = format!("row {} ({} failed, finish {finish}):\n", r.row, r.count("fail"));
    out.push_str(&format!("  prompt:    {}\n", escape(&short(prompt))));
    out.push_str(&format!("  reference: {}\n", escape(&short(&r.reference))));
    out.push_str(&format!("  output:    {}\n", escape(&short(&r.output))));
    for (name, e) in &r.evaluations {
        out.push_str(&format!("  {}: {} - {}\n", escape(name), escape(&e.verdict), escape(&short(&e.rationale))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary() -> EvalSummary {
        serde_json::from_value(json!({"runId": "r", "createdAt": "t", "synthVersion": "0", "recipeFile": "f", "recipe": {},
            "dataset": {"id": "d", "rowsUsed": 2, "rowsInDataset": 2},
            "model": {"name": "m", "hfRepo": "", "revision": "", "source": "", "files": []},
            "judges": {}, "judgeModels": [], "device": "cpu", "inferenceSeed": 1, "rows": 2, "passedRows": 1, "failedRows": 1,
            "evaluators": [{"name": "a", "type": "exact_match", "pass": 1, "fail": 1, "unparseable": 0, "skipped": 0, "passRate": 0.5}],
            "finishReasons": {"stop": 2}, "tokens": {"prompt": 1, "generated": 1, "judgePrompt": 0, "judgeGenerated": 0},
            "wallSeconds": 1.0, "failureModesDataset": null, "failureModes": []}))
        .unwrap()
    }

    fn result(row: usize, prompt: &str, output: &str, verdict: &str) -> EvalResult {
        serde_json::from_value(
            json!({"row": row, "prompt": [{"role": "user", "content": prompt}], "reference": "y", "output": output,
            "finishReason": "stop", "tokens": {"prompt": 1, "generated": 1}, "passed": verdict == "pass",
            "evaluations": {"a": {"verdict": verdict, "rationale": "expected `y`"}}}),
        )
        .unwrap()
    }

    #[test]
    fn show_orders_rows_by_failures() {
        let text = render(&summary(), &[result(0, "ok?", "y", "pass"), result(1, "bad?", "n", "fail")], 5);
        assert!(text.contains("50.0%"), "{text}");
        assert!(text.contains("row 1 (1 failed") && !text.contains("row 0 ("), "{text}");
        assert!(text.contains("prompt:    bad?"), "{text}");
    }

    #[test]
    fn show_escapes_terminal_controls_in_rows() {
        let text = render(&summary(), &[result(0, "clear\u{1b}[2J", "\u{1b}]0;pwned\u{7}\u{202e}", "fail")], 5);
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202e}'), "{text:?}");
        assert!(text.contains("clear\\u{1b}[2J"), "{text}");
    }
}
