//! Word-order tasks, generated deterministically from a seed: the `ordo-tasks` crate, which
//! depends on no tensor library (its tests build and run without burn), beside `ordo-train`
//! as `burn-dataset` is beside `burn-train`. It also holds the vocabulary ([`vocab`]) and the
//! seeded generator ([`rng`]) the tasks draw from.
//!
//! Every task turns `(rng, length)` into an [`Example`]: a prompt the model reads and an answer
//! it must produce. "Length" is the task's own measure of size (the number of symbols for
//! copy/reverse/sort/position, the number of words of the sentence for bigram_shift/agent, the
//! context for lm), so the same task yields longer test sets later. Tokens are plain strings;
//! the trainer builds the vocabulary from [`Generator::vocab`].
//!
//! # Design
//!
//! A task owns everything about itself, in its own file: its config struct (serde data with
//! defaults and `deny_unknown_fields`), its checks (naming the field), what it loads (a
//! lexicon, a corpus), how it generates examples, the tokens it needs, its input files, and
//! what it reports ([`Task::headline`]: exact match, or perplexity for a text). It does so by
//! implementing two traits: [`Task`] on the config (what a user writes) and [`Generate`] on
//! what [`Task::load`] builds from it, once per run. [`TaskConfig`] is the one enum of tasks;
//! it dispatches to [`Task`] in [`TaskConfig::task`] and [`TaskConfig::task_mut`], and
//! [`Generator`] wraps the loaded task. The trainer, the evaluator and the report never test a
//! task's name: they ask the task.
//!
//! # Adding a task
//!
//! 1. A new file `crates/tasks/src/NAME.rs` with
//!    - the config struct: `#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]`,
//!      `#[serde(deny_unknown_fields)]`, a `#[serde(default = ...)]` on every field that has
//!      one ([`sentence::Agent`] is a small example);
//!    - `impl Task` for it: the training lengths, [`Task::example_size`] (counted without
//!      building an example: the memory budget and the learned table's size use it),
//!      [`Task::load`] (every check, each error a [`TaskConfigError`] naming the field, then the
//!      loaded task), and those of the defaulted methods that apply (input files to hash,
//!      headline, sliding windows);
//!    - the loaded struct and `impl Generate` for it: [`Generate::example`],
//!      [`Generate::symbols`] and [`Generate::vocab_estimate`], plus the defaulted
//!      methods that differ (shortest length, held-out data, evaluation lengths and sets);
//!    - its own tests: hand-checked examples.
//! 2. Two lines in this file: `pub mod NAME;` and one line in the `tasks!` list,
//!    `"name" => Name(NAME::TheConfig),` (`"name"` is the `kind` users write), which generates
//!    the variant of [`TaskConfig`] and its arms in [`TaskConfig::kind`], [`TaskConfig::task`]
//!    and [`TaskConfig::task_mut`].
//! 3. Nothing in the trainer, the evaluator or the report. The tests at the bottom of this file
//!    run every task whose fields all have defaults through the shared properties (exact
//!    lengths, sizes counted without building, vocabulary coverage, determinism from a seed;
//!    the test helper `measured`, which reads the length back from a prompt, may need an arm
//!    for a new prompt shape); a task with a required field (like `lm`'s corpus) needs its own config in
//!    `kind_is_the_name_serde_reads_and_writes`, which fails until it has one.
//! 4. An example config in `configs/` and a row in the README's table of tasks.

use crate::rng::Rng;
use crate::vocab::{Vocab, VocabError};
use serde::{Deserialize, Serialize};

pub mod rng;
pub mod vocab;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod chomsky;
pub mod grammar;
pub mod kazemnejad;
pub mod lm;
pub mod pcfg;
pub mod sentence;
pub mod symbols;

pub use grammar::{Lexicon, corpus};
pub use lm::LmTokenizer;

pub use vocab::SEP;

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

pub(crate) fn error(field: &'static str, message: String) -> TaskConfigError {
    TaskConfigError { field, message }
}

/// The number that sums up an evaluation at one length, as the task reports it
/// ([`Task::headline`]). Decided by the data a task is evaluated on, not by its name: a
/// held-out text (language modelling) is scored by perplexity, since a window of text has no
/// single right continuation and its exact match is ~0; generated examples with one right
/// answer are scored by exact match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Headline {
    ExactMatch,
    Perplexity,
}

impl Headline {
    /// Whether a larger score is better (exact match) or worse (a perplexity ratio).
    pub fn higher_is_better(self) -> bool {
        self == Headline::ExactMatch
    }

    /// The headline of a record (`eval.json`) written before the headline was recorded, from
    /// its task's `kind`: perplexity exactly for `lm`, then the only task evaluated on a text.
    /// Every task added since records its headline, so this list never grows.
    pub fn of_unrecorded(kind: &str) -> Headline {
        if kind == "lm" {
            Headline::Perplexity
        } else {
            Headline::ExactMatch
        }
    }
}

/// A task's configuration: what a user writes under `[task]`, and what the task says about
/// itself before anything is loaded. Implemented by each task's config struct, in its own file.
pub trait Task: std::fmt::Debug + Send + Sync {
    /// `(min_len, max_len)`: the range of training lengths.
    fn train_lengths(&self) -> (usize, usize);

    /// Prompt and answer tokens of an example of length `len`, counted without building one
    /// (`None` if the count overflows). Tested against the generators.
    fn example_size(&self, len: usize) -> Option<(usize, usize)>;

    /// Checks the configuration and loads what generation needs (files resolved against
    /// `base_dir` if relative), returning a generator whose [`Generate::example`] is fast and
    /// infallible. Errors name the field.
    fn load(&self, base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError>;

    /// The input files the task reads, by role (`lexicon`, `corpus`, `tokenizer`), as written,
    /// for the run directory to rewrite and hash. None by default.
    fn input_paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        Vec::new()
    }

    /// Data compiled into ordo that the task reads (name, content): the built-in lexicon for
    /// the grammar tasks without a `lexicon` file. Runs record its hash, so that a binary with
    /// another lexicon marks them stale. None by default.
    fn builtin_inputs(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    /// Fills in derived defaults, so that the stored config says what was used (the BPE
    /// vocabulary size of `lm`). Called after a successful [`Task::load`].
    fn resolve_defaults(&mut self) {}

    /// Makes the task tokenise with the run's own `tokenizer.json` (`path`) instead of
    /// retraining BPE or reading the tokenizer file the config named: a run evaluates and
    /// resumes with exactly the vocabulary it was trained with. Nothing by default.
    fn read_run_tokenizer(&mut self, path: &Path) {
        let _ = path;
    }

    /// What an evaluation at one length is summed up by. Exact match by default.
    fn headline(&self) -> Headline {
        Headline::ExactMatch
    }

    /// Whether evaluation can score overlapping (sliding) windows of a held-out text, as
    /// `ordo eval --sliding` asks. No by default.
    fn sliding_windows(&self) -> bool {
        false
    }

    /// Whether the lengths evaluated by default follow `max_factor` ([`Generate::eval_lengths`]);
    /// a task that evaluates fixed lengths says no, and `ordo eval --max-factor` (an
    /// experiment's `eval.max_factor`) is refused for it. Yes by default.
    fn uses_max_factor(&self) -> bool {
        true
    }
}

/// A loaded, validated task, built once per run by [`Task::load`]: generates examples and says
/// which tokens they use. Implemented in each task's file.
pub trait Generate: std::fmt::Debug + Send + Sync {
    /// The shortest length [`Generate::example`] accepts.
    fn min_len(&self) -> usize {
        1
    }

    /// Why a task of kind `kind` cannot have `min_len` below [`Generate::min_len`] (for the
    /// error message).
    fn min_len_reason(&self, kind: &str) -> String {
        format!("the shortest {kind} example has {} symbol", self.min_len())
    }

    /// One example of exactly `len`, any `len >= min_len()` (also far beyond the training
    /// lengths). Deterministic given the state of `rng`.
    fn example(&self, rng: &mut Rng, len: usize) -> Example;

    /// The length of the next training (or held-out) example, for training lengths `lo..=hi`:
    /// uniform by default; a task whose lengths are not all populated (SCAN) draws as its
    /// reference samples its data.
    fn draw_length(&self, rng: &mut Rng, lo: usize, hi: usize) -> usize {
        rng.range(lo, hi)
    }

    /// A held-out example (the validation set during training): a fresh draw by default.
    fn held_out(&self, rng: &mut Rng, len: usize) -> Example {
        self.example(rng, len)
    }

    /// Every token any example of length up to `max_eval_len` can contain (prompt and answer),
    /// except [`SEP`], without duplicates, in a fixed order.
    fn symbols(&self, max_eval_len: usize) -> Vec<String>;

    /// About how many tokens [`Generate::symbols`] (or the task's tokenizer) holds, special
    /// tokens excluded, counted without listing them.
    fn vocab_estimate(&self, max_eval_len: usize) -> u64;

    /// The vocabulary a new run trains with: word-level over [`Generate::symbols`] by default.
    fn vocab(&self, max_eval_len: usize) -> Result<Vocab, VocabError> {
        Ok(Vocab::word_level(&self.symbols(max_eval_len)))
    }

    /// The lengths `ordo eval` measures by default, for training lengths up to `max_len`:
    /// every length from [`Generate::min_len`] to `max_factor * max_len`.
    fn eval_lengths(&self, max_len: usize, max_factor: usize) -> Vec<usize> {
        (self.min_len()..=max_factor * max_len).collect()
    }

    /// Why length `len` cannot be evaluated with the task's data when `count` examples are
    /// asked for (beyond the model's and the vocabulary's limits, which the evaluator checks),
    /// if it cannot.
    fn eval_unsupported(&self, len: usize, count: usize) -> Option<String> {
        let _ = (len, count);
        None
    }

    /// The `count` examples an evaluation at `len` scores, each with the number of leading
    /// answer tokens left unscored. `sliding` is a stride, only asked of tasks whose
    /// [`Task::sliding_windows`] is true. By default: `count` fresh examples drawn from `rng`,
    /// every answer token scored.
    fn eval_set(
        &self,
        rng: &mut Rng,
        len: usize,
        count: usize,
        sliding: Option<usize>,
    ) -> Vec<(Example, usize)> {
        let _ = sliding;
        (0..count).map(|_| (self.example(rng, len), 0)).collect()
    }

    /// The text an `lm` task loaded; `None` for every other task.
    fn corpus(&self) -> Option<&lm::Corpus> {
        None
    }

    /// How many leading answer tokens of `example` an evaluation scores (token accuracy and
    /// exact match): all by default; the Chomsky tasks with a padded output stop after its
    /// termination token, as the reference's `accuracy_mask` does. Training is unaffected.
    fn scored_answer(&self, example: &Example) -> usize {
        example.answer.len()
    }

    /// The answer to a prompt, for the tasks whose answer is a function of their prompt (the
    /// Chomsky and Kazemnejad tasks); `None` for the others. The golden tests hold it to the
    /// reference projects' own examples.
    fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        let _ = prompt;
        None
    }
}

/// Generates [`TaskConfig`] (one variant per task, `kind` its name) and its dispatch from one
/// list: a task is one line of it.
macro_rules! tasks {
    ($($(#[doc = $doc:literal])* $kind:literal => $variant:ident($config:ty),)*) => {
        /// The `[task]` table of a run configuration: one variant per task, each holding that
        /// task's config struct (fields, defaults and checks live in the task's file). Every
        /// field has a default except an `lm` corpus, so `kind = "copy"` alone is a valid task;
        /// unknown keys are rejected.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "kind")]
        pub enum TaskConfig {
            $($(#[doc = $doc])* #[serde(rename = $kind)] $variant($config),)*
        }

        impl TaskConfig {
            /// Every task's `kind`, in the order of the list.
            pub const KINDS: &'static [&'static str] = &[$($kind),*];

            /// The task's name as written in `kind = "..."`.
            pub fn kind(&self) -> &'static str {
                match self { $(Self::$variant(_) => $kind,)* }
            }

            /// The task behind the variant.
            pub fn task(&self) -> &dyn Task {
                match self { $(Self::$variant(t) => t,)* }
            }

            /// The task behind the variant, to change.
            pub fn task_mut(&mut self) -> &mut dyn Task {
                match self { $(Self::$variant(t) => t,)* }
            }
        }
    };
}

tasks! {
    /// Prompt `x1 .. xn [SEP]`, answer `x1 .. xn`.
    "copy" => Copy(symbols::CopyTask),
    /// Prompt `x1 .. xn [SEP]`, answer `xn .. x1`.
    "reverse" => Reverse(symbols::ReverseTask),
    /// Prompt `x1 .. xn [SEP]`, answer the `x` sorted by symbol index (numerically).
    "sort" => Sort(symbols::SortTask),
    /// Prompt `x1 .. xn [SEP] ik`, answer `x_k`.
    "position" => Position(symbols::PositionTask),
    /// Prompt `w1 .. wn [SEP]`, answer `swapped` or `original` (see [`sentence`]).
    "bigram_shift" => BigramShift(sentence::BigramShift),
    /// Language modelling on a text file (see [`lm`]).
    "lm" => Lm(lm::Lm),
    /// Prompt `w1 .. wn [SEP] agent|patient`, answer the main subject's or object's noun.
    "agent" => Agent(sentence::Agent),
    /// Delétang et al. 2023 (regular): class 1 iff the count of `01`/`10` pairs is odd.
    "even_pairs" => EvenPairs(chomsky::regular::EvenPairsTask),
    /// (regular) `d op d .. d` modulo 5, `op` in `+ - *`.
    "modular_arithmetic" => ModularArithmetic(chomsky::regular::ModularArithmeticTask),
    /// (regular) the parity of the number of 1s.
    "parity_check" => ParityCheck(chomsky::regular::ParityCheckTask),
    /// (regular) the final position on a cycle of 5 after moves -1/0/+1.
    "cycle_navigation" => CycleNavigation(chomsky::regular::CycleNavigationTask),
    /// (DCF) the final stack after POP/PUSH0/PUSH1, top to bottom.
    "stack_manipulation" => StackManipulation(chomsky::dcf::StackManipulationTask),
    /// (DCF) a binary string reversed.
    "reverse_string" => ReverseString(chomsky::dcf::ReverseStringTask),
    /// (DCF) a bracketed `+ - *` expression modulo 5.
    "modular_arithmetic_brackets" => ModularArithmeticBrackets(chomsky::dcf::ModularArithmeticBracketsTask),
    /// (DCF) the digit `x` of a bracketed equation modulo 5.
    "solve_equation" => SolveEquation(chomsky::dcf::SolveEquationTask),
    /// (CS) a binary string twice.
    "duplicate_string" => DuplicateString(chomsky::cs::DuplicateStringTask),
    /// (CS) the missing symbol of a duplicated string.
    "missing_duplicate_string" => MissingDuplicateString(chomsky::cs::MissingDuplicateStringTask),
    /// (CS) the symbols at odd positions, then those at even ones.
    "odds_first" => OddsFirst(chomsky::cs::OddsFirstTask),
    /// (CS) the sum of two little-endian binary numbers.
    "binary_addition" => BinaryAddition(chomsky::cs::BinaryAdditionTask),
    /// (CS) the product of two little-endian binary numbers.
    "binary_multiplication" => BinaryMultiplication(chomsky::cs::BinaryMultiplicationTask),
    /// (CS) the floor of the square root of a big-endian binary number.
    "compute_sqrt" => ComputeSqrt(chomsky::cs::ComputeSqrtTask),
    /// (CS) symbols of 0..5 sorted.
    "bucket_sort" => BucketSort(chomsky::cs::BucketSortTask),
    /// Kazemnejad et al. 2023: `a + b` in decimal digits -> the sum.
    "addition" => Addition(kazemnejad::AdditionTask),
    /// Kazemnejad et al. 2023: values in 1-9 -> their sum modulo 10.
    "summation" => Summation(kazemnejad::SummationTask),
    /// Kazemnejad et al. 2023: a polynomial at `x` -> its value modulo 10.
    "polynomial_evaluation" => PolynomialEvaluation(kazemnejad::PolynomialTask),
    /// Kazemnejad et al. 2023: bits -> their parity.
    "parity" => Parity(kazemnejad::ParityTask),
    /// Kazemnejad et al. 2023 (after Zhang et al. 2022): a chain of `v = ± u` clauses -> a value.
    "lego" => Lego(kazemnejad::LegoTask),
    /// Lake & Baroni 2018's SCAN, the length split: commands -> actions.
    "scan" => Scan(kazemnejad::ScanTask),
    /// Hupkes et al. 2020's PCFG SET, the productivity split: string-edit functions -> the string.
    "pcfg" => Pcfg(pcfg::PcfgTask),
}

impl TaskConfig {
    /// `(min_len, max_len)`: the range of training lengths.
    pub fn train_lengths(&self) -> (usize, usize) {
        self.task().train_lengths()
    }

    /// See [`Task::example_size`].
    pub fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        self.task().example_size(len)
    }

    /// The input files the task reads, by role (`lexicon`, `corpus`, `tokenizer`), as written.
    pub fn input_paths(&self) -> Vec<(String, PathBuf)> {
        self.clone()
            .input_paths_mut()
            .into_iter()
            .map(|(role, path)| (role.to_string(), path.clone()))
            .collect()
    }

    /// See [`Task::builtin_inputs`].
    pub fn builtin_inputs(&self) -> Vec<(&'static str, &'static str)> {
        self.task().builtin_inputs()
    }

    /// [`input_paths`](Self::input_paths), to rewrite them.
    pub fn input_paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        self.task_mut().input_paths_mut()
    }

    /// See [`Task::resolve_defaults`].
    pub fn resolve_defaults(&mut self) {
        self.task_mut().resolve_defaults();
    }

    /// The task of an existing run, tokenising with the run's own `tokenizer.json` (`path`)
    /// (see [`Task::read_run_tokenizer`]).
    pub fn reading_tokenizer(&self, path: &Path) -> TaskConfig {
        let mut task = self.clone();
        task.task_mut().read_run_tokenizer(path);
        task
    }

    /// See [`Task::headline`].
    pub fn headline(&self) -> Headline {
        self.task().headline()
    }

    /// See [`Task::sliding_windows`].
    pub fn sliding_windows(&self) -> bool {
        self.task().sliding_windows()
    }

    /// See [`Task::uses_max_factor`].
    pub fn uses_max_factor(&self) -> bool {
        self.task().uses_max_factor()
    }

    /// Checks the configuration (loading the lexicon or corpus, if any). Same checks as
    /// [`TaskConfig::generator`].
    pub fn validate(&self, base_dir: &Path) -> Result<(), TaskConfigError> {
        self.generator(base_dir).map(|_| ())
    }

    /// Every token an example up to `max_eval_len` can contain; see [`Generate::symbols`].
    /// Loads the task's files, hence `base_dir` and the `Result`.
    pub fn symbols(
        &self,
        max_eval_len: usize,
        base_dir: &Path,
    ) -> Result<Vec<String>, TaskConfigError> {
        Ok(self.generator(base_dir)?.symbols(max_eval_len))
    }

    /// Validates the configuration and loads what generation needs (relative files resolved
    /// against `base_dir`), returning a generator whose [`Generator::example`] is fast and
    /// infallible. Build it once per run and pass it on.
    pub fn generator(&self, base_dir: &Path) -> Result<Generator, TaskConfigError> {
        let task = self.task().load(base_dir)?;
        let (min_len, max_len) = self.train_lengths();
        let shortest = task.min_len();
        if min_len < shortest {
            return Err(error(
                "min_len",
                format!(
                    "expected at least {shortest} ({}), found {min_len}",
                    task.min_len_reason(self.kind())
                ),
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
        Ok(Generator {
            config: self.clone(),
            task,
        })
    }
}

/// A validated task, ready to generate examples: built by [`TaskConfig::generator`], which does
/// all the fallible work (checks, reading files) once. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Generator {
    config: TaskConfig,
    task: Arc<dyn Generate>,
}

impl Generator {
    pub fn config(&self) -> &TaskConfig {
        &self.config
    }

    pub fn kind(&self) -> &'static str {
        self.config.kind()
    }

    /// See [`Task::headline`].
    pub fn headline(&self) -> Headline {
        self.config.headline()
    }

    /// The shortest length [`Generator::example`] accepts: 1 symbol, or
    /// [`grammar::MIN_WORDS`] = 5 words for the sentence tasks.
    pub fn min_len(&self) -> usize {
        self.task.min_len()
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
        self.task.example(rng, len)
    }

    /// See [`Generate::draw_length`].
    pub fn draw_length(&self, rng: &mut Rng, lo: usize, hi: usize) -> usize {
        self.task.draw_length(rng, lo, hi)
    }

    /// Examples for the held-out set: fresh draws for synthetic tasks, windows of the held-out
    /// text for `lm`.
    pub fn held_out(&self, rng: &mut Rng, len: usize) -> Example {
        self.task.held_out(rng, len)
    }

    /// Every token any example of length up to `max_eval_len` can contain (prompt and answer),
    /// except [`SEP`], without duplicates, in a fixed order: `s0 .. s{symbols-1}`; for
    /// `position` then `i0 .. i{n-1}` with `n = max(index tokens, max_eval_len)`; for the
    /// sentence tasks the lexicon's words ([`Lexicon::words`]) then the task's answer or
    /// question tokens (`original swapped`, `agent patient`); for `lm` the corpus's words then
    /// [`lm::EOS`] (none with a tokenizer).
    pub fn symbols(&self, max_eval_len: usize) -> Vec<String> {
        self.task.symbols(max_eval_len)
    }

    /// About how many tokens the vocabulary of a run holds when evaluated up to `max_eval_len`
    /// (counted, never listed: a `position` task of absurd length would list billions).
    pub fn vocab_estimate(&self, max_eval_len: usize) -> u64 {
        let specials = 5;
        self.task.vocab_estimate(max_eval_len) + specials
    }

    /// The vocabulary a new run trains with, covering evaluations up to `max_eval_len`.
    pub fn vocab(&self, max_eval_len: usize) -> Result<Vocab, VocabError> {
        self.task.vocab(max_eval_len)
    }

    /// See [`Generate::eval_lengths`].
    pub fn eval_lengths(&self, max_len: usize, max_factor: usize) -> Vec<usize> {
        self.task.eval_lengths(max_len, max_factor)
    }

    /// See [`Generate::eval_unsupported`].
    pub fn eval_unsupported(&self, len: usize, count: usize) -> Option<String> {
        self.task.eval_unsupported(len, count)
    }

    /// See [`Generate::eval_set`].
    pub fn eval_set(
        &self,
        rng: &mut Rng,
        len: usize,
        count: usize,
        sliding: Option<usize>,
    ) -> Vec<(Example, usize)> {
        self.task.eval_set(rng, len, count, sliding)
    }

    /// The language-model corpus, for `lm`.
    pub fn corpus(&self) -> Option<&lm::Corpus> {
        self.task.corpus()
    }

    /// See [`Generate::scored_answer`].
    pub fn scored_answer(&self, example: &Example) -> usize {
        self.task.scored_answer(example)
    }

    /// See [`Generate::answer_for`].
    pub fn answer_for(&self, prompt: &[String]) -> Option<Vec<String>> {
        self.task.answer_for(prompt)
    }
}

pub(crate) fn one() -> usize {
    1
}
pub(crate) fn sixteen() -> usize {
    16
}

/// Reads a whole input file as text, refusing anything but a regular file first: a FIFO would
/// block forever and a device could be endless (`--check` must answer at once).
pub fn read_input(path: &std::path::Path) -> std::io::Result<String> {
    check_regular(path)?;
    std::fs::read_to_string(path)
}

/// An error unless `path` is a regular file (after following symlinks).
pub fn check_regular(path: &std::path::Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_file() {
        Ok(())
    } else {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}; expected a regular file"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn here() -> &'static Path {
        Path::new(".")
    }

    /// Every `kind` of [`TaskConfig`], in declaration order, as serde lists them (derived from
    /// the enum, so a new task is never left out).
    fn every_kind() -> Vec<String> {
        let e = serde_json::from_str::<TaskConfig>(r#"{"kind": "?"}"#)
            .unwrap_err()
            .to_string();
        let list = e.split("expected one of").nth(1).expect("serde's wording");
        let kinds: Vec<String> = list
            .split('`')
            .skip(1)
            .step_by(2)
            .map(String::from)
            .collect();
        assert!(kinds.len() >= 7, "{e}");
        // The list the macro writes is the one serde reads.
        assert_eq!(kinds, TaskConfig::KINDS, "{e}");
        kinds
    }

    /// Every task whose fields all have defaults (all but `lm`, which needs a corpus), from
    /// `kind = "..."` alone.
    fn all_defaults() -> Vec<TaskConfig> {
        every_kind()
            .iter()
            .filter_map(|k| toml::from_str(&format!("kind = \"{k}\"")).ok())
            .collect()
    }

    #[test]
    fn defaults_fill_every_field() {
        let configs = all_defaults();
        assert_eq!(
            configs[0],
            TaskConfig::Copy(symbols::CopyTask(symbols::SymbolsConfig {
                symbols: 16,
                min_len: 1,
                max_len: 16
            }))
        );
        assert_eq!(
            configs[3],
            TaskConfig::Position(symbols::PositionTask {
                symbols: 16,
                min_len: 1,
                max_len: 16,
                max_index: 0
            })
        );
        assert_eq!(
            configs[4],
            TaskConfig::BigramShift(sentence::BigramShift {
                min_len: 6,
                max_len: 16,
                lexicon: None
            })
        );
        assert_eq!(
            configs[5],
            TaskConfig::Agent(sentence::Agent {
                min_len: 5,
                max_len: 16,
                lexicon: None
            })
        );
        let kinds: Vec<&str> = configs.iter().map(TaskConfig::kind).collect();
        assert_eq!(
            kinds[..6],
            [
                "copy",
                "reverse",
                "sort",
                "position",
                "bigram_shift",
                "agent"
            ]
        );
        // Then the Chomsky tasks, all with defaults (the reference's parameters).
        assert_eq!(kinds[6..21], chomsky::KINDS, "{kinds:?}");
        assert_eq!(
            kinds[21..],
            [
                "addition",
                "summation",
                "polynomial_evaluation",
                "parity",
                "lego",
                "scan",
                "pcfg"
            ]
        );
        for c in &configs {
            c.validate(here()).unwrap();
        }
        let c: TaskConfig = toml::from_str("kind = \"sort\"\nsymbols = 30\nmax_len = 20").unwrap();
        assert_eq!(c.train_lengths(), (1, 20));
        assert_eq!(
            c,
            TaskConfig::Sort(symbols::SortTask(symbols::SymbolsConfig {
                symbols: 30,
                min_len: 1,
                max_len: 20
            }))
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
        configs.push(TaskConfig::Agent(sentence::Agent {
            min_len: 7,
            max_len: 9,
            lexicon: Some(PathBuf::from("lex/other.toml")),
        }));
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
        let absolute = TaskConfig::BigramShift(sentence::BigramShift {
            min_len: 6,
            max_len: 16,
            lexicon: Some(dir.0.join("mine.toml")),
        });
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
        // A word the sentence tasks use themselves (an answer of bigram_shift) is refused,
        // naming the file, the list and the word.
        let reserved = grammar::BUILTIN_LEXICON.replacen("\"cat\"", "\"swapped\"", 1);
        std::fs::write(dir.0.join("reserved.toml"), reserved).unwrap();
        let c: TaskConfig =
            toml::from_str("kind = \"agent\"\nlexicon = \"reserved.toml\"").unwrap();
        let e = c.validate(&dir.0).unwrap_err();
        assert_eq!(e.field, "lexicon");
        for needle in ["reserved.toml", "animals", "\"swapped\"", "reserved"] {
            assert!(e.message.contains(needle), "{needle}: {e}");
        }
    }

    /// The measure `len` of an example, read back from the prompt.
    fn measured(kind: &str, ex: &Example) -> usize {
        let sep = ex.prompt.iter().position(|t| t == SEP).unwrap();
        match kind {
            "summation" | "parity" => return sep,
            "addition" => {
                let plus = ex.prompt.iter().position(|t| t == "+").unwrap();
                return plus.max(sep - plus - 1);
            }
            "polynomial_evaluation" => return (sep - 4).div_ceil(6),
            "lego" => return ex.prompt[..sep].iter().filter(|t| *t == "=").count(),
            "scan" => return ex.answer.len(),
            "pcfg" => return ex.prompt.iter().filter(|t| pcfg::is_function(t)).count(),
            _ => {}
        }
        if chomsky::KINDS.contains(&kind) {
            // The input tape, then [SEP]; the answer's length is `example_size`'s (tested
            // there).
            assert_eq!(ex.prompt.len(), sep + 1, "{kind}: {ex:?}");
            return sep;
        }
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
                if generator.eval_unsupported(len, 1).is_some() {
                    continue;
                }
                if matches!(cfg.kind(), "addition" | "scan" | "pcfg") {
                    // Sizes that vary from example to example: example_size is their bound.
                    let (prompt, answer) = cfg.example_size(len).unwrap();
                    for _ in 0..50 {
                        let ex = generator.example(&mut rng, len);
                        assert!(
                            ex.prompt.len() <= prompt && ex.answer.len() <= answer,
                            "{}",
                            cfg.kind()
                        );
                    }
                    continue;
                }
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
                    TaskConfig::Lm(_) => Some(()),
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
                if g.eval_unsupported(len, 1).is_some() {
                    continue; // a length the task has no example of (lego, SCAN)
                }
                // modular_arithmetic makes an even length odd, as its reference does.
                let want = if c.kind() == "modular_arithmetic" && len % 2 == 0 {
                    len - 1
                } else {
                    len
                };
                for _ in 0..5 {
                    let ex = g.example(&mut rng, len);
                    assert_eq!(measured(c.kind(), &ex), want, "{}", c.kind());
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
        configs.push(TaskConfig::Position(symbols::PositionTask {
            symbols: 3,
            min_len: 2,
            max_len: 4,
            max_index: 5,
        }));
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
                if g.eval_unsupported(len, 1).is_some() {
                    continue;
                }
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
        let position = TaskConfig::Position(symbols::PositionTask {
            symbols: 3,
            min_len: 1,
            max_len: 4,
            max_index: 0,
        });
        let s = position.symbols(2, here()).unwrap();
        assert_eq!(s.len(), 3 + 16);
        assert_eq!(s[..4], ["s0", "s1", "s2", "i0"]);
        assert_eq!(position.symbols(20, here()).unwrap().last().unwrap(), "i19");
        let copy = TaskConfig::Copy(symbols::CopyTask(symbols::SymbolsConfig {
            symbols: 12,
            min_len: 1,
            max_len: 4,
        }));
        assert_eq!(copy.symbols(100, here()).unwrap()[10..], ["s10", "s11"]);
    }

    fn lm(extra: &str) -> TaskConfig {
        toml::from_str(&format!(
            "kind = \"lm\"\ncorpus = \"data/corpus.txt\"\n{extra}"
        ))
        .unwrap()
    }

    /// The repository root, where `data/corpus.txt` is.
    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn kind_is_the_name_serde_reads_and_writes() {
        let mut configs = all_defaults();
        configs.push(lm(""));
        let mut kinds = Vec::new();
        for c in &configs {
            let j = serde_json::to_value(c).unwrap();
            assert_eq!(j["kind"], c.kind(), "{c:?}");
            let t = toml::to_string(c).unwrap();
            assert_eq!(toml::from_str::<TaskConfig>(&t).unwrap(), *c, "{t}");
            kinds.push(c.kind());
        }
        // Every variant is covered: a new task either runs through the shared properties
        // (every test of `all_defaults`) or has a config of its own here, like `lm`.
        let mut every = every_kind();
        kinds.sort_unstable();
        every.sort_unstable();
        assert_eq!(kinds, every, "one config per variant");
    }

    #[test]
    fn only_the_text_task_reports_perplexity_and_slides() {
        for c in all_defaults() {
            assert_eq!(c.headline(), Headline::ExactMatch, "{}", c.kind());
            assert!(!c.sliding_windows(), "{}", c.kind());
            assert!(c.uses_max_factor(), "{}", c.kind());
            let g = c.generator(here()).unwrap();
            assert_eq!(g.headline(), Headline::ExactMatch);
            if matches!(c.kind(), "lego" | "scan" | "pcfg") {
                // Bounded tasks: lego's 26 letters, SCAN's populated lengths (tested in
                // kazemnejad.rs), PCFG SET's 35 functions (tested in pcfg.rs).
                assert!(g.eval_unsupported(1000, 1).is_some(), "{}", c.kind());
                continue;
            }
            let lengths = g.eval_lengths(16, 4);
            assert_eq!(lengths.first(), Some(&g.min_len()), "{}", c.kind());
            assert_eq!(lengths.last(), Some(&64), "{}", c.kind());
            assert_eq!(lengths.len(), 64 - g.min_len() + 1);
            assert_eq!(g.eval_unsupported(1000, 1), None);
        }
        let c = lm("context = 16");
        assert_eq!(c.headline(), Headline::Perplexity);
        assert!(c.sliding_windows());
        assert!(!c.uses_max_factor());
        let g = c.generator(&root()).unwrap();
        assert_eq!(g.headline(), Headline::Perplexity);
        // L, 2L, 4L and 8L whatever the factor (Press et al. 2022's protocol).
        assert_eq!(g.eval_lengths(16, 4), [16, 32, 64, 128]);
        assert_eq!(g.eval_lengths(16, 64), [16, 32, 64, 128]);
        // Records written before the headline was stored.
        assert_eq!(Headline::of_unrecorded("lm"), Headline::Perplexity);
        for kind in ["copy", "position", "agent", "bigram_shift"] {
            assert_eq!(Headline::of_unrecorded(kind), Headline::ExactMatch);
        }
    }

    #[test]
    fn lm_evaluates_on_held_out_windows_and_says_when_the_text_is_too_short() {
        let g = lm("context = 16").generator(&root()).unwrap();
        let corpus = g.corpus().expect("an lm task");
        let mut rng = Rng::new(1);
        let n = corpus.valid.len();
        // 5 examples of the training context (16): the first 80 held-out tokens, at every length.
        for len in [16, 32, 64] {
            let plain = g.eval_set(&mut rng, len, 5, None);
            assert_eq!(plain, corpus.held_out_windows(len, len, 80));
            let scored: usize = plain.iter().map(|(e, skip)| e.answer.len() - skip).sum();
            assert_eq!(scored, 80, "len {len}");
        }
        // The stride is capped at the window.
        assert_eq!(
            g.eval_set(&mut rng, 8, 4, Some(100)),
            corpus.held_out_windows(8, 8, 64)
        );
        assert_eq!(
            g.eval_set(&mut rng, 8, 4, Some(3)),
            corpus.held_out_windows(8, 3, 64)
        );
        // More examples than the text holds: the whole held-out text.
        let all = g.eval_set(&mut rng, 16, usize::MAX, None);
        let scored: usize = all.iter().map(|(e, skip)| e.answer.len() - skip).sum();
        assert_eq!(scored, n);
        assert_eq!(g.eval_unsupported(n - 2, usize::MAX), None);
        let why = g.eval_unsupported(n - 1, usize::MAX).expect("too long");
        assert!(why.contains(&n.to_string()), "{why}");
        // Too few examples for one window of 64: 3 × 16 = 48 tokens.
        let why = g.eval_unsupported(64, 3).expect("too few examples");
        assert!(why.contains("48 tokens"), "{why}");
        // The validation set during training comes from the held-out text.
        let held = g.held_out(&mut rng, 8);
        let stream = corpus.valid.join(" ");
        assert!(stream.contains(&held.answer.join(" ")));
    }

    #[test]
    fn lm_fills_the_bpe_default_and_reads_the_run_tokenizer() {
        let run_tokenizer = Path::new("run/tokenizer.json");
        let mut words = lm("");
        words.resolve_defaults();
        assert_eq!(words, lm(""), "words need no vocabulary size");
        assert_eq!(words.reading_tokenizer(run_tokenizer), words);
        assert_eq!(
            words.input_paths(),
            [("corpus".to_string(), PathBuf::from("data/corpus.txt"))]
        );

        let mut bpe = lm("tokenizer = \"bpe\"");
        bpe.resolve_defaults();
        assert_eq!(bpe, lm("tokenizer = \"bpe\"\nvocab_size = 128"));
        let file = lm(&format!("tokenizer = \"{}\"", run_tokenizer.display()));
        assert_eq!(bpe.reading_tokenizer(run_tokenizer), file);
        assert_eq!(
            lm("tokenizer = \"other.json\"").reading_tokenizer(run_tokenizer),
            file
        );
        assert_eq!(
            file.input_paths(),
            [
                ("corpus".to_string(), PathBuf::from("data/corpus.txt")),
                ("tokenizer".to_string(), run_tokenizer.to_path_buf())
            ]
        );
        // The synthetic tasks have nothing to fill in or read.
        for c in all_defaults() {
            let mut resolved = c.clone();
            resolved.resolve_defaults();
            assert_eq!(resolved, c);
            assert_eq!(c.reading_tokenizer(run_tokenizer), c);
        }
    }

    #[test]
    fn the_vocabulary_covers_the_symbols_and_the_text() {
        for c in all_defaults() {
            let g = c.generator(here()).unwrap();
            let vocab = g.vocab(48).unwrap();
            for s in g.symbols(48) {
                assert!(vocab.contains(&s), "{}: {s}", c.kind());
            }
            assert!(vocab.contains(SEP));
            // The memory budget's estimate never undercounts, and is close.
            let estimate = g.vocab_estimate(48);
            assert!(
                (vocab.len() as u64) <= estimate && estimate <= vocab.len() as u64 + 5,
                "{}: {} tokens, estimated {estimate}",
                c.kind(),
                vocab.len()
            );
        }
        let g = lm("context = 16").generator(&root()).unwrap();
        let vocab = g.vocab(64).unwrap();
        let corpus = g.corpus().unwrap();
        assert!(
            corpus
                .train
                .iter()
                .chain(&corpus.valid)
                .all(|t| vocab.contains(t))
        );
        assert!(vocab.contains(lm::EOS));
    }
}
