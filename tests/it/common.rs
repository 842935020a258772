//! Shared test helpers: start the real `xg2g` binary (as daemon and as simulator) on free
//! loopback ports, a tiny blocking HTTP client, and the external validators.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_xg2g");

/// A fresh, empty folder under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xg2g-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process whose stderr is collected; killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr collected.
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn xg2g");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (tx, log) = (tx.clone(), log.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        Proc { child, log, lines }
    }

    /// Waits for an output line containing `needle` and returns it.
    pub fn wait_line(&self, needle: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no output line containing {needle:?} within {limit:?}; output so far:\n{}",
                    self.log.lock().unwrap().join("\n")
                ),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`TERM`, `KILL`, …).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Resident memory from /proc.
    pub fn rss_bytes(&self) -> u64 {
        proc_status_field(self.pid(), "VmRSS:") * 1024
    }

    /// Peak resident memory from /proc.
    pub fn peak_rss_bytes(&self) -> u64 {
        proc_status_field(self.pid(), "VmHWM:") * 1024
    }

    pub fn threads(&self) -> u64 {
        proc_status_field(self.pid(), "Threads:")
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn output(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User + system CPU seconds of a process (all its threads) so far.
pub fn cpu_seconds(pid: u32, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e} (did the process die?)"));
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = stat
        .rfind(')')
        .and_then(|i| stat.get(i + 2..))
        .unwrap_or_else(|| panic!("no command name in /proc/{pid}/stat: {stat}"));
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no number at field {i} of /proc/{pid}/stat: {stat}"))
    };
    (field(11) + field(12)) / ticks
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), for `cpu_seconds`.
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The median (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of no samples");
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn proc_status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The simulated receiver as its own process: API, streaming port (8001-like) and
/// stream-relay port (17999-like), each on its own free loopback port.
pub struct Sim {
    pub proc: Proc,
    pub api: SocketAddr,
    pub stream: SocketAddr,
    pub relay: SocketAddr,
}

impl Sim {
    /// Starts `xg2g sim` with extra arguments (`--channels 10`, `--fault stall`,
    /// `--relay-user u --relay-pass p`, `--stream-bitrate 0`, `--tuners 2`, ...).
    pub fn start(args: &[&str]) -> Sim {
        Sim::start_on(args, "127.0.0.1:0")
    }

    /// Starts on a given API address (to bring a "down" receiver back on the same port).
    pub fn start_on(args: &[&str], listen: &str) -> Sim {
        let mut cmd = Command::new(BIN);
        cmd.arg("sim").args(["--listen", listen]).args(args);
        cmd.env("RUST_LOG", "warn");
        let proc = Proc::spawn(cmd);
        let line = proc.wait_line("sim api=", Duration::from_secs(60));
        let api = field(&line, "api=http://").parse().expect("sim api addr");
        let stream = field(&line, "stream=").parse().expect("sim stream addr");
        let relay = field(&line, "relay=").parse().expect("sim relay addr");
        Sim {
            proc,
            api,
            stream,
            relay,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn stream_port(&self) -> u16 {
        self.stream.port()
    }

    pub fn relay_port(&self) -> u16 {
        self.relay.port()
    }

    /// `XG2G_STREAM_PORT` and `XG2G_RELAY_PORT` pointing a daemon at this simulator's
    /// streaming ports; pass through `env_refs` to `Daemon::start`.
    pub fn port_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("XG2G_STREAM_PORT", self.stream_port().to_string()),
            ("XG2G_RELAY_PORT", self.relay_port().to_string()),
        ]
    }

    pub fn set_fault(&self, mode: &str) {
        let r = http(self.api, "POST", &format!("/sim/fault?mode={mode}"), &[]);
        assert_eq!(r.status, 200, "set fault {mode}: {}", r.text());
    }

    pub fn json(&self, path: &str) -> serde_json::Value {
        let r = http(self.api, "GET", path, &[]);
        assert_eq!(r.status, 200, "sim {path}");
        serde_json::from_slice(&r.body).expect("sim json")
    }

    /// `/sim/stats` now.
    pub fn stats(&self) -> serde_json::Value {
        self.json("/sim/stats")
    }

    /// One numeric counter of `/sim/stats` (`streams_total`, `relay_connections_total`,
    /// ...); panics on an unknown name so a typo cannot pass as zero.
    pub fn stat(&self, name: &str) -> u64 {
        let stats = self.stats();
        stats[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {name:?} in {stats}"))
    }

    /// `/sim/expected` channels (`sref`, `name`, `group`, `kept_events`, `relay`).
    pub fn expected(&self) -> Vec<serde_json::Value> {
        self.json("/sim/expected")["channels"]
            .as_array()
            .cloned()
            .expect("expected channels")
    }

    /// Refs of the channels streamed from the direct port: not whitelisted for the
    /// stream relay, and not an alternatives group (`1:134:`).
    pub fn plain_refs(&self) -> Vec<String> {
        self.expected()
            .iter()
            .filter(|c| c["relay"] != true)
            .filter_map(|c| c["sref"].as_str())
            .filter(|r| !r.starts_with("1:134:"))
            .map(str::to_string)
            .collect()
    }

    /// Refs of the channels whitelisted for the stream relay.
    pub fn relay_refs(&self) -> Vec<String> {
        self.expected()
            .iter()
            .filter(|c| c["relay"] == true)
            .filter_map(|c| c["sref"].as_str())
            .map(str::to_string)
            .collect()
    }
}

/// Borrows owned env pairs (e.g. `Sim::port_env`) as `Daemon::start` wants them.
pub fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line
        .find(key)
        .map(|i| i + key.len())
        .expect("field in line");
    line[start..].split_whitespace().next().unwrap_or("")
}

/// The daemon as its own process.
pub struct Daemon {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub data: PathBuf,
}

pub const TOKEN: &str = "test-token";

impl Daemon {
    /// Starts `xg2g serve` against `sim` with `data` as its folder and extra env.
    /// The sim's stream ports are passed on; `env` may override them.
    pub fn start(sim: &Sim, data: &Path, env: &[(&str, &str)]) -> Daemon {
        let ports = sim.port_env();
        let mut all = env_refs(&ports);
        all.extend_from_slice(env);
        Daemon::start_with(&sim.base(), data, &all, None)
    }

    pub fn start_with(
        base: &str,
        data: &Path,
        env: &[(&str, &str)],
        ulimit_n: Option<u32>,
    ) -> Daemon {
        let cmd = match ulimit_n {
            Some(n) => {
                let mut c = Command::new("sh");
                c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" serve"), BIN]);
                c
            }
            None => {
                let mut c = Command::new(BIN);
                c.arg("serve");
                c
            }
        };
        Daemon::spawn(cmd, base, data, env)
    }

    /// Starts `xg2g --config FILE serve` against `sim`.
    pub fn start_with_config(
        sim: &Sim,
        config: &Path,
        data: &Path,
        env: &[(&str, &str)],
    ) -> Daemon {
        let ports = sim.port_env();
        let mut all = env_refs(&ports);
        all.extend_from_slice(env);
        let mut cmd = Command::new(BIN);
        cmd.arg("--config").arg(config).arg("serve");
        Daemon::spawn(cmd, &sim.base(), data, &all)
    }

    /// Runs `cmd` with the test defaults (loopback listener, API token, short receiver
    /// timeout, 127.0.0.1 exempt from rate limits so polling tests are never limited;
    /// the limiter tests use 127.0.0.2 and up; no SSDP, no HDHomeRun discovery port)
    /// and `env` over them.
    fn spawn(mut cmd: Command, base: &str, data: &Path, env: &[(&str, &str)]) -> Daemon {
        for (k, _) in std::env::vars() {
            if k.starts_with("XG2G_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("XG2G_OWI_BASE", base)
            .env("XG2G_DATA", data)
            .env("XG2G_LISTEN", "127.0.0.1:0")
            .env("XG2G_API_TOKEN", TOKEN)
            .env("XG2G_OWI_TIMEOUT_MS", "3000")
            .env("XG2G_OWI_RETRIES", "0")
            .env("XG2G_RATELIMIT_WHITELIST", "127.0.0.1")
            // Parallel daemons must not fight over the discovery ports; the HDHomeRun
            // tests turn them on with ports of their own.
            .env("XG2G_SSDP_ENABLED", "false")
            .env("XG2G_HDHR_DISCOVERY_PORT", "0")
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn(cmd);
        let line = proc.wait_line("event=listening addr=", Duration::from_secs(30));
        let addr = field(&line, "addr=").parse().expect("daemon addr");
        Daemon {
            proc,
            addr,
            data: data.to_path_buf(),
        }
    }

    /// Starts the daemon against `sim` in a new data folder tagged `tag` and waits for
    /// its first refresh, which must succeed.
    pub fn start_refreshed(sim: &Sim, tag: &str, env: &[(&str, &str)]) -> (TempDir, Daemon) {
        let data = TempDir::new(tag);
        let daemon = Daemon::start(sim, data.path(), env);
        let st = daemon.wait_refreshed(Duration::from_secs(60));
        assert_eq!(st["refresh"]["last_result"], "ok", "{st}");
        (data, daemon)
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        http(self.addr, "GET", path, &[])
    }

    /// POSTs to an API write endpoint with the API token.
    pub fn post_api(&self, path: &str) -> HttpResponse {
        let auth = format!("Bearer {TOKEN}");
        http(self.addr, "POST", path, &[("Authorization", &auth)])
    }

    /// Runs a refresh and waits for it; returns the JSON answer.
    pub fn refresh(&self) -> serde_json::Value {
        let r = self.post_api("/api/v1/refresh?wait=true");
        assert_eq!(r.status, 200, "refresh: {}", r.text());
        serde_json::from_slice(&r.body).expect("refresh json")
    }

    pub fn status(&self) -> serde_json::Value {
        let r = self.get("/api/v1/status");
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).expect("status json")
    }

    /// Waits until the first refresh after start has finished.
    pub fn wait_refreshed(&self, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let st = self.status();
            if st["refresh"]["completed"].as_u64().unwrap_or(0) >= 1 {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "no refresh finished within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A sample of `/metrics` by its full name with labels, e.g.
    /// `xg2g_circuit_breaker_state{name="stream_relay"}`; panics when it is missing.
    pub fn metric(&self, name: &str) -> f64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "/metrics: {}", r.text());
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /metrics"))
    }

    pub fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.data.join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("json: {e}: {}", self.text()))
    }
}

/// One request on a fresh connection (`Connection: close`); reads the whole answer.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    exchange(s, addr, method, path, headers)
}

/// [`http`] from the local address `source` (any 127.x.y.z works on loopback), so one
/// test can be several clients.
pub fn http_from(
    source: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    sock.bind(&SocketAddr::new(source, 0).into())
        .unwrap_or_else(|e| panic!("bind {source}: {e}"));
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .expect("connect");
    exchange(sock.into(), addr, method, path, headers)
}

fn exchange(
    mut s: TcpStream,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read answer");
    parse_response(&raw, method == "HEAD")
}

pub fn parse_response(raw: &[u8], head_only: bool) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if head_only {
        Vec::new()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

/// The proxy path of a service ref, as the playlist writes it.
pub fn stream_path(sref: &str) -> String {
    format!("/stream/{}", xg2g::http::percent_encode(sref))
}

/// Reads a response head from `sock` (at most `limit` bytes): the head text without
/// the blank line, its status, and the body bytes that came with it.
pub fn read_head(sock: &mut impl Read, limit: usize, who: &str) -> (String, u16, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        assert!(raw.len() <= limit, "{who}: head longer than {limit}");
        let n = sock
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{who}: read head: {e}"));
        assert!(
            n > 0,
            "{who}: closed before the head ended: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{who}: no status in {head:?}"));
    (head, status, raw[split + 4..].to_vec())
}

/// Runs an external validator; a missing tool fails the test saying how to get it.
pub fn run_tool(program: &str, args: &[&str], package: &str) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program} is required ({e}); install Debian's {package} (scripts/test.sh does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Gunzips with the system's gzip (an independent decoder).
pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-dc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip");
    let mut stdin = child.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().unwrap().expect("feed gzip");
    assert!(out.status.success(), "gzip -d failed");
    out.stdout
}

/// Polls `cond` until true or `limit` passes.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client reading one stream over a raw socket.
pub struct StreamClient {
    pub sock: TcpStream,
    pub status: u16,
    pub head: String,
    /// Body bytes that came with the head.
    pub pending: Vec<u8>,
}

impl StreamClient {
    pub fn open(addr: SocketAddr, path: &str) -> StreamClient {
        StreamClient::open_with(addr, path, None)
    }

    /// Opens with an optional small receive buffer (a client that will not read).
    pub fn open_with(addr: SocketAddr, path: &str, rcvbuf: Option<usize>) -> StreamClient {
        let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        if let Some(size) = rcvbuf {
            sock.set_recv_buffer_size(size).expect("rcvbuf");
        }
        sock.connect_timeout(&addr.into(), Duration::from_secs(5))
            .expect("connect");
        let mut sock: TcpStream = sock.into();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: test\r\n\r\n");
        sock.write_all(req.as_bytes()).expect("send");
        let (head, status, pending) = read_head(&mut sock, 16 * 1024, path);
        StreamClient {
            sock,
            status,
            head,
            pending,
        }
    }

    /// Reads until `n` body bytes have arrived (panics on EOF or timeout).
    pub fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.pending);
        let mut buf = vec![0u8; 64 * 1024];
        while out.len() < n {
            let got = self.sock.read(&mut buf).expect("read body");
            assert!(got > 0, "stream ended after {} bytes", out.len());
            out.extend_from_slice(&buf[..got]);
        }
        out
    }

    /// Reads until EOF or error; returns how long it took and the bytes count.
    pub fn read_to_end_within(&mut self, limit: Duration) -> (Duration, usize) {
        let started = Instant::now();
        self.sock.set_read_timeout(Some(limit)).unwrap();
        let mut total = self.pending.len();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return (started.elapsed(), total),
                Ok(n) => total += n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    panic!("stream still open after {limit:?}")
                }
                Err(_) => return (started.elapsed(), total),
            }
        }
    }
}

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// (pid, state) of every ffmpeg whose parent is `parent`.
pub fn ffmpeg_children(parent: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: u32 = rest.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        if ppid == parent && comm == "ffmpeg" {
            out.push((pid, state));
        }
    }
    out
}

/// (codec type, codec name) of every stream ffprobe finds in `url` (a URL or a file);
/// panics with ffprobe's output when it fails.
pub fn ffprobe_streams(url: &str) -> Vec<(String, String)> {
    let (ok, out) = run_tool(
        "ffprobe",
        &[
            "-v",
            "error",
            "-rw_timeout",
            "20000000",
            "-analyzeduration",
            "3000000",
            "-show_entries",
            "stream=codec_type,codec_name",
            "-of",
            "json",
            url,
        ],
        "ffmpeg",
    );
    assert!(ok, "ffprobe {url} failed: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("ffprobe json");
    v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("").to_string(),
                s["codec_name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}
