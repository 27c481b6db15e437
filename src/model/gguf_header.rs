//! A bounded walk over a GGUF file's header, run before candle parses the file: every count,
//! length, dimension and tensor extent is checked against the file's size, so a truncated,
//! corrupted or hostile file is an error that says what is wrong, never a panic (candle divides
//! by `general.alignment` and multiplies tensor dimensions unchecked) or a huge allocation.
//!
//! Layout (little-endian; counts and lengths are u32 in version 1, u64 after):
//! `GGUF`, version, tensor count, metadata count, metadata (key string, value type, value),
//! tensor infos (name, dims count, dims, ggml type, offset), padding to the alignment, data.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::Result;
use candle_core::quantized::gguf_file;

use crate::error::SynthError;

/// Caps as in candle and llama.cpp.
const MAX_STRING: u64 = 1 << 30;
const MAX_ARRAY: u64 = 1 << 30;
const MAX_DIMS: u32 = 4;
const MAX_DEPTH: usize = 64;
const DEFAULT_ALIGNMENT: u64 = 32;

/// What the header says, for callers that want it without candle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSummary {
    pub version: u32,
    pub tensors: u64,
    pub metadata: u64,
    pub data_offset: u64,
}

/// Checks the header of the GGUF file in `reader`; the error names the first problem found.
/// Leaves the reader at the start of the file, ready for candle.
pub fn check<R: Read + Seek>(reader: &mut R) -> Result<HeaderSummary, String> {
    let summary = walk(reader);
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    summary
}

fn walk<R: Read + Seek>(reader: &mut R) -> Result<HeaderSummary, String> {
    let file_len = reader.seek(SeekFrom::End(0)).map_err(|e| e.to_string())?;
    reader.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut r = Walker { reader, pos: 0, file_len, wide: true };

    let magic = r.u32("the magic number")?;
    if magic != u32::from_le_bytes(*b"GGUF") {
        return Err(format!("does not start with `GGUF` (found {:02x?})", magic.to_le_bytes()));
    }
    let version = r.u32("the version")?;
    if !(1..=3).contains(&version) {
        return Err(format!("GGUF version {version} is not supported (1 to 3 are)"));
    }
    r.wide = version > 1;
    let tensors = r.count("the tensor count")?;
    let metadata = r.count("the metadata count")?;
    // The smallest metadata entry is 13 bytes and the smallest tensor info 25 in version 2+.
    if metadata.saturating_mul(13).saturating_add(tensors.saturating_mul(25)) > r.remaining() {
        return Err(format!(
            "claims {metadata} metadata entries and {tensors} tensors, more than its {file_len} bytes can hold"
        ));
    }

    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..metadata {
        let key = r.string(&format!("metadata entry {i}'s key"))?;
        let value_type = r.u32(&format!("the type of `{key}`"))?;
        let value = r.value(&key, value_type, 0)?;
        if key == "general.alignment" {
            alignment = match value {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => return Err("`general.alignment` must be a positive power of two".to_string()),
            };
        }
    }

    let mut extents = Vec::new();
    for i in 0..tensors {
        let name = r.string(&format!("tensor {i}'s name"))?;
        let dims = r.u32(&format!("the dimension count of tensor `{name}`"))?;
        if dims > MAX_DIMS {
            return Err(format!("tensor `{name}` has {dims} dimensions, at most {MAX_DIMS} are allowed"));
        }
        let mut elements: u64 = 1;
        for _ in 0..dims {
            let d = r.count(&format!("a dimension of tensor `{name}`"))?;
            elements = elements.checked_mul(d).ok_or_else(|| format!("tensor `{name}`: its dimensions overflow"))?;
        }
        let ggml_type = r.u32(&format!("the type of tensor `{name}`"))?;
        let (block, block_bytes) =
            ggml_block(ggml_type).ok_or_else(|| format!("tensor `{name}` has unknown ggml type {ggml_type}"))?;
        if !elements.is_multiple_of(block) {
            return Err(format!(
                "tensor `{name}` has {elements} elements, not a multiple of its type's block of {block}"
            ));
        }
        let bytes = (elements / block)
            .checked_mul(block_bytes)
            .ok_or_else(|| format!("tensor `{name}`: its size overflows"))?;
        let offset = r.u64(&format!("the offset of tensor `{name}`"))?;
        if offset % alignment != 0 {
            return Err(format!(
                "tensor `{name}` starts at offset {offset}, not a multiple of the alignment {alignment}"
            ));
        }
        extents.push((name, offset, bytes));
    }

    let data_offset = r.pos.div_ceil(alignment).checked_mul(alignment).ok_or("the data offset overflows")?;
    for (name, offset, bytes) in extents {
        let end = data_offset.checked_add(offset).and_then(|s| s.checked_add(bytes));
        if end.is_none_or(|end| end > file_len) {
            return Err(format!("tensor `{name}` needs {bytes} bytes at offset {offset} of the data, past the end of the {file_len}-byte file (truncated?)"));
        }
    }
    Ok(HeaderSummary { version, tensors, metadata, data_offset })
}

/// Elements per block and bytes per block of a ggml type candle reads.
fn ggml_block(ggml_type: u32) -> Option<(u64, u64)> {
    Some(match ggml_type {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        30 => (1, 2),     // BF16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2K
        11 => (256, 110), // Q3K
        12 => (256, 144), // Q4K
        13 => (256, 176), // Q5K
        14 => (256, 210), // Q6K
        15 => (256, 292), // Q8K
        _ => return None,
    })
}

struct Walker<'a, R> {
    reader: &'a mut R,
    pos: u64,
    file_len: u64,
    /// Counts and lengths are u64 (version 2+) rather than u32.
    wide: bool,
}

impl<R: Read + Seek> Walker<'_, R> {
    fn remaining(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut buf = [0u8; N];
        self.reader
            .read_exact(&mut buf)
            .map_err(|_| format!("ends inside {what} at byte {} (truncated?)", self.pos))?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    fn count(&mut self, what: &str) -> Result<u64, String> {
        if self.wide {
            self.u64(what)
        } else {
            self.u32(what).map(u64::from)
        }
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<(), String> {
        if n > self.remaining() {
            return Err(format!(
                "{what} needs {n} bytes at byte {}, past the end of the {}-byte file (truncated?)",
                self.pos, self.file_len
            ));
        }
        self.reader.seek(SeekFrom::Current(n as i64)).map_err(|e| e.to_string())?;
        self.pos += n;
        Ok(())
    }

    /// A string: its length is checked before anything is allocated; it must be UTF-8.
    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.count(what)?;
        if len > MAX_STRING || len > self.remaining() {
            return Err(format!("{what} claims {len} bytes at byte {}, more than the file holds", self.pos));
        }
        let mut buf = vec![0u8; len as usize];
        self.reader.read_exact(&mut buf).map_err(|_| format!("ends inside {what} (truncated?)"))?;
        self.pos += len;
        String::from_utf8(buf).map_err(|_| format!("{what} is not UTF-8"))
    }

    /// Walks one metadata value; returns it when it is an unsigned or non-negative integer
    /// (the alignment is the one value the check needs).
    fn value(&mut self, key: &str, value_type: u32, depth: usize) -> Result<Option<u64>, String> {
        if depth > MAX_DEPTH {
            return Err(format!("`{key}`: arrays nest deeper than {MAX_DEPTH}"));
        }
        let what = format!("the value of `{key}`");
        Ok(match value_type {
            0 => Some(u64::from(self.bytes::<1>(&what)?[0])),
            1 => u64::try_from(i8::from_le_bytes(self.bytes::<1>(&what)?)).ok(),
            2 => Some(u64::from(u16::from_le_bytes(self.bytes::<2>(&what)?))),
            3 => u64::try_from(i16::from_le_bytes(self.bytes::<2>(&what)?)).ok(),
            4 => Some(u64::from(self.u32(&what)?)),
            5 => u64::try_from(i32::from_le_bytes(self.bytes::<4>(&what)?)).ok(),
            6 => self.skip(4, &what).map(|()| None)?,
            7 => self.skip(1, &what).map(|()| None)?,
            8 => self.string(&what).map(|_| None)?,
            9 => {
                let item_type = self.u32(&what)?;
                let len = self.count(&what)?;
                if len > MAX_ARRAY || len > self.remaining() {
                    return Err(format!(
                        "`{key}`: an array of {len} items at byte {}, more than the file holds",
                        self.pos
                    ));
                }
                for _ in 0..len {
                    self.value(key, item_type, depth + 1)?;
                }
                None
            }
            10 => Some(self.u64(&what)?),
            11 => u64::try_from(i64::from_le_bytes(self.bytes::<8>(&what)?)).ok(),
            12 => self.skip(8, &what).map(|()| None)?,
            other => return Err(format!("`{key}` has unknown value type {other}")),
        })
    }
}

/// Reads a GGUF file's metadata and tensor index (not the tensors), after [`check`]
/// has made sure the header cannot take candle out of bounds.
pub fn read_gguf(path: &Path) -> Result<gguf_file::Content> {
    let mut file = std::fs::File::open(path)
        .map_err(|err| SynthError::failed(format!("cannot open `{}`: {err}", path.display())))?;
    check(&mut file).map_err(|err| {
        SynthError::invalid(format!("`{}` is not a valid GGUF file: {err}", path.display()))
            .hint("the download may be incomplete or damaged; fetch the file again")
    })?;
    gguf_file::Content::read(&mut file).map_err(|err| {
        SynthError::invalid(format!("`{}` is not a readable GGUF file: {err}", path.display()))
            .hint("the download may be incomplete; fetch the file again")
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A version-3 GGUF with one u32 metadata entry and one F32 tensor of `n` elements.
    pub(crate) fn tiny(alignment: u32, n: u64) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        let key = b"general.alignment";
        b.extend_from_slice(&(key.len() as u64).to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&alignment.to_le_bytes());
        let name = b"w";
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name);
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&n.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        let align = alignment.max(1) as usize;
        while b.len() % align != 0 {
            b.push(0);
        }
        b.extend(std::iter::repeat_n(0u8, (n * 4) as usize));
        b
    }

    #[test]
    fn accepts_a_well_formed_file_and_candle_agrees() {
        let bytes = tiny(32, 8);
        let summary = check(&mut Cursor::new(&bytes)).unwrap();
        assert_eq!((summary.version, summary.tensors, summary.metadata), (3, 1, 1));
        let mut cursor = Cursor::new(&bytes);
        check(&mut cursor).unwrap();
        let content = candle_core::quantized::gguf_file::Content::read(&mut cursor).unwrap();
        assert_eq!(content.tensor_data_offset, summary.data_offset);
    }

    #[test]
    fn rejects_what_would_make_candle_panic_or_overread() {
        let err = check(&mut Cursor::new(tiny(0, 8))).unwrap_err();
        assert!(err.contains("general.alignment"), "{err}");
        let mut truncated = tiny(32, 8);
        truncated.truncate(truncated.len() - 1);
        let err = check(&mut Cursor::new(truncated)).unwrap_err();
        assert!(err.contains("tensor `w` needs 32 bytes"), "{err}");
        let mut huge = tiny(32, 8);
        let at = 70; // the dimension: after magic, version, counts, the metadata entry, the name and the dims count
        huge[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check(&mut Cursor::new(huge)).is_err());
        let err = check(&mut Cursor::new(b"GGUF\x03\0\0\0".to_vec())).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        let err = check(&mut Cursor::new(b"PK\x03\x04 not a gguf".to_vec())).unwrap_err();
        assert!(err.contains("GGUF"), "{err}");
    }
}
