//! `synth eval report`: an eval run as a report page: pass rates per evaluator, failure modes,
//! the worst rows, and every row in the browser (grouped passed / failed, flagged with the
//! evaluators that failed it).

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde_json::{json, Map};

use super::html::{self, bars, grid, histogram, key_values, section, BrowserData};
use super::lengths::Measure;
use super::stats::{assemble, flag_counts, Explored};
use crate::evaluation::runs::{eval_run_dir, read_run};
use crate::store::artifacts::{EvalResult, EvalSummary};
use crate::store::{atomic, Message, Row, Store};

/// Writes the report of eval run `run_id` to `output` (default `evals/<run>/report.html`).
pub fn write_eval_report(store: &Store, run_id: &str, output: Option<&Path>) -> Result<PathBuf> {
    let (summary, results) = read_run(store, run_id)?;
    let measure = Measure::for_model(Some(&summary.model), store.root());
    let explored = explore_run(&measure, &results);
    let path = match output {
        Some(path) => path.to_path_buf(),
        None => eval_run_dir(store, run_id)?.join("report.html"),
    };
    let html = eval_page(&summary, &results, &explored)?;
    atomic::write_file(&path, html.as_bytes(), true)?;
    Ok(path)
}

/// Results as rows (the prompt and the model's answer), grouped passed / failed, each flagged
/// `fail: <evaluator>` or `unparseable: <evaluator>` besides the heuristics.
fn explore_run(measure: &Measure, results: &[EvalResult]) -> Explored {
    let groups = vec!["passed".to_string(), "failed".to_string()];
    let rows = results
        .iter()
        .map(|r| {
            let mut messages = r.prompt.clone();
            messages.push(Message::new("assistant", r.output.clone()));
            let metadata = json!({"row": r.row, "reference": r.reference, "finishReason": r.finish_reason,
                "evaluations": r.evaluations.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>()});
            let metadata = metadata.as_object().cloned();
            (usize::from(!r.passed), r.row, Row { messages, metadata })
        })
        .collect();
    let mut explored = assemble(measure, &groups, rows, &[]);
    for (row, result) in explored.rows.iter_mut().zip(results) {
        for (name, e) in &result.evaluations {
            if e.verdict == "fail" || e.verdict == "unparseable" {
                row.flags.push(format!("{}: {name}", e.verdict));
            }
        }
    }
    explored.stats.flags = flag_counts(&explored.rows);
    explored
}

fn eval_page(s: &EvalSummary, results: &[EvalResult], explored: &Explored) -> Result<String> {
    let sections = [summary_section(s), evaluators_section(s, explored), worst_section(results)];
    let flags: Vec<&str> = explored.stats.flags.keys().map(String::as_str).collect();
    let clusters = explored.stats.diversity.clusters.iter().map(Vec::len).collect();
    let data = BrowserData::new(&explored.groups, &explored.rows, &explored.seeds, flags, clusters);
    let subtitle = format!("model {} on dataset {}, {} rows, {}", s.model.name, s.dataset.id, s.rows, s.created_at);
    Ok(html::page(&format!("synth eval report: {}", s.run_id), &subtitle, &sections, &data)?)
}

fn summary_section(s: &EvalSummary) -> String {
    let mut pairs = vec![
        ("recipe".to_string(), s.recipe_file.clone()),
        ("model".into(), s.model.name.clone()),
        ("dataset".into(), format!("{} ({} of {} rows)", s.dataset.id, s.dataset.rows_used, s.dataset.rows_in_dataset)),
        ("device".into(), s.device.clone()),
        ("inference seed".into(), s.inference_seed.to_string()),
        ("rows passed".into(), format!("{} of {}", s.passed_rows, s.rows)),
        ("wall time".into(), format!("{:.1} s", s.wall_seconds)),
        ("tokens".into(), format!("{} prompt, {} generated", s.tokens.prompt, s.tokens.generated)),
        ("synth version".into(), s.synth_version.clone()),
    ];
    pairs.extend(s.model.files.iter().map(|f| (format!("file {}", f.name), format!("sha256 {}", f.sha256))));
    if let Some(id) = &s.failure_modes_dataset {
        pairs.push(("failure-mode dataset".into(), id.clone()));
    }
    section("summary", "Summary", &key_values(&pairs))
}

fn evaluators_section(s: &EvalSummary, explored: &Explored) -> String {
    let rates: Vec<(String, usize)> = s
        .evaluators
        .iter()
        .map(|e| (format!("{} ({})", e.name, e.pass_rate.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))), e.pass))
        .collect();
    let mut body = bars("passes per evaluator (pass rate)", &rates, "bar");
    let modes: Vec<Vec<String>> =
        s.failure_modes.iter().map(|m| vec![m.label.clone(), m.count.to_string(), m.description.clone()]).collect();
    body.push_str("<h3>Failure modes</h3>");
    body.push_str(&if modes.is_empty() {
        "<p>None.</p>".to_string()
    } else {
        grid(&["mode", "rows", "description"], &modes)
    });
    let reasons: Vec<(String, usize)> = s.finish_reasons.iter().map(|(k, v)| (k.clone(), *v)).collect();
    body.push_str("<div class=\"charts\">");
    body.push_str(&bars("answers by finish reason", &reasons, "bar"));
    let answers: Vec<usize> = explored.stats.splits.iter().flat_map(|sp| sp.answer.values.iter().copied()).collect();
    body.push_str(&histogram(&format!("answer length ({})", explored.stats.length_unit), &answers));
    body.push_str("</div>");
    section("evaluators", "Pass rates and failure modes", &body)
}

/// The ten rows with the most failed evaluators, as `synth eval show` orders them.
fn worst_section(results: &[EvalResult]) -> String {
    let mut order: Vec<&EvalResult> = results.iter().filter(|r| r.count("fail") + r.count("unparseable") > 0).collect();
    order.sort_by_key(|r| (std::cmp::Reverse(r.count("fail")), std::cmp::Reverse(r.count("unparseable")), r.row));
    let rows: Vec<Vec<String>> = order
        .iter()
        .take(10)
        .map(|r| {
            let failed: Vec<String> = r
                .evaluations
                .iter()
                .filter(|(_, e)| e.verdict != "pass")
                .map(|(n, e)| format!("{n}: {}", e.verdict))
                .collect();
            let rationale = r.evaluations.iter().find(|(_, e)| e.verdict == "fail").map_or("", |(_, e)| &e.rationale);
            vec![r.row.to_string(), failed.join(", "), excerpt(&r.output), excerpt(rationale)]
        })
        .collect();
    let body = if rows.is_empty() {
        "<p>No row failed.</p>".to_string()
    } else {
        format!("<p class=\"muted\">{} rows failed; the worst {} here, all of them in the browser below (group <em>failed</em>).</p>{}",
            order.len(), rows.len(), grid(&["row", "evaluators", "answer", "why"], &rows))
    };
    section("worst", "Worst rows", &body)
}

fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(160).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
