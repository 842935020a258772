//! OpenWebIF client: bouquets, services and EPG of an Enigma2 receiver.

mod model;
pub use model::{About, Bouquet, Channel, Event};
