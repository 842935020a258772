//! Text cleaning for everything the receiver names or describes: the one place where
//! OpenWebIF's HTML escaping is undone (exactly once) and Enigma2's control characters
//! are handled.
//!
//! Rules: entities are decoded in a single left-to-right pass, so `&amp;amp;` becomes
//! `&amp;` and never `&`; unknown or malformed entities stay as they are. Only then are
//! control characters handled, so an escaped `&#138;` behaves like a raw U+008A. Nothing
//! here allocates more than a small multiple of its input, and nothing panics.

/// HTML 4 names of U+00A0..=U+00FF, indexed by `code point - 0xA0`.
const LATIN1_NAMES: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute",
    "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
    "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute",
    "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
    "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde",
    "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc",
    "uuml", "yacute", "thorn", "yuml",
];

/// Other named entities that show up in EPG text often enough to be worth knowing.
const OTHER_NAMES: [(&str, char); 15] = [
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("euro", '€'),
    ("ndash", '–'),
    ("mdash", '—'),
    ("hellip", '…'),
    ("lsquo", '‘'),
    ("rsquo", '’'),
    ("ldquo", '“'),
    ("rdquo", '”'),
    ("bdquo", '„'),
    ("bull", '•'),
];

/// Longest entity body we look at (`#x10FFFF` and `frac14` fit easily); a `&` without a
/// `;` this close is plain text, which keeps the scan linear.
const MAX_ENTITY_LEN: usize = 10;

/// Decodes HTML character references once: the named ones above, `&#NN;` and `&#xHH;`.
/// Anything unknown, malformed or naming an invalid code point is kept verbatim.
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        let after = rest.get(amp + 1..).unwrap_or_default();
        let window_end = after
            .char_indices()
            .nth(MAX_ENTITY_LEN + 1)
            .map_or(after.len(), |(i, _)| i);
        let window = after.get(..window_end).unwrap_or_default();
        let decoded = window
            .find(';')
            .and_then(|semi| window.get(..semi).map(|body| (semi, body)))
            .and_then(|(semi, body)| entity_char(body).map(|c| (semi, c)));
        match decoded {
            Some((semi, c)) => {
                out.push(c);
                rest = after.get(semi + 1..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character an entity body (between `&` and `;`) stands for, if it is one we know.
fn entity_char(body: &str) -> Option<char> {
    if let Some(num) = body.strip_prefix('#') {
        let value = match num.strip_prefix(['x', 'X']) {
            Some(hex) => parse_digits(hex, 16)?,
            None => parse_digits(num, 10)?,
        };
        // NUL is never text; surrogates and out-of-range values are not chars at all.
        return if value == 0 {
            None
        } else {
            char::from_u32(value)
        };
    }
    if let Some(&(_, c)) = OTHER_NAMES.iter().find(|(name, _)| *name == body) {
        return Some(c);
    }
    let index = LATIN1_NAMES.iter().position(|name| *name == body)?;
    char::from_u32(0xA0 + u32::try_from(index).ok()?)
}

/// Parses a non-empty run of digits; `None` for signs, spaces or overflow.
fn parse_digits(digits: &str, radix: u32) -> Option<u32> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// Cleans a name or title: entities decoded once, U+0086/U+0087 removed, U+008A and any
/// line break or tab become a space, other C0/C1 controls removed, runs of spaces
/// collapsed and the ends trimmed. The result is a single line.
pub fn clean_name(s: &str) -> String {
    let decoded = decode_entities(s);
    let mut out = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        let c = match c {
            '\u{86}' | '\u{87}' => continue,
            '\u{8A}' | '\n' | '\t' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

/// Cleans a description: entities decoded once, U+0086/U+0087 removed, U+008A becomes a
/// newline, tab a space, other controls (including `\r`) removed; spaces opening or
/// closing a line are dropped, the whole is trimmed and never has more than one blank line in a row.
pub fn clean_description(s: &str) -> String {
    let decoded = decode_entities(s);
    let mut out = String::with_capacity(decoded.len());
    // Newlines seen since the last visible character, emitted lazily so that trailing
    // and excess blank lines never reach the output.
    let mut pending_newlines = 0usize;
    for c in decoded.chars() {
        let c = match c {
            '\u{86}' | '\u{87}' => continue,
            '\u{8A}' | '\n' => '\n',
            '\t' => ' ',
            c if c.is_control() => continue,
            c => c,
        };
        if c == '\n' {
            let trimmed = out.trim_end_matches(' ').len();
            out.truncate(trimmed);
            pending_newlines += 1;
            continue;
        }
        if c == ' ' && (out.is_empty() || pending_newlines > 0) {
            // Spaces opening a line are dropped, so a line of spaces counts as blank.
            continue;
        }
        if pending_newlines > 0 {
            if !out.is_empty() {
                out.push_str(if pending_newlines > 1 { "\n\n" } else { "\n" });
            }
            pending_newlines = 0;
        }
        out.push(c);
    }
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_are_decoded_exactly_once() {
        assert_eq!(decode_entities("Tom &amp; Jerry"), "Tom & Jerry");
        assert_eq!(decode_entities("&amp;amp;"), "&amp;");
        assert_eq!(decode_entities("it&#39;s &quot;x&quot;"), "it's \"x\"");
        assert_eq!(decode_entities("&#x41;&#X42;&#67;"), "ABC");
        assert_eq!(
            decode_entities("M&uuml;nchen &Auml; &szlig; &euro;"),
            "München Ä ß €"
        );
        assert_eq!(decode_entities("&lt;b&gt; &apos;&nbsp;"), "<b> '\u{a0}");
    }

    #[test]
    fn unknown_or_malformed_entities_stay() {
        for s in [
            "AT&T",
            "&",
            "a & b",
            "&amp",
            "&unknown;",
            "&#;",
            "&#x;",
            "&#xZZ;",
            "&#-1;",
            "&#0;",
            "&#xD800;",
            "&#x110000;",
            "&#99999999999999999999;",
            "&AMP;",
            "&verylongentityname;",
            "&;",
            "&ä;",
        ] {
            assert_eq!(decode_entities(s), s, "{s}");
        }
        assert_eq!(decode_entities("&&amp;"), "&&");
        assert_eq!(decode_entities("x&#228"), "x&#228");
        assert_eq!(decode_entities("é&amp;ü"), "é&ü");
    }

    #[test]
    fn names_are_single_line_and_collapsed() {
        assert_eq!(clean_name("  \u{86}Das Erste\u{87} HD  "), "Das Erste HD");
        assert_eq!(clean_name("Line\u{8A}Break"), "Line Break");
        assert_eq!(clean_name("a\n\tb\r\u{1}c\u{9F}d"), "a bcd");
        assert_eq!(clean_name("a    b"), "a b");
        assert_eq!(clean_name("&#138;x&#138;y&#134;z&#135;"), "x yz");
        assert_eq!(clean_name("Tom &amp;amp; Jerry"), "Tom &amp; Jerry");
        assert_eq!(clean_name(" \u{8A} "), "");
    }

    #[test]
    fn descriptions_keep_lines_but_not_excess_blank_ones() {
        assert_eq!(clean_description("one\u{8A}two"), "one\ntwo");
        assert_eq!(
            clean_description("  one  \n\n\n\n two\t2\r\n"),
            "one\n\ntwo 2"
        );
        assert_eq!(clean_description("\n\n a \u{86}b\u{87}\n"), "a b");
        assert_eq!(clean_description("a\n \n \nb"), "a\n\nb");
        assert_eq!(clean_description("x&#10;y&amp;z"), "x\ny&z");
        assert_eq!(clean_description(""), "");
        assert_eq!(clean_description("\u{0}\u{1b}[1m"), "[1m");
    }
}
