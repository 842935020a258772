//! The metrics registry and the metric families.
