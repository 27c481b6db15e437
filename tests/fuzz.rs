//! Fuzzing of the readers that take user files: the recipe parser, the JSONL reader and the GGUF
//! header reader (with candle's GGUF parser behind it). Each input is a seed from
//! `tests/fuzz/corpus/<target>/` mutated by a seeded RNG (bit flips, interesting bytes and
//! numbers, inserted/deleted/duplicated ranges, truncation, splicing two seeds); every reader
//! must return `Ok` or an error, never panic. A panicking input is saved under
//! `target/fuzz-failures/` so it can be replayed.
//!
//! The test suite runs a short pass (`SYNTH_FUZZ_ITERS`, default 20000 inputs per target); a long
//! run is `SYNTH_FUZZ_ITERS=1000000 SYNTH_FUZZ_SEED=$RANDOM cargo test --release --test fuzz -- --nocapture`.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use synth::model::gguf_header;
use synth::recipe::Recipe;
use synth::store::JsonlReader;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

const INTERESTING_BYTES: &[u8] = b"\0\xff\x7f\x80\"{}[],:\n\\-.eE09 ";
const INTERESTING_TEXT: &[&str] = &[
    "NaN", "-1", "1e400", "-0", "18446744073709551616", "0.0000001", "null", "true", "\"\"", "{}", "[]",
    "\"\\u0000\"", "\"../..\"", "\"a/b\"", "1.5", "9999999999999999999999", "\"\\ud800\"",
];
const INTERESTING_U64: &[u64] = &[0, 1, 3, 4, 31, 32, 33, 255, 0xffff, 0xffff_ffff, 1 << 32, 1 << 40, u64::MAX / 2, u64::MAX];

fn mutate(rng: &mut ChaCha8Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.random_range(0..seeds.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = data.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..len) };
        match rng.random_range(0..9) {
            0 if len > 0 => data[at] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => data[at] = INTERESTING_BYTES[rng.random_range(0..INTERESTING_BYTES.len())],
            2 => {
                let text = INTERESTING_TEXT[rng.random_range(0..INTERESTING_TEXT.len())];
                data.splice(at..at, text.bytes());
            }
            3 if len >= 8 => {
                // An 8- or 4-byte little-endian field (GGUF counts, lengths, offsets).
                let value = INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())];
                let width = if rng.random_bool(0.5) { 8 } else { 4 };
                let at = at.min(len - width);
                data[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
            4 if len > 0 => {
                let end = (at + rng.random_range(1..=16)).min(len);
                data.drain(at..end);
            }
            5 if len > 0 => {
                let end = (at + rng.random_range(1..=64)).min(len);
                let copy = data[at..end].to_vec();
                let to = rng.random_range(0..=len);
                data.splice(to..to, copy);
            }
            6 => data.truncate(at),
            7 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let from = if other.is_empty() { 0 } else { rng.random_range(0..other.len()) };
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let n = rng.random_range(1..=8);
                for _ in 0..n {
                    data.insert(at.min(data.len()), rng.random());
                }
            }
        }
    }
    data
}

/// Runs `read` on mutated inputs; panics (after saving the input) if any input panics.
/// Returns (inputs, accepted).
fn fuzz(target: &str, seed_offset: u64, read: impl Fn(&[u8]) -> bool) -> (u64, u64) {
    let seeds = corpus(target);
    let iters = env_u64("SYNTH_FUZZ_ITERS", 20000);
    let mut rng = ChaCha8Rng::seed_from_u64(env_u64("SYNTH_FUZZ_SEED", 1) ^ seed_offset);
    // The seeds themselves must be accepted, or the mutations explore nothing useful.
    for (i, seed) in seeds.iter().enumerate() {
        assert!(read(seed), "{target}: corpus seed {i} is rejected");
    }
    let mut accepted = 0;
    for i in 0..iters {
        let input = mutate(&mut rng, &seeds);
        match catch_unwind(AssertUnwindSafe(|| read(&input))) {
            Ok(ok) => accepted += u64::from(ok),
            Err(_) => {
                let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("{target}-{i}.bin"));
                std::fs::write(&path, &input).unwrap();
                panic!("{target}: input {i} panicked; saved to {}", path.display());
            }
        }
    }
    eprintln!("fuzz {target}: {iters} inputs, {accepted} accepted, {} rejected with an error, 0 panics", iters - accepted);
    (iters, accepted)
}

#[test]
fn recipe_parser_never_panics() {
    fuzz("recipe", 0x5ec1, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        match Recipe::from_json_str(&text, "fuzz.json") {
            Ok(_) => true,
            Err(err) => {
                assert!(err.to_string().starts_with("fuzz.json: "), "error does not name the file: {err}");
                false
            }
        }
    });
}

#[test]
fn jsonl_reader_never_panics() {
    fuzz("jsonl", 0x15e1, |bytes| {
        let mut all_rows = true;
        for (line, row) in JsonlReader::new(Cursor::new(bytes)) {
            assert!(line >= 1);
            all_rows &= row.is_ok();
        }
        all_rows
    });
}

#[test]
fn gguf_header_reader_never_panics() {
    fuzz("gguf", 0x99f, |bytes| {
        if gguf_header::check(&mut Cursor::new(bytes)).is_err() {
            return false;
        }
        // What the check lets through, candle must read without going out of bounds.
        let mut cursor = Cursor::new(bytes);
        let Ok(content) = candle_core::quantized::gguf_file::Content::read(&mut cursor) else { return false };
        for name in content.tensor_infos.keys() {
            let _ = content.tensor(&mut cursor, name, &candle_core::Device::Cpu);
        }
        true
    });
}
