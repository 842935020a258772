//! Channel ids (`tvg-id` in the playlist, `<channel id>` in the guide): readable, stable
//! across refreshes, and always valid for XMLTV.
//!
//! Rules: an id depends only on the channel name and its service reference, never on
//! bouquet order or time; it always matches `^[-a-zA-Z0-9]+(\.[-a-zA-Z0-9]+)+$`
//! (tv_validate_file's rule). Changing the algorithm renames every channel in every
//! client, so the slug table and the hash are frozen.

/// Longest slug (ASCII characters) before the `.hash` part.
const MAX_SLUG: usize = 40;

/// 32-bit FNV-1a of `bytes`. Guarantees: the same bytes give the same value on every
/// platform and in every version (it is part of the channel ids).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The channel id for a channel: `<slug of name>.<7 hex digits of hash(sref)>`, e.g.
/// `das-erste-hd.3fb283d`.
///
/// The slug is the name in lower case ASCII (common European letters transliterated,
/// e.g. `ä`→`ae`, `ß`→`ss`, `é`→`e`), every other run of characters as one `-`, no `-` at
/// either end, at most 40 characters, `channel` if nothing is left. The hash is FNV-1a of
/// the service reference with surrounding whitespace and trailing `:` removed and ASCII
/// upper-cased, because receivers are not consistent about those.
///
/// Guarantees: the result matches `^[-a-zA-Z0-9]+(\.[-a-zA-Z0-9]+)+$`, is at most 48 bytes,
/// and is the same for the same inputs forever.
pub fn tvg_id(name: &str, sref: &str) -> String {
    let mut id = slug(name);
    let canonical = sref.trim().trim_end_matches(':').to_ascii_uppercase();
    // Top 28 bits → exactly 7 hex digits.
    let hash = fnv1a32(canonical.as_bytes()) >> 4;
    id.push('.');
    id.push_str(&format!("{hash:07x}"));
    id
}

/// The readable part of an id (see [`tvg_id`]).
fn slug(name: &str) -> String {
    let mut out = String::with_capacity(MAX_SLUG + 1);
    let mut dash = false;
    'outer: for upper in name.chars() {
        for c in upper.to_lowercase() {
            if out.len() > MAX_SLUG {
                break 'outer;
            }
            if c.is_ascii_alphanumeric() {
                push_part(&mut out, &mut dash, c.encode_utf8(&mut [0; 4]));
            } else if let Some(ascii) = transliterate(c) {
                push_part(&mut out, &mut dash, ascii);
            } else if is_combining_mark(c) {
                // `İ` lower-cases to `i` + U+0307; the mark belongs to the letter.
            } else {
                dash = true;
            }
        }
    }
    out.truncate(MAX_SLUG);
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("channel");
    }
    out
}

/// Appends `part`, preceded by one `-` when a separator run came before it (never at the
/// start of the slug).
fn push_part(out: &mut String, dash: &mut bool, part: &str) {
    if *dash && !out.is_empty() {
        out.push('-');
    }
    *dash = false;
    out.push_str(part);
}

/// True for combining diacritical marks, which decorate the previous letter.
fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}')
}

/// ASCII spelling of a lower-case letter used in European channel names, if known.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'ä' | 'æ' => "ae",
        'ö' | 'œ' => "oe",
        'ü' => "ue",
        'ß' => "ss",
        'à' | 'á' | 'â' | 'ã' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'ç' | 'ć' | 'č' | 'ĉ' | 'ċ' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => "e",
        'ğ' | 'ģ' => "g",
        'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => "i",
        'ķ' => "k",
        'ł' | 'ľ' | 'ĺ' | 'ļ' => "l",
        'ñ' | 'ń' | 'ň' | 'ņ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ø' | 'ō' | 'ő' => "o",
        'ŕ' | 'ř' => "r",
        'ś' | 'š' | 'ş' | 'ș' => "s",
        'ť' | 'ţ' | 'ț' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ū' | 'ů' | 'ű' | 'ų' => "u",
        'ý' | 'ÿ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tv_validate_file's rule, `^[-a-zA-Z0-9]+(\.[-a-zA-Z0-9]+)+$`, written out.
    pub(crate) fn is_xmltv_id(s: &str) -> bool {
        let mut parts = s.split('.');
        let mut count = 0;
        let ok = parts.all(|p| {
            count += 1;
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        ok && count >= 2
    }

    #[test]
    fn fnv_known_values() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn readable_slugs() {
        assert_eq!(slug("Das Erste HD"), "das-erste-hd");
        assert_eq!(slug("ZDFneo"), "zdfneo");
        assert_eq!(slug("Schöner Fernsehen Süd"), "schoener-fernsehen-sued");
        assert_eq!(slug("Straße ÄÖÜ ẞ"), "strasse-aeoeue-ss");
        assert_eq!(
            slug("Télé Genève / Ørsted, Mañana Çà"),
            "tele-geneve-orsted-manana-ca"
        );
        assert_eq!(slug("İstanbul"), "istanbul");
        assert_eq!(slug("  --Sky Cinema+ (HD)--  "), "sky-cinema-hd");
        assert_eq!(slug("Łódź TVP"), "lodz-tvp");
        assert_eq!(slug(""), "channel");
        assert_eq!(slug("📺📺"), "channel");
        assert_eq!(slug("ТВ Центр"), "channel");
        assert_eq!(slug("ТВ 3"), "3");
    }

    #[test]
    fn slug_is_bounded() {
        let long = "Very Long Channel Name ".repeat(10);
        let s = slug(&long);
        assert!(s.len() <= MAX_SLUG, "{s}");
        assert!(!s.ends_with('-'));
        assert_eq!(slug(&"ß".repeat(100)).len(), MAX_SLUG);
        // A separator right at the cut must not leave a trailing dash.
        let s = slug(&format!("{} x", "a".repeat(40)));
        assert_eq!(s, "a".repeat(40));
        let s = slug(&format!("{} x", "a".repeat(39)));
        assert_eq!(s, "a".repeat(39));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = tvg_id("Das Erste HD", "1:0:19:283D:3FB:1:C00000:0:0:0:");
        assert_eq!(a, tvg_id("Das Erste HD", " 1:0:19:283d:3fb:1:c00000:0:0:0"));
        let b = tvg_id("Das Erste HD", "1:0:19:283E:3FB:1:C00000:0:0:0:");
        assert_ne!(a, b);
        assert!(a.starts_with("das-erste-hd."));
        let hash = a.rsplit('.').next().unwrap_or_default();
        assert_eq!(hash.len(), 7);
        assert!(
            hash.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        // Frozen: ids are stored by clients; this value must never change.
        let h = fnv1a32(b"1:0:19:283D:3FB:1:C00000:0:0:0") >> 4;
        assert_eq!(a, format!("das-erste-hd.{h:07x}"));
    }

    #[test]
    fn ids_always_match_the_xmltv_rule() {
        let mut names: Vec<String> = vec![
            String::new(),
            " ".into(),
            ".".into(),
            "..".into(),
            "-".into(),
            "a.b".into(),
            "\"quoted\" <tag> & 'x'".into(),
            "line\nbreak\r\n#EXTINF:-1,evil".into(),
            "\u{0}\u{1}\u{86}\u{87}\u{8A}\u{FFFE}".into(),
            "📺 Emoji TV 🎬".into(),
            "ÀÉÎÕÜ àéîõü".into(),
            "中文台".into(),
            "a".repeat(500),
            "-".repeat(100),
            "x-".repeat(60),
        ];
        // Every single code point of the first planes, alone and between letters.
        for u in (0u32..0x2_0000).step_by(7) {
            if let Some(c) = char::from_u32(u) {
                names.push(c.to_string());
                names.push(format!("a{c}b{c}"));
            }
        }
        for (i, name) in names.iter().enumerate() {
            let id = tvg_id(name, &format!("1:0:1:{i:X}:0:0:0:0:0:0:"));
            assert!(is_xmltv_id(&id), "{name:?} -> {id:?}");
            assert!(id.len() <= MAX_SLUG + 8, "{id}");
        }
        for sref in ["", ":", "::::", "\u{0}", "ä"] {
            assert!(is_xmltv_id(&tvg_id("x", sref)));
        }
    }

    #[test]
    fn rule_checker_rejects_bad_ids() {
        for bad in ["", "abc", ".abc", "abc.", "a..b", "a b.c", "a.b_c", "ä.b"] {
            assert!(!is_xmltv_id(bad), "{bad}");
        }
        assert!(is_xmltv_id("das-erste-hd.3fb283d"));
    }
}
