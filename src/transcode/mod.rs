//! Transcoding: who gets the scarce encoders, and the ffmpeg sessions that use them.

pub mod args;
pub mod ffmpeg_log;
pub mod profile;
pub mod queue;
