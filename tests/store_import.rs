//! The dataset store end to end in a temporary SYNTH_HOME: import, list, read, publish.

use std::fs;
use std::path::{Path, PathBuf};

use synth::error::{exit_code, render};
use synth::store::{Manifest, Message, Row, Store, KIND_SYNTHESIZED};

struct Home {
    _dir: tempfile::TempDir,
    root: PathBuf,
    store: Store,
}

fn home() -> Home {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synth-home");
    Home { store: Store::at(&root), root, _dir: dir }
}

impl Home {
    /// Writes `name` next to the store (not inside it) and returns its path.
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self._dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    /// Everything under `datasets/`, hidden entries included.
    fn entries(&self) -> Vec<String> {
        let Ok(rd) = fs::read_dir(self.store.datasets_dir()) else { return Vec::new() };
        let mut names: Vec<String> = rd.map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }
}

fn chat(user: &str, assistant: &str) -> Row {
    Row { messages: vec![Message::new("user", user), Message::new("assistant", assistant)], metadata: None }
}

fn err_text(err: &anyhow::Error) -> String {
    render(err)
}

#[test]
fn imports_chat_rows_with_metadata() {
    let h = home();
    let path = h.file(
        "chat.jsonl",
        concat!(
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}],"metadata":{"topic":"greeting"}}"#,
            "\n\n",
            r#"{"messages":[{"role":"user","content":"2+2?"}]}"#,
            "\n"
        ),
    );
    let report = h.store.import_jsonl(&path, "chat_seed", false).unwrap();
    assert_eq!(report.rows, 2);
    assert_eq!(report.formats.chat, 2);
    assert!(!report.replaced);
    assert_eq!(report.path, h.root.join("datasets/chat_seed"));

    let rows = h.store.load_rows("chat_seed").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].messages[0], Message::new("system", "be brief"));
    assert_eq!(rows[0].metadata.as_ref().unwrap()["topic"], "greeting");
    assert_eq!(rows[1].messages, vec![Message::new("user", "2+2?")]);
    assert_eq!(rows[1].metadata, None);
}

#[test]
fn imports_prompt_response_and_alpaca() {
    let h = home();
    let pr = h.file("pr.jsonl", "{\"prompt\":\"p1\",\"response\":\"r1\"}\n{\"prompt\":\"p2\",\"response\":\"r2\"}");
    h.store.import_jsonl(&pr, "pr", false).unwrap();
    assert_eq!(h.store.load_rows("pr").unwrap(), vec![chat("p1", "r1"), chat("p2", "r2")]);

    let alpaca = h.file(
        "alpaca.jsonl",
        concat!(
            r#"{"instruction":"Translate","input":"bonjour","output":"hello"}"#,
            "\n",
            r#"{"instruction":"Say hi","input":"","output":"hi"}"#,
            "\n",
            r#"{"instruction":"Say bye","output":"bye"}"#,
            "\n"
        ),
    );
    let report = h.store.import_jsonl(&alpaca, "alpaca", false).unwrap();
    assert_eq!(report.formats.alpaca, 3);
    assert_eq!(
        h.store.load_rows("alpaca").unwrap(),
        vec![chat("Translate\n\nbonjour", "hello"), chat("Say hi", "hi"), chat("Say bye", "bye")]
    );
}

#[test]
fn manifest_records_source_and_layout() {
    let h = home();
    let body = "{\"prompt\":\"p\",\"response\":\"r\"}\n";
    let path = h.file("my_seed.jsonl", body);
    let report = h.store.import_jsonl(&path, "seed", false).unwrap();
    // sha256 of the bytes above, computed independently.
    let expected = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(body.as_bytes());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert_eq!(report.sha256, expected);

    let dir = h.root.join("datasets/seed");
    let mut files: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["manifest.json", "train.jsonl"]);
    assert_eq!(
        fs::read_to_string(dir.join("train.jsonl")).unwrap(),
        "{\"messages\":[{\"role\":\"user\",\"content\":\"p\"},{\"role\":\"assistant\",\"content\":\"r\"}]}\n"
    );

    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["id"], "seed");
    assert_eq!(manifest["kind"], "imported");
    assert_eq!(manifest["splits"], serde_json::json!({"train": {"file": "train.jsonl", "rows": 1}}));
    assert_eq!(manifest["source"]["file"], "my_seed.jsonl");
    assert_eq!(manifest["source"]["sha256"], expected.as_str());
    let created = manifest["createdAt"].as_str().unwrap();
    assert_eq!(created.len(), 20, "{created}");
    assert!(created.ends_with('Z') && created.as_bytes()[10] == b'T', "{created}");
}

#[test]
fn bad_lines_are_reported_by_number_and_nothing_is_written() {
    let h = home();
    let path = h.file(
        "my_seed.jsonl",
        concat!(
            "{\"prompt\":\"ok\",\"response\":\"ok\"}\n",
            "not json\n",
            "[1,2]\n",
            "\n",
            "{\"foo\":1,\"bar\":2}\n",
            "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}\n",
            "{\"messages\":[{\"role\":\"user\",\"content\":42}]}\n",
            "{\"messages\":[]}\n",
        ),
    );
    let err = h.store.import_jsonl(&path, "seed", false).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    let text = err_text(&err);
    let shown = path.display();
    assert!(text.contains("has 6 invalid lines, nothing was imported"), "{text}");
    for needle in [
        format!("{shown}:2: not valid JSON"),
        format!("{shown}:3: expected a JSON object, found an array"),
        format!(
            r#"{shown}:5: expected {{"messages": [...]}}, {{"prompt", "response"}} or {{"instruction", "input", "output"}}, found keys `foo`, `bar`"#
        ),
        format!("{shown}:6: `messages[0].role` must be `system`, `user` or `assistant`, found `robot`"),
        format!("{shown}:7: `messages[0].content` must be a string, found a number"),
        format!("{shown}:8: `messages` must hold at least one message"),
    ] {
        assert!(text.contains(&needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains(&format!("{shown}:1:")), "{text}");
    assert!(text.contains("\n\nhint: "), "{text}");
    assert!(!h.store.exists("seed").unwrap());
    assert_eq!(h.entries(), Vec::<String>::new());
}

#[test]
fn lists_at_most_ten_bad_lines() {
    let h = home();
    let body: String = (0..25).map(|_| "nope\n").collect();
    let err = h.store.import_jsonl(&h.file("bad.jsonl", body), "seed", false).unwrap_err();
    let text = err_text(&err);
    assert!(text.contains("has 25 invalid lines"), "{text}");
    assert!(text.contains("bad.jsonl:10: ") && !text.contains("bad.jsonl:11: "), "{text}");
    assert!(text.contains("... and 15 more"), "{text}");
}

#[test]
fn invalid_utf8_line_is_reported() {
    let h = home();
    let mut bytes = b"{\"prompt\":\"a\",\"response\":\"b\"}\n".to_vec();
    bytes.extend_from_slice(b"{\"prompt\":\"\xff\xfe\",\"response\":\"b\"}\n");
    let path = h.file("latin.jsonl", bytes);
    let err = h.store.import_jsonl(&path, "seed", false).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    let text = err_text(&err);
    assert!(text.contains(&format!("{}:2: not valid UTF-8", path.display())), "{text}");
    assert!(!h.store.exists("seed").unwrap());
}

#[test]
fn empty_file_is_an_error() {
    let h = home();
    for (name, body) in [("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n")] {
        let err = h.store.import_jsonl(&h.file(name, body), "seed", false).unwrap_err();
        assert_eq!(exit_code(&err), 2);
        assert!(err_text(&err).contains("has no rows, nothing was imported"), "{}", err_text(&err));
    }
    assert_eq!(h.entries(), Vec::<String>::new());
}

#[test]
fn missing_source_file_is_not_found() {
    let h = home();
    let err = h.store.import_jsonl(Path::new("/definitely/not/here.jsonl"), "seed", false).unwrap_err();
    assert_eq!(exit_code(&err), 3);
    assert!(err_text(&err).contains("`/definitely/not/here.jsonl` not found"));
}

#[test]
fn invalid_ids_are_rejected_before_touching_disk() {
    let h = home();
    let path = h.file("ok.jsonl", "{\"prompt\":\"p\",\"response\":\"r\"}\n");
    for id in ["../x", "a/b", "", ".hidden", "a b"] {
        let err = h.store.import_jsonl(&path, id, false).unwrap_err();
        assert_eq!(exit_code(&err), 2, "{id:?}");
        assert!(err_text(&err).contains("invalid dataset id"), "{}", err_text(&err));
        assert!(h.store.begin_dataset(id).is_err(), "{id:?}");
        assert!(h.store.load_rows(id).is_err(), "{id:?}");
        assert!(h.store.next_free_id(id).is_err(), "{id:?}");
    }
    assert!(!h.root.exists(), "the store root was created");
    assert!(!h._dir.path().join("x").exists());
}

#[test]
fn import_refuses_to_overwrite_without_flag() {
    let h = home();
    let first = h.file("a.jsonl", "{\"prompt\":\"one\",\"response\":\"1\"}\n");
    let second =
        h.file("b.jsonl", "{\"prompt\":\"two\",\"response\":\"2\"}\n{\"prompt\":\"three\",\"response\":\"3\"}\n");
    h.store.import_jsonl(&first, "seed", false).unwrap();

    let err = h.store.import_jsonl(&second, "seed", false).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    let text = err_text(&err);
    assert!(text.contains("dataset `seed` already exists") && text.contains("--overwrite"), "{text}");
    assert_eq!(h.store.load_rows("seed").unwrap(), vec![chat("one", "1")]);

    let report = h.store.import_jsonl(&second, "seed", true).unwrap();
    assert!(report.replaced);
    assert_eq!(h.store.load_rows("seed").unwrap(), vec![chat("two", "2"), chat("three", "3")]);
    assert_eq!(h.entries(), ["seed"]);
}

fn write_three_splits(store: &Store, id: &str, n: [usize; 3]) -> synth::store::PendingDataset {
    let mut pending = store.begin_dataset(id).unwrap();
    let mut manifest = Manifest::new(id, KIND_SYNTHESIZED);
    for (split, count) in ["train", "validation", "test"].into_iter().zip(n) {
        let rows: Vec<Row> = (0..count).map(|i| chat(&format!("{split} {i}"), "a")).collect();
        let bytes = pending.write_split(split, &rows).unwrap();
        assert_eq!(bytes as u64, fs::metadata(pending.path().join(format!("{split}.jsonl"))).unwrap().len());
        manifest.add_split(split, count);
    }
    manifest.extra.insert("recipe".into(), serde_json::json!({"seed": 42}));
    pending.write_manifest(&manifest).unwrap();
    pending
}

#[test]
fn pending_dataset_is_invisible_until_published() {
    let h = home();
    let pending = write_three_splits(&h.store, "synth_1", [3, 1, 1]);
    let temp = pending.path().to_path_buf();
    let temp_name = temp.file_name().unwrap().to_str().unwrap().to_string();
    assert!(temp_name.starts_with(".tmp-synth_1-"), "{temp_name}");
    assert!(temp.join("manifest.json").is_file());

    assert_eq!(h.store.list().unwrap(), vec![]);
    assert!(!h.store.exists("synth_1").unwrap());
    assert_eq!(exit_code(&h.store.load_rows("synth_1").unwrap_err()), 3);

    let path = pending.publish(false).unwrap();
    assert_eq!(path, h.root.join("datasets/synth_1"));
    assert!(!temp.exists());
    assert_eq!(h.entries(), ["synth_1"]);

    let list = h.store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, "synth_1");
    assert_eq!(list[0].kind, "synthesized");
    let splits: Vec<(&str, usize)> = list[0].splits.iter().map(|s| (s.name.as_str(), s.rows)).collect();
    assert_eq!(splits, [("train", 3), ("validation", 1), ("test", 1)]);
    assert_eq!(list[0].rows(), 5);
    assert_eq!(h.store.manifest("synth_1").unwrap().extra["recipe"]["seed"], 42);
}

#[test]
fn publish_refuses_to_overwrite_without_flag_and_cleans_up() {
    let h = home();
    write_three_splits(&h.store, "out", [2, 0, 0]).publish(false).unwrap();
    let pending = write_three_splits(&h.store, "out", [4, 1, 1]);
    let temp = pending.path().to_path_buf();
    let err = pending.publish(false).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    let text = err_text(&err);
    assert!(text.contains("dataset `out` already exists"), "{text}");
    assert!(text.contains("hint: pass `--overwrite` to replace it, or choose another id"), "{text}");
    assert!(!temp.exists());
    assert_eq!(h.store.load_rows("out").unwrap().len(), 2);

    write_three_splits(&h.store, "out", [4, 1, 1]).publish(true).unwrap();
    assert_eq!(h.store.load_rows("out").unwrap().len(), 6);
    assert_eq!(h.entries(), ["out"]);
}

#[test]
fn dropped_pending_leaves_no_temp_dir() {
    let h = home();
    let pending = write_three_splits(&h.store, "gone", [1, 1, 1]);
    let temp = pending.path().to_path_buf();
    assert!(temp.is_dir());
    drop(pending);
    assert!(!temp.exists());
    assert_eq!(h.entries(), Vec::<String>::new());
}

#[test]
fn manifest_must_match_written_splits() {
    let h = home();
    let mut pending = h.store.begin_dataset("m").unwrap();
    pending.write_split("train", &[chat("a", "b")]).unwrap();
    let mut manifest = Manifest::new("m", KIND_SYNTHESIZED);
    manifest.add_split("train", 2);
    assert!(pending.write_manifest(&manifest).is_err());
    assert!(pending.write_split("holdout", &[]).is_err());
    let unfinished = h.store.begin_dataset("m2").unwrap();
    assert!(unfinished.publish(false).is_err());
    assert!(!h.store.exists("m2").unwrap());
}

#[test]
fn read_split_round_trip_with_limit_and_unknown_split() {
    let h = home();
    write_three_splits(&h.store, "ds", [5, 2, 1]).publish(false).unwrap();
    let train = h.store.read_split("ds", "train", None).unwrap();
    assert_eq!(train.len(), 5);
    assert_eq!(train[0].messages[0].content, "train 0");
    assert_eq!(h.store.read_split("ds", "train", Some(2)).unwrap(), train[..2].to_vec());
    assert_eq!(h.store.read_split("ds", "train", Some(0)).unwrap(), vec![]);
    assert_eq!(h.store.read_split("ds", "test", Some(10)).unwrap().len(), 1);

    let all = h.store.load_rows("ds").unwrap();
    let firsts: Vec<&str> = all.iter().map(|r| r.messages[0].content.as_str()).collect();
    assert_eq!(
        firsts,
        ["train 0", "train 1", "train 2", "train 3", "train 4", "validation 0", "validation 1", "test 0"]
    );

    let err = h.store.read_split("ds", "dev", None).unwrap_err();
    assert_eq!(exit_code(&err), 2);
    assert_eq!(
        err_text(&err),
        "error: dataset `ds` has no split `dev`\n\nhint: its splits are `train`, `validation`, `test`"
    );
}

#[test]
fn missing_dataset_is_not_found_with_hint() {
    let h = home();
    for err in [h.store.load_rows("nope").unwrap_err(), h.store.read_split("nope", "train", None).unwrap_err()] {
        assert_eq!(exit_code(&err), 3);
        let text = err_text(&err);
        assert!(text.starts_with("error: dataset `nope` not found in `"), "{text}");
        assert!(
            text.ends_with(
                "hint: run `synth datasets list` to see stored datasets, or `synth datasets import FILE --id ID`"
            ),
            "{text}"
        );
    }
}

#[test]
fn list_is_sorted_and_ignores_junk() {
    let h = home();
    let path = h.file("s.jsonl", "{\"prompt\":\"p\",\"response\":\"r\"}\n");
    for id in ["zeta", "alpha", "mid"] {
        h.store.import_jsonl(&path, id, false).unwrap();
    }
    let datasets = h.store.datasets_dir();
    fs::create_dir(datasets.join(".tmp-old-123-0")).unwrap();
    fs::write(datasets.join("stray.txt"), "x").unwrap();
    fs::write(datasets.join(".DS_Store"), "x").unwrap();
    fs::create_dir(datasets.join("broken")).unwrap();

    let list = h.store.list().unwrap();
    let ids: Vec<&str> = list.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["alpha", "broken", "mid", "zeta"]);
    assert!(list[1].problem.as_deref().unwrap().contains("manifest.json"));
    assert!(list
        .iter()
        .filter(|d| d.id != "broken")
        .all(|d| d.problem.is_none() && d.kind == "imported" && d.rows() == 1));

    let err = h.store.load_rows("broken").unwrap_err();
    assert_eq!(exit_code(&err), 1);
    assert!(err_text(&err).contains("--overwrite"), "{}", err_text(&err));
}

#[test]
fn list_of_a_fresh_home_is_empty() {
    let h = home();
    assert_eq!(h.store.list().unwrap(), vec![]);
    assert!(!h.root.exists());
}

#[test]
fn next_free_id_skips_taken_ids() {
    let h = home();
    assert_eq!(h.store.next_free_id("run").unwrap(), "run_1");
    write_three_splits(&h.store, "run_1", [1, 0, 0]).publish(false).unwrap();
    write_three_splits(&h.store, "run_2", [1, 0, 0]).publish(false).unwrap();
    assert_eq!(h.store.next_free_id("run").unwrap(), "run_3");
}

#[test]
fn home_that_is_a_file_names_the_path() {
    let h = home();
    fs::write(&h.root, "not a directory").unwrap();
    let err = h.store.begin_dataset("x").unwrap_err();
    assert_eq!(exit_code(&err), 1);
    let text = err_text(&err);
    assert!(text.starts_with(&format!("error: cannot create `{}`: ", h.store.datasets_dir().display())), "{text}");
    assert!(text.ends_with("\n\nhint: set `SYNTH_HOME` to a writable directory"), "{text}");
}

#[cfg(unix)]
#[test]
fn unwritable_home_names_the_path() {
    use std::os::unix::fs::PermissionsExt;
    let h = home();
    fs::create_dir(&h.root).unwrap();
    fs::set_permissions(&h.root, fs::Permissions::from_mode(0o555)).unwrap();
    if fs::create_dir(h.root.join("probe")).is_ok() {
        return; // running as root: permissions are not enforced
    }
    let err = h.store.begin_dataset("x").unwrap_err();
    let text = err_text(&err);
    assert!(text.contains(&format!("cannot create `{}`", h.store.datasets_dir().display())), "{text}");
    assert!(text.contains("hint: set `SYNTH_HOME` to a writable directory"), "{text}");
    fs::set_permissions(&h.root, fs::Permissions::from_mode(0o755)).unwrap();
}
