//! `pcfg`: Hupkes et al. 2020's PCFG SET ("Compositionality decomposed: how do neural networks
//! generalise?", JAIR), its productivity split, as Kazemnejad et al. 2023 run it (train on
//! sources of at most 8 functions, test on 9 and more). A source is a prefix expression of
//! string-edit functions over string arguments, without brackets; its target is the value:
//!
//! `append swap_first_last A7 B3 C12 , repeat D1 E4` -> `C12 B3 A7 D1 E4 D1 E4`
//!
//! The ten functions and their meaning are those of the generator
//! (MathijsMul/pcfg-set, `tasks/default.py`): unary `copy`, `reverse`, `shift` (the first
//! symbol to the end), `echo` (the last symbol once more), `swap_first_last`, `repeat` (twice);
//! binary `append` (`x , y` -> `x y`), `prepend` (`y x`), `remove_first` (`y`),
//! `remove_second` (`x`). The symbols are the letters A-Z, each numbered
//! `1..=alphabet_ratio` (the reference: 20, so 520 symbols); a string argument has 2-5 of them.
//! A source without brackets is unambiguous: a string argument runs to the next `,` or the end.
//!
//! Length = the number of functions in the source (the productivity split's measure, and
//! Kazemnejad's "category"). The released data is not generated here; it was made by running
//! the PCFG with random probabilities per sample, then "naturalised" to the distribution of
//! English sentence lengths and depths (`naturalize.py`, which needs a WMT file). ordo
//! generates an example of exactly `len` functions instead:
//!
//! * each function binary with the probability [`BINARY_SHARE`] gives for the source's count
//!   (the released sources' share of binary functions at that count: 14 % of one-function
//!   sources, 42-45 % of 3-8, falling to 24 % at 19 and, fitted, 10 % at 35; the
//!   naturalisation's doing, since the generator picks them evenly), then uniform among the
//!   binary or the unary ones (as released: each function is 9.8-10.2 % of the function tokens);
//! * a binary function's remaining functions split between its arguments uniformly; an
//!   argument without functions is a string of 2-5 symbols, each uniform;
//! * kept only if the source has at most [`MAX_SOURCE`] tokens (the released data's longest
//!   source, which its naturalisation produced) and the target at most `max_answer` tokens
//!   (ordo's bound, 128 by default: 0.1 % of the released sources of 1-22 functions have a
//!   longer target; its longest has 736), else drawn again.
//!
//! Training lengths are drawn as often as the released productivity data has them
//! ([`Generate::draw_length`], [`RELEASED_COUNTS`]): 3 and 4 functions most, 1 rarely.
//! At most [`MAX_FUNCTIONS`] functions (the productivity test's most; past it a source of at
//! most 71 tokens is too rare to draw). The golden test (`crates/tasks/tests/pcfg.rs`) holds
//! the interpreter to examples of the released data, and ordo's sources of each count to the
//! released ones' mean length and binary share.

use crate::rng::Rng;
use crate::{Example, Generate, SEP, Task, TaskConfigError, error, one};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// The unary functions, in the generator's order.
pub const UNARY: [&str; 6] = [
    "copy",
    "reverse",
    "shift",
    "echo",
    "swap_first_last",
    "repeat",
];
/// The binary functions, in the generator's order.
pub const BINARY: [&str; 4] = ["append", "prepend", "remove_first", "remove_second"];
/// The separator of a binary function's arguments.
pub const COMMA: &str = ",";
/// The longest source (the released PCFG SET's: 71 tokens).
pub const MAX_SOURCE: usize = 71;
/// The most functions a source has (the released productivity test's most).
pub const MAX_FUNCTIONS: usize = 35;
/// The smallest `max_answer` accepted: below it, long sources are rarely short enough to keep.
pub const MIN_MAX_ANSWER: usize = 32;

/// How many examples of each function count (index 0 = 1 function) PCFG SET's productivity
/// data has: for 9-35 its test set's counts (`data/pcfgset/productivity/test.src` of
/// i-machine-think/am-i-compositional, all 11,333 sources); for 1-8 the counts of the random
/// split's dev and test sets (14,581 sources; the productivity train set's sources are not in
/// the stored copy) scaled by 11,333 / 1,781, their ratio of sources with 9 or more functions
/// (the scaled total, 81,449, is within 0.6 % of the productivity train set's 81,010).
pub const RELEASED_COUNTS: [u32; MAX_FUNCTIONS] = [
    1432, 11899, 17989, 17467, 12287, 9513, 6153, 4709, // 1-8
    3232, 2296, 1738, 1175, 811, 631, 411, 271, 225, 154, 103, 68, 67, 46, 34, 18, 28, 5, 6, 5, 2,
    4, 0, 2, 0, 0, 1, // 9-35
];

/// The probability that a function of a source of `n` functions (index `n - 1`) is binary:
/// for 1-19 functions the released sources' share (`binary_fraction` in
/// `crates/tasks/tests/data/pcfg_reference.json`, over the random split's dev and test sets
/// for 1-8 and the productivity test for 9-19, each count 100 sources or more), rounded; for
/// 20-35 (fewer than 70 sources each) the least-squares line through the released shares
/// weighted by their counts, `0.225 - 0.0102 (n - 22.4)`.
pub const BINARY_SHARE: [f64; MAX_FUNCTIONS] = [
    0.14, 0.29, 0.42, 0.42, 0.45, 0.44, 0.43, 0.43, 0.39, 0.37, 0.35, 0.32, 0.31, 0.29, 0.28, 0.27,
    0.26, 0.26, 0.24, // 1-19
    0.25, 0.24, 0.23, 0.22, 0.21, 0.2, 0.19, 0.18, 0.17, 0.16, 0.15, 0.14, 0.13, 0.12, 0.11,
    0.1, // 20-35, fitted
];

fn eight() -> usize {
    8
}
fn twenty() -> usize {
    20
}
fn one_twenty_eight() -> usize {
    128
}

/// `kind = "pcfg"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PcfgTask {
    /// Fewest functions of a training source (default 1).
    #[serde(default = "one")]
    pub min_len: usize,
    /// Most functions of a training source (default 8, the productivity split).
    #[serde(default = "eight")]
    pub max_len: usize,
    /// Symbols per letter: `A1..A{ratio}`, .., `Z1..Z{ratio}` (default 20, the reference's).
    #[serde(default = "twenty")]
    pub alphabet_ratio: usize,
    /// Longest target kept (default 128; at least 32).
    #[serde(default = "one_twenty_eight")]
    pub max_answer: usize,
}

impl Task for PcfgTask {
    fn train_lengths(&self) -> (usize, usize) {
        (self.min_len, self.max_len)
    }
    /// At most: `len` functions, a comma per binary function (`< len`) and 5 symbols per string
    /// argument (`<= len + 1` of them), [`MAX_SOURCE`] in all, then `[SEP]`; `max_answer`.
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        let bound = len.checked_mul(7)?.checked_add(5)?;
        Some((bound.min(MAX_SOURCE) + 1, self.max_answer))
    }
    fn load(&self, _base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        if self.max_len > MAX_FUNCTIONS {
            return Err(error(
                "max_len",
                format!(
                    "expected at most {MAX_FUNCTIONS} functions (PCFG SET's most), found {}",
                    self.max_len
                ),
            ));
        }
        if !(1..=100).contains(&self.alphabet_ratio) {
            return Err(error(
                "alphabet_ratio",
                format!("expected 1 to 100, found {}", self.alphabet_ratio),
            ));
        }
        if self.max_answer < MIN_MAX_ANSWER {
            return Err(error(
                "max_answer",
                format!(
                    "expected at least {MIN_MAX_ANSWER} (shorter targets are too rare among \
                     long sources to draw), found {}",
                    self.max_answer
                ),
            ));
        }
        let symbols = (b'A'..=b'Z')
            .flat_map(|c| (1..=self.alphabet_ratio).map(move |i| format!("{}{i}", c as char)))
            .collect();
        Ok(Arc::new(Pcfg {
            symbols,
            max_answer: self.max_answer,
        }))
    }
}

#[derive(Debug)]
struct Pcfg {
    /// The string arguments' symbols, letter-major (`A1, A2, .., B1, ..`) as the reference
    /// builds its alphabet.
    symbols: Vec<String>,
    max_answer: usize,
}

/// What a source's parse computes at each function: its value, or only its length.
trait Meaning {
    type Value;
    fn string(&self, symbols: &[String]) -> Self::Value;
    fn unary(&self, f: &str, x: Self::Value) -> Self::Value;
    fn binary(&self, f: &str, x: Self::Value, y: Self::Value) -> Self::Value;
}

/// The value itself.
struct Value;

impl Meaning for Value {
    type Value = Vec<String>;
    fn string(&self, symbols: &[String]) -> Vec<String> {
        symbols.to_vec()
    }
    fn unary(&self, f: &str, mut x: Vec<String>) -> Vec<String> {
        match f {
            "copy" => {}
            "reverse" => x.reverse(),
            "shift" => x.rotate_left(1),
            "echo" => x.push(x[x.len() - 1].clone()),
            "swap_first_last" => {
                let last = x.len() - 1;
                x.swap(0, last);
            }
            "repeat" => x.extend_from_within(..),
            _ => unreachable!("not a unary function: {f}"),
        }
        x
    }
    fn binary(&self, f: &str, mut x: Vec<String>, mut y: Vec<String>) -> Vec<String> {
        match f {
            "append" => {
                x.extend(y);
                x
            }
            "prepend" => {
                y.extend(x);
                y
            }
            "remove_first" => y,
            "remove_second" => x,
            _ => unreachable!("not a binary function: {f}"),
        }
    }
}

/// The value's length only (saturating), to refuse a long target before building it.
struct Length;

impl Meaning for Length {
    type Value = u64;
    fn string(&self, symbols: &[String]) -> u64 {
        symbols.len() as u64
    }
    fn unary(&self, f: &str, x: u64) -> u64 {
        match f {
            "echo" => x.saturating_add(1),
            "repeat" => x.saturating_mul(2),
            _ => x,
        }
    }
    fn binary(&self, f: &str, x: u64, y: u64) -> u64 {
        match f {
            "append" | "prepend" => x.saturating_add(y),
            "remove_first" => y,
            _ => x,
        }
    }
}

/// Whether `t` is one of the ten function names.
pub fn is_function(t: &str) -> bool {
    UNARY.contains(&t) || BINARY.contains(&t)
}

/// Deepest nesting [`parse`] follows (a source has at most [`MAX_FUNCTIONS`]).
const MAX_DEPTH: usize = 256;

/// The expression starting at `tokens[*at]`, advancing `at` past it; `None` if it is malformed.
fn parse<M: Meaning>(m: &M, tokens: &[String], at: &mut usize, depth: usize) -> Option<M::Value> {
    let t = tokens.get(*at)?.as_str();
    if depth > MAX_DEPTH || t == COMMA {
        return None;
    }
    if UNARY.contains(&t) {
        *at += 1;
        let x = parse(m, tokens, at, depth + 1)?;
        return Some(m.unary(t, x));
    }
    if BINARY.contains(&t) {
        *at += 1;
        let x = parse(m, tokens, at, depth + 1)?;
        if tokens.get(*at).map(String::as_str) != Some(COMMA) {
            return None;
        }
        *at += 1;
        let y = parse(m, tokens, at, depth + 1)?;
        return Some(m.binary(t, x, y));
    }
    let start = *at;
    while tokens
        .get(*at)
        .is_some_and(|t| t != COMMA && !is_function(t))
    {
        *at += 1;
    }
    Some(m.string(&tokens[start..*at]))
}

/// The meaning of a whole source, `None` unless it is one well-formed expression.
fn meaning<M: Meaning>(m: &M, source: &[String]) -> Option<M::Value> {
    let mut at = 0;
    let v = parse(m, source, &mut at, 0)?;
    (at == source.len()).then_some(v)
}

impl Pcfg {
    /// Appends an expression of exactly `n` functions (a string argument if `n == 0`), each
    /// binary with probability `binary`; `false` as soon as the source passes [`MAX_SOURCE`]
    /// tokens.
    fn expression(&self, rng: &mut Rng, n: usize, binary: f64, out: &mut Vec<String>) -> bool {
        if n == 0 {
            for _ in 0..rng.range(2, 5) {
                out.push(rng.pick(&self.symbols).clone());
            }
            return out.len() <= MAX_SOURCE;
        }
        if !rng.chance(binary) {
            out.push(rng.pick(&UNARY).to_string());
            return self.expression(rng, n - 1, binary, out);
        }
        out.push(rng.pick(&BINARY).to_string());
        let first = rng.range(0, n - 1);
        if !self.expression(rng, first, binary, out) {
            return false;
        }
        out.push(COMMA.into());
        self.expression(rng, n - 1 - first, binary, out)
    }
}

impl Generate for Pcfg {
    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        assert!(
            (1..=MAX_FUNCTIONS).contains(&len),
            "pcfg has 1 to {MAX_FUNCTIONS} functions, not {len}"
        );
        let mut source = Vec::with_capacity(MAX_SOURCE + 1);
        loop {
            source.clear();
            if !self.expression(rng, len, BINARY_SHARE[len - 1], &mut source) {
                continue;
            }
            let long = meaning(&Length, &source).expect("a generated source parses");
            if long > self.max_answer as u64 {
                continue;
            }
            let answer = meaning(&Value, &source).expect("a generated source parses");
            source.push(SEP.into());
            return Example {
                prompt: source,
                answer,
            };
        }
    }
    /// As often as the released productivity data has each count ([`RELEASED_COUNTS`]);
    /// uniform if it has none in `lo..=hi`.
    fn draw_length(&self, rng: &mut Rng, lo: usize, hi: usize) -> usize {
        let weights = &RELEASED_COUNTS[lo - 1..hi];
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        if total == 0 {
            return rng.range(lo, hi);
        }
        let mut k = (rng.next_u64() % total) as i64;
        for (i, &w) in weights.iter().enumerate() {
            k -= w as i64;
            if k < 0 {
                return lo + i;
            }
        }
        hi
    }
    fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        let source = crate::kazemnejad::before_sep(prompt);
        // A hand-written source may nest `repeat` past any memory: its length first.
        if meaning(&Length, source)? > 1 << 20 {
            return None;
        }
        meaning(&Value, source)
    }
    fn eval_lengths(&self, max_len: usize, max_factor: usize) -> Vec<usize> {
        (1..=(max_factor * max_len).min(MAX_FUNCTIONS)).collect()
    }
    fn eval_unsupported(&self, len: usize, _count: usize) -> Option<String> {
        (len > MAX_FUNCTIONS).then(|| {
            format!("pcfg sources have at most {MAX_FUNCTIONS} functions (PCFG SET's most)")
        })
    }
    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        let mut s: Vec<String> = UNARY.iter().chain(&BINARY).map(|f| f.to_string()).collect();
        s.push(COMMA.into());
        s.extend(self.symbols.iter().cloned());
        s
    }
    fn vocab_estimate(&self, _max_eval_len: usize) -> u64 {
        (UNARY.len() + BINARY.len() + 1 + self.symbols.len()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    fn loaded() -> Arc<dyn Generate> {
        let task: PcfgTask = toml::from_str("").unwrap();
        task.load(Path::new(".")).unwrap()
    }

    /// Each function on a hand-checked argument, as `tasks/default.py` defines it.
    #[test]
    fn functions_mean_what_the_generator_says() {
        let g = loaded();
        for (source, target) in [
            ("copy A1 B2 C3", "A1 B2 C3"),
            ("reverse A1 B2 C3", "C3 B2 A1"),
            ("shift A1 B2 C3", "B2 C3 A1"),
            ("echo A1 B2 C3", "A1 B2 C3 C3"),
            ("swap_first_last A1 B2 C3", "C3 B2 A1"),
            ("swap_first_last A1 B2 C3 D4", "D4 B2 C3 A1"),
            ("repeat A1 B2", "A1 B2 A1 B2"),
            ("append A1 B2 , C3 D4", "A1 B2 C3 D4"),
            ("prepend A1 B2 , C3 D4", "C3 D4 A1 B2"),
            ("remove_first A1 B2 , C3 D4", "C3 D4"),
            ("remove_second A1 B2 , C3 D4", "A1 B2"),
            // The first argument of a binary function ends at its comma, nested or not.
            (
                "append swap_first_last A7 B3 C12 , repeat D1 E4",
                "C12 B3 A7 D1 E4 D1 E4",
            ),
            ("prepend append A1 , B2 , C3", "C3 A1 B2"),
        ] {
            let mut prompt = words(source);
            prompt.push(SEP.into());
            assert_eq!(g.answer_for(&prompt), Some(words(target)), "{source}");
        }
        for malformed in [
            "append A1 B2",
            "A1 , B2",
            ", A1",
            "copy",
            "append A1 B2 copy C3 , D4",
        ] {
            assert_eq!(g.answer_for(&words(malformed)), None, "{malformed}");
        }
        let bomb = format!("{}A1", "repeat ".repeat(40));
        assert_eq!(g.answer_for(&words(&bomb)), None);
    }

    #[test]
    fn examples_have_their_length_and_bounds() {
        let task: PcfgTask = toml::from_str("max_answer = 32").unwrap();
        let g = task.load(Path::new(".")).unwrap();
        let mut rng = Rng::new(5);
        for len in [1, 2, 8, 9, 20, MAX_FUNCTIONS] {
            let (prompt, answer) = task.example_size(len).unwrap();
            for _ in 0..20 {
                let ex = g.example(&mut rng, len);
                let functions = ex.prompt.iter().filter(|t| is_function(t)).count();
                assert_eq!(functions, len);
                assert!(ex.prompt.len() <= prompt && ex.answer.len() <= answer);
                assert!(ex.prompt.len() <= MAX_SOURCE + 1);
                assert_eq!(g.answer_for(&ex.prompt), Some(ex.answer));
            }
        }
    }

    #[test]
    fn training_lengths_follow_the_released_counts() {
        let g = loaded();
        let mut rng = Rng::new(1);
        let mut seen = [0u32; 8];
        for _ in 0..20_000 {
            seen[g.draw_length(&mut rng, 1, 8) - 1] += 1;
        }
        let total: u32 = RELEASED_COUNTS[..8].iter().sum();
        for (i, &s) in seen.iter().enumerate() {
            let want = RELEASED_COUNTS[i] as f64 / total as f64;
            let got = s as f64 / 20_000.0;
            assert!(
                (got - want).abs() < 0.01,
                "{} functions: {got} vs {want}",
                i + 1
            );
        }
        // A range without released data (31-35 has 3 sources) still draws inside it.
        for _ in 0..100 {
            assert!((33..=34).contains(&g.draw_length(&mut rng, 33, 34)));
        }
    }

    #[test]
    fn checks_name_the_field() {
        let err = |s: &str| {
            let task: PcfgTask = toml::from_str(s).unwrap();
            task.load(Path::new(".")).unwrap_err()
        };
        assert_eq!(err("max_len = 36").field, "max_len");
        assert_eq!(err("alphabet_ratio = 0").field, "alphabet_ratio");
        let e = err("max_answer = 8");
        assert_eq!(e.field, "max_answer");
        assert!(
            e.message.contains("32") && e.message.contains("found 8"),
            "{e}"
        );
    }
}
