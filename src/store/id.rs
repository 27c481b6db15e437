//! Dataset ids become directory names, so they are checked before they touch the filesystem.

/// Longest accepted dataset id; leaves room for temporary suffixes under common 255-byte name limits.
pub const MAX_ID_LEN: usize = 128;

/// Checks a dataset id: 1 to 128 characters from `A-Z a-z 0-9 _ - .`, not starting with `.`.
/// That rules out path separators, `..`, NUL and hidden names. Returns the rule broken.
pub fn validate_dataset_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("a dataset id must not be empty".into());
    }
    if id.chars().count() > MAX_ID_LEN {
        return Err(format!(
            "a dataset id must be at most {MAX_ID_LEN} characters, this one has {}",
            id.chars().count()
        ));
    }
    if id.starts_with('.') {
        return Err("a dataset id must not start with `.`".into());
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Err(format!("a dataset id may only contain letters, digits, `_`, `-` and `.`, found {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids() {
        for id in ["dataset_seed_001", "a", "eval-run.3", &"x".repeat(128)] {
            assert!(validate_dataset_id(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_paths_and_oddities() {
        for id in ["", "..", "../etc", "a/b", "a\\b", "a\0b", ".hidden", "has space", &"x".repeat(300), "é"] {
            assert!(validate_dataset_id(id).is_err(), "{id:?}");
        }
    }
}
