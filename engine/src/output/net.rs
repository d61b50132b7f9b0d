//! Delivery of syslog messages over the network (and unix datagram
//! sockets), on a sender thread the sink owns, so the listener thread never
//! waits on the network.
//!
//! ```text
//! listener thread: handle ─ format ─▶ queue (≤ buffer_bytes; oldest dropped, lost)
//!                                        │
//! "ql-syslog" thread:   ◀──── takes a batch (≤ BATCH_BYTES, or the RELP window)
//!                       connect (backoff MIN..max) ─▶ write ─▶ written
//!                                                    (RELP: when acked)
//! ```
//!
//! Every record is `received` once on the listener thread, and leaves the
//! account once: `written` by the sender, or `lost` (dropped from a full
//! queue by the listener, or left undelivered when the sink is freed).
//! `received == written + lost + pending` holds at any time.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::format::{LocalClock, RecordView};
use super::frames::Counters;
use super::syslog::SyslogFormat;
use super::{sys, Sink};

/// The first wait before a new connection attempt after a failure; it
/// doubles after each failure up to the `backoff_max` option.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Bytes of messages the sender takes from the queue at once (on a stream
/// transport); they are held by the sender until written, outside the
/// queue's bound.
pub const BATCH_BYTES: usize = 64 << 10;

/// The largest buffer kept for reuse (1024 spares at most: 64 MiB at
/// worst, typically a few KiB each).
const SPARE_MAX_CAPACITY: usize = 64 << 10;

/// The slice every blocking socket call is cut into, so that a stop is
/// seen within it.
const SLICE: Duration = Duration::from_millis(50);

/// The software name sent in a RELP `open`.
const RELP_SOFTWARE: &str = concat!("queue_listener,", env!("CARGO_PKG_VERSION"));

/// Where messages go.
#[derive(Clone)]
pub enum Transport {
    /// A unix datagram socket (`/dev/log`): one message per datagram.
    Unix(PathBuf),
    /// UDP: one message per datagram.
    Udp(String, u16),
    /// TCP with octet counting (RFC 6587): `LEN SP MSG`.
    Tcp(String, u16),
    /// TLS with octet counting (RFC 5425).
    Tls(
        String,
        u16,
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    ),
    /// RELP over TCP.
    Relp(String, u16),
}

impl Transport {
    /// TLS to `host`:`port`, the server's certificate verified against the
    /// CA certificates (PEM) in `ca_file` and the name `server_name` (the
    /// host when `None`). `None` for an unreadable CA file, one without a
    /// certificate, or a name that is not a valid DNS name or IP address.
    pub fn tls(
        host: String,
        port: u16,
        ca_file: &std::path::Path,
        server_name: Option<String>,
    ) -> Option<Transport> {
        let config = tls_config(ca_file).ok()?;
        let name = server_name.unwrap_or_else(|| host.clone());
        let name = rustls::pki_types::ServerName::try_from(name).ok()?;
        Some(Transport::Tls(host, port, config, name))
    }
}

/// Builds the TLS configuration: server certificates verified against the
/// CA certificates (PEM) in `ca_file`, TLS 1.2 and 1.3, no client
/// certificate.
pub fn tls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_file.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate", ca_file.display()));
    }
    // ring, not aws-lc-rs: no cmake or C toolchain beyond cc for users.
    // rustls 0.23.48 deprecates it for lacking post-quantum key exchange
    // (X25519MLKEM768); classical X25519/P-256 it keeps (docs/syslog.md).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The delivery options.
#[derive(Clone)]
pub struct NetOptions {
    /// Where to.
    pub transport: Transport,
    /// The most bytes of formatted messages the queue holds; past it the
    /// oldest are dropped (counted lost).
    pub buffer_bytes: usize,
    /// How long a connection attempt, a write without progress, or (RELP)
    /// an acknowledgement may take before the connection is given up and
    /// made again.
    pub timeout: Duration,
    /// How long a flush (barrier, stop, free) waits for delivery.
    pub flush_timeout: Duration,
    /// The longest wait between connection attempts.
    pub backoff_max: Duration,
    /// RELP: the most messages sent and not yet acknowledged.
    pub relp_window: usize,
}

/// A sink formatting records as syslog messages and handing them to its
/// sender thread.
pub struct SyslogSink {
    format: SyslogFormat,
    clock: LocalClock,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    flush_timeout: Duration,
    buffer_bytes: usize,
    thread: Option<JoinHandle<()>>,
    /// The process that made the sink (and its thread).
    pid: u32,
    /// The last flush timed out and nothing was logged since: the end need
    /// not wait the flush timeout a second time.
    flush_failed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The sender waits here for work.
    work: Condvar,
    /// Flushes wait here for the sender to have delivered everything.
    done: Condvar,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Vec<u8>>,
    /// Bytes in `queue`.
    bytes: usize,
    /// Messages the sender holds (taken from the queue, not yet delivered).
    inflight: usize,
    /// The sender waits on `work`.
    idle: bool,
    /// A flush asks the sender to try to connect now.
    hurry: bool,
    stop: bool,
    /// Buffers to reuse.
    spare: Vec<Vec<u8>>,
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn failed(counters: &Counters, errno: i32) {
    add(&counters.write_errors, 1);
    add(&counters.deferred_errors, 1);
    counters.last_errno.store(errno, Ordering::Relaxed);
}

impl SyslogSink {
    /// Starts the sender thread; it connects in the background (a
    /// collector down now is no error).
    pub fn new(
        format: SyslogFormat,
        options: NetOptions,
        counters: Arc<Counters>,
    ) -> io::Result<SyslogSink> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let (s, c, o) = (Arc::clone(&shared), Arc::clone(&counters), options.clone());
        let thread = std::thread::Builder::new()
            .name("ql-syslog".into())
            .spawn(move || Sender::new(s, c, o).run())?;
        Ok(SyslogSink {
            format,
            clock: LocalClock::default(),
            shared,
            counters,
            flush_timeout: options.flush_timeout,
            buffer_bytes: options.buffer_bytes,
            thread: Some(thread),
            pid: std::process::id(),
            flush_failed: false,
        })
    }

    /// Waits up to the flush timeout for the sender to deliver everything
    /// queued; true when it did.
    fn wait_delivered(&mut self) -> bool {
        let deadline = Instant::now() + self.flush_timeout;
        let mut st = lock(&self.shared);
        st.hurry = true;
        self.shared.work.notify_one();
        loop {
            if st.queue.is_empty() && st.inflight == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            st = self
                .shared
                .done
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Sink for SyslogSink {
    fn handle(&mut self, record: &RecordView) -> Result<(), i32> {
        add(&self.counters.received, 1);
        self.flush_failed = false;
        let mut msg = lock(&self.shared).spare.pop().unwrap_or_default();
        msg.clear();
        // The message's room, made fallibly (a long record, out of
        // memory): the record is then counted lost, and the process goes on.
        if msg
            .try_reserve(super::format::max_record_len(record))
            .is_err()
        {
            add(&self.counters.lost, 1);
            self.counters
                .last_errno
                .store(libc::ENOMEM, Ordering::Relaxed);
            return Err(libc::ENOMEM);
        }
        self.format.write(&mut self.clock, record, &mut msg);
        // A message cut to max_len keeps the allocation of its whole
        // formatted length (up to the record's 1 MiB message and 128
        // fields): the queue's bound counts lengths, so give the rest back.
        if msg.capacity() > 2 * msg.len().max(SPARE_MAX_CAPACITY / 16) {
            msg.shrink_to_fit();
        }
        let mut st = lock(&self.shared);
        st.bytes += msg.len();
        st.queue.push_back(msg);
        let mut dropped = 0;
        while st.bytes > self.buffer_bytes && st.queue.len() > 1 {
            let old = st.queue.pop_front().expect("len checked");
            st.bytes -= old.len();
            dropped += 1;
        }
        if dropped > 0 {
            add(&self.counters.lost, dropped);
        }
        if st.idle {
            st.idle = false;
            self.shared.work.notify_one();
        }
        Ok(())
    }

    fn batch_end(&mut self) {}

    /// Waits (up to the flush timeout) for delivery; what is not delivered
    /// then stays pending, and the sender keeps trying.
    fn flush(&mut self) {
        self.flush_failed = !self.wait_delivered();
    }

    /// The listener is being freed: see `SyslogSink::finish`.
    fn close(&mut self) {
        self.finish();
    }
}

impl SyslogSink {
    /// The handler's end: waits (up to the flush timeout, unless the last
    /// flush already waited in vain with nothing logged since) for delivery,
    /// then stops the sender: what it could not deliver is counted lost.
    /// Never waits longer than the flush timeout plus a slice of a socket
    /// call. Once only.
    fn finish(&mut self) {
        if self.thread.is_none() {
            return;
        }
        if std::process::id() != self.pid {
            // A fork child freeing an inherited handler: the thread is the
            // parent's (it does not exist here) and the lock may have been
            // held across the fork. Leave everything as it is.
            std::mem::forget(self.thread.take());
            std::mem::forget(Arc::clone(&self.shared));
            return;
        }
        if !self.flush_failed {
            self.wait_delivered();
        }
        lock(&self.shared).stop = true;
        self.shared.work.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Whatever is left (the sender panicked, or never ran).
        let mut st = lock(&self.shared);
        let left = st.queue.len() as u64 + st.inflight as u64;
        st.queue.clear();
        st.inflight = 0;
        add(&self.counters.lost, left);
    }
}

impl Drop for SyslogSink {
    /// As [`Sink::close`], when the handler was not closed first.
    fn drop(&mut self) {
        self.finish();
    }
}

/// A message the sender holds.
struct Item {
    msg: Vec<u8>,
    /// RELP: the transaction number it was sent with on the current
    /// connection (0: not sent).
    txnr: u32,
    /// RELP: acknowledged (waiting for older ones).
    acked: bool,
}

enum Link {
    Unix(UnixDatagram),
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::ClientConnection>, TcpStream),
    Relp(TcpStream, Relp),
}

/// A RELP session's state.
#[derive(Default)]
struct Relp {
    next_txnr: u32,
    /// Bytes read, not yet parsed.
    input: Vec<u8>,
    /// When the oldest unacknowledged message was sent.
    oldest_sent: Option<Instant>,
    /// The items before this index were sent on this connection (or are
    /// done): only the rest need looking at to send.
    sent_upto: usize,
}

/// Why a socket call ended without success.
enum Fail {
    /// The sink is being freed.
    Stopped,
    /// An errno.
    Errno(i32),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Errno(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

struct Sender {
    shared: Arc<Shared>,
    counters: Arc<Counters>,
    options: NetOptions,
    items: VecDeque<Item>,
    link: Option<Link>,
    backoff: Duration,
    next_attempt: Instant,
    connected_once: bool,
    wbuf: Vec<u8>,
    spare: Vec<Vec<u8>>,
}

impl Sender {
    fn new(shared: Arc<Shared>, counters: Arc<Counters>, options: NetOptions) -> Sender {
        Sender {
            shared,
            counters,
            options,
            items: VecDeque::new(),
            link: None,
            backoff: BACKOFF_MIN,
            next_attempt: Instant::now(),
            connected_once: false,
            wbuf: Vec::new(),
            spare: Vec::new(),
        }
    }

    fn stopping(&self) -> bool {
        lock(&self.shared).stop
    }

    fn run(mut self) {
        sys::block_write_signals_for_thread();
        while self.take_work() {
            if self.link.is_none() {
                match self.connect() {
                    Ok(link) => {
                        self.link = Some(link);
                        self.backoff = BACKOFF_MIN;
                        if self.connected_once {
                            add(&self.counters.reopens, 1);
                        }
                        self.connected_once = true;
                        // RELP: everything sent on the lost connection and
                        // not acknowledged goes again.
                        // (Items acknowledged, or refused, wait only for
                        // older ones to be acknowledged: they stay done.)
                        let mut resent = 0;
                        for i in self.items.iter_mut().filter(|i| !i.acked) {
                            resent += u64::from(i.txnr != 0);
                            i.txnr = 0;
                        }
                        add(&self.counters.resent, resent);
                    }
                    Err(Fail::Stopped) => break,
                    Err(Fail::Errno(e)) => {
                        self.give_up(e);
                        continue;
                    }
                }
            }
            match self.send() {
                Ok(()) => {}
                Err(Fail::Stopped) => break,
                Err(Fail::Errno(e)) => self.give_up(e),
            }
            self.recycle();
        }
        self.close();
        // RELP items acknowledged behind an older unacknowledged one were
        // delivered; refused ones (txnr u32::MAX) were counted lost already.
        let acked = self.items.iter().filter(|i| i.acked && i.txnr != u32::MAX);
        let refused = self.items.iter().filter(|i| i.acked && i.txnr == u32::MAX);
        let (acked, refused) = (acked.count() as u64, refused.count() as u64);
        add(&self.counters.written, acked);
        let mut st = lock(&self.shared);
        let left = self.items.len() as u64 - acked - refused + st.queue.len() as u64;
        st.queue.clear();
        st.inflight = 0;
        self.items.clear();
        add(&self.counters.lost, left);
        self.shared.done.notify_all();
    }

    /// A connection failed or could not be made: counted, and the next
    /// attempt waits.
    fn give_up(&mut self, errno: i32) {
        failed(&self.counters, errno);
        self.link = None;
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(self.options.backoff_max.max(BACKOFF_MIN));
    }

    /// Gives the spare buffers back for the listener to reuse.
    fn recycle(&mut self) {
        if self.spare.is_empty() {
            return;
        }
        let mut st = lock(&self.shared);
        while st.spare.len() < 1024 {
            match self.spare.pop() {
                // Big buffers are not kept: the spares would hold memory
                // outside the buffer's bound for good.
                Some(b) if b.capacity() > SPARE_MAX_CAPACITY => {}
                Some(b) => st.spare.push(b),
                None => break,
            }
        }
        self.spare.clear();
    }

    /// Waits for something to do; false when stopping.
    fn take_work(&mut self) -> bool {
        let relp = matches!(self.options.transport, Transport::Relp(..));
        let mut st = lock(&self.shared);
        loop {
            if st.stop {
                return false;
            }
            if st.hurry {
                st.hurry = false;
                if self.link.is_none() {
                    self.next_attempt = Instant::now();
                }
            }
            // Take more from the queue.
            // (RELP is bounded by its window: no need to sum.)
            let mut held: usize = if relp {
                0
            } else {
                self.items.iter().map(|i| i.msg.len()).sum()
            };
            let max_items = if relp {
                self.options.relp_window
            } else {
                usize::MAX
            };
            while self.items.len() < max_items && (held < BATCH_BYTES || self.items.is_empty()) {
                let Some(msg) = st.queue.pop_front() else {
                    break;
                };
                st.bytes -= msg.len();
                held += msg.len();
                self.items.push_back(Item {
                    msg,
                    txnr: 0,
                    acked: false,
                });
            }
            st.inflight = self.items.len();
            if self.items.is_empty() {
                self.shared.done.notify_all();
                st.idle = true;
                st = self
                    .shared
                    .work
                    .wait_timeout(st, Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                st.idle = false;
                continue;
            }
            if self.link.is_none() {
                let now = Instant::now();
                if now < self.next_attempt {
                    st.idle = false;
                    st = self
                        .shared
                        .work
                        .wait_timeout(st, self.next_attempt - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    continue;
                }
            }
            return true;
        }
    }

    fn connect(&mut self) -> Result<Link, Fail> {
        let timeout = self.options.timeout;
        match self.options.transport.clone() {
            Transport::Unix(path) => {
                let s = UnixDatagram::unbound()?;
                s.connect(&path)?;
                s.set_write_timeout(Some(SLICE))?;
                Ok(Link::Unix(s))
            }
            Transport::Udp(host, port) => {
                let mut last = Fail::Errno(libc::EHOSTUNREACH);
                for addr in resolve(&host, port)? {
                    let any: SocketAddr = if addr.is_ipv4() {
                        "0.0.0.0:0".parse().expect("valid")
                    } else {
                        "[::]:0".parse().expect("valid")
                    };
                    let s = UdpSocket::bind(any)?;
                    match s.connect(addr) {
                        Ok(()) => {
                            s.set_write_timeout(Some(SLICE))?;
                            return Ok(Link::Udp(s));
                        }
                        Err(e) => last = e.into(),
                    }
                }
                Err(last)
            }
            Transport::Tcp(host, port) => Ok(Link::Tcp(self.tcp(&host, port)?)),
            Transport::Tls(host, port, config, name) => {
                let mut sock = self.tcp(&host, port)?;
                let mut tls = rustls::ClientConnection::new(config, name)
                    .map_err(|_| Fail::Errno(libc::EPROTO))?;
                // rustls takes at most 64 KiB of plaintext by default: a
                // longer message (up to 1 MiB) would be refused whole
                // (WriteZero) at every attempt. What it holds is bounded by
                // what `send_tls` writes at once (16 KiB, or one message),
                // drained before the next write.
                tls.set_buffer_limit(None);
                let deadline = Instant::now() + timeout;
                while tls.is_handshaking() {
                    self.tls_io(&mut tls, &mut sock, deadline)?;
                }
                Ok(Link::Tls(Box::new(tls), sock))
            }
            Transport::Relp(host, port) => {
                let mut sock = self.tcp(&host, port)?;
                let mut relp = Relp {
                    next_txnr: 1,
                    ..Relp::default()
                };
                let offer =
                    format!("relp_version=0\nrelp_software={RELP_SOFTWARE}\ncommands=syslog");
                let frame = format!("1 open {} {}\n", offer.len(), offer);
                let deadline = Instant::now() + timeout;
                let mut pos = 0;
                self.write_sliced(&mut sock, frame.as_bytes(), &mut pos, deadline)?;
                relp.next_txnr = 2;
                loop {
                    if let Some((txnr, command, data)) = relp.frame()? {
                        if txnr == 1 && command == "rsp" && data.starts_with(b"200") {
                            return Ok(Link::Relp(sock, relp));
                        }
                        return Err(Fail::Errno(libc::EPROTO));
                    }
                    self.read_sliced(&mut sock, &mut relp.input, deadline)?;
                }
            }
        }
    }

    /// A TCP connection, made within the timeout, a stop seen within a
    /// slice.
    fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, Fail> {
        let mut last = Fail::Errno(libc::EHOSTUNREACH);
        for addr in resolve(host, port)? {
            match self.tcp_to(addr) {
                Ok(s) => return Ok(s),
                Err(Fail::Stopped) => return Err(Fail::Stopped),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn tcp_to(&self, addr: SocketAddr) -> Result<TcpStream, Fail> {
        let deadline = Instant::now() + self.options.timeout;
        // SAFETY: plain socket calls on our own fd; the sockaddr is built
        // from a SocketAddr and valid for its length.
        unsafe {
            let family = if addr.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            let fd = libc::socket(
                family,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            );
            if fd < 0 {
                return Err(Fail::Errno(sys::errno()));
            }
            // Owned from here: closed on every early return.
            let stream = TcpStream::from_raw_fd(fd);
            let (sa, len) = sockaddr(addr);
            if libc::connect(fd, (&raw const sa).cast(), len) != 0 {
                let e = sys::errno();
                if e != libc::EINPROGRESS {
                    return Err(Fail::Errno(e));
                }
                loop {
                    if self.stopping() {
                        return Err(Fail::Stopped);
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Fail::Errno(libc::ETIMEDOUT));
                    }
                    if poll(fd, libc::POLLOUT, SLICE.min(deadline - now)) {
                        break;
                    }
                }
                let mut err: libc::c_int = 0;
                let mut l = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&raw mut err).cast(),
                    &mut l,
                );
                if err != 0 {
                    return Err(Fail::Errno(err));
                }
            }
            stream.set_nonblocking(false)?;
            stream.set_write_timeout(Some(SLICE))?;
            stream.set_read_timeout(Some(SLICE))?;
            // A collector that vanished (no RST) is found within the
            // timeout when data waits for its acknowledgement.
            let ms = self.options.timeout.as_millis().min(u32::MAX as u128) as libc::c_uint;
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                (&raw const ms).cast(),
                std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
            );
            Ok(stream)
        }
    }

    /// Writes `buf[*pos..]`, advancing `pos`, until done, the deadline
    /// passes without progress, or a stop.
    fn write_sliced(
        &self,
        sock: &mut impl Write,
        buf: &[u8],
        pos: &mut usize,
        mut deadline: Instant,
    ) -> Result<(), Fail> {
        while *pos < buf.len() {
            match sock.write(&buf[*pos..]) {
                Ok(0) => return Err(Fail::Errno(libc::EPIPE)),
                Ok(n) => {
                    *pos += n;
                    deadline = Instant::now() + self.options.timeout;
                }
                Err(e) if would_block(&e) => {
                    if self.stopping() {
                        return Err(Fail::Stopped);
                    }
                    if Instant::now() >= deadline {
                        return Err(Fail::Errno(libc::ETIMEDOUT));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads what comes within one slice into `input`; EOF is `EPIPE`.
    fn read_sliced(
        &self,
        sock: &mut TcpStream,
        input: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<(), Fail> {
        let mut buf = [0u8; 4096];
        match sock.read(&mut buf) {
            Ok(0) => Err(Fail::Errno(libc::EPIPE)),
            Ok(n) => {
                input.extend_from_slice(&buf[..n]);
                Ok(())
            }
            Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {
                if self.stopping() {
                    Err(Fail::Stopped)
                } else if Instant::now() >= deadline {
                    Err(Fail::Errno(libc::ETIMEDOUT))
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One round of TLS input and output.
    fn tls_io(
        &self,
        tls: &mut rustls::ClientConnection,
        sock: &mut TcpStream,
        deadline: Instant,
    ) -> Result<(), Fail> {
        if tls.wants_write() {
            match tls.write_tls(sock) {
                Ok(_) => return Ok(()),
                Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        } else if tls.wants_read() {
            match tls.read_tls(sock) {
                Ok(0) => return Err(Fail::Errno(libc::EPIPE)),
                Ok(_) => {
                    tls.process_new_packets()
                        .map_err(|_| Fail::Errno(libc::EPROTO))?;
                    return Ok(());
                }
                Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.stopping() {
            return Err(Fail::Stopped);
        }
        if Instant::now() >= deadline {
            return Err(Fail::Errno(libc::ETIMEDOUT));
        }
        Ok(())
    }

    /// Delivers (or for RELP, sends and collects acknowledgements for) the
    /// items held.
    fn send(&mut self) -> Result<(), Fail> {
        let timeout = self.options.timeout;
        match self.link.take() {
            Some(Link::Unix(s)) => {
                let r = self.send_datagrams(|m| s.send(m));
                self.keep(r, Link::Unix(s))
            }
            Some(Link::Udp(s)) => {
                let r = self.send_datagrams(|m| s.send(m));
                self.keep(r, Link::Udp(s))
            }
            Some(Link::Tcp(mut sock)) => {
                let r = check_open(&mut sock).and_then(|()| {
                    self.fill_octet_counted(usize::MAX);
                    let buf = std::mem::take(&mut self.wbuf);
                    let mut pos = 0;
                    let r = self.write_sliced(&mut sock, &buf, &mut pos, Instant::now() + timeout);
                    self.advance(pos);
                    self.wbuf = buf;
                    r
                });
                self.keep(r, Link::Tcp(sock))
            }
            Some(link @ Link::Tls(..)) => {
                self.link = Some(link);
                self.send_tls()
            }
            Some(link @ Link::Relp(..)) => {
                self.link = Some(link);
                self.send_relp()
            }
            None => Ok(()),
        }
    }

    /// Keeps the link after a success.
    fn keep(&mut self, r: Result<(), Fail>, link: Link) -> Result<(), Fail> {
        if r.is_ok() {
            self.link = Some(link);
        }
        r
    }

    /// Frames the items held as `LEN SP MSG` into `wbuf`, whole items up to
    /// `limit` bytes (at least one).
    fn fill_octet_counted(&mut self, limit: usize) {
        self.wbuf.clear();
        for item in &self.items {
            if !self.wbuf.is_empty() && self.wbuf.len() + item.msg.len() + 8 > limit {
                break;
            }
            let _ = write!(self.wbuf, "{} ", item.msg.len());
            self.wbuf.extend_from_slice(&item.msg);
        }
    }

    /// `n` bytes of the octet-counted frames of the items went out: the
    /// items whole in them are written.
    fn advance(&mut self, n: usize) {
        let mut end = 0;
        let mut done = 0;
        for item in &self.items {
            end += decimal_len(item.msg.len()) + 1 + item.msg.len();
            if end > n {
                break;
            }
            done += 1;
        }
        self.complete(done);
    }

    /// The first `n` items are delivered.
    fn complete(&mut self, n: usize) {
        for _ in 0..n {
            let item = self.items.pop_front().expect("held");
            self.spare.push(item.msg);
        }
        add(&self.counters.written, n as u64);
        lock(&self.shared).inflight = self.items.len();
    }

    fn send_datagrams(&mut self, send: impl Fn(&[u8]) -> io::Result<usize>) -> Result<(), Fail> {
        let mut deadline = Instant::now() + self.options.timeout;
        let mut refused = false;
        while let Some(item) = self.items.front() {
            match send(&item.msg) {
                Ok(_) => {
                    self.complete(1);
                    deadline = Instant::now() + self.options.timeout;
                }
                Err(e) if would_block(&e) => {
                    if self.stopping() {
                        return Err(Fail::Stopped);
                    }
                    if Instant::now() >= deadline {
                        return Err(Fail::Errno(libc::ETIMEDOUT));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    // Too big for a datagram: never deliverable.
                    failed(&self.counters, libc::EMSGSIZE);
                    let item = self.items.pop_front().expect("held");
                    self.spare.push(item.msg);
                    add(&self.counters.lost, 1);
                    lock(&self.shared).inflight = self.items.len();
                }
                // UDP: an ICMP error for an earlier datagram is told once,
                // and this one was not sent: try it again once.
                Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) && !refused => {
                    refused = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn send_tls(&mut self) -> Result<(), Fail> {
        let timeout = self.options.timeout;
        let Some(Link::Tls(mut tls, mut sock)) = self.link.take() else {
            unreachable!("a TLS link");
        };
        let r = (|| {
            // What the collector sent (session tickets), and its close;
            // bounded, as in `check_open`.
            for _ in 0..16 {
                if !readable(&sock) {
                    break;
                }
                match tls.read_tls(&mut sock) {
                    Ok(0) => return Err(Fail::Errno(libc::EPIPE)),
                    Ok(_) => {
                        let state = tls
                            .process_new_packets()
                            .map_err(|_| Fail::Errno(libc::EPROTO))?;
                        if state.peer_has_closed() {
                            return Err(Fail::Errno(libc::EPIPE));
                        }
                        let n = state.plaintext_bytes_to_read();
                        if n > 0 {
                            let mut sink = vec![0; n];
                            let _ = tls.reader().read(&mut sink);
                        }
                    }
                    Err(e) if would_block(&e) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            while !self.items.is_empty() {
                // At most one TLS record (16 KiB) at a time, so what the
                // collector may have is whole records of whole messages.
                self.fill_octet_counted(16 << 10);
                let n = self.wbuf.len();
                tls.writer().write_all(&self.wbuf)?;
                let mut deadline = Instant::now() + timeout;
                while tls.wants_write() {
                    match tls.write_tls(&mut sock) {
                        Ok(_) => deadline = Instant::now() + timeout,
                        Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {
                            if self.stopping() {
                                return Err(Fail::Stopped);
                            }
                            if Instant::now() >= deadline {
                                return Err(Fail::Errno(libc::ETIMEDOUT));
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                self.advance(n);
            }
            Ok(())
        })();
        if r.is_ok() {
            self.link = Some(Link::Tls(tls, sock));
        }
        r
    }

    fn send_relp(&mut self) -> Result<(), Fail> {
        let timeout = self.options.timeout;
        let Some(Link::Relp(mut sock, mut relp)) = self.link.take() else {
            unreachable!("a RELP link");
        };
        let r = (|| {
            // Send every item not sent yet (the window is the batch).
            self.wbuf.clear();
            let from = relp.sent_upto.min(self.items.len());
            relp.sent_upto = self.items.len();
            for item in self
                .items
                .range_mut(from..)
                .filter(|i| i.txnr == 0 && !i.acked)
            {
                item.txnr = relp.next_txnr;
                relp.next_txnr = if relp.next_txnr >= RELP_TXNR_MAX {
                    1
                } else {
                    relp.next_txnr + 1
                };
                let _ = write!(self.wbuf, "{} syslog {} ", item.txnr, item.msg.len());
                self.wbuf.extend_from_slice(&item.msg);
                self.wbuf.push(b'\n');
                if relp.oldest_sent.is_none() {
                    relp.oldest_sent = Some(Instant::now());
                }
            }
            let buf = std::mem::take(&mut self.wbuf);
            let mut pos = 0;
            let w = self.write_sliced(&mut sock, &buf, &mut pos, Instant::now() + timeout);
            self.wbuf = buf;
            w?;
            // Collect acknowledgements: wait a slice when there is nothing
            // else to do (the queue is empty or the window full).
            let wait = {
                let st = lock(&self.shared);
                st.queue.is_empty() || self.items.len() >= self.options.relp_window
            };
            if wait || readable(&sock) {
                if !readable(&sock) {
                    poll(sock.as_raw_fd(), libc::POLLIN, Duration::from_millis(10));
                }
                if readable(&sock) {
                    self.read_sliced(&mut sock, &mut relp.input, Instant::now() + timeout)?;
                }
            }
            while let Some((txnr, command, data)) = relp.frame()? {
                match command.as_str() {
                    "rsp" => {
                        if let Some(item) = find_sent(&mut self.items, txnr) {
                            if data.starts_with(b"200") {
                                item.acked = true;
                            } else {
                                // Refused: the collector will not take it.
                                item.acked = true;
                                failed(&self.counters, libc::EPROTO);
                                add(&self.counters.lost, 1);
                                item.txnr = u32::MAX;
                            }
                        }
                    }
                    "serverclose" => return Err(Fail::Errno(libc::ECONNRESET)),
                    _ => {}
                }
            }
            let mut done = 0;
            let mut refused = 0;
            for item in &self.items {
                if !item.acked {
                    break;
                }
                if item.txnr == u32::MAX {
                    refused += 1;
                } else {
                    done += 1;
                }
            }
            if done + refused > 0 {
                // Items acknowledged in order leave; refused ones were
                // counted lost above.
                for _ in 0..done + refused {
                    let item = self.items.pop_front().expect("held");
                    self.spare.push(item.msg);
                }
                relp.sent_upto = relp.sent_upto.saturating_sub(done + refused);
                add(&self.counters.written, done as u64);
                lock(&self.shared).inflight = self.items.len();
                // The new head (never acknowledged: the loop above stopped
                // at it) is the oldest waiting, if it was sent.
                relp.oldest_sent = self
                    .items
                    .front()
                    .is_some_and(|i| i.txnr != 0)
                    .then(Instant::now);
            }
            if let Some(t) = relp.oldest_sent {
                if t.elapsed() >= timeout {
                    return Err(Fail::Errno(libc::ETIMEDOUT));
                }
            }
            Ok(())
        })();
        if r.is_ok() {
            self.link = Some(Link::Relp(sock, relp));
        }
        r
    }

    /// Ends the connection politely (RELP `close`, TLS `close_notify`).
    fn close(&mut self) {
        match self.link.take() {
            Some(Link::Relp(mut sock, mut relp)) => {
                let frame = format!("{} close 0\n", relp.next_txnr);
                let deadline = Instant::now() + Duration::from_millis(500);
                let _ = sock.write_all(frame.as_bytes());
                while Instant::now() < deadline {
                    match sock.read(&mut [0u8; 512]) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if would_block(&e) => {}
                        Err(_) => break,
                    }
                }
                relp.input.clear();
            }
            Some(Link::Tls(mut tls, mut sock)) => {
                tls.send_close_notify();
                let deadline = Instant::now() + Duration::from_millis(500);
                while tls.wants_write() && Instant::now() < deadline {
                    match tls.write_tls(&mut sock) {
                        Ok(_) => {}
                        Err(e) if would_block(&e) => {}
                        Err(_) => break,
                    }
                }
                linger(&mut sock, deadline);
            }
            Some(Link::Tcp(mut sock)) => {
                linger(&mut sock, Instant::now() + Duration::from_millis(500))
            }
            _ => {}
        }
    }
}

/// Closes a stream without losing what the collector has not read yet:
/// closing a socket that holds unread input (a TLS 1.3 server's session
/// tickets, sent after the handshake and never read) sends a reset instead
/// of a FIN, and a reset makes the collector's kernel throw away what it
/// had received and not yet handed to the collector: the last records,
/// counted written. So: shut down our side (FIN after all our data), then
/// read and discard until the collector closes its side, an error, or
/// `deadline`.
fn linger(sock: &mut TcpStream, deadline: Instant) {
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if would_block(&e) => {}
            Err(_) => break,
        }
    }
}

impl Relp {
    /// Parses one frame from the input: `TXNR SP COMMAND SP DATALEN [SP
    /// DATA] LF`. `None` when it is not complete yet.
    fn frame(&mut self) -> Result<Option<(u32, String, Vec<u8>)>, Fail> {
        let bad = || Fail::Errno(libc::EPROTO);
        let input = &self.input;
        let mut fields = Vec::new();
        let mut start = 0;
        // TXNR, COMMAND, DATALEN.
        for (i, &b) in input.iter().enumerate() {
            if fields.len() == 3 {
                break;
            }
            if b == b' ' || b == b'\n' {
                fields.push((start, i));
                start = i + 1;
                if b == b'\n' && fields.len() < 3 {
                    return Err(bad());
                }
            } else if i - start > 32 {
                return Err(bad());
            }
        }
        if fields.len() < 3 {
            return Ok(None);
        }
        let text = |(a, b): (usize, usize)| std::str::from_utf8(&input[a..b]).map_err(|_| bad());
        let txnr: u32 = text(fields[0])?.parse().map_err(|_| bad())?;
        let command = text(fields[1])?.to_string();
        let len: usize = text(fields[2])?.parse().map_err(|_| bad())?;
        if len > 1 << 20 {
            return Err(bad());
        }
        // After DATALEN: LF (no data), or SP DATA LF.
        let after = fields[2].1;
        let (data_start, end) = if len == 0 {
            (after, after + 1)
        } else {
            (after + 1, after + 1 + len + 1)
        };
        if input.len() < end {
            return Ok(None);
        }
        if input[end - 1] != b'\n' {
            return Err(bad());
        }
        let data = input[data_start..data_start + len].to_vec();
        self.input.drain(..end);
        Ok(Some((txnr, command, data)))
    }
}

/// The item sent with `txnr` and not yet acknowledged. Items are sent in
/// order with consecutive numbers, so it is found by its distance from the
/// first one; a linear search covers the rest (items acknowledged behind
/// an unacknowledged one keep the numbers of an older connection).
fn find_sent(items: &mut VecDeque<Item>, txnr: u32) -> Option<&mut Item> {
    let base = items.front()?.txnr;
    let guess = if txnr >= base {
        txnr - base
    } else {
        txnr + (RELP_TXNR_MAX - base)
    } as usize;
    let direct = items.get(guess).is_some_and(|i| i.txnr == txnr && !i.acked);
    if direct {
        return items.get_mut(guess);
    }
    items.iter_mut().find(|i| i.txnr == txnr && !i.acked)
}

/// RELP transaction numbers go from 1 to this, then start again at 1.
const RELP_TXNR_MAX: u32 = 999_999_999;

fn decimal_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Fail> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|_| Fail::Errno(libc::EHOSTUNREACH))?
        .collect();
    if addrs.is_empty() {
        return Err(Fail::Errno(libc::EHOSTUNREACH));
    }
    Ok(addrs)
}

/// True when `fd` shows `events` within `timeout`.
fn poll(fd: RawFd, events: libc::c_short, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n > 0 && p.revents != 0
}

fn readable(sock: &TcpStream) -> bool {
    poll(sock.as_raw_fd(), libc::POLLIN, Duration::ZERO)
}

/// A plain syslog collector never sends: anything readable on the
/// connection is its end (EOF) or a reset. Checked before each write, so
/// a restarted collector is seen before records go into a dead
/// connection.
fn check_open(sock: &mut TcpStream) -> Result<(), Fail> {
    let mut buf = [0u8; 4096];
    // Bounded: a peer that sends without end must not keep the sender
    // here (it would never write, nor see a stop).
    for _ in 0..16 {
        if !readable(sock) {
            break;
        }
        match sock.read(&mut buf) {
            Ok(0) => return Err(Fail::Errno(libc::EPIPE)),
            Ok(_) => {}
            Err(e) if would_block(&e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_in6 fits in sockaddr_storage.
            unsafe { std::ptr::write((&raw mut ss).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relp_frames_parse() {
        let mut r = Relp::default();
        r.input
            .extend_from_slice(b"1 rsp 6 200 OK\n2 rsp 0\n3 serverclose 0\n4 rsp 6 200");
        let f = r.frame().ok().unwrap().unwrap();
        assert_eq!((f.0, f.1.as_str(), &f.2[..]), (1, "rsp", &b"200 OK"[..]));
        let f = r.frame().ok().unwrap().unwrap();
        assert_eq!((f.0, f.1.as_str(), f.2.len()), (2, "rsp", 0));
        let f = r.frame().ok().unwrap().unwrap();
        assert_eq!(f.1, "serverclose");
        assert!(r.frame().ok().unwrap().is_none());
        r.input.extend_from_slice(b" OK\n");
        assert_eq!(r.frame().ok().unwrap().unwrap().0, 4);
        r.input.extend_from_slice(b"x rsp 0\n");
        assert!(r.frame().is_err());
    }

    use crate::output::syslog::Rfc;
    use crate::record::LogRecord;

    fn sink(port: u16, buffer_bytes: usize, flush_ms: u64) -> (SyslogSink, Arc<Counters>) {
        let format = SyslogFormat {
            rfc: Rfc::R5424,
            facility: 1,
            hostname: "h".into(),
            app_name: "a".into(),
            procid: "1".into(),
            msgid: "-".into(),
            omit_hostname: false,
            max_len: 8192,
        };
        let options = NetOptions {
            transport: Transport::Tcp("127.0.0.1".into(), port),
            buffer_bytes,
            timeout: Duration::from_secs(5),
            flush_timeout: Duration::from_millis(flush_ms),
            backoff_max: Duration::from_millis(200),
            relp_window: 8,
        };
        let counters = Arc::new(Counters::default());
        let s = SyslogSink::new(format, options, Arc::clone(&counters)).unwrap();
        (s, counters)
    }

    fn load(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    #[test]
    fn tcp_frames_are_octet_counted_and_counted_written() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut s, c) = sink(port, 1 << 20, 5000);
        for m in ["one", "two\nlines", "three"] {
            let r = LogRecord::new(20, b"app", m.as_bytes(), 0);
            s.handle(&(&r).into()).unwrap();
        }
        let (mut conn, _) = server.accept().unwrap();
        s.flush();
        assert_eq!(load(&c.written), 3);
        drop(s);
        let mut all = Vec::new();
        conn.read_to_end(&mut all).unwrap();
        let mut msgs = Vec::new();
        let mut rest = &all[..];
        while !rest.is_empty() {
            let sp = rest.iter().position(|&b| b == b' ').unwrap();
            let len: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
            msgs.push(String::from_utf8(rest[sp + 1..sp + 1 + len].to_vec()).unwrap());
            rest = &rest[sp + 1 + len..];
        }
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[1].ends_with("] two\\nlines"), "{}", msgs[1]);
        assert!(msgs.iter().all(|m| m.starts_with("<14>1 ")));
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_a_drop_counts_the_rest() {
        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let (mut s, c) = sink(port, 1000, 0);
        let msg = [b'x'; 100];
        for _ in 0..50 {
            let r = LogRecord::new(20, b"app", &msg, 0);
            s.handle(&(&r).into()).unwrap();
        }
        let received = load(&c.received);
        let lost = load(&c.lost);
        assert_eq!(received, 50);
        // At most 1000 bytes queued; the sender holds at most one batch
        // besides (taken while the queue was still short).
        let held = {
            let st = lock(&s.shared);
            assert!(st.bytes <= 1000);
            st.queue.len() as u64 + st.inflight as u64
        };
        assert!(lost >= 1, "lost {lost}");
        assert_eq!(received, lost + held);
        let t = Instant::now();
        drop(s);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert_eq!(load(&c.lost), 50);
        assert_eq!(load(&c.written), 0);
    }

    fn relp_sink(port: u16, flush_ms: u64) -> (SyslogSink, Arc<Counters>) {
        let format = SyslogFormat {
            rfc: Rfc::R5424,
            facility: 1,
            hostname: "h".into(),
            app_name: "a".into(),
            procid: "1".into(),
            msgid: "-".into(),
            omit_hostname: false,
            max_len: 8192,
        };
        let options = NetOptions {
            transport: Transport::Relp("127.0.0.1".into(), port),
            buffer_bytes: 1 << 20,
            timeout: Duration::from_secs(5),
            flush_timeout: Duration::from_millis(flush_ms),
            backoff_max: Duration::from_millis(200),
            relp_window: 8,
        };
        let counters = Arc::new(Counters::default());
        let s = SyslogSink::new(format, options, Arc::clone(&counters)).unwrap();
        (s, counters)
    }

    /// Reads RELP frames (`TXNR CMD LEN [DATA]\n`) from `conn` until `n`
    /// `syslog` frames came; returns their transaction numbers.
    fn read_relp(conn: &mut std::net::TcpStream, n: usize, open_ack: bool) -> Vec<u32> {
        let mut r = Relp::default();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < n {
            while let Some((txnr, cmd, _)) = r.frame().ok().unwrap() {
                if cmd == "open" && open_ack {
                    conn.write_all(format!("{txnr} rsp 6 200 OK\n").as_bytes())
                        .unwrap();
                } else if cmd == "syslog" {
                    got.push(txnr);
                }
            }
            if got.len() >= n {
                break;
            }
            let k = conn.read(&mut buf).unwrap();
            assert!(k > 0, "client closed");
            r.input.extend_from_slice(&buf[..k]);
        }
        got
    }

    #[test]
    fn relp_a_refused_message_is_counted_lost_once() {
        // The collector refuses the second message (rsp 500) and never
        // acknowledges the first; the sink is freed: both are lost, each
        // counted once (received == written + lost).
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let (mut s, c) = relp_sink(port, 300);
        for m in ["one", "two"] {
            let r = LogRecord::new(20, b"app", m.as_bytes(), 0);
            s.handle(&(&r).into()).unwrap();
        }
        let (mut conn, _) = server.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let txnrs = read_relp(&mut conn, 2, true);
        conn.write_all(format!("{} rsp 13 500 no thanks\n", txnrs[1]).as_bytes())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while load(&c.lost) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(load(&c.lost), 1, "the refused one");
        drop(s);
        assert_eq!(load(&c.received), 2);
        assert_eq!(load(&c.written), 0);
        assert_eq!(load(&c.lost), 2, "each lost once");
    }

    #[test]
    fn a_collector_that_floods_the_connection_does_not_hang_the_free() {
        // A hostile "collector" that never reads and sends without end:
        // the sender must still see the stop, and freeing the sink must
        // come within the flush timeout and a slice, not when the flood
        // ends.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let flood = std::thread::spawn(move || {
            let (mut conn, _) = server.accept().unwrap();
            conn.set_write_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let chunk = vec![b'x'; 1 << 16];
            while !stop2.load(Ordering::Relaxed) {
                if let Err(e) = conn.write(&chunk) {
                    if !would_block(&e) {
                        break;
                    }
                }
            }
        });
        let (mut s, c) = sink(port, 1 << 20, 200);
        let r = LogRecord::new(20, b"app", b"one", 0);
        s.handle(&(&r).into()).unwrap();
        // Let the flood start before the record can go.
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..100 {
            s.handle(&(&r).into()).unwrap();
        }
        let t = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(s);
            let _ = tx.send(());
        });
        let freed = rx.recv_timeout(Duration::from_secs(5)).is_ok();
        stop.store(true, Ordering::Relaxed);
        flood.join().unwrap();
        // A hang is a free that never returns while the flood goes on: 5 s
        // is 25 flush timeouts (a loaded machine stays far below it).
        assert!(
            freed,
            "the free did not return within 5 s ({:?})",
            t.elapsed()
        );
        assert_eq!(load(&c.received), load(&c.written) + load(&c.lost));
    }

    #[test]
    fn buffer_bytes_bounds_the_memory_of_cut_messages() {
        // Collector down; records with 1 MiB messages are cut to 8192
        // bytes: what the queue holds must be about buffer_bytes of memory,
        // not one 1 MiB allocation per 8 KiB message counted.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let buffer_bytes = 256 << 10;
        let (mut s, c) = sink(port, buffer_bytes, 0);
        let big = vec![b'm'; 1 << 20];
        for _ in 0..64 {
            let r = LogRecord::new(20, b"app", &big, 0);
            s.handle(&(&r).into()).unwrap();
        }
        let (held, spare) = {
            let st = lock(&s.shared);
            let q: usize = st.queue.iter().map(|m| m.capacity()).sum();
            let sp: usize = st.spare.iter().map(|m| m.capacity()).sum();
            (q, sp)
        };
        assert!(
            held + spare <= 2 * buffer_bytes,
            "queue {held} + spare {spare} bytes of memory for a {buffer_bytes}-byte buffer"
        );
        drop(s);
        assert_eq!(load(&c.received), 64);
        assert_eq!(load(&c.lost), 64);
    }

    #[test]
    fn decimal_lengths() {
        assert_eq!(
            [0, 9, 10, 99, 100, 65535].map(decimal_len),
            [1, 1, 2, 2, 3, 5]
        );
    }
}
