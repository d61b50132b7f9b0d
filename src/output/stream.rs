//! Streams the program owns: a file descriptor, or a C `FILE *`.

use std::os::fd::RawFd;
use std::time::Duration;

use super::file::{write_appending, AppendState};
use super::frames::{Counters, Frames};
use super::sys::{self, Kind};
use super::Target;

/// A file descriptor the program owns (stderr by default); never closed.
///
/// A regular file opened with `O_APPEND` (`>>` in a shell) gets the
/// append-safe rules of [`super::file`]; anything else resumes a partial
/// write at the exact byte.
pub struct FdTarget {
    fd: RawFd,
    kind: Kind,
    append: Option<AppendState>,
    stall: Duration,
    /// A frame was dropped after part of it went out: write a newline
    /// before the next frame.
    fragment: bool,
}

impl FdTarget {
    /// Writes to `fd`, which must stay open while the target lives.
    pub fn new(fd: RawFd, stall: Duration) -> FdTarget {
        let kind = sys::kind(fd);
        // SAFETY: F_GETFL on any fd is harmless.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        let append = (kind == Kind::Regular && flags >= 0 && flags & libc::O_APPEND != 0)
            .then(AppendState::opened);
        FdTarget {
            fd,
            kind,
            append,
            stall,
            fragment: false,
        }
    }
}

/// Writes frames to `fd` by the rules of its kind.
fn write_fd(
    fd: RawFd,
    kind: Kind,
    append: &mut Option<AppendState>,
    fragment: &mut bool,
    frames: &mut Frames,
    counters: &Counters,
    stall: Duration,
) -> Result<(), i32> {
    if let Some(state) = append {
        return write_appending(fd, frames, counters, state, usize::MAX).map(|_| ());
    }
    if *fragment {
        let deadline_frames = &mut Frames::default();
        deadline_frames.push(|b| b.push(b'\n'));
        sys::write_frames(fd, kind, deadline_frames, &Counters::default(), stall)?;
        *fragment = false;
    }
    sys::write_frames(fd, kind, frames, counters, stall)
}

impl Target for FdTarget {
    fn write(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32> {
        write_fd(
            self.fd,
            self.kind,
            &mut self.append,
            &mut self.fragment,
            frames,
            counters,
            self.stall,
        )
    }

    fn fragment_left(&mut self) {
        match &mut self.append {
            Some(state) => state.check_tail = true,
            None => self.fragment = true,
        }
    }
}

/// A C `FILE *` the program owns; never closed.
///
/// Each write holds the stream's lock (`flockfile`), flushes what the
/// program left in the stream's buffer, then writes through the stream's
/// file descriptor by the rules of [`FdTarget`], so `EINTR`, `EAGAIN` and
/// partial writes are handled exactly and lines never interleave with the
/// program's writes through the same stream. A stream without a file
/// descriptor (`fmemopen`, `fopencookie`) is written with `fwrite`.
pub struct StdioTarget {
    stream: *mut libc::FILE,
    fd: RawFd,
    kind: Kind,
    append: Option<AppendState>,
    stall: Duration,
    fragment: bool,
}

// SAFETY: a FILE * may be used from any thread (stdio locks it per call,
// and this target holds the lock around its own use); the program promises
// it stays open while the target lives.
unsafe impl Send for StdioTarget {}

extern "C" {
    fn flockfile(stream: *mut libc::FILE);
    fn funlockfile(stream: *mut libc::FILE);
}

impl StdioTarget {
    /// # Safety
    /// `stream` must be a valid, open `FILE *` for as long as the target
    /// lives.
    pub unsafe fn new(stream: *mut libc::FILE, stall: Duration) -> StdioTarget {
        // SAFETY: the caller's promise.
        let fd = unsafe { libc::fileno(stream) };
        let fd_target = (fd >= 0).then(|| FdTarget::new(fd, stall));
        StdioTarget {
            stream,
            fd,
            kind: fd_target.as_ref().map_or(Kind::Other, |t| t.kind),
            append: fd_target.and_then(|t| t.append),
            stall,
            fragment: false,
        }
    }

    /// `fwrite`, for a stream with no file descriptor.
    fn write_stdio(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32> {
        let mut interrupted = 0;
        while !frames.is_empty() {
            let chunk = frames.chunk(1 << 20);
            // SAFETY: the stream is valid (constructor contract).
            let n = unsafe { libc::fwrite(chunk.as_ptr().cast(), 1, chunk.len(), self.stream) };
            let short = n < chunk.len();
            frames.advance(n, counters);
            if short {
                let e = sys::errno();
                // SAFETY: as above.
                unsafe { libc::clearerr(self.stream) };
                if (e == libc::EINTR || e == libc::EAGAIN) && interrupted < 100 {
                    interrupted += 1;
                    continue;
                }
                return Err(e);
            }
        }
        // SAFETY: as above.
        if unsafe { libc::fflush(self.stream) } != 0 {
            let e = sys::errno();
            // SAFETY: as above.
            unsafe { libc::clearerr(self.stream) };
            return Err(e);
        }
        Ok(())
    }
}

impl Target for StdioTarget {
    fn write(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32> {
        // SAFETY: the stream is valid (constructor contract); the lock is
        // released below on every path.
        unsafe { flockfile(self.stream) };
        let result = if self.fd < 0 {
            self.write_stdio(frames, counters)
        } else {
            // What the program wrote through the stream goes out first. A
            // failure there is the program's own data, reported to it by
            // stdio; ours is written regardless.
            // SAFETY: as above.
            if unsafe { libc::fflush(self.stream) } != 0 {
                // SAFETY: as above.
                unsafe { libc::clearerr(self.stream) };
            }
            write_fd(
                self.fd,
                self.kind,
                &mut self.append,
                &mut self.fragment,
                frames,
                counters,
                self.stall,
            )
        };
        // SAFETY: locked above.
        unsafe { funlockfile(self.stream) };
        result
    }

    fn fragment_left(&mut self) {
        match &mut self.append {
            Some(state) => state.check_tail = true,
            None => self.fragment = true,
        }
    }
}
