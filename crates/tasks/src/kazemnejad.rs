//! The tasks of Kazemnejad et al. 2023 ("The Impact of Positional Encoding on Length
//! Generalization in Transformers", NeurIPS; McGill-NLP/length-generalization,
//! `scripts/dataset_builders/` and `src/data/data_instance_processor/`), generated here from a
//! seed rather than read from its files, with its value ranges and length measures:
//!
//! * `addition`: `a + b` in decimal digits -> the sum's digits. The reference's length bins are
//!   the digit counts of both operands (train: both in 1-8; test: one in 9-16); ordo's length
//!   is the longer operand's digit count, the other's uniform in `1..=len`, either side (so a
//!   length past training has one operand past it, as the reference's test bins). Operands of
//!   `d` digits are uniform in `[10^(d-1), 10^d)` (`[0, 10)` for one digit).
//! * `summation`: `len` values in 1-9 -> their sum modulo 10 (`s2s_sum`, `modulo_factor = 10`).
//! * `polynomial_evaluation`: `len` terms `c * x ** d` (`c` in -3..3, `d` in 0..3) at `x` in
//!   -2..2 -> the value modulo 10, non-negative (`s2s_poly`, `modulo_factor = 10`).
//! * `parity`: `len` bits -> their parity (`s2s_parity`); the generator of `parity_check` with
//!   Kazemnejad's training lengths.
//! * `lego`: `len` clauses `v0 = +1 , v1 = - v0 , ..` over distinct letters (a random
//!   permutation of a-z), then `[SEP]` and a variable of the second half (as the reference
//!   queries) -> its value `+1`/`-1` (the reference writes the value's index `1`/`0`).
//!   At most 26 clauses (one letter each).
//! * `scan`: Lake & Baroni 2018's SCAN, its grammar enumerated (all 20,910 commands, with their
//!   action sequences), length = the action sequence's length: the length split (Kazemnejad:
//!   train on actions of at most 25, test on longer, up to 48). A training length is drawn as
//!   the reference's data is, uniform over the commands whose actions have a training length
//!   ([`Generate::draw_length`]); lengths no command has are not evaluated.
//!
//! The reference's prompts wrap the same content in words (`Compute 1 2 + 3 ? The answer is
//! 1 5 .`); ordo keeps the content tokens and its `[SEP]`.

use crate::rng::Rng;
use crate::{Example, Generate, SEP, Task, TaskConfigError, error, one};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

fn eight() -> usize {
    8
}
fn twenty_five() -> usize {
    25
}

/// The training lengths of every task here (Kazemnejad's default split: 1-8, SCAN 1-25).
macro_rules! lengths_config {
    ($(#[doc = $doc:literal])* $name:ident, $max:literal) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            /// Shortest training length (default 1).
            #[serde(default = "one")]
            pub min_len: usize,
            /// Longest training length (Kazemnejad's split).
            #[serde(default = $max)]
            pub max_len: usize,
        }
    };
}

lengths_config!(
    /// `kind = "addition"`.
    AdditionTask,
    "eight"
);
lengths_config!(
    /// `kind = "summation"`.
    SummationTask,
    "eight"
);
lengths_config!(
    /// `kind = "polynomial_evaluation"`.
    PolynomialTask,
    "eight"
);
lengths_config!(
    /// `kind = "parity"`.
    ParityTask,
    "eight"
);
lengths_config!(
    /// `kind = "lego"`.
    LegoTask,
    "eight"
);
lengths_config!(
    /// `kind = "scan"`.
    ScanTask,
    "twenty_five"
);

/// The prompt up to its `[SEP]`.
pub(crate) fn before_sep(prompt: &[String]) -> &[String] {
    let end = prompt.iter().position(|t| t == SEP).unwrap_or(prompt.len());
    &prompt[..end]
}

fn digits_of(tokens: &[String]) -> Option<Vec<u8>> {
    tokens
        .iter()
        .map(|t| t.parse::<u8>().ok().filter(|d| *d < 10))
        .collect()
}

fn digit_tokens(ds: &[u8]) -> Vec<String> {
    ds.iter().map(|d| d.to_string()).collect()
}

/// Big-endian decimal digits of `a + b` (big-endian inputs).
pub fn add_decimal(a: &[u8], b: &[u8]) -> Vec<u8> {
    let (mut out, mut carry) = (Vec::new(), 0u8);
    let (mut i, mut j) = (a.len(), b.len());
    while i > 0 || j > 0 || carry > 0 {
        let x = if i > 0 {
            i -= 1;
            a[i]
        } else {
            0
        };
        let y = if j > 0 {
            j -= 1;
            b[j]
        } else {
            0
        };
        let s = x + y + carry;
        out.push(s % 10);
        carry = s / 10;
    }
    out.reverse();
    while out.len() > 1 && out[0] == 0 {
        out.remove(0);
    }
    if out.is_empty() {
        out.push(0);
    }
    out
}

/// A uniform number of `d` digits, big-endian (no leading zero unless `d = 1`).
fn number(rng: &mut Rng, d: usize) -> Vec<u8> {
    (0..d)
        .map(|k| {
            if k == 0 && d > 1 {
                1 + rng.below(9) as u8
            } else {
                rng.below(10) as u8
            }
        })
        .collect()
}

#[derive(Debug)]
struct Addition;

impl Task for AdditionTask {
    fn train_lengths(&self) -> (usize, usize) {
        (self.min_len, self.max_len)
    }
    /// At most: `len + 1 + len` digits and `+`, then `[SEP]`; a sum of `len + 1` digits.
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        Some((len.checked_mul(2)?.checked_add(2)?, len.checked_add(1)?))
    }
    fn load(&self, _base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        Ok(Arc::new(Addition))
    }
}

impl Generate for Addition {
    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        let long = number(rng, len);
        let digits = 1 + rng.below(len);
        let short = number(rng, digits);
        let (a, b) = if rng.below(2) == 0 {
            (long, short)
        } else {
            (short, long)
        };
        let mut prompt = digit_tokens(&a);
        prompt.push("+".into());
        prompt.extend(digit_tokens(&b));
        prompt.push(SEP.into());
        Example {
            prompt,
            answer: digit_tokens(&add_decimal(&a, &b)),
        }
    }
    fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        let input = before_sep(prompt);
        let plus = input.iter().position(|t| t == "+")?;
        let (a, b) = (digits_of(&input[..plus])?, digits_of(&input[plus + 1..])?);
        Some(digit_tokens(&add_decimal(&a, &b)))
    }
    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        let mut s: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        s.push("+".into());
        s
    }
    fn vocab_estimate(&self, _max_eval_len: usize) -> u64 {
        11
    }
}

/// A task whose example is `len` drawn values and one answer token: `values [SEP] -> f(values)`.
#[derive(Debug)]
struct Values {
    /// The values' tokens, drawn uniformly.
    alphabet: &'static [&'static str],
    answer: fn(&[usize]) -> usize,
    answers: usize,
}

impl Generate for Values {
    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        let picks: Vec<usize> = (0..len).map(|_| rng.below(self.alphabet.len())).collect();
        let mut prompt: Vec<String> = picks
            .iter()
            .map(|&i| self.alphabet[i].to_string())
            .collect();
        prompt.push(SEP.into());
        Example {
            prompt,
            answer: vec![(self.answer)(&picks).to_string()],
        }
    }
    fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        let picks: Option<Vec<usize>> = before_sep(prompt)
            .iter()
            .map(|t| self.alphabet.iter().position(|a| a == t))
            .collect();
        Some(vec![(self.answer)(&picks?).to_string()])
    }
    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        let mut s: Vec<String> = self.alphabet.iter().map(|t| t.to_string()).collect();
        for a in 0..self.answers {
            let a = a.to_string();
            if !s.contains(&a) {
                s.push(a);
            }
        }
        s
    }
    fn vocab_estimate(&self, max_eval_len: usize) -> u64 {
        self.symbols(max_eval_len).len() as u64
    }
}

const ONE_TO_NINE: [&str; 9] = ["1", "2", "3", "4", "5", "6", "7", "8", "9"];
const BITS: [&str; 2] = ["0", "1"];

/// `values` are indices into `1..=9`: the sum of the values modulo 10.
fn sum_mod_10(picks: &[usize]) -> usize {
    picks.iter().map(|&i| i + 1).sum::<usize>() % 10
}

fn parity_of(picks: &[usize]) -> usize {
    picks.iter().sum::<usize>() % 2
}

macro_rules! values_task {
    ($task:ty, $alphabet:expr, $answer:expr, $answers:expr) => {
        impl Task for $task {
            fn train_lengths(&self) -> (usize, usize) {
                (self.min_len, self.max_len)
            }
            fn example_size(&self, len: usize) -> Option<(usize, usize)> {
                Some((len.checked_add(1)?, 1))
            }
            fn load(&self, _base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
                Ok(Arc::new(Values {
                    alphabet: &$alphabet,
                    answer: $answer,
                    answers: $answers,
                }))
            }
        }
    };
}

values_task!(SummationTask, ONE_TO_NINE, sum_mod_10, 10);
values_task!(ParityTask, BITS, parity_of, 2);

/// The value modulo 10 (non-negative) of `Σ c_k x^d_k`.
pub fn polynomial(coeffs: &[i64], degrees: &[u32], x: i64) -> i64 {
    coeffs
        .iter()
        .zip(degrees)
        .map(|(c, &d)| c * x.pow(d))
        .sum::<i64>()
        .rem_euclid(10)
}

#[derive(Debug)]
struct Polynomial;

const COEFFS: [&str; 7] = ["-3", "-2", "-1", "0", "1", "2", "3"];

impl Task for PolynomialTask {
    fn train_lengths(&self) -> (usize, usize) {
        (self.min_len, self.max_len)
    }
    /// `x = X ;` then `len` terms `c * x ** d` joined by `+`, `[SEP]`.
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        Some((len.checked_mul(6)?.checked_add(4)?, 1))
    }
    fn load(&self, _base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        Ok(Arc::new(Polynomial))
    }
}

impl Generate for Polynomial {
    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        let coeffs: Vec<i64> = (0..len).map(|_| rng.below(7) as i64 - 3).collect();
        let degrees: Vec<u32> = (0..len).map(|_| rng.below(4) as u32).collect();
        let x = rng.below(5) as i64 - 2;
        let mut prompt: Vec<String> = ["x", "=", &x.to_string(), ";"].map(String::from).to_vec();
        for (k, (c, d)) in coeffs.iter().zip(&degrees).enumerate() {
            if k > 0 {
                prompt.push("+".into());
            }
            prompt.extend([
                c.to_string(),
                "*".into(),
                "x".into(),
                "**".into(),
                d.to_string(),
            ]);
        }
        prompt.push(SEP.into());
        Example {
            prompt,
            answer: vec![polynomial(&coeffs, &degrees, x).to_string()],
        }
    }
    fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        let input = before_sep(prompt);
        let x: i64 = input.get(2)?.parse().ok()?;
        let terms: Vec<&[String]> = input.get(4..)?.split(|t| t == "+").collect();
        let mut coeffs = Vec::new();
        let mut degrees = Vec::new();
        for term in terms {
            coeffs.push(term.first()?.parse().ok()?);
            degrees.push(term.get(4)?.parse().ok()?);
        }
        Some(vec![polynomial(&coeffs, &degrees, x).to_string()])
    }
    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        let mut s: Vec<String> = COEFFS.iter().map(|t| t.to_string()).collect();
        for d in 4..10 {
            s.push(d.to_string());
        }
        s.extend(["x", "=", ";", "+", "*", "**"].map(String::from));
        s
    }
    fn vocab_estimate(&self, max_eval_len: usize) -> u64 {
        self.symbols(max_eval_len).len() as u64
    }
}

const LETTERS: usize = 26;

fn letter(i: usize) -> String {
    ((b'a' + i as u8) as char).to_string()
}

#[derive(Debug)]
struct Lego;

impl Task for LegoTask {
    fn train_lengths(&self) -> (usize, usize) {
        (self.min_len, self.max_len)
    }
    /// `v = ±1`, then `, v = ± u` per further clause, `[SEP] q`.
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        let clauses = len.checked_sub(1)?.checked_mul(5)?;
        Some((clauses.checked_add(5)?, 1))
    }
    fn load(&self, _base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        if self.max_len > LETTERS {
            return Err(error(
                "max_len",
                format!(
                    "expected at most {LETTERS} clauses (one letter each), found {}",
                    self.max_len
                ),
            ));
        }
        Ok(Arc::new(Lego))
    }
}

impl Generate for Lego {
    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        let values: Vec<bool> = (0..len).map(|_| rng.below(2) == 1).collect();
        let mut vars: Vec<usize> = (0..LETTERS).collect();
        rng.shuffle(&mut vars);
        let value = |v: bool| if v { "+1" } else { "-1" }.to_string();
        let mut prompt = vec![letter(vars[0]), "=".into(), value(values[0])];
        for i in 1..len {
            let sign = if values[i] == values[i - 1] { "+" } else { "-" };
            prompt.extend([
                ",".into(),
                letter(vars[i]),
                "=".into(),
                sign.into(),
                letter(vars[i - 1]),
            ]);
        }
        // The reference queries the variables of the second half: indices from ⌈len/2⌉.
        let first = len.div_ceil(2).min(len - 1);
        let query = first + rng.below(len - first);
        prompt.push(SEP.into());
        prompt.push(letter(vars[query]));
        Example {
            prompt,
            answer: vec![value(values[query])],
        }
    }
    /// Evaluates the clauses in order (each refers to one defined before it) and reads the
    /// queried variable.
    fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        let sep = prompt.iter().position(|t| t == SEP)?;
        let mut known: std::collections::HashMap<&str, i8> = Default::default();
        for clause in prompt[..sep].split(|t| t == ",") {
            let value = match clause {
                [v, eq, value] if eq == "=" => (v, if value == "+1" { 1 } else { -1 }),
                [v, eq, sign, u] if eq == "=" => {
                    let u = *known.get(u.as_str())?;
                    (v, if sign == "+" { u } else { -u })
                }
                _ => return None,
            };
            known.insert(value.0.as_str(), value.1);
        }
        let q = known.get(prompt.get(sep + 1)?.as_str())?;
        Some(vec![if *q > 0 { "+1" } else { "-1" }.to_string()])
    }
    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        let mut s: Vec<String> = (0..LETTERS).map(letter).collect();
        s.extend(["=", ",", "+", "-", "+1", "-1"].map(String::from));
        s
    }
    fn vocab_estimate(&self, _max_eval_len: usize) -> u64 {
        LETTERS as u64 + 6
    }
    fn eval_unsupported(&self, len: usize, _count: usize) -> Option<String> {
        (len > LETTERS).then(|| format!("lego has {LETTERS} variables (one letter each)"))
    }
}

/// SCAN: every command of the grammar with its action sequence.
#[derive(Debug)]
struct Scan {
    /// `(command, actions)`, in the grammar's order.
    commands: Vec<(Vec<&'static str>, Vec<&'static str>)>,
    /// The commands of each action length, by index.
    by_length: std::collections::BTreeMap<usize, Vec<usize>>,
}

/// Lake & Baroni 2018, Figure 6 (the phrase-structure grammar and its interpretation):
/// `C -> S and S | S after S | S`, `S -> V twice | V thrice | V`, `V -> D opposite | D around
/// | D | U` over `D -> U left | U right | turn left | turn right`, `U -> walk | look | run |
/// jump`; `x and y` is `x y`, `x after y` is `y x`.
pub fn scan_commands() -> Vec<(Vec<&'static str>, Vec<&'static str>)> {
    type Phrase = (Vec<&'static str>, Vec<&'static str>);
    let primitives = [
        ("walk", "I_WALK"),
        ("look", "I_LOOK"),
        ("run", "I_RUN"),
        ("jump", "I_JUMP"),
    ];
    let turns = [("left", "I_TURN_LEFT"), ("right", "I_TURN_RIGHT")];
    let mut verbs: Vec<Phrase> = Vec::new();
    // V -> U
    for (u, a) in primitives {
        verbs.push((vec![u], vec![a]));
    }
    // V -> U dir | U opposite dir | U around dir, and the same with `turn`.
    for (u, a) in primitives
        .iter()
        .map(|&(u, a)| (u, Some(a)))
        .chain([("turn", None)])
    {
        for (dir, t) in turns {
            let step = |n: usize| -> Vec<&'static str> {
                let mut v = vec![t; n];
                v.extend(a);
                v
            };
            verbs.push((vec![u, dir], step(1)));
            verbs.push((vec![u, "opposite", dir], step(2)));
            let around: Vec<&'static str> = (0..4).flat_map(|_| step(1)).collect();
            verbs.push((vec![u, "around", dir], around));
        }
    }
    let mut sentences: Vec<Phrase> = Vec::new();
    for (words, actions) in &verbs {
        sentences.push((words.clone(), actions.clone()));
        for (times, n) in [("twice", 2), ("thrice", 3)] {
            let mut w = words.clone();
            w.push(times);
            sentences.push((w, actions.repeat(n)));
        }
    }
    let mut commands: Vec<Phrase> = sentences.clone();
    for (x, ax) in &sentences {
        for (y, ay) in &sentences {
            let mut and = x.clone();
            and.push("and");
            and.extend(y);
            commands.push((and, [ax.clone(), ay.clone()].concat()));
            let mut after = x.clone();
            after.push("after");
            after.extend(y);
            commands.push((after, [ay.clone(), ax.clone()].concat()));
        }
    }
    commands
}

/// The longest SCAN action sequence.
pub const SCAN_MAX_ACTIONS: usize = 48;

impl Task for ScanTask {
    fn train_lengths(&self) -> (usize, usize) {
        (self.min_len, self.max_len)
    }
    /// At most 9 command words (`V around dir twice and V around dir thrice`), `[SEP]`.
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        len.checked_mul(2)?; // a bound on every count that follows from `len`
        Some((10, len))
    }
    fn load(&self, _base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        let commands = scan_commands();
        let mut by_length: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, (_, actions)) in commands.iter().enumerate() {
            by_length.entry(actions.len()).or_default().push(i);
        }
        let scan = Scan {
            commands,
            by_length,
        };
        if scan.count_between(self.min_len, self.max_len) == 0 {
            return Err(error(
                "max_len",
                format!(
                    "no SCAN command has an action sequence of {}..={} actions",
                    self.min_len, self.max_len
                ),
            ));
        }
        Ok(Arc::new(scan))
    }
}

impl Scan {
    fn count_between(&self, lo: usize, hi: usize) -> usize {
        self.by_length.range(lo..=hi).map(|(_, v)| v.len()).sum()
    }
}

impl Generate for Scan {
    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        let of_len = self
            .by_length
            .get(&len)
            .unwrap_or_else(|| panic!("no SCAN command has {len} actions"));
        let (words, actions) = &self.commands[of_len[rng.below(of_len.len())]];
        let mut prompt: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        prompt.push(SEP.into());
        Example {
            prompt,
            answer: actions.iter().map(|a| a.to_string()).collect(),
        }
    }
    /// Uniform over the commands whose action sequence has a length in `lo..=hi` (the
    /// reference's data: every command of the split once), returned as that length.
    fn draw_length(&self, rng: &mut Rng, lo: usize, hi: usize) -> usize {
        let mut k = rng.below(self.count_between(lo, hi).max(1));
        for (&len, v) in self.by_length.range(lo..=hi) {
            if k < v.len() {
                return len;
            }
            k -= v.len();
        }
        hi
    }
    fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        let words = before_sep(prompt);
        let (_, actions) = self
            .commands
            .iter()
            .find(|(c, _)| c.iter().eq(words.iter()))?;
        Some(actions.iter().map(|a| a.to_string()).collect())
    }
    fn eval_lengths(&self, max_len: usize, max_factor: usize) -> Vec<usize> {
        let hi = (max_factor * max_len).min(SCAN_MAX_ACTIONS);
        self.by_length.range(1..=hi).map(|(&l, _)| l).collect()
    }
    fn eval_unsupported(&self, len: usize, _count: usize) -> Option<String> {
        (!self.by_length.contains_key(&len))
            .then(|| format!("no SCAN command has an action sequence of {len} actions"))
    }
    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        let mut s: Vec<String> = Vec::new();
        for (words, actions) in &self.commands {
            for t in words.iter().chain(actions) {
                if !s.iter().any(|x| x == t) {
                    s.push(t.to_string());
                }
            }
        }
        s
    }
    fn vocab_estimate(&self, _max_eval_len: usize) -> u64 {
        19
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_answers() {
        assert_eq!(add_decimal(&[9, 9], &[1]), vec![1, 0, 0]);
        assert_eq!(add_decimal(&[0], &[0]), vec![0]);
        // -3·2³ + 2·2⁰ + 1·2² = -24 + 2 + 4 = -18 -> 2 (mod 10, non-negative)
        assert_eq!(polynomial(&[-3, 2, 1], &[3, 0, 2], 2), 2);
        assert_eq!(sum_mod_10(&[8, 8, 0]), (9 + 9 + 1) % 10);
    }

    /// Lake & Baroni's grammar has 20,910 commands; their interpretation, on the paper's
    /// examples; the length split's test lengths are the paper's (24-48, not every length).
    #[test]
    fn scan_matches_the_paper() {
        let commands = scan_commands();
        assert_eq!(commands.len(), 20_910);
        let find = |s: &str| {
            let w: Vec<&str> = s.split(' ').collect();
            commands.iter().find(|(c, _)| *c == w).unwrap().1.join(" ")
        };
        assert_eq!(find("jump"), "I_JUMP");
        assert_eq!(find("jump left"), "I_TURN_LEFT I_JUMP");
        assert_eq!(
            find("jump around right"),
            "I_TURN_RIGHT I_JUMP I_TURN_RIGHT I_JUMP I_TURN_RIGHT I_JUMP I_TURN_RIGHT I_JUMP"
        );
        assert_eq!(find("turn left twice"), "I_TURN_LEFT I_TURN_LEFT");
        assert_eq!(
            find("jump opposite right after walk around right"),
            "I_TURN_RIGHT I_WALK I_TURN_RIGHT I_WALK I_TURN_RIGHT I_WALK I_TURN_RIGHT I_WALK I_TURN_RIGHT I_TURN_RIGHT I_JUMP"
        );
        assert_eq!(find("walk and look thrice"), "I_WALK I_LOOK I_LOOK I_LOOK");
        let mut lengths: Vec<usize> = commands.iter().map(|(_, a)| a.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        let long: Vec<usize> = lengths.iter().copied().filter(|&l| l > 22).collect();
        assert_eq!(long, [24, 25, 26, 27, 28, 30, 32, 33, 36, 40, 48]);
        assert_eq!(*lengths.last().unwrap(), SCAN_MAX_ACTIONS);
    }
}
