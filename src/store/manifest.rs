//! `manifest.json`: what a stored dataset is, when it was made, and which split files it has.
//!
//! ```json
//! {"id": "seed", "kind": "imported", "createdAt": "2025-01-02T03:04:05Z",
//!  "splits": {"train": {"file": "train.jsonl", "rows": 120}},
//!  "source": {"file": "seed.jsonl", "sha256": "…"}}
//! ```
//! Keys other than the first four are kept in [`Manifest::extra`]; each kind's are typed in
//! [`artifacts`](super::artifacts).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub const MANIFEST_FILE: &str = "manifest.json";

/// Split names in the order their rows are read.
pub const SPLITS: [&str; 3] = ["train", "validation", "test"];

pub const KIND_IMPORTED: &str = "imported";
pub const KIND_SYNTHESIZED: &str = "synthesized";
/// One shard of a `synth run --shard I/N`: its rows in candidate order, all in `train`.
pub const KIND_SHARD: &str = "synthesis_shard";
/// Failed rows of an evaluation run, labelled by failure mode (`synth eval` with `generateFailureModes`).
pub const KIND_FAILURE_MODES: &str = "failure_modes";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub id: String,
    /// `imported`, `synthesized`, ...; a string so that newer kinds still list.
    pub kind: String,
    /// RFC 3339, UTC, whole seconds.
    pub created_at: String,
    /// In write order; serialized as an object keyed by split name.
    #[serde(with = "split_map")]
    pub splits: Vec<SplitInfo>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitInfo {
    pub name: String,
    /// A file name inside the dataset directory.
    pub file: String,
    pub rows: usize,
}

impl Manifest {
    /// A manifest created now, with no splits and no extra fields.
    pub fn new(id: &str, kind: &str) -> Self {
        Self {
            id: id.to_string(),
            kind: kind.to_string(),
            created_at: now_rfc3339(),
            splits: Vec::new(),
            extra: Map::new(),
        }
    }

    /// Records split `name` stored in `<name>.jsonl`, replacing an earlier record of it.
    pub fn add_split(&mut self, name: &str, rows: usize) {
        let info = SplitInfo { name: name.to_string(), file: split_file(name), rows };
        match self.splits.iter_mut().find(|s| s.name == name) {
            Some(existing) => *existing = info,
            None => self.splits.push(info),
        }
    }

    /// Sets the keys after the first four from typed details (a `*Manifest` of
    /// [`artifacts`](super::artifacts)).
    pub fn with_details(mut self, details: &impl Serialize) -> serde_json::Result<Self> {
        match serde_json::to_value(details)? {
            Value::Object(map) => self.extra = map,
            other => return Err(serde::ser::Error::custom(format!("manifest details must be an object, not {other}"))),
        }
        if let Some(taken) = ["id", "kind", "createdAt", "splits"].iter().find(|k| self.extra.contains_key(**k)) {
            return Err(serde::ser::Error::custom(format!("manifest details may not set `{taken}`, a key of its own")));
        }
        Ok(self)
    }

    /// Reads the keys after the first four as typed details.
    pub fn details<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_value(Value::Object(self.extra.clone()))
    }

    pub fn split(&self, name: &str) -> Option<&SplitInfo> {
        self.splits.iter().find(|s| s.name == name)
    }

    pub fn total_rows(&self) -> usize {
        self.splits.iter().map(|s| s.rows).sum()
    }

    /// Splits in reading order: train, validation, test, then any others as listed.
    pub fn splits_in_order(&self) -> Vec<&SplitInfo> {
        let rank = |name: &str| SPLITS.iter().position(|s| *s == name).unwrap_or(SPLITS.len());
        let mut splits: Vec<&SplitInfo> = self.splits.iter().collect();
        splits.sort_by_key(|s| rank(&s.name));
        splits
    }
}

pub fn split_file(name: &str) -> String {
    format!("{name}.jsonl")
}

/// A split file name from a manifest must stay inside the dataset directory.
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

mod split_map {
    use super::SplitInfo;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        file: String,
        rows: usize,
    }

    pub fn serialize<S: Serializer>(splits: &[SplitInfo], s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(splits.len()))?;
        for split in splits {
            map.serialize_entry(&split.name, &Entry { file: split.file.clone(), rows: split.rows })?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SplitInfo>, D::Error> {
        // serde_json's `preserve_order` keeps the file's order.
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        map.into_iter()
            .map(|(name, value)| {
                let entry = Entry::deserialize(value).map_err(serde::de::Error::custom)?;
                Ok(SplitInfo { name, file: entry.file, rows: entry.rows })
            })
            .collect()
    }
}

/// The current time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    rfc3339_from_unix(secs)
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC.
pub fn rfc3339_from_unix(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_cannot_shadow_the_manifests_own_keys() {
        let shadow = serde_json::json!({"splits": {"groups": 3}});
        assert!(Manifest::new("x", KIND_SYNTHESIZED).with_details(&shadow).is_err());
        assert!(Manifest::new("x", KIND_SYNTHESIZED).with_details(&serde_json::json!({"splitGroups": 1})).is_ok());
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_from_unix(4_107_542_399), "2100-02-28T23:59:59Z");
        assert_eq!(now_rfc3339().len(), 20);
    }

    #[test]
    fn round_trips_with_ordered_splits_and_extra_fields() {
        let mut m = Manifest::new("seed", KIND_IMPORTED);
        m.created_at = "2025-01-02T03:04:05Z".into();
        m.add_split("train", 8);
        m.add_split("validation", 1);
        m.add_split("test", 1);
        m.extra.insert("source".into(), serde_json::json!({"file": "seed.jsonl"}));
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"id":"seed","kind":"imported","createdAt":"2025-01-02T03:04:05Z","splits":{"train":{"file":"train.jsonl","rows":8},"validation":{"file":"validation.jsonl","rows":1},"test":{"file":"test.jsonl","rows":1}},"source":{"file":"seed.jsonl"}}"#
        );
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.total_rows(), 10);
    }

    #[test]
    fn reads_splits_in_canonical_order() {
        let mut m = Manifest::new("x", KIND_SYNTHESIZED);
        m.add_split("test", 1);
        m.add_split("train", 2);
        let names: Vec<&str> = m.splits_in_order().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["train", "test"]);
    }
}
