//! The vocabulary of a run, kept as a Hugging Face `tokenizer.json` in the run directory.
//!
//! Task vocabularies are word-level: the special tokens, then every symbol the task can emit
//! (up to the longest evaluation length), in a fixed order, so ids never depend on the data seen.

use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

pub const PAD: &str = "[PAD]";
pub const UNK: &str = "[UNK]";
pub const MASK: &str = "[MASK]";
/// The separator between the input and the question/answer part of a prompt.
pub const SEP: &str = "[SEP]";

/// A tokenizer ordo cannot use.
///
/// Like every error type in ordo, an inner error that the message already shows is a plain field,
/// not a `#[source]`: `ordo` prints the whole chain (`{:#}`), which would repeat it.
#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    /// `[PAD]` or `[MASK]`.
    #[error("the tokenizer has no {0} token")]
    MissingToken(&'static str),
    /// The tokenizers crate's message.
    #[error("not a valid tokenizer.json: {0}")]
    NotATokenizer(tokenizers::Error),
    #[error("cannot add special tokens: {0}")]
    AddSpecial(tokenizers::Error),
    /// A run's vocabulary lacks a token its task emits (checked when a run is reopened).
    #[error(
        "{}: the run's vocabulary has no token {token:?}, which its task emits; the tokenizer or \
         the task's inputs changed since training",
        path.display()
    )]
    TaskToken { path: PathBuf, token: String },
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<VocabError>,
    },
}

/// A tokenizer plus the ids the trainer needs.
#[derive(Clone)]
pub struct Vocab {
    pub tokenizer: Tokenizer,
    pub pad: u32,
    pub mask: u32,
    /// `[UNK]`, which every vocabulary ordo builds has (a user's tokenizer may lack it).
    pub unk: Option<u32>,
}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Vocab({} tokens)", self.len())
    }
}

impl Vocab {
    /// A word-level vocabulary: `[PAD] [UNK] [SEP] [MASK]` then `symbols` in order.
    pub fn word_level(symbols: &[String]) -> Self {
        let mut words: Vec<&str> = vec![PAD, UNK, SEP, MASK];
        // A set beside the list: `contains` on the list made 200,000 symbols quadratic.
        let mut seen: std::collections::HashSet<&str> = words.iter().copied().collect();
        for s in symbols {
            if seen.insert(s.as_str()) {
                words.push(s);
            }
        }
        let vocab: serde_json::Map<String, serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), serde_json::Value::from(i)))
            .collect();
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": { "type": "WhitespaceSplit" },
            "post_processor": null,
            "decoder": null,
            "model": { "type": "WordLevel", "vocab": vocab, "unk_token": UNK },
        });
        let tokenizer: Tokenizer = json
            .to_string()
            .parse()
            .expect("a valid WordLevel tokenizer");
        Self::from_tokenizer(tokenizer).expect("specials are in the vocabulary")
    }

    /// Wraps a tokenizer, which must know `[PAD]` and `[MASK]`.
    pub fn from_tokenizer(tokenizer: Tokenizer) -> Result<Self, VocabError> {
        let id = |t: &'static str| tokenizer.token_to_id(t).ok_or(VocabError::MissingToken(t));
        Ok(Self {
            pad: id(PAD)?,
            mask: id(MASK)?,
            unk: tokenizer.token_to_id(UNK),
            tokenizer,
        })
    }

    /// Loads a `tokenizer.json` (a run's own, which has every token it needs).
    pub fn load(path: &Path) -> Result<Self, VocabError> {
        Self::load_adding(path, &[])
    }

    /// Loads a `tokenizer.json`, adding `[PAD]`, `[MASK]` and `extra` tokens it lacks as special
    /// tokens (for a user's tokenizer; language modelling adds `[EOS]`).
    pub fn load_adding(path: &Path, extra: &[&str]) -> Result<Self, VocabError> {
        let in_file = |error| VocabError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        };
        let mut tokenizer =
            Tokenizer::from_file(path).map_err(|e| in_file(VocabError::NotATokenizer(e)))?;
        let missing: Vec<tokenizers::AddedToken> = [PAD, MASK]
            .iter()
            .chain(extra)
            .filter(|t| tokenizer.token_to_id(t).is_none())
            .map(|t| tokenizers::AddedToken::from(t.to_string(), true))
            .collect();
        if !missing.is_empty() {
            tokenizer
                .add_special_tokens(missing)
                .map_err(|e| in_file(VocabError::AddSpecial(e)))?;
        }
        Self::from_tokenizer(tokenizer).map_err(in_file)
    }

    /// The vocabulary as a Hugging Face `tokenizer.json` (what a run directory stores).
    pub fn to_json(&self) -> std::io::Result<String> {
        self.tokenizer
            .to_string(true)
            .map_err(std::io::Error::other)
    }

    pub fn len(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of a word-level token; an unknown token gets `[UNK]`'s id (`[PAD]`'s in a user's
    /// tokenizer without `[UNK]`, whose own pieces are all known). Never a panic: a run's
    /// tokenizer meets text it was not built from only when an input changed, which the run
    /// directory's input hashes catch, and evaluation checks coverage itself, marking lengths
    /// whose tokens are missing as n/a.
    pub fn id(&self, token: &str) -> u32 {
        self.tokenizer
            .token_to_id(token)
            .unwrap_or(self.unk.unwrap_or(self.pad))
    }

    /// Whether `token` has an id of its own.
    pub fn contains(&self, token: &str) -> bool {
        self.tokenizer.token_to_id(token).is_some()
    }

    pub fn token(&self, id: u32) -> String {
        self.tokenizer
            .id_to_token(id)
            .unwrap_or_else(|| UNK.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_level_ids_are_stable_and_round_trip() {
        let symbols: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
        let v = Vocab::word_level(&symbols);
        assert_eq!(v.len(), 9);
        assert_eq!((v.pad, v.mask), (0, 3));
        assert_eq!(v.id("s0"), 4);
        assert_eq!(v.token(8), "s4");
        let enc = v.tokenizer.encode("s1 s4 [SEP] s0", false).unwrap();
        assert_eq!(enc.get_ids(), &[5, 8, 2, 4]);
        let dir = std::env::temp_dir().join(format!("ordo-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, v.to_json().unwrap()).unwrap();
        let back = Vocab::load(&path).unwrap();
        assert_eq!(back.id("s3"), 7);
        // Unknown tokens map to [UNK] instead of panicking.
        assert_eq!(back.id("never-seen"), back.id(UNK));
        assert!(!back.contains("never-seen") && back.contains("s3"));
        std::fs::write(&path, "{ not json").unwrap();
        let err = Vocab::load(&path).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
