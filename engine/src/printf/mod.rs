//! A printf-compatible formatter for deferred formatting (issue 12): the call
//! site parses its format once ([`parse`]), reads the arguments [`Format::args`]
//! names from its `va_list`, and the listener later formats them with
//! [`Format::format`]. The output is byte-identical to glibc's (2.36)
//! `vsnprintf` in the C locale for everything [`parse`] accepts.
//!
//! # What is supported
//! * Conversions `d i u o x X c s p e E f F g G a A` and `%%`.
//! * Flags `-`, `+`, space, `#`, `0` (any order, repeated), with glibc's
//!   interplay: `-` beats `0`, `+` beats space, `0` is ignored for integers
//!   when a precision is given and for `%c`, `%s`, `(nil)`, `inf` and `nan`
//!   (which pad with spaces), `+`/space are ignored for unsigned conversions
//!   but honoured for `%p`, `#` is ignored where C gives it no meaning.
//! * Width and precision, fixed or `*` (each `*` reads an `int` before the
//!   conversion's own argument; a negative `*` width means the `-` flag and
//!   its absolute value; a negative `*` precision means no precision).
//! * Length modifiers `hh h l ll j z t` on `d i u o x X` (the value is
//!   truncated and sign-converted as C does: `%hhu` of 300 prints 44, `%hd`
//!   of 70000 prints 4464), `l` on `e E f F g G a A` (ignored, as C says).
//! * glibc's specific output: `%s` of NULL is `(null)` (or nothing when the
//!   precision is below 6), `%p` of NULL is `(nil)` (padded, never
//!   zero-filled, precision ignored), `%p` otherwise is `%#lx` with the sign
//!   flags honoured, NaN prints `nan`/`-nan` by its sign bit, infinities
//!   `inf`, `%a` normalises to a leading `1` (`0` for zero and subnormals,
//!   whose exponent is `-1022`) and rounds in hex to nearest-even, a carry
//!   making the leading digit `2` (`%.0a` of 1.5 is `0x2p+0`), `%#o` and
//!   `%#x` of 0 print `0`, `%.0d` of 0 prints nothing, and `%#g`'s quirk
//!   when rounding carries past `10^P` (`%#g` of 999999.5 is `1.e+06`, where
//!   C99 says `1.00000e+06`).
//!
//! # What is refused ([`Unsupported`]; the caller formats eagerly instead)
//! * [`Unsupported::Positional`]: `%1$d`, `%*1$d`, `%.*1$d`.
//! * [`Unsupported::WideChar`]: `%lc`, `%ls`, `%C`, `%S`.
//! * [`Unsupported::Grouping`]: the `'` flag.
//! * [`Unsupported::LongDouble`]: `L`, `ll` or `q` on a floating conversion.
//! * [`Unsupported::N`]: `%n` in any form. It wins over every other reason
//!   anywhere in the format, so a caller that refuses `N` outright never
//!   formats such a format eagerly either.
//! * [`Unsupported::Invalid`]: everything else, including glibc extensions
//!   that are valid for `vsnprintf` but not deferred: `%m`, the `I` flag,
//!   the `q`, `Z` and `L` length modifiers on integers, length modifiers
//!   other than `l` on `c s` and any on `p`, `%%` with flags or a width
//!   (`%5%`), a width or precision above `INT_MAX`, an unknown conversion
//!   and a `%` at the end of the format.
//!
//! # The locale rule
//! The output is always that of the C locale: the decimal point is `.`, and
//! there is no digit grouping (the `'` flag is refused), whatever
//! `setlocale` the program made. glibc's `vsnprintf` follows `LC_NUMERIC`
//! instead: a program that set, say, `LC_NUMERIC=de_DE` gets `3,5` from an
//! eager `printf("%.1f", 3.5)` but `3.5` from the deferred path. The bytes of
//! the format and of `%s` strings are copied as they are (no multibyte
//! conversion happens in the C locale either).
//!
//! Likewise, floats are always rounded to nearest (ties to even), glibc's
//! default; glibc's `vsnprintf` follows the calling thread's `fesetround`
//! mode, which the deferred path does not see.
//!
//! # Arguments
//! A `%s` argument is the string's bytes without its terminating NUL: the
//! call site copies them (with a precision, C reads at most that many bytes,
//! so the call site should copy at most that many too). A `%s` of a slice is
//! printed whole (up to the precision), NULs included.
//!
//! # Exactness and speed
//! Integers, `%c`, `%s` and `%p` are formatted by hand into `out`. `%e`,
//! `%f` and `%g` take their decimal digits from Rust's own float
//! formatting (`{:.*e}` and `{:.*}`), which is exact at any precision (it
//! falls back to a bignum algorithm when the fast one cannot decide) and
//! rounds the exact binary value to nearest, ties to even — what glibc does
//! in the default rounding mode; the property test checks both against
//! glibc, ties included. The digits are written straight into `out` and
//! rearranged there (exponent, `%g`'s point and trailing zeros), so no call
//! allocates beyond `out` growing. `%a` is done by hand from the bits.
//! Output is appended without a size limit: a huge width or precision
//! produces that many bytes, as `vsnprintf` would count them. Where glibc
//! fails instead (`EOVERFLOW`, -1: a field or a total over `INT_MAX` bytes,
//! such as a `*` width of `INT_MIN`), this formatter still appends it all,
//! so a caller that does not trust its `*` arguments should bound them.

mod float;
#[cfg(test)]
mod tests;

/// Why a format cannot be deferred: the caller formats eagerly instead
/// (counted), except for [`Unsupported::N`], which is refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// A positional argument (`%1$d`, `%*1$d`).
    Positional,
    /// A wide character or string (`%lc`, `%ls`, `%C`, `%S`).
    WideChar,
    /// The `'` (thousands grouping) flag.
    Grouping,
    /// A `long double` (`%Lf`, `%llf`).
    LongDouble,
    /// `%n`: refused outright.
    N,
    /// A malformed or unknown conversion (see the module doc).
    Invalid,
}

/// What the call site must read from its `va_list`, in order (one per `*`
/// width/precision, then one per conversion), as C's default argument
/// promotions and LP64 (x86_64/aarch64 Linux) make them.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// `int` / `unsigned int`, and `char`/`short` promoted; also `%c` and `*`.
    Int = 1,
    /// `long`, `long long`, `intmax_t`, `size_t`, `ptrdiff_t` (all 64-bit).
    Long = 2,
    /// `double` (`float` promoted).
    Double = 3,
    /// `char*`, NULL allowed; the call site copies the bytes.
    Str = 4,
    /// `%p`'s `void*`.
    Ptr = 5,
}

/// One captured argument.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// The raw bits as read: [`ArgKind::Int`] values sign-extended from
    /// `i32`, [`ArgKind::Long`] values as they are. Only the bits the
    /// conversion's length uses are looked at.
    Int(i64),
    /// A [`ArgKind::Double`].
    Double(f64),
    /// A [`ArgKind::Str`]: `None` for NULL, else the bytes without the NUL.
    Str(Option<&'a [u8]>),
    /// A [`ArgKind::Ptr`].
    Ptr(usize),
}

/// [`Format::format`] was given arguments that do not match
/// [`Format::args`] one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgMismatch;

impl std::fmt::Display for ArgMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the arguments do not match the format's argument kinds")
    }
}

impl std::error::Error for ArgMismatch {}

// Flags, as bits of `Spec::flags`.
const LEFT: u8 = 1;
const PLUS: u8 = 2;
const SPACE: u8 = 4;
const ALT: u8 = 8;
const ZERO: u8 = 16;

/// A width or a precision as the format gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    None,
    Fixed(u32),
    Star,
}

/// An integer conversion's length modifier, as the size it converts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    Char,
    Short,
    Int,
    Long,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    flags: u8,
    width: Count,
    prec: Count,
    size: Size,
    conv: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// `text[start..end]`, copied as is.
    Literal {
        start: u32,
        end: u32,
    },
    Conv(Spec),
}

/// A format string parsed once (per call site).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    text: Box<[u8]>,
    pieces: Vec<Piece>,
    args: Vec<ArgKind>,
}

/// Reads decimal digits at `*i`; `None` when there are none, `Err` when the
/// number exceeds `INT_MAX` (glibc fails with `EOVERFLOW`).
fn read_num(fmt: &[u8], i: &mut usize) -> Result<Option<u32>, ()> {
    let start = *i;
    let mut n: u64 = 0;
    while let Some(&c) = fmt.get(*i) {
        if !c.is_ascii_digit() {
            break;
        }
        n = (n * 10 + u64::from(c - b'0')).min(u64::from(u32::MAX));
        *i += 1;
    }
    if *i == start {
        Ok(None)
    } else if n > i32::MAX as u64 {
        Err(())
    } else {
        Ok(Some(n as u32))
    }
}

/// After a `*` (or at a conversion's start): is this `digits$`? Consumes it
/// if so.
fn positional(fmt: &[u8], i: &mut usize) -> bool {
    let mut j = *i;
    while fmt.get(j).is_some_and(u8::is_ascii_digit) {
        j += 1;
    }
    if j > *i && fmt.get(j) == Some(&b'$') {
        *i = j + 1;
        true
    } else {
        false
    }
}

/// A width or precision at `*i`: `*`, digits, or nothing (`None`).
fn count(fmt: &[u8], i: &mut usize) -> Result<Option<Count>, Unsupported> {
    if fmt.get(*i) == Some(&b'*') {
        *i += 1;
        if positional(fmt, i) {
            return Err(Unsupported::Positional);
        }
        return Ok(Some(Count::Star));
    }
    match read_num(fmt, i) {
        Ok(n) => Ok(n.map(Count::Fixed)),
        Err(()) => Err(Unsupported::Invalid),
    }
}

/// Parses one conversion whose `%` is at `fmt[i - 1]`; returns the index
/// after it and the spec or why it is refused. Refused conversions are still
/// scanned to their conversion character so that a later `%n` is found.
fn parse_conv(fmt: &[u8], mut i: usize) -> (usize, Result<Spec, Unsupported>) {
    let mut refused: Option<Unsupported> = None;
    let mut refuse = |why: Unsupported| {
        refused.get_or_insert(why);
    };
    if positional(fmt, &mut i) {
        refuse(Unsupported::Positional);
    }
    let mut flags = 0u8;
    while let Some(&c) = fmt.get(i) {
        match c {
            b'-' => flags |= LEFT,
            b'+' => flags |= PLUS,
            b' ' => flags |= SPACE,
            b'#' => flags |= ALT,
            b'0' => flags |= ZERO,
            b'\'' => refuse(Unsupported::Grouping),
            b'I' => refuse(Unsupported::Invalid),
            _ => break,
        }
        i += 1;
    }
    let width = match count(fmt, &mut i) {
        Ok(w) => w.unwrap_or(Count::None),
        Err(why) => {
            refuse(why);
            Count::None
        }
    };
    if fmt.get(i) == Some(&b'$') {
        // `%-5$d`: glibc takes the digits for an argument position.
        refuse(Unsupported::Positional);
        i += 1;
    }
    let mut prec = Count::None;
    if fmt.get(i) == Some(&b'.') {
        i += 1;
        // `%.d` is a precision of 0.
        prec = match count(fmt, &mut i) {
            Ok(p) => p.unwrap_or(Count::Fixed(0)),
            Err(why) => {
                refuse(why);
                Count::None
            }
        };
    }
    // Length modifiers: (count of h, count of l, other modifier).
    let (mut h, mut l, mut other) = (0u8, 0u8, 0u8);
    while let Some(&c) = fmt.get(i) {
        match c {
            b'h' => h += 1,
            b'l' => l += 1,
            b'L' | b'q' | b'j' | b'z' | b'Z' | b't' => {
                if other != 0 {
                    refuse(Unsupported::Invalid);
                }
                other = c;
            }
            _ => break,
        }
        i += 1;
    }
    let Some(&conv) = fmt.get(i) else {
        return (i, Err(Unsupported::Invalid));
    };
    i += 1;
    if conv == b'n' {
        return (i, Err(Unsupported::N));
    }
    let mixed = (h != 0) as u8 + (l != 0) as u8 + (other != 0) as u8 > 1 || h > 2 || l > 2;
    let none = h == 0 && l == 0 && other == 0;
    let size = match conv {
        b'd' | b'i' | b'u' | b'o' | b'x' | b'X' => {
            if mixed {
                refuse(Unsupported::Invalid);
            }
            match (h, l, other) {
                (1, _, _) => Size::Short,
                (2, _, _) => Size::Char,
                (_, 1 | 2, _) | (_, _, b'j' | b'z' | b't') => Size::Long,
                (_, _, 0) => Size::Int,
                _ => {
                    refuse(Unsupported::Invalid);
                    Size::Int
                }
            }
        }
        b'c' | b's' => {
            if l == 1 && h == 0 && other == 0 {
                refuse(Unsupported::WideChar);
            } else if !none {
                refuse(Unsupported::Invalid);
            }
            Size::Int
        }
        b'C' | b'S' => {
            refuse(Unsupported::WideChar);
            Size::Int
        }
        b'p' => {
            if !none {
                refuse(Unsupported::Invalid);
            }
            Size::Long
        }
        b'e' | b'E' | b'f' | b'F' | b'g' | b'G' | b'a' | b'A' => {
            if (l == 2 && h == 0 && other == 0) || (other == b'L' || other == b'q') && !mixed {
                refuse(Unsupported::LongDouble);
            } else if !(none || (l == 1 && h == 0 && other == 0)) {
                refuse(Unsupported::Invalid);
            }
            Size::Long
        }
        b'%' => {
            // `%%` itself is handled by the caller: this is `%` with flags,
            // a width, a precision or a length.
            refuse(Unsupported::Invalid);
            Size::Int
        }
        _ => {
            refuse(Unsupported::Invalid);
            Size::Int
        }
    };
    match refused {
        Some(why) => (i, Err(why)),
        None => (
            i,
            Ok(Spec {
                flags,
                width,
                prec,
                size,
                conv,
            }),
        ),
    }
}

/// Parses a C format string (without its NUL).
///
/// # Errors
/// Why the format cannot be deferred; [`Unsupported::N`] whenever the format
/// holds a `%n` anywhere, else the first reason found.
pub fn parse(fmt: &[u8]) -> Result<Format, Unsupported> {
    if fmt.len() > u32::MAX as usize {
        return Err(Unsupported::Invalid);
    }
    let mut pieces = Vec::new();
    let mut args = Vec::new();
    let mut refused: Option<Unsupported> = None;
    let mut i = 0;
    while i < fmt.len() {
        let lit_end = fmt[i..]
            .iter()
            .position(|&c| c == b'%')
            .map_or(fmt.len(), |p| i + p);
        if lit_end > i {
            pieces.push(Piece::Literal {
                start: i as u32,
                end: lit_end as u32,
            });
        }
        if lit_end == fmt.len() {
            break;
        }
        if fmt.get(lit_end + 1) == Some(&b'%') {
            pieces.push(Piece::Literal {
                start: (lit_end + 1) as u32,
                end: (lit_end + 2) as u32,
            });
            i = lit_end + 2;
            continue;
        }
        let (next, spec) = parse_conv(fmt, lit_end + 1);
        i = next;
        match spec {
            Err(Unsupported::N) => return Err(Unsupported::N),
            Err(why) => {
                refused.get_or_insert(why);
            }
            Ok(spec) if refused.is_none() => {
                if spec.width == Count::Star {
                    args.push(ArgKind::Int);
                }
                if spec.prec == Count::Star {
                    args.push(ArgKind::Int);
                }
                args.push(match spec.conv {
                    b'c' => ArgKind::Int,
                    b's' => ArgKind::Str,
                    b'p' => ArgKind::Ptr,
                    b'd' | b'i' | b'u' | b'o' | b'x' | b'X' if spec.size == Size::Long => {
                        ArgKind::Long
                    }
                    b'd' | b'i' | b'u' | b'o' | b'x' | b'X' => ArgKind::Int,
                    _ => ArgKind::Double,
                });
                pieces.push(Piece::Conv(spec));
            }
            Ok(_) => {}
        }
    }
    if let Some(why) = refused {
        return Err(why);
    }
    Ok(Format {
        text: fmt.into(),
        pieces,
        args,
    })
}

impl Format {
    /// The arguments to read from the `va_list`, in order.
    pub fn args(&self) -> &[ArgKind] {
        &self.args
    }

    /// For argument `index`, a `%s`: the most bytes C reads of its string
    /// (its precision), or `None` when it reads to the NUL. A `*` precision
    /// is the `int` argument `star(i)` gives for its index `i` (negative:
    /// no precision). `None` too for an index that is not a `%s`.
    pub fn str_limit(&self, index: usize, star: impl Fn(usize) -> i64) -> Option<usize> {
        let mut at = 0;
        for piece in &self.pieces {
            let Piece::Conv(spec) = piece else {
                continue;
            };
            if spec.width == Count::Star {
                at += 1;
            }
            let prec_at = at;
            if spec.prec == Count::Star {
                at += 1;
            }
            if at == index {
                if spec.conv != b's' {
                    return None;
                }
                return match spec.prec {
                    Count::None => None,
                    Count::Fixed(n) => Some(n as usize),
                    Count::Star => usize::try_from(star(prec_at) as i32).ok(),
                };
            }
            at += 1;
            if at > index {
                return None;
            }
        }
        None
    }

    /// True when `args` match [`Format::args`] one to one (count and
    /// kinds; [`Arg::Int`] serves both integer kinds): what
    /// [`Format::format`] needs.
    pub fn accepts(&self, args: &[Arg<'_>]) -> bool {
        args.len() == self.args.len()
            && self.args.iter().zip(args).all(|(k, a)| {
                matches!(
                    (k, a),
                    (ArgKind::Int | ArgKind::Long, Arg::Int(_))
                        | (ArgKind::Double, Arg::Double(_))
                        | (ArgKind::Str, Arg::Str(_))
                        | (ArgKind::Ptr, Arg::Ptr(_))
                )
            })
    }

    /// True when no field of the output can be longer than `max` bytes:
    /// every width (fixed, or the `int` argument `star(i)` gives for a
    /// `*`, whose magnitude counts: a negative one means `-`), and every
    /// precision of a conversion other than `%s` (which only limits what
    /// is read) is at most `max`. A format whose widths and precisions are
    /// all fixed can be checked with a `star` that is never called.
    pub fn fields_within(&self, max: usize, star: impl Fn(usize) -> i64) -> bool {
        let mut at = 0;
        let small = |count: Count, at: usize, signed: bool| match count {
            Count::None => true,
            Count::Fixed(n) => n as usize <= max,
            Count::Star => {
                let v = i64::from(star(at) as i32);
                if signed {
                    v.unsigned_abs() as usize <= max
                } else {
                    // A negative precision is no precision.
                    v < 0 || v as usize <= max
                }
            }
        };
        for piece in &self.pieces {
            let Piece::Conv(spec) = piece else {
                continue;
            };
            if !small(spec.width, at, true) {
                return false;
            }
            if spec.width == Count::Star {
                at += 1;
            }
            if spec.conv != b's' && !small(spec.prec, at, false) {
                return false;
            }
            if spec.prec == Count::Star {
                at += 1;
            }
            at += 1;
        }
        true
    }

    /// At least as many bytes as [`Format::format`] appends for `args`
    /// (`None` when they do not match): what a caller that must not let
    /// `out` grow (the crash flush, in a signal handler) checks against
    /// the room it has.
    pub fn max_len(&self, args: &[Arg<'_>]) -> Option<usize> {
        if !self.accepts(args) {
            return None;
        }
        let mut args = args.iter();
        fn star(args: &mut std::slice::Iter<'_, Arg<'_>>) -> i32 {
            match args.next() {
                Some(&Arg::Int(v)) => v as i32,
                _ => 0,
            }
        }
        let mut total = 0usize;
        for piece in &self.pieces {
            let bytes = match *piece {
                Piece::Literal { start, end } => (end - start) as usize,
                Piece::Conv(spec) => {
                    let width = match spec.width {
                        Count::None => 0,
                        Count::Fixed(w) => w as usize,
                        Count::Star => star(&mut args).unsigned_abs() as usize,
                    };
                    let prec = match spec.prec {
                        Count::None => None,
                        Count::Fixed(p) => Some(p as usize),
                        Count::Star => usize::try_from(star(&mut args)).ok(),
                    };
                    let body = match args.next() {
                        Some(Arg::Str(Some(s))) => prec.map_or(s.len(), |p| p.min(s.len())),
                        Some(Arg::Str(None)) => 6,
                        // Sign, `0x`, 22 digits (octal of 2^64), or the
                        // precision's zeros.
                        Some(Arg::Int(_) | Arg::Ptr(_)) => 3 + prec.unwrap_or(0).max(22),
                        // Sign, 309 integer digits, point, the precision's
                        // digits, an exponent.
                        Some(Arg::Double(_)) => 320 + prec.unwrap_or(6),
                        None => 0,
                    };
                    width.max(body).saturating_add(body)
                }
            };
            total = total.saturating_add(bytes);
        }
        Some(total)
    }

    /// The format string as given.
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// Appends the formatted text to `out`, exactly as glibc's `vsnprintf`
    /// would write it in the C locale.
    ///
    /// # Errors
    /// [`ArgMismatch`] when `args` does not match [`Format::args`] one to
    /// one (count and kinds; [`Arg::Int`] serves both integer kinds); then
    /// nothing is appended.
    pub fn format(&self, args: &[Arg<'_>], out: &mut Vec<u8>) -> Result<(), ArgMismatch> {
        if !self.accepts(args) {
            return Err(ArgMismatch);
        }
        let mut args = args.iter();
        fn int_arg(args: &mut std::slice::Iter<'_, Arg<'_>>) -> i32 {
            match args.next() {
                Some(&Arg::Int(v)) => v as i32,
                _ => unreachable!("kinds checked by Format::format"),
            }
        }
        for piece in &self.pieces {
            match *piece {
                Piece::Literal { start, end } => {
                    out.extend_from_slice(&self.text[start as usize..end as usize]);
                }
                Piece::Conv(spec) => {
                    let mut flags = spec.flags;
                    let width = match spec.width {
                        Count::None => 0,
                        Count::Fixed(w) => w as usize,
                        Count::Star => {
                            let w = int_arg(&mut args);
                            if w < 0 {
                                flags |= LEFT;
                            }
                            w.unsigned_abs() as usize
                        }
                    };
                    let prec = match spec.prec {
                        Count::None => None,
                        Count::Fixed(p) => Some(p as usize),
                        Count::Star => usize::try_from(int_arg(&mut args)).ok(),
                    };
                    let arg = match args.next() {
                        Some(a) => *a,
                        None => unreachable!("kinds checked above"),
                    };
                    let spec = Conv {
                        flags,
                        width,
                        prec,
                        size: spec.size,
                        conv: spec.conv,
                    };
                    spec.write(arg, out);
                }
            }
        }
        Ok(())
    }
}

/// A conversion with its `*` values read.
struct Conv {
    flags: u8,
    width: usize,
    prec: Option<usize>,
    size: Size,
    conv: u8,
}

/// Inserts `n` copies of `byte` at `out[at]`.
fn insert_fill(out: &mut Vec<u8>, at: usize, n: usize, byte: u8) {
    let old = out.len();
    out.resize(old + n, byte);
    out.copy_within(at..old, at + n);
    out[at..at + n].fill(byte);
}

/// Writes `m`'s digits in `base` (8, 10 or 16) at the end of `buf`; returns
/// where they start. Each base has its own loop so that the divisions are
/// by constants (shifts, or a multiplication for 10).
fn digits(mut m: u64, base: u32, upper: bool, buf: &mut [u8; 22]) -> usize {
    let mut pos = buf.len();
    match base {
        16 => {
            let hex = if upper {
                b"0123456789ABCDEF"
            } else {
                b"0123456789abcdef"
            };
            loop {
                pos -= 1;
                buf[pos] = hex[(m & 15) as usize];
                m >>= 4;
                if m == 0 {
                    break;
                }
            }
        }
        8 => loop {
            pos -= 1;
            buf[pos] = b'0' + (m & 7) as u8;
            m >>= 3;
            if m == 0 {
                break;
            }
        },
        _ => {
            const PAIRS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
            while m >= 100 {
                let r = (m % 100) as usize;
                m /= 100;
                pos -= 2;
                buf[pos..pos + 2].copy_from_slice(&PAIRS[2 * r..2 * r + 2]);
            }
            if m >= 10 {
                pos -= 2;
                buf[pos..pos + 2].copy_from_slice(&PAIRS[2 * m as usize..2 * m as usize + 2]);
            } else {
                pos -= 1;
                buf[pos] = b'0' + m as u8;
            }
        }
    }
    pos
}

impl Conv {
    /// Pads the field written at `out[start..]` to the width: spaces after
    /// it (`-`), zeros after its first `prefix` bytes (sign, `0x`) when
    /// `zero` allows, else spaces before it.
    fn pad(&self, out: &mut Vec<u8>, start: usize, prefix: usize, zero: bool) {
        let len = out.len() - start;
        if self.width <= len {
            return;
        }
        let n = self.width - len;
        if self.flags & LEFT != 0 {
            out.resize(out.len() + n, b' ');
        } else if zero && self.flags & ZERO != 0 {
            insert_fill(out, start + prefix, n, b'0');
        } else {
            insert_fill(out, start, n, b' ');
        }
    }

    fn write(&self, arg: Arg<'_>, out: &mut Vec<u8>) {
        match (self.conv, arg) {
            (b'c', Arg::Int(v)) => {
                let start = out.len();
                out.push(v as u8);
                self.pad(out, start, 0, false);
            }
            (b's', Arg::Str(s)) => {
                let start = out.len();
                match s {
                    Some(s) => {
                        let n = self.prec.map_or(s.len(), |p| p.min(s.len()));
                        out.extend_from_slice(&s[..n]);
                    }
                    None if self.prec.is_some_and(|p| p < 6) => {}
                    None => out.extend_from_slice(b"(null)"),
                }
                self.pad(out, start, 0, false);
            }
            (b'p', Arg::Ptr(0)) => {
                let start = out.len();
                out.extend_from_slice(b"(nil)");
                self.pad(out, start, 0, false);
            }
            (b'p', Arg::Ptr(p)) => self.int(false, p as u64, true, out),
            (b'd' | b'i', Arg::Int(v)) => {
                let v = match self.size {
                    Size::Char => v as i8 as i64,
                    Size::Short => v as i16 as i64,
                    Size::Int => v as i32 as i64,
                    Size::Long => v,
                };
                self.int(v < 0, v.unsigned_abs(), true, out);
            }
            (_, Arg::Int(v)) => {
                let v = match self.size {
                    Size::Char => v as u8 as u64,
                    Size::Short => v as u16 as u64,
                    Size::Int => v as u32 as u64,
                    Size::Long => v as u64,
                };
                self.int(false, v, false, out);
            }
            (_, Arg::Double(v)) => self.float(v, out),
            _ => unreachable!("kinds checked by Format::format"),
        }
    }

    /// An integer conversion (`%p` of non-NULL as `%#x`); `signed` says
    /// whether `+` and space apply.
    fn int(&self, negative: bool, mag: u64, signed: bool, out: &mut Vec<u8>) {
        let mut buf = [0u8; 22];
        let mut pos = buf.len();
        let base = match self.conv {
            b'o' => 8,
            b'x' | b'X' | b'p' => 16,
            _ => 10,
        };
        if !(mag == 0 && self.prec == Some(0)) {
            pos = digits(mag, base, self.conv == b'X', &mut buf);
        }
        let ndigits = buf.len() - pos;
        let mut prec = self.prec.unwrap_or(0);
        let alt = self.flags & ALT != 0 || self.conv == b'p';
        if alt && self.conv == b'o' && prec <= ndigits && (ndigits == 0 || buf[pos] != b'0') {
            prec = ndigits + 1;
        }
        let start = out.len();
        if negative {
            out.push(b'-');
        } else if signed && self.flags & PLUS != 0 {
            out.push(b'+');
        } else if signed && self.flags & SPACE != 0 {
            out.push(b' ');
        }
        if alt && mag != 0 && base == 16 {
            out.push(b'0');
            out.push(if self.conv == b'X' { b'X' } else { b'x' });
        }
        let prefix = out.len() - start;
        if prec > ndigits {
            out.resize(out.len() + (prec - ndigits), b'0');
        }
        out.extend_from_slice(&buf[pos..]);
        self.pad(out, start, prefix, self.prec.is_none());
    }
}
