//! The sentence tasks over the grammar of [`super::grammar`].
//!
//! * `bigram_shift` (the SentEval BShift probe): prompt `w1 .. wn [SEP]`, answer `swapped` or
//!   `original`. With probability 1/2 two adjacent words of a grammatical sentence are swapped.
//!   To avoid label noise a swap at `i` (words `i` and `i+1`) is allowed only if
//!   1. the two words differ,
//!   2. their parts of speech differ (swapping two adjectives, "old small" -> "small old", or
//!      two verbs, "that the dog chased watched" -> "... watched chased", stays grammatical),
//!   3. they are not the relativizer and a verb ("the cat that watched the dog chased .." ->
//!      "the cat watched that the dog chased .." is outside the grammar but good English), and
//!   4. the result is not a sentence of the grammar (checked with the recogniser; with the
//!      built-in lexicon rules 1-3 already imply it, see the tests).
//!
//!   The swap position is uniform among the allowed ones (the first two words always qualify).
//! * `agent` (who did what to whom): prompt `w1 .. wn [SEP] q` with `q` = `agent` or
//!   `patient` (probability 1/2 each), answer the main subject's or the main object's head
//!   noun. Both come from the same animal set, are distinct, and occur once in the sentence;
//!   nouns inside relative clauses and prepositional phrases are distractors. Swapping the two
//!   main nouns keeps the bag of words and swaps the answer: only word order tells the roles.

use super::grammar::{self, Lexicon, Pos, Sentence, parse_tags};
use super::{Example, Generate, SEP, Task, TaskConfigError, error, sixteen};
use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `[task]` fields of `bigram_shift`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigramShift {
    /// Shortest training sentence in words (default 6; at least 5).
    #[serde(default = "six")]
    pub min_len: usize,
    /// Longest training sentence in words (default 16).
    #[serde(default = "sixteen")]
    pub max_len: usize,
    /// A lexicon file laid out like `data/lexicon.toml`, relative paths resolved against the
    /// config's directory; `None` (the default) is the built-in `data/lexicon.toml`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lexicon: Option<PathBuf>,
}

/// The `[task]` fields of `agent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Shortest training sentence in words (default 5; at least 5).
    #[serde(default = "five")]
    pub min_len: usize,
    #[serde(default = "sixteen")]
    pub max_len: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lexicon: Option<PathBuf>,
}

fn five() -> usize {
    5
}
fn six() -> usize {
    6
}

/// A sentence task loaded: its lexicon, how it makes an example, and the two answer or
/// question tokens it adds to the lexicon's words.
#[derive(Debug)]
struct Loaded {
    lexicon: Lexicon,
    make: fn(&Lexicon, &mut Rng, usize) -> Example,
    extra: [&'static str; 2],
}

/// Loads the lexicon (the built-in one if `path` is `None`).
fn load(
    path: &Option<PathBuf>,
    base_dir: &Path,
    make: fn(&Lexicon, &mut Rng, usize) -> Example,
    extra: [&'static str; 2],
) -> Result<Arc<dyn Generate>, TaskConfigError> {
    let lexicon = match path {
        None => Lexicon::from_toml(grammar::BUILTIN_LEXICON)
            .and_then(|l| l.refuse_reserved(&RESERVED).map(|()| l))
            .map_err(|e| format!("invalid built-in lexicon: {e}")),
        Some(path) => {
            let path = base_dir.join(path);
            Lexicon::load(&path)
                .and_then(|l| match l.refuse_reserved(&RESERVED) {
                    Ok(()) => Ok(l),
                    Err(e) => Err(grammar::LexiconError::InFile {
                        path,
                        error: Box::new(e),
                    }),
                })
                .map_err(|e| e.to_string())
        }
    }
    .map_err(|message| error("lexicon", message))?;
    Ok(Arc::new(Loaded {
        lexicon,
        make,
        extra,
    }))
}

impl Task for BigramShift {
    fn train_lengths(&self) -> (usize, usize) {
        (self.min_len, self.max_len)
    }

    /// `w1 .. wn [SEP] -> swapped | original`
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        Some((len.checked_add(1)?, 1))
    }

    fn load(&self, base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        load(&self.lexicon, base_dir, bigram_shift, [ORIGINAL, SWAPPED])
    }

    fn input_paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        self.lexicon.iter_mut().map(|p| ("lexicon", p)).collect()
    }

    fn builtin_inputs(&self) -> Vec<(&'static str, &'static str)> {
        match self.lexicon {
            None => vec![("lexicon (built in)", super::grammar::BUILTIN_LEXICON)],
            Some(_) => Vec::new(),
        }
    }
}

impl Task for Agent {
    fn train_lengths(&self) -> (usize, usize) {
        (self.min_len, self.max_len)
    }

    /// `w1 .. wn [SEP] agent -> noun`
    fn example_size(&self, len: usize) -> Option<(usize, usize)> {
        Some((len.checked_add(2)?, 1))
    }

    fn load(&self, base_dir: &Path) -> Result<Arc<dyn Generate>, TaskConfigError> {
        load(&self.lexicon, base_dir, agent, [AGENT, PATIENT])
    }

    fn input_paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        self.lexicon.iter_mut().map(|p| ("lexicon", p)).collect()
    }

    fn builtin_inputs(&self) -> Vec<(&'static str, &'static str)> {
        match self.lexicon {
            None => vec![("lexicon (built in)", super::grammar::BUILTIN_LEXICON)],
            Some(_) => Vec::new(),
        }
    }
}

impl Generate for Loaded {
    fn min_len(&self) -> usize {
        grammar::MIN_WORDS
    }

    fn min_len_reason(&self, _kind: &str) -> String {
        format!(
            "the grammar's shortest sentence has {} words",
            self.min_len()
        )
    }

    fn example(&self, rng: &mut Rng, len: usize) -> Example {
        (self.make)(&self.lexicon, rng, len)
    }

    /// The lexicon's words ([`Lexicon::words`]), then the task's answer or question tokens.
    fn symbols(&self, _max_eval_len: usize) -> Vec<String> {
        let mut words = self.lexicon.words();
        words.extend(self.extra.map(String::from));
        words
    }

    fn vocab_estimate(&self, _max_eval_len: usize) -> u64 {
        self.lexicon.words().len() as u64 + 2
    }
}

/// Answer of `bigram_shift` when two words were swapped.
pub const SWAPPED: &str = "swapped";
/// Answer of `bigram_shift` when the sentence is untouched.
pub const ORIGINAL: &str = "original";
/// Question of `agent` asking for the main subject.
pub const AGENT: &str = "agent";
/// Question of `agent` asking for the main object.
pub const PATIENT: &str = "patient";

/// The words these tasks use themselves, which a lexicon may not hold: the separator, the
/// answers of `bigram_shift` and the questions of `agent`.
const RESERVED: [&str; 5] = [SEP, SWAPPED, ORIGINAL, AGENT, PATIENT];

/// The positions `i` at which swapping words `i` and `i + 1` is allowed (see the module docs).
pub fn swap_candidates(sentence: &Sentence) -> Vec<usize> {
    let (words, tags) = (&sentence.words, &sentence.tags);
    let mut scratch = tags.clone();
    (0..words.len().saturating_sub(1))
        .filter(|&i| {
            let (a, b) = (tags[i], tags[i + 1]);
            if words[i] == words[i + 1] || a == b {
                return false;
            }
            if matches!((a, b), (Pos::Rel, Pos::Verb) | (Pos::Verb, Pos::Rel)) {
                return false;
            }
            scratch.swap(i, i + 1);
            let grammatical = parse_tags(&scratch).is_some();
            scratch.swap(i, i + 1);
            !grammatical
        })
        .collect()
}

/// One `bigram_shift` example with a sentence of exactly `len` words (`len >= 5`).
pub fn bigram_shift(lexicon: &Lexicon, rng: &mut Rng, len: usize) -> Example {
    let sentence = lexicon.sentence(rng, len);
    let swap = rng.chance(0.5);
    let candidates = if swap {
        swap_candidates(&sentence)
    } else {
        Vec::new()
    };
    let mut prompt = sentence.words;
    if swap {
        let i = *rng.pick(&candidates);
        prompt.swap(i, i + 1);
    }
    prompt.push(SEP.to_string());
    let label = if swap { SWAPPED } else { ORIGINAL };
    Example {
        prompt,
        answer: vec![label.to_string()],
    }
}

/// One `agent` example with a sentence of exactly `len` words (`len >= 5`).
pub fn agent(lexicon: &Lexicon, rng: &mut Rng, len: usize) -> Example {
    let sentence = lexicon.sentence(rng, len);
    let (question, at) = if rng.chance(0.5) {
        (AGENT, sentence.agent)
    } else {
        (PATIENT, sentence.patient)
    };
    let answer = vec![sentence.words[at].clone()];
    let mut prompt = sentence.words;
    prompt.push(SEP.to_string());
    prompt.push(question.to_string());
    Example { prompt, answer }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer an `agent` prompt calls for, computed from the words alone with the
    /// recogniser (an oracle independent of how the example was generated).
    fn oracle(lex: &Lexicon, prompt: &[String]) -> String {
        let n = prompt.len();
        assert_eq!(prompt[n - 2], SEP);
        let p = lex.parse(&prompt[..n - 2]).expect("grammatical");
        match prompt[n - 1].as_str() {
            AGENT => prompt[p.agent].clone(),
            PATIENT => prompt[p.patient].clone(),
            q => panic!("unknown question {q}"),
        }
    }

    fn sorted(words: &[String]) -> Vec<String> {
        let mut w = words.to_vec();
        w.sort();
        w
    }

    #[test]
    fn bigram_shift_is_balanced() {
        let lex = Lexicon::builtin();
        let mut rng = Rng::new(11);
        let swapped = (0..2000)
            .filter(|i| bigram_shift(&lex, &mut rng, 5 + i % 30).answer == [SWAPPED])
            .count();
        assert!((900..=1100).contains(&swapped), "{swapped} of 2000 swapped");
    }

    #[test]
    fn bigram_shift_labels_are_correct() {
        let lex = Lexicon::builtin();
        let mut rng = Rng::new(12);
        for i in 0..2000 {
            let len = 5 + i % 40;
            let ex = bigram_shift(&lex, &mut rng, len);
            assert_eq!(ex.prompt.len(), len + 1);
            assert_eq!(ex.prompt[len], SEP);
            let words = &ex.prompt[..len];
            if ex.answer == [ORIGINAL] {
                assert!(
                    lex.parse(words).is_some(),
                    "original but ungrammatical: {words:?}"
                );
                continue;
            }
            assert_eq!(ex.answer, [SWAPPED]);
            assert!(
                lex.parse(words).is_none(),
                "swapped but grammatical: {words:?}"
            );
            // Undoing exactly one adjacent swap gives a grammatical sentence, and the swapped
            // words differ and have different parts of speech.
            let undo: Vec<usize> = (0..len - 1)
                .filter(|&k| {
                    let mut w = words.to_vec();
                    w.swap(k, k + 1);
                    lex.parse(&w).is_some()
                })
                .collect();
            assert!(!undo.is_empty(), "no single swap repairs {words:?}");
            assert!(
                undo.iter()
                    .any(|&k| words[k] != words[k + 1]
                        && lex.pos(&words[k]) != lex.pos(&words[k + 1])),
                "{words:?}"
            );
        }
    }

    #[test]
    fn bigram_shift_rules_need_no_recogniser_with_builtin_lexicon() {
        // Rules 1-3 alone already make every swap ungrammatical: the recogniser check (rule 4)
        // only guards other lexicons.
        let lex = Lexicon::builtin();
        let mut rng = Rng::new(13);
        for i in 0..1000 {
            let s = lex.sentence(&mut rng, 5 + i % 30);
            let allowed = swap_candidates(&s);
            assert!(allowed.contains(&0), "{:?}", s.words);
            for k in 0..s.words.len() - 1 {
                let (a, b) = (s.tags[k], s.tags[k + 1]);
                let rules_1_to_3 = s.words[k] != s.words[k + 1]
                    && a != b
                    && !matches!((a, b), (Pos::Rel, Pos::Verb) | (Pos::Verb, Pos::Rel));
                assert_eq!(allowed.contains(&k), rules_1_to_3, "{k} in {:?}", s.words);
            }
        }
    }

    #[test]
    fn agent_answers_match_the_main_clause() {
        let lex = Lexicon::builtin();
        let mut rng = Rng::new(14);
        let mut asked_agent = 0;
        for i in 0..2000 {
            let len = 5 + i % 40;
            let ex = agent(&lex, &mut rng, len);
            assert_eq!(ex.prompt.len(), len + 2);
            assert_eq!(ex.answer.len(), 1);
            let noun = &ex.answer[0];
            assert_eq!(lex.pos(noun), Some(Pos::Animal));
            assert_eq!(ex.prompt[..len].iter().filter(|w| *w == noun).count(), 1);
            assert_eq!(&oracle(&lex, &ex.prompt), noun);
            asked_agent += usize::from(ex.prompt[len + 1] == AGENT);
        }
        assert!(
            (900..=1100).contains(&asked_agent),
            "{asked_agent} agent questions"
        );
    }

    #[test]
    fn swapping_the_main_nouns_swaps_the_answer_with_the_same_bag_of_words() {
        let lex = Lexicon::builtin();
        let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        // Hand-checked.
        let mut prompt =
            words("the old cat that the dog watched chased the small mouse on the mat [SEP] agent");
        assert_eq!(oracle(&lex, &prompt), "cat");
        *prompt.last_mut().unwrap() = PATIENT.to_string();
        assert_eq!(oracle(&lex, &prompt), "mouse");
        let mut swapped = prompt.clone();
        swapped.swap(2, 10);
        assert_eq!(oracle(&lex, &swapped), "cat");
        // Generated.
        let mut rng = Rng::new(15);
        for i in 0..1000 {
            let len = 5 + i % 60;
            let ex = agent(&lex, &mut rng, len);
            let p = lex.parse(&ex.prompt[..len]).unwrap();
            let (a, b) = (ex.prompt[p.agent].clone(), ex.prompt[p.patient].clone());
            let mut other = ex.prompt.clone();
            other.swap(p.agent, p.patient);
            assert_eq!(sorted(&other), sorted(&ex.prompt), "same bag of words");
            let expected = if ex.answer[0] == a { &b } else { &a };
            assert_eq!(&oracle(&lex, &other), expected, "{:?}", ex.prompt);
            assert_ne!(oracle(&lex, &other), ex.answer[0]);
        }
    }

    #[test]
    fn sentence_tasks_are_deterministic() {
        let lex = Lexicon::builtin();
        for task in [bigram_shift, agent] {
            let run = |seed| {
                let mut rng = Rng::new(seed);
                (0..20)
                    .map(|i| task(&lex, &mut rng, 5 + i))
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(1), run(1));
            assert_ne!(run(1), run(2));
        }
    }
}
