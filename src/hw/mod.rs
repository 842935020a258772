//! Encoder hardware: which devices exist and how busy they are, read from /dev, sysfs
//! and debugfs.

pub mod load;
