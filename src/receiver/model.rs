//! What the receiver tells us, cleaned: text is plain UTF-8 (entities decoded once,
//! Enigma2 control characters handled), times are Unix seconds.

/// A bouquet (a named channel list) of the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bouquet {
    /// Service reference of the bouquet, e.g. `1:7:1:0:0:0:0:0:0:0:FROM BOUQUET "userbouquet.fav.tv" ORDER BY bouquet`.
    pub sref: String,
    /// Display name, cleaned.
    pub name: String,
}

/// One playable channel: a TV/radio service or an alternatives group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Service reference to stream, e.g. `1:0:19:283D:3FB:1:C00000:0:0:0:`.
    pub sref: String,
    /// Display name, cleaned (no control characters, single line).
    pub name: String,
    /// Name of the bouquet the channel was listed in (its playlist group).
    pub group: String,
}

/// One EPG event, already validated: non-empty title, duration > 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Service reference the event belongs to, as the receiver reported it.
    pub sref: String,
    /// Start, Unix seconds (from OpenWebIF's `begin_timestamp`).
    pub start: i64,
    /// Duration in seconds (0 from the receiver becomes 1800).
    pub duration: i64,
    /// Title, cleaned, single line, never empty.
    pub title: String,
    /// Short description (`shortdesc`), cleaned, may be empty.
    pub short_desc: String,
    /// Long description (`longdesc`), cleaned, may contain newlines, may be empty.
    pub long_desc: String,
    /// Genre text where the receiver knows one.
    pub genre: Option<String>,
}

/// Facts from `/api/about`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct About {
    /// Receiver model, e.g. `dm920`.
    pub model: String,
    /// Number of tuners the receiver reports.
    pub tuners: u32,
}
