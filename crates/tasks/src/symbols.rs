//! The symbol tasks: `copy`, `reverse`, `sort` and `position`, over symbols `s0 .. s{k-1}`
//! drawn uniformly. Each task has a sampling function (`copy`, ...) and a pure function of the
//! drawn symbol indices (`copy_of`, ...) that builds the example.
//!
//! * `copy`: prompt `x1 .. xn [SEP]`, answer `x1 .. xn`.
//! * `reverse`: prompt `x1 .. xn [SEP]`, answer `xn .. x1`.
//! * `sort`: prompt `x1 .. xn [SEP]`, answer the `x` sorted by symbol index (numerically:
//!   `s2` before `s10`). The control task where the order of the input does not matter.
//! * `position`: prompt `x1 .. xn [SEP] ik`, answer `x_k` (0-based index token `ik`, `k`
//!   uniform in `0..n`).
//!
//! `copy`, `reverse` and `sort` share one config ([`SymbolsConfig`]); `position` adds
//! `max_index`.

use super::{Example, Generate, SEP, Task, TaskConfigError, error, one, sixteen};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The `[task]` fields of `copy`, `reverse` and `sort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolsConfig {
    /// Number of distinct symbols `s0 .. s{symbols-1}` (default 16).
    #[serde(default = "sixteen")]
    pub symbols: usize,
    /// Shortest training length (default 1).
    #[serde(default = "one")]
    pub min_len: usize,
    /// Longest training length (default 16).
    #[serde(default = "sixteen")]
    pub max_len: usize,
}

/// `copy`: prompt `x1 .. xn [SEP]`, answer `x1 .. xn`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CopyTask(pub SymbolsConfig);

/// `reverse`: prompt `x1 .. xn [SEP]`, answer `xn .. x1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReverseTask(pub SymbolsConfig);

/// `sort`: prompt `x1 .. xn [SEP]`, answer the `x` sorted by symbol index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SortTask(pub SymbolsConfig);

/// `position`: prompt `x1 .. xn [SEP] ik`, answer `x_k`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PositionTask {
    #[serde(default = "sixteen")]
    pub symbols: usize,
    #[serde(default = "one")]
    pub min_len: usize,
    #[serde(default = "sixteen")]
    pub max_len: usize,
    /// Number of index tokens `i0 ..` in the vocabulary; 0 (the default) means `4 * max_len`.
    /// [`Generate::symbols`] adds more if the evaluation lengths need them.
    #[serde(default)]
    pub max_index: usize,
}

fn check_symbols(symbols: usize) -> Result<(), TaskConfigError> {
    if symbols < 2 {
        return Err(error(
            "symbols",
            format!("expected at least 2 symbols, found {symbols}"),
        ));
    }
    Ok(())
}

/// `x1 .. xn [SEP] -> n tokens`
fn same_length(len: usize) -> Option<(usize, usize)> {
    Some((len.checked_add(1)?, len))
}

/// `copy`, `reverse` or `sort` loaded: the example is a function of the drawn symbols.
#[derive(Debug)]
struct Drawn {
    symbols: usize,
    of: fn(&[usize]) -> Example,
}

impl Drawn {
    fn load(
        config: &SymbolsConfig,
        of: fn(&[usize]) -> Example,
    ) -> Result<Arc<dyn Generate>, TaskConfigError> {
        check_symbols(config.symbols)?;
        Ok(Arc::new(Drawn {
            symbols: config.symbols,
            of,
        }))
    }
}

impl Generate for Drawn {
    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        (self.of)(&draw(rng, self.symbols, len))
    }

    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        (0..self.symbols).map(symbol).collect()
    }

    fn vocab_estimate(&self, _max_eval_len: usize) -> u64 {
        self.symbols as u64
    }
}

/// `copy`, `reverse` and `sort` differ only in the answer they draw for the same symbols.
macro_rules! drawn_task {
    ($($task:ty => $answer:expr),* $(,)?) => {$(
        impl Task for $task {
            fn train_lengths(&self) -> (usize, usize) {
                (self.0.min_len, self.0.max_len)
            }
            fn example_size(&self, len: usize) -> Option<(usize, usize)> {
                same_length(len)
            }
            fn load(&self, _base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
                Drawn::load(&self.0, $answer)
            }
        }
    )*};
}

drawn_task! {
    CopyTask => copy_of,
    ReverseTask => reverse_of,
    SortTask => sort_of,
}

/// `position` loaded.
#[derive(Debug)]
struct Position {
    symbols: usize,
    index_tokens: usize,
}

impl Task for PositionTask {
    fn train_lengths(&self) -> (usize, usize) {
        (self.min_len, self.max_len)
    }

    /// `x1 .. xn [SEP] ik -> x_k`
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        Some((len.checked_add(2)?, 1))
    }

    fn load(&self, _base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        let PositionTask {
            symbols,
            max_len,
            max_index,
            ..
        } = *self;
        check_symbols(symbols)?;
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
        Ok(Arc::new(Position {
            symbols,
            index_tokens,
        }))
    }
}

impl Generate for Position {
    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        position(rng, self.symbols, len)
    }

    /// `s0 .. s{symbols-1}`, then `i0 .. i{n-1}` with `n = max(index tokens, max_eval_len)`.
    fn symbols(&self, max_eval_len: usize) -> Vec<String> {
        (0..self.symbols)
            .map(symbol)
            .chain((0..self.index_tokens.max(max_eval_len)).map(index_token))
            .collect()
    }

    fn vocab_estimate(&self, max_eval_len: usize) -> u64 {
        self.symbols as u64 + self.index_tokens.max(max_eval_len) as u64
    }
}

/// The token of symbol `i`: `s{i}`.
pub fn symbol(i: usize) -> String {
    format!("s{i}")
}

/// The token of index `k` for `position`: `i{k}`.
pub fn index_token(k: usize) -> String {
    format!("i{k}")
}

/// `len` symbol indices uniform in `0..symbols`.
fn draw(rng: &mut Rng, symbols: usize, len: usize) -> Vec<usize> {
    (0..len).map(|_| rng.below(symbols)).collect()
}

fn tokens(xs: &[usize]) -> Vec<String> {
    xs.iter().map(|&x| symbol(x)).collect()
}

fn with_sep(xs: &[usize]) -> Vec<String> {
    let mut prompt = tokens(xs);
    prompt.push(SEP.to_string());
    prompt
}

pub fn copy_of(xs: &[usize]) -> Example {
    Example {
        prompt: with_sep(xs),
        answer: tokens(xs),
    }
}

pub fn reverse_of(xs: &[usize]) -> Example {
    let reversed: Vec<usize> = xs.iter().rev().copied().collect();
    Example {
        prompt: with_sep(xs),
        answer: tokens(&reversed),
    }
}

pub fn sort_of(xs: &[usize]) -> Example {
    let mut sorted = xs.to_vec();
    sorted.sort_unstable();
    Example {
        prompt: with_sep(xs),
        answer: tokens(&sorted),
    }
}

/// Panics if `k >= xs.len()`.
pub fn position_of(xs: &[usize], k: usize) -> Example {
    let mut prompt = with_sep(xs);
    prompt.push(index_token(k));
    Example {
        prompt,
        answer: vec![symbol(xs[k])],
    }
}

pub fn copy(rng: &mut Rng, symbols: usize, len: usize) -> Example {
    copy_of(&draw(rng, symbols, len))
}

pub fn reverse(rng: &mut Rng, symbols: usize, len: usize) -> Example {
    reverse_of(&draw(rng, symbols, len))
}

pub fn sort(rng: &mut Rng, symbols: usize, len: usize) -> Example {
    sort_of(&draw(rng, symbols, len))
}

/// Panics if `len == 0`.
pub fn position(rng: &mut Rng, symbols: usize, len: usize) -> Example {
    let xs = draw(rng, symbols, len);
    let k = rng.below(len);
    position_of(&xs, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn hand_checked_answers() {
        let xs = [10, 2, 1, 10, 0];
        let prompt = toks("s10 s2 s1 s10 s0 [SEP]");
        assert_eq!(
            copy_of(&xs),
            Example {
                prompt: prompt.clone(),
                answer: toks("s10 s2 s1 s10 s0")
            }
        );
        assert_eq!(
            reverse_of(&xs),
            Example {
                prompt: prompt.clone(),
                answer: toks("s0 s10 s1 s2 s10")
            }
        );
        // Numeric order: s2 < s10 (string order would put "s10" before "s2").
        assert_eq!(
            sort_of(&xs),
            Example {
                prompt,
                answer: toks("s0 s1 s2 s10 s10")
            }
        );
        assert_eq!(
            position_of(&[3, 7, 5], 1),
            Example {
                prompt: toks("s3 s7 s5 [SEP] i1"),
                answer: toks("s7")
            }
        );
        assert_eq!(position_of(&[3, 7, 5], 0).answer, toks("s3"));
        assert_eq!(position_of(&[3, 7, 5], 2).prompt.last().unwrap(), "i2");
    }

    #[test]
    fn sampled_examples_are_consistent() {
        let mut rng = Rng::new(21);
        for len in 1..=40 {
            let c = copy(&mut rng, 16, len);
            assert_eq!(c.prompt.len(), len + 1);
            assert_eq!(c.prompt[len], SEP);
            assert_eq!(c.answer, c.prompt[..len]);

            let r = reverse(&mut rng, 16, len);
            let mut back = r.answer.clone();
            back.reverse();
            assert_eq!(back, r.prompt[..len]);

            let s = sort(&mut rng, 16, len);
            let index = |t: &String| t[1..].parse::<usize>().unwrap();
            assert!(s.answer.windows(2).all(|w| index(&w[0]) <= index(&w[1])));
            let mut input = s.prompt[..len].to_vec();
            let mut output = s.answer.clone();
            input.sort();
            output.sort();
            assert_eq!(input, output, "sort keeps the multiset");

            let p = position(&mut rng, 16, len);
            assert_eq!(p.prompt.len(), len + 2);
            let k: usize = p.prompt[len + 1][1..].parse().unwrap();
            assert!(k < len);
            assert_eq!(p.answer, [p.prompt[k].clone()]);
        }
    }

    #[test]
    fn draws_cover_symbols_and_positions() {
        let mut rng = Rng::new(22);
        let mut symbols = [0usize; 5];
        let mut positions = [0usize; 8];
        for _ in 0..4000 {
            let p = position(&mut rng, 5, 8);
            for t in &p.prompt[..8] {
                symbols[t[1..].parse::<usize>().unwrap()] += 1;
            }
            positions[p.prompt[9][1..].parse::<usize>().unwrap()] += 1;
        }
        assert!(
            symbols.iter().all(|&c| (5800..7000).contains(&c)),
            "{symbols:?}"
        );
        assert!(
            positions.iter().all(|&c| (400..600).contains(&c)),
            "{positions:?}"
        );
    }
}
