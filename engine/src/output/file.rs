//! Files: appends that never leave a torn or glued line behind, and
//! rotation (by size and by time) that never destroys what it cannot
//! replace.
//!
//! # Appending when others may append too
//! A file opened with `O_APPEND` may have other writers (another handler,
//! another process). A write that goes out only in part (disk full,
//! `RLIMIT_FSIZE`) leaves a fragment at the end of the file. The fragment
//! is taken back out (`ftruncate` to where it began) when the file still
//! ends with it, and the whole record goes out again later. If someone
//! appended after it, it is never completed (that would glue the rest of
//! the record onto their line): the record is counted lost, and the next
//! record starts on a line of its own. When the file is opened and does not
//! end with a newline (a writer died inside a line), the next record also
//! starts on a line of its own, and the torn line is counted.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::frames::{Counters, Frames};
use super::sys::{self, Kind};
use super::{Clock, Target};

/// The most backups a rotating file keeps.
pub const BACKUP_COUNT_MAX: u32 = 1000;

/// Makes the hidden names of a rotation unique in the process (two
/// handlers of one process may rotate in one directory).
static ROTATION_SEQ: AtomicU64 = AtomicU64::new(0);

/// Bumped by [`request_reopen`]; every file sink compares it before writing.
static REOPEN_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Asks every file sink in the process to reopen its path before its next
/// write (after an outside `logrotate`, typically from a `SIGHUP` handler).
/// Async-signal-safe: one atomic increment.
pub fn request_reopen() {
    REOPEN_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// What the append-safe writer remembers between calls.
#[derive(Debug, Default)]
pub struct AppendState {
    /// The file's size just after a write that went out in part: the
    /// fragment of the head frame ends there.
    fragment_end: Option<u64>,
    /// The file's size when it was opened, if it then ended inside a line.
    /// If it has not grown by the first write, its writer is gone: that
    /// write starts with a newline, and the torn line is counted. If it
    /// grew, a live writer was in the middle of a write (the size moves
    /// page by page during a long write): nothing is added.
    torn_at: Option<u64>,
}

impl AppendState {
    /// The state for a regular file just opened on `fd`.
    pub fn opened(fd: RawFd) -> AppendState {
        let size = size_of(fd).unwrap_or(0);
        AppendState {
            fragment_end: None,
            torn_at: (size > 0 && last_byte(fd, size).is_some_and(|b| b != b'\n')).then_some(size),
        }
    }
}

/// The file's last byte, when it can be read (the fd may be write-only: it
/// is then read through `/proc/self/fd`).
fn last_byte(fd: RawFd, size: u64) -> Option<u8> {
    if size == 0 {
        return None;
    }
    let mut b = [0u8; 1];
    // SAFETY: one byte into a valid buffer.
    let n = unsafe { libc::pread(fd, b.as_mut_ptr().cast(), 1, (size - 1) as libc::off_t) };
    if n == 1 {
        return Some(b[0]);
    }
    let mut f = File::open(format!("/proc/self/fd/{fd}")).ok()?;
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start(size - 1)).ok()?;
    f.read_exact(&mut b).ok()?;
    Some(b[0])
}

fn size_of(fd: RawFd) -> Result<u64, i32> {
    sys::fstat(fd)
        .map(|st| st.st_size as u64)
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Writes "\n" alone.
fn newline(fd: RawFd) -> Result<(), i32> {
    match sys::write_once(fd, b"\n")? {
        1 => Ok(()),
        _ => Err(libc::EIO),
    }
}

/// Writes frames to a regular file opened with `O_APPEND`, at most
/// `budget` bytes of whole frames (the head frame alone when it is bigger),
/// following the rules in this module's doc. Returns the bytes written.
pub fn write_appending(
    fd: RawFd,
    frames: &mut Frames,
    counters: &Counters,
    state: &mut AppendState,
    budget: usize,
) -> Result<usize, i32> {
    let mut total = 0;
    if let Some(at) = state.torn_at {
        if size_of(fd)? == at {
            newline(fd)?;
            Counters::add(&counters.torn_tails, 1);
        }
        state.torn_at = None;
    }
    while !frames.is_empty() {
        if frames.head_done() > 0 {
            // Part of the head went out earlier: go on only if the file
            // still ends with that fragment, which starts a line.
            let size = size_of(fd)?;
            let start = size.checked_sub(frames.head_done() as u64);
            let ours = state.fragment_end == Some(size);
            let at_line_start = match start {
                Some(0) => true,
                Some(s) => last_byte(fd, s) == Some(b'\n'),
                None => false,
            };
            if !(ours && at_line_start) {
                frames.drop_head(counters);
                state.fragment_end = None;
                if ours {
                    // Our fragment ends a line someone else began: end it.
                    newline(fd)?;
                }
                // Otherwise someone appended after the fragment: their
                // line already follows it, and ends with their newline.
                continue;
            }
        }
        let left = budget.saturating_sub(total);
        let chunk = frames.chunk(left.min(1 << 20));
        if total > 0 && chunk.len() > left {
            break;
        }
        match sys::write_once(fd, chunk) {
            Ok(n) => {
                let partial = n < chunk.len();
                frames.advance(n, counters);
                total += n;
                if partial && frames.head_done() > 0 {
                    // With O_APPEND the offset is the end of what this write
                    // put in, whatever others appended since.
                    // SAFETY: plain lseek on the caller's fd.
                    let end = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
                    state.fragment_end = (end >= 0).then_some(end as u64);
                }
                if n == 0 {
                    return Err(libc::EIO);
                }
            }
            Err(e) => {
                take_back_fragment(fd, frames, state);
                return Err(e);
            }
        }
    }
    Ok(total)
}

/// After a failed write, takes a fragment of the head frame back out of the
/// file when the file still ends with it, so the record can go out whole
/// later.
fn take_back_fragment(fd: RawFd, frames: &mut Frames, state: &mut AppendState) {
    let done = frames.head_done() as u64;
    if done == 0 {
        return;
    }
    let Ok(size) = size_of(fd) else { return };
    if state.fragment_end != Some(size) || size < done {
        return;
    }
    // SAFETY: plain syscall on the caller's fd.
    if unsafe { libc::ftruncate(fd, (size - done) as libc::off_t) } == 0 {
        frames.rewind_head();
        state.fragment_end = None;
    }
}

/// What to do with a file sink.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Rotate when a write would take the file past this size; 0 never.
    pub max_bytes: u64,
    /// Backups kept (`path.1` is the newest); 0 with a rotation truncates.
    pub backups: u32,
    /// Time-based rotation, if any.
    pub when: Option<When>,
    /// Units of `when` between rotations (at least 1).
    pub interval: u32,
    /// Compute `when` in UTC instead of local time.
    pub utc: bool,
    /// Rotate a non-empty file when it is opened.
    pub rotate_on_open: bool,
    /// Reopen the path when the file under it was moved or deleted (a
    /// rotating sink does so whatever this says, to follow other rotators).
    pub watch: bool,
    /// Compress backups with gzip (`path.1.gz`), on a thread of their own.
    pub compress: bool,
    /// How long a write to a file that is not a regular file (a FIFO, a
    /// device) may wait without progress.
    pub stall: Duration,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            max_bytes: 0,
            backups: 0,
            when: None,
            interval: 1,
            utc: false,
            rotate_on_open: false,
            watch: false,
            compress: false,
            stall: super::DEFAULT_STALL,
        }
    }
}

/// Time-based rotation, as Python's `TimedRotatingFileHandler`'s `when`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Seconds,
    Minutes,
    Hours,
    Days,
    /// At midnight, every `interval` days.
    Midnight,
    /// At the midnight that ends the given weekday (0 = Monday), every
    /// week, as Python's `W0`..`W6`.
    Weekday(u32),
}

const NS: i64 = 1_000_000_000;
const DAY: i64 = 86_400;

/// The broken-down time of `secs`, local or UTC.
fn tm_of(secs: i64, utc: bool) -> Option<libc::tm> {
    let t = secs as libc::time_t;
    // SAFETY: an all-zero tm is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers; both functions are thread-safe.
    let ok = unsafe {
        if utc {
            !libc::gmtime_r(&t, &mut tm).is_null()
        } else {
            !libc::localtime_r(&t, &mut tm).is_null()
        }
    };
    ok.then_some(tm)
}

/// The first midnight after `secs`, `days_ahead - 1` days later.
fn next_midnight(secs: i64, utc: bool, days_ahead: i64) -> i64 {
    if utc {
        return (secs.div_euclid(DAY) + days_ahead) * DAY;
    }
    let Some(mut tm) = tm_of(secs, false) else {
        return (secs.div_euclid(DAY) + days_ahead) * DAY;
    };
    tm.tm_hour = 0;
    tm.tm_min = 0;
    tm.tm_sec = 0;
    tm.tm_mday += days_ahead as i32;
    tm.tm_isdst = -1;
    // SAFETY: a valid tm; mktime normalizes it.
    let t = unsafe { libc::mktime(&mut tm) };
    if t == -1 {
        (secs.div_euclid(DAY) + days_ahead) * DAY
    } else {
        t as i64
    }
}

/// The next rotation time after `now_ns` (a rotation due at `base_ns`
/// start), in ns.
pub fn next_rollover(when: When, interval: u32, utc: bool, base_ns: i64) -> i64 {
    let secs = base_ns.div_euclid(NS);
    let interval = i64::from(interval.max(1));
    let at = match when {
        When::Seconds => secs + interval,
        When::Minutes => secs + interval * 60,
        When::Hours => secs + interval * 3600,
        When::Days => secs + interval * DAY,
        When::Midnight => next_midnight(secs, utc, interval),
        When::Weekday(day) => {
            // As Python: the midnight that ends the given weekday (W0: the
            // one between Monday and Tuesday). tm_wday: 0 = Sunday; Python's
            // W0 = Monday.
            let today = tm_of(secs, utc).map_or(0, |tm| i64::from((tm.tm_wday + 6) % 7));
            let ahead = (i64::from(day) - today).rem_euclid(7);
            next_midnight(secs, utc, 1 + ahead)
        }
    };
    at.saturating_mul(NS)
}

/// A file that lines are appended to, with rotation.
pub struct FileTarget {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    kind: Kind,
    append: AppendState,
    opts: FileOptions,
    clock: Box<dyn Clock>,
    counters: Arc<Counters>,
    rollover_at: Option<i64>,
    reopen_seen: u64,
    compressor: Option<JoinHandle<()>>,
}

/// Opens `path` write-only for appending, creating it. Never blocks: a FIFO
/// with no reader fails with `ENXIO` (opening it for reading too would make
/// the handler its own reader, swallowing every line). Writes then block as
/// usual (the flag is cleared on this new file description only).
/// Swaps the names `a` and `b` in one step (`renameat2` with
/// `RENAME_EXCHANGE`); `EINVAL` where the file system cannot.
fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths, valid for the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on our own fd.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name: OsString = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl FileTarget {
    /// Opens (creating) `path` for appending; a relative path is made
    /// absolute now, so a later `chdir` changes nothing.
    pub fn open(
        path: &Path,
        opts: FileOptions,
        clock: Box<dyn Clock>,
        counters: Arc<Counters>,
    ) -> io::Result<FileTarget> {
        if opts.backups > BACKUP_COUNT_MAX {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()?.join(path)
        };
        let file = open_append(&path)?;
        let st = sys::fstat(file.as_raw_fd())?;
        let kind = sys::kind_of(&st);
        let append = if kind == Kind::Regular {
            AppendState::opened(file.as_raw_fd())
        } else {
            AppendState::default()
        };
        let mut target = FileTarget {
            path,
            file,
            dev: st.st_dev,
            ino: st.st_ino,
            kind,
            append,
            opts,
            clock,
            counters,
            rollover_at: None,
            reopen_seen: REOPEN_GENERATION.load(Ordering::Relaxed),
            compressor: None,
        };
        if kind == Kind::Regular {
            if let Some(when) = target.opts.when {
                // As Python: from the file's last change, so a stale file is
                // rotated at the first write.
                let base = if st.st_size > 0 {
                    st.st_mtime.saturating_mul(NS)
                } else {
                    target.clock.now_ns()
                };
                target.rollover_at = Some(next_rollover(
                    when,
                    target.opts.interval,
                    target.opts.utc,
                    base,
                ));
            }
            if target.opts.rotate_on_open && st.st_size > 0 {
                let _ = target.rotate();
            }
        }
        Ok(target)
    }

    /// Whether `path` still names the file this sink writes.
    fn path_is_ours(&self) -> Option<bool> {
        match fs::metadata(&self.path) {
            Ok(m) => Some(m.dev() == self.dev && m.ino() == self.ino),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        }
    }

    /// `.NAME<suffix>` beside the file: the rotation's own files.
    fn hidden(&self, suffix: &str) -> PathBuf {
        let mut name = b".".to_vec();
        name.extend_from_slice(self.path.file_name().unwrap_or_default().as_bytes());
        name.extend_from_slice(suffix.as_bytes());
        self.path.with_file_name(OsString::from_vec(name))
    }

    /// The file, or the failure counted as a failed rotation.
    fn or_failed(&self, opened: io::Result<File>) -> Result<File, i32> {
        opened.map_err(|e| {
            let e = errno_of(&e);
            self.failed(e);
            e
        })
    }

    fn failed(&self, e: i32) {
        Counters::add(&self.counters.rotation_failures, 1);
        self.counters.last_errno.store(e, Ordering::Relaxed);
    }

    /// Switches to `file`, newly opened at `path`.
    fn adopt(&mut self, file: File, frames: Option<&mut Frames>) -> io::Result<()> {
        let st = sys::fstat(file.as_raw_fd())?;
        if let Some(frames) = frames {
            if frames.head_done() > 0 {
                // Its fragment stays in the old file.
                frames.drop_head(&self.counters);
            }
        }
        self.file = file;
        self.dev = st.st_dev;
        self.ino = st.st_ino;
        self.kind = sys::kind_of(&st);
        self.append = if self.kind == Kind::Regular {
            AppendState::opened(self.file.as_raw_fd())
        } else {
            AppendState::default()
        };
        Ok(())
    }

    /// Reopens the path (moved, deleted, or on request). On failure the
    /// sink keeps the file it has.
    fn reopen(&mut self, frames: &mut Frames) {
        match open_append(&self.path).and_then(|f| self.adopt(f, Some(frames))) {
            Ok(()) => Counters::add(&self.counters.reopens, 1),
            Err(e) => self.failed(errno_of(&e)),
        }
    }

    /// Rotates: the new file is made first, under a temporary name, so
    /// nothing is renamed or deleted unless it can be opened.
    fn rotate(&mut self) -> Result<(), i32> {
        if self.opts.backups == 0 {
            // SAFETY: plain syscall on our fd.
            if unsafe { libc::ftruncate(self.file.as_raw_fd(), 0) } != 0 {
                let e = sys::errno();
                self.failed(e);
                return Err(e);
            }
            Counters::add(&self.counters.rotations, 1);
            return Ok(());
        }
        // Our previous rotation's thread (it holds the lock) ends first.
        if let Some(c) = self.compressor.take() {
            let _ = c.join();
        }
        // Rotators of one file (other processes, other handlers) take turns:
        // the one that finds the lock taken lets the other rotate and
        // writes on, reopening the path at its next write.
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(libc::O_CLOEXEC)
            .open(self.hidden(".ql-lock"));
        let lock = self.or_failed(lock)?;
        // SAFETY: flock on our own fd; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(libc::EWOULDBLOCK);
        }
        match self.path_is_ours() {
            Some(true) => {}
            _ => {
                // Someone else moved or replaced our file (another rotator,
                // logrotate): their file is not ours to rename. Start
                // writing at the path instead.
                let before = (self.dev, self.ino);
                let mut none = Frames::default();
                self.reopen(&mut none);
                return if (self.dev, self.ino) == before {
                    Err(self.counters.last_errno.load(Ordering::Relaxed))
                } else {
                    Ok(())
                };
            }
        }
        let seq = ROTATION_SEQ.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let hidden = |what: &str| self.hidden(&format!(".ql-{what}-{pid}-{seq}"));
        let tmp = hidden("rotate");
        // The oldest backup is moved aside, then deleted on a thread of its
        // own: freeing a file's blocks can wait on the disk (a synchronous
        // discard), and the listener must not.
        let drop = [hidden("drop"), hidden("drop.gz")];
        for old in &drop {
            let _ = fs::remove_file(old);
        }
        let _ = fs::remove_file(&tmp);
        let new = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp);
        let new = self.or_failed(new)?;
        let path = self.path.clone();
        let backup = |n: u32| with_suffix(&path, &format!(".{n}"));
        // Each backup moves up one place (a rename replaces the oldest at
        // the top); on any failure the moves made are undone, so a failed
        // rotation, tried again at every write, never eats the backups.
        let n = self.opts.backups;
        let shift = || -> io::Result<()> {
            let mut done: Vec<(PathBuf, PathBuf)> = Vec::new();
            let top = backup(n);
            let mut moves = vec![
                (top.clone(), drop[0].clone()),
                (with_suffix(&top, ".gz"), drop[1].clone()),
            ];
            for i in (1..n).rev() {
                moves.push((backup(i), backup(i + 1)));
                moves.push((
                    with_suffix(&backup(i), ".gz"),
                    with_suffix(&backup(i + 1), ".gz"),
                ));
            }
            let undo = |done: &[(PathBuf, PathBuf)]| {
                for (from, to) in done.iter().rev() {
                    let _ = fs::rename(to, from);
                }
            };
            for (from, to) in moves {
                match fs::rename(&from, &to) {
                    Ok(()) => done.push((from, to)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        undo(&done);
                        return Err(e);
                    }
                }
            }
            // The new file takes the path in one step (the two swap names),
            // so the path never goes missing: a writer of another process
            // that looked at it in between would make a file there of its
            // own, which the new one would then replace, its lines with it.
            match exchange(&tmp, &path) {
                Ok(()) => {
                    // `tmp` names the old log now.
                    if let Err(e) = fs::rename(&tmp, backup(1)) {
                        let _ = exchange(&tmp, &path);
                        undo(&done);
                        return Err(e);
                    }
                }
                // A file system without RENAME_EXCHANGE: two renames.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                    for (from, to) in [(path.clone(), backup(1)), (tmp.clone(), path.clone())] {
                        match fs::rename(&from, &to) {
                            Ok(()) => done.push((from, to)),
                            Err(e) if e.kind() == io::ErrorKind::NotFound && from != tmp => {}
                            Err(e) => {
                                undo(&done);
                                return Err(e);
                            }
                        }
                    }
                }
                Err(e) => {
                    undo(&done);
                    return Err(e);
                }
            }
            Ok(())
        };
        if let Err(e) = shift() {
            let _ = fs::remove_file(&tmp);
            let e = errno_of(&e);
            self.failed(e);
            return Err(e);
        }
        if let Err(e) = self.adopt(new, None) {
            self.failed(errno_of(&e));
        }
        Counters::add(&self.counters.rotations, 1);
        // The oldest goes, and the newest backup is compressed, off the
        // listener's thread (joined before the next rotation).
        let compress_from = self.opts.compress.then(|| backup(1));
        let counters = Arc::clone(&self.counters);
        let aside = drop.clone();
        // The thread holds the rotation lock until it is done, so no other
        // rotator of this file moves the backup while it is compressed.
        let held = lock;
        let spawned = std::thread::Builder::new()
            .name("ql-rotate".into())
            .spawn(move || {
                let _lock = held;
                sys::block_write_signals_for_thread();
                for old in &aside {
                    let _ = fs::remove_file(old);
                }
                if let Some(from) = compress_from {
                    if compress(&from).is_err() {
                        Counters::add(&counters.compress_failures, 1);
                    }
                }
            });
        match spawned {
            Ok(handle) => self.compressor = Some(handle),
            Err(_) => {
                // No thread: do it here.
                for old in &drop {
                    let _ = fs::remove_file(old);
                }
                if self.opts.compress {
                    Counters::add(&self.counters.compress_failures, 1);
                }
            }
        }
        Ok(())
    }

    /// A regular file this sink rotates: it also watches its path, so that
    /// when another rotator of the same file rotated it, it follows.
    fn rotates(&self) -> bool {
        self.kind == Kind::Regular
            && self.opts.backups > 0
            && (self.opts.max_bytes > 0 || self.opts.when.is_some())
    }

    /// Due, and worth it: a rotation time at the end of representable time
    /// (a clock at `i64::MAX`) is never due.
    fn due_by_time(&self) -> bool {
        if self.rollover_at == Some(i64::MAX) {
            return false;
        }
        self.rollover_at.is_some_and(|at| self.clock.now_ns() >= at)
    }
}

/// Compresses `path` to `path.gz` (through a temporary name), then removes
/// `path`. On failure `path` stays as it is.
fn compress(path: &Path) -> io::Result<()> {
    let gz = with_suffix(path, ".gz");
    let seq = ROTATION_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = with_suffix(path, &format!(".gz.tmp-{}-{seq}", std::process::id()));
    let run = || -> io::Result<()> {
        let mut input = File::open(path)?;
        let out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)?;
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
        // A writer that had the file open before the rotation may still
        // append its last batch: read until the size stops moving.
        let mut read = io::copy(&mut input, &mut enc)?;
        loop {
            let size = input.metadata()?.len();
            if size <= read {
                break;
            }
            read += io::copy(&mut input, &mut enc)?;
        }
        let out = enc.finish()?;
        out.sync_all()?;
        fs::rename(&tmp, &gz)?;
        fs::remove_file(path)
    };
    run().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

impl Target for FileTarget {
    fn crash_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.file.as_raw_fd())
    }

    fn write(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32> {
        let generation = REOPEN_GENERATION.load(Ordering::Relaxed);
        if generation != self.reopen_seen {
            self.reopen_seen = generation;
            self.reopen(frames);
        } else if (self.opts.watch || self.rotates()) && self.path_is_ours() == Some(false) {
            self.reopen(frames);
        }
        if self.kind != Kind::Regular {
            let fd = self.file.as_raw_fd();
            return sys::write_frames(fd, self.kind, frames, counters, self.opts.stall);
        }
        // Not while a record is half written: its rest belongs in this file.
        if self.due_by_time()
            && !frames.is_empty()
            && frames.head_done() == 0
            && self.rotate().is_ok()
        {
            // As Python: the next one counts from now. A failed rotation is
            // tried again at the next write.
            if let Some(when) = self.opts.when {
                let now = self.clock.now_ns();
                let next = next_rollover(when, self.opts.interval, self.opts.utc, now);
                self.rollover_at = Some(next);
            }
        }
        let mut rotation_failed = false;
        let mut just_rotated = false;
        while !frames.is_empty() {
            let fd = self.file.as_raw_fd();
            let mut budget = usize::MAX;
            if self.opts.max_bytes > 0 && !rotation_failed {
                let size = size_of(fd)?;
                let room = self.opts.max_bytes.saturating_sub(size) as usize;
                let head = frames.head_len().unwrap_or(0) - frames.head_done();
                if head > room && size > 0 && frames.head_done() == 0 && !just_rotated {
                    // A failed rotation keeps writing to this file, and is
                    // tried again at the next write.
                    if self.rotate().is_ok() {
                        just_rotated = true;
                        continue;
                    }
                    rotation_failed = true;
                } else {
                    // At least the head goes out (alone in a fresh file
                    // when it is bigger than `max_bytes`).
                    budget = room;
                }
            }
            write_appending(fd, frames, counters, &mut self.append, budget)?;
            just_rotated = false;
        }
        Ok(())
    }
}

impl Drop for FileTarget {
    fn drop(&mut self) {
        if let Some(c) = self.compressor.take() {
            let _ = c.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::AtomicI64;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "ql-file-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A clock the test sets.
    #[derive(Clone)]
    struct TestClock(Arc<AtomicI64>);
    impl Clock for TestClock {
        fn now_ns(&self) -> i64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    fn frames(lines: &[&str]) -> Frames {
        let mut f = Frames::default();
        for l in lines {
            f.push(|b| b.extend_from_slice(l.as_bytes()));
        }
        f
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn target(path: &Path, opts: FileOptions, clock: &TestClock) -> (FileTarget, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        let t =
            FileTarget::open(path, opts, Box::new(clock.clone()), Arc::clone(&counters)).unwrap();
        (t, counters)
    }

    fn utc(y: i32, mo: i32, d: i32, h: i32, mi: i32, s: i32) -> i64 {
        // SAFETY: an all-zero tm is valid; timegm reads it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = s;
        // SAFETY: a valid tm.
        (unsafe { libc::timegm(&mut tm) }) as i64 * NS
    }

    #[test]
    fn rollover_times_follow_pythons_rules() {
        let t = utc(2026, 12, 5, 23, 59, 59); // a Saturday
        assert_eq!(next_rollover(When::Seconds, 10, true, t), t + 10 * NS);
        assert_eq!(next_rollover(When::Minutes, 2, true, t), t + 120 * NS);
        assert_eq!(next_rollover(When::Hours, 1, true, t), t + 3600 * NS);
        assert_eq!(next_rollover(When::Days, 1, true, t), t + DAY * NS);
        assert_eq!(
            next_rollover(When::Midnight, 1, true, t),
            utc(2026, 12, 6, 0, 0, 0)
        );
        assert_eq!(
            next_rollover(When::Midnight, 3, true, t),
            utc(2026, 12, 8, 0, 0, 0)
        );
        // W0 = Monday: Python's computeRollover gives the midnight that
        // ends Monday 2026-12-07.
        assert_eq!(
            next_rollover(When::Weekday(0), 1, true, t),
            utc(2026, 12, 8, 0, 0, 0)
        );
        // W5 = Saturday, today: tonight.
        assert_eq!(
            next_rollover(When::Weekday(5), 1, true, t),
            utc(2026, 12, 6, 0, 0, 0)
        );
        // W6 = Sunday: the midnight that ends tomorrow.
        assert_eq!(
            next_rollover(When::Weekday(6), 1, true, t),
            utc(2026, 12, 7, 0, 0, 0)
        );
        // Local midnight is a local midnight, whatever the zone.
        let local = next_rollover(When::Midnight, 1, false, t);
        let tm = tm_of(local.div_euclid(NS), false).unwrap();
        assert_eq!((tm.tm_hour, tm.tm_min, tm.tm_sec), (0, 0, 0));
        assert!(local > t && local <= t + DAY * NS + 3600 * NS);
    }

    #[test]
    fn time_rotation_with_an_injected_clock() {
        let dir = TempDir::new("time");
        let path = dir.0.join("app.log");
        let clock = TestClock(Arc::new(AtomicI64::new(utc(2026, 12, 5, 23, 59, 58))));
        let opts = FileOptions {
            backups: 2,
            when: Some(When::Midnight),
            utc: true,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, opts, &clock);
        t.write(&mut frames(&["saturday\n"]), &c).unwrap();
        clock
            .0
            .store(utc(2026, 12, 5, 23, 59, 59), Ordering::Relaxed);
        t.write(&mut frames(&["still saturday\n"]), &c).unwrap();
        clock.0.store(utc(2026, 12, 6, 0, 0, 1), Ordering::Relaxed);
        t.write(&mut frames(&["sunday\n"]), &c).unwrap();
        assert_eq!(
            read(&path.with_extension("log.1")),
            "saturday\nstill saturday\n"
        );
        assert_eq!(read(&path), "sunday\n");
        // Days later: one rotation, and the next is the following midnight.
        clock.0.store(utc(2026, 12, 9, 12, 0, 0), Ordering::Relaxed);
        t.write(&mut frames(&["wednesday\n"]), &c).unwrap();
        assert_eq!(t.rollover_at, Some(utc(2026, 12, 10, 0, 0, 0)));
        assert_eq!(
            read(&path.with_extension("log.2")),
            "saturday\nstill saturday\n"
        );
        assert_eq!(c.rotations.load(Ordering::Relaxed), 2);
        assert_eq!(c.written.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn size_and_time_rotation_combine() {
        let dir = TempDir::new("both");
        let path = dir.0.join("app.log");
        let clock = TestClock(Arc::new(AtomicI64::new(utc(2026, 1, 1, 0, 0, 0))));
        let opts = FileOptions {
            max_bytes: 10,
            backups: 3,
            when: Some(When::Seconds),
            interval: 60,
            utc: true,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, opts, &clock);
        t.write(&mut frames(&["aaaa\n", "bbbb\n", "cccc\n"]), &c)
            .unwrap();
        assert_eq!(read(&path), "cccc\n");
        assert_eq!(read(&path.with_extension("log.1")), "aaaa\nbbbb\n");
        clock.0.fetch_add(61 * NS, Ordering::Relaxed);
        t.write(&mut frames(&["dd\n"]), &c).unwrap();
        assert_eq!(read(&path), "dd\n");
        assert_eq!(read(&path.with_extension("log.1")), "cccc\n");
        assert_eq!(read(&path.with_extension("log.2")), "aaaa\nbbbb\n");
    }

    #[test]
    fn rotate_on_open_keeps_the_old_file() {
        let dir = TempDir::new("onopen");
        let path = dir.0.join("app.log");
        fs::write(&path, "old run\n").unwrap();
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let opts = FileOptions {
            backups: 1,
            rotate_on_open: true,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, opts, &clock);
        t.write(&mut frames(&["new run\n"]), &c).unwrap();
        assert_eq!(read(&path), "new run\n");
        assert_eq!(read(&path.with_extension("log.1")), "old run\n");
    }

    #[test]
    fn backups_are_compressed_on_their_own_thread() {
        let dir = TempDir::new("gz");
        let path = dir.0.join("app.log");
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let opts = FileOptions {
            max_bytes: 10,
            backups: 2,
            compress: true,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, opts, &clock);
        for l in ["aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n"] {
            t.write(&mut frames(&[l]), &c).unwrap();
        }
        drop(t); // joins the compressor
        let why = format!(
            "rotations {}, failed {}, errno {}, reopens {}",
            c.rotations.load(Ordering::Relaxed),
            c.rotation_failures.load(Ordering::Relaxed),
            c.last_errno.load(Ordering::Relaxed),
            c.reopens.load(Ordering::Relaxed)
        );
        let gunzip = |p: PathBuf| {
            let mut s = String::new();
            flate2::read::GzDecoder::new(File::open(&p).unwrap())
                .read_to_string(&mut s)
                .unwrap();
            s
        };
        assert_eq!(read(&path), "eeee\n", "{why}");
        assert_eq!(gunzip(path.with_extension("log.1.gz")), "cccc\ndddd\n");
        assert_eq!(gunzip(path.with_extension("log.2.gz")), "aaaa\nbbbb\n");
        assert!(!path.with_extension("log.1").exists());
        assert!(!path.with_extension("log.3.gz").exists());
        assert_eq!(c.compress_failures.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_reopen_request_does_not_stop_size_rotation() {
        let dir = TempDir::new("gz-reopen");
        let path = dir.0.join("app.log");
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let opts = FileOptions {
            max_bytes: 10,
            backups: 2,
            compress: true,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, opts, &clock);
        for l in ["aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n"] {
            // ql_reopen_files() (a logrotate's SIGHUP) before every write.
            request_reopen();
            t.write(&mut frames(&[l]), &c).unwrap();
        }
        drop(t);
        let failures = c.rotation_failures.load(Ordering::Relaxed);
        let errno = c.last_errno.load(Ordering::Relaxed);
        assert_eq!(
            read(&path),
            "eeee\n",
            "rotation failures {failures}, errno {errno}"
        );
        assert_eq!(c.rotations.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_moved_file_is_reopened_when_watched_or_asked() {
        let dir = TempDir::new("watch");
        let path = dir.0.join("app.log");
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let watch = FileOptions {
            watch: true,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, watch, &clock);
        t.write(&mut frames(&["one\n"]), &c).unwrap();
        fs::rename(&path, dir.0.join("moved.log")).unwrap();
        t.write(&mut frames(&["two\n"]), &c).unwrap();
        assert_eq!(read(&dir.0.join("moved.log")), "one\n");
        assert_eq!(read(&path), "two\n");
        assert_eq!(c.reopens.load(Ordering::Relaxed), 1);

        let path = dir.0.join("b.log");
        let (mut t, c) = target(&path, FileOptions::default(), &clock);
        t.write(&mut frames(&["one\n"]), &c).unwrap();
        fs::rename(&path, dir.0.join("b.moved")).unwrap();
        t.write(&mut frames(&["still old\n"]), &c).unwrap();
        request_reopen();
        t.write(&mut frames(&["two\n"]), &c).unwrap();
        assert_eq!(read(&dir.0.join("b.moved")), "one\nstill old\n");
        assert_eq!(read(&path), "two\n");
    }

    #[test]
    fn a_torn_tail_gets_a_newline_and_is_counted() {
        let dir = TempDir::new("torn");
        let path = dir.0.join("app.log");
        fs::write(&path, "whole\nkilled mid-li").unwrap();
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let (mut t, c) = target(&path, FileOptions::default(), &clock);
        t.write(&mut frames(&["next\n"]), &c).unwrap();
        assert_eq!(read(&path), "whole\nkilled mid-li\nnext\n");
        assert_eq!(c.torn_tails.load(Ordering::Relaxed), 1);
    }

    /// Sets up a head frame written in part, as a failed partial write
    /// leaves it: the fragment is at the end of the file.
    fn half_written(path: &Path, file: &File, state: &mut AppendState, c: &Counters) -> Frames {
        let mut f = frames(&["RECORD-ONE\n", "record-two\n"]);
        let fd = file.as_raw_fd();
        assert_eq!(sys::write_once(fd, b"RECORD").unwrap(), 6);
        f.advance(6, c);
        state.fragment_end = Some(fs::metadata(path).unwrap().len());
        f
    }

    #[test]
    fn a_fragment_is_completed_only_while_the_file_ends_with_it() {
        let dir = TempDir::new("frag");
        let path = dir.0.join("app.log");
        fs::write(&path, "before\n").unwrap();
        let file = open_append(&path).unwrap();
        let c = Counters::default();

        // Nobody appended: the rest of the record goes out, exactly.
        let mut state = AppendState::default();
        let mut f = half_written(&path, &file, &mut state, &c);
        write_appending(file.as_raw_fd(), &mut f, &c, &mut state, usize::MAX).unwrap();
        assert_eq!(read(&path), "before\nRECORD-ONE\nrecord-two\n");

        // Another process appended after the fragment (disk full, then
        // space came back): the fragment is never completed after their
        // line; the record is counted lost, the next starts a line.
        fs::write(&path, "before\n").unwrap();
        let mut state = AppendState::default();
        let mut f = half_written(&path, &file, &mut state, &c);
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"OTHER PROCESS LINE\n")
            .unwrap();
        let lost = c.lost.load(Ordering::Relaxed);
        write_appending(file.as_raw_fd(), &mut f, &c, &mut state, usize::MAX).unwrap();
        assert_eq!(
            read(&path),
            "before\nRECORDOTHER PROCESS LINE\nrecord-two\n"
        );
        assert_eq!(c.lost.load(Ordering::Relaxed), lost + 1);

        // Another process's own fragment before ours: ours is not completed
        // onto theirs; the line is ended.
        fs::write(&path, "before\nTHEIR-FRAG").unwrap();
        let mut state = AppendState::default();
        let mut f = half_written(&path, &file, &mut state, &c);
        write_appending(file.as_raw_fd(), &mut f, &c, &mut state, usize::MAX).unwrap();
        assert_eq!(read(&path), "before\nTHEIR-FRAGRECORD\nrecord-two\n");
        assert_eq!(c.lost.load(Ordering::Relaxed), lost + 2);
    }

    #[test]
    fn a_failed_write_takes_its_fragment_back_out() {
        let dir = TempDir::new("takeback");
        let path = dir.0.join("app.log");
        fs::write(&path, "before\n").unwrap();
        let file = open_append(&path).unwrap();
        let c = Counters::default();
        let mut state = AppendState::default();
        let mut f = half_written(&path, &file, &mut state, &c);
        take_back_fragment(file.as_raw_fd(), &mut f, &mut state);
        assert_eq!(read(&path), "before\n");
        assert_eq!(f.head_done(), 0);
        write_appending(file.as_raw_fd(), &mut f, &c, &mut state, usize::MAX).unwrap();
        assert_eq!(read(&path), "before\nRECORD-ONE\nrecord-two\n");
    }

    #[test]
    fn a_rotation_that_fails_changes_nothing_and_recovers() {
        let dir = TempDir::new("undo");
        let path = dir.0.join("app.log");
        fs::write(dir.0.join("app.log.1"), "one\n").unwrap();
        fs::write(dir.0.join("app.log.2"), "two\n").unwrap();
        fs::write(dir.0.join("app.log.3"), "three\n").unwrap();
        // The rotation lock cannot be made: a directory holds its name.
        let aside = dir.0.join(".app.log.ql-lock");
        fs::create_dir_all(aside.join("x")).unwrap();
        fs::write(&path, "current\n").unwrap();
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let opts = FileOptions {
            max_bytes: 10,
            backups: 3,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, opts, &clock);
        for l in ["aaaa\n", "bbbb\n", "cccc\n"] {
            t.write(&mut frames(&[l]), &c).unwrap();
        }
        // Every attempt failed and changed nothing; nothing was lost.
        assert_eq!(c.rotations.load(Ordering::Relaxed), 0);
        assert_eq!(c.rotation_failures.load(Ordering::Relaxed), 3);
        assert_eq!(read(&dir.0.join("app.log.1")), "one\n");
        assert_eq!(read(&dir.0.join("app.log.2")), "two\n");
        assert_eq!(read(&dir.0.join("app.log.3")), "three\n");
        assert_eq!(read(&path), "current\naaaa\nbbbb\ncccc\n");
        assert!(fs::read_dir(&dir.0).unwrap().all(|e| {
            let name = e.unwrap().file_name();
            !name.to_string_lossy().contains("ql-rotate")
        }));
        // Once the way is clear, it rotates by itself, and the oldest goes.
        fs::remove_dir_all(&aside).unwrap();
        t.write(&mut frames(&["dddd\n"]), &c).unwrap();
        drop(t); // joins the thread that deletes the oldest
        assert_eq!(c.rotations.load(Ordering::Relaxed), 1);
        assert_eq!(read(&dir.0.join("app.log.3")), "two\n");
        assert_eq!(read(&dir.0.join("app.log.2")), "one\n");
        assert_eq!(
            read(&dir.0.join("app.log.1")),
            "current\naaaa\nbbbb\ncccc\n"
        );
        assert_eq!(read(&path), "dddd\n");
        // Nothing else left but the rotation lock.
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 5);
    }

    /// A rename in the middle of the chain fails (an immutable backup,
    /// `chattr +i`, since root passes every permission check): the moves
    /// already made are undone, so retries never eat the backups.
    #[test]
    fn a_rotation_that_fails_mid_chain_loses_no_backup() {
        let dir = TempDir::new("midchain");
        let path = dir.0.join("app.log");
        for i in 1..=5 {
            fs::write(dir.0.join(format!("app.log.{i}")), format!("backup {i}\n")).unwrap();
        }
        let stuck = dir.0.join("app.log.2");
        // `chattr +i` / `-i` through the ioctl itself: no child process,
        // whose fork would share the other tests' open lock files with it
        // until its exec, and briefly hold their rotation locks.
        let chattr = |flag: &str| {
            const FS_IOC_GETFLAGS: libc::c_ulong = 0x8008_6601;
            const FS_IOC_SETFLAGS: libc::c_ulong = 0x4008_6602;
            const FS_IMMUTABLE_FL: libc::c_long = 0x10;
            let Ok(f) = File::open(&stuck) else {
                return false;
            };
            let mut flags: libc::c_long = 0;
            // SAFETY: the ioctls read and write one long through valid
            // pointers, on our own open fd.
            unsafe {
                if libc::ioctl(f.as_raw_fd(), FS_IOC_GETFLAGS, &mut flags) != 0 {
                    return false;
                }
                if flag == "+i" {
                    flags |= FS_IMMUTABLE_FL;
                } else {
                    flags &= !FS_IMMUTABLE_FL;
                }
                libc::ioctl(f.as_raw_fd(), FS_IOC_SETFLAGS, &flags) == 0
            }
        };
        if !chattr("+i") {
            eprintln!("skipped: `chattr +i` is not available here (needs root and a filesystem with the flag)");
            return;
        }
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let opts = FileOptions {
            max_bytes: 10,
            backups: 5,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, opts, &clock);
        for l in ["aaaaaaaa\n", "bbbbbbbb\n", "cccccccc\n", "dddddddd\n"] {
            t.write(&mut frames(&[l]), &c).unwrap();
        }
        let _ = chattr("-i");
        assert!(c.rotation_failures.load(Ordering::Relaxed) >= 3);
        assert_eq!(c.rotations.load(Ordering::Relaxed), 0);
        // app.log.5 held the oldest, which a rotation replaces: whichever
        // backup moved there stands in it; every other one is where it was.
        for i in 1..=4 {
            assert_eq!(
                read(&dir.0.join(format!("app.log.{i}"))),
                format!("backup {i}\n")
            );
        }
        assert_eq!(read(&path), "aaaaaaaa\nbbbbbbbb\ncccccccc\ndddddddd\n");
    }

    #[test]
    fn a_path_that_cannot_be_reopened_never_spins() {
        let dir = TempDir::new("gone");
        let sub = dir.0.join("sub");
        fs::create_dir_all(&sub).unwrap();
        let path = sub.join("app.log");
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let opts = FileOptions {
            max_bytes: 10,
            backups: 2,
            ..FileOptions::default()
        };
        let (mut t, c) = target(&path, opts, &clock);
        t.write(&mut frames(&["aaaaaaaa\n"]), &c).unwrap();
        fs::remove_dir_all(&sub).unwrap();
        // The file is gone with its directory: the rotation becomes a
        // reopen, which fails; the write goes on to the open file, once.
        t.write(&mut frames(&["bbbbbbbb\n"]), &c).unwrap();
        assert_eq!(c.written.load(Ordering::Relaxed), 2);
        // The reopen and the rotation each fail once, no more.
        assert_eq!(c.rotation_failures.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn too_many_backups_are_refused_and_devices_never_rotate() {
        let clock = TestClock(Arc::new(AtomicI64::new(0)));
        let opts = FileOptions {
            backups: BACKUP_COUNT_MAX + 1,
            ..FileOptions::default()
        };
        let counters = Arc::new(Counters::default());
        assert!(
            FileTarget::open(Path::new("/tmp/x"), opts, Box::new(clock.clone()), counters).is_err()
        );
        let opts = FileOptions {
            max_bytes: 4,
            backups: 2,
            ..FileOptions::default()
        };
        let (mut t, c) = target(Path::new("/dev/null"), opts, &clock);
        t.write(&mut frames(&["aaaaaaa\n", "bbbbbbbb\n"]), &c)
            .unwrap();
        assert_eq!(c.rotations.load(Ordering::Relaxed), 0);
        assert!(!Path::new("/dev/null.1").exists());
        let st = fs::metadata("/dev/null").unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(st.file_type().is_char_device());
    }
}
