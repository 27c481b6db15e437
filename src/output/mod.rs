//! Writing a finished run: split files and the manifest.

pub mod splits;
