//! OpenWebIF JSON answers turned into the cleaned model: bouquets, bouquet entries,
//! `about`, and EPG events streamed one at a time.
//!
//! Rules: unknown fields are ignored; numbers may be JSON numbers or numeric strings;
//! a field of an unexpected type counts as missing rather than failing the answer; all
//! text goes through `text.rs` exactly once. Every parser reads to the end of the
//! input, so trailing garbage is an error. The EPG parser never holds more than one
//! event.

use std::fmt;
use std::io::Read;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::model::{About, Bouquet, Event};
use super::text::{clean_description, clean_name};

/// Duration given to events the receiver reports with no (or a zero) duration.
pub const DEFAULT_DURATION: i64 = 1800;

/// Any JSON value, kept only as far as a lenient field needs it.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Scalar {
    /// Missing or `null`.
    #[default]
    Absent,
    /// `true` / `false`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string.
    Text(String),
    /// An array, with its element count.
    List(u64),
    /// An object (contents skipped).
    Object,
}

impl Scalar {
    /// The value as an integer: integers, finite floats (truncated) and strings holding
    /// either; `None` for anything else.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Int(i) => Some(*i),
            // `as` saturates, which is the right answer for absurd values.
            Scalar::Float(f) if f.is_finite() => Some(*f as i64),
            Scalar::Text(s) => {
                let s = s.trim();
                s.parse::<i64>().ok().or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| f as i64)
                })
            }
            _ => None,
        }
    }

    /// The value as text: strings as they are, numbers formatted; `None` otherwise.
    pub fn into_text(self) -> Option<String> {
        match self {
            Scalar::Text(s) => Some(s),
            Scalar::Int(i) => Some(i.to_string()),
            Scalar::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(Scalar::Int(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(v))
    }

    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Absent)
    }

    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Absent)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        Scalar::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        let mut n = 0u64;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            n += 1;
        }
        Ok(Scalar::List(n))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// Parses the whole input as `T` and checks nothing but whitespace follows.
fn parse_all<T: for<'de> Deserialize<'de>, R: Read>(reader: R) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let value = T::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct BouquetsAnswer {
    bouquets: Option<Vec<Vec<Scalar>>>,
}

/// `/api/bouquets`: `{"bouquets": [["<ref>", "<name>"], ...]}`. Entries without a ref
/// are skipped; a bouquet without a name is named by its ref.
pub fn parse_bouquets<R: Read>(reader: R) -> serde_json::Result<Vec<Bouquet>> {
    let answer: BouquetsAnswer = parse_all(reader)?;
    Ok(answer
        .bouquets
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pair| {
            let mut fields = pair.into_iter();
            let sref = fields.next()?.into_text()?.trim().to_owned();
            if sref.is_empty() {
                return None;
            }
            let name = fields
                .next()
                .and_then(Scalar::into_text)
                .map(|n| clean_name(&n))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| sref.clone());
            Some(Bouquet { sref, name })
        })
        .collect())
}

/// One line of a bouquet as listed by `/api/getservices`, name already cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's service reference, trimmed.
    pub sref: String,
    /// Its display name, cleaned (may be empty).
    pub name: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ServicesAnswer {
    services: Option<Vec<RawService>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawService {
    servicereference: Scalar,
    servicename: Scalar,
}

/// `/api/getservices`: `{"services": [{"servicereference": ..., "servicename": ...}]}`,
/// in bouquet order. Entries without a reference are skipped; classification is left to
/// the caller.
pub fn parse_services<R: Read>(reader: R) -> serde_json::Result<Vec<Entry>> {
    let answer: ServicesAnswer = parse_all(reader)?;
    Ok(answer
        .services
        .unwrap_or_default()
        .into_iter()
        .filter_map(|s| {
            let sref = s.servicereference.into_text()?.trim().to_owned();
            let name = s
                .servicename
                .into_text()
                .map(|n| clean_name(&n))
                .unwrap_or_default();
            (!sref.is_empty()).then_some(Entry { sref, name })
        })
        .collect())
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AboutAnswer {
    info: Option<RawInfo>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInfo {
    model: Scalar,
    boxtype: Scalar,
    tuners: Scalar,
}

/// `/api/about`: the model (falling back to `boxtype`) and the number of tuners (the
/// length of `info.tuners`, or a number if the box sends one).
pub fn parse_about<R: Read>(reader: R) -> serde_json::Result<About> {
    let answer: AboutAnswer = parse_all(reader)?;
    let info = answer.info.unwrap_or_default();
    let text = |s: Scalar| {
        s.into_text()
            .map(|t| clean_name(&t))
            .filter(|t| !t.is_empty())
    };
    let tuners = match info.tuners {
        Scalar::List(n) => n,
        other => other
            .as_i64()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0),
    };
    Ok(About {
        model: text(info.model)
            .or_else(|| text(info.boxtype))
            .unwrap_or_default(),
        tuners: u32::try_from(tuners).unwrap_or(u32::MAX),
    })
}

/// `/api/epgbouquet` and `/api/epgservice`: `{"events": [...], ...}`. Hands each valid
/// event to `sink` as soon as it is parsed and returns how many it handed out. Events
/// without a begin timestamp (or with 0, OpenWebIF's "no event" placeholder) or without
/// a title after cleaning are dropped; a missing or zero duration becomes
/// [`DEFAULT_DURATION`]; a missing `sref` becomes `default_sref`, or drops the event.
pub fn stream_events<R: Read>(
    reader: R,
    default_sref: Option<&str>,
    sink: &mut dyn FnMut(Event),
) -> serde_json::Result<u64> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut state = EpgState {
        sink,
        default_sref,
        count: 0,
    };
    (&mut state).deserialize(&mut de)?;
    de.end()?;
    Ok(state.count)
}

struct EpgState<'a> {
    sink: &'a mut dyn FnMut(Event),
    default_sref: Option<&'a str>,
    count: u64,
}

impl<'de> DeserializeSeed<'de> for &mut EpgState<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut EpgState<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with an \"events\" list")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<TopField>>()? {
            match key.0 {
                TopField::Events => map.next_value_seed(EventList(&mut *self))?,
                TopField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The `events` value: a list (or `null`, which holds nothing).
struct EventList<'s, 'a>(&'s mut EpgState<'a>);

impl<'de> DeserializeSeed<'de> for EventList<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventList<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of events")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.0;
        while let Some(raw) = seq.next_element::<RawEvent>()? {
            if let Some(event) = raw.into_event(state.default_sref) {
                (state.sink)(event);
                state.count += 1;
            }
        }
        Ok(())
    }
}

/// The fields of an event we use; anything that is not an object leaves them missing.
#[derive(Default)]
struct RawEvent {
    sref: Scalar,
    title: Scalar,
    shortdesc: Scalar,
    longdesc: Scalar,
    begin: Scalar,
    duration: Scalar,
    genre: Scalar,
}

impl RawEvent {
    fn into_event(self, default_sref: Option<&str>) -> Option<Event> {
        let start = self.begin.as_i64().filter(|&t| t > 0)?;
        let title = clean_name(&self.title.into_text()?);
        if title.is_empty() {
            return None;
        }
        let sref = self
            .sref
            .into_text()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| default_sref.map(str::to_owned))?;
        let duration = self
            .duration
            .as_i64()
            .filter(|&d| d > 0)
            .unwrap_or(DEFAULT_DURATION);
        let description = |s: Scalar| {
            s.into_text()
                .map(|t| clean_description(&t))
                .unwrap_or_default()
        };
        Some(Event {
            sref,
            start,
            duration,
            title,
            short_desc: description(self.shortdesc),
            long_desc: description(self.longdesc),
            genre: self
                .genre
                .into_text()
                .map(|g| clean_name(&g))
                .filter(|g| !g.is_empty()),
        })
    }
}

impl<'de> Deserialize<'de> for RawEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawEventVisitor)
    }
}

struct RawEventVisitor;

impl<'de> Visitor<'de> for RawEventVisitor {
    type Value = RawEvent;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent, A::Error> {
        let mut raw = RawEvent::default();
        while let Some(key) = map.next_key::<Key<EventField>>()? {
            let slot = match key.0 {
                EventField::Sref => &mut raw.sref,
                EventField::Title => &mut raw.title,
                EventField::ShortDesc => &mut raw.shortdesc,
                EventField::LongDesc => &mut raw.longdesc,
                EventField::Begin => &mut raw.begin,
                EventField::Duration => &mut raw.duration,
                EventField::Genre => &mut raw.genre,
                EventField::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            *slot = map.next_value()?;
        }
        Ok(raw)
    }

    // Whatever else sits in the list is skipped, not fatal.
    fn visit_bool<E>(self, _: bool) -> Result<RawEvent, E> {
        Ok(RawEvent::default())
    }

    fn visit_i64<E>(self, _: i64) -> Result<RawEvent, E> {
        Ok(RawEvent::default())
    }

    fn visit_u64<E>(self, _: u64) -> Result<RawEvent, E> {
        Ok(RawEvent::default())
    }

    fn visit_f64<E>(self, _: f64) -> Result<RawEvent, E> {
        Ok(RawEvent::default())
    }

    fn visit_str<E>(self, _: &str) -> Result<RawEvent, E> {
        Ok(RawEvent::default())
    }

    fn visit_unit<E>(self) -> Result<RawEvent, E> {
        Ok(RawEvent::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawEvent, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(RawEvent::default())
    }
}

/// Top-level keys of an EPG answer we care about.
enum TopField {
    Events,
    Other,
}

/// Event keys we care about.
enum EventField {
    Sref,
    Title,
    ShortDesc,
    LongDesc,
    Begin,
    Duration,
    Genre,
    Other,
}

/// Maps a JSON key to a field without allocating a `String` per key.
trait FieldName: Sized {
    fn from_key(key: &str) -> Self;
}

impl FieldName for TopField {
    fn from_key(key: &str) -> Self {
        match key {
            "events" => TopField::Events,
            _ => TopField::Other,
        }
    }
}

impl FieldName for EventField {
    fn from_key(key: &str) -> Self {
        match key {
            "sref" => EventField::Sref,
            "title" => EventField::Title,
            "shortdesc" => EventField::ShortDesc,
            "longdesc" => EventField::LongDesc,
            "begin_timestamp" => EventField::Begin,
            "duration_sec" => EventField::Duration,
            "genre" => EventField::Genre,
            _ => EventField::Other,
        }
    }
}

struct Key<F>(F);

impl<'de, F: FieldName> Deserialize<'de> for Key<F> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_identifier(KeyVisitor(std::marker::PhantomData))
    }
}

struct KeyVisitor<F>(std::marker::PhantomData<F>);

impl<F: FieldName> Visitor<'_> for KeyVisitor<F> {
    type Value = Key<F>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<F>, E> {
        Ok(Key(F::from_key(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(json: &str, default_sref: Option<&str>) -> serde_json::Result<Vec<Event>> {
        let mut out = Vec::new();
        let n = stream_events(json.as_bytes(), default_sref, &mut |e| out.push(e))?;
        assert_eq!(n as usize, out.len());
        Ok(out)
    }

    #[test]
    fn events_are_cleaned_and_validated() {
        let json = r#"{"result": true, "extra": {"a": [1, 2]}, "events": [
            {"id": 1, "sref": "1:0:19:283D:3FB:1:C00000:0:0:0:", "title": "Tom &amp;amp; Jerry",
             "shortdesc": "Kurz", "longdesc": "Zeile 1\u008aZeile 2", "begin_timestamp": 1700000000,
             "duration_sec": 3600, "genre": "Cartoon", "genreid": 0, "begin": "20:15"},
            {"sref": "x", "title": "no begin", "duration_sec": 60},
            {"sref": "x", "title": "N/A", "begin_timestamp": 0, "duration_sec": 0},
            {"sref": "x", "title": " \u0086 ", "begin_timestamp": 5},
            {"sref": "x", "title": "strings", "begin_timestamp": "1700003600", "duration_sec": "0"},
            {"sref": "x", "title": 42, "begin_timestamp": 1.7e9, "duration_sec": null,
             "shortdesc": ["odd"], "genre": ""},
            {"title": "no sref", "begin_timestamp": 7},
            null, 3, "x", [1], {},
            {"sref": "x", "title": {"nested": true}, "begin_timestamp": 9},
            {"sref": "x", "title": "bad begin", "begin_timestamp": "soon"}
        ]}"#;
        let got = events(json, None).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Event {
                sref: "1:0:19:283D:3FB:1:C00000:0:0:0:".into(),
                start: 1_700_000_000,
                duration: 3600,
                title: "Tom &amp; Jerry".into(),
                short_desc: "Kurz".into(),
                long_desc: "Zeile 1\nZeile 2".into(),
                genre: Some("Cartoon".into()),
            }
        );
        assert_eq!((got[1].start, got[1].duration), (1_700_003_600, 1800));
        assert_eq!(got[2].title, "42");
        assert_eq!((got[2].start, got[2].duration), (1_700_000_000, 1800));
        assert_eq!(got[2].short_desc, "");
        assert_eq!(got[2].genre, None);

        let with_default = events(json, Some("1:0:1:1:1:1:0:0:0:0:")).unwrap();
        assert_eq!(with_default.len(), 4);
        assert_eq!(with_default[3].sref, "1:0:1:1:1:1:0:0:0:0:");
    }

    #[test]
    fn epg_answers_without_events_or_with_bad_json() {
        assert!(events(r#"{"result": false}"#, None).unwrap().is_empty());
        assert!(
            events(r#"{"events": null, "result": true}"#, None)
                .unwrap()
                .is_empty()
        );
        assert!(events(r#"{"events": []}  "#, None).unwrap().is_empty());
        assert!(events(r#"{"events": [}"#, None).is_err());
        assert!(events(r#"{"events": []} x"#, None).is_err());
        assert!(events(r#"[]"#, None).is_err());
        assert!(events(r#"{"events": 5}"#, None).is_err());
        assert!(events("", None).is_err());
    }

    #[test]
    fn bouquets_parse() {
        let json = r#"{"bouquets": [
            ["1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.favourites.tv\" ORDER BY bouquet", "Favourites (TV)"],
            ["1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.x.tv\" ORDER BY bouquet", "Sport &amp; News"],
            ["1:7:1:0:0:0:0:0:0:0:FROM BOUQUET \"userbouquet.y.tv\" ORDER BY bouquet"],
            [], [null, "x"]
        ]}"#;
        let got = parse_bouquets(json.as_bytes()).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].name, "Favourites (TV)");
        assert_eq!(got[1].name, "Sport & News");
        assert_eq!(got[2].name, got[2].sref);
        assert!(parse_bouquets(&b"{}"[..]).unwrap().is_empty());
        assert!(parse_bouquets(&b"{\"bouquets\": 1}"[..]).is_err());
    }

    #[test]
    fn services_and_about_parse() {
        let json = r#"{"pos": 0, "services": [
            {"servicereference": "1:0:19:283D:3FB:1:C00000:0:0:0:", "servicename": "\u0086Das Erste\u0087 HD", "program": 0, "pos": 1},
            {"servicereference": "", "servicename": "empty"},
            {"servicename": "no ref"},
            {"servicereference": "1:64:1:0:0:0:0:0:0:0::Marker", "servicename": null}
        ]}"#;
        let got = parse_services(json.as_bytes()).unwrap();
        assert_eq!(
            got,
            vec![
                Entry {
                    sref: "1:0:19:283D:3FB:1:C00000:0:0:0:".into(),
                    name: "Das Erste HD".into()
                },
                Entry {
                    sref: "1:64:1:0:0:0:0:0:0:0::Marker".into(),
                    name: String::new()
                },
            ]
        );
        let about = r#"{"info": {"model": "dm920", "brand": "Dream", "tuners": [
            {"name": "Tuner A", "type": "DVB-S2"}, {"name": "Tuner B", "type": "DVB-C"}]},
            "service": {"name": "x"}}"#;
        let got = parse_about(about.as_bytes()).unwrap();
        assert_eq!(
            got,
            About {
                model: "dm920".into(),
                tuners: 2
            }
        );
        let got = parse_about(&br#"{"info": {"boxtype": "vuduo2", "tuners": "4"}}"#[..]).unwrap();
        assert_eq!((got.model.as_str(), got.tuners), ("vuduo2", 4));
        assert_eq!(parse_about(&b"{}"[..]).unwrap(), About::default());
    }
}
