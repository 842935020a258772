//! The stream proxy: one upstream per channel, fanned out to many clients.
