//! The journald sink: each record becomes one journal entry, sent to
//! systemd-journald's native socket as one datagram, without libsystemd.
//!
//! ```text
//! handle ─▶ encode (FIELD=value / binary form) ─▶ Frames (one entry each)
//!                                                   │
//!     send(2) on a connected AF_UNIX datagram socket ◀┘
//!       │ EMSGSIZE / ENOBUFS: too big for a datagram
//!       ▼
//!     sealed memfd passed with SCM_RIGHTS in an empty datagram
//! ```
//!
//! The protocol (systemd's "Native Journal Protocol"): an entry is a run of
//! fields, each either `NAME=value\n` (a value without a newline) or
//! `NAME\n` + the value's length as a 64-bit little-endian integer + the
//! value + `\n` (any bytes). A datagram holds one entry; an entry too big for
//! a datagram goes in a memfd sealed against every change, whose fd is passed
//! in an otherwise empty datagram.
//!
//! Accounting, as every sink: `received == written + lost + pending`. An
//! entry counts as written when the kernel took its datagram (journald
//! reads it later; one that dies with datagrams still queued loses them,
//! which no sender can know). Entries journald cannot take now (not
//! running, restarting, its queue full past the write timeout) are held
//! for a retry within `retry_bytes`, the oldest dropped (counted lost) past
//! it; a final flush counts what it still cannot send lost. See
//! `docs/journald.md`.

use std::ffi::OsStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::format::RecordView;
use super::frames::{Counters, Frames};
use super::syslog::severity;
use super::{sys, Sink};
use crate::fields::{self, Value};

/// Where journald listens for native entries.
pub const DEFAULT_SOCKET: &str = "/run/systemd/journal/socket";

/// Bytes of entries held for a retry by default (as the file sinks).
pub const DEFAULT_RETRY_BYTES: usize = super::RETRY_LIMIT;

/// The biggest entry sent; a bigger one is counted lost (`EMSGSIZE`).
/// journald takes entries of up to 768 MiB through a memfd; the library's
/// records stay far below this bound (a message is at most 1 MiB, each of
/// at most 128 fields too).
pub const MAX_ENTRY: usize = 256 << 20;

/// The biggest entry sent as a datagram; a bigger one goes through a memfd
/// at once (so does any the kernel refuses with `EMSGSIZE` or `ENOBUFS`).
/// A fixed bound makes the path an entry takes the same on every machine
/// (the kernel's datagram limit follows `net.core.wmem_max`).
pub const DATAGRAM_MAX: usize = 128 << 10;

/// While failing, `handle` tries again at most this often (and every batch
/// end does): a dead or stalled journald costs one failed `send` per
/// interval, not one per record. When journald was gone (`ENOENT`,
/// `ECONNREFUSED`), `handle` also tries as soon as a new socket is at the
/// path (a `stat` per record tells): a restarted journald gets the records
/// logged after it is back at once.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(200);

/// The prefix a record field's name gets when its mapped name would be
/// invalid (it starts with a digit or `_`) or one the handler sets itself.
pub const FIELD_PREFIX: &[u8] = b"F_";

/// The journal fields the handler sets itself; a record field mapping to
/// one of them gets [`FIELD_PREFIX`].
pub const OWN_FIELDS: [&[u8]; 10] = [
    b"MESSAGE",
    b"PRIORITY",
    b"SYSLOG_IDENTIFIER",
    b"SYSLOG_FACILITY",
    b"CODE_FILE",
    b"CODE_LINE",
    b"CODE_FUNC",
    b"TID",
    b"QL_LOGGER",
    b"QL_TIME_USEC",
];

/// How the sink is set up.
#[derive(Debug, Clone)]
pub struct JournaldOptions {
    /// The native socket's path.
    pub socket: std::path::PathBuf,
    /// `SYSLOG_IDENTIFIER`: `None` for the program's short name, an empty
    /// value for none at all.
    pub identifier: Option<Vec<u8>>,
    /// `SYSLOG_FACILITY` (0..=23), when set.
    pub facility: Option<u8>,
    /// How long a send may wait for journald to take a datagram, without
    /// progress, before the entries are held (`EAGAIN`).
    pub stall: Duration,
    /// Bytes of entries held for a retry while journald cannot take them.
    pub retry_bytes: usize,
}

impl Default for JournaldOptions {
    fn default() -> Self {
        JournaldOptions {
            socket: DEFAULT_SOCKET.into(),
            identifier: None,
            facility: None,
            stall: super::DEFAULT_STALL,
            retry_bytes: DEFAULT_RETRY_BYTES,
        }
    }
}

/// Why options were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsError {
    /// The socket path is empty, holds a NUL, or is longer than a unix
    /// socket address takes (107 bytes).
    SocketPath,
    /// The facility is over 23.
    Facility,
    /// The identifier holds a newline (it would end the field) or is longer
    /// than 256 bytes.
    Identifier,
}

/// The journal field name of a record field's key (1..=32 bytes of
/// `[A-Za-z0-9_.-]`): upper-cased, `.` and `-` made `_`; prefixed with
/// [`FIELD_PREFIX`] when that does not start with a letter (journald
/// refuses names starting with a digit, and those starting with `_` are
/// its trusted fields) or is one of [`OWN_FIELDS`]. Returns the length
/// written to `out` (at most 34 bytes, within journald's 64).
pub fn field_name(key: &[u8], out: &mut [u8; 64]) -> usize {
    let key = &key[..key.len().min(fields::MAX_KEY)];
    let mut mapped = [0u8; fields::MAX_KEY];
    for (m, &b) in mapped.iter_mut().zip(key) {
        *m = match b {
            b'.' | b'-' => b'_',
            b => b.to_ascii_uppercase(),
        };
    }
    let mapped = &mapped[..key.len()];
    let prefixed = !mapped.first().is_some_and(u8::is_ascii_uppercase)
        || mapped
            .iter()
            .any(|&b| !(b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'))
        || OWN_FIELDS.contains(&mapped);
    let mut n = 0;
    if prefixed {
        out[..FIELD_PREFIX.len()].copy_from_slice(FIELD_PREFIX);
        n = FIELD_PREFIX.len();
    }
    out[n..n + mapped.len()].copy_from_slice(mapped);
    n + mapped.len()
}

/// Appends one field: `NAME=value\n`, or the binary form when the value
/// holds a newline.
pub fn put_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    if value.contains(&b'\n') {
        out.push(b'\n');
        out.extend_from_slice(&(value.len() as u64).to_le_bytes());
    } else {
        out.push(b'=');
    }
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Appends a field whose value is written by `fill` (numbers: never a
/// newline).
fn put_with(out: &mut Vec<u8>, name: &[u8], fill: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(name);
    out.push(b'=');
    fill(out);
    out.push(b'\n');
}

fn put_num(out: &mut Vec<u8>, name: &[u8], v: impl std::fmt::Display) {
    use std::io::Write;
    put_with(out, name, |o| {
        let _ = write!(o, "{v}");
    });
}

/// Appends a record field's value as text: integers in decimal, doubles as
/// Rust's shortest round-trip form (`0.1`, `2.0`, `1e300`, `NaN`, `inf`,
/// `-inf`), booleans `true` / `false`, strings as their bytes.
fn put_value(out: &mut Vec<u8>, name: &[u8], value: Value) {
    use std::io::Write;
    match value {
        Value::Str(s) => put_field(out, name, s),
        Value::Int(i) => put_num(out, name, i),
        Value::Uint(u) => put_num(out, name, u),
        Value::Double(d) => put_with(out, name, |o| {
            let _ = write!(o, "{d:?}");
        }),
        Value::Bool(b) => put_field(out, name, if b { b"true" } else { b"false" }),
    }
}

/// What is the same in every entry.
#[derive(Debug, Clone)]
struct Fixed {
    identifier: Vec<u8>,
    facility: Option<u8>,
}

/// Appends the entry of `record`.
fn encode(fixed: &Fixed, record: &RecordView, out: &mut Vec<u8>) {
    put_field(out, b"MESSAGE", record.message);
    put_num(out, b"PRIORITY", severity(record.level));
    if !fixed.identifier.is_empty() {
        put_field(out, b"SYSLOG_IDENTIFIER", &fixed.identifier);
    }
    if let Some(f) = fixed.facility {
        put_num(out, b"SYSLOG_FACILITY", f);
    }
    put_field(out, b"QL_LOGGER", record.logger);
    put_num(out, b"TID", record.thread_id);
    put_num(out, b"QL_TIME_USEC", record.timestamp_ns.div_euclid(1000));
    if !record.file.is_empty() {
        put_field(out, b"CODE_FILE", record.file);
    }
    if record.line > 0 {
        put_num(out, b"CODE_LINE", record.line);
    }
    if !record.func.is_empty() {
        put_field(out, b"CODE_FUNC", record.func);
    }
    let mut name = [0u8; 64];
    for f in fields::iter(record.fields) {
        let n = field_name(f.key, &mut name);
        put_value(out, &name[..n], f.value);
    }
}

/// Why an entry was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// journald cannot take entries now (gone, restarting, full): the
    /// entry may go later.
    Later(i32),
    /// This entry can never go (too big, no memfd): it is dropped.
    Never(i32),
}

/// The socket: connected to journald's path, made again when journald
/// went away.
struct Conn {
    addr: libc::sockaddr_un,
    addr_len: libc::socklen_t,
    fd: Option<OwnedFd>,
    /// Entries that went through a memfd.
    memfd_sends: u64,
}

fn errno_is_gone(e: i32) -> bool {
    matches!(
        e,
        libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET | libc::EPIPE | libc::ENOENT
    )
}

impl Conn {
    fn new(path: &Path) -> Result<Conn, OptionsError> {
        let bytes = path.as_os_str().as_bytes();
        // SAFETY: an all-zero sockaddr_un is valid.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        if bytes.is_empty() || bytes.contains(&0) || bytes.len() >= addr.sun_path.len() {
            return Err(OptionsError::SocketPath);
        }
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (d, &s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = s as libc::c_char;
        }
        let addr_len = (std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1) as u32;
        Ok(Conn {
            addr,
            addr_len,
            fd: None,
            memfd_sends: 0,
        })
    }

    /// The connected socket, made now if needed.
    fn fd(&mut self) -> Result<RawFd, i32> {
        if let Some(fd) = &self.fd {
            return Ok(fd.as_raw_fd());
        }
        // SAFETY: plain socket call.
        let raw = unsafe {
            libc::socket(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(sys::errno());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // A bigger send buffer lets bigger entries go as one datagram (the
        // kernel caps it at net.core.wmem_max), as sd_journal_send does.
        let size: libc::c_int = 8 << 20;
        // SAFETY: a valid int option.
        unsafe {
            libc::setsockopt(
                raw,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        // SAFETY: a valid address of the given length.
        let r = unsafe {
            libc::connect(
                raw,
                (&self.addr as *const libc::sockaddr_un).cast(),
                self.addr_len,
            )
        };
        if r != 0 {
            return Err(sys::errno());
        }
        self.fd = Some(fd);
        Ok(raw)
    }

    /// Sends one entry, waiting for room up to `deadline`; reconnects once
    /// when journald went away (restarted: a new socket at the path).
    fn send(&mut self, entry: &[u8], deadline: Instant) -> Result<(), Failure> {
        if entry.len() > MAX_ENTRY {
            return Err(Failure::Never(libc::EMSGSIZE));
        }
        if entry.len() > DATAGRAM_MAX {
            return self.send_memfd(entry, deadline);
        }
        let mut reconnected = false;
        loop {
            let r = self.fd().and_then(|fd| {
                // SAFETY: `entry` is valid for its length.
                let n = unsafe {
                    libc::send(
                        fd,
                        entry.as_ptr().cast(),
                        entry.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(sys::errno())
                } else {
                    Ok(())
                }
            });
            match r {
                Ok(()) => return Ok(()),
                Err(libc::EINTR) => {}
                Err(libc::EMSGSIZE) | Err(libc::ENOBUFS) => {
                    return self.send_memfd(entry, deadline)
                }
                Err(e) => self.after_failure(e, deadline, &mut reconnected)?,
            }
        }
    }

    /// Handles a failed send: waits for room on `EAGAIN`, reconnects once
    /// when journald is gone; `Err` when the entry cannot go now.
    fn after_failure(
        &mut self,
        e: i32,
        deadline: Instant,
        reconnected: &mut bool,
    ) -> Result<(), Failure> {
        if e == libc::EAGAIN || e == libc::EWOULDBLOCK {
            let fd = self.fd().map_err(Failure::Later)?;
            return match sys::wait_writable(fd, deadline) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Failure::Later(libc::EAGAIN)),
                Err(e) => Err(Failure::Later(e)),
            };
        }
        // The socket is made again: a restarted journald has a new one at
        // the path, and a failed connect leaves nothing to keep.
        self.fd = None;
        if errno_is_gone(e) && !*reconnected {
            *reconnected = true;
            return Ok(());
        }
        Err(Failure::Later(e))
    }

    /// Sends an entry too big for a datagram as a sealed memfd.
    fn send_memfd(&mut self, entry: &[u8], deadline: Instant) -> Result<(), Failure> {
        let memfd = sealed_memfd(entry).map_err(Failure::Never)?;
        let mut reconnected = false;
        loop {
            let r = self.fd().and_then(|fd| send_fd(fd, memfd.as_raw_fd()));
            match r {
                Ok(()) => {
                    self.memfd_sends += 1;
                    return Ok(());
                }
                Err(libc::EINTR) => {}
                Err(e) => self.after_failure(e, deadline, &mut reconnected)?,
            }
        }
    }
}

/// A memfd holding `data`, sealed against any change (journald takes only
/// sealed memfds without copying them).
fn sealed_memfd(data: &[u8]) -> Result<OwnedFd, i32> {
    // SAFETY: a valid C string and flags.
    let raw = unsafe {
        libc::memfd_create(
            c"ql-journal-entry".as_ptr(),
            libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(sys::errno());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut rest = data;
    while !rest.is_empty() {
        match sys::write_once(raw, rest) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => rest = &rest[n..],
            Err(e) => return Err(e),
        }
    }
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
    // SAFETY: plain fcntl on our fd.
    if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals) } != 0 {
        return Err(sys::errno());
    }
    Ok(fd)
}

/// Sends `passed` over `sock` with `SCM_RIGHTS`, in an empty datagram.
fn send_fd(sock: RawFd, passed: RawFd) -> Result<(), i32> {
    // Room for one cmsghdr and one int, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    debug_assert!(space <= std::mem::size_of_val(&control));
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points to `space` bytes, enough for one cmsg
    // holding one int; CMSG_* compute inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), passed);
    }
    // SAFETY: a valid msghdr with no iovec and a valid control buffer.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(sys::errno())
    } else {
        Ok(())
    }
}

/// Why entries are being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// In `handle`: a failure is returned for the record being handled.
    Handle,
    /// At the end of a batch: failed entries are kept for a retry.
    Batch,
    /// A flush: what cannot be sent now is counted lost.
    Final,
}

/// The journald sink.
pub struct JournaldSink {
    fixed: Fixed,
    conn: Conn,
    stall: Duration,
    retry_bytes: usize,
    frames: Frames,
    counters: Arc<Counters>,
    /// The last send failed for a reason that may pass: records are held
    /// (within `retry_bytes`) and tried again at batch ends and every
    /// [`RETRY_INTERVAL`].
    failing: bool,
    last_try: Instant,
    /// When the last failure said journald is gone: the socket file then
    /// at the path (`None`: no file), to see a new one appear.
    gone_socket: Option<Option<FileId>>,
    /// The last failure waited out the whole stall (`EAGAIN`).
    stalled: bool,
}

/// What tells a new file at a path from the old one: device, inode and
/// change time (a file system may give a new socket the inode number of
/// the one it replaces).
type FileId = (u64, u64, i64, i64);

/// The [`FileId`] of the file at `path`, if any.
fn file_id(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.ctime(), m.ctime_nsec()))
}

impl JournaldSink {
    /// A sink sending to `options.socket`. No connection is made yet:
    /// journald may start later.
    pub fn new(
        options: JournaldOptions,
        counters: Arc<Counters>,
    ) -> Result<JournaldSink, OptionsError> {
        if options.facility.is_some_and(|f| f > 23) {
            return Err(OptionsError::Facility);
        }
        if let Some(id) = &options.identifier {
            if id.contains(&b'\n') || id.len() > 256 {
                return Err(OptionsError::Identifier);
            }
        }
        let conn = Conn::new(&options.socket)?;
        let identifier = options.identifier.unwrap_or_else(sys::program_name);
        Ok(JournaldSink {
            fixed: Fixed {
                identifier,
                facility: options.facility,
            },
            conn,
            stall: options.stall,
            retry_bytes: options.retry_bytes,
            frames: Frames::default(),
            counters,
            failing: false,
            last_try: Instant::now(),
            gone_socket: None,
            stalled: false,
        })
    }

    /// The socket path, as given.
    pub fn socket_path(&self) -> &Path {
        let len = self.conn.addr_len as usize - std::mem::size_of::<libc::sa_family_t>() - 1;
        let bytes: &[u8] = {
            let p = self.conn.addr.sun_path.as_ptr().cast::<u8>();
            // SAFETY: sun_path holds `len` bytes of the path.
            unsafe { std::slice::from_raw_parts(p, len) }
        };
        Path::new(OsStr::from_bytes(bytes))
    }

    /// Entries sent through a memfd so far.
    pub fn memfd_sends(&self) -> u64 {
        self.conn.memfd_sends
    }

    /// Sends what is held; see [`When`].
    fn send_out(&mut self, when: When) -> Result<(), i32> {
        if self.frames.is_empty() {
            return Ok(());
        }
        self.last_try = Instant::now();
        let counters = &*self.counters;
        // After a send that waited out the whole stall, retries only probe
        // (no wait) until journald takes an entry again: a stalled journald
        // costs the listener one `stall`, not one per retry. A flush, the
        // last chance of what is held, waits the whole stall again.
        let first_wait = if self.stalled && when != When::Final {
            Duration::ZERO
        } else {
            self.stall
        };
        let mut deadline = Instant::now() + first_wait;
        let mut dropped = None;
        while let Some(len) = self.frames.head_len() {
            let entry = &self.frames.unwritten()[..len];
            let r = sys::without_write_signals(|| self.conn.send(entry, deadline));
            match r {
                Ok(()) => {
                    self.frames.advance(len, counters);
                    self.stalled = false;
                    deadline = Instant::now() + self.stall;
                }
                Err(Failure::Never(e)) => {
                    self.frames.drop_head(counters);
                    self.note_error(e, when);
                    dropped = Some(e);
                }
                Err(Failure::Later(e)) => {
                    self.failing = true;
                    self.stalled = e == libc::EAGAIN;
                    self.gone_socket = errno_is_gone(e).then(|| file_id(self.socket_path()));
                    self.note_error(e, when);
                    if when == When::Final {
                        self.frames.drop_all(counters);
                    } else {
                        self.frames.trim(self.retry_bytes, counters);
                    }
                    return Err(e);
                }
            }
        }
        self.failing = false;
        dropped.map_or(Ok(()), Err)
    }

    /// While failing: whether `handle` should try to send now.
    fn worth_a_try(&self) -> bool {
        self.last_try.elapsed() >= RETRY_INTERVAL
            || self
                .gone_socket
                .is_some_and(|before| file_id(self.socket_path()) != before)
    }

    fn note_error(&self, e: i32, when: When) {
        let c = &*self.counters;
        Counters::add(&c.write_errors, 1);
        if when != When::Handle {
            Counters::add(&c.deferred_errors, 1);
        }
        c.last_errno.store(e, Ordering::Relaxed);
    }
}

impl Sink for JournaldSink {
    fn handle(&mut self, record: &RecordView) -> Result<(), i32> {
        Counters::add(&self.counters.received, 1);
        // The entry's room, made fallibly (a long record, out of memory):
        // the record is then counted lost, and the process goes on.
        let room = super::format::max_record_len(record) + self.fixed.identifier.len();
        if !self.frames.try_room(room) {
            Counters::add(&self.counters.lost, 1);
            self.counters
                .last_errno
                .store(libc::ENOMEM, Ordering::Relaxed);
            return Err(libc::ENOMEM);
        }
        let fixed = &self.fixed;
        self.frames.push(|buf| encode(fixed, record, buf));
        if self.failing && !self.worth_a_try() {
            self.frames.trim(self.retry_bytes, &self.counters);
            return Ok(());
        }
        self.send_out(When::Handle)
    }

    fn batch_end(&mut self) {
        if !self.frames.is_empty() {
            let _ = self.send_out(When::Batch);
        }
    }

    fn flush(&mut self) {
        let _ = self.send_out(When::Final);
    }
}

impl Drop for JournaldSink {
    /// Whatever is held is sent, or counted lost.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Field;
    use crate::record::LogRecord;

    fn name(key: &str) -> String {
        let mut out = [0u8; 64];
        let n = field_name(key.as_bytes(), &mut out);
        String::from_utf8(out[..n].to_vec()).unwrap()
    }

    #[test]
    fn field_names_are_valid_journal_names() {
        assert_eq!(name("request_id"), "REQUEST_ID");
        assert_eq!(name("http.status-code"), "HTTP_STATUS_CODE");
        assert_eq!(name("Request-Id"), "REQUEST_ID");
        assert_eq!(name("message"), "F_MESSAGE");
        assert_eq!(name("tid"), "F_TID");
        assert_eq!(name("ql.logger"), "F_QL_LOGGER");
        assert_eq!(name("_secret"), "F__SECRET");
        assert_eq!(name(".x"), "F__X");
        assert_eq!(name("9lives"), "F_9LIVES");
        assert_eq!(name("message_id"), "MESSAGE_ID");
        let long = "a".repeat(32);
        assert_eq!(name(&long), long.to_uppercase());
    }

    #[test]
    fn values_with_newlines_use_the_binary_form() {
        let mut out = Vec::new();
        put_field(&mut out, b"A", b"x=y\0z");
        put_field(&mut out, b"B", b"l1\nl2");
        let mut want = b"A=x=y\0z\nB\n".to_vec();
        want.extend_from_slice(&5u64.to_le_bytes());
        want.extend_from_slice(b"l1\nl2\n");
        assert_eq!(out, want);
    }

    #[test]
    fn an_entry_has_every_field() {
        let fields = [
            Field {
                key: b"user.id",
                value: Value::Uint(7),
            },
            Field {
                key: b"ratio",
                value: Value::Double(0.5),
            },
            Field {
                key: b"ok",
                value: Value::Bool(true),
            },
            Field {
                key: b"delta",
                value: Value::Int(-3),
            },
        ];
        let rec = LogRecord::new(40, b"app.db", b"boom", 0);
        let mut view: RecordView = (&rec).into();
        view.fields = &fields;
        view.file = b"x.c";
        view.line = 12;
        view.func = b"main";
        let fixed = Fixed {
            identifier: b"prog".to_vec(),
            facility: Some(16),
        };
        let mut out = Vec::new();
        encode(&fixed, &view, &mut out);
        let text = String::from_utf8(out).unwrap();
        let want = format!(
            "MESSAGE=boom\nPRIORITY=3\nSYSLOG_IDENTIFIER=prog\nSYSLOG_FACILITY=16\n\
             QL_LOGGER=app.db\nTID={}\nQL_TIME_USEC={}\nCODE_FILE=x.c\nCODE_LINE=12\n\
             CODE_FUNC=main\nUSER_ID=7\nRATIO=0.5\nOK=true\nDELTA=-3\n",
            rec.thread_id,
            rec.timestamp_ns / 1000
        );
        assert_eq!(text, want);
    }

    #[test]
    fn bad_options_are_refused() {
        let c = Arc::new(Counters::default());
        let with = |f: &dyn Fn(&mut JournaldOptions)| {
            let mut o = JournaldOptions::default();
            f(&mut o);
            JournaldSink::new(o, Arc::clone(&c)).err()
        };
        assert_eq!(
            with(&|o| o.socket = "".into()),
            Some(OptionsError::SocketPath)
        );
        assert_eq!(
            with(&|o| o.socket = format!("/{}", "x".repeat(120)).into()),
            Some(OptionsError::SocketPath)
        );
        assert_eq!(
            with(&|o| o.facility = Some(24)),
            Some(OptionsError::Facility)
        );
        assert_eq!(
            with(&|o| o.identifier = Some(b"a\nb".to_vec())),
            Some(OptionsError::Identifier)
        );
        assert_eq!(with(&|_| {}), None);
    }

    /// A private datagram "journald": a socket bound in a temp dir.
    fn server(dir: &Path) -> std::os::unix::net::UnixDatagram {
        let s = std::os::unix::net::UnixDatagram::bind(dir.join("socket")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// A private directory, removed when dropped (a failing test too).
    struct TempDir(std::path::PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("ql-jd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    fn sink(dir: &Path, retry_bytes: usize) -> JournaldSink {
        let o = JournaldOptions {
            socket: dir.join("socket"),
            identifier: Some(b"t".to_vec()),
            stall: Duration::from_millis(50),
            retry_bytes,
            ..Default::default()
        };
        JournaldSink::new(o, Arc::default()).unwrap()
    }

    fn balanced(s: &JournaldSink) -> super::super::SinkCounts {
        let c = s.counters.snapshot();
        let received = s.counters.received.load(Ordering::Relaxed);
        assert_eq!(received, c.written + c.lost + c.pending, "{c:?}");
        c
    }

    #[test]
    fn entries_arrive_as_datagrams_and_are_held_while_the_server_is_gone() {
        let dir = tempdir("held");
        let mut s = sink(&dir, 1 << 20);
        // No server yet: held, ENOENT reported.
        let rec = LogRecord::new(20, b"a", b"one", 0);
        assert_eq!(s.handle(&(&rec).into()), Err(libc::ENOENT));
        assert_eq!(balanced(&s).pending, 1);
        let srv = server(&dir);
        s.batch_end();
        let mut buf = vec![0u8; 4096];
        let n = srv.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"MESSAGE=one\nPRIORITY=6\n"));
        assert_eq!(balanced(&s).written, 1);
        // The server goes away: ECONNREFUSED (the path stays), held; a
        // final flush counts it lost.
        drop(srv);
        let rec = LogRecord::new(20, b"a", b"two", 0);
        assert_eq!(s.handle(&(&rec).into()), Err(libc::ECONNREFUSED));
        s.flush();
        let c = balanced(&s);
        assert_eq!(
            (c.written, c.lost, c.last_errno),
            (1, 1, libc::ECONNREFUSED)
        );
    }

    fn drain(srv: &std::os::unix::net::UnixDatagram) -> usize {
        srv.set_nonblocking(true).unwrap();
        let mut buf = vec![0u8; 8192];
        let mut n = 0;
        while srv.recv(&mut buf).is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_full_server_queue_waits_at_most_the_stall_then_holds_within_the_bound() {
        let dir = tempdir("full");
        let srv = server(&dir);
        let mut s = sink(&dir, 4096);
        let msg = vec![b'x'; 1000];
        let rec = LogRecord::new(20, b"a", &msg, 0);
        let start = Instant::now();
        let mut failed = 0;
        for _ in 0..2000 {
            if s.handle(&(&rec).into()).is_err() {
                failed += 1;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(failed >= 1);
        let c = balanced(&s);
        assert!(c.lost > 0 && c.pending <= 4, "{c:?}");
        assert_eq!(c.last_errno, libc::EAGAIN);
        // The server reads: the held entries go at the next batch end.
        let mut got = drain(&srv);
        s.batch_end();
        got += drain(&srv);
        let c = balanced(&s);
        assert_eq!(c.pending, 0);
        assert_eq!(c.written, got as u64);
        assert_eq!(c.written + c.lost, 2000);
        drop(srv);
    }

    /// Receives one datagram and the fd passed with it.
    fn recv_fd(sock: RawFd) -> (usize, Option<OwnedFd>) {
        let mut data = [0u8; 16];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        let mut control = [0u64; 8];
        // SAFETY: all-zero msghdr is valid; pointers below are valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: a valid msghdr.
        let n = unsafe { libc::recvmsg(sock, &mut msg, 0) };
        assert!(n >= 0, "recvmsg: {}", sys::errno());
        // SAFETY: the kernel filled the control buffer.
        let fd = unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (!cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS).then(|| {
                OwnedFd::from_raw_fd(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
                ))
            })
        };
        (n as usize, fd)
    }

    #[test]
    fn a_big_entry_goes_through_a_sealed_memfd() {
        let dir = tempdir("memfd");
        let srv = server(&dir);
        let mut s = sink(&dir, 1 << 20);
        let msg = vec![b'y'; 1 << 20];
        let rec = LogRecord::new(20, b"a", &msg, 0);
        s.handle(&(&rec).into()).unwrap();
        assert_eq!(s.memfd_sends(), 1);
        assert_eq!(balanced(&s).written, 1);
        let (n, fd) = recv_fd(srv.as_raw_fd());
        assert_eq!(n, 0);
        let fd = fd.expect("an fd passed");
        // SAFETY: fcntl on a valid fd.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        assert_eq!(seals & want, want);
        let mut content = Vec::new();
        let mut f = std::fs::File::from(fd);
        use std::io::{Read, Seek};
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut content).unwrap();
        assert!(content.starts_with(b"MESSAGE=yyyy"));
        assert_eq!(&content[8..8 + msg.len()], &msg[..]);
    }
}
