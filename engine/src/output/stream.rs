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
    /// `EBADF` when `fd` is not open: a closed fd (stderr closed) would
    /// later write into whatever file takes its number.
    pub fn new(fd: RawFd, stall: Duration) -> std::io::Result<FdTarget> {
        // SAFETY: F_GETFL on any fd is harmless.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let kind = sys::kind(fd);
        let append = (kind == Kind::Regular && flags >= 0 && flags & libc::O_APPEND != 0)
            .then(|| AppendState::opened(fd));
        Ok(FdTarget {
            fd,
            kind,
            append,
            stall,
            fragment: false,
        })
    }
}

impl Target for FdTarget {
    fn crash_fd(&self) -> Option<RawFd> {
        Some(self.fd)
    }

    fn write(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32> {
        if let Some(state) = &mut self.append {
            return write_appending(self.fd, frames, counters, state, usize::MAX).map(|_| ());
        }
        if self.fragment {
            let mut newline = Frames::default();
            newline.push(|b| b.push(b'\n'));
            sys::write_frames(
                self.fd,
                self.kind,
                &mut newline,
                &Counters::default(),
                self.stall,
            )?;
            self.fragment = false;
        }
        sys::write_frames(self.fd, self.kind, frames, counters, self.stall)
    }

    fn fragment_left(&mut self) {
        match &mut self.append {
            // A fragment left in a shared file: see `write_appending`.
            Some(_) => {}
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
    /// The stream's fd, written by the rules of [`FdTarget`]; `None` for a
    /// stream without one.
    fd: Option<FdTarget>,
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
    pub unsafe fn new(stream: *mut libc::FILE, stall: Duration) -> std::io::Result<StdioTarget> {
        // SAFETY: the caller's promise.
        let fd = unsafe { libc::fileno(stream) };
        Ok(StdioTarget {
            stream,
            fd: if fd >= 0 {
                Some(FdTarget::new(fd, stall)?)
            } else {
                None
            },
        })
    }

    /// `fwrite` and `fflush`, for a stream with no file descriptor. Records
    /// count as written only once `fflush` succeeded; when it fails, the
    /// records of this call are counted lost (how much of them the stream
    /// passed on cannot be known, so none is written twice).
    fn write_stdio(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32> {
        let mut accepted = 0;
        let mut retries = 0;
        let mut failure = None;
        while accepted < frames.bytes() {
            let chunk = &frames.unwritten()[accepted..];
            // SAFETY: the stream is valid (constructor contract).
            let n = unsafe { libc::fwrite(chunk.as_ptr().cast(), 1, chunk.len(), self.stream) };
            accepted += n;
            if n < chunk.len() {
                let e = sys::errno();
                // SAFETY: as above.
                unsafe { libc::clearerr(self.stream) };
                if (e == libc::EINTR || e == libc::EAGAIN) && retries < 100 {
                    retries += 1;
                    continue;
                }
                failure = Some(e);
                break;
            }
        }
        if failure.is_none() {
            // SAFETY: as above.
            if unsafe { libc::fflush(self.stream) } == 0 {
                frames.advance(accepted, counters);
                return Ok(());
            }
            failure = Some(sys::errno());
            // SAFETY: as above.
            unsafe { libc::clearerr(self.stream) };
        }
        frames.drop_touched(accepted, counters);
        Err(failure.unwrap_or(libc::EIO))
    }
}

impl Target for StdioTarget {
    fn write(&mut self, frames: &mut Frames, counters: &Counters) -> Result<(), i32> {
        // SAFETY: the stream is valid (constructor contract); the lock is
        // released below on every path.
        unsafe { flockfile(self.stream) };
        let result = match &mut self.fd {
            None => self.write_stdio(frames, counters),
            Some(fd) => {
                // What the program wrote through the stream goes out first.
                // A failure there is the program's own data, reported to it
                // by stdio; ours is written regardless.
                // SAFETY: as above.
                if unsafe { libc::fflush(self.stream) } != 0 {
                    // SAFETY: as above.
                    unsafe { libc::clearerr(self.stream) };
                }
                fd.write(frames, counters)
            }
        };
        // SAFETY: locked above.
        unsafe { funlockfile(self.stream) };
        result
    }

    fn fragment_left(&mut self) {
        if let Some(fd) = &mut self.fd {
            fd.fragment_left();
        }
    }
}
