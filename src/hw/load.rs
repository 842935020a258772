//! Device load readers over sysfs/debugfs (GPU busy percent, devfreq load, ...).
