//! The formatter against glibc's `snprintf`: hand-written cases for each
//! glibc specific, the refusals, and a property test with random formats and
//! arguments.

use std::ffi::{c_char, c_int, c_long, c_void, CString};

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{parse, Arg, ArgKind, ArgMismatch, Unsupported};

/// One argument as C receives it.
#[derive(Debug, Clone, PartialEq)]
enum CArg {
    Int(c_int),
    Long(c_long),
    Double(f64),
    Str(Option<CString>),
    Ptr(usize),
}

impl CArg {
    fn arg(&self) -> Arg<'_> {
        match self {
            CArg::Int(v) => Arg::Int(i64::from(*v)),
            CArg::Long(v) => Arg::Int(*v),
            CArg::Double(v) => Arg::Double(*v),
            CArg::Str(s) => Arg::Str(s.as_ref().map(|s| s.as_bytes())),
            CArg::Ptr(p) => Arg::Ptr(*p),
        }
    }
}

/// glibc's `snprintf` of a format with at most three arguments: up to two
/// `int`s (`*` width and precision) and one of any kind.
fn c_format(fmt: &[u8], args: &[CArg]) -> Vec<u8> {
    let fmt = CString::new(fmt).expect("no NUL in test formats");
    let f = fmt.as_ptr();
    let mut buf: Vec<u8> = Vec::new();
    macro_rules! call {
        ($($a:expr),*) => {{
            // SAFETY: the format's conversions match the arguments' C types
            // (the generator builds them together); the first call only
            // measures, the second writes into a buffer of that size + 1.
            unsafe {
                let n = libc::snprintf(std::ptr::null_mut(), 0, f $(, $a)*);
                assert!(n >= 0, "snprintf failed on {fmt:?}");
                buf.resize(n as usize + 1, 0);
                libc::snprintf(buf.as_mut_ptr().cast::<c_char>(), buf.len(), f $(, $a)*);
                buf.truncate(n as usize);
            }
        }};
    }
    macro_rules! last {
        ($l:expr $(, $pre:expr)*) => {
            match $l {
                CArg::Int(v) => call!($($pre,)* *v),
                CArg::Long(v) => call!($($pre,)* *v),
                CArg::Double(v) => call!($($pre,)* *v),
                CArg::Str(s) => call!(
                    $($pre,)* s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr())
                ),
                CArg::Ptr(p) => call!($($pre,)* *p as *const c_void),
            }
        };
    }
    match args {
        [] => call!(),
        [l] => last!(l),
        [CArg::Int(a), l] => last!(l, *a),
        [CArg::Int(a), CArg::Int(b), l] => last!(l, *a, *b),
        _ => panic!("unsupported argument list {args:?}"),
    }
    buf
}

/// Formats with [`parse`] and [`super::Format::format`].
fn ours(fmt: &[u8], args: &[CArg]) -> Vec<u8> {
    let f = parse(fmt).unwrap_or_else(|e| panic!("{:?} refused: {e:?}", bstr(fmt)));
    let args: Vec<Arg<'_>> = args.iter().map(CArg::arg).collect();
    let mut out = b"prefix:".to_vec();
    f.format(&args, &mut out).expect("arguments match");
    out.drain(..7);
    // Every formatting checked against glibc also checks the crash
    // flush's bound.
    let bound = f.max_len(&args).expect("arguments match");
    assert!(
        out.len() <= bound,
        "{:?}: {} > max_len {bound}",
        bstr(fmt),
        out.len()
    );
    out
}

fn bstr(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Checks a format against glibc, and against the expected text. The format
/// is given to glibc in `|`-separated pieces (each piece's arguments are
/// those its own parse asks for), so a piece takes at most three arguments.
fn check(fmt: &str, args: &[CArg], expected: &str) {
    let mut c = Vec::new();
    let mut rest = args;
    for (i, piece) in fmt.split('|').enumerate() {
        let n = parse(piece.as_bytes()).unwrap().args().len();
        if i > 0 {
            c.push(b'|');
        }
        c.extend(c_format(piece.as_bytes(), &rest[..n]));
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "{fmt:?}: too many arguments");
    assert_eq!(
        bstr(&c),
        expected,
        "glibc's {fmt:?} (the test's expectation is wrong)"
    );
    assert_eq!(
        bstr(&ours(fmt.as_bytes(), args)),
        expected,
        "{fmt:?} {args:?}"
    );
}

/// [`check`] with `arg` for every argument the format takes.
fn check_same(fmt: &str, arg: CArg, expected: &str) {
    let n = parse(fmt.as_bytes()).unwrap().args().len();
    check(fmt, &vec![arg; n], expected);
}

use CArg::{Double as D, Int as I, Long as L, Ptr as P};

fn s(text: &str) -> CArg {
    CArg::Str(Some(CString::new(text).unwrap()))
}

const NULL: CArg = CArg::Str(None);

#[test]
fn printf_integers_as_glibc() {
    check("%hhu", &[I(300)], "44");
    check("%hd", &[I(70000)], "4464");
    check("%hhd", &[I(200)], "-56");
    check_same("%d|%i|%u", I(-1), "-1|-1|4294967295");
    check_same("%.0d|%.0u|%.0x|%5.0d|", I(0), "|||     |");
    check("%+.0d", &[I(0)], "+");
    check("% .0d", &[I(0)], " ");
    check_same("%#o|%#x|%#X|%#.0o|%#.0x", I(0), "0|0|0|0|");
    check("%#x", &[I(255)], "0xff");
    check("%#X", &[I(255)], "0XFF");
    check("%#o", &[I(8)], "010");
    check("%#.2o", &[I(8)], "010");
    check("%#5.3o", &[I(8)], "  010");
    check("%+ d", &[I(5)], "+5");
    check("% d", &[I(5)], " 5");
    check("% +d", &[I(-5)], "-5");
    check("%+u", &[I(5)], "5");
    check("%08.3d", &[I(-42)], "    -042");
    check("%08d", &[I(-42)], "-0000042");
    check("%-08d|", &[I(-42)], "-42     |");
    check("%#010x", &[I(255)], "0x000000ff");
    check("%ld", &[L(i64::MIN)], "-9223372036854775808");
    check("%lu", &[L(-1)], "18446744073709551615");
    check("%lo", &[L(-1)], "1777777777777777777777");
    check_same("%zx|%jd|%td|%lld", L(-1), "ffffffffffffffff|-1|-1|-1");
}

#[test]
fn printf_multiple_conversions_in_one_call() {
    // The property test compares one conversion per glibc call; this checks
    // a whole format with several, straight against glibc.
    let fmt = "a%*.*d|%s|%-6c|%p|%.3e|%lx|%%\u{e9}";
    // SAFETY: the arguments match the format's conversions.
    let c = unsafe {
        let mut buf = [0u8; 256];
        let f = CString::new(fmt).unwrap();
        let str_arg = CString::new("h\u{e9}").unwrap();
        let n = libc::snprintf(
            buf.as_mut_ptr().cast(),
            buf.len(),
            f.as_ptr(),
            -7 as c_int,
            3 as c_int,
            42 as c_int,
            str_arg.as_ptr(),
            b'z' as c_int,
            0x1000usize as *const c_void,
            1234.5f64,
            -2 as c_long,
        );
        buf[..n as usize].to_vec()
    };
    let args = [
        I(-7),
        I(3),
        I(42),
        s("h\u{e9}"),
        I(b'z' as c_int),
        P(0x1000),
        D(1234.5),
        L(-2),
    ];
    let f = parse(fmt.as_bytes()).unwrap();
    let kinds = [
        ArgKind::Int,
        ArgKind::Int,
        ArgKind::Int,
        ArgKind::Str,
        ArgKind::Int,
        ArgKind::Ptr,
        ArgKind::Double,
        ArgKind::Long,
    ];
    assert_eq!(f.args(), kinds);
    let args: Vec<Arg<'_>> = args.iter().map(CArg::arg).collect();
    let mut out = Vec::new();
    f.format(&args, &mut out).unwrap();
    assert_eq!(bstr(&out), bstr(&c));
    assert_eq!(
        bstr(&out),
        "a042    |h\u{e9}|z     |0x1000|1.234e+03|fffffffffffffffe|%\u{e9}"
    );
}

#[test]
fn printf_strings_chars_pointers_as_glibc() {
    check_same("%s|%10s|%-10s|", NULL, "(null)|    (null)|(null)    |");
    check("%.5s|", &[NULL], "|");
    check("%.6s|", &[NULL], "(null)|");
    check("%8.3s|", &[NULL], "        |");
    check("%05s|", &[s("ab")], "   ab|");
    check("%.1s|", &[s("\u{e9}x")], "\u{fffd}|");
    check_same("%-4c|%4c|%04c", I(120), "x   |   x|   x");
    check("%c", &[I(0x141)], "A");
    check_same(
        "%p|%10p|%-10p|%010p|%+p|%.3p",
        P(0),
        "(nil)|     (nil)|(nil)     |     (nil)|(nil)|(nil)",
    );
    check("%p", &[P(0x1234)], "0x1234");
    check_same("%+p|% p", P(0x1234), "+0x1234| 0x1234");
    check("%020p", &[P(0x1234)], "0x000000000000001234");
    check("%.8p", &[P(0x1234)], "0x00001234");
    check("%%|%5s%%", &[s("x")], "%|    x%");
}

#[test]
fn printf_floats_as_glibc() {
    check_same("%f|%e|%g", D(0.1), "0.100000|1.000000e-01|0.1");
    check(
        "%.60f",
        &[D(0.1)],
        "0.100000000000000005551115123125782702118158340454101562500000",
    );
    check("%.0f|%.0f", &[D(0.5), D(-0.5)], "0|-0");
    check("%.0f", &[D(1.5)], "2");
    check("%.0f", &[D(2.5)], "2");
    check("%.1f", &[D(0.25)], "0.2");
    check("%.2f", &[D(1.005)], "1.00");
    check("%.0e", &[D(2.5)], "2e+00");
    check_same("%#.0f|%#.0e", D(3.0), "3.|3.e+00");
    check("%e", &[D(1e-300)], "1.000000e-300");
    check("%E", &[D(-1e300)], "-1.000000E+300");
    check_same("%f|%F|%e|%g|%a", D(f64::INFINITY), "inf|INF|inf|inf|inf");
    check_same("%F|%E|%G|%A", D(f64::NEG_INFINITY), "-INF|-INF|-INF|-INF");
    check_same(
        "%f|%+f|% f|%05f|%-5f|",
        D(f64::NAN),
        "nan|+nan| nan|  nan|nan  |",
    );
    check("%f", &[D(-f64::NAN)], "-nan");
    check_same("%05f|%-6f|", D(-f64::NAN), " -nan|-nan  |");
    check("%+05f", &[D(f64::INFINITY)], " +inf");
    check_same("%f|%e|%g", D(-0.0), "-0.000000|-0.000000e+00|-0");
    check("%08.2f", &[D(-1.5)], "-0001.50");
    check("%+.3e", &[D(0.0)], "+0.000e+00");
    check("%g", &[D(100000.0)], "100000");
    check("%g", &[D(1000000.0)], "1e+06");
    check("%g", &[D(0.0001)], "0.0001");
    check("%g", &[D(0.00001)], "1e-05");
    check("%#g", &[D(1.0)], "1.00000");
    check_same("%#.1g|%.1g", D(1.0), "1.|1");
    check("%.0g", &[D(0.5)], "0.5");
    check("%G", &[D(1e-10)], "1E-10");
    check("%.3g", &[D(9995.0)], "1e+04");
    check("%.17g", &[D(0.1)], "0.10000000000000001");
    // glibc's %#g quirk when rounding carries past 10^P.
    check(
        "%#g|%g|%#g",
        &[D(999999.5), D(999999.5), D(1e6)],
        "1.e+06|1e+06|1.00000e+06",
    );
    check("%#.3g|%#.3g", &[D(99.95), D(0.9996)], "100.|1.00");
    check_same("%#g|%g", D(0.000099999996), "0.000100000|0.0001");
    check("%.1000f", &[D(5e-324)], &format!("{:.1000}", 5e-324));
    check("%f", &[D(1e308)], &format!("{:.6}", 1e308));
}

#[test]
fn printf_hex_floats_as_glibc() {
    check("%a", &[D(1.0)], "0x1p+0");
    check_same("%a|%A", D(0.0), "0x0p+0|0X0P+0");
    check("%a", &[D(-0.0)], "-0x0p+0");
    check("%a", &[D(5e-324)], "0x0.0000000000001p-1022");
    check(
        "%a",
        &[D(f64::from_bits(0x000f_ffff_ffff_ffff))],
        "0x0.fffffffffffffp-1022",
    );
    check("%a", &[D(f64::MIN_POSITIVE)], "0x1p-1022");
    check("%.0a", &[D(1.5)], "0x2p+0");
    check("%.0a", &[D(0.5)], "0x1p-1");
    check("%.1a", &[D(1.96875)], "0x2.0p+0");
    check("%.1a", &[D(1.03125)], "0x1.0p+0");
    check("%.1a", &[D(1.09375)], "0x1.2p+0");
    check("%#.0a", &[D(1.0)], "0x1.p+0");
    check("%A", &[D(-1e300)], "-0X1.7E43C8800759CP+996");
    check("%.20a", &[D(1.0 / 3.0)], "0x1.55555555555550000000p-2");
    check("%012a", &[D(-1.0)], "-0x000001p+0");
    check("%.0a", &[D(5e-324)], "0x0p-1022");
}

#[test]
fn printf_unsupported_is_reported() {
    let cases: &[(&str, Unsupported)] = &[
        ("%1$d", Unsupported::Positional),
        ("%*1$d", Unsupported::Positional),
        ("%.*2$d", Unsupported::Positional),
        ("%lc", Unsupported::WideChar),
        ("%ls", Unsupported::WideChar),
        ("%C", Unsupported::WideChar),
        ("%S", Unsupported::WideChar),
        ("%'d", Unsupported::Grouping),
        ("%Lf", Unsupported::LongDouble),
        ("%llg", Unsupported::LongDouble),
        ("%n", Unsupported::N),
        ("%m", Unsupported::Invalid),
        ("%y", Unsupported::Invalid),
        ("abc%", Unsupported::Invalid),
        ("%5%", Unsupported::Invalid),
        ("%hs", Unsupported::Invalid),
        ("%lp", Unsupported::Invalid),
        ("%hf", Unsupported::Invalid),
        ("%Ld", Unsupported::Invalid),
        ("%qd", Unsupported::Invalid),
        ("%Id", Unsupported::Invalid),
        ("%hhhd", Unsupported::Invalid),
        ("%lhd", Unsupported::Invalid),
        ("%3000000000d", Unsupported::Invalid),
        ("%.3000000000d", Unsupported::Invalid),
        // The first reason wins...
        ("%ls %'d", Unsupported::WideChar),
        ("%d %y %1$d", Unsupported::Invalid),
    ];
    for &(fmt, why) in cases {
        assert_eq!(parse(fmt.as_bytes()), Err(why), "{fmt:?}");
    }
}

#[test]
fn printf_n_is_refused_wherever_it_is() {
    for fmt in [
        "%n",
        "%hhn",
        "%lln",
        "%5n",
        "%2$n",
        "x %d %n",
        "%1$d %n",
        "%ls %n",
        "%'d %y %n %d",
        "%Lf%hn",
    ] {
        assert_eq!(parse(fmt.as_bytes()), Err(Unsupported::N), "{fmt:?}");
    }
}

#[test]
fn printf_argument_mismatch_appends_nothing() {
    let f = parse(b"%d %s %f %p %ld %*.*c").unwrap();
    use ArgKind::*;
    assert_eq!(f.args(), [Int, Str, Double, Ptr, Long, Int, Int, Int]);
    let good = [
        Arg::Int(1),
        Arg::Str(None),
        Arg::Double(1.0),
        Arg::Ptr(0),
        Arg::Int(2),
        Arg::Int(3),
        Arg::Int(4),
        Arg::Int(65),
    ];
    let mut out = b"kept".to_vec();
    f.format(&good, &mut out).unwrap();
    assert_eq!(bstr(&out), "kept1 (null) 1.000000 (nil) 2   A");
    let mut out = b"kept".to_vec();
    assert_eq!(f.format(&good[..7], &mut out), Err(ArgMismatch));
    let mut wrong = good;
    wrong[2] = Arg::Int(1);
    assert_eq!(f.format(&wrong, &mut out), Err(ArgMismatch));
    let mut wrong = good;
    wrong[3] = Arg::Int(0);
    assert_eq!(f.format(&wrong, &mut out), Err(ArgMismatch));
    assert_eq!(bstr(&out), "kept");
}

// ---- The property test ----

/// One generated conversion: its text, and which argument kind it takes.
#[derive(Debug, Clone)]
struct GenConv {
    text: String,
    kind: ArgKind,
    stars: usize,
}

fn conv_strategy() -> impl Strategy<Value = GenConv> {
    let convs = prop::sample::select(&b"diuoxXcspeEfFgGaA"[..]);
    let flags = prop::collection::vec(prop::sample::select(&b"-+ #0"[..]), 0..4);
    let width = prop_oneof![
        3 => Just(String::new()),
        3 => (0u32..30).prop_map(|w| w.to_string()),
        1 => (30u32..300).prop_map(|w| w.to_string()),
        2 => Just("*".to_string()),
    ];
    let prec = prop_oneof![
        4 => Just(String::new()),
        1 => Just(".".to_string()),
        4 => (0u32..25).prop_map(|p| format!(".{p}")),
        1 => (25u32..1100).prop_map(|p| format!(".{p}")),
        2 => Just(".*".to_string()),
    ];
    let int_len = prop::sample::select(vec!["", "", "", "hh", "h", "l", "ll", "j", "z", "t"]);
    let float_len = prop::sample::select(vec!["", "", "l"]);
    (convs, flags, width, prec, int_len, float_len).prop_map(
        |(conv, flags, width, prec, int_len, float_len)| {
            let (len, kind) = match conv {
                b'c' => ("", ArgKind::Int),
                b's' => ("", ArgKind::Str),
                b'p' => ("", ArgKind::Ptr),
                b'd' | b'i' | b'u' | b'o' | b'x' | b'X' => {
                    let long = matches!(int_len, "l" | "ll" | "j" | "z" | "t");
                    (int_len, if long { ArgKind::Long } else { ArgKind::Int })
                }
                _ => (float_len, ArgKind::Double),
            };
            let stars = usize::from(width == "*") + usize::from(prec == ".*");
            GenConv {
                text: format!(
                    "%{}{width}{prec}{len}{}",
                    String::from_utf8(flags).unwrap(),
                    conv as char
                ),
                kind,
                stars,
            }
        },
    )
}

/// A literal: printable ASCII, `%%`, and any UTF-8 (bytes >= 0x80); a `%`
/// drawn alone becomes `%%`, a NUL `\u{e9}`.
fn literal_strategy() -> impl Strategy<Value = String> {
    let escape = |c: char| match c {
        '%' => "%%".to_string(),
        '\0' => "\u{e9}".to_string(),
        c => c.to_string(),
    };
    prop::collection::vec(
        prop_oneof![
            4 => prop::char::range(' ', '~').prop_map(escape),
            1 => Just("%%".to_string()),
            1 => any::<char>().prop_map(escape),
        ],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

fn int_strategy() -> impl Strategy<Value = i64> {
    prop_oneof![
        prop::sample::select(vec![
            0,
            1,
            -1,
            i64::MIN,
            i64::MAX,
            u64::MAX as i64,
            i32::MIN as i64,
            i32::MAX as i64,
            u32::MAX as i64,
            255,
            256,
            300,
            -129,
            70000,
            65535,
            -32769,
            8,
            0x7f,
            0x80,
        ]),
        any::<i64>(),
        (-1000i64..1000),
    ]
}

fn double_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            0.5,
            1.5,
            2.5,
            0.25,
            0.125,
            0.375,
            1.005,
            9.5,
            99.5,
            999_999.5,
            0.000_05,
            0.000_15,
            1e-5,
            1e21,
            1e22,
            1e23,
            123_456_789.0,
            f64::MAX,
            -f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            f64::from_bits(0x000f_ffff_ffff_ffff),
            1e-310,
            f64::EPSILON,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            1.96875,
            1.03125,
            1.09375,
        ]),
        // Any bits: subnormals, NaN payloads with either sign, huge and tiny.
        any::<u64>().prop_map(f64::from_bits),
        // Numbers near powers of ten and exact binary ties at small
        // precisions: k / 2^n.
        (-100_000i64..100_000, 0u32..12).prop_map(|(k, n)| k as f64 / f64::from(1u32 << n)),
        (-20i32..20).prop_map(|e| 10f64.powi(e)),
        any::<f64>(),
    ]
}

fn star_strategy() -> impl Strategy<Value = i32> {
    prop_oneof![4 => -40i32..40, 1 => -300i32..300, 1 => Just(-1), 1 => Just(0)]
}

fn string_strategy() -> impl Strategy<Value = Option<CString>> {
    prop_oneof![
        1 => Just(None),
        4 => prop::collection::vec(1u8..=255, 0..20).prop_map(|b| Some(CString::new(b).unwrap())),
    ]
}

#[derive(Debug, Clone)]
struct Segment {
    literal: String,
    conv: Option<GenConv>,
    args: Vec<CArg>,
}

fn segment_strategy() -> impl Strategy<Value = Segment> {
    (
        literal_strategy(),
        prop::option::weighted(0.9, conv_strategy()),
        int_strategy(),
        double_strategy(),
        string_strategy(),
        any::<usize>(),
        (star_strategy(), star_strategy()),
    )
        .prop_map(|(literal, conv, int, double, string, ptr, (w, p))| {
            let mut args = Vec::new();
            if let Some(c) = &conv {
                args.extend([CArg::Int(w), CArg::Int(p)].into_iter().take(c.stars));
                args.push(match c.kind {
                    ArgKind::Int => CArg::Int(int as c_int),
                    ArgKind::Long => CArg::Long(int),
                    ArgKind::Double => CArg::Double(double),
                    ArgKind::Str => CArg::Str(string),
                    ArgKind::Ptr => CArg::Ptr(if int % 4 == 0 { 0 } else { ptr }),
                });
            }
            Segment {
                literal,
                conv,
                args,
            }
        })
}

/// 20 000 cases, or `QL_PRINTF_CASES`.
fn config() -> Config {
    let cases = std::env::var("QL_PRINTF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// A random format of up to five segments (literal text, then one
    /// conversion with its `*` arguments), parsed and formatted whole, equals
    /// the concatenation of glibc's `snprintf` of each segment.
    #[test]
    fn printf_matches_glibc(segments in prop::collection::vec(segment_strategy(), 1..6)) {
        let mut fmt = String::new();
        let mut expected = Vec::new();
        let mut args = Vec::new();
        for seg in &segments {
            let text = format!("{}{}", seg.literal, seg.conv.as_ref().map_or("", |c| &c.text));
            expected.extend(c_format(text.as_bytes(), &seg.args));
            fmt.push_str(&text);
            args.extend(seg.args.iter().cloned());
        }
        let got = ours(fmt.as_bytes(), &args);
        prop_assert_eq!(bstr(&got), bstr(&expected), "format {:?} args {:?}", fmt, args);
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn printf_str_limit_is_the_precision_c_reads() {
    let f = parse(b"%s %.3s %*.*s %.*s %d %.2s").unwrap();
    // args: 0 s, 1 s(.3), 2 width*, 3 prec*, 4 s, 5 prec*, 6 s, 7 d, 8 s(.2)
    let star = |i: usize| match i {
        3 => 4,
        5 => -1,
        _ => panic!("argument {i} is not a star"),
    };
    assert_eq!(f.str_limit(0, star), None);
    assert_eq!(f.str_limit(1, star), Some(3));
    assert_eq!(f.str_limit(4, star), Some(4));
    assert_eq!(f.str_limit(6, star), None, "a negative * precision is none");
    assert_eq!(f.str_limit(7, star), None, "not a %s");
    assert_eq!(f.str_limit(8, star), Some(2));
    assert_eq!(f.str_limit(9, star), None, "past the end");
}

#[test]
fn printf_fields_within_bounds_widths_and_precisions() {
    let no_star = |_: usize| -> i64 { panic!("no star here") };
    assert!(parse(b"%5d %.3f %s").unwrap().fields_within(5, no_star));
    assert!(!parse(b"%6d").unwrap().fields_within(5, no_star));
    assert!(!parse(b"%.6f").unwrap().fields_within(5, no_star));
    // A %s precision only limits what is read.
    assert!(parse(b"%.600s").unwrap().fields_within(5, no_star));
    let f = parse(b"%*d %.*f %.*s").unwrap();
    // args: 0 width*, 1 d, 2 prec*, 3 f, 4 prec*, 5 s
    let with = |w: i64, p: i64, sp: i64| {
        move |i: usize| match i {
            0 => w,
            2 => p,
            4 => sp,
            _ => panic!("argument {i} is not a star"),
        }
    };
    assert!(f.fields_within(10, with(10, 10, 1 << 30)));
    assert!(!f.fields_within(10, with(11, 0, 0)));
    assert!(
        !f.fields_within(10, with(-11, 0, 0)),
        "a negative width is a width"
    );
    assert!(!f.fields_within(10, with(i32::MIN as i64, 0, 0)));
    assert!(!f.fields_within(10, with(0, 11, 0)));
    assert!(
        f.fields_within(10, with(0, -5, 0)),
        "a negative precision is none"
    );
}
