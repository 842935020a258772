//! Channel logos: fetched from the receiver once, kept in a bounded on-disk cache.
