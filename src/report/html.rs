//! The report page: one self-contained HTML file (inline CSS, inline script, SVG charts drawn
//! here), openable offline. Every string from a dataset is escaped: text in the markup through
//! [`esc`], the rows in a JSON block through [`script_json`], and the script puts them into the
//! page as text only.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::stats::ReportRow;
use crate::store::Message;

const CSS: &str = include_str!("report.css");
const SCRIPT: &str = include_str!("report.js");

/// Text made safe for HTML content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that can sit inside `<script type="application/json">`: `<`, `>` and `&` (and the two
/// line separators JavaScript once treated as line ends) only ever appear inside JSON strings,
/// where `\uXXXX` escapes stand for them, so no `</script>` or comment opener can close the block.
pub fn script_json(value: &impl Serialize) -> serde_json::Result<String> {
    let text = serde_json::to_string(value)?;
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The row browser's data.
#[derive(Serialize)]
pub struct BrowserData<'a> {
    pub groups: &'a [String],
    pub flags: Vec<&'a str>,
    /// Rows per near-duplicate cluster.
    pub clusters: Vec<usize>,
    pub rows: Vec<BrowserRow<'a>>,
    pub seeds: BTreeMap<usize, Vec<[&'a str; 2]>>,
}

#[derive(Serialize)]
pub struct BrowserRow<'a> {
    g: usize,
    i: usize,
    m: Vec<[&'a str; 2]>,
    f: &'a [String],
    seed: Option<usize>,
    c: Option<usize>,
    meta: Option<&'a str>,
}

fn turns(messages: &[Message]) -> Vec<[&str; 2]> {
    messages.iter().map(|m| [m.role.as_str(), m.content.as_str()]).collect()
}

impl<'a> BrowserData<'a> {
    pub fn new(
        groups: &'a [String],
        rows: &'a [ReportRow],
        seeds: &'a BTreeMap<usize, Vec<Message>>,
        flags: Vec<&'a str>,
        clusters: Vec<usize>,
    ) -> Self {
        BrowserData {
            groups,
            flags,
            clusters,
            rows: rows
                .iter()
                .map(|r| BrowserRow {
                    g: r.group,
                    i: r.index,
                    m: turns(&r.messages),
                    f: &r.flags,
                    seed: r.seed,
                    c: r.cluster,
                    meta: r.metadata.as_deref(),
                })
                .collect(),
            seeds: seeds.iter().map(|(k, v)| (*k, turns(v))).collect(),
        }
    }
}

/// The whole page: a title bar, the given sections, the row browser over `data`.
pub fn page(title: &str, subtitle: &str, sections: &[String], data: &BrowserData) -> serde_json::Result<String> {
    let json = script_json(data)?;
    let mut html = String::with_capacity(json.len() + 64 * 1024);
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <title>{}</title><style>{CSS}</style></head><body>\
         <header><h1>{}</h1><p>{}</p></header><main>",
        esc(title),
        esc(title),
        esc(subtitle)
    );
    for section in sections {
        html.push_str(section);
    }
    html.push_str(BROWSER);
    let _ = writeln!(
        html,
        "</main><script type=\"application/json\" id=\"report-data\">{json}</script><script>{SCRIPT}</script></body></html>"
    );
    Ok(html)
}

const BROWSER: &str = r#"<section id="browser"><h2>Rows</h2><div class="controls">
<input id="search" type="search" placeholder="Search the rows' text and metadata" aria-label="search">
<select id="filter-group" aria-label="split"><option value="">every split</option></select>
<select id="filter-flag" aria-label="flag"><option value="">any flag</option></select>
<input id="filter-seed" type="number" min="0" placeholder="seed row" aria-label="seed row" style="width:7em">
<select id="filter-cluster" aria-label="near-duplicate cluster"><option value="">any cluster</option></select>
<button id="clear">clear</button><button id="prev">&larr; previous</button><button id="next">next &rarr;</button>
<span id="count" class="muted"></span></div><div id="rows"></div></section>"#;

/// A section with a heading.
pub fn section(id: &str, heading: &str, body: &str) -> String {
    format!("<section id=\"{}\"><h2>{}</h2>{body}</section>", esc(id), esc(heading))
}

/// A two-column table of labels and values (both escaped).
pub fn key_values(pairs: &[(String, String)]) -> String {
    let mut out = String::from("<table class=\"kv\">");
    for (k, v) in pairs {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    out.push_str("</table>");
    out
}

/// A table with a header row; cells are escaped.
pub fn grid(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::from("<table class=\"grid\"><tr>");
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", esc(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// A histogram of `values` as an SVG bar chart, at most 24 equal-width bins.
pub fn histogram(caption: &str, values: &[usize]) -> String {
    let max = values.iter().copied().max().unwrap_or(0);
    let width = (max / 24 + 1).max(1);
    let bins = max / width + 1;
    let mut counts = vec![0usize; bins];
    for v in values {
        counts[v / width] += 1;
    }
    let labels: Vec<String> = (0..bins)
        .map(|b| if width == 1 { format!("{b}") } else { format!("{}–{}", b * width, (b + 1) * width - 1) })
        .collect();
    columns(caption, &labels, &counts, "bar")
}

/// Vertical bars, one per label, with the first and last label under the axis and each bar's
/// label and count in its tooltip.
pub fn columns(caption: &str, labels: &[String], counts: &[usize], class: &str) -> String {
    let (w, h, pad) = (360usize, 150usize, 20usize);
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    let step = (w - 2 * pad) as f64 / counts.len().max(1) as f64;
    let mut svg = format!(
        "<figure><svg class=\"chart\" width=\"{w}\" height=\"{}\" viewBox=\"0 0 {w} {}\" role=\"img\" aria-label=\"{}\">",
        h + 30,
        h + 30,
        esc(caption)
    );
    for (i, (&n, label)) in counts.iter().zip(labels).enumerate() {
        let bar = (n as f64 / top as f64 * (h - pad) as f64).round();
        let _ = write!(
            svg,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bar}\"><title>{}: {n}</title></rect>",
            pad as f64 + i as f64 * step,
            h as f64 - bar,
            (step - 1.0).max(1.0),
            esc(label)
        );
    }
    let first = labels.first().map(|s| esc(s)).unwrap_or_default();
    let last = labels.last().map(|s| esc(s)).unwrap_or_default();
    let _ = write!(
        svg,
        "<line x1=\"{pad}\" y1=\"{h}\" x2=\"{}\" y2=\"{h}\" stroke=\"#999\"/>\
         <text x=\"{pad}\" y=\"{}\">{first}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{last}</text>\
         <text x=\"{pad}\" y=\"12\">max {top}</text></svg><figcaption>{}</figcaption></figure>",
        w - pad,
        h + 14,
        w - pad,
        h + 14,
        esc(caption)
    );
    svg
}

/// Horizontal bars for named counts (flags, the candidate funnel).
pub fn bars(caption: &str, items: &[(String, usize)], class: &str) -> String {
    let (w, row) = (520usize, 18usize);
    let label_w = 200usize;
    let top = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let h = row * items.len().max(1) + 4;
    let mut svg = format!(
        "<figure><svg class=\"chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">",
        esc(caption)
    );
    for (i, (label, n)) in items.iter().enumerate() {
        let y = i * row;
        let len = (*n as f64 / top as f64 * (w - label_w - 60) as f64).round();
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect class=\"{class}\" x=\"{label_w}\" y=\"{}\" width=\"{len}\" height=\"{}\"><title>{}: {n}</title></rect><text x=\"{}\" y=\"{}\">{n}</text>",
            label_w - 6,
            y + 13,
            esc(label),
            y + 3,
            row - 5,
            esc(label),
            label_w as f64 + len + 4.0,
            y + 13
        );
    }
    let _ = write!(svg, "</svg><figcaption>{}</figcaption></figure>", esc(caption));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_text_cannot_close_a_tag_or_the_data_block() {
        assert_eq!(esc(r#"<img src=x onerror="a()">'&"#), "&lt;img src=x onerror=&quot;a()&quot;&gt;&#39;&amp;");
        let json = script_json(&serde_json::json!({"t": "</script><script>x()</script><!-- \u{2028}"})).unwrap();
        assert!(!json.contains('<') && !json.contains('>') && !json.contains('\u{2028}'), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["t"], "</script><script>x()</script><!-- \u{2028}");
    }

    #[test]
    fn a_histogram_counts_every_value_once() {
        let svg = histogram("lengths", &[0, 1, 1, 50, 99]);
        assert_eq!(svg.matches("<rect").count(), 20, "bins of 5 up to 99");
        let total: usize = svg
            .match_indices(": ")
            .map(|(i, _)| svg[i + 2..].split('<').next().unwrap().parse::<usize>().unwrap())
            .sum();
        assert_eq!(total, 5);
    }
}
