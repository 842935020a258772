//! JSON text the way OpenWebIF writes it, and response bodies generated while they are sent.
//!
//! Rules: text fields are HTML-escaped then JSON-escaped; refs are only JSON-escaped.
//! A body is produced by a `Gen` a few KiB at a time, encoded (UTF-8 or ISO-8859-1 with
//! `?` for what Latin-1 cannot carry) and optionally gzipped chunk by chunk, so memory per
//! body stays bounded whatever its length (including bodies that never end).

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::Compression;
use flate2::write::GzEncoder;
use smol::io::AsyncRead;

/// Target size of one generated piece of JSON text.
pub(crate) const CHUNK: usize = 4096;

/// How JSON strings are written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Style {
    /// Escape every non-ASCII character as `\uXXXX` (Python's `ensure_ascii`).
    pub ascii: bool,
}

/// Appends `s` as a JSON string (quotes included) without HTML escaping (for refs).
pub(crate) fn push_str(out: &mut String, s: &str, style: Style) {
    out.push('"');
    for c in s.chars() {
        push_json_char(out, c, style);
    }
    out.push('"');
}

/// Appends raw text HTML-escaped then as a JSON string, as OpenWebIF does for names and
/// EPG text; `hex_apos` writes `'` as `&#x27;` (Python 3) instead of `&#39;`.
pub(crate) fn push_text(out: &mut String, raw: &str, style: Style, hex_apos: bool) {
    out.push('"');
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' if hex_apos => out.push_str("&#x27;"),
            '\'' => out.push_str("&#39;"),
            c => push_json_char(out, c, style),
        }
    }
    out.push('"');
}

fn push_json_char(out: &mut String, c: char, style: Style) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x20 || (style.ascii && !c.is_ascii()) => {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
        c => out.push(c),
    }
}

/// Encodes text for the wire: UTF-8, or ISO-8859-1 with `?` for other characters.
pub(crate) fn encode(text: &str, latin1: bool, out: &mut Vec<u8>) {
    if latin1 {
        out.extend(text.chars().map(|c| {
            let v = c as u32;
            if v <= 0xFF { v as u8 } else { b'?' }
        }));
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// A producer of JSON text in pieces.
pub(crate) trait Gen: Send {
    /// Appends the next piece (roughly `CHUNK` bytes) to `out`; false when this was the last.
    fn fill(&mut self, out: &mut String) -> bool;
}

/// A text known in advance, handed out whole.
pub(crate) struct TextGen(pub String);

impl Gen for TextGen {
    fn fill(&mut self, out: &mut String) -> bool {
        out.push_str(&self.0);
        false
    }
}

/// How a generated body goes on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Wire {
    /// ISO-8859-1 instead of UTF-8.
    pub latin1: bool,
    /// gzip the bytes as they go.
    pub gzip: bool,
    /// Cut the (uncompressed) body after this many bytes (the `malformed` fault).
    pub limit: Option<usize>,
}

/// An `AsyncRead` body pulling pieces from a `Gen` only when the previous one is sent.
pub(crate) struct GenBody {
    source: Box<dyn Gen>,
    wire: Wire,
    gz: Option<GzEncoder<Vec<u8>>>,
    text: String,
    raw: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    produced: usize,
    done: bool,
}

impl GenBody {
    /// A body for this generator and wire format.
    pub(crate) fn new(source: Box<dyn Gen>, wire: Wire) -> GenBody {
        GenBody {
            source,
            wire,
            // Speed matters more than size here: the simulator shares 2 cores with the daemon.
            gz: wire
                .gzip
                .then(|| GzEncoder::new(Vec::new(), Compression::fast())),
            text: String::with_capacity(CHUNK * 2),
            raw: Vec::with_capacity(CHUNK * 2),
            out: Vec::with_capacity(CHUNK * 2),
            pos: 0,
            produced: 0,
            done: false,
        }
    }

    /// Produces the next non-empty output piece, or marks the body done.
    fn refill(&mut self) -> std::io::Result<()> {
        self.out.clear();
        self.pos = 0;
        while self.out.is_empty() && !self.done {
            self.text.clear();
            self.raw.clear();
            let mut more = self.source.fill(&mut self.text);
            encode(&self.text, self.wire.latin1, &mut self.raw);
            if let Some(limit) = self.wire.limit {
                let room = limit.saturating_sub(self.produced);
                if self.raw.len() >= room {
                    self.raw.truncate(room);
                    more = false;
                }
            }
            self.produced += self.raw.len();
            match self.gz.as_mut() {
                Some(gz) => {
                    gz.write_all(&self.raw)?;
                    if !more {
                        gz.try_finish()?;
                    }
                    std::mem::swap(&mut self.out, gz.get_mut());
                }
                None => std::mem::swap(&mut self.out, &mut self.raw),
            }
            self.done = !more;
        }
        Ok(())
    }
}

impl AsyncRead for GenBody {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.pos >= this.out.len() {
            if this.done {
                return Poll::Ready(Ok(0));
            }
            if let Err(e) = this.refill() {
                return Poll::Ready(Err(e));
            }
        }
        let avail = this.out.get(this.pos..).unwrap_or(&[]);
        let n = avail.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        this.pos += n;
        Poll::Ready(Ok(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::io::AsyncReadExt;

    const PLAIN: Style = Style { ascii: false };
    const ASCII: Style = Style { ascii: true };

    #[test]
    fn text_is_html_then_json_escaped() {
        let mut s = String::new();
        push_text(&mut s, "Tom & \"Jerry\" <b>'s\\", PLAIN, false);
        assert_eq!(s, r#""Tom &amp; &quot;Jerry&quot; &lt;b&gt;&#39;s\\""#);
        let mut s = String::new();
        push_text(&mut s, "it's", PLAIN, true);
        assert_eq!(s, "\"it&#x27;s\"");
        let mut s = String::new();
        push_str(&mut s, "FROM BOUQUET \"x\"", PLAIN);
        assert_eq!(s, r#""FROM BOUQUET \"x\"""#);
    }

    #[test]
    fn ascii_style_escapes_non_ascii_with_surrogates() {
        let mut s = String::new();
        push_text(&mut s, "Ö\u{8A}📺\u{1}", ASCII, false);
        assert_eq!(s, "\"\\u00d6\\u008a\\ud83d\\udcfa\\u0001\"");
        let v: String = serde_json::from_str(&s).unwrap_or_default();
        assert_eq!(v, "Ö\u{8A}📺\u{1}");
        let mut s = String::new();
        push_text(&mut s, "Ö\u{8A}", PLAIN, false);
        assert_eq!(s, "\"Ö\u{8A}\"");
    }

    #[test]
    fn latin1_replaces_what_it_cannot_carry() {
        let mut out = Vec::new();
        encode("Ö€\u{86}a", true, &mut out);
        assert_eq!(out, vec![0xD6, b'?', 0x86, b'a']);
    }

    struct Counting(u32);
    impl Gen for Counting {
        fn fill(&mut self, out: &mut String) -> bool {
            self.0 += 1;
            out.push_str(&format!("[{}]", self.0));
            self.0 < 1000
        }
    }

    #[test]
    fn gzip_body_decodes_to_the_plain_body() {
        let read = |wire| {
            smol::block_on(async {
                let mut body = GenBody::new(Box::new(Counting(0)), wire);
                let mut v = Vec::new();
                body.read_to_end(&mut v)
                    .await
                    .map(|_| v)
                    .unwrap_or_default()
            })
        };
        let plain = read(Wire::default());
        let gz = read(Wire {
            gzip: true,
            ..Wire::default()
        });
        let mut dec = Vec::new();
        let r = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut dec);
        assert!(r.is_ok());
        assert_eq!(dec, plain);
        assert!(plain.ends_with(b"[1000]"));
        let cut = read(Wire {
            limit: Some(10),
            ..Wire::default()
        });
        assert_eq!(cut, b"[1][2][3][".to_vec());
    }
}
