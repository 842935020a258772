//! Text cleaning shared by the M3U and XMLTV writers: the one place that decides which
//! characters may reach a file.
//!
//! Rules: every function here is total (any `&str` in, a clean string out, no panics);
//! the result never contains C0 controls (except tab/newline where a function says so),
//! DEL, C1 controls (U+0080–U+009F) or Unicode noncharacters (U+FDD0–U+FDEF and every
//! U+xxFFFE/U+xxFFFF), which the XMLTV validator rejects and which break M3U lines.
//! DVB text uses U+008A as its line break, so it is treated as one, not dropped.

use std::borrow::Cow;

/// True for characters that end a line in some reader: LF, CR, VT, FF, NEL, DVB's
/// U+008A, and the Unicode line/paragraph separators.
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{8A}' | '\u{2028}' | '\u{2029}'
    )
}

/// True for characters no output file may contain (after line breaks were handled).
fn is_forbidden(c: char) -> bool {
    let u = c as u32;
    c.is_control() || (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE
}

/// Spaces, tabs and line breaks: runs of these become one space in [`one_line`].
fn is_gap(c: char) -> bool {
    c == ' ' || c == '\t' || is_line_break(c)
}

/// True when `s` (already trimmed) is what [`one_line`] would return, so no copy is needed.
fn is_clean_line(s: &str) -> bool {
    !s.chars()
        .any(|c| c != ' ' && (is_gap(c) || is_forbidden(c)))
        && !s.contains("  ")
}

/// One line of text: every run of spaces, tabs and line breaks becomes one space, other
/// control characters and noncharacters are removed, surrounding whitespace is trimmed.
/// Guarantees: the result contains no line break and no control character.
pub fn one_line(s: &str) -> Cow<'_, str> {
    let t = s.trim();
    if is_clean_line(t) {
        return Cow::Borrowed(t);
    }
    let mut out = String::with_capacity(t.len());
    let mut pending_space = false;
    for c in t.chars() {
        if is_gap(c) {
            pending_space = true;
        } else if !is_forbidden(c) {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        }
    }
    // Trimming again: removed controls may have exposed whitespace at either end.
    trimmed_owned(out)
}

/// Multi-line text (descriptions): every line break (CR LF, CR, NEL, U+008A, U+2028, …)
/// becomes `\n`, tabs stay, other control characters and noncharacters are removed,
/// surrounding whitespace is trimmed.
/// Guarantees: the only control characters left are `\n` and `\t`.
pub fn multi_line(s: &str) -> Cow<'_, str> {
    let t = s.trim();
    if !t
        .chars()
        .any(|c| (c != '\n' && is_line_break(c)) || (c != '\n' && c != '\t' && is_forbidden(c)))
    {
        return Cow::Borrowed(t);
    }
    let mut out = String::with_capacity(t.len());
    let mut after_cr = false;
    for c in t.chars() {
        if c == '\n' && after_cr {
            // The LF of a CR LF pair: the CR already produced the newline.
            after_cr = false;
            continue;
        }
        after_cr = c == '\r';
        if is_line_break(c) {
            out.push('\n');
        } else if c == '\t' || !is_forbidden(c) {
            out.push(c);
        }
    }
    trimmed_owned(out)
}

/// `out` without surrounding whitespace, reusing its allocation when nothing is trimmed.
fn trimmed_owned(out: String) -> Cow<'static, str> {
    let trimmed = out.trim();
    if trimmed.len() == out.len() {
        Cow::Owned(out)
    } else {
        Cow::Owned(trimmed.to_owned())
    }
}

/// A value for a double-quoted attribute (M3U or XML): [`one_line`] with every `"`
/// turned into `'`. Guarantees: the value can neither end the attribute nor the line.
pub fn attribute(s: &str) -> Cow<'_, str> {
    match one_line(s) {
        Cow::Borrowed(b) if !b.contains('"') => Cow::Borrowed(b),
        other => Cow::Owned(other.replace('"', "'")),
    }
}

/// A URL for an M3U line or an XML attribute: whitespace, control characters,
/// noncharacters and `"` are removed. Callers percent-encode; this is the last defence.
/// Guarantees: the result is one token without whitespace or quotes.
pub fn url(s: &str) -> Cow<'_, str> {
    let bad = |c: char| c.is_whitespace() || c == '"' || is_forbidden(c);
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(s.chars().filter(|&c| !bad(c)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_removes_breaks_and_controls() {
        assert_eq!(one_line("  Das Erste HD "), "Das Erste HD");
        assert_eq!(one_line("a\r\nb"), "a b");
        assert_eq!(one_line("a\n\n\tb"), "a b");
        assert_eq!(one_line("a\u{85}b\u{2028}c"), "a b c");
        assert_eq!(
            one_line("\u{86}Tages\u{87}schau\u{8A}20 Uhr"),
            "Tagesschau 20 Uhr"
        );
        assert_eq!(one_line("x\u{0}\u{1F}\u{7F}\u{9F}y"), "xy");
        assert_eq!(one_line("x\u{FFFE}\u{FFFF}\u{FDD0}\u{1FFFF}y"), "xy");
        assert_eq!(one_line("\u{1}\n a \u{2}"), "a");
        assert_eq!(one_line("a  \u{1} \u{8A} b"), "a b");
        assert_eq!(one_line("Emoji 📺 ok"), "Emoji 📺 ok");
        assert!(matches!(one_line("clean"), Cow::Borrowed(_)));
    }

    #[test]
    fn multi_line_normalises_breaks() {
        assert_eq!(multi_line("a\r\nb\rc\u{8A}d"), "a\nb\nc\nd");
        assert_eq!(multi_line("a\r\n\r\nb"), "a\n\nb");
        assert_eq!(multi_line("a\tb\u{1B}[1m"), "a\tb[1m");
        assert_eq!(multi_line("\n text \n"), "text");
        assert!(matches!(multi_line("one\ntwo"), Cow::Borrowed(_)));
    }

    #[test]
    fn attribute_and_url() {
        assert_eq!(attribute("say \"hi\"\n, ok"), "say 'hi' , ok");
        assert_eq!(url(" http://h/a b\n\"c\u{85}"), "http://h/abc");
        assert!(matches!(url("http://h/x"), Cow::Borrowed(_)));
    }

    #[test]
    fn nothing_forbidden_survives() {
        let hostile: String = (0u32..0x3_0000).filter_map(char::from_u32).collect();
        for out in [
            one_line(&hostile),
            multi_line(&hostile),
            attribute(&hostile),
        ] {
            assert!(
                !out.chars()
                    .any(|c| is_forbidden(c) && c != '\n' && c != '\t')
            );
        }
        assert!(!one_line(&hostile).chars().any(|c| c.is_control()));
        assert!(!url(&hostile).chars().any(|c| c.is_whitespace()));
    }
}
