//! Where each token sits: the positions every scheme reads, and randomized positions.
//!
//! A forward pass over `t` tokens normally puts them at positions `0..t`. **Randomized
//! positions** (Ruoss et al. 2023, "Randomized Positional Encodings Boost Length Generalization
//! of Transformers", ACL, §3) instead draw `t` distinct integers uniformly from `0..N` (`N =
//! randomized_positions` in `[model.encoding]`) and sort them: the model sees only the *order*
//! of its tokens, and positions up to `N - 1` are all trained, so a longer test sequence still
//! meets positions of the training distribution. The paper takes `N` "much larger" than every
//! training and test length (its reference code: `noise_max_length = 2048` for training
//! length 40, tests up to 500); with `N` equal to the longest test sequence that sequence is
//! placed on exactly `0..N`, plain positions, so ordo's shipped study takes `N` >= 4x the
//! longest evaluated sequence. Every scheme that reads a position reads these instead: the row
//! of a sinusoid or learned table (sized `N`), the RoPE angle, the relative offset `p_j - p_i`
//! of ALiBi, T5, Shaw and FIRE. It is one option of the encoding section, applied here once,
//! not a copy of each scheme.
//!
//! Protocol, as the reference code (google-deepmind/randomized_positional_encodings:
//! `models/positional_encodings.py`, `experiments/training.py`, `range_evaluation.py`):
//! * one draw per forward pass, shared by the rows of its batch, **in training and in
//!   evaluation alike** (sequences of up to `N` tokens; longer ones are n/a, like a learned
//!   table's);
//! * a row of a batch sits on the first `len` of the positions drawn for the batch's padded
//!   length `t`, so rows must be as long as the batch for their positions to follow the draw
//!   of their own length: with randomized positions a training batch has **one length**
//!   (`train.batch_lengths = "single"`, the default then; the reference draws one length per
//!   step), and an evaluation runs **one example per forward pass** (`ordo_train::metrics::
//!   eval_batches`), so every evaluated example has a draw of its own (the reference evaluates
//!   8 sub-batches of 64 per length, 8 draws) and the per-example bootstrap resamples the draws
//!   with the examples.
//!
//! Where ordo differs from the reference, on purpose (pinned by tests):
//! * **absolute positions for every scheme.** The reference randomizes relative schemes
//!   (Transformer-XL's relative attention, ALiBi) by drawing sorted *distances* `1 <= d_1 <
//!   ... < d_{t-1} < N` and giving offset `k` the distance `d_k` (a Toeplitz structure: every
//!   pair `k` apart has the same distance), with, for ALiBi and relative attention, the other
//!   side either mirrored or drawn separately (`randomize_both_sides`). ordo draws positions
//!   `p_0 < ... < p_{t-1}` and every relative scheme reads `p_j - p_i`, so two pairs `k` apart
//!   get different distances. Same range and order, different joint distribution of offsets;
//! * **one draw shared by every layer.** The reference draws again in every attention layer
//!   for RoPE and ALiBi, so a token's position differs between layers; one position per token
//!   is what the paper describes;
//! * **the draw is seeded by the batch's token ids** (a hash), not by a generator that
//!   advances with each call: the same batch always gets the same positions, so a run resumed
//!   from a checkpoint retraces the uninterrupted run bit for bit and an evaluation repeated
//!   gives the same numbers, while different batches get independent draws. Every encoding of
//!   a study therefore meets the same draw on the same example (paired draws).

/// The positions of the `t` tokens of one forward pass, strictly increasing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    values: Vec<usize>,
    contiguous: bool,
}

impl Positions {
    /// `0..len`, the usual positions.
    pub fn contiguous(len: usize) -> Self {
        Self {
            values: (0..len).collect(),
            contiguous: true,
        }
    }

    /// Given positions.
    ///
    /// # Panics
    /// If they are not strictly increasing.
    pub fn new(values: Vec<usize>) -> Self {
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "positions must be strictly increasing: {values:?}"
        );
        let contiguous = values.iter().enumerate().all(|(i, &p)| i == p);
        Self { values, contiguous }
    }

    /// `len` distinct positions drawn uniformly from `0..max_position` and sorted (Knuth's
    /// selection sampling, Algorithm S: every subset equally likely, produced in order),
    /// from a generator seeded with `seed`.
    ///
    /// # Panics
    /// If `len > max_position`.
    pub fn sample(len: usize, max_position: usize, seed: u64) -> Self {
        assert!(
            len <= max_position,
            "cannot draw {len} distinct positions from 0..{max_position}"
        );
        let mut rng = SplitMix64(seed);
        let mut values = Vec::with_capacity(len);
        for p in 0..max_position {
            let needed = (len - values.len()) as u64;
            if needed == 0 {
                break;
            }
            let left = (max_position - p) as u64;
            // Take `p` with probability needed / left.
            if rng.below(left) < needed {
                values.push(p);
            }
        }
        Self::new(values)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether these are `0..len`.
    pub fn is_contiguous(&self) -> bool {
        self.contiguous
    }

    pub fn as_slice(&self) -> &[usize] {
        &self.values
    }

    /// One past the largest position: how many rows a table indexed by position needs.
    pub fn extent(&self) -> usize {
        self.values.last().map_or(0, |&p| p + 1)
    }
}

/// How a model places its tokens: `0..t`, or randomized positions from `0..max_position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Placement {
    #[default]
    Contiguous,
    Randomized {
        max_position: usize,
    },
}

impl Placement {
    /// The positions of `t` tokens whose ids are `tokens` (read only when randomized).
    pub fn place(&self, t: usize, tokens: impl FnOnce() -> Vec<i64>) -> Positions {
        match *self {
            Placement::Contiguous => Positions::contiguous(t),
            Placement::Randomized { max_position } => {
                Positions::sample(t, max_position, seed_of(&tokens()))
            }
        }
    }

    /// Whether positions are drawn at random.
    pub fn is_randomized(&self) -> bool {
        matches!(self, Placement::Randomized { .. })
    }

    /// Longest sequence that can be placed.
    pub fn max_len(&self) -> Option<usize> {
        match *self {
            Placement::Contiguous => None,
            Placement::Randomized { max_position } => Some(max_position),
        }
    }
}

/// FNV-1a over the token ids, then mixed: the draw's seed (see the module docs).
fn seed_of(tokens: &[i64]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in tokens {
        for byte in t.to_le_bytes() {
            h ^= byte as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    SplitMix64(h).next()
}

/// Steele, Lea, Flood 2014 SplitMix64: small, fast, and good enough to pick positions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-40 for our `n`).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_sorted_distinct_in_range_and_deterministic() {
        for seed in 0..200 {
            let p = Positions::sample(7, 40, seed);
            assert_eq!(p.len(), 7);
            assert!(p.as_slice().windows(2).all(|w| w[0] < w[1]));
            assert!(p.as_slice().iter().all(|&x| x < 40));
            assert_eq!(p, Positions::sample(7, 40, seed));
        }
        // All of 0..n when n = max_position.
        assert!(Positions::sample(9, 9, 3).is_contiguous());
        assert_eq!(Positions::sample(0, 5, 1).len(), 0);
    }

    #[test]
    fn every_position_is_equally_likely() {
        // Each of 0..N appears with probability t/N; over 20000 draws of 4 of 16 the count of
        // every position is 5000 ± 5 standard deviations (sd = sqrt(20000 * 1/4 * 3/4) = 61).
        let mut counts = [0usize; 16];
        for seed in 0..20_000 {
            for &p in Positions::sample(4, 16, seed).as_slice() {
                counts[p] += 1;
            }
        }
        for (p, &c) in counts.iter().enumerate() {
            assert!((4694..=5306).contains(&c), "position {p}: {c}");
        }
        // And the first position is the minimum of 4 draws: P(first = 0) = 4/16.
        let zero = (0..20_000)
            .filter(|&s| Positions::sample(4, 16, s).as_slice()[0] == 0)
            .count();
        assert!((4694..=5306).contains(&zero), "{zero}");
    }

    #[test]
    fn placement_is_seeded_by_the_tokens() {
        let placement = Placement::Randomized { max_position: 64 };
        let a = placement.place(8, || vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(a, placement.place(8, || vec![1, 2, 3, 4, 5, 6, 7, 8]));
        let b = placement.place(8, || vec![1, 2, 3, 4, 5, 6, 7, 9]);
        assert_ne!(a, b);
        assert!(!a.is_contiguous());
        assert_eq!(
            Placement::Contiguous.place(5, || unreachable!("not read")),
            Positions::contiguous(5)
        );
        assert_eq!(placement.max_len(), Some(64));
    }
}
