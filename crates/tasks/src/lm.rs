//! `lm`: language modelling on a text file.
//!
//! The corpus is read line by line; each line is tokenised (whitespace words, byte-pair encoding
//! trained here, or a Hugging Face `tokenizer.json` named in the config) and followed by [`EOS`]. The last `valid_percent` of the
//! lines are held out. An example of length `n` is a window of `n + 1` consecutive tokens: the
//! model reads `n` and predicts each next one, so the loss is the per-token language-model loss
//! and `exp(loss)` the perplexity.
//!
//! Held-out evaluation (the protocol of fairseq's `eval_lm` and of Press et al. 2022, with one
//! change for the tail): the scored text is the first `examples × context` tokens of the
//! held-out stream (all of it when it is shorter), the same tokens at every context length, so
//! that perplexities at L and 8L are measured on the same text. At context `n` it is cut into
//! consecutive blocks of `n` targets; a window reads the token before its block (the `[EOS]` that
//! ends the training stream, before the first block) and the block's first `n - 1` tokens, and
//! predicts the block, so every scored token is a target exactly once. The tail, fewer than `n`
//! targets, is scored by a last window of `n` that ends at the text's end, whose first
//! predictions (already scored) are left out. With a sliding stride `s`, the first window scores
//! its `n` targets and each later one, `s` tokens further on, its last `s` (fairseq's
//! `--context-window`); the tail likewise.
//!
//! BPE (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units") is
//! trained with the `tokenizers` crate on the training lines only. Words start with `▁` (the
//! SentencePiece convention: a space becomes `▁`), so word boundaries survive in the pieces. Its
//! alphabet is every character of the corpus (so held-out text never needs `[UNK]`); merges are
//! learned until the vocabulary, special tokens included, reaches the configured size (or no
//! pair is left). Training is deterministic (tested), so a run's `tokenizer.json` and a
//! retrained one agree.
use super::{Example, Generate, Headline, Task, TaskConfigError};
use crate::rng::Rng;
use crate::vocab::{Vocab, VocabError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokenizers::Tokenizer;

/// The `[task]` fields of `lm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lm {
    /// The corpus, one sentence or document per line (relative to the config file).
    pub corpus: PathBuf,
    /// `"words"` (the default: whitespace words of the corpus), `"bpe"` (byte-pair encoding
    /// trained on the training lines) or the path of a Hugging Face `tokenizer.json`.
    #[serde(default)]
    pub tokenizer: LmTokenizer,
    /// Vocabulary size of a `"bpe"` tokenizer, special tokens included (default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<usize>,
    /// Training context in tokens (the task's length).
    #[serde(default = "sixty_four")]
    pub context: usize,
    /// Percentage of lines (the last ones) held out for evaluation.
    #[serde(default = "ten")]
    pub valid_percent: usize,
}

fn sixty_four() -> usize {
    64
}
fn ten() -> usize {
    10
}

/// How an `lm` task splits its corpus into tokens. Written as one string in the config:
/// `"words"`, `"bpe"` or the path of a `tokenizer.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum LmTokenizer {
    /// Whitespace-separated words of the corpus.
    #[default]
    Words,
    /// Byte-pair encoding trained on the training lines of the corpus (see the module docs).
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

impl Task for Lm {
    /// The context is the one training length.
    fn train_lengths(&self) -> (usize, usize) {
        (self.context, self.context)
    }

    /// One token, then the `len` it predicts.
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        Some((1, len))
    }

    fn load(&self, base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        let Lm {
            corpus,
            tokenizer,
            vocab_size,
            context,
            valid_percent,
        } = self;
        let (context, valid_percent) = (*context, *valid_percent);
        if context < 2 {
            return Err(err(
                "context",
                format!("expected at least 2 tokens, found {context}"),
            ));
        }
        let source = match (tokenizer, *vocab_size) {
            (LmTokenizer::Words, None) => Source::Words,
            (LmTokenizer::Bpe, size) => {
                let size = size.unwrap_or(DEFAULT_BPE_VOCAB);
                if size < MIN_BPE_VOCAB {
                    return Err(err(
                        "vocab_size",
                        format!(
                            "expected at least {MIN_BPE_VOCAB} tokens for a BPE vocabulary, found {size}"
                        ),
                    ));
                }
                Source::Bpe(size)
            }
            (LmTokenizer::File(path), None) => Source::File(base_dir.join(path)),
            (_, Some(_)) => {
                return Err(err(
                    "vocab_size",
                    "only used with tokenizer = \"bpe\"; remove it or set tokenizer = \"bpe\""
                        .to_string(),
                ));
            }
        };
        let data = load(&base_dir.join(corpus), &source, valid_percent)?;
        if data.train.len() <= 8 * context + 1 || data.valid.len() <= context + 1 {
            return Err(err(
                "context",
                format!(
                    "the corpus has {} training and {} held-out tokens; too few for a context of {context}",
                    data.train.len(),
                    data.valid.len()
                ),
            ));
        }
        Ok(Arc::new(Loaded {
            corpus: data,
            tokenizer_file: match source {
                Source::File(path) => Some(path),
                _ => None,
            },
            context,
        }))
    }

    fn input_paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        match &mut self.tokenizer {
            LmTokenizer::File(file) => vec![("corpus", &mut self.corpus), ("tokenizer", file)],
            LmTokenizer::Words | LmTokenizer::Bpe => vec![("corpus", &mut self.corpus)],
        }
    }

    /// A `"bpe"` tokenizer's vocabulary size defaults to [`DEFAULT_BPE_VOCAB`].
    fn resolve_defaults(&mut self) {
        if self.tokenizer == LmTokenizer::Bpe && self.vocab_size.is_none() {
            self.vocab_size = Some(DEFAULT_BPE_VOCAB);
        }
    }

    /// A BPE or file tokenizer becomes the run's `tokenizer.json`; whitespace words stay.
    fn read_run_tokenizer(&mut self, path: &Path) {
        match self.tokenizer {
            LmTokenizer::Bpe | LmTokenizer::File(_) => {
                self.tokenizer = LmTokenizer::File(path.to_path_buf());
                self.vocab_size = None;
            }
            LmTokenizer::Words => {}
        }
    }

    /// A held-out text has no single right continuation: perplexity.
    fn headline(&self) -> Headline {
        Headline::Perplexity
    }

    fn sliding_windows(&self) -> bool {
        true
    }

    /// Evaluated at 1, 2, 4 and 8 times the context (its `eval_lengths`).
    fn uses_max_factor(&self) -> bool {
        false
    }
}

/// An `lm` task loaded: its tokenised corpus, and the tokenizer file it read, if any.
#[derive(Debug)]
pub struct Loaded {
    pub corpus: Arc<Corpus>,
    tokenizer_file: Option<PathBuf>,
    /// The training context: an evaluation of `examples` scores `examples × context` tokens.
    context: usize,
}

impl Loaded {
    /// How many held-out tokens an evaluation of `count` examples scores at every length:
    /// `count` training-context windows' worth, or the whole held-out text if it is shorter.
    pub fn scored_tokens(&self, count: usize) -> usize {
        count
            .saturating_mul(self.context)
            .min(self.corpus.valid.len())
    }
}

impl Generate for Loaded {
    fn corpus(&self) -> Option<&Corpus> {
        Some(&self.corpus)
    }

    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        self.corpus.window(rng, len, false)
    }

    /// A window of the held-out text.
    fn held_out(&self, rng: &mut Rng, len: usize) -> Example {
        self.corpus.window(rng, len, true)
    }

    /// The corpus's words (none with a tokenizer), then [`EOS`].
    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        let mut words = self.corpus.words.clone();
        words.push(EOS.to_string());
        words
    }

    fn vocab_estimate(&self, _max_eval_len: usize) -> u64 {
        match &self.corpus.trained {
            Some(t) => t.get_vocab_size(true) as u64,
            None => {
                let distinct: std::collections::HashSet<&String> =
                    self.corpus.train.iter().chain(&self.corpus.valid).collect();
                distinct.len() as u64
            }
        }
    }

    /// The tokenizer file's vocabulary (plus [`EOS`]), the trained BPE's (which has every
    /// special token already), or the corpus's words.
    fn vocab(&self, max_eval_len: usize) -> Result<Vocab, VocabError> {
        match (&self.tokenizer_file, &self.corpus.trained) {
            (Some(file), _) => Vocab::load_adding(file, &[EOS]),
            (None, Some(trained)) => Vocab::from_tokenizer(trained.clone()),
            (None, None) => Ok(Vocab::word_level(&self.symbols(max_eval_len))),
        }
    }

    /// Perplexity at context L, 2L, 4L and 8L (Press et al. 2022), whatever `max_factor`.
    fn eval_lengths(&self, max_len: usize, _max_factor: usize) -> Vec<usize> {
        // (`max_factor` is refused for lm: Task::uses_max_factor.)
        [1, 2, 4, 8].iter().map(|f| f * max_len).collect()
    }

    fn eval_unsupported(&self, len: usize, count: usize) -> Option<String> {
        let valid = self.corpus.valid.len();
        if valid < len + 2 {
            // (The evaluator also reads one held-out window of `len + 1` tokens.)
            return Some(format!(
                "the held-out text has {valid} tokens, too few for windows of {len}"
            ));
        }
        let scored = self.scored_tokens(count);
        (scored < len).then(|| {
            format!(
                "the scored text is {scored} tokens ({count} examples × context {}, at most the \
                 {} held-out tokens), fewer than one window of {len}",
                self.context,
                self.corpus.valid.len()
            )
        })
    }

    /// Windows over the first [`Loaded::scored_tokens`] held-out tokens, every one of them a
    /// target exactly once (see the module docs): consecutive blocks of `len`, or with a
    /// `sliding` stride, windows `stride` apart scoring their last `stride` predictions.
    fn eval_set(
        &self,
        _rng: &mut Rng,
        len: usize,
        count: usize,
        sliding: Option<usize>,
    ) -> Vec<(Example, usize)> {
        let stride = sliding.map_or(len, |s| s.clamp(1, len));
        self.corpus
            .held_out_windows(len, stride, self.scored_tokens(count))
    }
}

/// End of a corpus line.
pub const EOS: &str = "[EOS]";

/// Default size of a trained BPE vocabulary.
pub const DEFAULT_BPE_VOCAB: usize = 128;
/// The special tokens a trained BPE vocabulary starts with.
const BPE_SPECIALS: [&str; 4] = [
    crate::vocab::PAD,
    crate::vocab::UNK,
    crate::vocab::MASK,
    EOS,
];
/// Smallest BPE vocabulary accepted: the special tokens and a few characters.
pub const MIN_BPE_VOCAB: usize = 8;

/// Where an `lm` task's tokens come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Whitespace words.
    Words,
    /// BPE trained on the training lines, with this vocabulary size.
    Bpe(usize),
    /// A Hugging Face `tokenizer.json`.
    File(PathBuf),
}

/// A tokenised corpus, split into training and held-out streams of token strings.
#[derive(Debug)]
pub struct Corpus {
    pub train: Vec<String>,
    pub valid: Vec<String>,
    /// Distinct tokens (word-level), in order of first appearance; empty with a tokenizer file.
    pub words: Vec<String>,
    /// The BPE tokenizer trained on the training lines (`Source::Bpe`).
    pub trained: Option<Tokenizer>,
}

/// BPE training failed (the `tokenizers` crate's error).
#[derive(Debug, thiserror::Error)]
#[error("cannot train a BPE tokenizer: {0}")]
pub struct BpeError(tokenizers::Error);

/// Trains a BPE tokenizer (see the module docs) on `train`, with `alphabet` as its characters.
pub fn train_bpe(
    train: &[&str],
    alphabet: &[&str],
    vocab_size: usize,
) -> Result<Tokenizer, BpeError> {
    use tokenizers::models::TrainerWrapper;
    use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
    // Every id is fixed before merging starts: the specials, then the sorted alphabet. (A
    // `</w>` suffix, as in the paper, would add `x</w>` tokens in hash-map order, and merge
    // ties, broken by id, would then differ from one training to the next.)
    let chars: std::collections::BTreeSet<char> = alphabet
        .iter()
        .flat_map(|l| l.chars())
        .filter(|&c| c != ' ')
        .chain(['▁'])
        .collect();
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(0)
        .show_progress(false)
        .special_tokens(
            BPE_SPECIALS
                .iter()
                .map(|t| tokenizers::AddedToken::from(t.to_string(), true))
                .collect(),
        )
        .initial_alphabet(chars.into_iter().collect())
        .limit_alphabet(usize::MAX)
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    let metaspace = Metaspace::new('▁', PrependScheme::Always, true);
    tokenizer.with_pre_tokenizer(Some(metaspace.clone()));
    tokenizer.with_decoder(Some(metaspace));
    tokenizer
        .train(&mut trainer, train.iter())
        .map_err(BpeError)?;
    Ok(tokenizer)
}

fn err(field: &'static str, message: String) -> TaskConfigError {
    TaskConfigError { field, message }
}

/// Reads and tokenises `corpus` (and checks `tokenizer`, if given).
pub fn load(
    corpus: &Path,
    source: &Source,
    valid_percent: usize,
) -> Result<Arc<Corpus>, TaskConfigError> {
    let text = crate::read_input(corpus).map_err(|e| {
        err(
            "corpus",
            format!("cannot read corpus file `{}`: {e}", corpus.display()),
        )
    })?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() < 10 {
        return Err(err(
            "corpus",
            format!(
                "`{}` has {} non-empty lines; expected at least 10",
                corpus.display(),
                lines.len()
            ),
        ));
    }
    if !(1..=50).contains(&valid_percent) {
        return Err(err(
            "valid_percent",
            format!("expected 1 to 50, found {valid_percent}"),
        ));
    }
    let held = (lines.len() * valid_percent).div_ceil(100);
    let (train_lines, valid_lines) = lines.split_at(lines.len() - held);
    let tokenizer = match source {
        Source::Words => None,
        Source::File(p) => {
            crate::check_regular(p)
                .map_err(|e| err("tokenizer", format!("cannot read `{}`: {e}", p.display())))?;
            Some(Tokenizer::from_file(p).map_err(|e| {
                err(
                    "tokenizer",
                    format!("`{}` is not a valid tokenizer.json: {e}", p.display()),
                )
            })?)
        }
        Source::Bpe(size) => Some(
            train_bpe(train_lines, &lines, *size).map_err(|e| err("tokenizer", e.to_string()))?,
        ),
    };
    let mut words = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut tokenize = |lines: &[&str]| -> Result<Vec<String>, TaskConfigError> {
        let mut out = Vec::new();
        for line in lines {
            match &tokenizer {
                Some(t) => {
                    let enc = t.encode(*line, false).map_err(|e| {
                        err("tokenizer", format!("cannot tokenise the corpus: {e}"))
                    })?;
                    out.extend(enc.get_tokens().iter().cloned());
                }
                None => {
                    for w in line.split_whitespace() {
                        if seen.insert(w.to_string()) {
                            words.push(w.to_string());
                        }
                        out.push(w.to_string());
                    }
                }
            }
            out.push(EOS.to_string());
        }
        Ok(out)
    };
    let train = tokenize(train_lines)?;
    let valid = tokenize(valid_lines)?;
    Ok(Arc::new(Corpus {
        train,
        valid,
        words,
        trained: matches!(source, Source::Bpe(_)).then(|| tokenizer.expect("trained")),
    }))
}

impl Corpus {
    /// A random window of `len + 1` tokens from the training (or held-out) stream.
    pub fn window(&self, rng: &mut Rng, len: usize, held_out: bool) -> Example {
        let stream = if held_out { &self.valid } else { &self.train };
        assert!(
            stream.len() > len + 1,
            "the corpus is shorter than a window of {len} tokens"
        );
        let start = rng.below(stream.len() - len - 1);
        Example {
            prompt: vec![stream[start].clone()],
            answer: stream[start + 1..start + len + 1].to_vec(),
        }
    }

    /// The held-out stream's token `i` of the text a window reads: the `[EOS]` that ends the
    /// training stream for `i = 0`, then held-out token `i - 1`.
    fn read(&self, i: usize) -> String {
        match i {
            0 => EOS.to_string(),
            _ => self.valid[i - 1].clone(),
        }
    }

    /// Windows of `len` targets covering the first `scored` held-out tokens, each target scored
    /// exactly once and in order, each window with the number of its leading predictions left
    /// unscored. The first window predicts targets `0..len`; each next one starts `stride`
    /// tokens later and scores its last `stride`; when the last full window stops short of
    /// `scored`, one more window ends exactly at `scored` and scores only what is left. A window
    /// predicting targets `a..a + len` reads the token before `a` (see [`Corpus::read`]) and
    /// targets `a..a + len - 1`. Empty when `scored < len` (there is no full window).
    pub fn held_out_windows(
        &self,
        len: usize,
        stride: usize,
        scored: usize,
    ) -> Vec<(Example, usize)> {
        assert!(
            (1..=len).contains(&stride),
            "stride {stride} must be in 1..={len}"
        );
        let scored = scored.min(self.valid.len());
        if scored < len {
            return Vec::new();
        }
        let window = |start: usize, skip: usize| {
            (
                Example {
                    prompt: vec![self.read(start)],
                    answer: self.valid[start..start + len].to_vec(),
                },
                skip,
            )
        };
        let mut out = vec![window(0, 0)];
        let mut end = len; // targets 0..end are scored
        while end + stride <= scored {
            out.push(window(end + stride - len, len - stride));
            end += stride;
        }
        if end < scored {
            out.push(window(scored - len, len - (scored - end)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus(n: usize) -> Corpus {
        Corpus {
            train: vec![],
            valid: (0..n).map(|i| i.to_string()).collect(),
            words: vec![],
            trained: None,
        }
    }

    /// The targets a set of windows scores, in order, with the token each scored prediction
    /// was read right after (the token before the target in the text the windows read).
    fn scored(windows: &[(Example, usize)]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (e, skip) in windows {
            let read: Vec<&String> = e.prompt.iter().chain(&e.answer).collect();
            for (before, target) in read.iter().zip(&e.answer).skip(*skip) {
                out.push(((*before).clone(), target.clone()));
            }
        }
        out
    }

    #[test]
    fn every_token_of_the_scored_text_is_a_target_exactly_once_at_every_length() {
        let c = corpus(23);
        for scored_tokens in [4, 16, 20, 23, 100] {
            let n = scored_tokens.min(23);
            // The text predicted: held-out tokens 0..n, each read right after the one before it
            // (after [EOS] for the first).
            let want: Vec<(String, String)> = (0..n).map(|i| (c.read(i), i.to_string())).collect();
            for len in 1..=n {
                for stride in 1..=len {
                    let w = c.held_out_windows(len, stride, scored_tokens);
                    assert!(
                        w.iter()
                            .all(|(e, _)| e.answer.len() == len && e.prompt.len() == 1)
                    );
                    assert_eq!(scored(&w), want, "len {len}, stride {stride}, n {n}");
                }
            }
            assert!(c.held_out_windows(n + 1, 1, scored_tokens).is_empty());
        }
    }

    #[test]
    fn blocks_read_the_token_before_them_and_the_tail_is_scored_in_a_full_window() {
        let c = corpus(10);
        let w = c.held_out_windows(4, 4, 10);
        let starts: Vec<(Vec<String>, usize)> = w
            .iter()
            .map(|(e, skip)| (vec![e.prompt[0].clone(), e.answer[0].clone()], *skip))
            .collect();
        let s = |a: &str, b: &str| vec![a.to_string(), b.to_string()];
        assert_eq!(
            starts,
            [(s(EOS, "0"), 0), (s("3", "4"), 0), (s("5", "6"), 2)],
            "blocks 0..4 and 4..8, then the tail 8..10 scored in the window of 6..10"
        );
    }

    #[test]
    fn sliding_windows_give_every_scored_token_at_least_len_minus_stride_of_context() {
        let c = corpus(23);
        let (len, stride) = (8, 3);
        let w = c.held_out_windows(len, stride, 23);
        for (k, (e, skip)) in w.iter().enumerate() {
            assert_eq!(e.answer.len(), len);
            if k > 0 {
                assert!(*skip >= len - stride, "window {k} skips {skip}");
            }
        }
        assert_eq!(w[1].0.prompt, vec!["2"]);
        assert_eq!(w[1].1, len - stride);
    }

    fn lines() -> Vec<String> {
        let lexicon = crate::Lexicon::builtin();
        crate::corpus(&lexicon, 1, 400, 5, 12)
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn bpe_training_is_deterministic_and_its_tokens_spell_the_words() {
        let lines = lines();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let a = train_bpe(&refs, &refs, 64).unwrap();
        let b = train_bpe(&refs, &refs, 64).unwrap();
        // Two trainings (each with its own hash seeds) give the same file.
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        assert_eq!(a.get_vocab_size(true), 64);
        for (i, t) in BPE_SPECIALS.iter().enumerate() {
            assert_eq!(a.token_to_id(t), Some(i as u32), "{t}");
        }
        // Pieces joined give back the line, words marked by their leading `▁`.
        let line = refs[0];
        let pieces = a.encode(line, false).unwrap().get_tokens().to_vec();
        assert!(pieces.len() > line.split_whitespace().count(), "{pieces:?}");
        assert_eq!(pieces.concat(), format!("▁{}", line.replace(' ', "▁")));
        // Frequent words of the grammar become one token each.
        let ids = a.encode("the every", false).unwrap();
        assert_eq!(ids.get_tokens(), ["▁the", "▁every"]);
        assert_eq!(a.decode(ids.get_ids(), true).unwrap(), "the every");
    }

    #[test]
    fn a_large_bpe_vocabulary_ends_with_whole_words() {
        let lines = lines();
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let t = train_bpe(&refs, &refs, 4096).unwrap();
        // Merging stops when every word is one token; the vocabulary is smaller than asked.
        assert!(t.get_vocab_size(true) < 4096);
        for line in &refs {
            let n = t.encode(*line, false).unwrap().get_tokens().len();
            assert_eq!(n, line.split_whitespace().count(), "{line}");
        }
    }
}
