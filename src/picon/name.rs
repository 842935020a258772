//! Picon names from request paths: the strict grammar that keeps hostile paths away from
//! the file system and the receiver.
//!
//! Rules: a name is exactly ten fields, the first two decimal and the other eight hex,
//! each 1..=8 characters, joined by `_` (or by `:` in service-reference form); anything
//! else is refused, so a valid name can never hold `/`, `..`, `@` or `%` and is at most
//! 89 bytes. Pure string functions: they never fail and never panic.

use crate::http::percent_decode;
use crate::receiver::{picon_name, take_ref_fields};

/// Longest request tail looked at; a percent-encoded reference with a trailing `:` and
/// `.png` fits easily, a 500-character path does not.
pub(super) const MAX_TAIL_LEN: usize = 160;

/// The canonical picon name (`1_0_19_283D_3FB_1_C00000_0_0_0`) for a request tail such as
/// `1_0_19_283d_3fb_1_c00000_0_0_0.png` or `1%3A0%3A19%3A283D%3A3FB%3A1%3AC00000%3A0%3A0%3A0%3A`;
/// `None` for anything outside the grammar (see the module doc).
pub(super) fn parse(tail: &str) -> Option<String> {
    if tail.is_empty() || tail.len() > MAX_TAIL_LEN {
        return None;
    }
    let decoded = percent_decode(tail);
    let stem = strip_png(&decoded);
    let has_colon = stem.contains(':');
    if has_colon && stem.contains('_') {
        return None;
    }
    if has_colon {
        // A service reference may end in the empty path (and name) fields.
        let fields = stem
            .strip_suffix("::")
            .or_else(|| stem.strip_suffix(':'))
            .unwrap_or(stem);
        valid_fields(fields.split(':')).then(|| picon_name(fields))
    } else {
        valid_fields(stem.split('_')).then(|| stem.to_ascii_uppercase())
    }
}

/// The tail without a `.png` suffix (any letter case).
fn strip_png(s: &str) -> &str {
    let cut = s.len().saturating_sub(4);
    match (s.get(..cut), s.get(cut..)) {
        (Some(stem), Some(ext)) if ext.eq_ignore_ascii_case(".png") => stem,
        _ => s,
    }
}

/// True when `fields` are exactly the ten numeric fields of a service reference.
fn valid_fields<'a>(mut fields: impl Iterator<Item = &'a str>) -> bool {
    take_ref_fields(&mut fields) && fields.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "1_0_19_283D_3FB_1_C00000_0_0_0";

    #[test]
    fn canonical_names_and_refs_are_accepted() {
        for tail in [
            "1_0_19_283D_3FB_1_C00000_0_0_0.png",
            "1_0_19_283d_3fb_1_c00000_0_0_0.png",
            "1_0_19_283D_3FB_1_C00000_0_0_0",
            "1_0_19_283D_3FB_1_C00000_0_0_0.PNG",
            "1:0:19:283D:3FB:1:C00000:0:0:0:",
            "1:0:19:283d:3fb:1:c00000:0:0:0",
            "1:0:19:283D:3FB:1:C00000:0:0:0::",
            "1%3A0%3A19%3A283D%3A3FB%3A1%3AC00000%3A0%3A0%3A0%3A",
            "1%3a0%3a19%3a283D%3a3FB%3a1%3aC00000%3a0%3a0%3a0%3a.png",
            "1%5F0_19_283D_3FB_1_C00000_0_0_0.png",
        ] {
            assert_eq!(parse(tail).as_deref(), Some(NAME), "{tail}");
        }
        assert_eq!(
            parse("4097_0_1_FFFFFFFF_0_0_0_0_0_0.png").as_deref(),
            Some("4097_0_1_FFFFFFFF_0_0_0_0_0_0")
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let long = format!("{}.png", "1_".repeat(250));
        for tail in [
            "",
            ".png",
            "..",
            "../1_0_19_283D_3FB_1_C00000_0_0_0.png",
            "1_0_19_283D_3FB_1_C00000_0_0_0/..",
            "1_0_19_283D_3FB_1_C00000_0_0_0%2F.png",
            "%2F1_0_19_283D_3FB_1_C00000_0_0_0.png",
            "1_0_19_283D_3FB_1_C00000_0_0_0%252F.png",
            "1_0_19_283D_3FB_1_C00000_0_0_0@x.png",
            "1_0_19_283D_3FB_1_C00000_0_0.png",
            "1_0_19_283D_3FB_1_C00000_0_0_0_0.png",
            "1_0_19_283D_3FB_1_C00000_0_0_.png",
            "A_0_19_283D_3FB_1_C00000_0_0_0.png",
            "1_0_19_283G_3FB_1_C00000_0_0_0.png",
            "1_0_19_123456789_3FB_1_C00000_0_0_0.png",
            "1:0_19:283D:3FB:1:C00000:0:0:0:",
            "1:0:19:283D:3FB:1:C00000:0:0:0::Das Erste",
            "1:0:19:283D:3FB:1:C00000:0:0:0:::",
            "1_0_19_283D_3FB_1_C00000_0_0_0.png.png",
            " 1_0_19_283D_3FB_1_C00000_0_0_0.png",
            "1_0_19_283D_3FB_1_C00000_0_0_0.png ",
            "1_0_19_283D_3FB_1_C00000_0_0_+.png",
            "ü_0_19_283D_3FB_1_C00000_0_0_0.png",
            long.as_str(),
        ] {
            assert_eq!(parse(tail), None, "{tail:?}");
        }
    }
}
