//! The streaming XMLTV writer (`xmltv.xml` and `xmltv.xml.gz`): programmes go to a spool
//! file as they arrive, the final document is written in one pass at the end.
//!
//! Rules: memory does not grow with the number of programmes (one flag per channel, fixed
//! buffers); XMLTV wants every `<channel>` before the first `<programme>` and we list only
//! channels that have programmes, hence the spool; the spool lives in the data folder as
//! `.xmltv-spool.<pid>.<n>.tmp` and is removed when the writer is finished or dropped; both
//! outputs are replaced atomically, one after the other, and are byte-for-byte the same
//! document; no element is ever empty; all text goes through [`text`](super::text).
//! Blocking I/O: async callers run this through `smol::unblock`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use quick_xml::escape::{escape, partial_escape};

use super::atomic::{AtomicFile, BUF_SIZE, create_temp, io_context};
use super::time::xmltv_time;
use super::{ChannelEntry, GuideError, XMLTV_FILE, XMLTV_GZ_FILE, text};
use crate::receiver::Event;

/// What [`GuideWriter::finish`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuideStats {
    /// `<channel>` elements written (channels with at least one programme).
    pub channels: usize,
    /// `<programme>` elements written.
    pub programmes: u64,
    /// Size of `xmltv.xml`.
    pub xml_bytes: u64,
    /// Size of `xmltv.xml.gz`.
    pub gz_bytes: u64,
}

/// The programme spool: a temp file that is removed when dropped.
struct Spool {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    written: u64,
}

impl Spool {
    fn create(dir: &Path) -> io::Result<Self> {
        let (path, file) = create_temp(dir, "xmltv-spool")?;
        Ok(Self {
            path,
            out: Some(BufWriter::with_capacity(BUF_SIZE, file)),
            written: 0,
        })
    }

    /// Flushes and hands back the file positioned at its start, for reading.
    fn rewind_for_reading(&mut self) -> io::Result<File> {
        let out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other(GuideError::Closed))?;
        let mut file = out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        Ok(file)
    }
}

impl Write for Spool {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let out = self
            .out
            .as_mut()
            .ok_or_else(|| io::Error::other(GuideError::Closed))?;
        let n = out.write(buf).map_err(|e| io_context(&self.path, e))?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush().map_err(|e| io_context(&self.path, e)),
            None => Ok(()),
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            drop(out.into_parts());
        }
        if let Err(e) = fs::remove_file(&self.path) {
            log::warn!(
                "event=temp_remove_failed path={} error={e}",
                self.path.display()
            );
        }
    }
}

/// Writes both outputs at once, so the document is produced (and the spool read) once.
struct Tee {
    xml: AtomicFile,
    gz: GzEncoder<AtomicFile>,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.xml.write_all(buf)?;
        self.gz.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.xml.flush()?;
        self.gz.flush()
    }
}

/// Builds `xmltv.xml` and `xmltv.xml.gz` in a data folder from a stream of events.
///
/// Guarantees: [`add`](Self::add) keeps only programmes inside the window and appends
/// them to a spool file, so memory stays flat however many there are;
/// [`finish`](Self::finish) replaces both files atomically with the same document; until
/// then the old files are untouched, and dropping the writer removes the spool.
pub struct GuideWriter {
    dir: PathBuf,
    from: i64,
    to: i64,
    channels: Vec<ChannelEntry>,
    /// `channel="…"` attribute text per channel, already cleaned and escaped.
    attr_ids: Vec<Box<str>>,
    /// For each channel, the first channel with the same id (itself if unique).
    canonical: Vec<usize>,
    has_programmes: Vec<bool>,
    programmes: u64,
    spool: Spool,
}

impl GuideWriter {
    /// Starts a guide for `channels` (the same entries as the playlist, so the ids match)
    /// covering programmes that end after `from` and start before `to` (Unix seconds).
    /// Creates the spool in `dir`; errors name the file that could not be created.
    pub fn create(dir: &Path, channels: &[ChannelEntry], from: i64, to: i64) -> io::Result<Self> {
        let spool = Spool::create(dir)?;
        let mut first_with_id = std::collections::HashMap::with_capacity(channels.len());
        let canonical = channels
            .iter()
            .enumerate()
            .map(|(i, c)| *first_with_id.entry(c.id.as_str()).or_insert(i))
            .collect();
        let attr_ids = channels
            .iter()
            .map(|c| escape(text::attribute(&c.id)).into())
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            from,
            to,
            channels: channels.to_vec(),
            attr_ids,
            canonical,
            has_programmes: vec![false; channels.len()],
            programmes: 0,
            spool,
        })
    }

    /// Adds `event` as a programme of channel number `channel` (an index into the entries
    /// given to [`create`](Self::create)). Returns `Ok(false)` when it is left out: outside
    /// the window, not a positive duration, a time XMLTV cannot express, a title that is
    /// empty after cleaning, or a channel whose id repeats an earlier entry's (that
    /// channel's programmes come from the first entry, so they are not doubled).
    /// Errors: a channel index out of range, or the spool could not be written.
    pub fn add(&mut self, channel: usize, event: &Event) -> io::Result<bool> {
        let Some(&canonical) = self.canonical.get(channel) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                GuideError::ChannelOutOfRange {
                    index: channel,
                    count: self.channels.len(),
                },
            ));
        };
        if canonical != channel || event.duration <= 0 {
            return Ok(false);
        }
        let end = event.start.saturating_add(event.duration);
        if end <= self.from || event.start >= self.to {
            return Ok(false);
        }
        let (Some(start), Some(stop)) = (xmltv_time(event.start), xmltv_time(end)) else {
            return Ok(false);
        };
        let title = text::one_line(&event.title);
        if title.is_empty() {
            return Ok(false);
        }
        let id = self.attr_ids.get(channel).map(|s| &**s).unwrap_or_default();
        let w = &mut self.spool;
        writeln!(
            w,
            "  <programme start=\"{start}\" stop=\"{stop}\" channel=\"{id}\">"
        )?;
        writeln!(w, "    <title>{}</title>", partial_escape(title.as_ref()))?;
        let desc = description(&title, &event.short_desc, &event.long_desc);
        if !desc.is_empty() {
            writeln!(w, "    <desc>{}</desc>", partial_escape(desc.as_str()))?;
        }
        if let Some(genre) = &event.genre {
            let genre = text::one_line(genre);
            if !genre.is_empty() {
                writeln!(w, "    <category>{}</category>", partial_escape(genre))?;
            }
        }
        w.write_all(b"  </programme>\n")?;
        if let Some(flag) = self.has_programmes.get_mut(channel) {
            *flag = true;
        }
        self.programmes += 1;
        Ok(true)
    }

    /// Writes the final document — declaration, DOCTYPE, `<tv>`, a `<channel>` for every
    /// channel with programmes (in entry order), the spooled programmes, `</tv>` — to
    /// `xmltv.xml` and, gzip-compressed (fast level), to `xmltv.xml.gz`, each replaced
    /// atomically. Guarantees: both files decode to the same bytes; on error the old files
    /// stay (or, if the second rename fails, only `xmltv.xml` is new) and no temp file is
    /// left.
    pub fn finish(self) -> io::Result<GuideStats> {
        let Self {
            dir,
            channels,
            has_programmes,
            programmes,
            mut spool,
            ..
        } = self;
        let mut reader = spool.rewind_for_reading()?;
        let xml = AtomicFile::create(&dir.join(XMLTV_FILE))?;
        let gz = GzEncoder::new(
            AtomicFile::create(&dir.join(XMLTV_GZ_FILE))?,
            Compression::fast(),
        );
        let mut out = BufWriter::with_capacity(BUF_SIZE, Tee { xml, gz });

        out.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")?;
        out.write_all(b"<!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n")?;
        out.write_all(b"<tv generator-info-name=\"xg2g\">\n")?;
        let mut channel_count = 0;
        for (entry, _) in channels
            .iter()
            .zip(&has_programmes)
            .filter(|(_, has)| **has)
        {
            write_channel(&mut out, entry)?;
            channel_count += 1;
        }
        copy_spool(&mut reader, &spool.path, spool.written, &mut out)?;
        out.write_all(b"</tv>\n")?;

        let Tee { xml, gz } = out.into_inner().map_err(|e| e.into_error())?;
        let gz = gz.finish()?;
        let xml_bytes = xml.commit()?;
        let gz_bytes = gz.commit()?;
        drop(reader);
        drop(spool);
        Ok(GuideStats {
            channels: channel_count,
            programmes,
            xml_bytes,
            gz_bytes,
        })
    }
}

/// One `<channel>` element: the name and the number as display names, the logo as icon.
fn write_channel(w: &mut impl Write, entry: &ChannelEntry) -> io::Result<()> {
    let id = text::attribute(&entry.id);
    writeln!(w, "  <channel id=\"{}\">", escape(id.as_ref()))?;
    let name = text::one_line(&entry.name);
    if !name.is_empty() {
        writeln!(
            w,
            "    <display-name>{}</display-name>",
            partial_escape(name)
        )?;
    }
    // Plex matches guide channels by number.
    writeln!(w, "    <display-name>{}</display-name>", entry.number)?;
    if let Some(logo) = &entry.logo {
        let logo = text::url(logo);
        if !logo.is_empty() {
            writeln!(w, "    <icon src=\"{}\"/>", escape(logo))?;
        }
    }
    w.write_all(b"  </channel>\n")
}

/// Copies the whole spool into `out`, checking it has the length that was written.
fn copy_spool(
    reader: &mut File,
    path: &Path,
    expected: u64,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut buf = vec![0u8; BUF_SIZE];
    let mut copied = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_context(path, e)),
        };
        out.write_all(buf.get(..n).unwrap_or_default())?;
        copied += n as u64;
    }
    if copied != expected {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            GuideError::SpoolLength {
                path: path.to_path_buf(),
                expected,
                found: copied,
            },
        ));
    }
    Ok(())
}

/// The `<desc>` text from an event's short and long description: whichever is non-empty;
/// only the longer one when one contains the other; otherwise short, newline, long. A short
/// description that only repeats the title adds nothing and is dropped.
fn description(title: &str, short: &str, long: &str) -> String {
    let short = text::one_line(short);
    let long = text::multi_line(long);
    let short = if short.as_ref() == title { "" } else { &short };
    if short.is_empty() || long.contains(short) {
        long.into_owned()
    } else if long.is_empty() || short.contains(long.as_ref()) {
        short.to_owned()
    } else {
        format!("{short}\n{long}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestDir;
    use super::*;
    use quick_xml::Reader;
    use quick_xml::events::Event as Xml;

    /// A programme as read back from the document.
    #[derive(Debug, Default, PartialEq)]
    struct Prog {
        start: String,
        stop: String,
        channel: String,
        title: String,
        desc: Option<String>,
        category: Option<String>,
    }

    /// A channel as read back from the document.
    #[derive(Debug, Default, PartialEq)]
    struct Chan {
        id: String,
        names: Vec<String>,
        icon: Option<String>,
    }

    /// Parses a guide with quick-xml's reader, checking structure on the way: the prolog,
    /// one `<tv>`, all channels before all programmes, no empty element but `<icon/>`.
    fn parse(xml: &str) -> (Vec<Chan>, Vec<Prog>) {
        let mut reader = Reader::from_str(xml);
        let mut chans: Vec<Chan> = Vec::new();
        let mut progs: Vec<Prog> = Vec::new();
        let mut stack: Vec<String> = Vec::new();
        let mut raw = String::new();
        let mut saw_doctype = false;
        loop {
            match reader.read_event().expect("well-formed XML") {
                Xml::Eof => break,
                Xml::Decl(_) => assert!(stack.is_empty()),
                Xml::DocType(d) => {
                    assert_eq!(d.decode().expect("utf-8").trim(), "tv SYSTEM \"xmltv.dtd\"");
                    saw_doctype = true;
                }
                Xml::Start(e) => {
                    let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8");
                    let attrs: Vec<(String, String)> = e
                        .attributes()
                        .map(|a| {
                            let a = a.expect("attribute");
                            let k = String::from_utf8(a.key.as_ref().to_vec()).expect("utf-8");
                            (
                                k,
                                a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                    .expect("value")
                                    .into_owned(),
                            )
                        })
                        .collect();
                    let get = |k: &str| attrs.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone());
                    match (stack.len(), name.as_str()) {
                        (0, "tv") => {
                            assert!(saw_doctype);
                            assert_eq!(get("generator-info-name").as_deref(), Some("xg2g"));
                        }
                        (1, "channel") => {
                            assert!(progs.is_empty(), "channel after programme");
                            chans.push(Chan {
                                id: get("id").expect("id"),
                                ..Chan::default()
                            });
                        }
                        (1, "programme") => progs.push(Prog {
                            start: get("start").expect("start"),
                            stop: get("stop").expect("stop"),
                            channel: get("channel").expect("channel"),
                            ..Prog::default()
                        }),
                        (2, "display-name" | "title" | "desc" | "category") => {}
                        other => panic!("unexpected element {other:?}"),
                    }
                    stack.push(name);
                    raw.clear();
                }
                Xml::Empty(e) => {
                    assert_eq!(e.name().as_ref(), b"icon", "empty element");
                    let src = e
                        .attributes()
                        .map(|a| a.expect("attribute"))
                        .find(|a| a.key.as_ref() == b"src")
                        .map(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Explicit1_0)
                                .expect("value")
                                .into_owned()
                        });
                    let chan = chans.last_mut().expect("icon inside channel");
                    chan.icon = src;
                }
                Xml::Text(t) => raw.push_str(&t.decode().expect("utf-8")),
                Xml::GeneralRef(r) => {
                    raw.push('&');
                    raw.push_str(&r.decode().expect("utf-8"));
                    raw.push(';');
                }
                Xml::End(e) => {
                    let name = stack.pop().expect("open element");
                    assert_eq!(e.name().as_ref(), name.as_bytes());
                    if stack.len() == 2 {
                        let value = quick_xml::escape::unescape(&raw)
                            .expect("entities")
                            .into_owned();
                        assert!(!value.is_empty(), "empty <{name}>");
                        match name.as_str() {
                            "display-name" => chans.last_mut().expect("channel").names.push(value),
                            "title" => progs.last_mut().expect("programme").title = value,
                            "desc" => progs.last_mut().expect("programme").desc = Some(value),
                            "category" => {
                                progs.last_mut().expect("programme").category = Some(value)
                            }
                            _ => unreachable!(),
                        }
                    }
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
        assert!(stack.is_empty());
        (chans, progs)
    }

    fn entry(i: u32, name: &str, logo: Option<&str>) -> ChannelEntry {
        let sref = format!("1:0:19:{i:X}:3FB:1:C00000:0:0:0:");
        ChannelEntry {
            id: super::super::tvg_id(name, &sref),
            number: i,
            name: name.to_owned(),
            group: "Favourites".to_owned(),
            logo: logo.map(str::to_owned),
            stream_url: format!("http://h/stream/{sref}"),
        }
    }

    fn event(start: i64, duration: i64, title: &str) -> Event {
        Event {
            sref: String::new(),
            start,
            duration,
            title: title.to_owned(),
            short_desc: String::new(),
            long_desc: String::new(),
            genre: None,
        }
    }

    fn read(path: &Path) -> Vec<u8> {
        fs::read(path).expect("read output")
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .expect("gunzip");
        out
    }

    const T0: i64 = 1_767_225_600; // 2026-01-01 00:00:00 UTC

    #[test]
    fn round_trip_structure_counts_and_text() {
        let dir = TestDir::new("xmltv-roundtrip");
        let channels = [
            entry(1, "Das Erste HD", Some("http://p/das erste.png")),
            entry(2, "Empty \"Channel\"", None),
            entry(3, "Tom & Jerry <TV> \u{86}\u{87}", None),
            entry(4, "\u{1}\u{9F}", Some("")),
        ];
        let mut w = GuideWriter::create(dir.path(), &channels, T0, T0 + 86_400).expect("create");
        let mut e = event(T0, 1800, "Tagesschau");
        e.short_desc = "Nachrichten".into();
        e.long_desc = "Line one\r\nLine two".into();
        e.genre = Some("News".into());
        assert!(w.add(0, &e).expect("add"));
        let mut e = event(
            T0 + 1800,
            2700,
            "A & B <c> \"d\" 'e' ]]> \u{0}\u{8}\u{1F}\u{80}\u{8A}\u{9F}\u{FFFE}\u{FFFF} 📺",
        );
        e.short_desc = "\u{86}Short\u{87}".into();
        e.long_desc = "\u{FFFF}".into();
        e.genre = Some("  ".into());
        assert!(w.add(0, &e).expect("add"));
        let mut e = event(T0 + 600, 600, "Third");
        e.long_desc = "Only long\n\tindented".into();
        e.genre = Some("Film & Kino".into());
        assert!(w.add(2, &e).expect("add"));
        assert!(w.add(3, &event(T0, 60, "Nameless channel")).expect("add"));
        let stats = w.finish().expect("finish");
        assert_eq!(stats.channels, 3);
        assert_eq!(stats.programmes, 4);

        let xml = read(&dir.path().join(XMLTV_FILE));
        let gz = read(&dir.path().join(XMLTV_GZ_FILE));
        assert_eq!(stats.xml_bytes, xml.len() as u64);
        assert_eq!(stats.gz_bytes, gz.len() as u64);
        assert_eq!(gunzip(&gz), xml);
        assert_eq!(
            dir.names(),
            vec![XMLTV_FILE.to_owned(), XMLTV_GZ_FILE.to_owned()]
        );

        let xml = String::from_utf8(xml).expect("utf-8");
        assert!(xml.starts_with(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE tv SYSTEM \"xmltv.dtd\">\n"
        ));
        assert!(xml.ends_with("</tv>\n"));
        assert!(
            !xml.chars()
                .any(|c| (c.is_control() && c != '\n' && c != '\t')
                    || c == '\u{FFFE}'
                    || c == '\u{FFFF}')
        );
        let (chans, progs) = parse(&xml);
        assert_eq!(
            chans,
            vec![
                Chan {
                    id: channels[0].id.clone(),
                    names: vec!["Das Erste HD".into(), "1".into()],
                    icon: Some("http://p/daserste.png".into()),
                },
                Chan {
                    id: channels[2].id.clone(),
                    names: vec!["Tom & Jerry <TV>".into(), "3".into()],
                    icon: None,
                },
                Chan {
                    id: channels[3].id.clone(),
                    names: vec!["4".into()],
                    icon: None
                },
            ]
        );
        assert_eq!(
            progs[0],
            Prog {
                start: "20260101000000 +0000".into(),
                stop: "20260101003000 +0000".into(),
                channel: channels[0].id.clone(),
                title: "Tagesschau".into(),
                desc: Some("Nachrichten\nLine one\nLine two".into()),
                category: Some("News".into()),
            }
        );
        assert_eq!(progs[1].title, "A & B <c> \"d\" 'e' ]]> 📺");
        assert_eq!(progs[1].desc.as_deref(), Some("Short"));
        assert_eq!(progs[1].category, None);
        assert_eq!(progs[1].stop, "20260101011500 +0000");
        assert_eq!(progs[2].channel, channels[2].id);
        assert_eq!(progs[2].desc.as_deref(), Some("Only long\n\tindented"));
        assert_eq!(progs[2].category.as_deref(), Some("Film & Kino"));
        assert_eq!(progs[3].desc, None);
    }

    #[test]
    fn window_and_bad_events_are_filtered() {
        let dir = TestDir::new("xmltv-window");
        let channels = [entry(1, "A", None)];
        let (from, to) = (T0, T0 + 3600);
        let mut w = GuideWriter::create(dir.path(), &channels, from, to).expect("create");
        let cases = [
            (event(from - 600, 600, "ends at from"), false),
            (event(from - 600, 601, "ends just after from"), true),
            (event(from, 60, "starts at from"), true),
            (event(to - 1, 60, "starts just before to"), true),
            (event(to, 60, "starts at to"), false),
            (event(from - 7200, 86_400, "spans the window"), true),
            (event(from, 0, "zero duration"), false),
            (event(from, -5, "negative duration"), false),
            (event(from, 60, " \u{1}\n "), false),
            (event(i64::MAX - 10, 100, "overflowing end"), false),
        ];
        for (e, kept) in &cases {
            assert_eq!(w.add(0, e).expect("add"), *kept, "{}", e.title);
        }
        let far = GuideWriter::create(dir.path(), &channels, i64::MIN, i64::MAX);
        let mut far = far.expect("create");
        assert!(
            !far.add(0, &event(253_402_300_000, 1000, "year 10000"))
                .expect("add")
        );
        assert!(
            !far.add(0, &event(-62_135_596_900, 10, "year 0"))
                .expect("add")
        );
        drop(far);
        let stats = w.finish().expect("finish");
        assert_eq!(stats.programmes, 4);
        let xml = String::from_utf8(read(&dir.path().join(XMLTV_FILE))).expect("utf-8");
        let (_, progs) = parse(&xml);
        let titles: Vec<&str> = progs.iter().map(|p| p.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "ends just after from",
                "starts at from",
                "starts just before to",
                "spans the window"
            ]
        );
    }

    #[test]
    fn channels_without_programmes_and_aliases_are_left_out() {
        let dir = TestDir::new("xmltv-omit");
        let mut channels: Vec<ChannelEntry> =
            (1..=5).map(|i| entry(i, &format!("C{i}"), None)).collect();
        // The same service in a second bouquet: same id.
        let mut alias = channels[1].clone();
        alias.number = 6;
        channels.push(alias);
        let mut w = GuideWriter::create(dir.path(), &channels, T0, T0 + 86_400).expect("create");
        assert!(w.add(3, &event(T0, 60, "on C4")).expect("add"));
        assert!(w.add(1, &event(T0, 60, "on C2")).expect("add"));
        assert!(!w.add(5, &event(T0, 60, "on the alias of C2")).expect("add"));
        let err = w
            .add(6, &event(T0, 60, "no such channel"))
            .expect_err("out of range");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            err.to_string(),
            "channel index 6 out of range (guide has 6 channels)"
        );
        let stats = w.finish().expect("finish");
        assert_eq!((stats.channels, stats.programmes), (2, 2));
        let xml = String::from_utf8(read(&dir.path().join(XMLTV_FILE))).expect("utf-8");
        let (chans, progs) = parse(&xml);
        let ids: Vec<&str> = chans.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [channels[1].id.as_str(), channels[3].id.as_str()]);
        assert_eq!(progs.len(), 2);
    }

    #[test]
    fn empty_guide_is_still_a_document() {
        let dir = TestDir::new("xmltv-empty");
        let w = GuideWriter::create(dir.path(), &[], T0, T0 + 60).expect("create");
        let stats = w.finish().expect("finish");
        assert_eq!((stats.channels, stats.programmes), (0, 0));
        let xml = String::from_utf8(read(&dir.path().join(XMLTV_FILE))).expect("utf-8");
        let (chans, progs) = parse(&xml);
        assert!(chans.is_empty() && progs.is_empty());
        xmllint(&dir.path().join(XMLTV_FILE));
    }

    #[test]
    fn spool_is_removed_on_drop_and_old_files_kept() {
        let dir = TestDir::new("xmltv-drop");
        fs::write(dir.path().join(XMLTV_FILE), "old").expect("setup");
        let channels = [entry(1, "A", None)];
        let mut w = GuideWriter::create(dir.path(), &channels, T0, T0 + 60).expect("create");
        assert!(w.add(0, &event(T0, 60, "x")).expect("add"));
        assert_eq!(dir.names().len(), 2, "{:?}", dir.names());
        assert!(dir.names()[0].starts_with(".xmltv-spool."));
        drop(w);
        assert_eq!(dir.names(), vec![XMLTV_FILE.to_owned()]);
        assert_eq!(read(&dir.path().join(XMLTV_FILE)), b"old");
    }

    #[test]
    fn finish_failure_leaves_no_temp_files() {
        let dir = TestDir::new("xmltv-fail");
        let channels = [entry(1, "A", None)];
        let mut w = GuideWriter::create(dir.path(), &channels, T0, T0 + 60).expect("create");
        assert!(w.add(0, &event(T0, 60, "x")).expect("add"));
        // A folder where the gz file should go makes its rename fail.
        fs::create_dir(dir.path().join(XMLTV_GZ_FILE)).expect("setup");
        fs::write(dir.path().join(XMLTV_GZ_FILE).join("f"), "x").expect("setup");
        let err = w.finish().expect_err("rename onto a folder");
        assert!(err.to_string().contains(XMLTV_GZ_FILE), "{err}");
        assert_eq!(
            dir.names(),
            vec![XMLTV_FILE.to_owned(), XMLTV_GZ_FILE.to_owned()]
        );
    }

    /// Runs xmllint: well-formed, and valid against the XMLTV DTD Debian ships.
    fn xmllint(path: &Path) {
        let out = std::process::Command::new("xmllint")
            .arg("--noout")
            .arg("--dtdvalid")
            .arg("/usr/share/xmltv/xmltv.dtd")
            .arg(path)
            .output()
            .expect("xmllint is installed here (apt-get install libxml2-utils)");
        assert!(
            out.status.success(),
            "xmllint: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs tv_validate_file (XMLTV's own checker: DTD, channel ids, times, every channel
    /// has programmes).
    fn tv_validate_file(path: &Path) {
        let out = std::process::Command::new("tv_validate_file")
            .arg("--dtd-file")
            .arg("/usr/share/xmltv/xmltv.dtd")
            .arg(path)
            .output()
            .expect("tv_validate_file is installed here (apt-get install xmltv-util)");
        assert!(
            out.status.success(),
            "tv_validate_file: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A realistic guide with hostile text in every field, checked by both validators.
    #[test]
    fn hostile_guide_passes_xmllint() {
        let dir = TestDir::new("xmltv-xmllint");
        let names = [
            "Das Erste HD",
            "\"Q\" & <A> \u{85}\u{8A}",
            "📺 \u{FFFE}",
            "",
            "ZDF",
        ];
        let channels: Vec<ChannelEntry> = names
            .iter()
            .enumerate()
            .map(|(i, n)| entry(i as u32 + 1, n, Some("http://p/a b&c\".png")))
            .collect();
        let mut w =
            GuideWriter::create(dir.path(), &channels, T0, T0 + 7 * 86_400).expect("create");
        for (c, name) in names.iter().enumerate() {
            for k in 0..30 {
                let mut e = event(
                    T0 + k * 3600,
                    3600,
                    &format!("{name} show {k} \u{0}\u{1B}\u{9C}"),
                );
                e.short_desc = format!("short {k} <b>&amp;</b>");
                e.long_desc = format!("long\r\n{name}\u{FDD0}\u{1FFFE}\n]]>");
                e.genre = Some(format!("Genre {}", k % 3));
                assert!(w.add(c, &e).expect("add"));
            }
        }
        let stats = w.finish().expect("finish");
        assert_eq!((stats.channels, stats.programmes), (5, 150));
        xmllint(&dir.path().join(XMLTV_FILE));
        tv_validate_file(&dir.path().join(XMLTV_FILE));
        let xml = String::from_utf8(read(&dir.path().join(XMLTV_FILE))).expect("utf-8");
        let (chans, progs) = parse(&xml);
        assert_eq!((chans.len(), progs.len()), (5, 150));
        assert!(
            chans
                .iter()
                .all(|c| c.icon.as_deref() == Some("http://p/ab&c.png"))
        );
    }
}
