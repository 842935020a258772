//! The body pipeline: framed bytes are pumped from the async socket through a bounded
//! channel into a blocking thread, where a `Read` chain (gunzip → size cap → charset →
//! buffer) feeds the parser while the pump keeps reading.
//!
//! Rules: at most [`CHANNEL_CHUNKS`] chunks of at most [`CHUNK_SIZE`] bytes are in
//! flight, so memory stays bounded however large the answer; the decoded size cap is
//! enforced while reading and fails the answer (never truncates it); the parser always
//! sees valid UTF-8. Every failure reaches the parser as an `io::Error` carrying our
//! [`Error`], so it comes back out with its own kind.

use std::io::{self, BufReader, Read};

use smol::channel::{Receiver, Sender};
use smol::future::FutureExt as _;

use super::Error;
use super::http_client::BodyReader;

/// Bytes per chunk handed from the socket to the parser thread.
pub const CHUNK_SIZE: usize = 16 * 1024;
/// Chunks the channel holds before the socket pump waits for the parser.
pub const CHANNEL_CHUNKS: usize = 8;
/// Buffer between the decoding chain and the JSON parser.
const PARSE_BUFFER: usize = 64 * 1024;

/// One piece of the raw body, or the failure that ended it.
type Chunk = Result<Vec<u8>, Error>;

/// What the parser reads: the decoded, capped, UTF-8 body behind a buffer.
pub type BodyRead = BufReader<Box<dyn Read + Send>>;

/// How to turn body bytes into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8, with every byte that is not part of a valid UTF-8 sequence read as
    /// ISO-8859-1 (what old boxes send without saying so).
    Utf8OrLatin1,
    /// ISO-8859-1: every byte is one character.
    Latin1,
}

impl Charset {
    /// The charset for a `Content-Type` `charset` parameter: the ISO-8859-1 family
    /// decodes as Latin-1, anything else (or nothing) as UTF-8 with Latin-1 fallback.
    pub fn from_label(label: Option<&str>) -> Charset {
        match label.map(str::trim) {
            Some(
                "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "latin-1" | "l1"
                | "iso-ir-100" | "cp819" | "ibm819",
            ) => Charset::Latin1,
            _ => Charset::Utf8OrLatin1,
        }
    }
}

/// Streams `body` into `parse`, which runs on a blocking thread with `state` and reads
/// the decoded body, while the socket pump keeps reading concurrently. Returns `state`
/// (so a caller's sink survives the attempt) and the parse result; `max` caps both the
/// framed and the decoded size. `encoding` is the response's content coding (`None` for
/// identity); `req` names the request in errors.
pub async fn parse_body<S, T>(
    mut body: BodyReader,
    encoding: Option<String>,
    charset: Charset,
    max: u64,
    req: String,
    state: S,
    parse: fn(&mut S, BodyRead) -> serde_json::Result<T>,
) -> (S, Result<T, Error>)
where
    S: Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = smol::channel::bounded::<Chunk>(CHANNEL_CHUNKS);
    // Dropped when the parser returns: tells the pump nobody listens any more, even
    // while it is waiting on the socket rather than on the channel.
    let (done_tx, done_rx) = smol::channel::bounded::<()>(1);
    let parse_req = req.clone();
    let parser = smol::unblock(move || {
        let _done = done_tx;
        let mut state = state;
        let result = decoder(
            ChannelReader::new(rx),
            encoding.as_deref(),
            charset,
            max,
            &parse_req,
        )
        .and_then(|reader| parse(&mut state, reader).map_err(|e| Error::from_json(&parse_req, e)));
        (state, result)
    });
    let pump = pump(&mut body, tx, max, &req).or(async {
        let _ = done_rx.recv().await;
    });
    let ((), out) = smol::future::zip(pump, parser).await;
    out
}

/// Copies framed body bytes into the channel until the body ends, fails (the failure is
/// sent on), exceeds `max`, or the parser hangs up.
async fn pump(body: &mut BodyReader, tx: Sender<Chunk>, max: u64, req: &str) {
    let mut total = 0u64;
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let item = match body.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                total = total.saturating_add(n as u64);
                if total > max {
                    Err(Error::TooLarge {
                        req: req.to_owned(),
                        limit: max,
                    })
                } else {
                    Ok(buf.get(..n).unwrap_or_default().to_vec())
                }
            }
            Err(e) => Err(e),
        };
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Builds the decoding chain over the raw body.
fn decoder(
    raw: ChannelReader,
    encoding: Option<&str>,
    charset: Charset,
    max: u64,
    req: &str,
) -> Result<BodyRead, Error> {
    let decoded: Box<dyn Read + Send> = match encoding {
        None => Box::new(raw),
        Some("gzip" | "x-gzip") => Box::new(flate2::read::GzDecoder::new(raw)),
        Some("deflate") => Box::new(flate2::read::ZlibDecoder::new(raw)),
        Some(other) => {
            return Err(Error::Malformed {
                req: req.to_owned(),
                detail: format!("body: unsupported Content-Encoding {other:?}"),
            });
        }
    };
    let capped = CapReader {
        inner: decoded,
        count: 0,
        limit: max,
        req: req.to_owned(),
    };
    let text: Box<dyn Read + Send> = Box::new(CharsetReader::new(capped, charset));
    Ok(BufReader::with_capacity(PARSE_BUFFER, text))
}

/// A blocking `Read` over the chunks the pump sends; ends when the pump is done.
pub struct ChannelReader {
    rx: Receiver<Chunk>,
    current: Vec<u8>,
    pos: usize,
    finished: bool,
}

impl ChannelReader {
    fn new(rx: Receiver<Chunk>) -> ChannelReader {
        ChannelReader {
            rx,
            current: Vec::new(),
            pos: 0,
            finished: false,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let left = self.current.get(self.pos..).unwrap_or_default();
            if !left.is_empty() {
                let n = left.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), left.get(..n)) {
                    dst.copy_from_slice(src);
                }
                self.pos += n;
                return Ok(n);
            }
            if self.finished || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.recv_blocking() {
                Ok(Ok(chunk)) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.finished = true;
                    return Err(e.into_io());
                }
                // The pump dropped its sender: the body ended normally.
                Err(_) => self.finished = true,
            }
        }
    }
}

/// Fails with `TooLarge` as soon as more than `limit` bytes came through.
struct CapReader<R> {
    inner: R,
    count: u64,
    limit: u64,
    req: String,
}

impl<R: Read> Read for CapReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte beyond the cap is enough to know the answer is too large.
        let allowed = self.limit.saturating_sub(self.count).saturating_add(1);
        let want = usize::try_from(allowed)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = match buf.get_mut(..want) {
            Some(part) => self.inner.read(part)?,
            None => 0,
        };
        self.count = self.count.saturating_add(n as u64);
        if self.count > self.limit {
            return Err(Error::TooLarge {
                req: self.req.clone(),
                limit: self.limit,
            }
            .into_io());
        }
        Ok(n)
    }
}

/// Input bytes read at a time by [`CharsetReader`].
const CHARSET_INPUT: usize = 16 * 1024;

/// Turns body bytes into UTF-8 per [`Charset`], also when a multi-byte sequence is
/// split across reads: an incomplete tail waits for the next read, and only at the end
/// of the body does it fall back to Latin-1.
pub struct CharsetReader<R> {
    inner: R,
    charset: Charset,
    input: Box<[u8]>,
    /// Bytes of `input` not yet converted (an incomplete UTF-8 sequence, at most 3).
    pending: usize,
    output: Vec<u8>,
    out_pos: usize,
    eof: bool,
}

impl<R: Read> CharsetReader<R> {
    /// Wraps `inner`, which yields raw body bytes.
    pub fn new(inner: R, charset: Charset) -> CharsetReader<R> {
        CharsetReader {
            inner,
            charset,
            input: vec![0; CHARSET_INPUT].into_boxed_slice(),
            pending: 0,
            output: Vec::with_capacity(CHARSET_INPUT * 2),
            out_pos: 0,
            eof: false,
        }
    }

    /// Reads more input and converts it into `output`.
    fn refill(&mut self) -> io::Result<()> {
        self.output.clear();
        self.out_pos = 0;
        let n = match self.input.get_mut(self.pending..) {
            Some(space) => self.inner.read(space)?,
            None => 0,
        };
        if n == 0 {
            self.eof = true;
        }
        let filled = self.pending + n;
        let data = self.input.get(..filled).unwrap_or_default();
        let used = match self.charset {
            Charset::Latin1 => {
                push_latin1(data, &mut self.output);
                filled
            }
            Charset::Utf8OrLatin1 => convert_utf8_or_latin1(data, self.eof, &mut self.output),
        };
        self.input.copy_within(used..filled, 0);
        self.pending = filled - used;
        Ok(())
    }
}

impl<R: Read> Read for CharsetReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let ready = self.output.get(self.out_pos..).unwrap_or_default();
            if !ready.is_empty() {
                let n = ready.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), ready.get(..n)) {
                    dst.copy_from_slice(src);
                }
                self.out_pos += n;
                return Ok(n);
            }
            if (self.eof && self.pending == 0) || buf.is_empty() {
                return Ok(0);
            }
            self.refill()?;
        }
    }
}

/// Appends `bytes` read as ISO-8859-1 (each byte is the code point of its value).
fn push_latin1(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        if b < 0x80 {
            out.push(b);
        } else {
            out.push(0xC0 | (b >> 6));
            out.push(0x80 | (b & 0x3F));
        }
    }
}

/// Appends valid UTF-8 runs as they are and every other byte as Latin-1. Returns how
/// many bytes were used: an incomplete sequence at the end is left over unless `eof`.
fn convert_utf8_or_latin1(data: &[u8], eof: bool, out: &mut Vec<u8>) -> usize {
    let mut i = 0;
    while let Some(rest) = data.get(i..).filter(|r| !r.is_empty()) {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.extend_from_slice(valid.as_bytes());
                return data.len();
            }
            Err(e) => {
                let good = e.valid_up_to();
                out.extend_from_slice(rest.get(..good).unwrap_or_default());
                i += good;
                if e.error_len().is_none() && !eof {
                    // A sequence cut by the read boundary: wait for its other bytes.
                    return i;
                }
                // Only the first byte falls back; the next ones get their own chance.
                push_latin1(data.get(i..i + 1).unwrap_or_default(), out);
                i += 1;
            }
        }
    }
    data.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its data in pieces of fixed size.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn decode(data: &[u8], charset: Charset, step: usize) -> String {
        let mut out = String::new();
        CharsetReader::new(Trickle { data, step }, charset)
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn utf8_latin1_and_mixed_bodies_decode_even_when_split() {
        let cases: [(&[u8], &str); 6] = [
            ("Müller – ✓ 😀".as_bytes(), "Müller – ✓ 😀"),
            (b"M\xfcller \xe4\xf6", "Müller äö"),
            (b"Caf\xc3\xa9 und Caf\xe9", "Café und Café"),
            (b"\x86Name\x87", "\u{86}Name\u{87}"),
            (b"end\xc3", "endÃ"),
            (b"\xe2\x82x \xed\xa0\x80", "â\u{82}x í\u{a0}\u{80}"),
        ];
        for (raw, want) in cases {
            for step in [1, 2, 3, 5, 1000] {
                assert_eq!(
                    decode(raw, Charset::Utf8OrLatin1, step),
                    want,
                    "step {step}"
                );
            }
        }
    }

    #[test]
    fn declared_latin1_decodes_every_byte() {
        assert_eq!(decode("é".as_bytes(), Charset::Latin1, 1), "Ã©");
        assert_eq!(decode(b"\xe9\x8a", Charset::Latin1, 7), "é\u{8a}");
        assert_eq!(Charset::from_label(Some("iso-8859-1")), Charset::Latin1);
        assert_eq!(Charset::from_label(Some("latin1")), Charset::Latin1);
        assert_eq!(Charset::from_label(Some("utf-8")), Charset::Utf8OrLatin1);
        assert_eq!(Charset::from_label(None), Charset::Utf8OrLatin1);
    }

    #[test]
    fn long_bodies_cross_the_input_buffer() {
        let mut raw = Vec::new();
        for i in 0..20_000 {
            raw.extend_from_slice(if i % 3 == 0 {
                "ä€".as_bytes()
            } else {
                b"\xe4"
            });
        }
        let out = decode(&raw, Charset::Utf8OrLatin1, CHARSET_INPUT - 1);
        assert_eq!(out.chars().filter(|&c| c == '€').count(), 6667);
        assert_eq!(out.chars().filter(|&c| c == 'ä').count(), 20_000);
    }

    #[test]
    fn cap_fails_instead_of_truncating() {
        let data = [7u8; 100];
        let mut exact = CapReader {
            inner: Trickle {
                data: &data,
                step: 9,
            },
            count: 0,
            limit: 100,
            req: "GET /x".into(),
        };
        assert_eq!(exact.read_to_end(&mut Vec::new()).unwrap(), 100);
        let mut over = CapReader {
            inner: Trickle {
                data: &data,
                step: 9,
            },
            count: 0,
            limit: 99,
            req: "GET /x".into(),
        };
        let err = over.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(Error::from_io("GET /x", err).kind(), "too_large");
    }
}
