//! Transcoded upstreams: a hub whose bytes come from an ffmpeg session that reads the
//! channel's own hub, so N viewers of one (channel, profile) cost one encode and one
//! tuner.

use std::sync::Arc;

use super::hub::{Source, SourceError, Started};
use super::open::READ_CHUNK;
use super::{Channel, Client, Inner, StreamError};
use crate::transcode::Session;
use crate::transcode::profile::Profile;
use crate::transcode::queue::Priority;

impl Source for Session {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SourceError> {
        Session::read(self, buf).await.map_err(|e| SourceError {
            kind: e.kind(),
            detail: e.to_string(),
        })
    }
}

/// Opens the channel's feed, waits for a slot, starts ffmpeg and waits for its first
/// bytes. Dropping the future at any point (the last viewer left, shutdown) gives up the
/// queue place or the slot and kills the child.
pub(super) async fn open(
    inner: &Arc<Inner>,
    channel: &Channel,
    profile: &Profile,
    priority: Priority,
) -> Result<Started<Session>, StreamError> {
    let feed = inner.open_channel(channel, Client::Feed).await?;
    let mut session = inner
        .transcoder
        .start(Box::new(feed.body), profile, priority)
        .await?;
    let mut first = vec![0u8; READ_CHUNK];
    let n = session
        .read(&mut first)
        .await
        .map_err(|e| StreamError::TranscodeFailed(e.to_string()))?;
    if n == 0 {
        return Err(StreamError::TranscodeFailed(
            "ffmpeg ended without output".into(),
        ));
    }
    first.truncate(n);
    Ok(Started {
        body: session,
        first,
        port: None,
    })
}
