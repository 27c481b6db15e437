//! `synth datasets export` and `import` round trips: the Hugging Face layout read back by the
//! real `datasets` library (PyPI, in a venv made by `scripts/setup-python.sh`), Parquet and
//! JSONL exports imported again to the same bytes, CSV import, and `synth datasets delete`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fails, s, stderr, Home};
use serde_json::{json, Value};

/// Rows with what tends to break a round trip: multi-turn and system messages, newlines,
/// quotes, non-Latin text and emoji, markup, nested metadata with floats and nulls, no metadata.
fn rows(split: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut row = json!({"messages": [
                {"role": "system", "content": format!("You are terse. ({split} {i})")},
                {"role": "user", "content": format!("Translate «{i}» to 日本語 🙂\nand say \"why\" <b>now</b>")},
                {"role": "assistant", "content": format!("```\ncode {i}\n```\nπ ≈ 3.14159, tab\there")},
            ]});
            if i % 3 != 2 {
                row["metadata"] = json!({"seedRow": i, "samplingSeed": 18446744073709551615u64 - i as u64,
                    "score": 0.1 + i as f64, "tags": ["a", null, {"z": 1, "a": [true, false]}], "model": "m"});
            }
            row
        })
        .collect()
}

fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

/// A stored dataset `mixed` with train 5, validation 2 and test 1 rows.
fn mixed_dataset(home: &Home) -> Vec<(&'static str, Vec<Value>)> {
    let dir = home.path().join("datasets/mixed");
    std::fs::create_dir_all(&dir).unwrap();
    let splits = vec![("train", rows("train", 5)), ("validation", rows("validation", 2)), ("test", rows("test", 1))];
    let mut manifest = json!({"id": "mixed", "kind": "imported", "createdAt": "2025-01-02T03:04:05Z", "splits": {}});
    for (name, rows) in &splits {
        std::fs::write(dir.join(format!("{name}.jsonl")), jsonl(rows)).unwrap();
        manifest["splits"][name] = json!({"file": format!("{name}.jsonl"), "rows": rows.len()});
    }
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let out = home.synth(&["datasets", "show", "mixed", "--split", "validation"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), jsonl(&splits[1].1), "synth stores rows with these bytes");
    splits
}

fn python_with_datasets() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup-python.sh");
    let out = Command::new(script).output().unwrap();
    assert!(out.status.success(), "scripts/setup-python.sh could not install `datasets`:\n{}", stderr(&out));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

const READ_BACK: &str = r#"
import json, sys, datasets
d = datasets.load_dataset(sys.argv[1])
print(json.dumps({name: [dict(r) for r in split] for name, split in d.items()}))
"#;

#[test]
fn an_hf_export_loads_in_the_datasets_library_with_the_same_rows_and_splits() {
    let python = python_with_datasets();
    let home = Home::new();
    let splits = mixed_dataset(&home);
    let out_dir = home.path().join("export/hf");
    let out = home.synth(&["datasets", "export", "mixed", "--format", "hf", "--output", s(&out_dir)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap().trim(), s(&out_dir));
    assert!(out_dir.join("data/train-00000-of-00001.parquet").is_file());
    let card = std::fs::read_to_string(out_dir.join("README.md")).unwrap();
    assert!(card.starts_with("---\n") && card.contains("num_examples: 5"), "{card}");

    let read = Command::new(&python)
        .args(["-c", READ_BACK, s(&out_dir)])
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HOME", home.path().join("hf-home"))
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", stderr(&read));
    let back: Value = serde_json::from_slice(&read.stdout).unwrap();
    let names: Vec<&String> = back.as_object().unwrap().keys().collect();
    assert_eq!(names, ["train", "validation", "test"]);
    for (name, rows) in &splits {
        let loaded = back[name].as_array().unwrap();
        assert_eq!(loaded.len(), rows.len(), "{name}");
        for (got, want) in loaded.iter().zip(rows) {
            assert_eq!(got["messages"], want["messages"], "{name}");
            let metadata = got["metadata"].as_str().map(|m| serde_json::from_str::<Value>(m).unwrap());
            assert_eq!(metadata.unwrap_or(Value::Null), want["metadata"], "{name}");
        }
    }

    let again = home.synth(&["datasets", "export", "mixed", "--format", "hf", "--output", s(&out_dir)]);
    fails(&again, 2, &["already exists", "--overwrite"]);
}

#[test]
fn parquet_and_jsonl_exports_import_back_to_the_same_bytes() {
    let home = Home::new();
    let splits = mixed_dataset(&home);
    for format in ["parquet", "jsonl"] {
        let out_dir = home.path().join(format!("export/{format}"));
        let out = home.synth(&["datasets", "export", "mixed", "--format", format, "--output", s(&out_dir)]);
        assert!(out.status.success(), "{}", stderr(&out));
        for (name, _) in &splits {
            let id = format!("back_{format}_{name}");
            let file = out_dir.join(format!("{name}.{format}"));
            let out = home.synth(&["datasets", "import", s(&file), "--id", &id]);
            assert!(out.status.success(), "{}", stderr(&out));
            let original = std::fs::read(home.path().join(format!("datasets/mixed/{name}.jsonl"))).unwrap();
            let imported = std::fs::read(home.path().join(format!("datasets/{id}/train.jsonl"))).unwrap();
            assert_eq!(String::from_utf8(imported).unwrap(), String::from_utf8(original).unwrap(), "{format} {name}");
        }
    }
}

#[test]
fn csv_imports_prompt_response_rows_and_names_a_bad_cell() {
    let home = Home::new();
    let csv = home.path().join("rows.csv");
    std::fs::write(&csv, "prompt,response,source\n\"Say \"\"hi\"\"\",\"hi,\nthere\",web\nWhat is 2+2?,4,book\n")
        .unwrap();
    let out = home.synth(&["datasets", "import", s(&csv), "--id", "from_csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.synth(&["datasets", "show", "from_csv"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        json!({"messages": [{"role": "user", "content": "Say \"hi\""}, {"role": "assistant", "content": "hi,\nthere"}],
            "metadata": {"source": "web"}})
    );
    assert_eq!(text.lines().count(), 2);

    let bad = home.path().join("bad.csv");
    std::fs::write(&bad, "prompt,answer\nhello,world\n").unwrap();
    let out = home.synth(&["datasets", "import", s(&bad), "--id", "bad"]);
    fails(&out, 2, &["bad.csv: row 1", "found `prompt` without `response`"]);
    assert!(!home.path().join("datasets/bad").exists());
}

#[test]
fn delete_removes_a_dataset_and_refuses_one_a_run_is_writing() {
    let home = Home::new();
    mixed_dataset(&home);
    let run_dir = home.path().join("datasets/.run-mixed");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::write(run_dir.join("journal.jsonl"), "").unwrap();
    let lock = std::fs::File::create(run_dir.join("lock")).unwrap();
    lock.try_lock().unwrap();
    let out = home.synth(&["datasets", "delete", "mixed"]);
    fails(&out, 2, &["`mixed` is being written by a running `synth run`"]);
    assert!(home.path().join("datasets/mixed/train.jsonl").exists());
    drop(lock);

    let out = home.synth(&["datasets", "delete", "mixed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!home.path().join("datasets/mixed").exists());
    let leftovers: Vec<_> = std::fs::read_dir(home.path().join("datasets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".old-") || n.starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    fails(&home.synth(&["datasets", "delete", "mixed"]), 3, &["dataset `mixed` not found"]);
}

#[test]
fn stats_print_the_figures_as_a_table_and_as_json() {
    let home = Home::new();
    mixed_dataset(&home);
    let out = home.synth(&["datasets", "stats", "mixed", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["rows"], 8);
    assert_eq!(stats["lengthUnit"], "words");
    let splits: Vec<(&str, u64)> = stats["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["rows"].as_u64().unwrap()))
        .collect();
    assert_eq!(splits, [("train", 5), ("validation", 2), ("test", 1)]);
    // Requests are "Translate «i» to 日本語 🙂 / and say "why" <b>now</b>": 9 words each.
    assert_eq!(stats["splits"][0]["request"]["median"], 9);
    assert_eq!(stats["rowsPerSeed"]["seeds"], 4, "seed rows 0, 1, 3 and 4 are named in metadata");
    let out = home.synth(&["datasets", "stats", "mixed"]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("dataset `mixed` (imported, made 2025-01-02T03:04:05Z): 8 rows"), "{table}");
    assert!(table.contains("validation   request       2"), "{table}");
    fails(&home.synth(&["datasets", "stats", "nope"]), 3, &["dataset `nope` not found"]);
}

#[test]
fn a_parquet_file_from_pyarrow_with_prompt_and_response_columns_imports() {
    let python = python_with_datasets();
    let home = Home::new();
    let file = home.path().join("pr.parquet");
    let write = "import sys, pyarrow as pa, pyarrow.parquet as pq\n\
        pq.write_table(pa.table({'prompt': ['2+2?', 'Capital of France?'], 'response': ['4', 'Paris'], 'id': [7, 8]}), sys.argv[1])";
    let out = Command::new(&python).args(["-c", write, s(&file)]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.synth(&["datasets", "import", s(&file), "--id", "pr"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = home.synth(&["datasets", "show", "pr"]);
    let rows: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        rows[1],
        json!({"messages": [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris"}],
            "metadata": {"id": 8}})
    );

    let bad = home.path().join("bad.parquet");
    std::fs::write(&bad, "not parquet").unwrap();
    fails(&home.synth(&["datasets", "import", s(&bad), "--id", "bad"]), 2, &["bad.parquet", "is not a Parquet file"]);
}
