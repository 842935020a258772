//! The encoder slot pool with its bounded priority queue of waiting sessions.
