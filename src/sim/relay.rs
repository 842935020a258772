//! The simulated stream-relay port (Enigma2's streamrelay, 17999): `GET /<sref>` of a
//! whitelisted ref gets a bare-`\n` head and the MPEG-TS stream, close-delimited.
//!
//! Rules: it runs its own accept loop on async-io because the real relay writes heads
//! with bare `\n` line endings, which `crate::http` never does. A request head is read
//! with at most 8 KiB and within 10 s; an unreadable head, any method but `GET` and a
//! connection over the cap of 256 are closed without an answer, like the real one does.
//! With `SimConfig::relay_auth` set, a request without the matching
//! `Authorization: Basic ...` gets a bare 401 and close (credentials go up front, there
//! is no challenge). Refs not on the whitelist get the failed-tune text as the body of
//! a 200. Every connection ends when the shutdown signal fires; a write that makes no
//! progress for 30 s drops the client.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_io::{Async, Timer};
use smol::Executor;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt};

use super::stream::Port;
use super::{Inner, TUNE_FAILED};
use crate::http::{ShutdownSignal, percent_decode, with_timeout};

/// Largest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Time for the whole request head to arrive.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A write that makes no progress this long drops the client.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections open at once at most.
const MAX_CONNECTIONS: usize = 256;

/// Header fields parsed at most (more makes the head unreadable).
const MAX_HEADERS: usize = 64;

/// Bytes moved from the stream body to the socket per write.
const BODY_BUF: usize = 64 * 1024;

/// The head of a stream, as the real relay writes it (bare `\n`).
const OK_HEAD: &[u8] = b"HTTP/1.0 200 OK\nContent-Type: video/mp2t\nConnection: close\n\n";

/// The answer to missing or wrong credentials.
const UNAUTHORIZED: &[u8] = b"HTTP/1.0 401 Unauthorized\n\n";

/// What the relay needs from a request head.
struct Head {
    method: String,
    target: String,
    authorization: Option<String>,
}

/// Accepts until `shutdown` fires; each connection runs as its own task on `ex`.
pub(super) async fn serve(
    inner: Arc<Inner>,
    listener: Async<TcpListener>,
    ex: Arc<Executor<'static>>,
    shutdown: ShutdownSignal,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let accept_loop = async {
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    inner
                        .counters
                        .relay_connections
                        .fetch_add(1, Ordering::Relaxed);
                    if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                        continue; // dropped: closed unanswered
                    }
                    let slot = Slot::take(&open);
                    let (inner, stop) = (Arc::clone(&inner), shutdown.clone());
                    ex.spawn(async move {
                        connection(&inner, stream).or(wait_shutdown(stop)).await;
                        drop(slot);
                    })
                    .detach();
                }
                Err(e) => {
                    // Out of descriptors or similar: pause instead of spinning, go on.
                    log::warn!("sim relay accept_error error=\"{e}\"");
                    Timer::after(Duration::from_millis(100)).await;
                }
            }
        }
    };
    accept_loop.or(wait_shutdown(shutdown.clone())).await;
}

async fn wait_shutdown(signal: ShutdownSignal) {
    // recv() fails once every sender is gone: that is the signal.
    let _ = signal.recv().await;
}

/// One open connection in the count; released on drop (also when the task is cut).
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Slot {
        open.fetch_add(1, Ordering::Relaxed);
        Slot(Arc::clone(open))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection: one request, then close.
async fn connection(inner: &Inner, mut stream: Async<TcpStream>) {
    let _ = stream.get_ref().set_nodelay(true);
    let head = match with_timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head,
        Err(e) => {
            log::debug!("sim relay event=bad_head error=\"{e}\"");
            return;
        }
    };
    if head.method != "GET" {
        log::debug!("sim relay event=refused method={:?}", head.method);
        return;
    }
    if let Some((user, pass)) = &inner.cfg.relay_auth {
        if !authorized(head.authorization.as_deref(), user, pass) {
            let _ = write(&mut stream, UNAUTHORIZED).await;
            return;
        }
    }
    let _ = answer(inner, &mut stream, &head.target).await;
}

/// Writes the head and the body for `target`; ends with an error when the client goes.
async fn answer(inner: &Inner, stream: &mut Async<TcpStream>, target: &str) -> io::Result<()> {
    let path = target.split('?').next().unwrap_or("");
    let sref = percent_decode(path.strip_prefix('/').unwrap_or(path));
    let whitelisted = inner
        .layout
        .service_by_ref(&sref)
        .is_some_and(|s| inner.layout.relay.contains(&s));
    write(stream, OK_HEAD).await?;
    if !whitelisted {
        return write(stream, TUNE_FAILED).await;
    }
    let mut body = inner.ts_body(Port::Relay);
    let mut buf = vec![0u8; BODY_BUF];
    loop {
        let n = body.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        write(stream, buf.get(..n).unwrap_or(&[])).await?;
    }
}

async fn write(stream: &mut Async<TcpStream>, bytes: &[u8]) -> io::Result<()> {
    with_timeout(WRITE_TIMEOUT, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Reads until a whole request head arrived; never holds more than `MAX_HEAD` bytes.
async fn read_head(stream: &mut Async<TcpStream>) -> io::Result<Head> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let room = MAX_HEAD.saturating_sub(buf.len()).min(chunk.len());
        if room == 0 {
            return Err(invalid("request head over 8 KiB"));
        }
        let n = stream
            .read(chunk.get_mut(..room).unwrap_or(&mut []))
            .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the request head ended",
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let authorization = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("Authorization"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned());
                return Ok(Head {
                    method: req.method.unwrap_or("").to_string(),
                    target: req.path.unwrap_or("").to_string(),
                    authorization,
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(invalid(&format!("request head: {e}"))),
        }
    }
}

/// True when `header` is `Basic <base64 of user:pass>` (scheme case-insensitive),
/// compared with what our own client would send.
fn authorized(header: Option<&str>, user: &str, pass: &str) -> bool {
    let Some((scheme, token)) = header.map(str::trim).and_then(|h| h.split_once(' ')) else {
        return false;
    };
    let want = crate::receiver::http_client::basic_auth(user, pass);
    scheme.eq_ignore_ascii_case("Basic") && want.get("Basic ".len()..) == Some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_must_match() {
        let good = crate::receiver::http_client::basic_auth("root", "pa:ss");
        assert!(authorized(Some(&good), "root", "pa:ss"));
        assert!(authorized(Some("basic cm9vdDpwYTpzcw=="), "root", "pa:ss"));
        assert!(!authorized(Some(&good), "root", "pass"));
        assert!(!authorized(
            Some("Bearer cm9vdDpwYTpzcw=="),
            "root",
            "pa:ss"
        ));
        assert!(!authorized(Some("Basic"), "root", "pa:ss"));
        assert!(!authorized(None, "root", "pa:ss"));
    }
}
