//! Judge prompt templates: `{prompt}`, `{reference}` and `{output}` filled with a row's text.
//! `synth eval`'s `llm_judge` evaluators and `synth run`'s judge gate (curation) share them.

/// The placeholders a judge template may use; `{{` and `}}` are literal braces.
pub const PLACEHOLDERS: [&str; 3] = ["prompt", "reference", "output"];

/// Fills a judge template checked by [`check_template`].
pub fn render_template(template: &str, prompt: &str, reference: &str, output: &str) -> String {
    let mut out = String::with_capacity(template.len() + prompt.len() + reference.len() + output.len());
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        let mut replaced = false;
        for (name, value) in [("{prompt}", prompt), ("{reference}", reference), ("{output}", output)] {
            if let Some(after) = tail.strip_prefix(name) {
                out.push_str(value);
                rest = after;
                replaced = true;
                break;
            }
        }
        if !replaced {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Checks a judge template: known placeholders only, `{output}` present, braces paired.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    let mut has_output = false;
    while let Some(at) = rest.find(['{', '}']) {
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err("has a lone `}`; write `}}` for a literal brace".into());
        }
        let Some(end) = tail.find('}') else {
            return Err("has a `{` without a closing `}`; write `{{` for a literal brace".into());
        };
        let name = &tail[1..end];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "has an unknown placeholder `{{{}}}`, the placeholders are `{{prompt}}`, `{{reference}}` and `{{output}}` (write `{{{{` for a literal brace)",
                name.chars().take(40).collect::<String>()
            ));
        }
        has_output |= name == "output";
        rest = &tail[end + 1..];
    }
    if !has_output {
        return Err("must contain `{output}`, the model output to grade".into());
    }
    Ok(())
}
