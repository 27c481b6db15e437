//! The data explorer's report of a real SmolLM2 run, opened in headless Chromium through
//! chromedriver (WebDriver): the summary and charts are in the page, the search box filters
//! rows, and a hostile row runs nothing. Chromium comes from `scripts/setup-browser.sh`
//! (Debian's `chromium` + `chromium-driver`); when it cannot be installed the test fails.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{s, stderr, Home};
use serde_json::{json, Value};

const HOSTILE: &str = "Explain this page: <script>window.__pwned = 'script'</script> \
<img src=x onerror=\"window.__pwned = 'img'\"> </textarea><textarea> <!-- --> \
```html\n<script>window.__pwned = 'code'</script>\n``` done";

/// The paths of `chromium` and `chromedriver`, installed when missing.
fn browser() -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-browser.sh");
    let out = Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/setup-browser.sh could not install Chromium, so the report cannot be checked in a browser:\n{}",
        stderr(&out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines().map(PathBuf::from);
    (lines.next().unwrap(), lines.next().unwrap())
}

/// A WebDriver session in headless Chromium, through a chromedriver this test started (the W3C
/// WebDriver protocol is JSON over HTTP; ureq is already in synth's dependencies).
struct Browser {
    driver: Child,
    session: String,
}

impl Browser {
    fn start(chromium: &Path, chromedriver: &Path) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut browser = Browser { driver, session: format!("http://127.0.0.1:{port}/session") };
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600"]}}}});
        let created = browser.post("", caps);
        browser.session = format!("{}/{}", browser.session, created["sessionId"].as_str().unwrap());
        browser
    }

    /// POSTs to the session's `path` and returns the reply's `value`.
    fn post(&self, path: &str, body: Value) -> Value {
        let reply = match ureq::post(&format!("{}{path}", self.session)).send_json(body) {
            Ok(reply) => reply,
            Err(ureq::Error::Status(code, reply)) => {
                panic!("WebDriver {path}: {code}: {}", reply.into_string().unwrap())
            }
            Err(e) => panic!("WebDriver {path}: {e}"),
        };
        reply.into_json::<Value>().unwrap()["value"].take()
    }

    fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url}));
    }

    fn eval(&self, script: &str) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": []}))
    }

    /// The element matching a CSS selector, as WebDriver names it.
    fn find(&self, css: &str) -> String {
        let found = self.post("/element", json!({"using": "css selector", "value": css}));
        found.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_string()
    }

    fn type_into(&self, css: &str, text: &str) {
        self.post(&format!("/element/{}/value", self.find(css)), json!({"text": text}));
    }

    fn click(&self, css: &str) {
        self.post(&format!("/element/{}/click", self.find(css)), json!({}));
    }

    fn screenshot(&self) -> Vec<u8> {
        let png = ureq::get(&format!("{}/screenshot", self.session)).call().unwrap().into_json::<Value>().unwrap();
        base64::engine::general_purpose::STANDARD.decode(png["value"].as_str().unwrap()).unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = ureq::delete(&self.session).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Runs the quickstart recipe on 4 seed rows with the real model, then plants a hostile row in
/// its train split (the manifest's row count follows).
fn real_run_with_a_hostile_row(home: &Home) -> usize {
    let out = home.synth(&[
        "--device",
        "cpu",
        "--quiet",
        "run",
        "recipes/quickstart.json",
        "--filter",
        "all=off",
        "--output-id",
        "small",
        "--limit",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = home.path().join("datasets/small");
    let row = json!({"messages": [{"role": "user", "content": HOSTILE}, {"role": "assistant", "content": HOSTILE}],
        "metadata": {"seedRow": 0, "note": "<img src=y onerror=\"window.__pwned = 'meta'\">"}});
    let mut train = std::fs::OpenOptions::new().append(true).open(dir.join("train.jsonl")).unwrap();
    writeln!(train, "{row}").unwrap();
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let n = manifest["splits"]["train"]["rows"].as_u64().unwrap() + 1;
    manifest["splits"]["train"]["rows"] = n.into();
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    manifest["splits"].as_object().unwrap().values().map(|s| s["rows"].as_u64().unwrap() as usize).sum()
}

#[test]
fn the_report_of_a_real_run_shows_its_figures_filters_rows_and_runs_no_dataset_text() {
    let (chromium, chromedriver) = browser();
    let home = Home::with_quickstart_seed();
    let rows = real_run_with_a_hostile_row(&home);
    let out = home.synth(&["datasets", "report", "small"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(report, home.path().join("datasets/small/report.html"));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "the report loads nothing from the network");

    let browser = Browser::start(&chromium, &chromedriver);
    browser.goto(&format!("file://{}", s(&report)));
    let text = |id: &str| browser.eval(&format!("return document.getElementById('{id}').textContent"));

    let summary = text("summary");
    for needle in ["SmolLM2-135M-Instruct", "recipes/quickstart.json", "sha256", "tokens/s", "published"] {
        assert!(summary.as_str().unwrap().contains(needle), "summary lacks `{needle}`: {summary}");
    }
    let charts = browser.eval("return document.querySelectorAll('svg.chart').length");
    assert!(charts.as_u64().unwrap() >= 4, "request/answer histograms, rows per seed, funnel: {charts}");
    assert!(browser.eval("return document.querySelectorAll('svg.chart rect').length").as_u64().unwrap() > 0);
    let lengths = text("lengths");
    assert!(lengths.as_str().unwrap().contains("tokens (SmolLM2-135M-Instruct tokenizer)"), "{lengths}");

    let shown = browser.eval("return document.querySelectorAll('#rows article').length");
    assert_eq!(shown.as_u64().unwrap() as usize, rows.min(50));
    let count = text("count");
    assert!(count.as_str().unwrap().starts_with(&format!("{rows} of {rows} rows")), "{count}");

    // The hostile row is there as text, and nothing in it ran.
    let as_text = browser.eval(
        "return Array.from(document.querySelectorAll('#rows .turn')).some(t => t.textContent.includes(\"<script>window.__pwned = 'script'</script>\"))",
    );
    assert_eq!(as_text, Value::Bool(true), "the hostile text is shown as text");
    assert_eq!(browser.eval("return typeof window.__pwned"), "undefined");
    assert_eq!(browser.eval("return document.querySelectorAll('img, textarea').length"), 0);
    assert_eq!(browser.eval("return document.scripts.length"), 2, "only the report's own two scripts");

    // Typing in the search box filters the rows.
    browser.type_into("#search", "__pwned");
    std::thread::sleep(Duration::from_millis(600));
    let count = text("count");
    assert!(count.as_str().unwrap().starts_with(&format!("1 of {rows} rows")), "{count}");
    assert_eq!(browser.eval("return document.querySelectorAll('#rows article').length"), 1);
    assert_eq!(browser.eval("return document.querySelectorAll('#rows pre code').length"), 2, "fenced code, as code");
    assert_eq!(browser.eval("return typeof window.__pwned"), "undefined");
    browser.eval("document.getElementById('browser').scrollIntoView()");
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::write(target.join("report-browser-search.png"), browser.screenshot()).unwrap();

    browser.click("#clear");
    let count = text("count");
    assert!(count.as_str().unwrap().starts_with(&format!("{rows} of {rows} rows")), "{count}");
    browser.eval("window.scrollTo(0, 0)");
    std::fs::write(target.join("report-browser-top.png"), browser.screenshot()).unwrap();
}

#[test]
fn the_report_of_a_real_eval_run_shows_pass_rates_failure_modes_and_the_worst_rows() {
    let (chromium, chromedriver) = browser();
    let home = Home::new();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/eval_basics.jsonl");
    let out = home.synth(&["datasets", "import", s(&data), "--id", "dataset_eval_basics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.synth(&["--device", "cpu", "--quiet", "eval", "recipes/evaluation.json", "--limit", "6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary: Value =
        serde_json::from_slice(&std::fs::read(home.path().join("evals/eval_run_1/summary.json")).unwrap()).unwrap();
    let out = home.synth(&["eval", "report", "eval_run_1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(report, home.path().join("evals/eval_run_1/report.html"));

    let browser = Browser::start(&chromium, &chromedriver);
    browser.goto(&format!("file://{}", s(&report)));
    let text = |id: &str| browser.eval(&format!("return document.getElementById('{id}').textContent"));
    let evaluators = text("evaluators");
    let evaluators = evaluators.as_str().unwrap();
    for e in summary["evaluators"].as_array().unwrap() {
        let rate = e["passRate"].as_f64().map_or("-".to_string(), |r| format!("{:.1}%", r * 100.0));
        let shown = format!("{} ({rate})", e["name"].as_str().unwrap());
        assert!(evaluators.contains(&shown), "`{shown}` missing from {evaluators}");
    }
    for mode in summary["failureModes"].as_array().unwrap() {
        assert!(evaluators.contains(mode["label"].as_str().unwrap()), "{mode} missing");
    }
    let failed = summary["failedRows"].as_u64().unwrap();
    let worst = text("worst");
    if failed > 0 {
        assert!(worst.as_str().unwrap().contains(&format!("{failed} rows failed")), "{worst}");
    }
    let rows = summary["rows"].as_u64().unwrap();
    let count = text("count");
    assert!(count.as_str().unwrap().starts_with(&format!("{rows} of {rows} rows")), "{count}");
    let failed_group = browser.eval(
        "const s = document.getElementById('filter-group'); s.value = '1'; s.dispatchEvent(new Event('change')); \
         return document.querySelectorAll('#rows article').length",
    );
    assert_eq!(failed_group.as_u64().unwrap(), failed.min(50), "the `failed` group holds the failed rows");
    std::fs::write(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-browser-eval.png"), browser.screenshot())
        .unwrap();
}
