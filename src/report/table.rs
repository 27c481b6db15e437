//! `synth datasets stats`: the report's figures as plain text (dataset strings escaped for the
//! terminal).

use std::fmt::Write as _;

use super::stats::DatasetStats;
use crate::terminal::escape;

pub fn stats_table(s: &DatasetStats) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "dataset `{}` ({}, made {}): {} rows", escape(&s.id), escape(&s.kind), s.created_at, s.rows);
    if let Some(run) = &s.run {
        let _ = writeln!(
            out,
            "made by synth {} from `{}` on seed `{}` with {} on {}, seed {}: {:.1}s, {} tokens at {:.1} tok/s",
            escape(&run.synth_version),
            escape(&run.recipe_file),
            escape(&run.seed_dataset),
            escape(&run.model),
            escape(&run.device),
            run.inference_seed,
            run.wall_seconds,
            run.generated_tokens,
            run.tokens_per_second
        );
        for f in &run.model_files {
            let _ = writeln!(out, "  model file {}  sha256 {}", escape(&f.name), escape(&f.sha256));
        }
    }
    if !s.funnel.is_empty() {
        let steps: Vec<String> = s.funnel.iter().map(|f| format!("{} {}", escape(&f.label), f.rows)).collect();
        let _ = writeln!(out, "funnel: {}", steps.join(" → "));
    }
    if let Some(curation) = &s.curation {
        let _ = writeln!(out, "curation: {}", escape(&curation.to_string()));
    }
    let _ = writeln!(out, "\nlengths in {}:", s.length_unit);
    let _ = writeln!(
        out,
        "{:<12} {:<8} {:>6} {:>8} {:>6} {:>7} {:>6} {:>6}",
        "split", "text", "rows", "mean", "min", "median", "p95", "max"
    );
    for sp in &s.splits {
        for (what, l) in [("request", &sp.request), ("answer", &sp.answer)] {
            let _ = writeln!(
                out,
                "{:<12} {:<8} {:>6} {:>8.1} {:>6} {:>7} {:>6} {:>6}",
                escape(&sp.name),
                what,
                sp.rows,
                l.mean,
                l.min,
                l.median,
                l.p95,
                l.max
            );
        }
    }
    if let Some(seeds) = &s.rows_per_seed {
        let hist: Vec<String> = seeds.histogram.iter().map(|(rows, n)| format!("{rows}: {n}")).collect();
        let _ = writeln!(
            out,
            "\nrows per seed row: {} seed rows, min {}, mean {:.2}, max {} (rows: seed rows = {})",
            seeds.seeds,
            seeds.min,
            seeds.mean,
            seeds.max,
            hist.join(", ")
        );
    }
    let d = &s.diversity;
    let _ = writeln!(
        out,
        "\ndiversity of requests: distinct-1 {:.3}, distinct-2 {:.3}; {} near-duplicate clusters ({} rows)",
        d.distinct1,
        d.distinct2,
        d.clusters.len(),
        d.rows_in_clusters
    );
    for (i, c) in d.clusters.iter().enumerate().take(10) {
        let _ = writeln!(out, "  cluster {}: {}", i + 1, escape(&c.join(", ")));
    }
    let flags: Vec<String> = s.flags.iter().map(|(k, v)| format!("{} {v}", escape(k))).collect();
    let flagged = if flags.is_empty() { "none".to_string() } else { flags.join(", ") };
    let _ = writeln!(out, "\nquality flags (rows): {flagged}");
    out
}
