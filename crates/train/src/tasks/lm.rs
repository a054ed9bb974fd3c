//! `lm`: language modelling on a text file.
//!
//! The corpus is read line by line; each line is tokenised (whitespace words, or a Hugging Face
//! `tokenizer.json` named in the config) and followed by [`EOS`]. The last `valid_percent` of the
//! lines are held out. An example of length `n` is a window of `n + 1` consecutive tokens: the
//! model reads `n` and predicts each next one, so the loss is the per-token language-model loss
//! and `exp(loss)` the perplexity. Held-out evaluation cuts the held-out stream into
//! non-overlapping windows (the protocol of Press et al. 2022).

use super::{Example, TaskConfigError};
use crate::rng::Rng;
use std::path::Path;
use std::sync::Arc;
use tokenizers::Tokenizer;

/// End of a corpus line.
pub const EOS: &str = "[EOS]";

/// A tokenised corpus, split into training and held-out streams of token strings.
#[derive(Debug)]
pub struct Corpus {
    pub train: Vec<String>,
    pub valid: Vec<String>,
    /// Distinct tokens (word-level), in order of first appearance; empty with a tokenizer file.
    pub words: Vec<String>,
}

fn err(field: &'static str, message: String) -> TaskConfigError {
    TaskConfigError { field, message }
}

/// Reads and tokenises `corpus` (and checks `tokenizer`, if given).
pub fn load(
    corpus: &Path,
    tokenizer: Option<&Path>,
    valid_percent: usize,
) -> Result<Arc<Corpus>, TaskConfigError> {
    let text = std::fs::read_to_string(corpus).map_err(|e| {
        err(
            "corpus",
            format!("cannot read corpus file `{}`: {e}", corpus.display()),
        )
    })?;
    let tokenizer = tokenizer
        .map(|p| {
            Tokenizer::from_file(p).map_err(|e| {
                err(
                    "tokenizer",
                    format!("`{}` is not a valid tokenizer.json: {e}", p.display()),
                )
            })
        })
        .transpose()?;
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
    let train = tokenize(&lines[..lines.len() - held])?;
    let valid = tokenize(&lines[lines.len() - held..])?;
    Ok(Arc::new(Corpus {
        train,
        valid,
        words,
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

    /// Windows of `len + 1` tokens starting every `stride` tokens of the held-out stream (at
    /// most `max`), each with the number of leading predictions already scored by an earlier
    /// window (0 for the first, `len - stride` for the others).
    pub fn held_out_sliding(&self, len: usize, stride: usize, max: usize) -> Vec<(Example, usize)> {
        assert!(
            stride >= 1 && stride <= len,
            "stride {stride} must be in 1..={len}"
        );
        (0..)
            .map(|k| k * stride)
            .take_while(|&start| start + len < self.valid.len())
            .take(max)
            .map(|start| {
                let w = &self.valid[start..start + len + 1];
                let skip = if start == 0 { 0 } else { len - stride };
                (
                    Example {
                        prompt: vec![w[0].clone()],
                        answer: w[1..].to_vec(),
                    },
                    skip,
                )
            })
            .collect()
    }

    /// Non-overlapping windows of `len + 1` tokens covering the held-out stream (at most `max`).
    pub fn held_out_windows(&self, len: usize, max: usize) -> Vec<Example> {
        self.valid
            .chunks_exact(len + 1)
            .take(max)
            .map(|w| Example {
                prompt: vec![w[0].clone()],
                answer: w[1..].to_vec(),
            })
            .collect()
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
        }
    }

    #[test]
    fn non_overlapping_windows_tile_the_held_out_text() {
        let c = corpus(20);
        let w = c.held_out_windows(4, 100);
        assert_eq!(w.len(), 4);
        assert_eq!(w[1].prompt, vec!["5"]);
        assert_eq!(w[1].answer, vec!["6", "7", "8", "9"]);
    }

    #[test]
    fn sliding_windows_score_every_held_out_token_once() {
        let c = corpus(23);
        let (len, stride) = (8, 3);
        let windows = c.held_out_sliding(len, stride, 100);
        let mut scored: Vec<String> = Vec::new();
        for (k, (e, skip)) in windows.iter().enumerate() {
            assert_eq!(e.answer.len(), len);
            assert_eq!(*skip, if k == 0 { 0 } else { len - stride });
            scored.extend(e.answer[*skip..].iter().cloned());
        }
        // Tokens 1..=n-1 of the stream, each exactly once, in order, up to the last full window.
        let want: Vec<String> = (1..=scored.len()).map(|i| i.to_string()).collect();
        assert_eq!(scored, want);
        assert!(scored.len() >= 23 - 1 - stride);
        // Every scored token after the first window has at least len - stride tokens of context.
        assert_eq!(windows[1].0.prompt, vec!["3"]);
    }
}
