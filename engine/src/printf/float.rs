//! `%e %E %f %F %g %G %a %A`: decimal digits from Rust's exact float
//! formatting, rearranged in `out` into C's forms; `%a` by hand.

use std::io::Write as _;

use super::{insert_fill, Conv, ALT, PLUS, SPACE};

/// Writes `{:.*e}`/`{:.*}` output into `out`. Formatting into a `Vec<u8>`
/// cannot fail; the digits come from `core::fmt` without allocating.
macro_rules! digits {
    ($out:expr, $($arg:tt)*) => {
        $out.write_fmt(format_args!($($arg)*)).expect("writing to a Vec cannot fail")
    };
}

/// 10^0 to 10^22, all exact in `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Cuts Rust's `e<exp>` suffix off `out[from..]` and returns the exponent.
fn take_exponent(out: &mut Vec<u8>, from: usize) -> i32 {
    let e = from
        + out[from..]
            .iter()
            .rposition(|&c| c == b'e')
            .expect("{:e} output has an exponent");
    let (neg, digits) = match out[e + 1] {
        b'-' => (true, &out[e + 2..]),
        _ => (false, &out[e + 1..]),
    };
    let mag = digits
        .iter()
        .fold(0i32, |n, &d| n * 10 + i32::from(d - b'0'));
    out.truncate(e);
    if neg {
        -mag
    } else {
        mag
    }
}

/// Appends C's exponent: `e` or `E` (or `p`/`P`), its sign, and at least
/// `min_digits` decimal digits.
fn push_exponent(out: &mut Vec<u8>, letter: u8, exp: i32, min_digits: usize) {
    out.push(letter);
    out.push(if exp < 0 { b'-' } else { b'+' });
    let mut buf = [0u8; 10];
    let mut pos = buf.len();
    let mut m = exp.unsigned_abs();
    loop {
        pos -= 1;
        buf[pos] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    while buf.len() - pos < min_digits {
        pos -= 1;
        buf[pos] = b'0';
    }
    out.extend_from_slice(&buf[pos..]);
}

/// Drops the trailing zeros of the fraction in `out[from..]`, and the point
/// if nothing is left after it (`%g` without `#`).
fn strip_zeros(out: &mut Vec<u8>, from: usize) {
    if !out[from..].contains(&b'.') {
        return;
    }
    while out.last() == Some(&b'0') {
        out.pop();
    }
    if out.last() == Some(&b'.') {
        out.pop();
    }
}

impl Conv {
    pub(super) fn float(&self, v: f64, out: &mut Vec<u8>) {
        let upper = self.conv.is_ascii_uppercase();
        let start = out.len();
        if v.is_sign_negative() {
            out.push(b'-');
        } else if self.flags & PLUS != 0 {
            out.push(b'+');
        } else if self.flags & SPACE != 0 {
            out.push(b' ');
        }
        let sign = out.len() - start;
        let alt = self.flags & ALT != 0;
        let a = v.abs();
        if !a.is_finite() {
            let text: &[u8] = match (a.is_nan(), upper) {
                (true, false) => b"nan",
                (true, true) => b"NAN",
                (false, false) => b"inf",
                (false, true) => b"INF",
            };
            out.extend_from_slice(text);
            self.pad(out, start, sign, false);
            return;
        }
        let body = out.len();
        match self.conv {
            b'f' | b'F' => {
                let p = self.prec.unwrap_or(6);
                digits!(out, "{a:.p$}");
                if p == 0 && alt {
                    out.push(b'.');
                }
            }
            b'e' | b'E' => {
                let p = self.prec.unwrap_or(6);
                digits!(out, "{a:.p$e}");
                let exp = take_exponent(out, body);
                if p == 0 && alt {
                    out.push(b'.');
                }
                push_exponent(out, if upper { b'E' } else { b'e' }, exp, 2);
            }
            b'g' | b'G' => self.general(a, body, out),
            _ => {
                self.hex(a, out);
                self.pad(out, start, sign + 2, true);
                return;
            }
        }
        self.pad(out, start, sign, true);
    }

    /// `%g`: `P` significant digits, in `%f` style when the exponent `X`
    /// after rounding satisfies `P > X >= -4`, else in `%e` style; trailing
    /// zeros dropped unless `#`.
    fn general(&self, a: f64, body: usize, out: &mut Vec<u8>) {
        let p = self.prec.unwrap_or(6).max(1);
        digits!(out, "{a:.prec$e}", prec = p - 1);
        // out[body..] is now `d.ddd` (P digits; no point when P is 1).
        let exp = take_exponent(out, body);
        let alt = self.flags & ALT != 0;
        if (exp as i64) < p as i64 && exp >= -4 {
            if exp >= 0 {
                // Move the point right by `exp` digits.
                let x = exp as usize;
                if p > 1 {
                    out[body + 1..=body + 1 + x].rotate_left(1);
                    if x == p - 1 && !alt {
                        out.pop();
                    }
                } else if alt {
                    out.push(b'.');
                }
            } else {
                // `0.` and -exp-1 zeros before all the digits.
                if p > 1 {
                    out.remove(body + 1);
                }
                let z = (-exp) as usize + 1;
                insert_fill(out, body, z, b'0');
                out[body + 1] = b'.';
            }
            if !alt {
                strip_zeros(out, body);
            }
        } else {
            if !alt {
                strip_zeros(out, body);
            } else if p == 1 {
                out.push(b'.');
            } else if exp as usize == p && exp <= 22 && a < POW10[exp as usize] {
                // glibc's quirk: the value was below 10^P, so glibc chose the
                // `%f` style, and rounding carried into a new digit (999999.5
                // with P = 6). glibc then switches to `%e` with no fraction
                // digits to keep: `%#g` prints `1.e+06`, not `1.00000e+06`.
                // (From 10^22 on, such a value is an integer of P digits, so
                // rounding cannot carry.)
                while out.last() == Some(&b'0') {
                    out.pop();
                }
            }
            let letter = if self.conv == b'G' { b'E' } else { b'e' };
            push_exponent(out, letter, exp, 2);
        }
    }

    /// `%a`: `0x`, the leading digit (`1`, or `0` for zero and subnormals),
    /// the hex fraction (rounded to nearest-even at the precision, trailing
    /// zeros dropped without one), `p` and the binary exponent.
    fn hex(&self, a: f64, out: &mut Vec<u8>) {
        let upper = self.conv == b'A';
        let bits = a.to_bits();
        let biased = (bits >> 52) as i32;
        let mut mant = bits & ((1u64 << 52) - 1);
        let (mut lead, exp) = match (biased, mant) {
            (0, 0) => (0u8, 0),
            (0, _) => (0u8, -1022),
            _ => (1u8, biased - 1023),
        };
        let ndigits = match self.prec {
            None => {
                if mant == 0 {
                    0
                } else {
                    13 - (mant.trailing_zeros() / 4) as usize
                }
            }
            Some(p) if p < 13 => {
                let drop = 52 - 4 * p as u32;
                let rest = mant & ((1u64 << drop) - 1);
                let half = 1u64 << (drop - 1);
                let mut kept = mant >> drop;
                let odd = if p > 0 { kept & 1 } else { u64::from(lead & 1) } == 1;
                if rest > half || (rest == half && odd) {
                    kept += 1;
                    if kept >> (4 * p) != 0 {
                        lead += 1;
                        kept = 0;
                    }
                }
                mant = kept << drop;
                p
            }
            Some(p) => p,
        };
        out.push(b'0');
        out.push(if upper { b'X' } else { b'x' });
        out.push(b'0' + lead);
        if ndigits > 0 || self.flags & ALT != 0 {
            out.push(b'.');
        }
        let hex: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        for i in 0..ndigits.min(13) {
            out.push(hex[((mant >> (48 - 4 * i)) & 0xf) as usize]);
        }
        if ndigits > 13 {
            out.resize(out.len() + (ndigits - 13), b'0');
        }
        push_exponent(out, if upper { b'P' } else { b'p' }, exp, 1);
    }
}
