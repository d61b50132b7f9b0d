//! Structured line formats: JSON Lines and logfmt, one record per line.
//!
//! JSON (RFC 8259): one object per line, keys `time` (RFC 3339, local time
//! with microseconds and offset), `level` (name), `levelno`, `thread`,
//! `logger`, `message`, then `file`, `line`, `func` when the record has a
//! source location, then the record's fields, each as a key of its own.
//! A field never collides with those fixed keys: a field key that is a
//! fixed key, or that starts with `_`, is written with one more `_` in
//! front (`message` becomes `_message`, `_x` becomes `__x`), a rule that is
//! one-to-one. Strings are valid UTF-8 whatever the record holds:
//! `"`, `\` and every control character are escaped (`\n`, `\r`, `\t`,
//! `\b`, `\f`, else `\u00XX`, DEL included), U+2028 and U+2029 are written
//! `\u2028` / `\u2029` (JavaScript readers), and each byte that is not part
//! of valid UTF-8 becomes U+FFFD, the replacement character (the original
//! bytes are not recoverable from JSON text).
//!
//! logfmt: `time=... level=WARNING levelno=30 thread=4242 logger=app.db
//! msg="disk at 91%"`, then `file=`, `line=`, `func=` when known, then the
//! fields, renamed by the same rule against logfmt's fixed keys. A value is written bare when it is non-empty and
//! holds only printable ASCII other than space, `"` and `=`, else quoted,
//! with `\"`, `\\`, `\n`, `\r`, `\t` and `\xHH` for other control bytes,
//! for the bytes of the C1 controls and of U+2028 / U+2029, and for bytes
//! that are not valid UTF-8.

use std::io::Write;

use super::format::{LocalClock, RecordView};
use crate::fields::{self, FieldList, Value};
use crate::record::level_name;

/// The level's name (`INFO`, or `Level 5`) in `room`, without allocating
/// (the crash flush formats lines in a signal handler).
fn level_text(level: i32, room: &mut [u8; 32]) -> &[u8] {
    if let Some(name) = level_name(level) {
        return name.to_bytes();
    }
    let mut cursor = std::io::Cursor::new(&mut room[..]);
    let _ = std::io::Write::write_fmt(&mut cursor, format_args!("Level {level}"));
    let n = cursor.position() as usize;
    &room[..n]
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` for a quoted string: `"`, `\`, `\n`, `\r` and `\t` as
/// C escapes, other characters through `special` (which writes and says
/// true when it took the character), the rest as they are; each run of
/// bytes that is not valid UTF-8 through `invalid`.
fn escape_utf8(
    text: &[u8],
    out: &mut Vec<u8>,
    special: impl Fn(char, &mut Vec<u8>) -> bool,
    invalid: impl Fn(&[u8], &mut Vec<u8>),
) {
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if special(c, out) => {}
                c => {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        if !chunk.invalid().is_empty() {
            invalid(chunk.invalid(), out);
        }
    }
}

fn is_control(c: char) -> bool {
    (c as u32) < 0x20 || c as u32 == 0x7f
}

/// Appends `text` as the inside of a JSON string.
pub fn json_string_into(text: &[u8], out: &mut Vec<u8>) {
    let special = |c: char, out: &mut Vec<u8>| {
        match c {
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c if is_control(c) => {
                let b = c as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            _ => return false,
        }
        true
    };
    escape_utf8(text, out, special, |_, out| {
        out.extend_from_slice("\u{fffd}".as_bytes())
    });
}

/// Appends the record as one JSON object and `\n`.
pub fn json_line(clock: &mut LocalClock, record: &RecordView, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    clock.write_rfc3339_micros(record.timestamp_ns, out);
    out.extend_from_slice(b"\",\"level\":\"");
    let mut room = [0u8; 32];
    json_string_into(level_text(record.level, &mut room), out);
    let _ = write!(
        out,
        "\",\"levelno\":{},\"thread\":{},\"logger\":\"",
        record.level, record.thread_id
    );
    json_string_into(record.logger, out);
    out.extend_from_slice(b"\",\"message\":\"");
    json_string_into(record.message, out);
    out.push(b'"');
    if has_source(record) {
        out.extend_from_slice(b",\"file\":\"");
        json_string_into(record.file, out);
        let _ = write!(out, "\",\"line\":{},\"func\":\"", record.line);
        json_string_into(record.func, out);
        out.push(b'"');
    }
    for f in fields::iter(record.fields) {
        out.extend_from_slice(b",\"");
        field_key(f.key, JSON_KEYS, out);
        out.extend_from_slice(b"\":");
        match f.value {
            Value::Str(s) => {
                out.push(b'"');
                json_string_into(s, out);
                out.push(b'"');
            }
            Value::Double(d) if !d.is_finite() => {
                let name: &[u8] = match d {
                    d if d.is_nan() => b"\"NaN\"",
                    d if d > 0.0 => b"\"Infinity\"",
                    _ => b"\"-Infinity\"",
                };
                out.extend_from_slice(name);
            }
            v => number_into(v, out),
        }
    }
    out.extend_from_slice(b"}\n");
}

/// The keys a JSON line always has (and `file`, `line`, `func`).
const JSON_KEYS: &[&[u8]] = &[
    b"time", b"level", b"levelno", b"thread", b"logger", b"message", b"file", b"line", b"func",
];

/// The keys a logfmt line always has (and `file`, `line`, `func`).
const LOGFMT_KEYS: &[&[u8]] = &[
    b"time", b"level", b"levelno", b"thread", b"logger", b"msg", b"file", b"line", b"func",
];

fn has_source(record: &RecordView) -> bool {
    !record.file.is_empty() || record.line != 0 || !record.func.is_empty()
}

/// Writes a field's key, with one more `_` in front when it is one of
/// `fixed` or starts with `_` (keys are `[A-Za-z0-9_.-]`: nothing else to
/// escape).
fn field_key(key: &[u8], fixed: &[&[u8]], out: &mut Vec<u8>) {
    if key.first() == Some(&b'_') || fixed.contains(&key) {
        out.push(b'_');
    }
    out.extend_from_slice(key);
}

/// A number, bool or double as JSON and logfmt both read it: integers in
/// full, doubles in Rust's shortest round-trip form (`0.1`, `1e300`).
fn number_into(value: Value, out: &mut Vec<u8>) {
    let _ = match value {
        Value::Int(v) => write!(out, "{v}"),
        Value::Uint(v) => write!(out, "{v}"),
        Value::Double(v) => write!(out, "{v:?}"),
        Value::Bool(v) => write!(out, "{v}"),
        Value::Str(_) => Ok(()),
    };
}

/// Appends the fields as logfmt pairs separated by spaces (`{fields}` in a
/// text pattern): keys as they are.
pub fn logfmt_fields(list: &dyn FieldList, out: &mut Vec<u8>) {
    logfmt_pairs(list, &[], false, out);
}

fn logfmt_pairs(list: &dyn FieldList, fixed: &[&[u8]], leading_space: bool, out: &mut Vec<u8>) {
    for (i, f) in fields::iter(list).enumerate() {
        if leading_space || i > 0 {
            out.push(b' ');
        }
        if fixed.is_empty() {
            out.extend_from_slice(f.key);
        } else {
            field_key(f.key, fixed, out);
        }
        out.push(b'=');
        match f.value {
            Value::Str(s) => logfmt_value_into(s, out),
            v => number_into(v, out),
        }
    }
}

/// True when a logfmt value can be written bare.
fn logfmt_bare(text: &[u8]) -> bool {
    !text.is_empty()
        && text
            .iter()
            .all(|&b| b > b' ' && b < 0x7f && b != b'"' && b != b'=')
}

/// `\xHH`.
fn hex(b: u8, out: &mut Vec<u8>) {
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(b >> 4)],
        HEX[usize::from(b & 15)],
    ]);
}

/// Appends `text` as a logfmt value.
pub fn logfmt_value_into(text: &[u8], out: &mut Vec<u8>) {
    if logfmt_bare(text) {
        out.extend_from_slice(text);
        return;
    }
    out.push(b'"');
    let special = |c: char, out: &mut Vec<u8>| {
        if is_control(c) {
            hex(c as u8, out);
            return true;
        }
        // The C1 controls (NEL among them) and U+2028 / U+2029 break lines
        // for Unicode-aware readers: their UTF-8 bytes as \xHH (lossless).
        if matches!(c as u32, 0x80..=0x9f | 0x2028 | 0x2029) {
            let mut buf = [0u8; 4];
            c.encode_utf8(&mut buf).bytes().for_each(|b| hex(b, out));
            return true;
        }
        false
    };
    escape_utf8(text, out, special, |bytes, out| {
        bytes.iter().for_each(|&b| hex(b, out))
    });
    out.push(b'"');
}

/// Appends the record as one logfmt line and `\n`.
pub fn logfmt_line(clock: &mut LocalClock, record: &RecordView, out: &mut Vec<u8>) {
    out.extend_from_slice(b"time=");
    clock.write_rfc3339_micros(record.timestamp_ns, out);
    out.extend_from_slice(b" level=");
    let mut room = [0u8; 32];
    logfmt_value_into(level_text(record.level, &mut room), out);
    let _ = write!(
        out,
        " levelno={} thread={} logger=",
        record.level, record.thread_id
    );
    logfmt_value_into(record.logger, out);
    out.extend_from_slice(b" msg=");
    logfmt_value_into(record.message, out);
    if has_source(record) {
        out.extend_from_slice(b" file=");
        logfmt_value_into(record.file, out);
        let _ = write!(out, " line={} func=", record.line);
        logfmt_value_into(record.func, out);
    }
    logfmt_pairs(record.fields, LOGFMT_KEYS, true, out);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &[u8]) -> String {
        let mut out = Vec::new();
        json_string_into(text, &mut out);
        String::from_utf8(out).expect("always valid UTF-8")
    }

    #[test]
    fn json_escapes_every_control_and_replaces_invalid_utf8() {
        assert_eq!(
            json(b"a\"b\\c\n\r\t\x08\x0c\x01\x1f\x7f"),
            "a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f"
        );
        assert_eq!(json("é\u{2028}\u{2029}😀".as_bytes()), "é\\u2028\\u2029😀");
        assert_eq!(json(b"ok\xff\xfe!\xc3"), "ok\u{fffd}\u{fffd}!\u{fffd}");
        // Every byte value: the result is valid UTF-8 with no raw control.
        let all: Vec<u8> = (0..=255u8).collect();
        assert!(!json(&all).chars().any(|c| (c as u32) < 0x20));
    }

    #[test]
    fn logfmt_quotes_only_when_needed() {
        let v = |t: &[u8]| {
            let mut out = Vec::new();
            logfmt_value_into(t, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(v(b"app.db"), "app.db");
        assert_eq!(v(b""), "\"\"");
        assert_eq!(v(b"disk at 91%"), "\"disk at 91%\"");
        assert_eq!(v(b"a=b"), "\"a=b\"");
        assert_eq!(v(b"x\n level=CRITICAL"), "\"x\\n level=CRITICAL\"");
        assert_eq!(v(b"q\"\\\x1b\xff"), "\"q\\\"\\\\\\x1b\\xff\"");
        assert_eq!(
            v("a\u{85}b\u{2028}c\u{2029}é".as_bytes()),
            "\"a\\xc2\\x85b\\xe2\\x80\\xa8c\\xe2\\x80\\xa9é\""
        );
    }

    #[test]
    fn a_record_is_one_object_on_one_line() {
        let r =
            crate::record::LogRecord::new(30, b"app\n", b"m \"1\"\n{\"level\":\"CRITICAL\"}", 7);
        let mut out = Vec::new();
        json_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches('\n').count(), 1);
        assert!(s.starts_with("{\"time\":\"") && s.ends_with("\"}\n"), "{s}");
        assert!(s.contains("\"level\":\"WARNING\",\"levelno\":30,"), "{s}");
        assert!(s.contains("\"logger\":\"app\\n\",\"message\":\"m \\\"1\\\"\\n{\\\"level\\\":\\\"CRITICAL\\\"}\"}"), "{s}");
        let mut out = Vec::new();
        logfmt_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches('\n').count(), 1);
        assert!(s.contains(" level=WARNING levelno=30 thread="), "{s}");
    }

    #[test]
    fn fields_become_keys_that_never_collide() {
        use crate::fields::Field;
        use crate::record::{LogRecord, Source};
        let given = [
            Field {
                key: b"user",
                value: Value::Str(b"bob \"the\" builder\n"),
            },
            Field {
                key: b"message",
                value: Value::Str(b"forged"),
            },
            Field {
                key: b"_message",
                value: Value::Int(-5),
            },
            Field {
                key: b"n",
                value: Value::Uint(u64::MAX),
            },
            Field {
                key: b"ratio",
                value: Value::Double(0.1),
            },
            Field {
                key: b"nan",
                value: Value::Double(f64::NAN),
            },
            Field {
                key: b"inf",
                value: Value::Double(f64::NEG_INFINITY),
            },
            Field {
                key: b"ok",
                value: Value::Bool(true),
            },
        ];
        let src = Source {
            file: b"a.c",
            line: 7,
            func: b"main",
        };
        let r = LogRecord::with(20, b"app", b"m", 0, &src, &given);
        let mut out = Vec::new();
        json_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains(r#""message":"m","file":"a.c","line":7,"func":"main","user":"bob \"the\" builder\n","_message":"forged","__message":-5,"n":18446744073709551615,"ratio":0.1,"nan":"NaN","inf":"-Infinity","ok":true}"#), "{s}");
        let mut out = Vec::new();
        logfmt_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with(r#" msg=m file=a.c line=7 func=main user="bob \"the\" builder\n" message=forged __message=-5 n=18446744073709551615 ratio=0.1 nan=NaN inf=-inf ok=true
"#), "{s}");
    }
}
