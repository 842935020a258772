//! Encoder hardware: which devices exist, which of them encode, and how busy they are,
//! read from /dev, sysfs and debugfs, asked through libva or V4L2 ioctls (cargo
//! features `vaapi`, `v4l2`) or a one-frame ffmpeg test encode.

#[cfg(test)]
pub(crate) mod fake;
pub mod load;
pub mod probe;
pub mod spec;
#[cfg(feature = "v4l2")]
pub mod v4l2;
#[cfg(feature = "vaapi")]
pub mod vaapi;
