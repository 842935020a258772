//! The M3U playlist (`playlist.m3u`): one `#EXTINF` line and one URL line per channel.
//!
//! Rules: the file is replaced atomically; whatever the channel data contains, every entry
//! is exactly two lines and every attribute value stays inside its quotes (text goes
//! through [`text`](super::text)); entries without a usable URL are left out.

use std::io::{self, Write};
use std::path::Path;

use super::atomic::write_atomic;
use super::{ChannelEntry, PLAYLIST_FILE, text};

/// Writes `dir/playlist.m3u` atomically: the `#EXTM3U` header naming `guide_url` (as
/// `url-tvg` and `x-tvg-url`; left out when empty), then per entry
/// `#EXTINF:-1 tvg-id="…" tvg-name="…" [tvg-logo="…"] group-title="…" tvg-chno="N",Name`
/// and its stream URL. Returns the bytes written.
///
/// Guarantees: one line per header/`#EXTINF`/URL whatever the input; attribute values
/// contain no `"`, line break or control character; URL lines contain no whitespace or
/// control character and never start with `#` (such entries, or ones whose URL is empty
/// after cleaning, are skipped with a warning). On error the old file is kept.
pub fn write_playlist(dir: &Path, guide_url: &str, entries: &[ChannelEntry]) -> io::Result<u64> {
    write_atomic(&dir.join(PLAYLIST_FILE), |w| {
        render_playlist(w, guide_url, entries)
    })
}

/// The playlist text itself (see [`write_playlist`]).
fn render_playlist(w: &mut dyn Write, guide_url: &str, entries: &[ChannelEntry]) -> io::Result<()> {
    let guide = text::url(guide_url);
    if guide.is_empty() {
        writeln!(w, "#EXTM3U")?;
    } else {
        writeln!(w, "#EXTM3U url-tvg=\"{guide}\" x-tvg-url=\"{guide}\"")?;
    }
    for entry in entries {
        let url = text::url(&entry.stream_url);
        if url.is_empty() || url.starts_with('#') {
            log::warn!(
                "event=playlist_entry_skipped reason=bad_stream_url channel={:?}",
                entry.id
            );
            continue;
        }
        let id = text::attribute(&entry.id);
        let mut name = text::one_line(&entry.name);
        if name.is_empty() {
            // Players show the text after the comma; an empty one is an invisible channel.
            name = id.clone();
        }
        let attr_name = text::attribute(&name);
        write!(w, "#EXTINF:-1 tvg-id=\"{id}\" tvg-name=\"{attr_name}\"")?;
        if let Some(logo) = &entry.logo {
            let logo = text::url(logo);
            if !logo.is_empty() {
                write!(w, " tvg-logo=\"{logo}\"")?;
            }
        }
        let group = text::attribute(&entry.group);
        writeln!(
            w,
            " group-title=\"{group}\" tvg-chno=\"{}\",{name}",
            entry.number
        )?;
        writeln!(w, "{url}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::TestDir;
    use super::*;

    fn entry(id: &str, number: u32, name: &str, group: &str, logo: Option<&str>) -> ChannelEntry {
        ChannelEntry {
            id: id.to_owned(),
            number,
            name: name.to_owned(),
            group: group.to_owned(),
            logo: logo.map(str::to_owned),
            stream_url: format!("http://127.0.0.1:8080/stream/1:0:1:{number:X}:0:0:0:0:0:0:"),
        }
    }

    fn render(guide_url: &str, entries: &[ChannelEntry]) -> String {
        let mut out = Vec::new();
        render_playlist(&mut out, guide_url, entries).expect("render");
        String::from_utf8(out).expect("utf-8")
    }

    /// Splits an `#EXTINF` line into its attributes and the name after the comma, the way
    /// a strict player would: `key="value"` pairs, then `,` and the rest.
    fn parse_extinf(line: &str) -> (Vec<(String, String)>, String) {
        let rest = line.strip_prefix("#EXTINF:-1").expect("EXTINF prefix");
        let mut attrs = Vec::new();
        let mut rest = rest;
        loop {
            rest = rest.strip_prefix(' ').unwrap_or(rest);
            if let Some(name) = rest.strip_prefix(',') {
                return (attrs, name.to_owned());
            }
            let eq = rest.find("=\"").expect("attribute start");
            let key = rest[..eq].to_owned();
            assert!(
                key.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{key}"
            );
            let after = &rest[eq + 2..];
            let end = after.find('"').expect("attribute end");
            attrs.push((key, after[..end].to_owned()));
            rest = &after[end + 1..];
        }
    }

    #[test]
    fn plain_playlist() {
        let entries = [
            entry(
                "das-erste-hd.1234567",
                1,
                "Das Erste HD",
                "Favourites",
                Some("http://p/1.png"),
            ),
            entry("zdf-hd.89abcde", 2, "ZDF HD", "Favourites", None),
        ];
        let text = render("http://h:8080/xmltv.xml", &entries);
        let expected = "#EXTM3U url-tvg=\"http://h:8080/xmltv.xml\" x-tvg-url=\"http://h:8080/xmltv.xml\"\n\
            #EXTINF:-1 tvg-id=\"das-erste-hd.1234567\" tvg-name=\"Das Erste HD\" tvg-logo=\"http://p/1.png\" group-title=\"Favourites\" tvg-chno=\"1\",Das Erste HD\n\
            http://127.0.0.1:8080/stream/1:0:1:1:0:0:0:0:0:0:\n\
            #EXTINF:-1 tvg-id=\"zdf-hd.89abcde\" tvg-name=\"ZDF HD\" group-title=\"Favourites\" tvg-chno=\"2\",ZDF HD\n\
            http://127.0.0.1:8080/stream/1:0:1:2:0:0:0:0:0:0:\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn hostile_names_stay_on_their_lines() {
        let hostile = [
            "Evil \"quoted\" name",
            "Line\nbreak\r\n#EXTINF:-1 tvg-id=\"x\",Injected\nhttp://evil/",
            "Comma, in, name",
            "Tom & Jerry <b>",
            "\u{86}Emph\u{87}asis\u{8A}DVB break",
            "\u{85}NEL\u{2028}LS\u{2029}PS\u{0B}\u{0C}",
            "Emoji 📺🎬 TV",
            "\u{0}\u{1}\u{1B}\u{7F}\u{9F}",
            "",
        ];
        let entries: Vec<ChannelEntry> = hostile
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mut e = entry(&format!("id{i}.abc"), i as u32 + 1, name, name, Some(name));
                e.group = format!("G\"{name}\"");
                e
            })
            .collect();
        let text = render("http://h/x\"y\nz", &entries);
        let lines: Vec<&str> = text.split('\n').collect();
        // Header, two lines per entry, and the empty string after the final newline.
        assert_eq!(lines.len(), 1 + 2 * entries.len() + 1, "{text}");
        assert_eq!(lines.last(), Some(&""));
        assert_eq!(
            lines[0],
            "#EXTM3U url-tvg=\"http://h/xyz\" x-tvg-url=\"http://h/xyz\""
        );
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(!text.contains(['\u{2028}', '\u{2029}']));
        for (i, e) in entries.iter().enumerate() {
            let (attrs, name) = parse_extinf(lines[1 + 2 * i]);
            let keys: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
            let has_logo = keys.contains(&"tvg-logo");
            let mut expected = vec!["tvg-id", "tvg-name", "group-title", "tvg-chno"];
            if has_logo {
                expected.insert(2, "tvg-logo");
            }
            assert_eq!(keys, expected);
            assert_eq!(attrs[0].1, e.id);
            assert_eq!(
                attrs.last().map(|(_, v)| v.clone()),
                Some(format!("{}", i + 1))
            );
            assert!(!name.is_empty());
            assert!(!name.contains('\n'));
            assert_eq!(lines[2 + 2 * i], e.stream_url);
        }
        let (attrs, name) = parse_extinf(lines[1]);
        assert_eq!(attrs[1].1, "Evil 'quoted' name");
        assert_eq!(name, "Evil \"quoted\" name");
        let (_, name) = parse_extinf(lines[3]);
        assert_eq!(
            name,
            "Line break #EXTINF:-1 tvg-id=\"x\",Injected http://evil/"
        );
        let (_, name) = parse_extinf(lines[5]);
        assert_eq!(name, "Comma, in, name");
        let (_, name) = parse_extinf(lines[7]);
        assert_eq!(name, "Tom & Jerry <b>");
        let (_, name) = parse_extinf(lines[9]);
        assert_eq!(name, "Emphasis DVB break");
        let (_, name) = parse_extinf(lines[13]);
        assert_eq!(name, "Emoji 📺🎬 TV");
        // Nothing printable left: the id stands in for the name.
        let (attrs, name) = parse_extinf(lines[15]);
        assert_eq!(name, "id7.abc");
        assert_eq!(attrs[1].1, "id7.abc");
    }

    #[test]
    fn bad_urls_are_skipped_or_cleaned() {
        let mut a = entry("a.1", 1, "A", "G", Some("http://logo/a b.png\n"));
        a.stream_url = "http://h/stream/a b\r\n#EXTINF".into();
        let mut b = entry("b.1", 2, "B", "G", None);
        b.stream_url = " \n\t".into();
        let mut c = entry("c.1", 3, "C", "G", Some(" \n"));
        c.stream_url = "#EXTINF:-1,evil".into();
        let d = entry("d.1", 4, "D", "G", None);
        let text = render("http://h/g", &[a, b, c, d]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[1].contains("tvg-logo=\"http://logo/ab.png\""));
        assert_eq!(lines[2], "http://h/stream/ab#EXTINF");
        assert!(lines[3].contains("tvg-id=\"d.1\""));
        assert_eq!(render(" \n", &[]), "#EXTM3U\n");
    }

    #[test]
    fn write_playlist_is_atomic_and_counts_bytes() {
        let dir = TestDir::new("m3u-write");
        let entries = [entry("a.1", 1, "A", "G", None)];
        let n = write_playlist(dir.path(), "http://h/g", &entries).expect("write");
        let on_disk = std::fs::read_to_string(dir.path().join(PLAYLIST_FILE)).expect("read");
        assert_eq!(n, on_disk.len() as u64);
        assert_eq!(on_disk, render("http://h/g", &entries));
        assert_eq!(dir.names(), vec![PLAYLIST_FILE.to_owned()]);
        let err = write_playlist(&dir.path().join("missing"), "g", &entries);
        assert!(err.is_err());
        assert_eq!(dir.names(), vec![PLAYLIST_FILE.to_owned()]);
    }
}
