//! Line formatting: a record becomes exactly one line.
//!
//! The logger name and the message are escaped by default, so that no
//! content can end the line early or forge another record: every byte below
//! 0x20 except TAB, and DEL (0x7f), is written as a C escape (`\n`, `\r`,
//! `\xHH`). Bytes 0x80 and up (UTF-8, or invalid UTF-8) are written as they
//! are. [`Pattern::raw`] turns escaping off.

use std::io::Write;

use crate::fields::FieldList;
use crate::record::{level_name, LogRecord};

/// What a handler reads of a record.
#[derive(Clone, Copy)]
pub struct RecordView<'a> {
    /// The level.
    pub level: i32,
    /// The producing thread's id.
    pub thread_id: u32,
    /// Wall-clock time, ns since the Unix epoch.
    pub timestamp_ns: i64,
    /// The logger name.
    pub logger: &'a [u8],
    /// The message.
    pub message: &'a [u8],
    /// The source file (empty when unknown).
    pub file: &'a [u8],
    /// The source line (0 when unknown).
    pub line: u32,
    /// The function (empty when unknown).
    pub func: &'a [u8],
    /// The structured fields, context fields included.
    pub fields: &'a dyn FieldList,
}

impl<'a> From<&'a LogRecord> for RecordView<'a> {
    fn from(r: &'a LogRecord) -> Self {
        RecordView {
            level: r.level,
            thread_id: r.thread_id,
            timestamp_ns: r.timestamp_ns,
            logger: r.logger(),
            message: r.message(),
            file: r.file(),
            line: r.line,
            func: r.func(),
            fields: r,
        }
    }
}

/// The default line pattern.
pub const DEFAULT_PATTERN: &str = "{time} {level} [{thread}] {logger}: {message}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Time,
    Level,
    LevelNo,
    Thread,
    Logger,
    Message,
    File,
    Line,
    Func,
    Fields,
}

/// A compiled line pattern.
///
/// Fields: `{time}` (local time, ISO 8601 with milliseconds and UTC offset:
/// `2026-11-24T21:31:05.123+01:00`), `{level}` (Python's level name, or
/// `Level N`), `{levelno}`, `{thread}` (the thread id), `{logger}`,
/// `{message}`, `{file}`, `{line}`, `{func}` (the source location: empty
/// and 0 when the call gave none), `{fields}` (the record's fields as
/// logfmt pairs `key=value key2="two words"`, separated by spaces, empty
/// when there are none; escaped by logfmt's rules even when `raw`, and
/// unless `raw` the C1 controls and U+2028 / U+2029 as in the rest of the
/// line, `\u2028`). `{{`
/// and `}}` write braces. A line ends with `\n`.
#[derive(Debug, Clone)]
pub struct Pattern {
    pieces: Vec<Piece>,
    raw: bool,
    style: Style,
    color: bool,
}

/// The shape of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// The pattern's pieces.
    Text,
    /// One JSON object ([`super::structured`]).
    Json,
    /// logfmt key=value pairs ([`super::structured`]).
    Logfmt,
}

/// The ANSI colour of a level name on a terminal: DEBUG and below dim,
/// INFO green, WARNING yellow, ERROR red, CRITICAL and above bold white on
/// red.
fn level_color(level: i32) -> &'static [u8] {
    match level {
        i32::MIN..=10 => b"\x1b[2m",
        11..=20 => b"\x1b[32m",
        21..=30 => b"\x1b[33m",
        31..=40 => b"\x1b[31m",
        _ => b"\x1b[1;37;41m",
    }
}

/// Whether a terminal line should be coloured: `mode` 0 decides (on when
/// `fd` is a terminal and the `NO_COLOR` environment variable is unset or
/// empty, as <https://no-color.org> asks), 1 never, 2 always.
pub fn color_wanted(mode: i32, fd: Option<i32>) -> bool {
    match mode {
        1 => false,
        2 => true,
        _ => {
            // SAFETY: isatty on any fd is harmless.
            let tty = fd.is_some_and(|fd| unsafe { libc::isatty(fd) } == 1);
            tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    }
}

impl Pattern {
    /// Compiles a pattern; `Err` names the first unknown field.
    pub fn parse(pattern: &str) -> Result<Pattern, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = pattern;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("{{") || rest.starts_with("}}") {
                text.push(c);
                rest = &rest[2..];
                continue;
            }
            if c == '{' {
                let Some(end) = rest.find('}') else {
                    return Err(format!("unclosed field in pattern: {rest}"));
                };
                let piece = match &rest[1..end] {
                    "time" => Piece::Time,
                    "level" => Piece::Level,
                    "levelno" => Piece::LevelNo,
                    "thread" => Piece::Thread,
                    "logger" => Piece::Logger,
                    "message" => Piece::Message,
                    "file" => Piece::File,
                    "line" => Piece::Line,
                    "func" => Piece::Func,
                    "fields" => Piece::Fields,
                    other => return Err(format!("unknown field {{{other}}}")),
                };
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(piece);
                rest = &rest[end + 1..];
                continue;
            }
            if c == '}' {
                return Err("a lone '}' in pattern (write '}}')".into());
            }
            if (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}' {
                // A pattern with a line break would make one record two.
                return Err(format!("a control character in pattern: {c:?}"));
            }
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Pattern {
            pieces,
            raw: false,
            style: Style::Text,
            color: false,
        })
    }

    /// Writes the logger name and message as they are, control characters
    /// included: a message with a newline then makes several lines. Never
    /// the default.
    pub fn raw(mut self, raw: bool) -> Pattern {
        self.raw = raw;
        self
    }

    /// Writes lines in `style` instead (JSON and logfmt ignore the pieces
    /// and escape by their own rules; `raw` does not apply to them).
    pub fn style(mut self, style: Style) -> Pattern {
        self.style = style;
        self
    }

    /// Colours the `{level}` piece of text lines for a terminal.
    pub fn color(mut self, color: bool) -> Pattern {
        self.color = color;
        self
    }

    /// At least as many bytes as [`Pattern::write_line`] appends for
    /// `record`: what the crash flush, which must not let its buffer grow,
    /// checks against its room. Escaping writes at most 6 bytes for one
    /// (JSON's `\u00XX`); a number at most 340.
    pub fn max_line_len(&self, record: &RecordView) -> usize {
        let body: usize = match self.style {
            // Every text once, the fields, the keys around them.
            Style::Json | Style::Logfmt => max_record_len(record),
            // Each piece as often as the pattern has it.
            Style::Text => {
                let fields = max_fields_len(record);
                self.pieces
                    .iter()
                    .map(|piece| match piece {
                        Piece::Text(t) => t.len(),
                        Piece::Logger => 6 * record.logger.len(),
                        Piece::Message => 6 * record.message.len(),
                        Piece::File => 6 * record.file.len(),
                        Piece::Func => 6 * record.func.len(),
                        Piece::Fields => fields,
                        _ => 64,
                    })
                    .sum()
            }
        };
        1024 + body
    }

    /// Appends the record's line, with its `\n`, to `out`.
    pub fn write_line(&self, clock: &mut LocalClock, record: &RecordView, out: &mut Vec<u8>) {
        match self.style {
            Style::Text => {}
            Style::Json => return super::structured::json_line(clock, record, out),
            Style::Logfmt => return super::structured::logfmt_line(clock, record, out),
        }
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Time => clock.write_iso8601(record.timestamp_ns, out),
                Piece::Level => {
                    if self.color {
                        out.extend_from_slice(level_color(record.level));
                    }
                    match level_name(record.level) {
                        Some(name) => out.extend_from_slice(name.to_bytes()),
                        None => {
                            let _ = write!(out, "Level {}", record.level);
                        }
                    }
                    if self.color {
                        out.extend_from_slice(b"\x1b[0m");
                    }
                }
                Piece::LevelNo => {
                    let _ = write!(out, "{}", record.level);
                }
                Piece::Thread => {
                    let _ = write!(out, "{}", record.thread_id);
                }
                Piece::Logger => self.text(record.logger, out),
                Piece::Message => self.text(record.message, out),
                Piece::File => self.text(record.file, out),
                Piece::Line => {
                    let _ = write!(out, "{}", record.line);
                }
                Piece::Func => self.text(record.func, out),
                // logfmt's rules escape every control, the C1 controls and
                // U+2028 / U+2029 (raw or not): a field never breaks a line.
                Piece::Fields => super::structured::logfmt_fields(record.fields, out),
            }
        }
        out.push(b'\n');
    }

    #[inline]
    fn text(&self, text: &[u8], out: &mut Vec<u8>) {
        if self.raw {
            out.extend_from_slice(text);
        } else {
            escape_into(text, out);
        }
    }
}

/// True for the bytes a line-oriented reader could take for structure:
/// the C0 controls except TAB, and DEL; and the first byte of the UTF-8
/// forms of the C1 controls (0xc2) and of U+2028 / U+2029 (0xe2), which
/// [`escape_into`] looks at more closely.
#[inline]
fn needs_escape(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f || b == 0xc2 || b == 0xe2
}

/// The length of a UTF-8 C1 control (U+0080..U+009F, NEL among them) or
/// line / paragraph separator (U+2028, U+2029) at the start of `text`.
fn unicode_break(text: &[u8]) -> Option<usize> {
    match text {
        [0xc2, 0x80..=0x9f, ..] => Some(2),
        [0xe2, 0x80, 0xa8 | 0xa9, ..] => Some(3),
        _ => None,
    }
}

/// Appends `text` with every control byte (see `needs_escape`) written as
/// `\n`, `\r` or `\xHH`, and the C1 controls and U+2028 / U+2029 as
/// `\u0085`, `\u2028` ..., so `text` can never end the line, for a reader
/// splitting on `\n` or on Unicode line breaks.
pub fn escape_into(text: &[u8], out: &mut Vec<u8>) {
    let mut rest = text;
    while let Some(i) = rest.iter().position(|&b| needs_escape(b)) {
        out.extend_from_slice(&rest[..i]);
        if rest[i] >= 0xc2 {
            match unicode_break(&rest[i..]) {
                Some(n) => {
                    let c = std::str::from_utf8(&rest[i..i + n])
                        .ok()
                        .and_then(|s| s.chars().next())
                        .map_or(0, u32::from);
                    let _ = write!(out, "\\u{c:04x}");
                    rest = &rest[i + n..];
                }
                None => {
                    out.push(rest[i]);
                    rest = &rest[i + 1..];
                }
            }
            continue;
        }
        match rest[i] {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
        }
        rest = &rest[i + 1..];
    }
    out.extend_from_slice(rest);
}

/// At least as many bytes as any one-record format of the library writes
/// for `record` when it writes each text (logger, message, file, function)
/// and field once, escaped (at most 6 bytes for one), with keys and
/// punctuation around them: JSON, logfmt, syslog, journald. What a sink
/// reserves (fallibly) before it formats a record.
pub fn max_record_len(record: &RecordView) -> usize {
    1024 + 6 * (record.logger.len() + record.message.len() + record.file.len() + record.func.len())
        + max_fields_len(record)
}

/// [`max_record_len`]'s part for the fields.
fn max_fields_len(record: &RecordView) -> usize {
    let fields = record.fields;
    (0..fields.count())
        .map(|i| {
            let f = fields.field(i);
            let value = match f.value {
                crate::fields::Value::Str(s) => 6 * s.len(),
                _ => 0,
            };
            6 * f.key.len() + value + 350
        })
        .sum()
}

/// Local time formatting, with the date-time part cached per second.
///
/// Its text is rewritten in place, so once it has room (always, when made
/// by [`LocalClock::new`]) a new second allocates nothing. Made
/// [`frozen`](LocalClock::freeze) (the crash flush, in a signal handler),
/// it computes a new second from the UTC offset last read, without
/// `localtime_r` (which takes glibc's time zone lock).
#[derive(Default)]
pub struct LocalClock {
    second: Option<i64>,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    prefix: String,
    /// `+HH:MM` of `second`.
    offset: String,
    /// The UTC offset of `second`, in seconds.
    offset_secs: i64,
    /// No more `localtime_r`: the offset stays as last read.
    frozen: bool,
}

/// Room kept in each of [`LocalClock`]'s strings.
const CLOCK_ROOM: usize = 32;

impl LocalClock {
    /// A clock with room for its text and the UTC offset of now read.
    pub fn new() -> LocalClock {
        let mut clock = LocalClock {
            second: None,
            prefix: String::with_capacity(CLOCK_ROOM),
            offset: String::with_capacity(CLOCK_ROOM),
            offset_secs: 0,
            frozen: false,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        clock.set_second(now);
        clock
    }

    /// From now on, computes each new second with the offset last read: no
    /// lock, no allocation when the clock has room (async-signal-safe).
    pub fn freeze(&mut self) {
        self.frozen = true;
    }

    /// Appends `2026-11-24T21:31:05.123+01:00` for `ns` since the epoch.
    pub fn write_iso8601(&mut self, ns: i64, out: &mut Vec<u8>) {
        let second = ns.div_euclid(1_000_000_000);
        let millis = ns.rem_euclid(1_000_000_000) / 1_000_000;
        if self.second != Some(second) {
            self.set_second(second);
        }
        out.extend_from_slice(self.prefix.as_bytes());
        let _ = write!(out, ".{millis:03}");
        out.extend_from_slice(self.offset.as_bytes());
    }

    /// Appends `2026-11-24T21:31:05.123456+01:00` (RFC 3339, local time,
    /// microseconds) for `ns` since the epoch.
    pub fn write_rfc3339_micros(&mut self, ns: i64, out: &mut Vec<u8>) {
        let second = ns.div_euclid(1_000_000_000);
        let micros = ns.rem_euclid(1_000_000_000) / 1_000;
        if self.second != Some(second) {
            self.set_second(second);
        }
        out.extend_from_slice(self.prefix.as_bytes());
        let _ = write!(out, ".{micros:06}");
        out.extend_from_slice(self.offset.as_bytes());
    }

    fn set_second(&mut self, second: i64) {
        use std::fmt::Write as _;
        self.second = Some(second);
        self.prefix.clear();
        if self.frozen {
            let (y, mo, d, h, mi, sec) = civil(second + self.offset_secs);
            let _ = write!(self.prefix, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{sec:02}");
            return;
        }
        let t = second as libc::time_t;
        // SAFETY: an all-zero `tm` is a valid value to be overwritten.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is
        // thread-safe.
        let ok = !unsafe { libc::localtime_r(&t, &mut tm) }.is_null();
        self.offset.clear();
        if !ok {
            let _ = write!(self.prefix, "@{second}");
            self.offset_secs = 0;
            return;
        }
        let _ = write!(
            self.prefix,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            tm.tm_year as i64 + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        );
        let off = tm.tm_gmtoff;
        self.offset_secs = off;
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.abs();
        let _ = write!(
            self.offset,
            "{sign}{:02}:{:02}",
            off / 3600,
            (off % 3600) / 60
        );
    }
}

/// Year, month, day, hour, minute, second of `t` seconds since the epoch
/// (proleptic Gregorian; days from the civil-date algorithm of Howard
/// Hinnant's `civil_from_days`).
fn civil(t: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_line_len_bounds_every_style_and_repeated_pieces() {
        // Control bytes take 4 bytes each escaped; the message 4 times over
        // goes past a bound that counts each text once.
        let nasty: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let r = LogRecord::new(5, &nasty, &[1u8; 5000], 0);
        for (pattern, style) in [
            (
                "{message}{message}{message}{message}{logger} {fields}",
                Style::Text,
            ),
            (DEFAULT_PATTERN, Style::Json),
            (DEFAULT_PATTERN, Style::Logfmt),
        ] {
            let mut p = Pattern::parse(pattern).unwrap();
            p.style = style;
            let view: RecordView = (&r).into();
            let mut out = Vec::new();
            p.write_line(&mut LocalClock::default(), &view, &mut out);
            assert!(out.len() <= p.max_line_len(&view), "{pattern} {style:?}");
        }
    }

    #[test]
    fn a_frozen_clock_writes_what_localtime_wrote() {
        // Seconds across years, leap days and centuries; the offset is the
        // one localtime_r reads for each, so both paths must agree.
        for t in [
            0i64,
            951_782_400,   // 2000-02-29
            1_700_000_000, // 2023-11-14
            4_107_542_400, // 2100-03-01
            -86_400,
        ] {
            let mut live = LocalClock::new();
            let mut out = Vec::new();
            live.write_iso8601(t * 1_000_000_000, &mut out);
            let mut frozen = LocalClock::new();
            frozen.offset_secs = live.offset_secs;
            frozen.offset = live.offset.clone();
            frozen.freeze();
            let mut cut = Vec::new();
            frozen.write_iso8601(t * 1_000_000_000, &mut cut);
            assert_eq!(
                String::from_utf8_lossy(&cut),
                String::from_utf8_lossy(&out),
                "{t}"
            );
        }
    }

    fn record(msg: &str) -> LogRecord {
        LogRecord::new(30, b"app", msg.as_bytes(), 0)
    }

    #[test]
    fn pattern_fields_and_escapes() {
        let p = Pattern::parse("{{{level}}} {levelno} {logger}|{message}").unwrap();
        let mut out = Vec::new();
        let r = record("hi");
        p.write_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        assert_eq!(out, b"{WARNING} 30 app|hi\n");
        assert!(Pattern::parse("{nope}").is_err());
        assert!(Pattern::parse("{time").is_err());
        assert!(Pattern::parse("a } b").is_err());
        assert!(Pattern::parse("{message}\n2026 CRITICAL {logger}").is_err());
        assert!(Pattern::parse("{message}\u{2028}").is_err());
        assert!(Pattern::parse("{message}\tok").is_ok());
    }

    #[test]
    fn fields_in_a_text_line_cannot_break_it_for_unicode_readers() {
        use crate::fields::{Field, Value};
        use crate::record::Source;
        let value = "x\u{2028}2026-12-05 CRITICAL app: forged\u{85}y\u{2029}z\u{9b}";
        let given = [Field {
            key: b"user",
            value: Value::Str(value.as_bytes()),
        }];
        let r = LogRecord::with(20, b"app", b"m", 0, &Source::default(), &given);
        let mut out = Vec::new();
        let p = Pattern::parse("{message} [{fields}]").unwrap();
        p.write_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "m [user=\"x\\xe2\\x80\\xa82026-12-05 CRITICAL app: forged\\xc2\\x85y\\xe2\\x80\\xa9z\\xc2\\x9b\"]\n"
        );
        // `raw` writes the fields by logfmt's rules too, as documented.
        let mut raw = Vec::new();
        let p = Pattern::parse("{message} [{fields}]").unwrap().raw(true);
        p.write_line(&mut LocalClock::default(), &(&r).into(), &mut raw);
        assert_eq!(raw, line.as_bytes());
    }

    #[test]
    fn time_is_iso8601_with_millis() {
        let mut out = Vec::new();
        LocalClock::default().write_iso8601(1_700_000_000_123_456_789, &mut out);
        let s = String::from_utf8(out).unwrap();
        // 2023-11-14T..:..:20.123+HH:MM in any time zone.
        assert_eq!(s.len(), "2023-11-14T22:13:20.123+00:00".len(), "{s}");
        assert_eq!(&s[19..23], ".123");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[10..11], "T");
    }

    #[test]
    fn control_bytes_are_escaped_unless_raw() {
        let r = LogRecord::new(
            50,
            b"a\nb",
            b"x\n2026 CRITICAL forged\r\x1b[31m\x7f\tok\xff",
            0,
        );
        let p = Pattern::parse("{logger}: {message}").unwrap();
        let mut out = Vec::new();
        p.write_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        assert_eq!(
            out,
            b"a\\nb: x\\n2026 CRITICAL forged\\r\\x1b[31m\\x7f\tok\xff\n".to_vec()
        );
        let mut out = Vec::new();
        p.raw(true)
            .write_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 3);
    }

    #[test]
    fn levels_are_coloured_only_when_asked() {
        let r = record("m");
        let p = Pattern::parse("{level} {message}").unwrap();
        let mut out = Vec::new();
        p.clone()
            .color(true)
            .write_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        assert_eq!(out, b"\x1b[33mWARNING\x1b[0m m\n");
        let mut out = Vec::new();
        p.write_line(&mut LocalClock::default(), &(&r).into(), &mut out);
        assert_eq!(out, b"WARNING m\n");
        assert!(!color_wanted(1, Some(2)) && color_wanted(2, None));
        // A pipe is not a terminal.
        let mut fds = [0; 2];
        // SAFETY: a valid array for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        assert!(!color_wanted(0, Some(fds[1])));
        // SAFETY: our own fds.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }

    #[test]
    fn rfc3339_has_microseconds() {
        let mut out = Vec::new();
        LocalClock::default().write_rfc3339_micros(1_700_000_000_123_456_789, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(&s[19..26], ".123456", "{s}");
    }

    #[test]
    fn every_byte_value_stays_on_one_line() {
        let all: Vec<u8> = (0..=255u8).collect();
        let mut out = Vec::new();
        escape_into(&all, &mut out);
        assert!(!out.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f));
        // 30 bytes become `\xHH` (3 more each), `\n` and `\r` one more each;
        // 0xc2 and 0xe2 alone are not line breaks and stay.
        assert_eq!(out.len(), 256 + 30 * 3 + 2);
        let mut out = Vec::new();
        escape_into(
            "a\u{85}b\u{9b}c\u{2028}d\u{2029}e\u{e9}\u{2030}".as_bytes(),
            &mut out,
        );
        assert_eq!(
            out,
            "a\\u0085b\\u009bc\\u2028d\\u2029e\u{e9}\u{2030}".as_bytes()
        );
    }
}
