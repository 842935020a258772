//! Our own small HTTP/1.1 server on async-io + httparse: every connection is a task on
//! the smol executor, so idle and slow clients cost memory, not threads.
//!
//! Rules: at most `max_connections` open connections; at the cap, the connection that has
//! waited longest for a request is closed to make room, and only when none is waiting is
//! the newcomer answered 503 — so a flood of idle sockets cannot lock clients out;
//! a request head must arrive whole within `header_timeout` and fit in
//! `max_header_bytes`; a kept-alive connection idles at most `idle_timeout`; a client
//! that accepts no bytes for `write_timeout` is dropped; an `accept()` error (EMFILE, …)
//! is counted, logged and retried after a short pause, never fatal. Request bodies are
//! only accepted up to `max_body_bytes` with a `Content-Length`.

use std::collections::BTreeMap;
use std::io::{self, ErrorKind};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_io::{Async, Timer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use smol::Executor;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::error::ErrorCode;
use super::message::{Body, Handler, Request, Response};

/// Bounds of the server; every one is a setting.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Time for a whole request head to arrive.
    pub header_timeout: Duration,
    /// Keep-alive idle time between requests.
    pub idle_timeout: Duration,
    /// A write that makes no progress this long drops the client.
    pub write_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_header_bytes: 8192,
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Counters of one server; clones of these are registered as metrics.
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: Counter,
    /// Connections refused because `max_connections` were open.
    pub rejected: Counter,
    /// Failed `accept()` calls (EMFILE and friends).
    pub accept_errors: Counter,
    /// Connections closed because a header, idle or write timeout fired.
    pub timeouts: Counter,
    /// Connections open now.
    pub open: Gauge,
}

/// Resolves when the server should stop: the paired sender was dropped.
pub type ShutdownSignal = Receiver<()>;

/// Serves `listener` until `shutdown` fires; then stops accepting and cuts open
/// connections (their tasks end at their next await point).
pub async fn serve(
    listener: Async<TcpListener>,
    limits: ServerLimits,
    handler: Arc<dyn Handler>,
    ex: Arc<Executor<'static>>,
    stats: ServerStats,
    shutdown: ShutdownSignal,
) {
    let limits = Arc::new(limits);
    let idle = Arc::new(IdleSet::default());
    let accept_loop = async {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    stats.accepted.inc();
                    let open = stats.open.get();
                    if open >= limits.max_connections as i64 && !idle.evict_longest_waiting() {
                        stats.rejected.inc();
                        ex.spawn(reject_busy(stream, limits.write_timeout)).detach();
                        continue;
                    }
                    stats.open.inc();
                    let (kill, killed) = smol::channel::bounded::<()>(1);
                    let conn = Connection {
                        stream,
                        peer,
                        limits: limits.clone(),
                        handler: handler.clone(),
                        stats: stats.clone(),
                        idle: idle.clone(),
                        kill,
                    };
                    let stop = shutdown.clone();
                    let open_gauge = stats.open.clone();
                    ex.spawn(async move {
                        conn.run()
                            .or(wait_shutdown(stop))
                            .or(wait_shutdown(killed))
                            .await;
                        open_gauge.dec();
                    })
                    .detach();
                }
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS and the like: the listener is fine, the
                    // process is short of something. Pause so we do not spin, then go on.
                    stats.accept_errors.inc();
                    log::warn!("event=accept_error error=\"{e}\"");
                    Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    };
    accept_loop.or(wait_shutdown(shutdown.clone())).await;
}

/// Connections waiting for the first byte of a request, longest-waiting first (ids grow
/// with time), each with the sender that closes it.
#[derive(Default)]
struct IdleSet {
    next_id: AtomicU64,
    waiting: Mutex<BTreeMap<u64, Sender<()>>>,
}

impl IdleSet {
    fn enter(&self, kill: &Sender<()>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, kill.clone());
        id
    }

    fn leave(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Closes the connection that has waited longest; false when none is waiting.
    fn evict_longest_waiting(&self) -> bool {
        match self.lock().pop_first() {
            Some((_, kill)) => {
                kill.close();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Sender<()>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn wait_shutdown(signal: ShutdownSignal) {
    // recv() fails once every sender is gone: that is the signal.
    let _ = signal.recv().await;
}

/// Answers 503 to a connection over the cap without reading its request.
/// Completes when the peer has closed the connection (EOF or reset) while a request is
/// in progress. Pipelined bytes mean the client is there: then it never completes (and
/// never polls the socket again, so nothing spins).
async fn client_gone(stream: &Async<TcpStream>) {
    loop {
        if stream.readable().await.is_err() {
            return;
        }
        match stream.get_ref().peek(&mut [0u8; 1]) {
            Ok(0) => return,
            Ok(_) => std::future::pending::<()>().await,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

async fn reject_busy(mut stream: Async<TcpStream>, write_timeout: Duration) {
    let body = ErrorCode::ServerBusy.json_body();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await
    };
    let _ = with_timeout(write_timeout, write).await;
}

/// Runs `fut`, failing with `TimedOut` after `limit`.
pub async fn with_timeout<T>(
    limit: Duration,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    fut.or(async {
        Timer::after(limit).await;
        Err(io::Error::new(ErrorKind::TimedOut, "timed out"))
    })
    .await
}

struct Connection {
    stream: Async<TcpStream>,
    peer: SocketAddr,
    limits: Arc<ServerLimits>,
    handler: Arc<dyn Handler>,
    stats: ServerStats,
    idle: Arc<IdleSet>,
    /// Closing this channel ends the connection (eviction at the cap).
    kill: Sender<()>,
}

/// Why reading a request head stopped.
enum HeadError {
    /// The peer closed cleanly between requests.
    Closed,
    TimedOut,
    TooLarge,
    Malformed,
    Io,
}

struct Head {
    method: String,
    target: String,
    http11: bool,
    headers: Vec<(String, String)>,
    head_len: usize,
}

impl Connection {
    async fn run(mut self) {
        let _ = self.stream.get_ref().set_nodelay(true);
        // Bytes read but not yet consumed (pipelined requests); never above the head limit
        // plus one read.
        let mut buf: Vec<u8> = Vec::new();
        let mut first = true;
        loop {
            let head = match self.read_head(&mut buf, first).await {
                Ok(head) => head,
                Err(HeadError::Closed) | Err(HeadError::Io) => return,
                Err(HeadError::TimedOut) => {
                    self.stats.timeouts.inc();
                    return;
                }
                Err(HeadError::TooLarge) => {
                    let _ = self.send_error(ErrorCode::HeadTooLarge).await;
                    return;
                }
                Err(HeadError::Malformed) => {
                    let _ = self.send_error(ErrorCode::BadRequest).await;
                    return;
                }
            };
            first = false;
            buf.drain(..head.head_len.min(buf.len()));

            let body = match self.read_body(&head, &mut buf).await {
                Ok(body) => body,
                Err(code) => {
                    let _ = self.send_error(code).await;
                    return;
                }
            };

            let wants_close = !head.http11
                && !header_has_token(&head.headers, "connection", "keep-alive")
                || header_has_token(&head.headers, "connection", "close");
            let (path, query) = match head.target.split_once('?') {
                Some((p, q)) => (p.to_string(), q.to_string()),
                None => (head.target.clone(), String::new()),
            };
            let is_head = head.method == "HEAD";
            let http11 = head.http11;
            let req = Request {
                method: head.method,
                path,
                query,
                headers: head.headers,
                peer: self.peer,
                body,
            };
            // A client that hangs up while its answer is being prepared (a stream waiting
            // for a tuner or an encoder slot) drops the handler, and with it its place.
            let served = async { Some(self.handler.handle(req).await) };
            let gone = async {
                client_gone(&self.stream).await;
                None
            };
            let Some(resp) = served.or(gone).await else {
                return;
            };
            let close = wants_close || resp.close;
            match self.write_response(resp, is_head, http11, close).await {
                Ok(()) => {}
                Err(e) => {
                    if e.kind() == ErrorKind::TimedOut {
                        self.stats.timeouts.inc();
                    }
                    return;
                }
            }
            if close {
                return;
            }
        }
    }

    /// Reads until a complete head is in `buf`. Waiting for the first byte (up to
    /// `idle_timeout` between requests, `header_timeout` for the first) holds no buffer
    /// and makes the connection evictable; from the first byte on, the whole head must
    /// arrive within `header_timeout`.
    async fn read_head(&mut self, buf: &mut Vec<u8>, first: bool) -> Result<Head, HeadError> {
        let limits = self.limits.clone();
        if buf.is_empty() {
            let wait = if first {
                limits.header_timeout
            } else {
                limits.idle_timeout
            };
            let id = self.idle.enter(&self.kill);
            let readable = with_timeout(wait, self.stream.readable()).await;
            self.idle.leave(id);
            readable.map_err(io_to_head_error)?;
        }
        let deadline = Timer::after(limits.header_timeout);
        let read_loop = async {
            loop {
                if !buf.is_empty() {
                    if let Some(head) = parse_head(buf, limits.max_header_bytes)? {
                        return Ok(head);
                    }
                }
                if buf.len() >= limits.max_header_bytes {
                    return Err(HeadError::TooLarge);
                }
                let mut chunk = [0u8; 2048];
                let room = (limits.max_header_bytes - buf.len()).min(chunk.len());
                let n = self
                    .stream
                    .read(&mut chunk[..room])
                    .await
                    .map_err(|_| HeadError::Io)?;
                if n == 0 {
                    return Err(if buf.is_empty() {
                        HeadError::Closed
                    } else {
                        HeadError::Malformed
                    });
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        };
        read_loop
            .or(async {
                deadline.await;
                Err(HeadError::TimedOut)
            })
            .await
    }

    async fn read_body(&mut self, head: &Head, buf: &mut Vec<u8>) -> Result<Vec<u8>, ErrorCode> {
        if header_value(&head.headers, "transfer-encoding").is_some() {
            return Err(ErrorCode::UnsupportedTransferEncoding);
        }
        let len = match header_value(&head.headers, "content-length") {
            None => return Ok(Vec::new()),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| ErrorCode::BadRequest)?,
        };
        if len > self.limits.max_body_bytes {
            return Err(ErrorCode::BodyTooLarge);
        }
        let read = async {
            while buf.len() < len {
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::Error::from(ErrorKind::UnexpectedEof));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok(())
        };
        with_timeout(self.limits.header_timeout, read)
            .await
            .map_err(|_| ErrorCode::BadRequest)?;
        let rest = buf.split_off(len);
        Ok(std::mem::replace(buf, rest))
    }

    /// Answers an unreadable request and closes. The client may still be sending (a huge
    /// head, say): closing with unread input makes the kernel send a reset that can destroy
    /// our answer in flight, so half-close and drain briefly first (a "lingering close").
    async fn send_error(&mut self, code: ErrorCode) -> io::Result<()> {
        let resp = code.response();
        self.write_response(resp, false, true, true).await?;
        let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Write);
        let drain = async {
            let mut sink = [0u8; 2048];
            let mut left: usize = 256 * 1024;
            while left > 0 {
                let n = self.stream.read(&mut sink).await?;
                if n == 0 {
                    break;
                }
                left = left.saturating_sub(n);
            }
            Ok(())
        };
        with_timeout(Duration::from_secs(1), drain).await
    }

    async fn write_response(
        &mut self,
        resp: Response,
        is_head: bool,
        http11: bool,
        close: bool,
    ) -> io::Result<()> {
        let timeout = self.limits.write_timeout;
        let no_body = is_head || resp.status == 304 || resp.status == 204;
        let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
        for (name, value) in &resp.headers {
            // Handlers never put CR/LF in values; defend anyway so a header cannot split.
            if value.contains(['\r', '\n']) || name.contains(['\r', '\n', ':']) {
                continue;
            }
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        let chunked = matches!(resp.body, Body::Stream(_)) && http11 && !close;
        match &resp.body {
            Body::Empty if resp.status != 304 && resp.status != 204 => {
                head.push_str("Content-Length: 0\r\n")
            }
            Body::Empty => {}
            Body::Bytes(b) => head.push_str(&format!("Content-Length: {}\r\n", b.len())),
            Body::File { len, .. } => head.push_str(&format!("Content-Length: {len}\r\n")),
            Body::Stream(_) if chunked && !no_body => {
                head.push_str("Transfer-Encoding: chunked\r\n")
            }
            Body::Stream(_) => {}
        }
        // A close-delimited body ends the connection, so say so.
        let close = close || (matches!(resp.body, Body::Stream(_)) && !chunked && !no_body);
        head.push_str(if close {
            "Connection: close\r\n\r\n"
        } else {
            "Connection: keep-alive\r\n\r\n"
        });
        with_timeout(timeout, self.stream.write_all(head.as_bytes())).await?;
        if no_body {
            return with_timeout(timeout, self.stream.flush()).await;
        }
        match resp.body {
            Body::Empty => {}
            Body::Bytes(b) => with_timeout(timeout, self.stream.write_all(&b)).await?,
            Body::File { mut file, len } => {
                // One 64 KiB buffer travels to the blocking pool and back for each read:
                // no second buffer, and a slow disk never stalls an executor thread.
                let mut chunk = vec![0u8; 64 * 1024];
                let mut left = len;
                while left > 0 {
                    let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let (back_file, back_chunk, read) = smol::unblock(move || {
                        let read = std::io::Read::read(&mut file, &mut chunk[..want]);
                        (file, chunk, read)
                    })
                    .await;
                    (file, chunk) = (back_file, back_chunk);
                    let n = read?;
                    if n == 0 {
                        // The file shrank under us (it never should: files are replaced by
                        // rename, and we hold the old inode). Cut the connection rather
                        // than send a short body that looks complete.
                        return Err(io::Error::from(ErrorKind::UnexpectedEof));
                    }
                    with_timeout(timeout, self.stream.write_all(&chunk[..n])).await?;
                    left -= n as u64;
                }
            }
            Body::Stream(mut reader) => {
                let pump = async {
                    // As large as a stream upstream's reads (128 KiB): one read, one
                    // write, and half the writes of 64 KiB when a client catches up.
                    let mut chunk = vec![0u8; 128 * 1024];
                    loop {
                        let n = reader.read(&mut chunk).await?;
                        if n == 0 {
                            break;
                        }
                        if chunked {
                            let size = format!("{n:X}\r\n");
                            with_timeout(timeout, self.stream.write_all(size.as_bytes())).await?;
                            with_timeout(timeout, self.stream.write_all(&chunk[..n])).await?;
                            with_timeout(timeout, self.stream.write_all(b"\r\n")).await?;
                        } else {
                            with_timeout(timeout, self.stream.write_all(&chunk[..n])).await?;
                        }
                    }
                    if chunked {
                        with_timeout(timeout, self.stream.write_all(b"0\r\n\r\n")).await?;
                    }
                    Ok(())
                };
                match resp.abort {
                    Some(abort) => {
                        pump.or(async {
                            abort.0.await;
                            Err(io::Error::other("response aborted"))
                        })
                        .await?
                    }
                    None => pump.await?,
                }
            }
        }
        with_timeout(timeout, self.stream.flush()).await
    }
}

fn io_to_head_error(e: io::Error) -> HeadError {
    if e.kind() == ErrorKind::TimedOut {
        HeadError::TimedOut
    } else {
        HeadError::Io
    }
}

/// Parses a complete head from `buf`, `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8], max_header_bytes: usize) -> Result<Option<Head>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(head_len)) => {
            if head_len > max_header_bytes {
                return Err(HeadError::TooLarge);
            }
            let method = req.method.ok_or(HeadError::Malformed)?.to_string();
            let target = req.path.ok_or(HeadError::Malformed)?.to_string();
            let http11 = req.version == Some(1);
            let mut headers = Vec::with_capacity(req.headers.len());
            for h in req.headers.iter() {
                let value = String::from_utf8_lossy(h.value).into_owned();
                headers.push((h.name.to_string(), value));
            }
            Ok(Some(Head {
                method,
                target,
                http11,
                headers,
                head_len,
            }))
        }
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(_) => Err(HeadError::Malformed),
    }
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn header_has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The reason phrase of the statuses we send.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Binds a listener with a generous backlog (bursts of connects must queue, not fail).
pub fn bind(addr: SocketAddr) -> io::Result<Async<TcpListener>> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `[::]` should also accept IPv4 where the system allows it.
        let _ = socket.set_only_v6(false);
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Async::new(TcpListener::from(socket))
}
