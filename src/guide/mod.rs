//! Playlist and guide files: M3U writer, streaming XMLTV writer, atomic file writes.
