//! The data explorer: a self-contained HTML report of a dataset (`synth datasets report`) or of
//! an eval run (`synth eval report`), and the same figures as a terminal table
//! (`synth datasets stats`).
//!
//! Reading a dataset and working out its figures is [`stats::explore`]; the quality flags are
//! [`flags`], near-duplicate clusters [`near_dupes`], the page [`html`].

mod eval;
pub mod flags;
mod html;
mod lengths;
pub mod near_dupes;
pub mod stats;
mod table;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use eval::write_eval_report;
pub use stats::{explore, DatasetStats, Explored};
pub use table::stats_table;

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::store::artifacts::{DroppedCandidate, DROPPED_FILE};
use crate::store::{atomic, Store};
use html::{bars, columns, esc, grid, histogram, key_values, section, BrowserData};

/// Writes the report of dataset `id` to `output` (default `<dataset dir>/report.html`, replaced
/// when it exists) and returns its path.
pub fn write_dataset_report(store: &Store, id: &str, output: Option<&Path>) -> Result<PathBuf> {
    let explored = explore(store, id)?;
    let path = match output {
        Some(path) => path.to_path_buf(),
        None => store.dataset_dir(id)?.join("report.html"),
    };
    let html = dataset_page(&explored)?;
    atomic::write_file(&path, html.as_bytes(), true)?;
    Ok(path)
}

/// The report page of an explored dataset.
pub fn dataset_page(explored: &Explored) -> Result<String> {
    let s = &explored.stats;
    let mut sections = vec![summary_section(s), length_section(s), diversity_section(s), quality_section(s)];
    if !explored.dropped.is_empty() {
        sections.push(dropped_section(&explored.dropped));
    }
    let flags: Vec<&str> = s.flags.keys().map(String::as_str).collect();
    let clusters = s.diversity.clusters.iter().map(Vec::len).collect();
    let data = BrowserData::new(&explored.groups, &explored.rows, &explored.seeds, flags, clusters);
    let subtitle = format!("{} dataset, {} rows, made {}", s.kind, s.rows, s.created_at);
    Ok(html::page(&format!("synth report: {}", s.id), &subtitle, &sections, &data)?)
}

fn summary_section(s: &DatasetStats) -> String {
    let mut pairs = vec![("rows".to_string(), s.rows.to_string())];
    pairs.extend(s.splits.iter().map(|sp| (format!("split {}", sp.name), sp.rows.to_string())));
    if let Some(run) = &s.run {
        pairs.extend([
            ("recipe".into(), run.recipe_file.clone()),
            ("seed dataset".into(), run.seed_dataset.clone()),
            ("model".into(), run.model.clone()),
            ("device".into(), run.device.clone()),
            ("inference seed".into(), run.inference_seed.to_string()),
            ("wall time".into(), format!("{:.1} s", run.wall_seconds)),
            ("generated tokens".into(), run.generated_tokens.to_string()),
            ("tokens/s".into(), format!("{:.1}", run.tokens_per_second)),
            ("synth version".into(), run.synth_version.clone()),
        ]);
        pairs.extend(run.model_files.iter().map(|f| (format!("file {}", f.name), format!("sha256 {}", f.sha256))));
    }
    let mut body = key_values(&pairs);
    if !s.funnel.is_empty() {
        let steps: Vec<(String, usize)> = s.funnel.iter().map(|f| (f.label.clone(), f.rows)).collect();
        body.push_str("<h3>Candidate funnel</h3>");
        body.push_str(&bars("candidates → drops by reason → published", &steps, "bar"));
    }
    if let Some(curation) = &s.curation {
        body.push_str("<h3>Curation</h3><pre>");
        body.push_str(&esc(&serde_json::to_string_pretty(curation).unwrap_or_default()));
        body.push_str("</pre>");
    }
    section("summary", "Summary", &body)
}

fn length_section(s: &DatasetStats) -> String {
    let mut body = format!("<p class=\"muted\">Lengths in {}.</p><div class=\"charts\">", esc(&s.length_unit));
    for split in s.splits.iter().filter(|sp| sp.rows > 0) {
        body.push_str(&histogram(&format!("{}: request length", split.name), &split.request.values));
        body.push_str(&histogram(&format!("{}: answer length", split.name), &split.answer.values));
    }
    if let Some(seeds) = &s.rows_per_seed {
        let labels: Vec<String> = seeds.histogram.keys().map(|k| k.to_string()).collect();
        let counts: Vec<usize> = seeds.histogram.values().copied().collect();
        body.push_str(&columns("seed rows by rows made from each", &labels, &counts, "bar"));
    }
    body.push_str("</div>");
    let rows: Vec<Vec<String>> = s
        .splits
        .iter()
        .flat_map(|sp| [("request", &sp.request), ("answer", &sp.answer)].map(|(what, l)| (sp, what, l)))
        .map(|(sp, what, l)| {
            let cells = [l.min, l.median, l.p95, l.max].map(|n| n.to_string());
            let mut row = vec![sp.name.clone(), what.to_string(), sp.rows.to_string(), format!("{:.1}", l.mean)];
            row.extend(cells);
            row
        })
        .collect();
    body.push_str(&grid(&["split", "text", "rows", "mean", "min", "median", "p95", "max"], &rows));
    section("lengths", "Splits and lengths", &body)
}

fn diversity_section(s: &DatasetStats) -> String {
    let d = &s.diversity;
    let mut body = key_values(&[
        ("distinct-1 of requests".into(), format!("{:.3}", d.distinct1)),
        ("distinct-2 of requests".into(), format!("{:.3}", d.distinct2)),
        ("near-duplicate clusters".into(), d.clusters.len().to_string()),
        ("rows in them".into(), d.rows_in_clusters.to_string()),
    ]);
    for (i, cluster) in d.clusters.iter().enumerate().take(50) {
        body.push_str(&format!(
            "<div class=\"cluster\"><button class=\"linklike\" data-cluster=\"{i}\">cluster {}</button> {} rows: {}</div>",
            i + 1,
            cluster.len(),
            esc(&cluster.join(", "))
        ));
    }
    section("diversity", "Diversity", &body)
}

fn quality_section(s: &DatasetStats) -> String {
    let items: Vec<(String, usize)> = s.flags.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let mut body = String::from(
        "<p class=\"muted\">echo: the answer repeats the request; refusal: it opens with an apology or refusal; \
         repetition: looping text; very-short / very-long: under 3 words / over 3× the median answer; \
         other-script: another writing system than the request; off-topic: the request shares no content word \
         with its seed row's. Flags in a row's <code>metadata.flags</code> are shown as they are.</p>",
    );
    if items.is_empty() {
        body.push_str("<p>No row is flagged.</p>");
    } else {
        body.push_str(&bars("rows per flag", &items, "bar flag"));
    }
    section("quality", "Quality flags", &body)
}

/// Examples shown per drop reason.
const DROPPED_EXAMPLES: usize = 3;
/// Characters of a dropped candidate's text shown.
const DROPPED_TEXT_CHARS: usize = 600;

/// The candidates the run dropped, by reason: how many, and the first few of each with the
/// text that failed (the last message) and, for the judge, its reply.
fn dropped_section(dropped: &[DroppedCandidate]) -> String {
    let mut by_reason: BTreeMap<&str, Vec<&DroppedCandidate>> = BTreeMap::new();
    for d in dropped {
        by_reason.entry(d.reason.as_str()).or_default().push(d);
    }
    let clip = |t: &str| -> String {
        let mut text: String = t.chars().take(DROPPED_TEXT_CHARS).collect();
        if t.chars().count() > DROPPED_TEXT_CHARS {
            text.push('…');
        }
        text
    };
    let mut body = format!(
        "<p class=\"muted\">{} candidates were dropped; the first {DROPPED_EXAMPLES} of each reason are shown with \
         the text that failed (the last message of the candidate so far). All are in the dataset's <code>{}</code>.</p>",
        dropped.len(),
        DROPPED_FILE
    );
    for (reason, items) in &by_reason {
        let _ = write!(body, "<h3>{} <span class=\"muted\">({})</span></h3><ol>", esc(reason), items.len());
        for d in items.iter().take(DROPPED_EXAMPLES) {
            let last = d
                .messages
                .last()
                .map_or_else(|| "(no text)".to_string(), |m| format!("{}: {}", m.role, clip(&m.content)));
            let _ = write!(body, "<li>seed row {}, variant {}: <pre>{}</pre>", d.seed_row, d.variant, esc(&last));
            if let Some(reply) = &d.judge_reply {
                let _ = write!(body, "judge: <pre>{}</pre>", esc(&clip(reply)));
            }
            body.push_str("</li>");
        }
        body.push_str("</ol>");
    }
    section("dropped", "Dropped candidates", &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Message;

    #[test]
    fn dropped_candidates_are_shown_by_reason_and_escaped() {
        let candidate = |reason: &str, text: &str, judge: Option<&str>| DroppedCandidate {
            seed_row: 2,
            variant: 1,
            reason: reason.into(),
            messages: vec![Message::new("user", "q"), Message::new("assistant", text)],
            judge_reply: judge.map(String::from),
        };
        let dropped = [
            candidate("judge", "<script>alert(1)</script>", Some("No </textarea>")),
            candidate("repetition", "again again", None),
            candidate("judge", "fine", Some("No.")),
        ];
        let html = dropped_section(&dropped);
        assert!(html.contains("3 candidates were dropped"));
        assert!(html.contains("judge <span class=\"muted\">(2)</span>") && html.contains("repetition <span"));
        assert!(html.contains("assistant: &lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"));
        assert!(html.contains("judge: <pre>No &lt;/textarea&gt;</pre>"));
        assert!(html.contains("seed row 2, variant 1"));
    }
}
