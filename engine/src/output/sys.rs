//! The system calls of the output layer, each wrapped once: writes that
//! retry `EINTR`, wait out `EAGAIN` within a bound, and never let `SIGPIPE`
//! or `SIGXFSZ` kill the process.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use super::frames::{Counters, Frames};

/// What kind of file an fd is, for the write rules that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: writes never block for long and never raise
    /// `SIGPIPE`; size, rotation and torn tails make sense.
    Regular,
    /// A pipe or FIFO: writes of at most `PIPE_BUF` bytes are atomic.
    Pipe,
    /// A socket.
    Socket,
    /// A terminal, a character device, anything else.
    Other,
}

/// `fstat` of an fd.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writing.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        Ok(st)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kind of a file mode.
pub fn kind_of(st: &libc::stat) -> Kind {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Kind::Regular,
        libc::S_IFIFO => Kind::Pipe,
        libc::S_IFSOCK => Kind::Socket,
        _ => Kind::Other,
    }
}

/// The kind of an fd (`Other` when it cannot be told).
pub fn kind(fd: RawFd) -> Kind {
    fstat(fd).map_or(Kind::Other, |st| kind_of(&st))
}

/// The errno of the last failed call.
pub fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

thread_local! {
    /// True on a thread that keeps `SIGPIPE` and `SIGXFSZ` blocked for its
    /// whole life (the listener thread).
    static BLOCKED: Cell<bool> = const { Cell::new(false) };
}

fn write_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::sigaddset(&mut set, libc::SIGXFSZ);
        set
    }
}

/// Blocks `SIGPIPE` and `SIGXFSZ` on the calling thread for the rest of its
/// life. For threads the library owns: a write to a closed pipe or past
/// `RLIMIT_FSIZE` then fails with `EPIPE` / `EFBIG` instead of killing the
/// process. The process's dispositions are not touched. A signal left
/// pending on the thread goes with it when it ends.
pub fn block_write_signals_for_thread() {
    let set = write_signals();
    // SAFETY: valid set; a NULL old set is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    BLOCKED.with(|b| b.set(true));
}

/// Runs `body` with `SIGPIPE` and `SIGXFSZ` blocked on the calling thread
/// (a program's thread: freeing a handler flushes it there), then takes
/// back any of them that the body's writes raised, and restores the mask.
/// A signal that was pending before is left pending.
pub fn without_write_signals<T>(body: impl FnOnce() -> T) -> T {
    if BLOCKED.with(Cell::get) {
        return body();
    }
    /// Takes back what the body raised and restores the mask, also when
    /// the body unwinds.
    struct Restore {
        old: libc::sigset_t,
        before: libc::sigset_t,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: plain signal calls on valid sets.
            unsafe {
                let mut after: libc::sigset_t = std::mem::zeroed();
                libc::sigpending(&mut after);
                for sig in [libc::SIGPIPE, libc::SIGXFSZ] {
                    if libc::sigismember(&after, sig) == 1
                        && libc::sigismember(&self.before, sig) == 0
                        && libc::sigismember(&self.old, sig) == 0
                    {
                        let mut one: libc::sigset_t = std::mem::zeroed();
                        libc::sigemptyset(&mut one);
                        libc::sigaddset(&mut one, sig);
                        let zero = libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 0,
                        };
                        libc::sigtimedwait(&one, std::ptr::null_mut(), &zero);
                    }
                }
                libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut());
            }
        }
    }
    let set = write_signals();
    // SAFETY: plain signal-mask calls on valid sets.
    let _restore = unsafe {
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let mut before: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut before);
        Restore { old, before }
    };
    body()
}

/// Waits until `fd` can take a write, up to `deadline`. `Ok(false)` when
/// the deadline passed.
pub fn wait_writable(fd: RawFd, deadline: Instant) -> Result<bool, i32> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n > 0 {
            // POLLERR / POLLHUP: the write that follows reports the error.
            return Ok(true);
        }
        if n == 0 {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            continue;
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// One `write(2)`, retried on `EINTR`. `Ok(n)` with the bytes written.
pub fn write_once(fd: RawFd, buf: &[u8]) -> Result<usize, i32> {
    write_kind(fd, Kind::Regular, buf)
}

/// One write by the rules of `kind`: a socket is written with `send`
/// and `MSG_DONTWAIT` (it never blocks, whatever the fd's flags, and never
/// raises `SIGPIPE`), anything else with `write`. Retried on `EINTR`.
fn write_kind(fd: RawFd, kind: Kind, buf: &[u8]) -> Result<usize, i32> {
    loop {
        // SAFETY: `buf` is valid for its length; the fd is the caller's.
        let n = unsafe {
            if kind == Kind::Socket {
                libc::send(
                    fd,
                    buf.as_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            } else {
                libc::write(fd, buf.as_ptr().cast(), buf.len())
            }
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = errno();
        if e != libc::EINTR {
            return Err(e);
        }
    }
}

/// The crash flush's write (a fatal signal's handler): one write of `buf`
/// to `fd`, retried on `EINTR`. Anything but a regular file is first
/// waited for (`poll`, in slices of 10 ms, until `give_up`: `EAGAIN`) and
/// given at most `PIPE_BUF` bytes, so a stalled pipe or terminal never
/// blocks the handler. `Ok(n)` with the bytes written (never 0: a write
/// that takes nothing is `EIO`). Async-signal-safe: system calls only.
pub fn crash_write(
    fd: RawFd,
    kind: Kind,
    buf: &[u8],
    give_up: &dyn Fn() -> bool,
) -> Result<usize, i32> {
    let buf = if kind == Kind::Regular {
        buf
    } else {
        &buf[..buf.len().min(libc::PIPE_BUF)]
    };
    loop {
        if kind != Kind::Regular {
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 10) } == 0 {
                if give_up() {
                    return Err(libc::EAGAIN);
                }
                continue;
            }
        }
        match write_kind(fd, kind, buf) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => return Ok(n),
            Err(libc::EAGAIN) if !give_up() => {}
            Err(e) => return Err(e),
        }
    }
}

/// Writes the frames to a stream-like fd (a pipe, socket, terminal or
/// device, or a regular file nobody else appends to), resuming at the
/// exact byte after a partial write. On a pipe each write holds whole
/// frames of at most `PIPE_BUF` bytes together (a longer frame alone), so
/// frames of at most `PIPE_BUF` bytes never interleave with other writers'.
/// Before writing to anything but a regular file it waits for room, and
/// writes at most `PIPE_BUF` bytes at a time (a socket, without blocking
/// at all), so a full pipe, socket or terminal whose reader stalls blocks
/// the writer at most `stall` without progress; past it the write fails
/// with `EAGAIN`. `EAGAIN` from a non-blocking fd is waited out the same
/// way.
pub fn write_frames(
    fd: RawFd,
    kind: Kind,
    frames: &mut Frames,
    counters: &Counters,
    stall: Duration,
) -> Result<(), i32> {
    let limit = match kind {
        Kind::Regular | Kind::Socket => 1 << 20,
        // `poll` says there is room for at least this much.
        Kind::Pipe | Kind::Other => libc::PIPE_BUF,
    };
    let mut deadline = Instant::now() + stall;
    while !frames.is_empty() {
        if kind != Kind::Regular && !wait_writable(fd, deadline)? {
            return Err(libc::EAGAIN);
        }
        let chunk = frames.chunk(limit);
        // A frame longer than the limit goes out in pieces (resumed exactly).
        let chunk = &chunk[..chunk.len().min(limit)];
        match write_kind(fd, kind, chunk) {
            Ok(0) => return Err(libc::EIO),
            Ok(n) => {
                frames.advance(n, counters);
                deadline = Instant::now() + stall;
            }
            Err(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => {
                if kind == Kind::Regular && !wait_writable(fd, deadline)? {
                    return Err(libc::EAGAIN);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The program's short name: the last part of `argv[0]`, else
/// `/proc/self/comm`.
pub fn program_name() -> Vec<u8> {
    let from_args = std::env::args_os().next().and_then(|a| {
        std::path::Path::new(&a)
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
            .filter(|n| !n.is_empty())
    });
    from_args
        .or_else(|| {
            std::fs::read("/proc/self/comm")
                .ok()
                .map(|c| c.trim_ascii_end().to_vec())
        })
        .unwrap_or_default()
}
