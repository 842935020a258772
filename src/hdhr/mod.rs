//! HDHomeRun emulation: Plex, Jellyfin, Emby and Channels see the receiver as a
//! SiliconDust network tuner (HTTP discover/lineup, UPnP device description, SSDP and
//! the SiliconDust UDP discovery protocol).

pub mod discovery;
pub mod ssdp;
