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

use common::{s, stderr, Home};
use fantoccini::{Client, ClientBuilder};
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

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// chromedriver on a free port, once it answers.
fn start_driver(chromedriver: &Path) -> (Driver, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(chromedriver)
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
    (Driver(child), format!("http://127.0.0.1:{port}"))
}

async fn connect(url: &str, chromium: &Path) -> Client {
    let caps = json!({"goog:chromeOptions": {"binary": chromium.to_str().unwrap(),
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1800"]}});
    let Value::Object(caps) = caps else { unreachable!() };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector).capabilities(caps).connect(url).await.expect("a WebDriver session")
}

async fn eval(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
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

#[tokio::test(flavor = "current_thread")]
async fn the_report_of_a_real_run_shows_its_figures_filters_rows_and_runs_no_dataset_text() {
    let (chromium, chromedriver) = browser();
    let home = Home::with_quickstart_seed();
    let rows = real_run_with_a_hostile_row(&home);
    let out = home.synth(&["datasets", "report", "small"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(report, home.path().join("datasets/small/report.html"));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"), "the report loads nothing from the network");

    let (_driver, url) = start_driver(&chromedriver);
    let client = connect(&url, &chromium).await;
    client.goto(&format!("file://{}", s(&report))).await.unwrap();

    let summary = eval(&client, "return document.getElementById('summary').textContent").await;
    let summary = summary.as_str().unwrap();
    for needle in ["SmolLM2-135M-Instruct", "recipes/quickstart.json", "sha256", "tokens/s", "published"] {
        assert!(summary.contains(needle), "summary lacks `{needle}`: {summary}");
    }
    let charts = eval(&client, "return document.querySelectorAll('svg.chart').length").await;
    assert!(charts.as_u64().unwrap() >= 4, "request/answer histograms, rows per seed, funnel: {charts}");
    let bars = eval(&client, "return document.querySelectorAll('svg.chart rect').length").await;
    assert!(bars.as_u64().unwrap() > 0);
    let unit = eval(&client, "return document.getElementById('lengths').textContent").await;
    assert!(unit.as_str().unwrap().contains("tokens (SmolLM2-135M-Instruct tokenizer)"), "{unit}");

    let shown = eval(&client, "return document.querySelectorAll('#rows article').length").await;
    assert_eq!(shown.as_u64().unwrap() as usize, rows.min(50));
    let count = eval(&client, "return document.getElementById('count').textContent").await;
    assert!(count.as_str().unwrap().starts_with(&format!("{rows} of {rows} rows")), "{count}");

    // The hostile row is there as text, and nothing in it ran.
    let as_text = eval(
        &client,
        "return Array.from(document.querySelectorAll('#rows .turn')).some(t => t.textContent.includes(\"<script>window.__pwned = 'script'</script>\"))",
    )
    .await;
    assert_eq!(as_text, Value::Bool(true), "the hostile text is shown as text");
    assert_eq!(eval(&client, "return typeof window.__pwned").await, "undefined");
    assert_eq!(eval(&client, "return document.querySelectorAll('img, textarea').length").await, 0);
    assert_eq!(eval(&client, "return document.scripts.length").await, 2, "only the report's own two scripts");

    // Typing in the search box filters the rows.
    let search = client.find(fantoccini::Locator::Id("search")).await.unwrap();
    search.send_keys("__pwned").await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let count = eval(&client, "return document.getElementById('count').textContent").await;
    assert!(count.as_str().unwrap().starts_with(&format!("1 of {rows} rows")), "{count}");
    assert_eq!(eval(&client, "return document.querySelectorAll('#rows article').length").await, 1);
    assert_eq!(
        eval(&client, "return document.querySelectorAll('#rows pre code').length").await,
        2,
        "the fenced code, as code"
    );
    assert_eq!(eval(&client, "return typeof window.__pwned").await, "undefined");

    let screenshot = client.screenshot().await.unwrap();
    let saved = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/report-browser.png");
    std::fs::write(&saved, &screenshot).unwrap();
    client.find(fantoccini::Locator::Id("clear")).await.unwrap().click().await.unwrap();
    let count = eval(&client, "return document.getElementById('count').textContent").await;
    assert!(count.as_str().unwrap().starts_with(&format!("{rows} of {rows} rows")), "{count}");
    let full = client.screenshot().await.unwrap();
    std::fs::write(saved.with_file_name("report-browser-top.png"), &full).unwrap();
    client.close().await.unwrap();
}
