//! Enigma2 service references: what kind of bouquet entry a reference is, its canonical
//! form for matching, and its picon file name.
//!
//! A reference is `type:flags:d0:d1:d2:d3:d4:d5:d6:d7:path:name`; type and flags are
//! decimal, the eight data fields hex (boxes differ in letter case), `path` is empty for
//! broadcast services and holds the bouquet query for groups. Pure string functions:
//! they never fail and never panic, whatever the input.

/// Enigma2 `eServiceReference` flag bits that decide how a bouquet entry is used.
const FLAG_DIRECTORY: u32 = 1;
const FLAG_MARKER: u32 = 64;
const FLAG_GROUP: u32 = 128;
const FLAG_INVISIBLE: u32 = 512;

/// What a line of a bouquet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A TV/radio (or stream) service: one channel.
    Service,
    /// An alternatives group (`1:134:...`): one channel, streamed by its own reference.
    Alternatives,
    /// A nested bouquet (`1:7:...FROM BOUQUET ...`): to be expanded into its channels.
    SubBouquet,
    /// A marker (section heading), a hidden spacer or an unusable reference: skipped.
    Skip,
}

/// Classifies a bouquet entry by the flag bits of its reference.
pub fn entry_kind(sref: &str) -> EntryKind {
    let mut fields = sref.trim().split(':');
    let service_type = fields.next().map(str::trim).unwrap_or_default();
    let flags = fields.next().and_then(|f| f.trim().parse::<u32>().ok());
    let Some(flags) = flags else {
        return EntryKind::Skip;
    };
    if service_type.is_empty() {
        return EntryKind::Skip;
    }
    if flags & (FLAG_MARKER | FLAG_INVISIBLE) != 0 {
        EntryKind::Skip
    } else if flags & FLAG_GROUP != 0 {
        EntryKind::Alternatives
    } else if flags & FLAG_DIRECTORY != 0 {
        EntryKind::SubBouquet
    } else {
        EntryKind::Service
    }
}

/// Canonical form of a service ref for matching EPG events to channels: the first ten
/// fields with hex upper-cased, then `:`, so `1:0:19:283d:3fb:1:c00000:0:0:0` and
/// `1:0:19:283D:3FB:1:C00000:0:0:0:` are equal. The name part is dropped; a non-empty
/// `path` (the query of an alternatives group, the URL of a stream service) is kept
/// verbatim after the ten fields, because without it every group would look alike.
/// An empty reference stays empty.
pub fn canonical_ref(sref: &str) -> String {
    let sref = sref.trim();
    if sref.is_empty() {
        return String::new();
    }
    let mut out = String::with_capacity(sref.len().min(64) + 1);
    let mut fields = sref.split(':');
    for field in fields.by_ref().take(10) {
        out.push_str(&field.trim().to_ascii_uppercase());
        out.push(':');
    }
    if let Some(path) = fields.next().filter(|p| !p.is_empty()) {
        out.push_str(path);
    }
    out
}

/// The picon file name for a ref (no extension): the first ten fields, hex upper-cased,
/// joined by `_`, e.g. `1_0_19_283D_3FB_1_C00000_0_0_0`.
pub fn picon_name(sref: &str) -> String {
    let mut out = String::with_capacity(40);
    for (i, field) in sref.trim().split(':').take(10).enumerate() {
        if i > 0 {
            out.push('_');
        }
        out.push_str(&field.trim().to_ascii_uppercase());
    }
    out
}

/// True when the next ten items of `fields` are the numeric fields of a service
/// reference: type and flags in decimal, then eight hex fields, each 1 to 8 characters.
pub fn take_ref_fields<'a>(fields: &mut impl Iterator<Item = &'a str>) -> bool {
    (0..10).all(|i| {
        fields.next().is_some_and(|f| {
            (1..=8).contains(&f.len())
                && if i < 2 {
                    f.bytes().all(|b| b.is_ascii_digit())
                } else {
                    f.bytes().all(|b| b.is_ascii_hexdigit())
                }
        })
    })
}

/// Longest service reference accepted from a client (an alternatives group with a long
/// bouquet file name is about 90 characters).
pub const MAX_REF_LEN: usize = 256;

/// True when `sref` is a service reference a client may ask to stream: ten `:`-separated
/// fields (see [`take_ref_fields`]), then optionally a path and a name made of printable
/// ASCII without `/`, backslash, `@`, `%` or `..`, at most [`MAX_REF_LEN`] bytes. Nothing that could name another host, port or file passes.
pub fn is_valid_service_ref(sref: &str) -> bool {
    if sref.is_empty() || sref.len() > MAX_REF_LEN || sref.contains("..") {
        return false;
    }
    let mut fields = sref.split(':');
    if !take_ref_fields(&mut fields) {
        return false;
    }
    let rest: Vec<&str> = fields.collect();
    rest.len() <= 2
        && rest.iter().all(|part| {
            part.bytes()
                .all(|b| (b' '..=b'~').contains(&b) && !matches!(b, b'/' | b'\\' | b'@' | b'%'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_flag_bits() {
        assert_eq!(
            entry_kind("1:0:19:283D:3FB:1:C00000:0:0:0:"),
            EntryKind::Service
        );
        assert_eq!(
            entry_kind("1:0:2:6F:3:85:C00000:0:0:0:"),
            EntryKind::Service
        );
        assert_eq!(
            entry_kind("4097:0:1:0:0:0:0:0:0:0:http%3a//x/y:Name"),
            EntryKind::Service
        );
        assert_eq!(entry_kind("1:64:1:0:0:0:0:0:0:0::News"), EntryKind::Skip);
        assert_eq!(entry_kind("1:832:D:0:0:0:0:0:0:0:"), EntryKind::Skip);
        assert_eq!(entry_kind("1:320:0:0:0:0:0:0:0:0:"), EntryKind::Skip);
        assert_eq!(
            entry_kind(r#"1:7:1:0:0:0:0:0:0:0:FROM BOUQUET "subbouquet.x.tv" ORDER BY bouquet"#),
            EntryKind::SubBouquet
        );
        assert_eq!(
            entry_kind(
                r#"1:134:1:0:0:0:0:0:0:0:FROM BOUQUET "alternatives.x.tv" ORDER BY bouquet"#
            ),
            EntryKind::Alternatives
        );
        assert_eq!(entry_kind(""), EntryKind::Skip);
        assert_eq!(entry_kind("garbage"), EntryKind::Skip);
        assert_eq!(entry_kind("1:x:3"), EntryKind::Skip);
    }

    #[test]
    fn canonical_refs_match_across_case_and_trailing_parts() {
        let want = "1:0:19:283D:3FB:1:C00000:0:0:0:";
        assert_eq!(canonical_ref("1:0:19:283d:3fb:1:c00000:0:0:0"), want);
        assert_eq!(canonical_ref("1:0:19:283D:3FB:1:C00000:0:0:0:"), want);
        assert_eq!(
            canonical_ref(" 1:0:19:283D:3FB:1:C00000:0:0:0::Das Erste "),
            want
        );
        let alt = r#"1:134:1:0:0:0:0:0:0:0:FROM BOUQUET "alternatives.x.tv" ORDER BY bouquet"#;
        assert_eq!(canonical_ref(alt), alt);
        assert_ne!(
            canonical_ref(alt),
            canonical_ref(&alt.replace(".x.", ".y."))
        );
        assert_eq!(canonical_ref("1:0"), "1:0:");
        assert_eq!(canonical_ref(""), "");
    }

    #[test]
    fn stream_refs_are_validated() {
        for good in [
            "1:0:19:283D:3FB:1:C00000:0:0:0:",
            "1:0:19:283d:3fb:1:c00000:0:0:0",
            "1:0:1:6DCA:44D:1:C00000:0:0:0::Das Erste",
            r#"1:134:1:0:0:0:0:0:0:0:FROM BOUQUET "alternatives.x.tv" ORDER BY bouquet"#,
        ] {
            assert!(is_valid_service_ref(good), "{good}");
        }
        let long = format!("1:0:1:0:0:0:0:0:0:0:{}", "a".repeat(300));
        for bad in [
            "",
            "1:0:19",
            "1:0:19:283D:3FB:1:C00000:0:0",
            "x:0:19:283D:3FB:1:C00000:0:0:0:",
            "1:0:19:283G:3FB:1:C00000:0:0:0:",
            "1:0:19:123456789:3FB:1:C00000:0:0:0:",
            "1:0:19:283D:3FB:1:C00000:0:0:0:../../etc/passwd",
            "1:0:19:283D:3FB:1:C00000:0:0:0:http%3a//evil/x",
            "1:0:19:283D:3FB:1:C00000:0:0:0:a/b",
            "1:0:19:283D:3FB:1:C00000:0:0:0:user@host",
            "1:0:19:283D:3FB:1:C00000:0:0:0:a:b:c",
            "1:0:19:283D:3FB:1:C00000:0:0:0:\n",
            long.as_str(),
        ] {
            assert!(!is_valid_service_ref(bad), "{bad:?}");
        }
    }

    #[test]
    fn picon_names() {
        assert_eq!(
            picon_name("1:0:19:283d:3fb:1:c00000:0:0:0:"),
            "1_0_19_283D_3FB_1_C00000_0_0_0"
        );
        assert_eq!(
            picon_name("1:0:19:283D:3FB:1:C00000:0:0:0::Das Erste"),
            "1_0_19_283D_3FB_1_C00000_0_0_0"
        );
        assert_eq!(picon_name(""), "");
    }
}
