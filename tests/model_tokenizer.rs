//! The byte-level BPE tokenizer rebuilt from the real SmolLM2 GGUF's metadata.

use std::path::PathBuf;

use synth::model::{read_gguf, TextCodec};

fn smollm2() -> TextCodec {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/assets/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert!(path.is_file(), "missing {}: run scripts/fetch-assets.sh", path.display());
    TextCodec::from_gguf(&read_gguf(&path).unwrap()).unwrap()
}

#[test]
fn hello_world_and_digits() {
    let codec = smollm2();
    assert_eq!(codec.vocab_size(), 49152);
    let ids = codec.encode("Hello world", false).unwrap();
    assert_eq!(ids, [19556, 905]);
    assert_eq!(codec.decode(&ids, false).unwrap(), "Hello world");
    assert_eq!(codec.token_id("Hello"), Some(19556));
    assert_eq!(codec.token_id("Ġworld"), Some(905));

    // `smollm` pre-tokenizer: every digit alone, and the space before a number alone too.
    let ids = codec.encode("digits 1234567890 and 3.14159", false).unwrap();
    assert_eq!(ids, [37307, 216, 33, 34, 35, 36, 37, 38, 39, 40, 41, 32, 284, 216, 35, 30, 33, 36, 33, 37, 41]);
    for d in 0..10u32 {
        assert_eq!(codec.encode(&d.to_string(), false).unwrap(), [32 + d]);
    }
}

#[test]
fn special_tokens_are_single_ids_and_skippable() {
    let codec = smollm2();
    let ids = codec.encode("<|im_start|>user\nHi<|im_end|>\n<|endoftext|>", false).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids.iter().filter(|&&id| id <= 2).count(), 3);
    assert_eq!(codec.decode(&ids, true).unwrap(), "user\nHi\n");
    assert_eq!(codec.eos().map(|e| (e.text.as_str(), e.id)), Some(("<|im_end|>", Some(2))));
    // Not a whole special token: plain text.
    assert!(codec.encode("<|im_start", false).unwrap().iter().all(|&id| id > 16));
}

#[test]
fn decode_inverts_encode_for_varied_text() {
    let codec = smollm2();
    let texts = [
        "",
        " ",
        "  leading and trailing  ",
        "naïve café — 東京 🚀\n\ttab\r\nCRLF",
        "a\n\n\nb",
        "It's 3:45pm; isn't it? I'd say we'll see.",
        "fn main() {\n    println!(\"{}\", 1_000_000);\n}\n",
        "Ünïcödé ÅÆØ ßẞ ǅ ﬁ ℕ 𝔘 \u{200b}zero\u{200d}width",
        "ئەمە تاقیکردنەوەیە. Это тест. これはテストです。",
        "<|im_start|>assistant\nSure!<|im_end|>",
    ];
    for text in texts {
        let ids = codec.encode(text, false).unwrap();
        assert_eq!(codec.decode(&ids, false).unwrap(), text, "ids {ids:?}");
    }
    // Spot-check against an independent BPE over the same merges.
    assert_eq!(codec.encode("  leading and trailing  ", false).unwrap(), [216, 2899, 284, 35079, 256]);
    assert_eq!(
        codec.encode("naïve café — 東京 🚀\n\ttab\r\nCRLF", false).unwrap(),
        [
            3546, 46494, 37366, 1841, 17097, 247, 126, 16736, 122, 15107, 244, 218, 198, 197, 15999, 201, 198, 9088,
            60, 54
        ]
    );
}
