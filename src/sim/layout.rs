//! The simulated receiver's channel layout: bouquets, services, markers, spacers, a nested
//! sub-bouquet and an alternatives group, all derived deterministically from the config.
//!
//! Rules: names are stored raw (as Enigma2 holds them, control characters included); the
//! JSON writers escape them. Every service reference is unique. The number of playable
//! channels (distinct refs reachable from the listed bouquets, alternatives group counted
//! once, markers/spacers/sub-bouquet entries not counted) equals the configured count.

use std::collections::{HashMap, HashSet};

/// Most channels the layout can number with unique service ids (see `sid_for`).
pub(crate) const MAX_CHANNELS: usize = 50_000;

/// How many SIDs the permutation in `sid_for` covers (0x1000..0xF000).
const SID_SPACE: u64 = 0xE000;

/// Channels per generic "Weitere Sender" bouquet.
const GENERIC_BOUQUET_SIZE: usize = 200;

/// One service the box knows: a TV/radio service or an alternatives group.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    /// Full service reference as the box reports it.
    pub sref: String,
    /// Name as Enigma2 holds it (not escaped, control characters kept).
    pub name: String,
    /// The SID (`program` in `/api/getservices`), 0 for groups.
    pub program: u32,
    /// Members of an alternatives group (indices into `Layout::services`); empty otherwise.
    pub members: Vec<usize>,
}

/// One line of a bouquet.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A service or alternatives group (index into `Layout::services`).
    Service(usize),
    /// A section heading (`1:64:...`), not a channel.
    Marker { sref: String, name: String },
    /// A hidden spacer (`1:832:D:...`).
    Spacer,
    /// A nested bouquet (index into `Layout::bouquets`).
    Sub(usize),
}

/// A bouquet: listed at the top level or nested in another one.
#[derive(Debug, Clone)]
pub(crate) struct BouquetDef {
    /// Bouquet reference (`1:7:1:...FROM BOUQUET "..." ORDER BY bouquet`).
    pub sref: String,
    /// Name as Enigma2 holds it.
    pub name: String,
    /// Its lines in order.
    pub entries: Vec<Entry>,
    /// Listed in `/api/bouquets` (false for nested ones).
    pub top: bool,
    /// A radio bouquet (listed for `stype=radio`).
    pub radio: bool,
}

/// One playable channel in playlist order, as a client should present it.
#[derive(Debug, Clone)]
pub(crate) struct Playable {
    /// Index into `Layout::services`.
    pub service: usize,
    /// Index of the top-level bouquet it is listed under first.
    pub bouquet: usize,
}

/// The whole layout plus lookup tables.
#[derive(Debug)]
pub(crate) struct Layout {
    pub services: Vec<Service>,
    pub bouquets: Vec<BouquetDef>,
    /// Playable channels in playlist order (deduplicated by ref, first listing wins).
    pub playable: Vec<Playable>,
    /// Lookup key (see `ref_key`) → service index.
    by_key: HashMap<String, usize>,
    /// Exact bouquet ref → bouquet index.
    bouquet_by_ref: HashMap<String, usize>,
    /// Picon name → service index.
    picons: HashMap<String, usize>,
    /// Services that stream via the stream-relay port.
    pub relay: Vec<usize>,
}

/// Names for the favourites bouquet before the spacer: quotes, `&`, tags, commas.
const FAV_A: &[&str] = &[
    "ZDF HD",
    "Sat.1 \"Gold\"",
    "Tom & Jerry TV",
    "<b>Bold</b> TV",
    "Comma, Channel, HD",
];

/// Names for the favourites bouquet after the second marker: Enigma2 controls, an M3U
/// injection attempt, umlauts, emoji, a literal entity (must survive one decode), padding.
const FAV_B: &[&str] = &[
    "Line\u{8A}Break TV",
    "\u{86}RTL\u{87} Television",
    "Evil\u{8A}#EXTINF:-1,evil",
    "Grüße aus Köln – Ümläut TV",
    "📺 Emoji TV 🎬",
    "", // replaced by the very long name
    "AT&amp;T Literal",
    "  Padded   Name  ",
    "Apostrophe's TV",
];

const KIDS: &[&str] = &["KiKA HD", "Super RTL", "Nick Jr. & Friends"];

const AUSTRIA: &[&str] = &[
    "ORF1 HD",
    "ORF2W HD",
    "ORF III HD",
    "SRF 1 HD",
    "SRF zwei HD",
    "ServusTV Österreich",
];

const NEWS: &[&str] = &[
    "tagesschau24 HD",
    "n-tv & Co",
    "WELT",
    "Eurosport 1 HD",
    "Sport1 <HD>",
    "Sky Sport News",
];

const RADIO: &[&str] = &["Bayern 3", "Deutschlandfunk", "1LIVE", "Ö3 Hitradio"];

/// A deliberately very long channel name (about 270 characters).
fn long_name() -> String {
    let mut s = String::new();
    for _ in 0..8 {
        s.push_str("Der unglaublich lange Sendername ");
    }
    s.push_str("HD");
    s
}

/// A bouquet reference for a bouquet file name.
fn bouquet_ref(file: &str, radio: bool) -> String {
    let kind = if radio { 2 } else { 1 };
    format!("1:7:{kind}:0:0:0:0:0:0:0:FROM BOUQUET \"{file}\" ORDER BY bouquet")
}

/// A unique SID per index: a permutation of the SID space so neighbours look unrelated.
fn sid_for(index: usize, seed: u64) -> u32 {
    // 7919 is prime and shares no factor with 0xE000 (2^13 * 7), so this is a bijection.
    let v = (index as u64).wrapping_mul(7919).wrapping_add(seed) % SID_SPACE;
    0x1000 + v as u32
}

/// The key services are looked up by: first ten fields with hex upper-cased, plus the
/// bouquet path for group refs; tolerant of a missing trailing `:` and of a name suffix.
pub(crate) fn ref_key(sref: &str) -> String {
    let mut fields = sref.trim().splitn(11, ':');
    let mut key = String::with_capacity(sref.len());
    for _ in 0..10 {
        key.push_str(&fields.next().unwrap_or("").to_ascii_uppercase());
        key.push(':');
    }
    let rest = fields.next().unwrap_or("");
    if rest.contains("FROM BOUQUET") {
        key.push_str(rest);
    }
    key
}

/// The picon file name (without `.png`) for a ref: first ten fields joined by `_`.
pub(crate) fn picon_name(sref: &str) -> String {
    sref.split(':').take(10).collect::<Vec<_>>().join("_")
}

/// What a client should show for a raw Enigma2 name: emphasis marks removed, DVB line
/// breaks and other line breaks as spaces, other controls removed, spaces collapsed,
/// trimmed; with `latin1` the characters an ISO-8859-1 body cannot carry become `?`.
pub(crate) fn clean_name(raw: &str, latin1: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let c = if latin1 && (c as u32) > 0xFF { '?' } else { c };
        match c {
            '\u{86}' | '\u{87}' => {}
            '\u{8A}' | '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when a raw title keeps something after cleaning (what a client keeps).
pub(crate) fn has_visible_text(raw: &str) -> bool {
    raw.chars().any(|c| !c.is_whitespace() && !c.is_control())
}

struct Builder {
    seed: u64,
    left: usize,
    next_index: usize,
    services: Vec<Service>,
    bouquets: Vec<BouquetDef>,
}

impl Builder {
    /// A new service; `stype` is the Enigma2 service type (0x19 HD TV, 1 SD TV, 2 radio).
    fn service(&mut self, name: &str, stype: u32) -> usize {
        let index = self.next_index;
        self.next_index += 1;
        let sid = sid_for(index, self.seed);
        let tsid = 0x3F0 + (index / 16) as u32;
        let sref = format!("1:0:{stype:X}:{sid:X}:{tsid:X}:1:C00000:0:0:0:");
        self.services.push(Service {
            sref,
            name: name.to_string(),
            program: sid,
            members: Vec::new(),
        });
        self.services.len() - 1
    }

    /// A new playable service if the budget allows.
    fn take(&mut self, name: &str, stype: u32) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.service(name, stype))
    }

    fn bouquet(&mut self, file: &str, name: &str, top: bool, radio: bool) -> usize {
        self.bouquets.push(BouquetDef {
            sref: bouquet_ref(file, radio),
            name: name.to_string(),
            entries: Vec::new(),
            top,
            radio,
        });
        self.bouquets.len() - 1
    }

    fn push(&mut self, bouquet: usize, entry: Entry) {
        if let Some(b) = self.bouquets.get_mut(bouquet) {
            b.entries.push(entry);
        }
    }

    fn marker(&mut self, bouquet: usize, name: &str) {
        let sref = format!("1:64:{}:0:0:0:0:0:0:0::{name}", bouquet + 1);
        self.push(
            bouquet,
            Entry::Marker {
                sref,
                name: name.to_string(),
            },
        );
    }

    /// Adds new playable services with these names to a bouquet; false once the budget is spent.
    fn fill(&mut self, bouquet: usize, names: &[&str], stype: u32) -> bool {
        for name in names {
            let name = if name.is_empty() {
                long_name()
            } else {
                name.to_string()
            };
            match self.take(&name, stype) {
                Some(s) => self.push(bouquet, Entry::Service(s)),
                None => return false,
            }
        }
        true
    }
}

impl Layout {
    /// Builds the layout for `channels` playable channels (clamped to 1..=MAX_CHANNELS).
    pub(crate) fn build(channels: usize, seed: u64) -> Layout {
        let mut b = Builder {
            seed,
            left: channels.clamp(1, MAX_CHANNELS),
            next_index: 0,
            services: Vec::new(),
            bouquets: Vec::new(),
        };

        // Favourites: marker, hostile names, hidden spacer, nested sub-bouquet,
        // alternatives group, second marker, more hostile names.
        let fav = b.bouquet("userbouquet.favourites.tv", "Favourites (TV)", true, false);
        b.marker(fav, "--- Highlights ---");
        b.fill(fav, FAV_A, 0x19);
        b.push(fav, Entry::Spacer);
        if b.left > 0 {
            let kids = b.bouquet("subbouquet.kinder.tv", "Kinder & Familie", false, false);
            b.fill(kids, KIDS, 0x19);
            b.push(fav, Entry::Sub(kids));
        }
        if b.left > 0 {
            b.left -= 1;
            // The members are real services but reachable only through the group.
            let hd = b.service("Das Erste HD", 0x19);
            let sd = b.service("Das Erste", 1);
            b.services.push(Service {
                sref: "1:134:1:0:0:0:0:0:0:0:FROM BOUQUET \"alternatives.das_erste.tv\" ORDER BY bouquet"
                    .to_string(),
                name: "Das Erste (Alternativen)".to_string(),
                program: 0,
                members: vec![hd, sd],
            });
            let group = b.services.len() - 1;
            b.push(fav, Entry::Service(group));
        }
        b.marker(fav, "Mehr Sender");
        b.fill(fav, FAV_B, 0x19);

        // A comma in the bouquet name; the stream-relay channels live here.
        let at = b.bouquet("userbouquet.austria.tv", "Österreich, Schweiz", true, false);
        b.fill(at, AUSTRIA, 0x19);

        // `&` in the bouquet name; starts with a channel already listed in Favourites.
        let news = b.bouquet("userbouquet.news.tv", "News & Sport", true, false);
        let first_fav = b.bouquets.get(fav).and_then(|f| {
            f.entries.iter().find_map(|e| match e {
                Entry::Service(s) => Some(*s),
                _ => None,
            })
        });
        if let Some(s) = first_fav {
            b.push(news, Entry::Service(s));
        }
        b.fill(news, NEWS, 0x19);

        let radio = b.bouquet("userbouquet.radio.radio", "Radio", true, true);
        b.fill(radio, RADIO, 2);

        // Whatever is left goes into generic bouquets with a marker each.
        let mut k = 0;
        while b.left > 0 {
            k += 1;
            let file = format!("userbouquet.weitere{k}.tv");
            let g = b.bouquet(&file, &format!("Weitere Sender {k}"), true, false);
            b.marker(g, &format!("Teil {k}"));
            for _ in 0..GENERIC_BOUQUET_SIZE {
                let n = b.next_index;
                let stype = if n % 5 == 0 { 1 } else { 0x19 };
                let suffix = if stype == 1 { "" } else { " HD" };
                match b.take(&format!("Sender {n:04}{suffix}"), stype) {
                    Some(s) => b.push(g, Entry::Service(s)),
                    None => break,
                }
            }
        }

        // Bouquets without any service are not worth listing.
        let keep: Vec<bool> = b
            .bouquets
            .iter()
            .map(|bq| {
                bq.entries
                    .iter()
                    .any(|e| matches!(e, Entry::Service(_) | Entry::Sub(_)))
            })
            .collect();
        for (bq, keep) in b.bouquets.iter_mut().zip(&keep) {
            if !keep {
                bq.top = false;
            }
        }

        let mut layout = Layout {
            services: b.services,
            bouquets: b.bouquets,
            playable: Vec::new(),
            by_key: HashMap::new(),
            bouquet_by_ref: HashMap::new(),
            picons: HashMap::new(),
            relay: Vec::new(),
        };
        layout.index();
        layout.relay = layout
            .bouquets
            .iter()
            .position(|bq| bq.name.starts_with("Österreich"))
            .map(|bi| layout.direct_services(bi).into_iter().take(2).collect())
            .unwrap_or_default();
        layout
    }

    /// Fills the lookup tables and the playlist order.
    fn index(&mut self) {
        for (i, s) in self.services.iter().enumerate() {
            self.by_key.insert(ref_key(&s.sref), i);
            self.picons.insert(picon_name(&s.sref), i);
        }
        for (i, bq) in self.bouquets.iter().enumerate() {
            self.bouquet_by_ref.insert(bq.sref.clone(), i);
        }
        let mut seen = HashSet::new();
        let mut playable = Vec::new();
        for (bi, bq) in self.bouquets.iter().enumerate() {
            if bq.top {
                self.collect(bi, bi, 0, &mut seen, &mut playable);
            }
        }
        self.playable = playable;
    }

    /// Appends the channels of bouquet `bi` (nested ones expanded in place) under `group`.
    fn collect(
        &self,
        bi: usize,
        group: usize,
        depth: usize,
        seen: &mut HashSet<usize>,
        out: &mut Vec<Playable>,
    ) {
        let Some(bq) = self.bouquets.get(bi) else {
            return;
        };
        if depth > 4 {
            return;
        }
        for e in &bq.entries {
            match e {
                Entry::Service(s) => {
                    if seen.insert(*s) {
                        out.push(Playable {
                            service: *s,
                            bouquet: group,
                        });
                    }
                }
                Entry::Sub(sub) => self.collect(*sub, group, depth + 1, seen, out),
                Entry::Marker { .. } | Entry::Spacer => {}
            }
        }
    }

    /// The service with this ref (tolerant matching, see `ref_key`).
    pub(crate) fn service_by_ref(&self, sref: &str) -> Option<usize> {
        self.by_key.get(&ref_key(sref)).copied()
    }

    /// The bouquet (top-level or nested) with exactly this ref.
    pub(crate) fn bouquet_by_ref(&self, sref: &str) -> Option<usize> {
        self.bouquet_by_ref.get(sref.trim()).copied()
    }

    /// The service whose picon has this name.
    pub(crate) fn service_by_picon(&self, name: &str) -> Option<usize> {
        self.picons.get(name).copied()
    }

    /// Services listed directly in a bouquet (no nested ones), in order, for its EPG.
    pub(crate) fn direct_services(&self, bi: usize) -> Vec<usize> {
        self.bouquets
            .get(bi)
            .map(|bq| {
                bq.entries
                    .iter()
                    .filter_map(|e| match e {
                        Entry::Service(s) => Some(*s),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_kinds(l: &Layout) -> (usize, usize, usize, usize) {
        let (mut m, mut sp, mut sub, mut alt) = (0, 0, 0, 0);
        for bq in &l.bouquets {
            for e in &bq.entries {
                match e {
                    Entry::Marker { .. } => m += 1,
                    Entry::Spacer => sp += 1,
                    Entry::Sub(_) => sub += 1,
                    Entry::Service(s) => {
                        if !l.services[*s].members.is_empty() {
                            alt += 1
                        }
                    }
                }
            }
        }
        (m, sp, sub, alt)
    }

    #[test]
    fn playable_count_matches_config_for_many_sizes() {
        for n in [1, 2, 3, 5, 7, 9, 10, 11, 15, 20, 40, 41, 100, 1000, 3333] {
            let l = Layout::build(n, 7);
            assert_eq!(l.playable.len(), n, "channels={n}");
            let refs: HashSet<&str> = l.services.iter().map(|s| s.sref.as_str()).collect();
            assert_eq!(refs.len(), l.services.len(), "refs unique for n={n}");
        }
    }

    #[test]
    fn default_layout_has_every_kind_of_entry() {
        let l = Layout::build(40, 0);
        let (markers, spacers, subs, alts) = count_kinds(&l);
        assert!(markers >= 2 && spacers >= 1 && subs == 1 && alts == 1);
        let names: Vec<&str> = l.bouquets.iter().map(|b| b.name.as_str()).collect();
        for want in [
            "Favourites (TV)",
            "Österreich, Schweiz",
            "News & Sport",
            "Radio",
        ] {
            assert!(names.contains(&want), "{want} missing");
        }
        assert!(l.services.iter().any(|s| s.sref.starts_with("1:0:2:")));
        let raw: Vec<&str> = l.services.iter().map(|s| s.name.as_str()).collect();
        for needle in [
            "\"", "&", "<b>", ",", "\u{8A}", "\u{86}", "#EXTINF", "ü", "📺",
        ] {
            assert!(raw.iter().any(|n| n.contains(needle)), "{needle:?} missing");
        }
        assert!(raw.iter().any(|n| n.chars().count() > 200));
        assert_eq!(l.relay.len(), 2);
    }

    #[test]
    fn duplicate_channel_is_listed_once_under_first_bouquet() {
        let l = Layout::build(40, 0);
        let news = l.bouquet_by_ref(&bouquet_ref("userbouquet.news.tv", false));
        let news = news.expect("news bouquet");
        let first = l.direct_services(news)[0];
        let listed: Vec<&Playable> = l.playable.iter().filter(|p| p.service == first).collect();
        assert_eq!(listed.len(), 1);
        assert_eq!(l.bouquets[listed[0].bouquet].name, "Favourites (TV)");
    }

    #[test]
    fn refs_match_tolerantly() {
        let l = Layout::build(40, 3);
        for (i, s) in l.services.iter().enumerate() {
            assert_eq!(l.service_by_ref(&s.sref), Some(i));
            if !s.sref.contains("FROM BOUQUET") {
                assert_eq!(l.service_by_ref(&s.sref.to_ascii_lowercase()), Some(i));
                assert_eq!(l.service_by_ref(s.sref.trim_end_matches(':')), Some(i));
                assert_eq!(l.service_by_ref(&format!("{}Name", s.sref)), Some(i));
            }
            assert_eq!(l.service_by_picon(&picon_name(&s.sref)), Some(i));
        }
        assert_eq!(l.service_by_ref("1:0:19:1:1:1:C00000:0:0:0:"), None);
        assert_eq!(l.service_by_ref(""), None);
    }

    #[test]
    fn names_clean_like_a_client() {
        assert_eq!(clean_name("Line\u{8A}Break TV", false), "Line Break TV");
        assert_eq!(
            clean_name("\u{86}RTL\u{87} Television", false),
            "RTL Television"
        );
        assert_eq!(clean_name("  Padded   Name  ", false), "Padded Name");
        assert_eq!(clean_name("📺 Emoji TV 🎬", true), "? Emoji TV ?");
        assert_eq!(clean_name("Ö3", true), "Ö3");
        assert!(!has_visible_text("\u{86} \u{87}"));
        assert!(has_visible_text("a"));
    }
}
