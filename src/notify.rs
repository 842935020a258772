//! The systemd notification protocol (`sd_notify`) by hand: tells a `Type=notify` unit's
//! manager that the daemon is ready, is stopping, and is still alive (watchdog).
//!
//! Rules: it reads only `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; each message
//! is one datagram from a fresh unbound `UnixDatagram` to the socket path, or to the
//! abstract address when the variable starts with `@`. Without `NOTIFY_SOCKET` (not
//! started by systemd, OpenWrt, Enigma2) every call does nothing. A failed send is logged
//! once as a warning and never returned: a missing or confused supervisor must not stop
//! the daemon. No libsystemd, no new dependency.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set after the first failed send, so a broken socket costs one log line, not one per ping.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Sends `READY=1`: the listeners are bound and the services run. Call once.
pub fn ready() {
    notify("READY=1");
}

/// Sends `STOPPING=1`: shutdown has begun, so systemd waits for the exit instead of
/// reporting a failure when the watchdog pings stop.
pub fn stopping() {
    notify("STOPPING=1");
}

/// Sends `WATCHDOG=1`: the daemon is alive. systemd restarts it when these stop for
/// `WatchdogSec`.
pub fn watchdog() {
    notify("WATCHDOG=1");
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), or `None` when there is
/// none, it is malformed or zero, or `WATCHDOG_PID` names another process (a child that
/// inherited the environment must not ping for its parent).
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let pid = std::env::var("WATCHDOG_PID").ok();
    interval_from(usec.as_deref(), pid.as_deref(), std::process::id())
}

/// Pings the watchdog every `every` (half of `watchdog_interval()`, as systemd advises),
/// forever; it sleeps on a timer between pings.
pub async fn watchdog_loop(every: Duration) {
    loop {
        watchdog();
        async_io::Timer::after(every).await;
    }
}

/// `WATCHDOG_USEC` and `WATCHDOG_PID` judged for the process `own_pid`.
fn interval_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send_to(&socket, state) {
        if !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!(
                "event=notify_failed socket={} state={state} error=\"{e}\" (further failures are not logged)",
                socket.to_string_lossy()
            );
        }
    }
}

/// Sends `state` (e.g. `READY=1`) as one datagram to the notification socket `socket`:
/// a filesystem path, or an abstract address when it starts with `@`.
pub fn send_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty socket name",
        ));
    }
    let sock = UnixDatagram::unbound()?;
    let sent = match bytes.strip_prefix(b"@") {
        Some(name) => send_abstract(&sock, name, state.as_bytes())?,
        None => sock.send_to(state.as_bytes(), Path::new(socket))?,
    };
    if sent != state.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short datagram"));
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_abstract(sock: &UnixDatagram, name: &[u8], data: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    sock.send_to_addr(data, &addr)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    static NEXT: AtomicU32 = AtomicU32::new(0);

    fn unique(test: &str) -> String {
        format!(
            "xg2g-notify-{}-{}-{test}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn recv(sock: &UnixDatagram) -> String {
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn a_path_socket_receives_each_state_as_one_datagram() {
        let dir = std::env::temp_dir().join(unique("path"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        for state in ["READY=1", "WATCHDOG=1", "STOPPING=1"] {
            send_to(path.as_os_str(), state).unwrap();
            assert_eq!(recv(&listener), state);
        }
        drop(listener);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_is_addressed_by_a_leading_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = unique("abstract");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(recv(&listener), "READY=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let path = std::env::temp_dir().join(unique("missing")).join("notify");
        assert!(send_to(path.as_os_str(), "READY=1").is_err());
        assert!(send_to(OsStr::new(""), "READY=1").is_err());
    }

    #[test]
    fn the_watchdog_interval_needs_a_positive_usec_and_our_pid() {
        let s = Some;
        assert_eq!(
            interval_from(s("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            interval_from(s("500000"), s("7"), 7),
            Some(Duration::from_millis(500))
        );
        assert_eq!(interval_from(s("30000000"), s("8"), 7), None);
        assert_eq!(interval_from(s("30000000"), s("x"), 7), None);
        assert_eq!(interval_from(s("0"), None, 7), None);
        assert_eq!(interval_from(s("-1"), None, 7), None);
        assert_eq!(interval_from(s("soon"), None, 7), None);
        assert_eq!(interval_from(None, s("7"), 7), None);
    }
}
