//! The toy English grammar behind the sentence tasks: the [`Lexicon`] (loaded from
//! `data/lexicon.toml` or a file with the same keys), a sentence generator that hits an exact
//! word count, a recogniser ([`Lexicon::parse`]) and the language-modelling [`corpus`].
//!
//! ```text
//! S   -> NP V NP                      subject (the agent), main verb, object (the patient)
//! NP  -> Det Adj{0,2} Animal Mod*     a main-clause noun phrase
//! Mod -> RC | PP
//! RC  -> that Det Adj{0,2} Animal V   object relative:  "that the dog watched"
//!      | that V Det Adj{0,2} Animal   subject relative: "that watched the dog"
//! PP  -> Prep Det Adj{0,2} Place      "near the old tree"
//! ```
//!
//! Embedded noun phrases (inside RCs and PPs) take adjectives but no modifiers, so every
//! sentence has exactly one parse and the grammar is LL(1) over parts of speech (each word
//! belongs to exactly one part of speech; [`Lexicon::from_toml`] checks it).
//!
//! Exact lengths: the skeleton `Det Animal V Det Animal` has [`MIN_WORDS`] = 5 words; an
//! adjective adds 1, a PP 3, an RC 4, and each RC/PP brings a new noun phrase with room for
//! [`MAX_ADJECTIVES`] adjectives. With `b` words still to add and `f` free adjective slots the
//! target is reachable iff `b <= f || b >= 3` (a PP adds 3 words and 2 slots), so the
//! generator picks, step by step, uniformly among the additions (adjective, PP, RC) that keep
//! the target reachable: every length >= 5 is generated exactly, without rejection.

use crate::rng::Rng;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The built-in lexicon (`data/lexicon.toml`).
pub const BUILTIN_LEXICON: &str = include_str!("../../../data/lexicon.toml");

/// The fewest words of a sentence: `Det Animal V Det Animal`.
pub const MIN_WORDS: usize = 5;

/// At most this many adjectives per noun phrase.
pub const MAX_ADJECTIVES: usize = 2;

/// Parts of speech, in the order [`Lexicon::words`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Pos {
    Det,
    Adj,
    /// Nouns of agents, patients and relative clauses.
    Animal,
    /// Nouns of prepositional phrases.
    Place,
    Verb,
    Prep,
    /// The relativizer ("that").
    Rel,
}

impl Pos {
    pub const ALL: [Pos; 7] = [
        Pos::Det,
        Pos::Adj,
        Pos::Animal,
        Pos::Place,
        Pos::Verb,
        Pos::Prep,
        Pos::Rel,
    ];
}

/// The lexicon file's layout.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    determiners: Vec<String>,
    adjectives: Vec<String>,
    animals: Vec<String>,
    places: Vec<String>,
    verbs: Vec<String>,
    prepositions: Vec<String>,
    #[serde(default = "default_relativizer")]
    relativizer: String,
}

fn default_relativizer() -> String {
    "that".to_string()
}

/// Why a lexicon is refused; `key` is the TOML key of a part of speech (`animals`, ...).
#[derive(Debug, thiserror::Error)]
pub enum LexiconError {
    #[error("cannot read lexicon file `{}`: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid lexicon file `{}`: {error}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        error: Box<LexiconError>,
    },
    /// Not TOML, or not the layout of `data/lexicon.toml` (toml's message).
    #[error("{0}")]
    Syntax(String),
    #[error("`{key}` needs at least {needed} words, found {found}")]
    TooFew {
        key: &'static str,
        needed: usize,
        found: usize,
    },
    #[error("`{key}`: every word must be one non-empty token without spaces, found {word:?}")]
    NotAToken { key: &'static str, word: String },
    #[error("`{key}`: {word:?} is reserved for the tasks' questions and answers")]
    Reserved { key: &'static str, word: String },
    #[error(
        "{word:?} appears in `{first}` and in `{second}`; each word must have one part of speech"
    )]
    TwoPartsOfSpeech {
        word: String,
        first: &'static str,
        second: &'static str,
    },
}

/// A validated lexicon: one list of words per part of speech, each word in exactly one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexicon {
    /// Indexed by `Pos as usize`.
    lists: [Vec<String>; 7],
    index: BTreeMap<String, Pos>,
}

/// A generated sentence with its parts of speech and the positions of the main clause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    pub words: Vec<String>,
    pub tags: Vec<Pos>,
    /// Index of the main subject's head noun.
    pub agent: usize,
    /// Index of the main verb.
    pub verb: usize,
    /// Index of the main object's head noun.
    pub patient: usize,
}

/// The main-clause positions found by the recogniser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parse {
    pub agent: usize,
    pub verb: usize,
    pub patient: usize,
}

impl Lexicon {
    /// The built-in lexicon.
    pub fn builtin() -> Lexicon {
        Lexicon::from_toml(BUILTIN_LEXICON).expect("the built-in data/lexicon.toml is valid")
    }

    /// Reads and validates a lexicon file. The error names the path and says what is wrong.
    pub fn load(path: &Path) -> Result<Lexicon, LexiconError> {
        let text = crate::read_input(path).map_err(|source| LexiconError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Lexicon::from_toml(&text).map_err(|error| LexiconError::InFile {
            path: path.to_path_buf(),
            error: Box::new(error),
        })
    }

    /// Parses and validates a lexicon from TOML text (the layout of `data/lexicon.toml`).
    pub fn from_toml(text: &str) -> Result<Lexicon, LexiconError> {
        let file: LexiconFile = toml::from_str(text)
            .map_err(|e| LexiconError::Syntax(e.to_string().trim().to_string()))?;
        let lists = [
            file.determiners,
            file.adjectives,
            file.animals,
            file.places,
            file.verbs,
            file.prepositions,
            vec![file.relativizer],
        ];
        let minimum = |pos: Pos| match pos {
            Pos::Animal => 3,
            Pos::Adj => MAX_ADJECTIVES,
            Pos::Verb => 2,
            _ => 1,
        };
        let mut index = BTreeMap::new();
        for pos in Pos::ALL {
            let list = &lists[pos as usize];
            let name = key(pos);
            if list.len() < minimum(pos) {
                return Err(LexiconError::TooFew {
                    key: name,
                    needed: minimum(pos),
                    found: list.len(),
                });
            }
            for word in list {
                if word.is_empty() || word.chars().any(char::is_whitespace) {
                    return Err(LexiconError::NotAToken {
                        key: name,
                        word: word.clone(),
                    });
                }
                if let Some(other) = index.insert(word.clone(), pos) {
                    return Err(LexiconError::TwoPartsOfSpeech {
                        word: word.clone(),
                        first: key(other),
                        second: name,
                    });
                }
            }
        }
        Ok(Lexicon { lists, index })
    }

    /// Refuses a lexicon holding one of `reserved`: the words the tasks built on it use
    /// themselves (their separator, questions and answers; see `sentence.rs`).
    pub fn refuse_reserved(&self, reserved: &[&str]) -> Result<(), LexiconError> {
        for pos in Pos::ALL {
            if let Some(word) = self
                .list(pos)
                .iter()
                .find(|w| reserved.contains(&w.as_str()))
            {
                return Err(LexiconError::Reserved {
                    key: key(pos),
                    word: word.clone(),
                });
            }
        }
        Ok(())
    }

    /// The words of one part of speech, in file order.
    pub fn list(&self, pos: Pos) -> &[String] {
        &self.lists[pos as usize]
    }

    /// Every word, by part of speech ([`Pos::ALL`] order) then file order.
    pub fn words(&self) -> Vec<String> {
        self.lists.iter().flatten().cloned().collect()
    }

    /// The part of speech of a word, if it is in the lexicon.
    pub fn pos(&self, word: &str) -> Option<Pos> {
        self.index.get(word).copied()
    }

    /// Recognises a sentence of the grammar (parts of speech and the adjective cap only; the
    /// generator's extra constraints, such as distinct nouns, are not checked). Returns the
    /// main-clause positions, or `None` if the words are not a sentence.
    pub fn parse<S: AsRef<str>>(&self, words: &[S]) -> Option<Parse> {
        let tags = words
            .iter()
            .map(|w| self.pos(w.as_ref()))
            .collect::<Option<Vec<Pos>>>()?;
        parse_tags(&tags)
    }

    /// A random sentence of exactly `len` words. Panics if `len < MIN_WORDS`.
    pub fn sentence(&self, rng: &mut Rng, len: usize) -> Sentence {
        assert!(
            len >= MIN_WORDS,
            "a sentence has at least {MIN_WORDS} words, asked for {len}"
        );

        // 1. Plan how many adjectives, PPs and RCs to add (see the module docs).
        #[derive(Clone, Copy)]
        enum Step {
            Adj,
            Pp,
            Rc,
        }
        let reachable = |b: usize, f: usize| b <= f || b >= 3;
        let mut budget = len - MIN_WORDS;
        let mut free = 2 * MAX_ADJECTIVES;
        let mut adjectives = 0;
        let mut steps = Vec::new();
        while budget > 0 {
            let mut options = Vec::with_capacity(3);
            if free >= 1 && reachable(budget - 1, free - 1) {
                options.push(Step::Adj);
            }
            if budget >= 3 && reachable(budget - 3, free + MAX_ADJECTIVES) {
                options.push(Step::Pp);
            }
            if budget >= 4 && reachable(budget - 4, free + MAX_ADJECTIVES) {
                options.push(Step::Rc);
            }
            match *rng.pick(&options) {
                Step::Adj => {
                    adjectives += 1;
                    free -= 1;
                    budget -= 1;
                }
                step @ (Step::Pp | Step::Rc) => {
                    steps.push(step);
                    free += MAX_ADJECTIVES;
                    budget -= if matches!(step, Step::Pp) { 3 } else { 4 };
                }
            }
        }

        // 2. Attach each modifier to the subject or the object; choose the RC kinds.
        #[derive(Clone, Copy, PartialEq)]
        enum Mod {
            Pp,
            RcObject,
            RcSubject,
        }
        let mods: Vec<(Mod, bool)> = steps
            .iter()
            .map(|step| {
                let kind = match step {
                    Step::Pp => Mod::Pp,
                    _ if rng.chance(0.5) => Mod::RcObject,
                    _ => Mod::RcSubject,
                };
                (kind, rng.chance(0.5))
            })
            .collect();

        // 3. Spread the adjectives over the noun phrases: 0 = subject, 1 = object, 2 + i = the
        //    noun phrase of modifier i.
        let nps = 2 + mods.len();
        let mut adj_count = vec![0usize; nps];
        for _ in 0..adjectives {
            let open: Vec<usize> = (0..nps)
                .filter(|&i| adj_count[i] < MAX_ADJECTIVES)
                .collect();
            adj_count[*rng.pick(&open)] += 1;
        }

        // 4. Choose the words and lay them out.
        let animals = self.list(Pos::Animal);
        let verbs = self.list(Pos::Verb);
        let agent_noun = rng.below(animals.len());
        let patient_noun = other_than(rng, animals.len(), &[agent_noun]);
        let main_verb = rng.below(verbs.len());

        let mut out = Builder {
            lexicon: self,
            words: Vec::with_capacity(len),
            tags: Vec::with_capacity(len),
        };
        let np = |out: &mut Builder, rng: &mut Rng, np: usize, noun_pos: Pos, noun: usize| {
            out.push_random(rng, Pos::Det);
            for a in sample_distinct(rng, self.list(Pos::Adj).len(), adj_count[np]) {
                out.push(Pos::Adj, a);
            }
            out.push(noun_pos, noun);
            out.words.len() - 1
        };
        let main_np = |out: &mut Builder, rng: &mut Rng, subject: bool, noun: usize| {
            let head = np(out, rng, if subject { 0 } else { 1 }, Pos::Animal, noun);
            for (i, &(kind, on_subject)) in mods.iter().enumerate() {
                if on_subject != subject {
                    continue;
                }
                let inner = 2 + i;
                match kind {
                    Mod::Pp => {
                        out.push_random(rng, Pos::Prep);
                        let place = rng.below(self.list(Pos::Place).len());
                        np(out, rng, inner, Pos::Place, place);
                    }
                    Mod::RcObject => {
                        out.push(Pos::Rel, 0);
                        let noun = other_than(rng, animals.len(), &[agent_noun, patient_noun]);
                        np(out, rng, inner, Pos::Animal, noun);
                        let verb = other_than(rng, verbs.len(), &[main_verb]);
                        out.push(Pos::Verb, verb);
                    }
                    Mod::RcSubject => {
                        out.push(Pos::Rel, 0);
                        let verb = other_than(rng, verbs.len(), &[main_verb]);
                        out.push(Pos::Verb, verb);
                        let noun = other_than(rng, animals.len(), &[agent_noun, patient_noun]);
                        np(out, rng, inner, Pos::Animal, noun);
                    }
                }
            }
            head
        };
        let agent = main_np(&mut out, rng, true, agent_noun);
        out.push(Pos::Verb, main_verb);
        let verb = out.words.len() - 1;
        let patient = main_np(&mut out, rng, false, patient_noun);
        debug_assert_eq!(out.words.len(), len);
        Sentence {
            words: out.words,
            tags: out.tags,
            agent,
            verb,
            patient,
        }
    }
}

/// The TOML key of a part of speech.
fn key(pos: Pos) -> &'static str {
    match pos {
        Pos::Det => "determiners",
        Pos::Adj => "adjectives",
        Pos::Animal => "animals",
        Pos::Place => "places",
        Pos::Verb => "verbs",
        Pos::Prep => "prepositions",
        Pos::Rel => "relativizer",
    }
}

struct Builder<'a> {
    lexicon: &'a Lexicon,
    words: Vec<String>,
    tags: Vec<Pos>,
}

impl Builder<'_> {
    fn push(&mut self, pos: Pos, i: usize) {
        self.words.push(self.lexicon.list(pos)[i].clone());
        self.tags.push(pos);
    }

    fn push_random(&mut self, rng: &mut Rng, pos: Pos) {
        let i = rng.below(self.lexicon.list(pos).len());
        self.push(pos, i);
    }
}

/// A uniform index in `0..n` not in `avoid` (which must leave at least one choice).
fn other_than(rng: &mut Rng, n: usize, avoid: &[usize]) -> usize {
    let mut avoid = avoid.to_vec();
    avoid.sort_unstable();
    avoid.dedup();
    let mut i = rng.below(n - avoid.len());
    for &a in &avoid {
        if i >= a {
            i += 1;
        }
    }
    i
}

/// `k` distinct indices in `0..n`, uniformly (partial Fisher-Yates).
fn sample_distinct(rng: &mut Rng, n: usize, k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = i + rng.below(n - i);
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx
}

/// The recogniser over parts of speech (see the grammar in the module docs).
pub fn parse_tags(tags: &[Pos]) -> Option<Parse> {
    let mut p = Parser { tags, at: 0 };
    let agent = p.main_np()?;
    let verb = p.expect(Pos::Verb)?;
    let patient = p.main_np()?;
    (p.at == tags.len()).then_some(Parse {
        agent,
        verb,
        patient,
    })
}

struct Parser<'a> {
    tags: &'a [Pos],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<Pos> {
        self.tags.get(self.at).copied()
    }

    fn expect(&mut self, pos: Pos) -> Option<usize> {
        (self.peek() == Some(pos)).then(|| {
            self.at += 1;
            self.at - 1
        })
    }

    /// `Det Adj{0,MAX} noun`, returning the noun's index.
    fn np(&mut self, noun: Pos) -> Option<usize> {
        self.expect(Pos::Det)?;
        let mut adjectives = 0;
        while self.expect(Pos::Adj).is_some() {
            adjectives += 1;
        }
        if adjectives > MAX_ADJECTIVES {
            return None;
        }
        self.expect(noun)
    }

    /// `Det Adj{0,MAX} Animal (RC | PP)*`, returning the head noun's index.
    fn main_np(&mut self) -> Option<usize> {
        let head = self.np(Pos::Animal)?;
        loop {
            match self.peek() {
                Some(Pos::Rel) => {
                    self.at += 1;
                    match self.peek() {
                        Some(Pos::Det) => {
                            self.np(Pos::Animal)?;
                            self.expect(Pos::Verb)?;
                        }
                        Some(Pos::Verb) => {
                            self.at += 1;
                            self.np(Pos::Animal)?;
                        }
                        _ => return None,
                    }
                }
                Some(Pos::Prep) => {
                    self.at += 1;
                    self.np(Pos::Place)?;
                }
                _ => return Some(head),
            }
        }
    }
}

/// A language-modelling corpus: `sentences` lines, each one sentence of the grammar with a
/// length uniform in `min_len..=max_len`, words separated by single spaces, every line ending
/// in `\n`. Deterministic in `seed` (drawn from `Rng::derive(seed, "corpus")`).
/// Panics if `min_len < MIN_WORDS` or `min_len > max_len`.
pub fn corpus(
    lexicon: &Lexicon,
    seed: u64,
    sentences: usize,
    min_len: usize,
    max_len: usize,
) -> String {
    assert!(
        MIN_WORDS <= min_len && min_len <= max_len,
        "corpus lengths must satisfy {MIN_WORDS} <= min_len <= max_len, found {min_len}..={max_len}"
    );
    let mut rng = Rng::derive(seed, "corpus");
    let mut out = String::new();
    for _ in 0..sentences {
        let len = rng.range(min_len, max_len);
        out.push_str(&lexicon.sentence(&mut rng, len).words.join(" "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn builtin_lexicon_loads_with_disjoint_parts_of_speech() {
        let lex = Lexicon::builtin();
        let all = lex.words();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
        assert_eq!(lex.list(Pos::Rel), ["that"]);
        assert_eq!(lex.pos("cat"), Some(Pos::Animal));
        assert_eq!(lex.pos("mat"), Some(Pos::Place));
        assert_eq!(lex.pos("chased"), Some(Pos::Verb));
        assert_eq!(lex.pos("zebra"), None);
        assert!(lex.list(Pos::Animal).len() >= 3);
    }

    #[test]
    fn recogniser_accepts_and_rejects_hand_made_sentences() {
        let lex = Lexicon::builtin();
        let p = lex
            .parse(&words(
                "the old cat that the dog watched chased the small mouse on the mat",
            ))
            .expect("grammatical");
        assert_eq!((p.agent, p.verb, p.patient), (2, 7, 10));
        let p = lex
            .parse(&words(
                "the cat that watched the dog near the tree chased the mouse",
            ))
            .expect("grammatical");
        assert_eq!((p.agent, p.verb, p.patient), (1, 9, 11));
        assert!(lex.parse(&words("the cat chased the mouse")).is_some());
        for bad in [
            "",
            "the cat chased the",
            "cat the chased the mouse",
            "the cat chased the mouse the",
            "the cat the chased mouse",
            "the old cat chased the small mouse that",
            "the cat watched that the dog chased the mouse",
            "the cat chased the mat",
            "the cat near the dog chased the mouse",
            "the old big small cat chased the mouse",
            "the cat chased the zebra",
        ] {
            assert_eq!(lex.parse(&words(bad)), None, "{bad:?}");
        }
    }

    #[test]
    fn sentences_have_exact_lengths_and_parse() {
        let lex = Lexicon::builtin();
        let mut rng = Rng::new(7);
        let lens: Vec<usize> = (5..=40).chain([63, 64, 100, 128]).collect();
        for &len in &lens {
            for _ in 0..30 {
                let s = lex.sentence(&mut rng, len);
                assert_eq!(s.words.len(), len);
                assert_eq!(s.tags.len(), len);
                let p = lex
                    .parse(&s.words)
                    .unwrap_or_else(|| panic!("{:?}", s.words));
                assert_eq!((p.agent, p.verb, p.patient), (s.agent, s.verb, s.patient));
                for (w, &t) in s.words.iter().zip(&s.tags) {
                    assert_eq!(lex.pos(w), Some(t));
                }
            }
        }
    }

    #[test]
    fn generator_constraints_hold() {
        let lex = Lexicon::builtin();
        let mut rng = Rng::new(8);
        for i in 0..2000 {
            let s = lex.sentence(&mut rng, 5 + i % 40);
            let (a, p, v) = (&s.words[s.agent], &s.words[s.patient], &s.words[s.verb]);
            assert_ne!(a, p);
            // The two main nouns occur once each; other verbs differ from the main verb.
            assert_eq!(
                s.words.iter().filter(|w| *w == a).count(),
                1,
                "{:?}",
                s.words
            );
            assert_eq!(
                s.words.iter().filter(|w| *w == p).count(),
                1,
                "{:?}",
                s.words
            );
            assert_eq!(
                s.words.iter().filter(|w| *w == v).count(),
                1,
                "{:?}",
                s.words
            );
            // Adjacent adjectives differ.
            for k in 1..s.words.len() {
                if s.tags[k] == Pos::Adj && s.tags[k - 1] == Pos::Adj {
                    assert_ne!(s.words[k], s.words[k - 1]);
                }
            }
        }
    }

    #[test]
    fn sentences_vary_and_are_deterministic() {
        let lex = Lexicon::builtin();
        let mut rng = Rng::new(9);
        let (mut rc_obj, mut rc_subj, mut pp, mut adj, mut subj_mod, mut obj_mod) =
            (0, 0, 0, 0, 0, 0);
        for _ in 0..500 {
            let s = lex.sentence(&mut rng, 16);
            for k in 0..s.words.len() - 1 {
                if s.tags[k] == Pos::Rel {
                    match s.tags[k + 1] {
                        Pos::Det => rc_obj += 1,
                        Pos::Verb => rc_subj += 1,
                        t => panic!("{t:?} after that"),
                    }
                }
            }
            pp += s.tags.iter().filter(|&&t| t == Pos::Prep).count();
            adj += s.tags.iter().filter(|&&t| t == Pos::Adj).count();
            subj_mod += usize::from(s.verb > s.agent + 1);
            obj_mod += usize::from(s.patient + 1 < s.words.len());
        }
        for (name, n) in [
            ("object RCs", rc_obj),
            ("subject RCs", rc_subj),
            ("PPs", pp),
            ("adjectives", adj),
            ("modified subjects", subj_mod),
            ("modified objects", obj_mod),
        ] {
            assert!(n >= 50, "only {n} {name} in 500 sentences");
        }
        let a = lex.sentence(&mut Rng::new(1), 20);
        assert_eq!(a, lex.sentence(&mut Rng::new(1), 20));
        assert_ne!(a, lex.sentence(&mut Rng::new(2), 20));
    }

    #[test]
    fn corpus_is_deterministic_with_lengths_in_range() {
        let lex = Lexicon::builtin();
        let text = corpus(&lex, 3, 200, 5, 12);
        assert_eq!(text, corpus(&lex, 3, 200, 5, 12));
        assert_ne!(text, corpus(&lex, 4, 200, 5, 12));
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 200);
        let mut seen = [false; 13];
        for line in lines {
            let w = words(line);
            assert!((5..=12).contains(&w.len()), "{line:?}");
            assert!(lex.parse(&w).is_some(), "{line:?}");
            seen[w.len()] = true;
        }
        assert!(seen[5..].iter().all(|&s| s), "not every length appears");
    }

    #[test]
    fn invalid_lexicons_are_rejected_with_reasons() {
        let replace = |from: &str, to: &str| {
            assert!(BUILTIN_LEXICON.contains(from));
            Lexicon::from_toml(&BUILTIN_LEXICON.replacen(from, to, 1))
                .unwrap_err()
                .to_string()
        };
        let e = replace("\"cat\", \"dog\"", "\"cat\", \"mat\"");
        assert!(
            e.contains("\"mat\"") && e.contains("animals") && e.contains("places"),
            "{e}"
        );
        let e = replace(
            "relativizer = \"that\"",
            "relativizer = \"that\"\ncolours = [\"red\"]",
        );
        assert!(e.contains("colours"), "{e}");
        let e = replace("\"fed\"", "\"ate up\"");
        assert!(e.contains("ate up") && e.contains("verbs"), "{e}");
        let with_agent = BUILTIN_LEXICON.replacen("\"tiger\"", "\"agent\"", 1);
        let e = Lexicon::from_toml(&with_agent)
            .unwrap()
            .refuse_reserved(&["agent"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("reserved") && e.contains("animals"), "{e}");
        let e = Lexicon::from_toml(
            "determiners = [\"the\"]\nadjectives = [\"a\", \"b\"]\nanimals = [\"cat\", \"dog\"]\n\
             places = [\"mat\"]\nverbs = [\"saw\", \"met\"]\nprepositions = [\"on\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("animals") && e.contains("at least 3") && e.contains("found 2"),
            "{e}"
        );
        let e = replace("prepositions = [", "prepositions = 3 #");
        assert!(e.contains("prepositions"), "{e}");
        let e = Lexicon::load(Path::new("/nonexistent/lexicon.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/lexicon.toml"), "{e}");
    }

    #[test]
    fn helpers_sample_correctly() {
        let mut rng = Rng::new(5);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            let i = other_than(&mut rng, 5, &[3, 1, 3]);
            assert!(i != 1 && i != 3 && i < 5);
            seen[i] += 1;
        }
        assert!(
            seen[0] > 1400 && seen[2] > 1400 && seen[4] > 1400,
            "{seen:?}"
        );
        for _ in 0..100 {
            let mut s = sample_distinct(&mut rng, 4, 3);
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3);
            assert!(s.iter().all(|&i| i < 4));
        }
    }
}
