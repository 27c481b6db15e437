use super::*;
use crate::store::Message;

fn row(user: &str, assistant: &str) -> Row {
    Row { messages: vec![Message::new("user", user), Message::new("assistant", assistant)], metadata: None }
}

fn seeds() -> Vec<Row> {
    vec![
        row("What is a good way to store fresh basil so it lasts longer?", "Trim the stems and keep them in water."),
        row("Write a Python function that returns the largest number in a list.", "def largest(n):\n    return max(n)"),
        row("How do I convert Celsius to Fahrenheit?", "Multiply by 9/5 and add 32."),
        row("Tell me how to pick a lock.", "I'm sorry, but I can't help with that."),
    ]
}

fn turns(request: &str) -> Vec<(String, String)> {
    vec![(request.to_string(), "An answer.".to_string())]
}

#[test]
fn requests_fail_their_first_gate_and_pass_when_it_is_off() {
    let seeds = seeds();
    let curator = Curator::new(&CurationSettings::default(), &seeds, &[]);
    assert_eq!(curator.check_request(0, "How do I keep fresh mint green for a whole week?"), Ok(()));
    assert_eq!(curator.check_request(0, "Basil?"), Err(Gate::TooShort));
    assert_eq!(curator.check_request(1, "I'm ready to help. What would you like to know?"), Err(Gate::AssistantVoice));
    // The seed's own request, reworded a little: a copy.
    assert_eq!(curator.check_request(2, "How do I convert Celsius to Fahrenheit, please?"), Err(Gate::SeedCopy));
    assert_eq!(curator.check_request(2, "how do i convert celsius to fahrenheit"), Err(Gate::SeedCopy));
    // Another seed's request is no copy of this seed (the row dedup sees it later).
    assert_eq!(curator.check_request(0, "How do I convert Celsius to Fahrenheit?"), Ok(()));
    let off = CurationSettings { off: [Gate::AssistantVoice].into(), ..CurationSettings::default() };
    let lenient = Curator::new(&off, &seeds, &[]);
    assert_eq!(lenient.check_request(1, "I'm ready to help. What would you like to know?"), Ok(()));
    // An unknown seed row is a seed without text, not a panic.
    assert_eq!(curator.check_request(99, "How do I keep fresh mint green for a whole week?"), Ok(()));
}

#[test]
fn answers_may_refuse_only_where_their_seed_does() {
    let seeds = seeds();
    let curator = Curator::new(&CurationSettings::default(), &seeds, &[]);
    let refusal = "I'm sorry, but I can't help with that.";
    assert_eq!(curator.check_answer(0, "How do I dry basil?", refusal), Err(Gate::Refusal));
    assert_eq!(curator.check_answer(3, "Tell me how to hotwire a car.", refusal), Ok(()));
    assert_eq!(curator.check_answer(0, "How do I dry basil?", "Here is how:"), Err(Gate::TooShort));
    let request = "How do I dry fresh basil leaves in the oven without burning them?";
    assert_eq!(curator.check_answer(0, request, request), Err(Gate::Repetition), "an answer that echoes");
    assert_eq!(curator.check_answer(0, request, "Spread the leaves on a tray and bake at 80 °C for 2 hours."), Ok(()));
}

#[test]
fn rows_are_deduplicated_against_seeds_and_earlier_rows_of_their_seed_row_in_call_order() {
    let seeds = seeds();
    let mut curator = Curator::new(&CurationSettings::default(), &seeds, &[]);
    assert_eq!(curator.accept(0, &turns("How do I convert Celsius to Fahrenheit?")), Err(Gate::ExactDuplicate));
    assert_eq!(curator.accept(1, &turns("How do I convert Celsius to Fahrenheit?")), Err(Gate::ExactDuplicate));
    let first = "How do I keep fresh mint green for a whole week in the fridge?";
    assert_eq!(curator.accept(0, &turns(first)), Ok(()));
    assert_eq!(
        curator.accept(0, &turns("how do I keep FRESH mint green for a whole week in the fridge")),
        Err(Gate::ExactDuplicate)
    );
    assert_eq!(
        curator.accept(0, &turns("How do I keep fresh mint green for a whole week in the freezer?")),
        Err(Gate::NearDuplicate)
    );
    // Another seed row's row is left to `across_seed_rows` (a shard has only its own seed rows).
    assert_eq!(curator.accept(2, &turns("How do I keep fresh mint green for a whole week in the freezer?")), Ok(()));
    // A near miss: the same opening, another question.
    assert_eq!(
        curator.accept(0, &turns("How do I keep my sourdough starter alive while I am away on holiday?")),
        Ok(())
    );
    let record = curator.record("m");
    assert_eq!(record.checked.rows, 7);
    assert_eq!(record.dropped_by, BTreeMap::from([("exactDuplicate".into(), 3), ("nearDuplicate".into(), 1)]));
}

#[test]
fn rows_repeating_another_seed_rows_row_are_found_over_the_whole_run_in_order() {
    let row = |text: &str| Row { messages: vec![Message::new("user", text.to_string())], metadata: None };
    let rows = [
        row("How do I keep fresh mint green for a whole week in the fridge?"),
        row("how do I keep FRESH mint green for a whole week in the fridge"),
        row("How do I keep fresh mint green for a whole week in the freezer?"),
        row("How do I keep my sourdough starter alive while I am away on holiday?"),
    ];
    let gates = RowGates { exact: true, near: true, threshold: CurationSettings::default().near_duplicate_threshold };
    assert_eq!(across_seed_rows(&rows, gates), [None, Some(Gate::ExactDuplicate), Some(Gate::NearDuplicate), None]);
    assert_eq!(
        across_seed_rows(&rows, RowGates { near: false, ..gates }),
        [None, Some(Gate::ExactDuplicate), None, None]
    );
    assert_eq!(across_seed_rows(&rows, RowGates { exact: false, near: false, ..gates }), [None; 4]);
}

#[test]
fn the_first_of_two_near_duplicates_is_kept_whatever_else_ran_before() {
    let seeds = seeds();
    let a = "Suggest three names for a small bakery in a mountain village.";
    let b = "Suggest three names for a small bakery in a mountain village, please.";
    let decide = |order: &[&str]| {
        let mut curator = Curator::new(&CurationSettings::default(), &seeds, &[]);
        for other in ["What should I plant in a shady garden?", "Explain what a tuple is in Python."] {
            assert!(curator.check_request(0, other).is_ok());
        }
        order.iter().map(|r| curator.accept(0, &turns(r))).collect::<Vec<_>>()
    };
    assert_eq!(decide(&[a, b]), [Ok(()), Err(Gate::NearDuplicate)]);
    assert_eq!(decide(&[b, a]), [Ok(()), Err(Gate::NearDuplicate)]);
    assert_eq!(decide(&[a, b]), decide(&[a, b]), "deterministic");
}

#[test]
fn excluded_datasets_decontaminate_requests() {
    let seeds = seeds();
    let eval = vec![
        row("What is the capital of Australia?", "Canberra."),
        row("Name the largest planet in the solar system and give its diameter.", "Jupiter, about 139,820 km."),
    ];
    let settings = CurationSettings { exclude: vec!["eval_set".into()], ..CurationSettings::default() };
    let curator = Curator::new(&settings, &seeds, &eval);
    assert_eq!(curator.check_request(2, "what is the capital of Australia"), Err(Gate::Excluded));
    assert_eq!(
        curator.check_request(2, "Name the largest planet in the solar system and give its diameter in miles."),
        Err(Gate::Excluded)
    );
    assert_eq!(curator.check_request(2, "What is the capital of Austria?"), Ok(()), "a near miss");
    let without = Curator::new(&CurationSettings::default(), &seeds, &[]);
    assert_eq!(without.check_request(2, "what is the capital of Australia"), Ok(()));
    let record = curator.record("m");
    assert_eq!((record.exclude.clone(), record.excluded_messages), (vec!["eval_set".to_string()], 2));
    assert_eq!(record.checked.requests, 3);
    assert_eq!(record.dropped_by.get("excluded"), Some(&2));
}

#[test]
fn the_record_lists_every_gate_in_order_with_its_state() {
    let settings = CurationSettings { off: [Gate::Refusal].into(), ..CurationSettings::default() };
    let record = Curator::new(&settings.clone(), &seeds(), &[]).record("m");
    let keys: Vec<&str> = record.gates.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, Gate::ALL.map(Gate::key));
    let off_by_default = ["refusal", "excluded", "judge", "judgeUnparseable"];
    assert!(record.gates.iter().all(|(k, on)| *on != off_by_default.contains(&k.as_str())));
    assert!(record.judge.is_none() && serde_json::to_value(&record).unwrap().get("judge").is_none());
    let judged = CurationSettings { judge: Some(JudgeSettings::default()), ..settings };
    let record = Curator::new(&judged, &seeds(), &[]).record("m");
    assert!(record.gates.iter().any(|(k, on)| k == "judgeUnparseable" && *on));
    let judge = serde_json::to_value(&record).unwrap()["judge"].clone();
    assert_eq!((judge["model"].as_str(), judge["maxNewTokens"].as_u64()), (Some("m"), Some(96)), "{judge}");
    let json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["gates"]["refusal"], false);
    assert_eq!(json["minHash"]["permutations"], 128);
    assert_eq!(json["nearDuplicateThreshold"], DEFAULT_THRESHOLD);
}

const DEFAULT_THRESHOLD: f64 = settings::DEFAULT_NEAR_DUPLICATE_THRESHOLD;

#[test]
fn failure_mode_seeds_exclude_their_evaluated_dataset() {
    let details = FailureModesManifest {
        eval_run: "eval_run_1".into(),
        eval_dataset: "dataset_eval".into(),
        model: "m".into(),
        failure_modes: vec![],
    };
    let manifest = Manifest::new("fm", KIND_FAILURE_MODES).with_details(&details).unwrap();
    assert_eq!(evaluated_dataset(&manifest).as_deref(), Some("dataset_eval"));
    let plain = Manifest::new("seed", crate::store::KIND_SYNTHESIZED);
    assert_eq!(evaluated_dataset(&plain), None);
    let flags = CurationFlags { exclude: vec!["test_set".into()], ..CurationFlags::default() };
    let recipe = CurationSettings { exclude: vec!["dataset_eval".into()], ..CurationSettings::default() };
    assert_eq!(settle(&recipe, &flags, &manifest).exclude, ["dataset_eval", "test_set"]);
    assert_eq!(settle(&CurationSettings::default(), &flags, &manifest).exclude, ["test_set", "dataset_eval"]);
    assert_eq!(settle(&CurationSettings::default(), &flags, &plain).exclude, ["test_set"]);
}
