//! The deterministic context-free tasks of the suite (reference: `tasks/dcf/`).
//!
//! * `stack_manipulation`: a stack of bits given bottom to top, then actions `POP`, `PUSH0`,
//!   `PUSH1` (a `POP` on an empty stack is ignored); the answer is the final stack top to
//!   bottom, then `end`, padded with `0` to `len + 1` tokens (scored up to `end`). The stack
//!   takes `1..len` of the symbols (uniform), the actions the rest.
//! * `reverse_string`: a binary string, reversed.
//! * `modular_arithmetic_brackets`: a fully bracketed expression over digits `0..modulus` with
//!   `+ -` (and `*` with `mult = true`, the reference's setting), drawn as the reference's
//!   `generate_one_expression_and_result` draws it (lengths 1-4: `d`, `-d`, `(d)`, `(-d)`;
//!   longer: `(L op R)` with `|L|` uniform in `1..len-3`), its value modulo `modulus`.
//! * `solve_equation`: such an expression of length `len - 2` without `*`, one digit replaced
//!   by `x` (a uniform position, moved right to the next digit), then `= value`; the answer is
//!   the replaced digit (unique: `x` enters with coefficient ±1). At least 3 symbols.

use super::{END, Rule, chomsky_task, digits, draw, tokens};
use crate::rng::Rng;

chomsky_task! {
    /// `kind = "stack_manipulation"`.
    StackManipulationTask (min_len = "crate::one") {} => |_c| Ok(StackManipulation)
}

chomsky_task! {
    /// `kind = "reverse_string"`.
    ReverseStringTask (min_len = "crate::one") {
        /// The alphabet's size (2, the reference's binary strings).
        vocab_size: usize = "super::regular::two",
    } => |c| {
        super::check_at_least("vocab_size", c.vocab_size, 2)?;
        Ok(ReverseString { vocab: c.vocab_size })
    }
}

chomsky_task! {
    /// `kind = "modular_arithmetic_brackets"`.
    ModularArithmeticBracketsTask (min_len = "crate::one") {
        /// The modulus (5, the reference's).
        modulus: usize = "super::regular::five",
        /// Whether `*` is one of the operators (the reference's experiments: yes).
        mult: bool = "crate::chomsky::yes",
    } => |c| {
        super::check_at_least("modulus", c.modulus, 2)?;
        Ok(Brackets { modulus: c.modulus, mult: c.mult })
    }
}

chomsky_task! {
    /// `kind = "solve_equation"`.
    SolveEquationTask (min_len = "crate::chomsky::three") {
        /// The modulus (5, the reference's).
        modulus: usize = "super::regular::five",
    } => |c| {
        super::check_at_least("modulus", c.modulus, 2)?;
        Ok(SolveEquation { modulus: c.modulus })
    }
}

const POP: &str = "POP";
const PUSH0: &str = "PUSH0";
const PUSH1: &str = "PUSH1";

#[derive(Debug)]
struct StackManipulation;

impl Rule for StackManipulation {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        if len == 1 {
            return tokens(&draw(rng, 2, 1));
        }
        let stack = 1 + rng.below(len - 1);
        let mut input = tokens(&draw(rng, 2, stack));
        for _ in stack..len {
            input.push([POP, PUSH0, PUSH1][rng.below(3)].to_string());
        }
        input
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        for t in input {
            match t.as_str() {
                POP => {
                    stack.pop();
                }
                PUSH0 => stack.push("0".into()),
                PUSH1 => stack.push("1".into()),
                bit => stack.push(bit.to_string()),
            }
        }
        stack.reverse();
        stack.push(END.into());
        stack.resize(input.len() + 1, "0".into());
        stack
    }
    fn output_len(&self, len: usize) -> usize {
        len + 1
    }
    fn alphabet(&self) -> Vec<String> {
        let mut a = digits(2);
        a.extend([POP, PUSH0, PUSH1, END].map(String::from));
        a
    }
    fn scored(&self, answer: &[String]) -> usize {
        super::up_to_end(answer)
    }
}

#[derive(Debug)]
struct ReverseString {
    vocab: usize,
}

impl Rule for ReverseString {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        tokens(&draw(rng, self.vocab, len))
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        input.iter().rev().cloned().collect()
    }
    fn output_len(&self, len: usize) -> usize {
        len
    }
    fn alphabet(&self) -> Vec<String> {
        digits(self.vocab)
    }
}

/// Bracketed expressions, drawn as the reference draws them.
fn expression(rng: &mut Rng, m: usize, len: usize, mult: bool, out: &mut Vec<String>) {
    let digit = |rng: &mut Rng| rng.below(m).to_string();
    let push = |out: &mut Vec<String>, s: &str| out.push(s.to_string());
    match len {
        0 => unreachable!("lengths >= 1"),
        1 => out.push(digit(rng)),
        2 => {
            push(out, "-");
            out.push(digit(rng));
        }
        3 => {
            push(out, "(");
            out.push(digit(rng));
            push(out, ")");
        }
        4 => {
            push(out, "(");
            push(out, "-");
            out.push(digit(rng));
            push(out, ")");
        }
        _ => {
            let left = 1 + rng.below(len - 4); // the reference's randint(1, len - 3)
            let right = len - left - 3;
            // The reference draws both sides before the operator.
            let (mut l, mut r) = (Vec::new(), Vec::new());
            expression(rng, m, left, mult, &mut l);
            expression(rng, m, right, mult, &mut r);
            let op = ["+", "-", "*"][rng.below(if mult { 3 } else { 2 })];
            push(out, "(");
            out.extend(l);
            push(out, op);
            out.extend(r);
            push(out, ")");
        }
    }
}

/// The value modulo `m` of a bracketed expression (`None` if it does not parse).
pub fn evaluate(tokens: &[String], m: usize) -> Option<usize> {
    fn atom(t: &[String], i: &mut usize, m: i64) -> Option<i64> {
        let tok = t.get(*i)?.as_str();
        *i += 1;
        match tok {
            "(" => {
                let v = sum(t, i, m)?;
                (t.get(*i)?.as_str() == ")").then_some(())?;
                *i += 1;
                Some(v)
            }
            "-" => Some((-atom(t, i, m)?).rem_euclid(m)),
            d => d.parse::<i64>().ok().map(|v| v.rem_euclid(m)),
        }
    }
    fn sum(t: &[String], i: &mut usize, m: i64) -> Option<i64> {
        let mut v = atom(t, i, m)?;
        while let Some(op) = t
            .get(*i)
            .map(String::as_str)
            .filter(|o| ["+", "-", "*"].contains(o))
        {
            *i += 1;
            let w = atom(t, i, m)?;
            v = match op {
                "+" => v + w,
                "-" => v - w,
                _ => v * w,
            }
            .rem_euclid(m);
        }
        Some(v)
    }
    let mut i = 0;
    let v = sum(tokens, &mut i, m as i64)?;
    (i == tokens.len()).then_some(v as usize)
}

#[derive(Debug)]
struct Brackets {
    modulus: usize,
    mult: bool,
}

impl Rule for Brackets {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        let mut out = Vec::with_capacity(len);
        expression(rng, self.modulus, len, self.mult, &mut out);
        out
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        tokens(&[evaluate(input, self.modulus).expect("a generated expression parses")])
    }
    fn output_len(&self, _len: usize) -> usize {
        1
    }
    fn alphabet(&self) -> Vec<String> {
        let mut a = digits(self.modulus);
        a.extend(["+", "-", "*", "(", ")"].map(String::from));
        a
    }
}

#[derive(Debug)]
struct SolveEquation {
    modulus: usize,
}

impl Rule for SolveEquation {
    fn input(&self, rng: &mut Rng, len: usize) -> Vec<String> {
        let n = len - 2;
        let mut expr = Vec::with_capacity(len);
        expression(rng, self.modulus, n, false, &mut expr);
        let value = evaluate(&expr, self.modulus).expect("a generated expression parses");
        let mut at = rng.below(n);
        while expr[at].parse::<usize>().is_err() {
            at = (at + 1) % n;
        }
        expr[at] = "x".into();
        expr.push("=".into());
        expr.push(value.to_string());
        expr
    }
    fn answer(&self, input: &[String]) -> Vec<String> {
        let n = input.len() - 2;
        let value: usize = input[n + 1].parse().expect("the value");
        let solution = (0..self.modulus)
            .find(|d| {
                let filled: Vec<String> = input[..n]
                    .iter()
                    .map(|t| if t == "x" { d.to_string() } else { t.clone() })
                    .collect();
                evaluate(&filled, self.modulus) == Some(value)
            })
            .expect("x enters with coefficient ±1: one solution");
        tokens(&[solution])
    }
    fn output_len(&self, _len: usize) -> usize {
        1
    }
    fn alphabet(&self) -> Vec<String> {
        let mut a = digits(self.modulus);
        a.extend(["+", "-", "(", ")", "x", "="].map(String::from));
        a
    }
    fn min_len(&self) -> usize {
        3
    }
    fn min_len_reason(&self) -> &'static str {
        "an equation has at least 3 symbols (`x = d`; the reference returns a constant below)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// The reference's docstring examples.
    #[test]
    fn reference_examples() {
        let s = StackManipulation;
        assert_eq!(
            s.answer(&toks("0 1 1 0 PUSH1 POP POP")),
            toks("1 1 0 end 0 0 0 0")
        );
        assert_eq!(
            s.answer(&toks("1 1 0 POP POP POP")),
            toks("end 0 0 0 0 0 0")
        );
        assert_eq!(s.scored(&toks("1 1 0 end 0 0 0 0")), 4);
        assert_eq!(evaluate(&toks("( ( 1 + 2 ) - ( - 4 ) )"), 5), Some(2));
        assert_eq!(evaluate(&toks("( 3 * ( - 4 ) )"), 5), Some(3));
        assert_eq!(evaluate(&toks("( 1 +"), 5), None);
        let e = SolveEquation { modulus: 5 };
        assert_eq!(e.answer(&toks("( x - 3 ) = 4")), toks("2"));
    }
}
