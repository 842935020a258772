//! xg2g: turns an Enigma2 receiver into an IPTV playlist, an XMLTV guide and streams.
//!
//! The binary (`src/main.rs`) wires these modules together; each owns one concern
//! (see DESIGN.md for the map).

pub mod audit;
pub mod config;
pub mod guide;
pub mod hdhr;
pub mod hls;
pub mod http;
pub mod hw;
pub mod limit;
pub mod lineup;
pub mod metrics;
pub mod notify;
pub mod picon;
pub mod receiver;
pub mod refresh;
pub mod reload;
pub mod sim;
pub mod stream;
pub mod transcode;
