//! EPG events of the simulated receiver, generated on demand and written as JSON while sent.
//!
//! Rules: events are a pure function of (seed, service, index, request time), so any two
//! requests agree; nothing is stored. Per service there are `days * events_per_day`
//! events of `86400 / events_per_day` seconds, the first starting half an event before
//! the request time. Hostile on purpose: HTML entities, Enigma2 control characters,
//! empty titles, zero durations, occasional numbers sent as strings.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Counters;
use super::json::{CHUNK, Gen, Style, push_str, push_text};
use super::layout::{Layout, has_visible_text, picon_name};

/// Event titles (raw); `&`, quotes, tags and emphasis marks get escaped on the wire.
const TITLES: &[&str] = &[
    "Tagesschau",
    "Tom & Jerry",
    "Tatort: \"Der Fall\"",
    "Wer wird Millionär?",
    "Don't Look Up",
    "Sport <live>",
    "Die Sendung mit der Maus",
    "Löwenzahn",
    "Nachtmagazin",
    "Ärger im Paradies",
    "\u{86}Spielfilm\u{87}: Casablanca",
    "Fußball – Bundesliga",
    "Rock & Roll Hall of Fame",
    "Terra X",
    "heute-show",
];

const SHORTS: &[&str] = &[
    "Staffel 2, Folge 7",
    "Nachrichten & Wetter",
    "Teil 1\u{8A}Teil 2",
    "",
    "Krimi, D 2023",
    "Live aus dem \"Studio\"",
];

const LONGS: &[&str] = &[
    "Ein Kommissar ermittelt.\u{8A}Mit: Anna Schmidt & Max Müller.",
    "Die wichtigsten Nachrichten des Tages.",
    "Rick's Café in Casablanca: Liebe, Krieg & Whisky.\u{8A}\u{8A}USA 1942, 102 Min.",
    "",
    "Tore, Fouls <b>und</b> Emotionen \u{86}live\u{87} aus dem Stadion.",
];

const GENRES: &[(&str, u32)] = &[
    ("Spielfilm", 0x10),
    ("Nachrichten", 0x20),
    ("Sport", 0x40),
    ("Kinder/Jugend", 0x50),
    ("Musik", 0x60),
    ("Dokumentation", 0x90),
];

/// splitmix64: a small, good mixing function for deterministic pseudo-random choices.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pick<'a>(list: &[&'a str], h: u64) -> &'a str {
    list.get((h % list.len().max(1) as u64) as usize)
        .copied()
        .unwrap_or("")
}

/// The shape of the generated guide.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub days: u32,
    pub per_day: u32,
    pub seed: u64,
    pub style: Style,
}

impl Shape {
    /// Event length in seconds.
    pub(crate) fn len(&self) -> i64 {
        86_400 / i64::from(self.per_day.clamp(1, 1440))
    }

    /// Events per service.
    pub(crate) fn count(&self) -> u64 {
        u64::from(self.days) * u64::from(self.per_day.clamp(1, 1440))
    }
}

/// Which events a request asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// The request time (events are laid out around it).
    pub now: i64,
    /// Events ending after this are included (`time`, default now).
    pub from: i64,
    /// Events starting before this are included (`time + endTime minutes`), None = all.
    pub until: Option<i64>,
}

/// Writes the JSON of `/api/epgbouquet` or `/api/epgservice` for some services.
pub(crate) struct EpgGen {
    layout: Arc<Layout>,
    counters: Arc<Counters>,
    services: Vec<usize>,
    shape: Shape,
    window: Window,
    /// `/api/epgservice` style: a few more fields per event.
    detailed: bool,
    /// The `endless` fault: start over with later events forever.
    endless: bool,
    started: bool,
    first: bool,
    ch: usize,
    ev: u64,
    round: i64,
}

impl EpgGen {
    pub(crate) fn new(
        layout: Arc<Layout>,
        counters: Arc<Counters>,
        services: Vec<usize>,
        shape: Shape,
        window: Window,
        detailed: bool,
        endless: bool,
    ) -> EpgGen {
        EpgGen {
            layout,
            counters,
            services,
            shape,
            window,
            detailed,
            endless,
            started: false,
            first: true,
            ch: 0,
            ev: 0,
            round: 0,
        }
    }
}

impl Gen for EpgGen {
    fn fill(&mut self, out: &mut String) -> bool {
        if !self.started {
            self.started = true;
            out.push_str("{\"result\": true, \"events\": [");
        }
        let count = self.shape.count();
        let len = self.shape.len();
        let (mut served, mut valid) = (0u64, 0u64);
        let more = loop {
            if out.len() >= CHUNK {
                break true;
            }
            let Some(&svc) = self.services.get(self.ch) else {
                // Endless with nothing to list would spin without output: end instead.
                if self.endless && !self.services.is_empty() {
                    self.ch = 0;
                    self.ev = 0;
                    self.round += 1;
                    continue;
                }
                out.push_str("]}");
                break false;
            };
            if self.ev >= count {
                self.ch += 1;
                self.ev = 0;
                continue;
            }
            let i = self.ev;
            self.ev += 1;
            let shift = self
                .round
                .saturating_mul(i64::from(self.shape.days.max(1)) * 86_400);
            let begin = self
                .window
                .now
                .saturating_sub(len / 2)
                .saturating_add((i as i64).saturating_mul(len))
                .saturating_add(shift);
            // Endless ignores the window: filtering later rounds away would spin forever.
            let outside = begin.saturating_add(len) <= self.window.from
                || self.window.until.is_some_and(|u| begin >= u);
            if outside && !self.endless {
                continue;
            }
            let Some(service) = self.layout.services.get(svc) else {
                self.ch += 1;
                continue;
            };
            if !self.first {
                out.push_str(", ");
            }
            self.first = false;
            let visible = write_event(
                out,
                &service.sref,
                &service.name,
                svc as u64,
                i.wrapping_add((self.round as u64).wrapping_mul(count)),
                begin,
                len,
                &self.shape,
                self.window.now,
                self.detailed,
            );
            served += 1;
            valid += u64::from(visible);
        };
        self.counters
            .epg_events_served
            .fetch_add(served, Ordering::Relaxed);
        self.counters
            .epg_events_valid
            .fetch_add(valid, Ordering::Relaxed);
        more
    }
}

/// `HH:MM` in the box's zone (a fixed UTC+1; only the timestamps are meant to be used).
fn clock(ts: i64) -> String {
    let s = ts.saturating_add(3600).rem_euclid(86_400);
    format!("{:02}:{:02}", s / 3600, s % 3600 / 60)
}

/// The per-event hash every generated detail derives from.
fn event_hash(seed: u64, svc: u64, i: u64) -> u64 {
    mix(seed ^ mix(svc.wrapping_mul(1_000_003).wrapping_add(i)))
}

/// The title of an event; a few are empty (or empty once cleaned) and a client drops them.
fn event_title(h: u64) -> &'static str {
    match h % 97 {
        0..=1 => "",
        2 => "\u{86} \u{87}",
        _ => pick(TITLES, h >> 7),
    }
}

/// How many events of service `svc` (out of `count`) a client keeps: those with a title.
pub(crate) fn kept_events(seed: u64, svc: u64, count: u64) -> u64 {
    (0..count)
        .filter(|&i| has_visible_text(event_title(event_hash(seed, svc, i))))
        .count() as u64
}

/// Writes one event object; returns whether its title is one a client keeps.
#[allow(clippy::too_many_arguments)]
fn write_event(
    out: &mut String,
    sref: &str,
    sname: &str,
    svc: u64,
    i: u64,
    begin: i64,
    len: i64,
    shape: &Shape,
    now: i64,
    detailed: bool,
) -> bool {
    let h = event_hash(shape.seed, svc, i);
    let title = event_title(h);
    let duration = if h % 53 == 5 { 0 } else { len };
    let style = shape.style;
    out.push_str(&format!(
        "{{\"id\": {}, \"begin_timestamp\": {begin}, ",
        svc.wrapping_mul(131).wrapping_add(i) % 65_535 + 1
    ));
    // Some boxes send numbers as strings; a tolerant client copes.
    if (h >> 20) % 101 == 0 {
        out.push_str(&format!("\"duration_sec\": \"{duration}\", \"title\": "));
    } else {
        out.push_str(&format!("\"duration_sec\": {duration}, \"title\": "));
    }
    push_text(out, title, style, false);
    out.push_str(", \"shortdesc\": ");
    push_text(out, pick(SHORTS, h >> 13), style, false);
    out.push_str(", \"longdesc\": ");
    push_text(out, pick(LONGS, h >> 17), style, true);
    out.push_str(", \"sref\": ");
    push_str(out, sref, style);
    out.push_str(", \"sname\": ");
    push_text(out, sname, style, false);
    out.push_str(&format!(
        ", \"now_timestamp\": {now}, \"begin\": \"{}\", \"end\": \"{}\"",
        clock(begin),
        clock(begin.saturating_add(duration))
    ));
    if (h >> 24) % 3 == 0 {
        let (genre, id) = GENRES
            .get(((h >> 28) % GENRES.len() as u64) as usize)
            .copied()
            .unwrap_or(("", 0));
        out.push_str(", \"genre\": ");
        push_text(out, genre, style, false);
        out.push_str(&format!(", \"genreid\": {id}"));
    }
    if detailed {
        let progress = if duration > 0 {
            (now.saturating_sub(begin).saturating_mul(100) / duration).clamp(0, 100)
        } else {
            0
        };
        out.push_str(&format!(
            ", \"duration\": {}, \"tleft\": {}, \"progress\": {progress}, \"picon\": ",
            duration / 60,
            begin.saturating_add(duration).saturating_sub(now) / 60
        ));
        push_str(out, &format!("/picon/{}.png", picon_name(sref)), style);
    }
    out.push('}');
    has_visible_text(title)
}

/// The placeholder OpenWebIF answers for a service without EPG: no usable timestamp.
pub(crate) fn placeholder(sref: &str, style: Style) -> String {
    let mut out = String::from(
        "{\"result\": true, \"events\": [{\"date\": 0, \"begin\": 0, \"begin_timestamp\": 0, \
         \"duration\": 0, \"duration_sec\": 0, \"end\": 0, \"title\": \"N/A\", \"shortdesc\": \"\", \
         \"sname\": \"\", \"longdesc\": \"\", \"tleft\": 0, \"progress\": 0, \"now_timestamp\": 0, \
         \"sref\": ",
    );
    push_str(&mut out, sref, style);
    out.push_str("}]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixing_is_deterministic_and_spreads() {
        assert_eq!(mix(1), mix(1));
        assert_ne!(mix(1), mix(2));
    }

    #[test]
    fn clock_is_hours_and_minutes() {
        assert_eq!(clock(0), "01:00");
        assert_eq!(clock(23 * 3600 + 59 * 60), "00:59");
        assert_eq!(clock(-60), "00:59");
    }

    #[test]
    fn placeholder_is_valid_json() {
        let s = placeholder("1:0:1:1:1:1:C00000:0:0:0:", Style { ascii: false });
        let v: serde_json::Value = serde_json::from_str(&s).expect("json");
        assert_eq!(v["events"][0]["begin_timestamp"], 0);
    }
}
