//! Word-order tasks, generated deterministically from a seed.
//!
//! Every task turns `(rng, length)` into an [`Example`]: a prompt the model reads and an answer
//! it must produce. "Length" is the task's own measure of size (the number of symbols for
//! copy/reverse/sort/position, the number of words of the sentence for bigram_shift/agent), so
//! the same task yields longer test sets later. Tokens are plain strings; the trainer builds
//! the vocabulary from [`TaskConfig::symbols`] plus its special tokens.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};

/// The separator between the input and the question/answer part of a prompt.
pub const SEP: &str = "[SEP]";

/// One example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// What the model reads, e.g. `x1 .. xn [SEP]`.
    pub prompt: Vec<String>,
    /// What it must produce after the prompt, e.g. `x1 .. xn`.
    pub answer: Vec<String>,
}

/// A task configuration error: the field (relative to `[task]`) and what was expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`{field}`: {message}")]
pub struct TaskConfigError {
    pub field: &'static str,
    pub message: String,
}

/// How an `lm` task splits its corpus into tokens. Written as one string in the config:
/// `"words"`, `"bpe"` or the path of a `tokenizer.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum LmTokenizer {
    /// Whitespace-separated words of the corpus.
    #[default]
    Words,
    /// Byte-pair encoding trained on the training lines of the corpus (see [`lm`]).
    Bpe,
    /// A Hugging Face `tokenizer.json` (relative to the config file).
    File(PathBuf),
}

impl From<String> for LmTokenizer {
    fn from(s: String) -> Self {
        match s.as_str() {
            "words" => LmTokenizer::Words,
            "bpe" => LmTokenizer::Bpe,
            _ => LmTokenizer::File(PathBuf::from(s)),
        }
    }
}

impl From<LmTokenizer> for String {
    fn from(t: LmTokenizer) -> Self {
        match t {
            LmTokenizer::Words => "words".to_string(),
            LmTokenizer::Bpe => "bpe".to_string(),
            LmTokenizer::File(path) => path.to_string_lossy().into_owned(),
        }
    }
}

pub mod grammar;
pub mod lm;
pub mod sentence;
pub mod symbols;

pub use grammar::{Lexicon, corpus};

use std::path::{Path, PathBuf};

/// The `[task]` table of a run configuration. Every field has a default, so `kind = "copy"`
/// alone is a valid task; unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskConfig {
    /// Prompt `x1 .. xn [SEP]`, answer `x1 .. xn`.
    Copy {
        /// Number of distinct symbols `s0 .. s{symbols-1}` (default 16).
        #[serde(default = "sixteen")]
        symbols: usize,
        /// Shortest training length (default 1).
        #[serde(default = "one")]
        min_len: usize,
        /// Longest training length (default 16).
        #[serde(default = "sixteen")]
        max_len: usize,
    },
    /// Prompt `x1 .. xn [SEP]`, answer `xn .. x1`.
    Reverse {
        #[serde(default = "sixteen")]
        symbols: usize,
        #[serde(default = "one")]
        min_len: usize,
        #[serde(default = "sixteen")]
        max_len: usize,
    },
    /// Prompt `x1 .. xn [SEP]`, answer the `x` sorted by symbol index (numerically).
    Sort {
        #[serde(default = "sixteen")]
        symbols: usize,
        #[serde(default = "one")]
        min_len: usize,
        #[serde(default = "sixteen")]
        max_len: usize,
    },
    /// Prompt `x1 .. xn [SEP] ik`, answer `x_k`.
    Position {
        #[serde(default = "sixteen")]
        symbols: usize,
        #[serde(default = "one")]
        min_len: usize,
        #[serde(default = "sixteen")]
        max_len: usize,
        /// Number of index tokens `i0 ..` in the vocabulary; 0 (the default) means `4 * max_len`.
        /// [`Generator::symbols`] adds more if the evaluation lengths need them.
        #[serde(default)]
        max_index: usize,
    },
    /// Prompt `w1 .. wn [SEP]`, answer `swapped` or `original` (see [`sentence`]).
    BigramShift {
        /// Shortest training sentence in words (default 6; at least 5).
        #[serde(default = "six")]
        min_len: usize,
        /// Longest training sentence in words (default 16).
        #[serde(default = "sixteen")]
        max_len: usize,
        /// A lexicon file laid out like `data/lexicon.toml`, relative paths resolved against
        /// the config's directory; `None` (the default) is the built-in `data/lexicon.toml`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lexicon: Option<PathBuf>,
    },
    /// Prompt `w1 .. wn [SEP] agent|patient`, answer the main subject's or object's noun.
    /// Language modelling on a text file (see [`lm`]).
    Lm {
        /// The corpus, one sentence or document per line (relative to the config file).
        corpus: PathBuf,
        /// `"words"` (the default: whitespace words of the corpus), `"bpe"` (byte-pair encoding
        /// trained on the training lines) or the path of a Hugging Face `tokenizer.json`.
        #[serde(default)]
        tokenizer: LmTokenizer,
        /// Vocabulary size of a `"bpe"` tokenizer, special tokens included (default 128).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vocab_size: Option<usize>,
        /// Training context in tokens (the task's length).
        #[serde(default = "sixty_four")]
        context: usize,
        /// Percentage of lines (the last ones) held out for evaluation.
        #[serde(default = "ten")]
        valid_percent: usize,
    },
    Agent {
        /// Shortest training sentence in words (default 5; at least 5).
        #[serde(default = "five")]
        min_len: usize,
        #[serde(default = "sixteen")]
        max_len: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lexicon: Option<PathBuf>,
    },
}

fn sixty_four() -> usize {
    64
}
fn ten() -> usize {
    10
}
fn one() -> usize {
    1
}
fn five() -> usize {
    5
}
fn six() -> usize {
    6
}
fn sixteen() -> usize {
    16
}

fn error(field: &'static str, message: String) -> TaskConfigError {
    TaskConfigError { field, message }
}

impl TaskConfig {
    /// The task's name as written in `kind = "..."`.
    pub fn kind(&self) -> &'static str {
        match self {
            TaskConfig::Copy { .. } => "copy",
            TaskConfig::Reverse { .. } => "reverse",
            TaskConfig::Sort { .. } => "sort",
            TaskConfig::Position { .. } => "position",
            TaskConfig::BigramShift { .. } => "bigram_shift",
            TaskConfig::Agent { .. } => "agent",
            TaskConfig::Lm { .. } => "lm",
        }
    }

    /// `(min_len, max_len)`: the range of training lengths.
    pub fn train_lengths(&self) -> (usize, usize) {
        match *self {
            TaskConfig::Copy {
                min_len, max_len, ..
            }
            | TaskConfig::Reverse {
                min_len, max_len, ..
            }
            | TaskConfig::Sort {
                min_len, max_len, ..
            }
            | TaskConfig::Position {
                min_len, max_len, ..
            }
            | TaskConfig::BigramShift {
                min_len, max_len, ..
            }
            | TaskConfig::Agent {
                min_len, max_len, ..
            } => (min_len, max_len),
            TaskConfig::Lm { context, .. } => (context, context),
        }
    }

    /// Prompt and answer tokens of an example of length `len`, counted without building one
    /// (`None` if the count overflows). Tested against the generators.
    pub fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        match self {
            // x1 .. xn [SEP] -> n tokens
            TaskConfig::Copy { .. } | TaskConfig::Reverse { .. } | TaskConfig::Sort { .. } => {
                Some((len.checked_add(1)?, len))
            }
            // x1 .. xn [SEP] ik -> x_k;  w1 .. wn [SEP] agent -> noun
            TaskConfig::Position { .. } | TaskConfig::Agent { .. } => {
                Some((len.checked_add(2)?, 1))
            }
            // w1 .. wn [SEP] -> swapped | original
            TaskConfig::BigramShift { .. } => Some((len.checked_add(1)?, 1)),
            // one token, then the n it predicts
            TaskConfig::Lm { .. } => Some((1, len)),
        }
    }

    /// The input files the task reads, by role (`lexicon`, `corpus`, `tokenizer`), as written.
    pub fn input_paths(&self) -> Vec<(String, PathBuf)> {
        self.clone()
            .input_paths_mut()
            .into_iter()
            .map(|(role, path)| (role.to_string(), path.clone()))
            .collect()
    }

    /// [`input_paths`](Self::input_paths), to rewrite them.
    pub fn input_paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        match self {
            TaskConfig::BigramShift {
                lexicon: Some(path),
                ..
            }
            | TaskConfig::Agent {
                lexicon: Some(path),
                ..
            } => vec![("lexicon", path)],
            TaskConfig::Lm {
                corpus, tokenizer, ..
            } => match tokenizer {
                LmTokenizer::File(file) => vec![("corpus", corpus), ("tokenizer", file)],
                _ => vec![("corpus", corpus)],
            },
            _ => vec![],
        }
    }

    /// The task of an existing run, tokenising with the run's own `tokenizer.json` (`path`)
    /// instead of retraining BPE or reading the tokenizer file the config named: a run
    /// evaluates and resumes with exactly the vocabulary it was trained with.
    pub fn reading_tokenizer(&self, path: &Path) -> TaskConfig {
        match self {
            TaskConfig::Lm {
                corpus,
                tokenizer: LmTokenizer::Bpe | LmTokenizer::File(_),
                context,
                valid_percent,
                ..
            } => TaskConfig::Lm {
                corpus: corpus.clone(),
                tokenizer: LmTokenizer::File(path.to_path_buf()),
                vocab_size: None,
                context: *context,
                valid_percent: *valid_percent,
            },
            other => other.clone(),
        }
    }

    /// The tokenizer file of an `lm` task, if one is configured.
    pub fn tokenizer_file(&self) -> Option<&Path> {
        match self {
            TaskConfig::Lm {
                tokenizer: LmTokenizer::File(path),
                ..
            } => Some(path),
            _ => None,
        }
    }

    /// Checks the configuration (loading the lexicon, if any). Same checks as
    /// [`TaskConfig::generator`].
    pub fn validate(&self, base_dir: &Path) -> Result<(), TaskConfigError> {
        self.generator(base_dir).map(|_| ())
    }

    /// Every token an example up to `max_eval_len` can contain; see [`Generator::symbols`].
    /// Loads the lexicon of sentence tasks, hence `base_dir` and the `Result`.
    pub fn symbols(
        &self,
        max_eval_len: usize,
        base_dir: &Path,
    ) -> Result<Vec<String>, TaskConfigError> {
        Ok(self.generator(base_dir)?.symbols(max_eval_len))
    }

    /// Validates the configuration and loads what generation needs (the lexicon, resolved
    /// against `base_dir` if relative), returning a generator whose [`Generator::example`]
    /// is fast and infallible.
    pub fn generator(&self, base_dir: &Path) -> Result<Generator, TaskConfigError> {
        let kind = match *self {
            TaskConfig::Copy { symbols, .. }
            | TaskConfig::Reverse { symbols, .. }
            | TaskConfig::Sort { symbols, .. }
            | TaskConfig::Position { symbols, .. } => {
                if symbols < 2 {
                    return Err(error(
                        "symbols",
                        format!("expected at least 2 symbols, found {symbols}"),
                    ));
                }
                match *self {
                    TaskConfig::Copy { .. } => Kind::Copy(symbols),
                    TaskConfig::Reverse { .. } => Kind::Reverse(symbols),
                    TaskConfig::Sort { .. } => Kind::Sort(symbols),
                    TaskConfig::Position {
                        max_index, max_len, ..
                    } => {
                        if max_index != 0 && max_index < max_len {
                            return Err(error(
                                "max_index",
                                format!(
                                    "expected 0 (meaning 4 * max_len = {}) or at least max_len = {max_len} \
                                     index tokens, found {max_index}",
                                    4 * max_len
                                ),
                            ));
                        }
                        let index_tokens = if max_index == 0 {
                            4 * max_len
                        } else {
                            max_index
                        };
                        Kind::Position {
                            symbols,
                            index_tokens,
                        }
                    }
                    _ => unreachable!(),
                }
            }
            TaskConfig::Lm {
                ref corpus,
                ref tokenizer,
                vocab_size,
                context,
                valid_percent,
            } => {
                if context < 2 {
                    return Err(error(
                        "context",
                        format!("expected at least 2 tokens, found {context}"),
                    ));
                }
                let source = match (tokenizer, vocab_size) {
                    (LmTokenizer::Words, None) => lm::Source::Words,
                    (LmTokenizer::Bpe, size) => {
                        let size = size.unwrap_or(lm::DEFAULT_BPE_VOCAB);
                        if size < lm::MIN_BPE_VOCAB {
                            return Err(error(
                                "vocab_size",
                                format!(
                                    "expected at least {} tokens for a BPE vocabulary, found {size}",
                                    lm::MIN_BPE_VOCAB
                                ),
                            ));
                        }
                        lm::Source::Bpe(size)
                    }
                    (LmTokenizer::File(path), None) => lm::Source::File(base_dir.join(path)),
                    (_, Some(_)) => {
                        return Err(error(
                            "vocab_size",
                            "only used with tokenizer = \"bpe\"; remove it or set tokenizer = \"bpe\""
                                .to_string(),
                        ));
                    }
                };
                let data = lm::load(&base_dir.join(corpus), &source, valid_percent)?;
                if data.train.len() <= 8 * context + 1 || data.valid.len() <= context + 1 {
                    return Err(error(
                        "context",
                        format!(
                            "the corpus has {} training and {} held-out tokens; too few for a context of {context}",
                            data.train.len(),
                            data.valid.len()
                        ),
                    ));
                }
                Kind::Lm(data)
            }
            TaskConfig::BigramShift { ref lexicon, .. } | TaskConfig::Agent { ref lexicon, .. } => {
                let lexicon = match lexicon {
                    None => Lexicon::from_toml(grammar::BUILTIN_LEXICON)
                        .map_err(|e| format!("invalid built-in lexicon: {e}")),
                    Some(path) => Lexicon::load(&base_dir.join(path)),
                }
                .map_err(|message| error("lexicon", message))?;
                match self {
                    TaskConfig::BigramShift { .. } => Kind::BigramShift(lexicon),
                    _ => Kind::Agent(lexicon),
                }
            }
        };
        let generator = Generator {
            config: self.clone(),
            kind,
        };
        let (min_len, max_len) = self.train_lengths();
        let shortest = generator.min_len();
        if min_len < shortest {
            let why = match generator.kind {
                Kind::BigramShift(_) | Kind::Agent(_) => {
                    format!("the grammar's shortest sentence has {shortest} words")
                }
                _ => format!("the shortest {} example has {shortest} symbol", self.kind()),
            };
            return Err(error(
                "min_len",
                format!("expected at least {shortest} ({why}), found {min_len}"),
            ));
        }
        if min_len > max_len {
            return Err(error(
                "min_len",
                format!(
                    "expected min_len <= max_len, found min_len = {min_len} > max_len = {max_len}"
                ),
            ));
        }
        Ok(generator)
    }
}

/// A validated task, ready to generate examples: built by [`TaskConfig::generator`], which does
/// all the fallible work (checks, reading the lexicon) once.
#[derive(Debug, Clone)]
pub struct Generator {
    config: TaskConfig,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Copy(usize),
    Reverse(usize),
    Sort(usize),
    Position { symbols: usize, index_tokens: usize },
    BigramShift(Lexicon),
    Agent(Lexicon),
    Lm(std::sync::Arc<lm::Corpus>),
}

impl Generator {
    pub fn config(&self) -> &TaskConfig {
        &self.config
    }

    pub fn kind(&self) -> &'static str {
        self.config.kind()
    }

    /// The lexicon of a sentence task.
    pub fn lexicon(&self) -> Option<&Lexicon> {
        match &self.kind {
            Kind::BigramShift(lexicon) | Kind::Agent(lexicon) => Some(lexicon),
            _ => None,
        }
    }

    /// The shortest length [`Generator::example`] accepts: 1 symbol, or
    /// [`grammar::MIN_WORDS`] = 5 words for the sentence tasks.
    pub fn min_len(&self) -> usize {
        match self.kind {
            Kind::BigramShift(_) | Kind::Agent(_) => grammar::MIN_WORDS,
            _ => 1,
        }
    }

    /// One example of exactly `len` (symbols, or words of the sentence), any `len >=
    /// min_len()` (also far beyond `max_len`). Deterministic given the state of `rng`.
    /// Panics if `len < min_len()`.
    pub fn example(&self, rng: &mut Rng, len: usize) -> Example {
        assert!(
            len >= self.min_len(),
            "{} examples need length >= {}, asked for {len}",
            self.kind(),
            self.min_len()
        );
        match &self.kind {
            &Kind::Copy(k) => symbols::copy(rng, k, len),
            &Kind::Reverse(k) => symbols::reverse(rng, k, len),
            &Kind::Sort(k) => symbols::sort(rng, k, len),
            &Kind::Position { symbols: k, .. } => symbols::position(rng, k, len),
            Kind::BigramShift(lexicon) => sentence::bigram_shift(lexicon, rng, len),
            Kind::Agent(lexicon) => sentence::agent(lexicon, rng, len),
            Kind::Lm(corpus) => corpus.window(rng, len, false),
        }
    }

    /// Every token any example of length up to `max_eval_len` can contain (prompt and answer),
    /// except [`SEP`], without duplicates, in a fixed order: `s0 .. s{symbols-1}`; for
    /// `position` then `i0 .. i{n-1}` with `n = max(index tokens, max_eval_len)`; for the
    /// sentence tasks the lexicon's words ([`Lexicon::words`]) then the task's answer or
    /// question tokens (`original swapped`, `agent patient`).
    pub fn symbols(&self, max_eval_len: usize) -> Vec<String> {
        let symbol_range = |k: usize| (0..k).map(symbols::symbol);
        match &self.kind {
            &Kind::Copy(k) | &Kind::Reverse(k) | &Kind::Sort(k) => symbol_range(k).collect(),
            &Kind::Position {
                symbols: k,
                index_tokens,
            } => symbol_range(k)
                .chain((0..index_tokens.max(max_eval_len)).map(symbols::index_token))
                .collect(),
            Kind::BigramShift(lexicon) => {
                let mut words = lexicon.words();
                words.extend([
                    sentence::ORIGINAL.to_string(),
                    sentence::SWAPPED.to_string(),
                ]);
                words
            }
            Kind::Agent(lexicon) => {
                let mut words = lexicon.words();
                words.extend([sentence::AGENT.to_string(), sentence::PATIENT.to_string()]);
                words
            }
            Kind::Lm(corpus) => {
                let mut words = corpus.words.clone();
                words.push(lm::EOS.to_string());
                words
            }
        }
    }

    /// About how many tokens the vocabulary of a run holds when evaluated up to `max_eval_len`
    /// (counted, never listed: a `position` task of absurd length would list billions).
    pub fn vocab_estimate(&self, max_eval_len: usize) -> u64 {
        let specials = 5;
        let count = match &self.kind {
            &Kind::Copy(k) | &Kind::Reverse(k) | &Kind::Sort(k) => k as u64,
            &Kind::Position {
                symbols,
                index_tokens,
            } => symbols as u64 + index_tokens.max(max_eval_len) as u64,
            Kind::BigramShift(lexicon) | Kind::Agent(lexicon) => lexicon.words().len() as u64 + 2,
            Kind::Lm(corpus) => match &corpus.trained {
                Some(t) => t.get_vocab_size(true) as u64,
                None => {
                    let distinct: std::collections::HashSet<&String> =
                        corpus.train.iter().chain(&corpus.valid).collect();
                    distinct.len() as u64
                }
            },
        };
        count + specials
    }

    /// The language-model corpus, for `lm`.
    pub fn corpus(&self) -> Option<&lm::Corpus> {
        match &self.kind {
            Kind::Lm(c) => Some(c),
            _ => None,
        }
    }

    /// Examples for the held-out set: fresh draws for synthetic tasks, windows of the held-out
    /// text for `lm`.
    pub fn held_out(&self, rng: &mut Rng, len: usize) -> Example {
        match &self.kind {
            Kind::Lm(corpus) => corpus.window(rng, len, true),
            _ => self.example(rng, len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn here() -> &'static Path {
        Path::new(".")
    }

    fn all_defaults() -> Vec<TaskConfig> {
        [
            "copy",
            "reverse",
            "sort",
            "position",
            "bigram_shift",
            "agent",
        ]
        .iter()
        .map(|k| toml::from_str(&format!("kind = \"{k}\"")).unwrap())
        .collect()
    }

    #[test]
    fn defaults_fill_every_field() {
        let configs = all_defaults();
        assert_eq!(
            configs[0],
            TaskConfig::Copy {
                symbols: 16,
                min_len: 1,
                max_len: 16
            }
        );
        assert_eq!(
            configs[3],
            TaskConfig::Position {
                symbols: 16,
                min_len: 1,
                max_len: 16,
                max_index: 0
            }
        );
        assert_eq!(
            configs[4],
            TaskConfig::BigramShift {
                min_len: 6,
                max_len: 16,
                lexicon: None
            }
        );
        assert_eq!(
            configs[5],
            TaskConfig::Agent {
                min_len: 5,
                max_len: 16,
                lexicon: None
            }
        );
        let kinds: Vec<&str> = configs.iter().map(TaskConfig::kind).collect();
        assert_eq!(
            kinds,
            [
                "copy",
                "reverse",
                "sort",
                "position",
                "bigram_shift",
                "agent"
            ]
        );
        for c in &configs {
            c.validate(here()).unwrap();
        }
        let c: TaskConfig = toml::from_str("kind = \"sort\"\nsymbols = 30\nmax_len = 20").unwrap();
        assert_eq!(c.train_lengths(), (1, 20));
        assert_eq!(
            c,
            TaskConfig::Sort {
                symbols: 30,
                min_len: 1,
                max_len: 20
            }
        );
    }

    #[test]
    fn unknown_keys_and_kinds_are_rejected() {
        for kind in ["copy", "position", "bigram_shift", "agent"] {
            let e = toml::from_str::<TaskConfig>(&format!("kind = \"{kind}\"\nbogus = 1"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("bogus"), "{kind}: {e}");
        }
        // A field of another task is unknown too.
        let e = toml::from_str::<TaskConfig>("kind = \"copy\"\nlexicon = \"x.toml\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lexicon"), "{e}");
        let e = toml::from_str::<TaskConfig>("kind = \"shuffle\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("shuffle"), "{e}");
        assert!(toml::from_str::<TaskConfig>("min_len = 3").is_err());
        let e = serde_json::from_str::<TaskConfig>(r#"{"kind": "agent", "bogus": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn configs_round_trip() {
        let mut configs = all_defaults();
        configs.push(TaskConfig::Agent {
            min_len: 7,
            max_len: 9,
            lexicon: Some(PathBuf::from("lex/other.toml")),
        });
        for c in configs {
            let t = toml::to_string(&c).unwrap();
            assert_eq!(toml::from_str::<TaskConfig>(&t).unwrap(), c, "{t}");
            let j = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<TaskConfig>(&j).unwrap(), c, "{j}");
        }
    }

    fn err(toml_text: &str) -> TaskConfigError {
        toml::from_str::<TaskConfig>(toml_text)
            .unwrap()
            .validate(here())
            .unwrap_err()
    }

    #[test]
    fn config_errors_name_the_field() {
        let e = err("kind = \"copy\"\nmin_len = 10\nmax_len = 5");
        assert_eq!(e.field, "min_len");
        assert!(e.message.contains("10") && e.message.contains('5'), "{e}");
        let e = err("kind = \"reverse\"\nmin_len = 0");
        assert_eq!(e.field, "min_len");
        assert!(
            e.message.contains("at least 1") && e.message.contains("found 0"),
            "{e}"
        );
        let e = err("kind = \"sort\"\nsymbols = 1");
        assert_eq!(e.field, "symbols");
        assert!(
            e.message.contains("at least 2") && e.message.contains("found 1"),
            "{e}"
        );
        let e = err("kind = \"position\"\nmax_index = 8");
        assert_eq!(e.field, "max_index");
        assert!(
            e.message.contains("16") && e.message.contains("found 8"),
            "{e}"
        );
        for kind in ["bigram_shift", "agent"] {
            let e = err(&format!("kind = \"{kind}\"\nmin_len = 4"));
            assert_eq!(e.field, "min_len");
            assert!(
                e.message.contains("at least 5") && e.message.contains("found 4"),
                "{e}"
            );
            let e = err(&format!("kind = \"{kind}\"\nmin_len = 20"));
            assert_eq!(e.field, "min_len");
            let e = err(&format!(
                "kind = \"{kind}\"\nlexicon = \"no/such/lexicon.toml\""
            ));
            assert_eq!(e.field, "lexicon");
            assert!(e.message.contains("no/such/lexicon.toml"), "{e}");
            assert_eq!(e.to_string(), format!("`lexicon`: {}", e.message));
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir =
                std::env::temp_dir().join(format!("ordo-tasks-test-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn lexicon_files_resolve_against_base_dir() {
        let dir = TempDir::new("lexicon");
        let custom = grammar::BUILTIN_LEXICON.replacen("\"cat\"", "\"lynx\"", 1);
        std::fs::write(dir.0.join("mine.toml"), custom).unwrap();
        std::fs::write(dir.0.join("broken.toml"), "animals = [\"cat\"\n").unwrap();

        let c: TaskConfig = toml::from_str("kind = \"agent\"\nlexicon = \"mine.toml\"").unwrap();
        assert_eq!(c.validate(here()).unwrap_err().field, "lexicon");
        let symbols = c.symbols(16, &dir.0).unwrap();
        assert!(symbols.contains(&"lynx".to_string()) && !symbols.contains(&"cat".to_string()));
        let absolute = TaskConfig::BigramShift {
            min_len: 6,
            max_len: 16,
            lexicon: Some(dir.0.join("mine.toml")),
        };
        absolute.validate(here()).unwrap();

        let broken: TaskConfig =
            toml::from_str("kind = \"bigram_shift\"\nlexicon = \"broken.toml\"").unwrap();
        let e = broken.validate(&dir.0).unwrap_err();
        assert_eq!(e.field, "lexicon");
        assert!(
            e.message.contains("broken.toml") && e.message.contains("invalid"),
            "{e}"
        );
        assert!(
            e.message.len() > "invalid lexicon file `broken.toml`: ".len() + 20,
            "{e}"
        );
    }

    /// The measure `len` of an example, read back from the prompt.
    fn measured(kind: &str, ex: &Example) -> usize {
        let sep = ex.prompt.iter().position(|t| t == SEP).unwrap();
        let tail = match kind {
            "position" | "agent" => 1,
            _ => 0,
        };
        assert_eq!(ex.prompt.len(), sep + 1 + tail, "{kind}: {ex:?}");
        let answer_len = match kind {
            "copy" | "reverse" | "sort" => sep,
            _ => 1,
        };
        assert_eq!(ex.answer.len(), answer_len, "{kind}: {ex:?}");
        sep
    }

    #[test]
    fn example_size_counts_what_the_generators_build() {
        for cfg in all_defaults() {
            let generator = cfg.generator(here()).unwrap();
            let mut rng = Rng::new(3);
            for len in [generator.min_len(), 7, 16, 40] {
                let ex = generator.example(&mut rng, len);
                assert_eq!(
                    cfg.example_size(len),
                    Some((ex.prompt.len(), ex.answer.len())),
                    "{} at {len}",
                    cfg.kind()
                );
            }
            assert_eq!(
                cfg.example_size(usize::MAX).map(|_| ()),
                match cfg {
                    TaskConfig::Lm { .. } => Some(()),
                    _ => None,
                }
            );
        }
    }

    #[test]
    fn lengths_are_exact_far_beyond_max_len() {
        for c in all_defaults() {
            let g = c.generator(here()).unwrap();
            let mut rng = Rng::new(1);
            for len in (g.min_len()..=40).chain([63, 64, 100, 128]) {
                for _ in 0..5 {
                    let ex = g.example(&mut rng, len);
                    assert_eq!(measured(c.kind(), &ex), len, "{}", c.kind());
                }
            }
        }
    }

    #[test]
    fn every_task_is_deterministic() {
        for c in all_defaults() {
            let g = c.generator(here()).unwrap();
            let run = |seed: u64| {
                let mut rng = Rng::derive(seed, "train");
                (0..50)
                    .map(|i| g.example(&mut rng, 5 + i % 12))
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(3), run(3), "{}", c.kind());
            assert_ne!(run(3), run(4), "{}", c.kind());
        }
    }

    #[test]
    fn symbols_cover_every_generated_token() {
        let mut configs = all_defaults();
        configs.push(TaskConfig::Position {
            symbols: 3,
            min_len: 2,
            max_len: 4,
            max_index: 5,
        });
        for c in configs {
            let g = c.generator(here()).unwrap();
            let max_eval_len = 48;
            let symbols = g.symbols(max_eval_len);
            assert_eq!(symbols, c.symbols(max_eval_len, here()).unwrap());
            let set: BTreeSet<&String> = symbols.iter().collect();
            assert_eq!(set.len(), symbols.len(), "{}: duplicates", c.kind());
            assert!(!set.contains(&SEP.to_string()));
            let mut used = BTreeSet::new();
            let mut rng = Rng::new(5);
            for len in g.min_len()..=max_eval_len {
                for _ in 0..40 {
                    let ex = g.example(&mut rng, len);
                    for t in ex.prompt.iter().chain(&ex.answer).filter(|t| *t != SEP) {
                        assert!(set.contains(t), "{}: {t} not in symbols", c.kind());
                        used.insert(t.clone());
                    }
                }
            }
            // The symbols are not padded with tokens no example could contain.
            if matches!(c.kind(), "copy" | "reverse" | "sort") {
                assert_eq!(used.len(), symbols.len(), "{}", c.kind());
            }
        }
        let position = TaskConfig::Position {
            symbols: 3,
            min_len: 1,
            max_len: 4,
            max_index: 0,
        };
        let s = position.symbols(2, here()).unwrap();
        assert_eq!(s.len(), 3 + 16);
        assert_eq!(s[..4], ["s0", "s1", "s2", "i0"]);
        assert_eq!(position.symbols(20, here()).unwrap().last().unwrap(), "i19");
        let copy = TaskConfig::Copy {
            symbols: 12,
            min_len: 1,
            max_len: 4,
        };
        assert_eq!(copy.symbols(100, here()).unwrap()[10..], ["s10", "s11"]);
    }
}
