//! The 15 tasks of Delétang et al. 2023 ("Neural Networks and the Chomsky Hierarchy", ICLR),
//! which Ruoss et al. 2023 run with randomized positions: generators as
//! google-deepmind/randomized_positional_encodings writes them (`tasks/`), in three files by
//! the reference's levels: [`regular`] (even_pairs, modular_arithmetic, parity_check,
//! cycle_navigation), [`dcf`] (stack_manipulation, reverse_string, modular_arithmetic_brackets,
//! solve_equation) and [`cs`] (duplicate_string, missing_duplicate_string, odds_first,
//! binary_addition, binary_multiplication, compute_sqrt, bucket_sort). Parameters default to
//! the reference's `TASK_BUILDERS` (`experiments/constants.py`): modulus 5, binary strings,
//! `mult = true` for the bracketed arithmetic, 5 symbols for bucket_sort, a cycle of 5.
//!
//! An example is the reference's input tape, then `[SEP]`, as its prompt, and the reference's
//! output as its answer: a class (one token) or a string of the reference's output length.
//! An encoder (`model.mode = "bidirectional"`, the reference's setting) then reads `input [SEP]
//! [MASK] * |output|`, as the reference reads the input tape and `output_length` empty tokens,
//! and predicts the output at the masked positions; the `[SEP]` is ordo's (one extra token).
//! Tokens are the reference's symbols: digits for values and bits, `+ - * ( ) x =` for
//! operators, `POP PUSH0 PUSH1` for the stack, `end` for the reference's termination class `2`
//! and `?`/`_` for missing_duplicate_string's placeholder and padding (`2`, `3`).
//!
//! The reference's metric is the per-token accuracy of the output with, for the three tasks
//! whose output is padded after a termination token (stack_manipulation, binary_addition,
//! binary_multiplication), the padding left out (`accuracy_mask`): the answer keeps the
//! padding (trained on, as the reference trains on every output position), and
//! [`Generate::scored_answer`] tells the evaluator to score only up to the termination token,
//! in token accuracy and exact match alike.

use crate::rng::Rng;
use crate::{Example, Generate, SEP, TaskConfigError, error};
use std::fmt::Debug;

pub mod cs;
pub mod dcf;
pub mod regular;

/// The suite's `kind`s, in the reference's order (`TASK_BUILDERS`); the `tasks!` list holds
/// them in this order (a test checks it).
pub const KINDS: [&str; 15] = [
    "even_pairs",
    "modular_arithmetic",
    "parity_check",
    "cycle_navigation",
    "stack_manipulation",
    "reverse_string",
    "modular_arithmetic_brackets",
    "solve_equation",
    "duplicate_string",
    "missing_duplicate_string",
    "odds_first",
    "binary_addition",
    "binary_multiplication",
    "compute_sqrt",
    "bucket_sort",
];

/// The reference's longest training length (Ruoss et al. 2023 train on 1..=40).
pub(crate) fn forty() -> usize {
    40
}

/// One task of the suite: what its examples are, as pure functions of the generator.
pub(crate) trait Rule: Debug + Send + Sync + 'static {
    /// The input tape of one example of length `len`, drawn as the reference draws it.
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String>;
    /// The output for an input tape: every task of the suite is a function of its input
    /// (the golden test holds it to the reference's examples).
    fn answer(&self, input: &[String]) -> Vec<String>;
    /// The input tape's length for a requested `len` (the reference's own adjustments).
    fn input_len(&self, len: usize) -> usize {
        len
    }
    /// The output's length for a requested `len` (the reference's `output_length`).
    fn output_len(&self, len: usize) -> usize;
    /// Every token of inputs and outputs, in a fixed order.
    fn alphabet(&self) -> Vec<String>;
    /// The shortest length the reference generates meaningfully.
    fn min_len(&self) -> usize {
        1
    }
    /// Why shorter lengths are refused.
    fn min_len_reason(&self) -> &'static str {
        "the shortest example has 1 symbol"
    }
    /// The output tokens the reference scores (its `accuracy_mask`): all by default.
    fn scored(&self, answer: &[String]) -> usize {
        answer.len()
    }
}

/// A loaded task of the suite.
#[derive(Debug)]
pub(crate) struct Loaded<R: Rule>(pub R);

impl<R: Rule> Generate for Loaded<R> {
    fn min_len(&self) -> usize {
        self.0.min_len()
    }

    fn min_len_reason(&self, kind: &str) -> String {
        format!("{kind}: {}", self.0.min_len_reason())
    }

    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        let mut prompt = self.0.input(rng, len);
        let answer = self.0.answer(&prompt);
        debug_assert_eq!(prompt.len(), self.0.input_len(len));
        debug_assert_eq!(answer.len(), self.0.output_len(len));
        prompt.push(SEP.to_string());
        Example { prompt, answer }
    }

    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        self.0.alphabet()
    }

    fn vocab_estimate(&self, _max_eval_len: usize) -> u64 {
        self.0.alphabet().len() as u64
    }

    fn scored_answer(&self, example: &Example) -> usize {
        self.0.scored(&example.answer)
    }

    fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        let input = prompt.strip_suffix(&[SEP.to_string()]).unwrap_or(prompt);
        Some(self.0.answer(input))
    }
}

/// Prompt and answer sizes of a rule's example of length `len`.
pub(crate) fn size_of(rule: &dyn Rule, len: usize) -> Option<(usize, usize)> {
    // The output lengths are at most `2 len + 1`: bounded here so that a huge `len` overflows
    // to `None` rather than wrapping.
    len.checked_mul(2)?.checked_add(1)?;
    Some((rule.input_len(len) + 1, rule.output_len(len)))
}

pub(crate) fn check_at_least(
    field: &'static str,
    value: usize,
    min: usize,
) -> Result<(), TaskConfigError> {
    if value < min {
        return Err(error(
            field,
            format!("expected at least {min}, found {value}"),
        ));
    }
    Ok(())
}

/// Declares a task of the suite: its config struct (training lengths and its own fields, each
/// with its default), its `Task` impl and the rule it loads.
macro_rules! chomsky_task {
    (
        $(#[doc = $doc:literal])*
        $config:ident (min_len = $min:literal)
        { $($(#[doc = $fdoc:literal])* $field:ident: $ty:ty = $default:expr),* $(,)? }
        => |$cfg:ident| $rule:expr
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $config {
            /// Shortest training length (default 1; 3 for solve_equation).
            #[serde(default = $min)]
            pub min_len: usize,
            /// Longest training length (default 40, the reference's).
            #[serde(default = "crate::chomsky::forty")]
            pub max_len: usize,
            $(
                $(#[doc = $fdoc])*
                #[serde(default = $default)]
                pub $field: $ty,
            )*
        }

        impl $config {
            fn rule(&self) -> Result<impl crate::chomsky::Rule, crate::TaskConfigError> {
                let $cfg = self;
                $rule
            }
        }

        impl crate::Task for $config {
            fn train_lengths(&self) -> (usize, usize) {
                (self.min_len, self.max_len)
            }

            fn example_size(&self, len: usize) -> Option<(usize, usize)> {
                crate::chomsky::size_of(&self.rule().ok()?, len)
            }

            fn load(
                &self,
                _base_dir: &std::path::Path,
            ) -> Result<std::sync::Arc<dyn crate::Generate>, crate::TaskConfigError> {
                Ok(std::sync::Arc::new(crate::chomsky::Loaded(self.rule()?)))
            }
        }
    };
}
pub(crate) use chomsky_task;

/// Digit tokens `0 .. n-1`.
pub(crate) fn digits(n: usize) -> Vec<String> {
    (0..n).map(|d| d.to_string()).collect()
}

/// Uniform digits `0 .. n-1`.
pub(crate) fn draw(rng: &mut Rng, n: usize, len: usize) -> Vec<usize> {
    (0..len).map(|_| rng.below(n)).collect()
}

pub(crate) fn tokens(xs: &[usize]) -> Vec<String> {
    xs.iter().map(|x| x.to_string()).collect()
}

/// The digits of tokens written by [`tokens`] (`None` for any other token).
pub(crate) fn values(input: &[String]) -> Vec<Option<usize>> {
    input.iter().map(|t| t.parse().ok()).collect()
}

/// The digits of tokens that are all digits.
pub(crate) fn all_values(input: &[String]) -> Vec<usize> {
    values(input)
        .into_iter()
        .map(|v| v.expect("a digit token"))
        .collect()
}

pub(crate) fn three() -> usize {
    3
}

pub(crate) fn yes() -> bool {
    true
}

/// The termination token of the padded outputs (the reference's class `2`).
pub const END: &str = "end";

/// The answer tokens up to and including the first [`END`] (all without one): what the
/// reference's `accuracy_mask` scores of a padded output.
pub(crate) fn up_to_end(answer: &[String]) -> usize {
    answer
        .iter()
        .position(|t| t == END)
        .map_or(answer.len(), |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskConfig;

    /// Golden examples: drawn by the reference's own `sample_batch` (every task, lengths 1-40,
    /// 4 each; `scripts/chomsky_reference.py`), its symbols written as ordo's tokens. ordo's
    /// output for each reference input is the reference's output, and ordo's inputs of the
    /// same length have the reference's shape (same length, same alphabet).
    #[test]
    fn outputs_match_the_reference_examples() {
        #[derive(serde::Deserialize)]
        struct Fixture {
            examples: Vec<Case>,
        }
        #[derive(serde::Deserialize)]
        struct Case {
            kind: String,
            input: Vec<String>,
            output: Vec<String>,
        }
        let fixture: Fixture =
            serde_json::from_str(include_str!("../../tests/data/chomsky_reference.json")).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for case in &fixture.examples {
            let task: TaskConfig = toml::from_str(&format!("kind = \"{}\"", case.kind)).unwrap();
            let generator = task.generator(std::path::Path::new(".")).unwrap();
            let mut prompt = case.input.clone();
            prompt.push(SEP.to_string());
            let got = generator.answer_for(&prompt).expect("a Chomsky task");
            assert_eq!(got, case.output, "{} on {:?}", case.kind, case.input);
            // ordo draws inputs of the reference's length over the same alphabet.
            let len = case.input.len();
            if len >= generator.min_len() {
                let ex = generator.example(&mut Rng::new(len as u64), len);
                assert_eq!(ex.prompt.len(), len + 1, "{}", case.kind);
                assert_eq!(ex.answer.len(), case.output.len(), "{} at {len}", case.kind);
                let alphabet = generator.symbols(len);
                for t in case.input.iter().chain(&case.output) {
                    assert!(
                        alphabet.contains(t),
                        "{}: {t} not in {alphabet:?}",
                        case.kind
                    );
                }
            }
            seen.insert(case.kind.clone());
        }
        assert_eq!(seen.len(), KINDS.len(), "{seen:?}");
    }
}
