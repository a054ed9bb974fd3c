//! The context-sensitive tasks of the suite (reference: `tasks/cs/`).
//!
//! * `duplicate_string`: a binary string, twice.
//! * `missing_duplicate_string`: a binary string of `len / 2` symbols, twice, with one symbol
//!   (uniform) replaced by `?` and, for an odd `len`, a padding `_` at the end; the answer is
//!   the missing symbol. (Length 1 is the reference's constant example: `1 -> 1`.)
//! * `odds_first`: the symbols at odd 0-based positions, then those at even ones, as the
//!   reference's code computes it (`x[1::2] ++ x[::2]`; its docstring's example puts the even
//!   ones first: the code is what its experiments ran).
//! * `binary_addition`: `n + m` in little-endian binary (`|n|` uniform in `1..=len-2`, `|m| =
//!   len - 1 - |n|`, each value uniform among the non-zero ones of its width); the answer is the
//!   sum in little-endian binary without leading zeros, then `end`, padded with `0` to `len + 1`
//!   (scored up to `end`). Below 3 symbols the reference's input is one number without `+`, and
//!   its answer that number.
//! * `binary_multiplication`: the same with `*` and the product, padded to `len` tokens; below
//!   3 symbols the reference's answer is `0`s and `end`.
//! * `compute_sqrt`: a big-endian binary number of `len` bits (uniform, non-zero), the floor of
//!   its square root in big-endian binary of `ceil(len / 2)` bits.
//! * `bucket_sort`: symbols of `0..vocab_size` (5), sorted.

use super::{END, Rule, all_values, chomsky_task, digits, draw, tokens};
use crate::rng::Rng;

chomsky_task! {
    /// `kind = "duplicate_string"`.
    DuplicateStringTask (min_len = "crate::one") {
        /// The alphabet's size (2, the reference's).
        vocab_size: usize = "super::regular::two",
    } => |c| {
        super::check_at_least("vocab_size", c.vocab_size, 2)?;
        Ok(Duplicate { vocab: c.vocab_size })
    }
}

chomsky_task! {
    /// `kind = "missing_duplicate_string"`.
    MissingDuplicateStringTask (min_len = "crate::one") {} => |_c| Ok(MissingDuplicate)
}

chomsky_task! {
    /// `kind = "odds_first"`.
    OddsFirstTask (min_len = "crate::one") {
        /// The alphabet's size (2, the reference's).
        vocab_size: usize = "super::regular::two",
    } => |c| {
        super::check_at_least("vocab_size", c.vocab_size, 2)?;
        Ok(OddsFirst { vocab: c.vocab_size })
    }
}

chomsky_task! {
    /// `kind = "binary_addition"`.
    BinaryAdditionTask (min_len = "crate::one") {} => |_c| Ok(Binary { product: false })
}

chomsky_task! {
    /// `kind = "binary_multiplication"`.
    BinaryMultiplicationTask (min_len = "crate::one") {} => |_c| Ok(Binary { product: true })
}

chomsky_task! {
    /// `kind = "compute_sqrt"`.
    ComputeSqrtTask (min_len = "crate::one") {} => |_c| Ok(ComputeSqrt)
}

chomsky_task! {
    /// `kind = "bucket_sort"`.
    BucketSortTask (min_len = "crate::one") {
        /// The alphabet's size (5, the reference's).
        vocab_size: usize = "super::regular::five",
    } => |c| {
        super::check_at_least("vocab_size", c.vocab_size, 2)?;
        Ok(BucketSort { vocab: c.vocab_size })
    }
}

#[derive(Debug)]
struct Duplicate {
    vocab: usize,
}

impl Rule for Duplicate {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        tokens(&draw(rng, self.vocab, len))
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        input.iter().chain(input).cloned().collect()
    }
    fn output_len(&self, len: usize) -> usize {
        2 * len
    }
    fn alphabet(&self) -> Vec<String> {
        digits(self.vocab)
    }
}

const MISSING: &str = "?";
const PAD: &str = "_";

#[derive(Debug)]
struct MissingDuplicate;

impl Rule for MissingDuplicate {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        if len == 1 {
            return vec!["1".into()];
        }
        let half = draw(rng, 2, len / 2);
        let mut input = tokens(&half);
        input.extend(tokens(&half));
        let at = rng.below(input.len());
        input[at] = MISSING.into();
        if len % 2 == 1 {
            input.push(PAD.into());
        }
        input
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let Some(at) = input.iter().position(|t| t == MISSING) else {
            return vec!["1".into()]; // the reference's length-1 example
        };
        let half = input.iter().filter(|t| *t != PAD).count() / 2;
        let partner = if at < half { at + half } else { at - half };
        vec![input[partner].clone()]
    }
    fn output_len(&self, _len: usize) -> usize {
        1
    }
    fn alphabet(&self) -> Vec<String> {
        let mut a = digits(2);
        a.extend([MISSING, PAD].map(String::from));
        a
    }
}

#[derive(Debug)]
struct OddsFirst {
    vocab: usize,
}

impl Rule for OddsFirst {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        tokens(&draw(rng, self.vocab, len))
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let odd = input.iter().skip(1).step_by(2);
        let even = input.iter().step_by(2);
        odd.chain(even).cloned().collect()
    }
    fn output_len(&self, len: usize) -> usize {
        len
    }
    fn alphabet(&self) -> Vec<String> {
        digits(self.vocab)
    }
}

/// Little-endian bits.
type Bits = Vec<u8>;

fn trimmed(mut x: Bits) -> Bits {
    while x.len() > 1 && x.last() == Some(&0) {
        x.pop();
    }
    if x.is_empty() {
        x.push(0);
    }
    x
}

fn add(a: &[u8], b: &[u8]) -> Bits {
    let mut out = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0;
    for i in 0..a.len().max(b.len()) {
        let s = a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0) + carry;
        out.push(s % 2);
        carry = s / 2;
    }
    out.push(carry);
    trimmed(out)
}

fn mul(a: &[u8], b: &[u8]) -> Bits {
    let mut acc: Bits = vec![0];
    for (shift, &bit) in b.iter().enumerate() {
        if bit == 1 {
            let mut shifted = vec![0; shift];
            shifted.extend_from_slice(a);
            acc = add(&acc, &shifted);
        }
    }
    trimmed(acc)
}

/// `a >= b` for trimmed little-endian numbers.
fn at_least(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (trimmed(a.to_vec()), trimmed(b.to_vec()));
    if a.len() != b.len() {
        return a.len() > b.len();
    }
    a.iter().rev().cmp(b.iter().rev()) != std::cmp::Ordering::Less
}

/// `a - b` for `a >= b`.
fn sub(a: &[u8], b: &[u8]) -> Bits {
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0i8;
    for (i, &x) in a.iter().enumerate() {
        let mut d = x as i8 - b.get(i).copied().unwrap_or(0) as i8 - borrow;
        borrow = i8::from(d < 0);
        if d < 0 {
            d += 2;
        }
        out.push(d as u8);
    }
    trimmed(out)
}

/// `⌊√x⌋` of a little-endian number, by the binary digit-by-digit method.
fn isqrt(x: &[u8]) -> Bits {
    let n = x.len().div_ceil(2) * 2;
    let (mut rem, mut root): (Bits, Bits) = (vec![0], vec![0]);
    for pair in (0..n / 2).rev() {
        // rem = rem * 4 + next two bits; candidate = root * 4 + 1.
        let mut r = vec![
            x.get(2 * pair).copied().unwrap_or(0),
            x.get(2 * pair + 1).copied().unwrap_or(0),
        ];
        r.extend(&rem);
        rem = trimmed(r);
        let mut candidate = vec![1, 0];
        candidate.extend(&root);
        let mut next = vec![0];
        next.extend(&root);
        if at_least(&rem, &candidate) {
            rem = sub(&rem, &candidate);
            next[0] = 1;
        }
        root = trimmed(next);
    }
    root
}

/// A uniform non-zero number of `width` bits, little-endian, exactly `width` long.
fn nonzero(rng: &mut Rng, width: usize) -> Bits {
    loop {
        let bits: Bits = (0..width).map(|_| rng.below(2) as u8).collect();
        if bits.contains(&1) {
            return bits;
        }
    }
}

fn bit_tokens(bits: &[u8]) -> Vec<String> {
    bits.iter().map(|b| b.to_string()).collect()
}

fn bits_of(tokens: &[String]) -> Bits {
    all_values(tokens).into_iter().map(|b| b as u8).collect()
}

#[derive(Debug)]
struct Binary {
    product: bool,
}

impl Binary {
    fn op(&self) -> &'static str {
        if self.product { "*" } else { "+" }
    }
}

impl Rule for Binary {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        if len <= 2 {
            // The reference: `randint(0, 2**len - 1)` (exclusive), in `len` bits.
            let v = rng.below((1 << len) - 1);
            return (0..len).map(|i| ((v >> i) & 1).to_string()).collect();
        }
        let left = 1 + rng.below(len - 2);
        let mut input = bit_tokens(&nonzero(rng, left));
        input.push(self.op().into());
        input.extend(bit_tokens(&nonzero(rng, len - 1 - left)));
        input
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let len = input.len();
        let (mut out, total) = match input.iter().position(|t| t == self.op()) {
            Some(at) => {
                let (a, b) = (bits_of(&input[..at]), bits_of(&input[at + 1..]));
                let v = if self.product {
                    mul(&a, &b)
                } else {
                    add(&a, &b)
                };
                (bit_tokens(&v), self.output_len(len))
            }
            // The reference's short inputs: the number itself (addition), zeros (product).
            None if self.product => (vec!["0".to_string(); len - 1], len),
            None => (bit_tokens(&trimmed(bits_of(input))), len + 1),
        };
        out.push(END.into());
        out.resize(total, "0".into());
        out
    }
    fn output_len(&self, len: usize) -> usize {
        if self.product { len } else { len + 1 }
    }
    fn alphabet(&self) -> Vec<String> {
        let mut a = digits(2);
        a.extend([self.op(), END].map(String::from));
        a
    }
    fn scored(&self, answer: &[String]) -> usize {
        super::up_to_end(answer)
    }
}

#[derive(Debug)]
struct ComputeSqrt;

impl Rule for ComputeSqrt {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        let mut bits = nonzero(rng, len);
        bits.reverse(); // big-endian
        bit_tokens(&bits)
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let mut x = bits_of(input);
        x.reverse(); // little-endian
        let mut root = isqrt(&x);
        root.resize(self.output_len(input.len()), 0);
        root.reverse();
        bit_tokens(&root)
    }
    fn output_len(&self, len: usize) -> usize {
        len.div_ceil(2)
    }
    fn alphabet(&self) -> Vec<String> {
        digits(2)
    }
}

#[derive(Debug)]
struct BucketSort {
    vocab: usize,
}

impl Rule for BucketSort {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        tokens(&draw(rng, self.vocab, len))
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let mut v = all_values(input);
        v.sort_unstable();
        tokens(&v)
    }
    fn output_len(&self, len: usize) -> usize {
        len
    }
    fn alphabet(&self) -> Vec<String> {
        digits(self.vocab)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_string())
            .collect()
    }

    /// The reference's docstring examples (`2` written as `end` here).
    #[test]
    fn reference_examples() {
        let add = Binary { product: false };
        // 001+01101 (4 + 22 = 26) -> 01011 end 0000 (the code pads to 10 tokens; its
        // docstring shows one 0 fewer)
        let mut want = toks("01011");
        want.push(END.into());
        want.extend(toks("0000"));
        assert_eq!(add.answer(&toks("001+01101")), want);
        let mul = Binary { product: true };
        // 001*01101 (4 * 22 = 88) -> 0001101 end ..., 9 tokens in all
        let mut want = toks("0001101");
        want.push(END.into());
        want.extend(toks("0"));
        assert_eq!(mul.answer(&toks("001*01101")), want);
        // 37 -> 6 = 110 (the docstring writes 101)
        assert_eq!(ComputeSqrt.answer(&toks("100101")), toks("110"));
        assert_eq!(ComputeSqrt.answer(&toks("111")), toks("10"));
        // x[1::2] ++ x[::2]
        assert_eq!(OddsFirst { vocab: 2 }.answer(&toks("110")), toks("110"));
        assert_eq!(
            OddsFirst { vocab: 2 }.answer(&toks("00110101")),
            toks("01110100")
        );
        assert_eq!(MissingDuplicate.answer(&toks("01100?10")), toks("1"));
        assert_eq!(MissingDuplicate.answer(&toks("1011?1_")), toks("0"));
        assert_eq!(
            BucketSort { vocab: 5 }.answer(&toks("10204112")),
            toks("00111224")
        );
    }

    #[test]
    fn big_numbers() {
        let x: Bits = (0..300).map(|i| ((i * 7 + 3) % 5 == 0) as u8).collect();
        let r = isqrt(&x);
        // r² <= x < (r + 1)²
        assert!(at_least(&x, &mul(&r, &r)));
        let r1 = add(&r, &[1]);
        assert!(!at_least(&x, &mul(&r1, &r1)));
    }
}
