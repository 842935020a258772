//! The small OpenWebIF JSON documents of the simulated receiver: about, bouquets,
//! services, and the never-ending variants used by the `endless` fault.
//!
//! Rules: names are HTML-escaped like OpenWebIF does, refs are not; key names and value
//! shapes follow OpenWebIF's `/api/...` answers.

use super::json::{Gen, Style, push_str, push_text};
use super::layout::{Entry, Layout};

/// `/api/about`: model `sim920` with `tuners` tuners (named `Tuner A`, `Tuner B`, ...).
pub(crate) fn about(layout: &Layout, now: i64, tuners: u32) -> String {
    let tuners: Vec<serde_json::Value> = (b'A'..=b'Z')
        .take(usize::try_from(tuners).unwrap_or(0))
        .map(|t| {
            serde_json::json!({
                "name": format!("Tuner {}", char::from(t)),
                "type": "DVB-S2X NIM(45308X FBC) (DVB-S2X)",
                "rec": "",
                "live": "",
            })
        })
        .collect();
    let current = layout
        .playable
        .first()
        .and_then(|p| layout.services.get(p.service));
    let doc = serde_json::json!({
        "info": {
            "brand": "Simulated",
            "model": "sim920",
            "boxtype": "sim920",
            "machinebuild": "sim920",
            "chipset": "sim",
            "imagedistro": "xg2g-sim",
            "imagever": "1.0",
            "enigmaver": "2024-01-01",
            "kernelver": "6.1.0",
            "webifver": "OWIF 1.5.2",
            "uptime": "1d 02:03",
            "tuners": tuners,
            "ifaces": [],
            "hdd": [],
            "time": now,
        },
        "service": {
            "result": current.is_some(),
            "name": current.map(|s| s.name.as_str()).unwrap_or(""),
            "ref": current.map(|s| s.sref.as_str()).unwrap_or(""),
        },
    });
    doc.to_string()
}

/// Items of `/api/bouquets`: top-level bouquets, only radio ones for `stype=radio`.
pub(crate) fn bouquet_items(layout: &Layout, radio_only: bool, style: Style) -> Vec<String> {
    layout
        .bouquets
        .iter()
        .filter(|b| b.top && (!radio_only || b.radio))
        .map(|b| pair(&b.sref, &b.name, style))
        .collect()
}

fn pair(sref: &str, name: &str, style: Style) -> String {
    let mut s = String::from("[");
    push_str(&mut s, sref, style);
    s.push_str(", ");
    push_text(&mut s, name, style, false);
    s.push(']');
    s
}

/// The whole `/api/bouquets` document.
pub(crate) fn bouquets_doc(items: &[String]) -> String {
    format!("{{\"bouquets\": [{}]}}", items.join(", "))
}

fn service_item(out: &mut String, sref: &str, name: &str, program: u32, pos: u32, style: Style) {
    out.push_str("{\"servicereference\": ");
    push_str(out, sref, style);
    out.push_str(", \"servicename\": ");
    push_text(out, name, style, false);
    out.push_str(&format!(", \"program\": {program}, \"pos\": {pos}}}"));
}

/// Items of `/api/getservices` for a ref, plus the final `pos`: a bouquet's lines, an
/// alternatives group's members, or (empty ref) the list of top-level bouquets; None
/// for a ref the box does not know.
pub(crate) fn service_items(
    layout: &Layout,
    sref: &str,
    style: Style,
) -> Option<(Vec<String>, u32)> {
    let mut items = Vec::new();
    let mut pos = 0u32;
    let mut add = |sref: &str, name: &str, program: u32, counts: bool| {
        if counts {
            pos += 1;
        }
        let mut s = String::new();
        service_item(
            &mut s,
            sref,
            name,
            program,
            if counts { pos } else { 0 },
            style,
        );
        items.push(s);
    };
    if sref.trim().is_empty() {
        for b in layout.bouquets.iter().filter(|b| b.top) {
            add(&b.sref, &b.name, 0, true);
        }
    } else if let Some(bi) = layout.bouquet_by_ref(sref) {
        let bq = layout.bouquets.get(bi)?;
        for e in &bq.entries {
            match e {
                Entry::Service(s) => {
                    if let Some(s) = layout.services.get(*s) {
                        add(&s.sref, &s.name, s.program, true);
                    }
                }
                Entry::Marker { sref, name } => add(sref, name, 0, false),
                Entry::Spacer => add("1:832:D:0:0:0:0:0:0:0:", "", 0, true),
                Entry::Sub(sub) => {
                    if let Some(sub) = layout.bouquets.get(*sub) {
                        add(&sub.sref, &sub.name, 0, true);
                    }
                }
            }
        }
    } else {
        let group = layout.services.get(layout.service_by_ref(sref)?)?;
        if group.members.is_empty() {
            return None;
        }
        for m in &group.members {
            if let Some(s) = layout.services.get(*m) {
                add(&s.sref, &s.name, s.program, true);
            }
        }
    }
    Some((items, pos))
}

/// The whole `/api/getservices` document.
pub(crate) fn services_doc(items: &[String], pos: u32) -> String {
    format!("{{\"services\": [{}], \"pos\": {pos}}}", items.join(", "))
}

/// Which list an endless body keeps extending.
#[derive(Debug, Clone, Copy)]
pub(crate) enum EndlessKind {
    Bouquets,
    Services,
}

/// A list document that starts with the real items and then never ends.
pub(crate) struct EndlessList {
    head: Option<String>,
    comma: bool,
    n: u64,
    kind: EndlessKind,
    style: Style,
}

impl EndlessList {
    pub(crate) fn new(kind: EndlessKind, items: &[String], style: Style) -> EndlessList {
        let key = match kind {
            EndlessKind::Bouquets => "bouquets",
            EndlessKind::Services => "services",
        };
        EndlessList {
            head: Some(format!("{{\"{key}\": [{}", items.join(", "))),
            comma: !items.is_empty(),
            n: 0,
            kind,
            style,
        }
    }
}

impl Gen for EndlessList {
    fn fill(&mut self, out: &mut String) -> bool {
        if let Some(head) = self.head.take() {
            out.push_str(&head);
        }
        while out.len() < super::json::CHUNK {
            if self.comma {
                out.push_str(", ");
            }
            self.comma = true;
            self.n += 1;
            let n = self.n;
            match self.kind {
                EndlessKind::Bouquets => {
                    let sref = format!(
                        "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.endless{n}.tv\" ORDER BY bouquet"
                    );
                    out.push_str(&pair(&sref, &format!("Endlos {n}"), self.style));
                }
                EndlessKind::Services => {
                    let sid = 0x1000 + n % 0xE000;
                    let sref = format!("1:0:19:{sid:X}:FFF:1:C00000:0:0:0:");
                    let pos = u32::try_from(n).unwrap_or(u32::MAX);
                    service_item(
                        out,
                        &sref,
                        &format!("Endlos {n}"),
                        sid as u32,
                        pos,
                        self.style,
                    );
                }
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STYLE: Style = Style { ascii: false };

    #[test]
    fn bouquets_parse_and_escape_names() {
        let l = Layout::build(40, 0);
        let doc = bouquets_doc(&bouquet_items(&l, false, STYLE));
        assert!(doc.contains("News &amp; Sport"));
        let v: serde_json::Value = serde_json::from_str(&doc).expect("json");
        let list = v["bouquets"].as_array().expect("array");
        assert!(list.len() >= 4);
        assert_eq!(list[0][1], "Favourites (TV)");
        let radio = bouquets_doc(&bouquet_items(&l, true, STYLE));
        let v: serde_json::Value = serde_json::from_str(&radio).expect("json");
        assert_eq!(v["bouquets"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn services_list_every_kind_with_positions() {
        let l = Layout::build(40, 0);
        let fav = &l.bouquets[0].sref;
        let (items, pos) = service_items(&l, fav, STYLE).expect("known");
        let v: serde_json::Value = serde_json::from_str(&services_doc(&items, pos)).expect("json");
        let refs: Vec<&str> = v["services"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|s| s["servicereference"].as_str())
            .collect();
        for prefix in ["1:64:", "1:832:D:", "1:7:1:", "1:134:1:", "1:0:19:"] {
            assert!(refs.iter().any(|r| r.starts_with(prefix)), "{prefix}");
        }
        assert!(v["services"][0]["pos"] == 0, "markers have pos 0");
        assert_eq!(v["pos"], pos);
        assert!(service_items(&l, "1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"nope\"", STYLE).is_none());
        let (root, _) = service_items(&l, "", STYLE).expect("root");
        assert!(root.len() >= 4);
    }

    #[test]
    fn endless_list_keeps_going() {
        let mut g = EndlessList::new(EndlessKind::Services, &["{}".to_string()], STYLE);
        let mut total = 0;
        for _ in 0..100 {
            let mut s = String::new();
            assert!(g.fill(&mut s));
            total += s.len();
        }
        assert!(total > 100 * 4000);
    }
}
