//! The lineup: the channels of the last good refresh as the stream proxy and picon cache
//! see them (service ref, number, name, stream-relay flag) plus the receiver's tuner
//! count, persisted next to the playlist so that a restart can stream at once.
//!
//! Rules: a lineup is replaced whole (readers hold an `Arc` to the one they started
//! with, so a refresh never changes it under them); the file is written atomically and
//! read with a size cap; a missing or unreadable file means an empty lineup, never a
//! failed start.

use std::collections::{HashMap, HashSet};
use std::io::Read as _;
use std::path::Path;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::receiver::canonical_ref;

/// The lineup's file name inside `XG2G_DATA`.
pub const LINEUP_FILE: &str = "lineup.json";

/// Largest lineup file read (50 000 channels take about 6 MiB).
const MAX_FILE_BYTES: u64 = 32 << 20;

/// One channel of the lineup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineupChannel {
    /// Position in the playlist, from 1 (`tvg-chno`).
    pub number: u32,
    /// Display name.
    pub name: String,
    /// The service reference as the receiver listed it (what is sent upstream).
    pub sref: String,
    /// Listed in the receiver's `whitelist_streamrelay`: streamed via the relay port.
    pub relay: bool,
}

/// The channels of one refresh, findable by any spelling of their ref.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Lineup {
    /// Tuners the receiver reported, if it did.
    pub tuners: Option<u32>,
    /// Channels in playlist order.
    pub channels: Vec<LineupChannel>,
    /// Canonical ref → index into `channels`.
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl Lineup {
    /// A lineup of `channels` (first of equal refs wins).
    pub fn new(tuners: Option<u32>, channels: Vec<LineupChannel>) -> Lineup {
        let mut lineup = Lineup {
            tuners,
            channels,
            index: HashMap::new(),
        };
        lineup.build_index();
        lineup
    }

    fn build_index(&mut self) {
        self.index = HashMap::with_capacity(self.channels.len());
        for (i, c) in self.channels.iter().enumerate() {
            self.index.entry(canonical_ref(&c.sref)).or_insert(i);
        }
    }

    /// Flags the channels whose canonical ref is in `relay` as stream-relay channels.
    pub fn mark_relay(&mut self, relay: &HashSet<String>) {
        for key in relay {
            if let Some(c) = self.index.get(key).and_then(|i| self.channels.get_mut(*i)) {
                c.relay = true;
            }
        }
    }

    /// The channel with this ref (any letter case, with or without name part).
    pub fn find(&self, sref: &str) -> Option<&LineupChannel> {
        self.index
            .get(&canonical_ref(sref))
            .and_then(|i| self.channels.get(*i))
    }

    /// True before the first refresh (and without a saved lineup).
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Reads `dir/lineup.json`; `None` when it is missing, unreadable or invalid (each
    /// but the first logged), so a damaged file only costs the wait for a refresh.
    pub fn load(dir: &Path) -> Option<Lineup> {
        let path = dir.join(LINEUP_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!(
                    "event=lineup_unreadable path={} error=\"{e}\"",
                    path.display()
                );
                return None;
            }
        };
        let mut text = Vec::new();
        let read = file.take(MAX_FILE_BYTES + 1).read_to_end(&mut text);
        if let Err(e) = read {
            log::warn!(
                "event=lineup_unreadable path={} error=\"{e}\"",
                path.display()
            );
            return None;
        }
        if text.len() as u64 > MAX_FILE_BYTES {
            log::warn!(
                "event=lineup_unreadable path={} error=\"too large\"",
                path.display()
            );
            return None;
        }
        match serde_json::from_slice::<Lineup>(&text) {
            Ok(mut lineup) => {
                lineup.build_index();
                Some(lineup)
            }
            Err(e) => {
                log::warn!("event=lineup_invalid path={} error=\"{e}\"", path.display());
                None
            }
        }
    }

    /// Writes `dir/lineup.json` atomically. Blocking: call through `smol::unblock`.
    pub fn save(&self, dir: &Path) -> std::io::Result<u64> {
        crate::guide::write_atomic(&dir.join(LINEUP_FILE), |w| {
            serde_json::to_writer(&mut *w, self).map_err(std::io::Error::other)
        })
    }
}

/// The current lineup, shared by the refresher (writer) and the request handlers.
#[derive(Debug, Default)]
pub struct LineupStore {
    current: RwLock<Arc<Lineup>>,
}

impl LineupStore {
    /// A store holding `initial`.
    pub fn new(initial: Lineup) -> Arc<LineupStore> {
        Arc::new(LineupStore {
            current: RwLock::new(Arc::new(initial)),
        })
    }

    /// The current lineup (a cheap `Arc` clone).
    pub fn get(&self) -> Arc<Lineup> {
        self.current
            .read()
            .map(|g| Arc::clone(&g))
            .unwrap_or_else(|e| Arc::clone(&e.into_inner()))
    }

    /// Replaces the lineup; readers holding the old one keep it.
    pub fn set(&self, lineup: Lineup) {
        let new = Arc::new(lineup);
        match self.current.write() {
            Ok(mut g) => *g = new,
            Err(e) => *e.into_inner() = new,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(n: u32, sref: &str, relay: bool) -> LineupChannel {
        LineupChannel {
            number: n,
            name: format!("Channel {n}"),
            sref: sref.to_string(),
            relay,
        }
    }

    #[test]
    fn finds_channels_by_any_spelling_and_survives_a_round_trip() {
        let dir = std::env::temp_dir().join(format!("xg2g-lineup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let lineup = Lineup::new(
            Some(2),
            vec![
                channel(1, "1:0:19:283D:3FB:1:C00000:0:0:0:", false),
                channel(2, "1:0:19:2B66:3F3:1:C00000:0:0:0:", true),
            ],
        );
        assert_eq!(
            lineup
                .find("1:0:19:2b66:3f3:1:c00000:0:0:0::Name")
                .map(|c| c.number),
            Some(2)
        );
        assert!(lineup.find("1:0:19:1:1:1:C00000:0:0:0:").is_none());
        lineup.save(&dir).expect("save");
        let back = Lineup::load(&dir).expect("load");
        assert_eq!(back.channels, lineup.channels);
        assert_eq!(back.tuners, Some(2));
        assert!(back.find("1:0:19:283d:3fb:1:c00000:0:0:0").is_some());
        std::fs::write(dir.join(LINEUP_FILE), b"{not json").expect("write");
        assert!(Lineup::load(&dir).is_none());
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(Lineup::load(&dir).is_none());
    }

    #[test]
    fn relay_flags_are_set_by_canonical_ref() {
        let mut lineup = Lineup::new(
            None,
            vec![
                channel(1, "1:0:19:283d:3fb:1:c00000:0:0:0", false),
                channel(2, "1:0:19:2B66:3F3:1:C00000:0:0:0:", false),
            ],
        );
        lineup.mark_relay(&HashSet::from([canonical_ref(
            "1:0:19:283D:3FB:1:C00000:0:0:0:",
        )]));
        let flags: Vec<bool> = lineup.channels.iter().map(|c| c.relay).collect();
        assert_eq!(flags, [true, false]);
    }

    #[test]
    fn the_store_swaps_whole_lineups() {
        let store = LineupStore::new(Lineup::default());
        let before = store.get();
        store.set(Lineup::new(
            None,
            vec![channel(1, "1:0:1:1:1:1:C00000:0:0:0:", false)],
        ));
        assert!(before.is_empty());
        assert_eq!(store.get().channels.len(), 1);
    }
}
