//! Syslog messages: a record becomes one RFC 5424 or RFC 3164 message
//! (without transport framing; [`super::net`] frames and delivers it).
//!
//! RFC 5424:
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [ql@32473 logger="app.db" tid="42" file="x.c" line="12" func="main"][fields@32473 k="v"] MSG
//! ```
//!
//! * TIMESTAMP: RFC 3339, local time with microseconds and the UTC offset.
//! * STRUCTURED-DATA: the element `ql@32473` carries the logger name, the
//!   thread id and the source location (`file`, `line`, `func`, only when
//!   known); `fields@32473` the record's fields, in order, one PARAM each
//!   (left out when there are none). 32473 is the private enterprise number
//!   RFC 5612 reserves for documentation. Integers and bools are written as
//!   text (`-5`, `18446744073709551615`, `true`), doubles in Rust's
//!   shortest round-trip form (`0.1`, `1e300`, `NaN`, `inf`, `-inf`).
//! * PARAM-VALUE: each byte sequence that is not valid UTF-8 becomes U+FFFD
//!   (RFC 5424 requires UTF-8 there); control characters are escaped as in
//!   the library's text lines (`\n`, `\r`, `\xHH`, `\u0085`, `\u2028`); then
//!   `"`, `\` and `]` are escaped with a backslash (RFC 5424 §6.3.3).
//! * MSG: the message, BOM-less, its control characters escaped as in text
//!   lines (other bytes as they are, RFC 5424's MSG-ANY).
//!
//! RFC 3164 (for old daemons and `/dev/log`):
//!
//! ```text
//! <PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG logger=app.db k=v k2="two words"
//! ```
//!
//! * local time, no year, no fraction; HOSTNAME is left out on a unix
//!   socket (as glibc's `syslog(3)` does: the local daemon adds its own).
//! * MSG: the message, control characters escaped, then ` logger=NAME` and
//!   each field as ` key=value` in logfmt quoting (no source location); a
//!   field named `logger` or starting with `_` gets one more `_` in front,
//!   as in the logfmt line format.
//!
//! Severity from the level ([`severity`]); PRI = facility * 8 + severity.
//! A message longer than the maximum size is cut at a character boundary.

use std::io::Write;

use super::format::{escape_into, LocalClock, RecordView};
use super::structured::logfmt_value_into;
use crate::fields::{self, Value};

/// The SD-ID of the record's own data (logger, thread, source location).
pub const SD_ID_RECORD: &str = "ql@32473";
/// The SD-ID of the record's fields.
pub const SD_ID_FIELDS: &str = "fields@32473";

/// The syslog severity of a level, for syslog messages and journald's
/// `PRIORITY` alike: below 20 (DEBUG 10) 7 debug; 20..24
/// (INFO) 6 info; 25..29 5 notice; 30..39 (WARNING) 4 warning; 40..49
/// (ERROR) 3 err; 50..59 (CRITICAL) 2 crit; 60..69 1 alert; 70 and up 0
/// emerg.
pub fn severity(level: i32) -> u8 {
    match level {
        i32::MIN..=19 => 7,
        20..=24 => 6,
        25..=29 => 5,
        30..=39 => 4,
        40..=49 => 3,
        50..=59 => 2,
        60..=69 => 1,
        _ => 0,
    }
}

/// The message format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rfc {
    /// RFC 5424.
    R5424,
    /// RFC 3164 (BSD syslog).
    R3164,
}

/// How records become messages.
#[derive(Debug, Clone)]
pub struct SyslogFormat {
    /// The format.
    pub rfc: Rfc,
    /// 0..=23.
    pub facility: u8,
    /// Printable ASCII, no space, 1..=255 bytes (checked by [`header_field`]).
    pub hostname: String,
    /// Printable ASCII, no space, 1..=48 bytes.
    pub app_name: String,
    /// The process id, as text.
    pub procid: String,
    /// Printable ASCII, no space, 1..=32 bytes, or `-`.
    pub msgid: String,
    /// RFC 3164 only: leave the hostname out (unix sockets).
    pub omit_hostname: bool,
    /// The longest message, in bytes (longer ones are cut).
    pub max_len: usize,
}

/// True for a valid RFC 5424 header field of at most `max` bytes:
/// printable US-ASCII (33..=126).
pub fn header_field(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len()) && text.bytes().all(|b| (33..=126).contains(&b))
}

/// A header field made valid: bytes outside printable ASCII become `_`,
/// cut to `max` bytes, `-` when empty.
pub fn sanitize_field(text: &[u8], max: usize) -> String {
    let s: String = text
        .iter()
        .take(max)
        .map(|&b| {
            if (33..=126).contains(&b) {
                b as char
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// This host's name (`gethostname`), made a valid header field.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok {
        sanitize_field(&buf[..len], 255)
    } else {
        "-".into()
    }
}

/// The program's short name ([`super::sys::program_name`]), made a valid
/// APP-NAME.
pub fn program_name() -> String {
    sanitize_field(&super::sys::program_name(), 48)
}

/// Appends a PARAM-VALUE (see the module docs).
pub fn sd_value_into(text: &[u8], out: &mut Vec<u8>) {
    let mut escaped = Vec::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        escape_into(chunk.valid().as_bytes(), &mut escaped);
        if !chunk.invalid().is_empty() {
            escaped.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
    for &b in &escaped {
        if matches!(b, b'"' | b'\\' | b']') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Appends a field's value as text (unescaped), for [`sd_value_into`] or
/// logfmt.
fn value_text(value: Value, out: &mut Vec<u8>) {
    match value {
        Value::Str(s) => out.extend_from_slice(s),
        Value::Int(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Uint(v) => {
            let _ = write!(out, "{v}");
        }
        Value::Double(v) => {
            let _ = write!(out, "{v:?}");
        }
        Value::Bool(v) => out.extend_from_slice(if v { b"true" } else { b"false" }),
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends `Mmm dd hh:mm:ss` (local time) for `ns` since the epoch.
fn bsd_time_into(ns: i64, out: &mut Vec<u8>) {
    let t = ns.div_euclid(1_000_000_000) as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        out.extend_from_slice(b"Jan  1 00:00:00");
        return;
    }
    let _ = write!(
        out,
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
}

/// Where the parts of an RFC 5424 message end (offsets in the buffer).
struct Ends {
    /// After `MSGID `: where STRUCTURED-DATA starts.
    header_end: usize,
    /// After the `[ql@32473 ...]` element.
    ql_end: usize,
    /// After STRUCTURED-DATA (the fields element, if any).
    sd_end: usize,
}

impl SyslogFormat {
    /// Appends the record's message (no framing) to `out`, cut to
    /// `max_len` bytes.
    pub fn write(&self, clock: &mut LocalClock, r: &RecordView, out: &mut Vec<u8>) {
        let start = out.len();
        let pri = u32::from(self.facility) * 8 + u32::from(severity(r.level));
        match self.rfc {
            Rfc::R5424 => {
                let ends = self.write_5424(pri, clock, r, out);
                if out.len() - start > self.max_len && ends.sd_end > start + self.max_len {
                    // A cut inside STRUCTURED-DATA would leave it
                    // unterminated (invalid RFC 5424): leave out the fields
                    // element, or both elements ("-"), whichever makes the
                    // rest fit; the message is then cut as usual.
                    let (keep, nil) = if ends.ql_end <= start + self.max_len {
                        (ends.ql_end, false)
                    } else {
                        (ends.header_end, true)
                    };
                    out.truncate(keep);
                    if nil {
                        out.push(b'-');
                    }
                    if !r.message.is_empty() {
                        out.push(b' ');
                        escape_into(r.message, out);
                    }
                }
            }
            Rfc::R3164 => self.write_3164(pri, r, out),
        }
        if out.len() - start > self.max_len {
            let mut end = start + self.max_len;
            // Cut at a character boundary (never inside a UTF-8 sequence).
            while end > start && (out[end] & 0xc0) == 0x80 {
                end -= 1;
            }
            out.truncate(end);
        }
    }

    fn write_5424(
        &self,
        pri: u32,
        clock: &mut LocalClock,
        r: &RecordView,
        out: &mut Vec<u8>,
    ) -> Ends {
        let _ = write!(out, "<{pri}>1 ");
        clock.write_rfc3339_micros(r.timestamp_ns, out);
        let _ = write!(
            out,
            " {} {} {} {} ",
            self.hostname, self.app_name, self.procid, self.msgid
        );
        let header_end = out.len();
        let _ = write!(out, "[{SD_ID_RECORD} logger=\"");
        sd_value_into(r.logger, out);
        let _ = write!(out, "\" tid=\"{}\"", r.thread_id);
        if !r.file.is_empty() {
            out.extend_from_slice(b" file=\"");
            sd_value_into(r.file, out);
            let _ = write!(out, "\" line=\"{}\"", r.line);
        }
        if !r.func.is_empty() {
            out.extend_from_slice(b" func=\"");
            sd_value_into(r.func, out);
            out.push(b'"');
        }
        out.push(b']');
        let ql_end = out.len();
        if r.fields.count() > 0 {
            let _ = write!(out, "[{SD_ID_FIELDS}");
            let mut text = Vec::new();
            for f in fields::iter(r.fields) {
                out.push(b' ');
                out.extend_from_slice(f.key);
                out.extend_from_slice(b"=\"");
                text.clear();
                value_text(f.value, &mut text);
                sd_value_into(&text, out);
                out.push(b'"');
            }
            out.push(b']');
        }
        let sd_end = out.len();
        if !r.message.is_empty() {
            out.push(b' ');
            escape_into(r.message, out);
        }
        Ends {
            header_end,
            ql_end,
            sd_end,
        }
    }

    fn write_3164(&self, pri: u32, r: &RecordView, out: &mut Vec<u8>) {
        let _ = write!(out, "<{pri}>");
        bsd_time_into(r.timestamp_ns, out);
        out.push(b' ');
        if !self.omit_hostname {
            out.extend_from_slice(self.hostname.as_bytes());
            out.push(b' ');
        }
        let _ = write!(out, "{}[{}]: ", self.app_name, self.procid);
        escape_into(r.message, out);
        out.extend_from_slice(b" logger=");
        logfmt_value_into(r.logger, out);
        let mut text = Vec::new();
        for f in fields::iter(r.fields) {
            out.push(b' ');
            // The logfmt rule of the line formats: a key that is a fixed
            // key (`logger`) or starts with `_` gets one more `_`.
            if f.key == b"logger" || f.key.first() == Some(&b'_') {
                out.push(b'_');
            }
            out.extend_from_slice(f.key);
            out.push(b'=');
            text.clear();
            value_text(f.value, &mut text);
            logfmt_value_into(&text, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Field;

    fn fmt(rfc: Rfc) -> SyslogFormat {
        SyslogFormat {
            rfc,
            facility: 16,
            hostname: "host".into(),
            app_name: "app".into(),
            procid: "77".into(),
            msgid: "-".into(),
            omit_hostname: false,
            max_len: 8192,
        }
    }

    #[test]
    fn a_cut_never_leaves_structured_data_unterminated() {
        use crate::record::{LogRecord, Source};
        let long = vec![b'v'; 3000];
        let given = [Field {
            key: b"big",
            value: crate::fields::Value::Str(&long),
        }];
        let src = Source {
            file: b"a.c",
            line: 3,
            func: b"f",
        };
        let r = LogRecord::with(20, b"app", b"the message", 0, &src, &given);
        let mut f = fmt(Rfc::R5424);
        f.max_len = 1024;
        let mut out = Vec::new();
        f.write(&mut LocalClock::default(), &(&r).into(), &mut out);
        let s = String::from_utf8(out).unwrap();
        // The fields element did not fit: left out, the rest whole.
        assert!(s.len() <= 1024, "{}", s.len());
        assert!(!s.contains("[fields@"), "{s}");
        assert!(s.ends_with("func=\"f\"] the message"), "{s}");
        // Not even the ql element fits: STRUCTURED-DATA is "-".
        let logger = vec![b'L'; 2000];
        let r = LogRecord::with(20, &logger, b"msg", 0, &src, &given);
        let mut out = Vec::new();
        f.write(&mut LocalClock::default(), &(&r).into(), &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.ends_with(" 77 - - msg"), "{s}");
        // Fits: unchanged.
        f.max_len = 8192;
        let mut out = Vec::new();
        f.write(&mut LocalClock::default(), &(&r).into(), &mut out);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("[fields@32473 big=\""));
    }

    #[test]
    fn severities() {
        let got: Vec<u8> = [0, 10, 19, 20, 25, 30, 40, 50, 60, 70, i32::MAX, i32::MIN]
            .iter()
            .map(|&l| severity(l))
            .collect();
        assert_eq!(got, [7, 7, 7, 6, 5, 4, 3, 2, 1, 0, 0, 7]);
    }

    #[test]
    fn rfc5424_with_fields_and_escapes() {
        let fields = [
            Field {
                key: b"user",
                value: Value::Str(b"a\"b\\c]d\ne\xff"),
            },
            Field {
                key: b"n",
                value: Value::Int(-5),
            },
            Field {
                key: b"u",
                value: Value::Uint(u64::MAX),
            },
            Field {
                key: b"d",
                value: Value::Double(0.1),
            },
            Field {
                key: b"ok",
                value: Value::Bool(true),
            },
        ];
        let r = RecordView {
            level: 40,
            thread_id: 42,
            timestamp_ns: 1_700_000_000_123_456_789,
            logger: b"app.db",
            message: b"disk\nfull",
            file: b"x.c",
            line: 12,
            func: b"main",
            fields: &fields,
        };
        let mut out = Vec::new();
        fmt(Rfc::R5424).write(&mut LocalClock::default(), &r, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("<131>1 2023-11-1"), "{s}");
        let tail = s.split_once(" host ").unwrap().1;
        assert_eq!(
            tail,
            "app 77 - [ql@32473 logger=\"app.db\" tid=\"42\" file=\"x.c\" line=\"12\" func=\"main\"]\
             [fields@32473 user=\"a\\\"b\\\\c\\]d\\\\ne\u{fffd}\" n=\"-5\" u=\"18446744073709551615\" d=\"0.1\" ok=\"true\"] disk\\nfull"
        );
    }

    #[test]
    fn rfc3164_and_truncation() {
        let fields = [
            Field {
                key: b"k",
                value: Value::Str(b"two words"),
            },
            Field {
                key: b"logger",
                value: Value::Bool(false),
            },
        ];
        let r = RecordView {
            level: 20,
            thread_id: 1,
            timestamp_ns: 0,
            logger: b"app",
            message: "é\r".as_bytes(),
            file: b"",
            line: 0,
            func: b"",
            fields: &fields,
        };
        let mut f = fmt(Rfc::R3164);
        let mut out = Vec::new();
        f.write(&mut LocalClock::default(), &r, &mut out);
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("<134>"), "{s}");
        assert_eq!(&s[8..9], " ");
        assert!(
            s.ends_with(" host app[77]: é\\r logger=app k=\"two words\" _logger=false"),
            "{s}"
        );
        f.omit_hostname = true;
        let mut out = Vec::new();
        f.write(&mut LocalClock::default(), &r, &mut out);
        assert!(!String::from_utf8(out).unwrap().contains("host"));
        // Cut inside "é": the whole character goes.
        f.max_len = 5 + 15 + 1 + 9 + 1;
        let mut out = Vec::new();
        f.write(&mut LocalClock::default(), &r, &mut out);
        assert!(std::str::from_utf8(&out).is_ok());
        assert_eq!(out.len(), f.max_len - 1);
    }

    #[test]
    fn header_fields() {
        assert!(header_field("app", 48));
        assert!(!header_field("a b", 48));
        assert!(!header_field("", 48));
        assert_eq!(sanitize_field(b"a b\xff", 48), "a_b_");
        assert_eq!(sanitize_field(b"", 48), "-");
        assert!(header_field(&host_name(), 255));
        assert!(header_field(&program_name(), 48));
    }
}
