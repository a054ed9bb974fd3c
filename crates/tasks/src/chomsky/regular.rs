//! The regular tasks of the suite (reference: `tasks/regular/`). Each answer is one class.
//!
//! * `even_pairs`: a binary string; class 1 iff the number of unequal neighbouring pairs
//!   (`01` or `10`) is odd (equivalently, first and last symbols differ).
//!   `0 0 1 1 1 0 -> 0`.
//! * `modular_arithmetic`: `d op d op .. d` with digits in `0..modulus` and `op` in `+ - *`
//!   (uniform), evaluated with `*` before `+`/`-`, left to right, modulo `modulus`. The
//!   reference makes the length odd by subtracting one from an even one, and so does this
//!   task (an even `len` gives `len - 1` symbols). `1 + 2 * 3 -> 2` (mod 5).
//! * `parity_check`: a binary string; its number of 1s modulo 2.
//! * `cycle_navigation`: actions `0 1 2` meaning -1, 0, +1 (the reference's `actions - 1`)
//!   on a cycle of `cycle_length` (5) starting at 0; the final position.

use super::{Rule, all_values, chomsky_task, digits, draw, tokens};
use crate::rng::Rng;

chomsky_task! {
    /// `kind = "even_pairs"`.
    EvenPairsTask (min_len = "crate::one") {} => |_c| Ok(EvenPairs)
}

chomsky_task! {
    /// `kind = "parity_check"`.
    ParityCheckTask (min_len = "crate::one") {} => |_c| Ok(ParityCheck)
}

chomsky_task! {
    /// `kind = "modular_arithmetic"`.
    ModularArithmeticTask (min_len = "crate::one") {
        /// The modulus (5, the reference's).
        modulus: usize = "five",
    } => |c| {
        super::check_at_least("modulus", c.modulus, 2)?;
        Ok(ModularArithmetic { modulus: c.modulus })
    }
}

chomsky_task! {
    /// `kind = "cycle_navigation"`.
    CycleNavigationTask (min_len = "crate::one") {
        /// The cycle's length (5, the reference's).
        cycle_length: usize = "five",
    } => |c| {
        super::check_at_least("cycle_length", c.cycle_length, 2)?;
        Ok(CycleNavigation { cycle: c.cycle_length })
    }
}

pub(crate) fn five() -> usize {
    5
}

pub(crate) fn two() -> usize {
    2
}

#[derive(Debug)]
struct EvenPairs;

/// Class 1 iff the number of unequal neighbouring pairs is odd.
pub fn even_pairs_of(bits: &[usize]) -> usize {
    bits.windows(2).filter(|w| w[0] != w[1]).count() % 2
}

impl Rule for EvenPairs {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        tokens(&draw(rng, 2, len))
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        tokens(&[even_pairs_of(&all_values(input))])
    }
    fn output_len(&self, _len: usize) -> usize {
        1
    }
    fn alphabet(&self) -> Vec<String> {
        digits(2)
    }
}

#[derive(Debug)]
struct ParityCheck;

impl Rule for ParityCheck {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        tokens(&draw(rng, 2, len))
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        tokens(&[all_values(input).iter().sum::<usize>() % 2])
    }
    fn output_len(&self, _len: usize) -> usize {
        1
    }
    fn alphabet(&self) -> Vec<String> {
        digits(2)
    }
}

#[derive(Debug)]
struct ModularArithmetic {
    modulus: usize,
}

/// The operators, in the reference's order (`OP_BY_CHARACTER`).
const OPERATORS: [&str; 3] = ["+", "-", "*"];

/// `values[0] ops[0] values[1] ..` with `*` first, modulo `m`.
pub fn evaluate(values: &[usize], ops: &[&str], m: usize) -> usize {
    // Sum of products: each `+`/`-` starts a new term with its sign.
    let (mut total, mut term, mut sign) = (0usize, values[0] % m, 1i64);
    for (op, &v) in ops.iter().zip(&values[1..]) {
        match *op {
            "*" => term = term * v % m,
            _ => {
                total = add_signed(total, term, sign, m);
                term = v % m;
                sign = if *op == "-" { -1 } else { 1 };
            }
        }
    }
    add_signed(total, term, sign, m)
}

fn add_signed(total: usize, term: usize, sign: i64, m: usize) -> usize {
    if sign > 0 {
        (total + term) % m
    } else {
        (total + m - term) % m
    }
}

impl Rule for ModularArithmetic {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        let n = self.input_len(len);
        let values = draw(rng, self.modulus, n / 2 + 1);
        let mut input = vec![values[0].to_string()];
        for v in &values[1..] {
            input.push(rng.pick(&OPERATORS).to_string());
            input.push(v.to_string());
        }
        input
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let values: Vec<usize> = input
            .iter()
            .step_by(2)
            .map(|t| t.parse().expect("a digit"))
            .collect();
        let ops: Vec<&str> = input
            .iter()
            .skip(1)
            .step_by(2)
            .map(String::as_str)
            .collect();
        tokens(&[evaluate(&values, &ops, self.modulus)])
    }
    fn input_len(&self, len: usize) -> usize {
        if len.is_multiple_of(2) { len - 1 } else { len }
    }
    fn output_len(&self, _len: usize) -> usize {
        1
    }
    fn alphabet(&self) -> Vec<String> {
        let mut a = digits(self.modulus);
        a.extend(OPERATORS.iter().map(|s| s.to_string()));
        a
    }
}

#[derive(Debug)]
struct CycleNavigation {
    cycle: usize,
}

impl Rule for CycleNavigation {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        tokens(&draw(rng, 3, len))
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let c = self.cycle as i64;
        let moves = all_values(input).iter().map(|&a| a as i64 - 1).sum::<i64>();
        tokens(&[moves.rem_euclid(c) as usize])
    }
    fn output_len(&self, _len: usize) -> usize {
        1
    }
    fn alphabet(&self) -> Vec<String> {
        digits(3.max(self.cycle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's docstring examples and hand-checked cases.
    #[test]
    fn reference_examples() {
        assert_eq!(even_pairs_of(&[0, 0, 1, 1, 1, 0]), 0);
        assert_eq!(even_pairs_of(&[0, 1, 0, 1, 0, 0, 1]), 1);
        // Modulo 5: `1 + 2 * 3 = 2`, `1 - 1 - 1 = 4`, `0 * 1 + 4 * 3 - 2 = 0`.
        assert_eq!(evaluate(&[1, 2, 3], &["+", "*"], 5), 2);
        assert_eq!(evaluate(&[1, 1, 1], &["-", "-"], 5), 4);
        assert_eq!(evaluate(&[0, 1, 4, 3, 2], &["*", "+", "*", "-"], 5), 0);
        assert_eq!(evaluate(&[3, 4, 2], &["-", "*"], 5), 0); // 3 - 8 = -5
    }
}
