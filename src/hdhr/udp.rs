//! The two UDP services of the emulated tuner, on the smol core: SSDP (answers M-SEARCH,
//! sends NOTIFY alive every [`NOTIFY_EVERY`] and byebye at shutdown) and SiliconDust
//! discovery (answers discover requests for a tuner with our id or any id).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use async_io::{Async, Timer};
use smol::future::FutureExt as _;
use socket2::{Domain, Protocol, Socket, Type};

use super::{Hdhr, ServiceState, discovery, lock, ssdp};
use crate::config::Settings;

/// How often `ssdp:alive` is repeated: well inside the 30 minute `max-age`.
const NOTIFY_EVERY: Duration = Duration::from_secs(300);
/// `CACHE-CONTROL: max-age` of our announcements, seconds.
const MAX_AGE: u32 = 1800;
/// UPnP's recommended multicast TTL.
const MULTICAST_TTL: u32 = 2;
/// The `SERVER` header: OS, UPnP version, product.
const SERVER: &str = concat!("Linux UPnP/1.0 xg2g/", env!("CARGO_PKG_VERSION"));
/// Pause after a failed receive (a socket error that repeats must not spin).
const ERROR_PAUSE: Duration = Duration::from_millis(500);

/// The bound SSDP socket and where its multicast goes.
pub(super) struct SsdpSocket {
    socket: Async<UdpSocket>,
    group: SocketAddr,
}

impl Hdhr {
    /// Binds the SSDP socket as the settings say and returns its service to run, or
    /// `None` when SSDP is off or the socket could not be set up (logged, in the status).
    pub fn ssdp_service(self: &Arc<Self>) -> Option<impl Future<Output = ()> + Send + 'static> {
        let s = self.settings.get();
        if !s.hdhr_enabled || !s.ssdp_enabled {
            return None;
        }
        let bound = bind_ssdp(&s).and_then(|(socket, joined)| {
            let addr = socket.local_addr()?;
            Ok((Async::new(socket)?, addr, joined))
        });
        let (socket, addr, joined) = match bound {
            Ok(b) => b,
            Err(e) => {
                let error = format!("binding {}:{}: {e}", s.ssdp_listen, s.ssdp_port);
                log::warn!("event=ssdp_unavailable error=\"{error}\"");
                *lock(&self.ssdp) = ServiceState::Failed(error);
                return None;
            }
        };
        if let Err(e) = &joined {
            // Unicast searches still work; multicast ones and NOTIFY may not reach anyone.
            log::warn!("event=ssdp_multicast_join_failed error=\"{e}\"");
        }
        log::info!(
            "event=ssdp_listening addr={addr} multicast={}",
            joined.is_ok()
        );
        *lock(&self.ssdp) = ServiceState::Listening(addr);
        let group = SocketAddr::V4(SocketAddrV4::new(ssdp::MULTICAST_ADDR, s.ssdp_port));
        let shared = Arc::new(SsdpSocket { socket, group });
        *lock(&self.ssdp_socket) = Some(shared.clone());
        let (answer, announce) = (self.clone(), self.clone());
        let answering = {
            let shared = shared.clone();
            async move { answer.answer_searches(&shared).await }
        };
        Some(answering.or(async move { announce.announce(&shared).await }))
    }

    /// Binds the SiliconDust discovery socket and returns its service to run, or `None`
    /// when it is off or the port is taken (logged, in the status).
    pub fn discovery_service(
        self: &Arc<Self>,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        let s = self.settings.get();
        if !s.hdhr_enabled || s.hdhr_discovery_port == 0 {
            return None;
        }
        let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, s.hdhr_discovery_port));
        let socket = match Async::<UdpSocket>::bind(addr) {
            Ok(socket) => socket,
            Err(e) => {
                let error = format!("binding {addr}: {e}");
                log::warn!("event=hdhr_discovery_unavailable error=\"{error}\"");
                *lock(&self.discovery) = ServiceState::Failed(error);
                return None;
            }
        };
        log::info!("event=hdhr_discovery_listening addr={addr}");
        *lock(&self.discovery) = ServiceState::Listening(addr);
        let me = self.clone();
        Some(async move { me.answer_discovery(&socket).await })
    }

    /// Sends `ssdp:byebye` for every announced type, if SSDP is running. Never blocks.
    pub fn say_goodbye(&self) {
        let Some(shared) = lock(&self.ssdp_socket).take() else {
            return;
        };
        for message in self.notifications(ssdp::Announce::ByeBye, shared.group) {
            if let Err(e) = shared
                .socket
                .get_ref()
                .send_to(message.as_bytes(), shared.group)
            {
                log::debug!("event=ssdp_byebye_failed error=\"{e}\"");
            }
        }
        log::info!("event=ssdp_byebye");
    }

    fn ssdp_device<'a>(&'a self, location: &'a str) -> ssdp::Device<'a> {
        ssdp::Device {
            uuid: &self.identity.uuid,
            location,
            server: SERVER,
            max_age: MAX_AGE,
            boot_id: self.boot_id,
        }
    }

    /// The NOTIFY datagrams of `announce` for the multicast `group`, with the settings
    /// in force now.
    fn notifications(&self, announce: ssdp::Announce, group: SocketAddr) -> Vec<String> {
        let s = self.settings.get();
        let location = format!("{}/device.xml", self.announce_base(&s, group));
        ssdp::notifications(announce, &self.ssdp_device(&location))
    }

    /// The base URL multicast announcements carry: the multicast interface's address
    /// when one is configured, else as for an answer to the group.
    fn announce_base(&self, s: &Settings, group: SocketAddr) -> String {
        match s.ssdp_interface {
            Some(ip) if super::configured_base(s).is_none() => {
                crate::refresh::http_base(ip.into(), self.http_port)
            }
            _ => self.base_url_for_peer(s, group),
        }
    }

    async fn answer_searches(&self, shared: &SsdpSocket) {
        let mut buf = vec![0u8; ssdp::MAX_DATAGRAM + 1];
        loop {
            let (n, peer) = match shared.socket.recv_from(&mut buf).await {
                Ok(got) => got,
                Err(e) => {
                    log::debug!("event=ssdp_receive_failed error=\"{e}\"");
                    Timer::after(ERROR_PAUSE).await;
                    continue;
                }
            };
            let datagram = buf.get(..n).unwrap_or_default();
            let search = match ssdp::parse(datagram) {
                Ok(Some(search)) => search,
                Ok(None) => {
                    self.count("ssdp", "ignored");
                    continue;
                }
                Err(e) => {
                    log::debug!("event=ssdp_malformed peer={peer} error=\"{e}\"");
                    self.count("ssdp", "malformed");
                    continue;
                }
            };
            let s = self.settings.get();
            let location = format!("{}/device.xml", self.base_url_for_peer(&s, peer));
            let responses = ssdp::responses(&search, &self.ssdp_device(&location));
            if responses.is_empty() {
                self.count("ssdp", "ignored");
                continue;
            }
            if !self.may_reply() {
                self.count("ssdp", "rate_limited");
                continue;
            }
            let mut result = "answered";
            for response in responses {
                if let Err(e) = shared.socket.send_to(response.as_bytes(), peer).await {
                    log::debug!("event=ssdp_send_failed peer={peer} error=\"{e}\"");
                    result = "send_failed";
                }
            }
            log::debug!(
                "event=ssdp_search peer={peer} target={:?} result={result}",
                search.target
            );
            self.count("ssdp", result);
        }
    }

    async fn announce(&self, shared: &SsdpSocket) {
        loop {
            for message in self.notifications(ssdp::Announce::Alive, shared.group) {
                if let Err(e) = shared
                    .socket
                    .send_to(message.as_bytes(), shared.group)
                    .await
                {
                    log::debug!("event=ssdp_notify_failed error=\"{e}\"");
                }
            }
            Timer::after(NOTIFY_EVERY).await;
        }
    }

    async fn answer_discovery(&self, socket: &Async<UdpSocket>) {
        let mut buf = vec![0u8; discovery::MAX_PACKET + 1];
        let mut reply = Vec::with_capacity(discovery::MAX_PACKET);
        loop {
            let (n, peer) = match socket.recv_from(&mut buf).await {
                Ok(got) => got,
                Err(e) => {
                    log::debug!("event=hdhr_discovery_receive_failed error=\"{e}\"");
                    Timer::after(ERROR_PAUSE).await;
                    continue;
                }
            };
            let request = match discovery::decode_request(buf.get(..n).unwrap_or_default()) {
                Ok(request) => request,
                Err(e) => {
                    log::debug!("event=hdhr_discovery_malformed peer={peer} error=\"{e}\"");
                    self.count("hdhomerun", "malformed");
                    continue;
                }
            };
            if !request.wants(self.identity.device_id) {
                self.count("hdhomerun", "ignored");
                continue;
            }
            if !self.may_reply() {
                self.count("hdhomerun", "rate_limited");
                continue;
            }
            let s = self.settings.get();
            let base = self.base_url_for_peer(&s, peer);
            if base.len() > discovery::LEGACY_MAX_BASE_URL {
                // libhdhomerun before 2022 drops a longer base URL and assumes port 80.
                log::debug!(
                    "event=hdhr_discovery_long_base_url base={base} bytes={} legacy_max={}",
                    base.len(),
                    discovery::LEGACY_MAX_BASE_URL
                );
            }
            let lineup = format!("{base}/lineup.json");
            let auth = super::device_auth(self.identity.device_id);
            reply.clear();
            let encoded = discovery::encode_reply(
                &discovery::DiscoverReply {
                    device_id: self.identity.device_id,
                    tuner_count: u8::try_from(self.tuner_count(&s)).unwrap_or(u8::MAX),
                    device_auth: &auth,
                    base_url: &base,
                    lineup_url: &lineup,
                },
                &mut reply,
            );
            if let Err(e) = encoded {
                log::warn!("event=hdhr_discovery_reply_failed error=\"{e}\"");
                self.count("hdhomerun", "send_failed");
                continue;
            }
            let result = match socket.send_to(&reply, peer).await {
                Ok(_) => "answered",
                Err(e) => {
                    log::debug!("event=hdhr_discovery_send_failed peer={peer} error=\"{e}\"");
                    "send_failed"
                }
            };
            log::debug!("event=hdhr_discover peer={peer} base={base} result={result}");
            self.count("hdhomerun", result);
        }
    }
}

/// The SSDP socket, bound with address reuse (other UPnP software on the host listens
/// on 1900 too), and whether joining the multicast group worked.
fn bind_ssdp(s: &Settings) -> io::Result<(UdpSocket, io::Result<()>)> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::from((s.ssdp_listen, s.ssdp_port)).into())?;
    let interface = s.ssdp_interface.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let joined = socket
        .join_multicast_v4(&ssdp::MULTICAST_ADDR, &interface)
        .and_then(|()| {
            if s.ssdp_interface.is_some() {
                socket.set_multicast_if_v4(&interface)?;
            }
            socket.set_multicast_loop_v4(true)?;
            socket.set_multicast_ttl_v4(MULTICAST_TTL)
        });
    Ok((socket.into(), joined))
}
