//! Cache tests against a real HTTP receiver on 127.0.0.1: the simulator behind our own
//! server, wrapped in a handler that counts picon requests and can misbehave on demand.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};

use smol::Executor;

use super::*;
use crate::http::{Body, Handler, ServerLimits, ServerStats};
use crate::sim::{ApiHandler, Fault, SimConfig, Simulator};

/// How the test receiver answers picon requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// What the simulator says.
    Sim = 0,
    /// 200 with an HTML page.
    Html = 1,
    /// 200 with a PNG signature and 300 KiB of body.
    Huge = 2,
    /// The simulator's PNG, gzip-coded.
    Gzip = 3,
}

struct Receiver {
    sim: Simulator,
    api: ApiHandler,
    mode: AtomicU8,
    delay_ms: AtomicU64,
    picon_requests: AtomicU64,
}

impl Handler for Receiver {
    fn handle(&self, req: Request) -> Pin<Box<dyn Future<Output = Response> + Send + '_>> {
        Box::pin(async move {
            if req.path.starts_with("/picon/") {
                self.picon_requests.fetch_add(1, Ordering::SeqCst);
            }
            let delay = self.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                Timer::after(Duration::from_millis(delay)).await;
            }
            match self.mode.load(Ordering::SeqCst) {
                1 => Response::bytes(200, "text/html", b"<html>no picon</html>".to_vec()),
                2 => {
                    let mut body = PNG_SIGNATURE.to_vec();
                    body.resize(300 * 1024, 0);
                    Response::bytes(200, "image/png", body)
                }
                3 => {
                    let resp = self.api.handle(req).await;
                    let Body::Bytes(png) = resp.body else {
                        return resp;
                    };
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    enc.write_all(&png).unwrap();
                    Response::bytes(resp.status, "image/png", enc.finish().unwrap())
                        .with_header("Content-Encoding", "gzip")
                }
                _ => self.api.handle(req).await,
            }
        })
    }
}

/// One test's world: an executor, the receiver on a loopback port, a cache folder.
struct World {
    ex: Arc<Executor<'static>>,
    rx: Arc<Receiver>,
    addr: SocketAddr,
    dir: PathBuf,
    _stop: Sender<()>,
}

impl World {
    fn new(test: &str) -> World {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xg2g-picon-{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let sim = Simulator::new(SimConfig::default());
        let rx = Arc::new(Receiver {
            api: sim.api_handler(),
            sim,
            mode: AtomicU8::new(Mode::Sim as u8),
            delay_ms: AtomicU64::new(0),
            picon_requests: AtomicU64::new(0),
        });
        let ex = Arc::new(Executor::new());
        let listener = crate::http::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.get_ref().local_addr().unwrap();
        let (stop, stopped) = smol::channel::bounded(1);
        ex.spawn(crate::http::serve(
            listener,
            ServerLimits::default(),
            rx.clone(),
            ex.clone(),
            ServerStats::default(),
            stopped,
        ))
        .detach();
        World {
            ex,
            rx,
            addr,
            dir,
            _stop: stop,
        }
    }

    fn config(&self, max_bytes: u64) -> PiconConfig {
        PiconConfig {
            dir: self.dir.clone(),
            max_bytes,
            base: format!("http://{}/picon", self.addr),
            authorization: None,
            timeout: Duration::from_secs(2),
            from_receiver: true,
        }
    }

    fn cache(&self) -> Arc<PiconCache> {
        Arc::new(PiconCache::new(self.config(16 << 20)).unwrap())
    }

    /// Runs `fut` on this world's executor (which also runs the receiver).
    fn run<T>(&self, fut: impl Future<Output = T>) -> T {
        smol::block_on(self.ex.run(fut))
    }

    /// Starts `GET /picon/<tail>` on the executor; the task yields the status.
    fn spawn_get(&self, cache: &Arc<PiconCache>, tail: &str) -> smol::Task<u16> {
        let (cache, tail) = (cache.clone(), tail.to_string());
        self.ex
            .spawn(async move { cache.respond(&get(&tail), &tail).await.status })
    }

    /// Requests all `tails` at once and returns their statuses in order.
    fn get_all(&self, cache: &Arc<PiconCache>, tails: &[String]) -> Vec<u16> {
        self.run(async {
            let tasks: Vec<_> = tails.iter().map(|t| self.spawn_get(cache, t)).collect();
            let mut statuses = Vec::new();
            for t in tasks {
                statuses.push(t.await);
            }
            statuses
        })
    }

    fn set_mode(&self, mode: Mode) {
        self.rx.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn fetches(&self) -> u64 {
        self.rx.picon_requests.load(Ordering::SeqCst)
    }

    /// Picon names of the simulator's first `n` channels.
    fn names(&self, n: usize) -> Vec<String> {
        self.rx
            .sim
            .expected()
            .iter()
            .take(n)
            .map(|c| crate::receiver::picon_name(&c.sref))
            .collect()
    }

    /// Sorted file names in the cache folder.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn folder_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn request(method: &str, tail: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        method: method.to_owned(),
        path: format!("/picon/{tail}"),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        peer: "127.0.0.1:1".parse().unwrap(),
        body: Vec::new(),
    }
}

fn get(tail: &str) -> Request {
    request("GET", tail, &[])
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn body(resp: Response) -> Vec<u8> {
    match resp.body {
        Body::Empty => Vec::new(),
        Body::Bytes(b) => b,
        Body::File { mut file, len } => {
            let mut v = Vec::new();
            file.read_to_end(&mut v).unwrap();
            assert_eq!(v.len() as u64, len);
            v
        }
        Body::Stream(_) => panic!("no stream bodies here"),
    }
}

fn error_code(resp: Response) -> String {
    let v: serde_json::Value = serde_json::from_slice(&body(resp)).unwrap();
    v["code"].as_str().unwrap_or_default().to_owned()
}

fn is_png(b: &[u8]) -> bool {
    b.starts_with(&PNG_SIGNATURE) && b.ends_with(&PNG_IEND)
}

#[test]
fn first_request_fetches_then_hits_come_from_disk() {
    let w = World::new("hit");
    let cache = w.cache();
    let name = &w.names(1)[0];
    let tail = format!("{name}.png");
    w.run(async {
        let resp = cache.respond(&get(&tail), &tail).await;
        assert_eq!(resp.status, 200);
        assert_eq!(header(&resp, "content-type"), Some("image/png"));
        assert_eq!(header(&resp, "cache-control"), Some(CACHE_CONTROL));
        assert!(is_png(&body(resp)));
        assert_eq!(w.files(), vec![tail.clone()]);

        let resp = cache.respond(&get(&tail), &tail).await;
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
                .count(),
            1
        );
        let etag = header(&resp, "etag").unwrap().to_owned();
        assert!(is_png(&body(resp)));

        let conditional = request("GET", &tail, &[("If-None-Match", &etag)]);
        let resp = cache.respond(&conditional, &tail).await;
        assert_eq!(resp.status, 304);
        assert_eq!(header(&resp, "cache-control"), Some(CACHE_CONTROL));

        // The service-reference form names the same picon.
        let sref_tail = name.replace('_', "%3A").to_lowercase() + "%3A";
        let resp = cache.respond(&get(&sref_tail), &sref_tail).await;
        assert_eq!(resp.status, 200);

        let head = cache.respond(&request("HEAD", &tail, &[]), &tail).await;
        assert_eq!(head.status, 200);
    });
    assert_eq!(w.fetches(), 1, "the receiver is asked once");
    let st = cache.stats();
    assert_eq!((st.misses, st.hits, st.files), (1, 4, 1));
    assert_eq!(st.bytes, w.folder_bytes());
}

#[test]
fn concurrent_requests_for_one_name_fetch_once() {
    let w = World::new("herd");
    w.rx.delay_ms.store(300, Ordering::SeqCst);
    let cache = w.cache();
    let tail = format!("{}.png", w.names(1)[0]);
    let statuses = w.get_all(&cache, &vec![tail; 6]);
    assert_eq!(statuses, vec![200; 6]);
    assert_eq!(w.fetches(), 1);
    let st = cache.stats();
    assert_eq!((st.misses, st.hits), (1, 5));
}

#[test]
fn fetches_overall_are_limited() {
    let w = World::new("limit");
    w.rx.delay_ms.store(200, Ordering::SeqCst);
    let cache = w.cache();
    let names = w.names(8);
    let started = Instant::now();
    let tails: Vec<String> = names.iter().map(|n| format!("{n}.png")).collect();
    let statuses = w.get_all(&cache, &tails);
    assert_eq!(statuses, vec![200; 8]);
    // Eight 200 ms fetches, four at a time: two rounds at least.
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(w.fetches(), 8);
}

#[test]
fn a_cancelled_fetch_hands_over_to_a_waiter() {
    let w = World::new("cancel");
    w.rx.delay_ms.store(300, Ordering::SeqCst);
    let cache = w.cache();
    let tail = format!("{}.png", w.names(1)[0]);
    let status = w.run(async {
        let first = w.spawn_get(&cache, &tail);
        Timer::after(Duration::from_millis(50)).await;
        let second = w.spawn_get(&cache, &tail);
        Timer::after(Duration::from_millis(50)).await;
        drop(first);
        second.await
    });
    assert_eq!(status, 200);
    assert_eq!(w.fetches(), 2);
    assert_eq!(cache.stats().files, 1);
}

#[test]
fn missing_picons_are_remembered() {
    let w = World::new("missing");
    let cache = w.cache();
    let tail = "1_0_1_FFFF_FFFF_FFFF_0_0_0_0.png";
    w.run(async {
        for _ in 0..3 {
            let resp = cache.respond(&get(tail), tail).await;
            assert_eq!(resp.status, 404);
            assert!(header(&resp, "cache-control").is_some());
            assert_eq!(error_code(resp), "E020");
        }
    });
    assert_eq!(w.fetches(), 1);
    let st = cache.stats();
    assert_eq!((st.misses, st.not_found, st.files), (1, 3, 0));
}

#[test]
fn answers_that_are_not_picons_are_404_and_remembered() {
    for (mode, test) in [(Mode::Html, "html"), (Mode::Huge, "huge")] {
        let w = World::new(test);
        w.set_mode(mode);
        let cache = w.cache();
        let tail = format!("{}.png", w.names(1)[0]);
        w.run(async {
            assert_eq!(cache.respond(&get(&tail), &tail).await.status, 404);
            assert_eq!(cache.respond(&get(&tail), &tail).await.status, 404);
        });
        assert_eq!(w.fetches(), 1, "{mode:?}");
        assert!(w.files().is_empty(), "{mode:?}: {:?}", w.files());
    }
}

#[test]
fn gzip_coded_picons_are_stored_decoded() {
    let w = World::new("gzip");
    w.set_mode(Mode::Gzip);
    let cache = w.cache();
    let tail = format!("{}.png", w.names(1)[0]);
    w.run(async {
        let resp = cache.respond(&get(&tail), &tail).await;
        assert_eq!(resp.status, 200);
        assert!(is_png(&body(resp)));
    });
    assert!(is_png(&fs::read(w.dir.join(&tail)).unwrap()));
}

#[test]
fn receiver_failures_are_502_and_not_remembered() {
    let w = World::new("fail");
    let cache = w.cache();
    let tail = format!("{}.png", w.names(1)[0]);
    w.rx.sim.set_fault(Fault::Http500);
    w.run(async {
        let resp = cache.respond(&get(&tail), &tail).await;
        assert_eq!(resp.status, 502);
        assert_eq!(error_code(resp), "E021");
    });
    // A truncated PNG is a broken transfer, not a missing logo.
    w.rx.sim.set_fault(Fault::Malformed);
    w.run(async {
        assert_eq!(cache.respond(&get(&tail), &tail).await.status, 502);
    });
    w.rx.sim.set_fault(Fault::None);
    w.run(async {
        assert_eq!(cache.respond(&get(&tail), &tail).await.status, 200);
    });
    assert_eq!(w.fetches(), 3);
    let st = cache.stats();
    assert_eq!((st.misses, st.fetch_errors, st.not_found), (3, 2, 0));
    assert_eq!(w.files(), vec![tail]);
}

#[test]
fn an_unreachable_receiver_is_502() {
    let w = World::new("unreachable");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = w.config(1 << 20);
    cfg.base = format!("http://127.0.0.1:{port}/picon");
    let cache = PiconCache::new(cfg).unwrap();
    let tail = format!("{}.png", w.names(1)[0]);
    let status = w.run(async { cache.respond(&get(&tail), &tail).await.status });
    assert_eq!(status, 502);
    assert_eq!(cache.stats().fetch_errors, 1);
}

/// A gate like the refresher's: `rate` fetches per second (burst 1) and a breaker that
/// opens after `threshold` failures for a minute.
fn gate(rate: u32, threshold: u32) -> Arc<Gate> {
    let breaker = Arc::new(crate::limit::Breaker::new(
        "receiver",
        crate::limit::BreakerConfig {
            enabled: true,
            failure_threshold: threshold,
            open_timeout: Duration::from_secs(60),
        },
    ));
    let rate = std::num::NonZeroU32::new(rate).unwrap();
    Arc::new(Gate::with_burst(breaker, rate, std::num::NonZeroU32::MIN))
}

#[test]
fn receiver_failures_open_the_shared_breaker_which_then_stops_fetches() {
    let w = World::new("breaker");
    let gate = gate(1000, 2);
    let cache = PiconCache::new(w.config(1 << 20))
        .unwrap()
        .with_gate(gate.clone());
    let names = w.names(4);
    let tail = |i: usize| format!("{}.png", names[i]);
    // A 404 is an answer: the box is alive.
    w.set_mode(Mode::Html);
    assert_eq!(w.run(cache.respond(&get(&tail(0)), &tail(0))).status, 404);
    assert_eq!(gate.breaker().consecutive_failures(), 0);
    w.rx.sim.set_fault(Fault::Http500);
    w.set_mode(Mode::Sim);
    for i in 1..3 {
        assert_eq!(w.run(cache.respond(&get(&tail(i)), &tail(i))).status, 502);
    }
    assert_eq!(gate.breaker().state(), crate::limit::BreakerState::Open);
    // Open: nothing more reaches the receiver, even once it is healthy again.
    w.rx.sim.set_fault(Fault::None);
    let before = w.fetches();
    let resp = w.run(cache.respond(&get(&tail(3)), &tail(3)));
    assert_eq!(resp.status, 502);
    assert_eq!(error_code(resp), "E021");
    assert_eq!(w.fetches(), before);
}

#[test]
fn fetches_are_paced_by_the_receiver_gate() {
    let w = World::new("paced");
    let cache = Arc::new(
        PiconCache::new(w.config(1 << 20))
            .unwrap()
            .with_gate(gate(20, 100)),
    );
    let tails: Vec<String> = w.names(5).iter().map(|n| format!("{n}.png")).collect();
    let started = Instant::now();
    assert_eq!(w.get_all(&cache, &tails), vec![200; 5]);
    // One from the burst, four more at 50 ms each.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(190), "{took:?}");
}

#[test]
fn bad_names_are_400_without_a_fetch() {
    let w = World::new("bad");
    let cache = w.cache();
    let long = "1".repeat(500);
    let tails = [
        "..",
        "../../etc/passwd",
        "a/b.png",
        "%2F",
        "1_0_19_283D_3FB_1_C00000_0_0_0%2F..png",
        "..%2F1_0_19_283D_3FB_1_C00000_0_0_0.png",
        "user@1_0_19_283D_3FB_1_C00000_0_0_0.png",
        "@",
        "",
        long.as_str(),
    ];
    w.run(async {
        for tail in tails {
            let resp = cache.respond(&get(tail), tail).await;
            assert_eq!(resp.status, 400, "{tail}");
            assert_eq!(error_code(resp), "E015", "{tail}");
        }
        let post = request("POST", "1_0_19_283D_3FB_1_C00000_0_0_0.png", &[]);
        let resp = cache
            .respond(&post, "1_0_19_283D_3FB_1_C00000_0_0_0.png")
            .await;
        assert_eq!(resp.status, 405);
    });
    assert_eq!(w.fetches(), 0);
    assert!(w.files().is_empty());
}

#[test]
fn a_file_deleted_behind_our_back_is_fetched_again() {
    let w = World::new("deleted");
    let cache = w.cache();
    let tail = format!("{}.png", w.names(1)[0]);
    w.run(async {
        assert_eq!(cache.respond(&get(&tail), &tail).await.status, 200);
        fs::remove_file(w.dir.join(&tail)).unwrap();
        let resp = cache.respond(&get(&tail), &tail).await;
        assert_eq!(resp.status, 200);
        assert!(is_png(&body(resp)));
    });
    assert_eq!(w.fetches(), 2);
    assert_eq!(cache.stats().files, 1);
}

#[test]
fn eviction_keeps_the_folder_under_budget_dropping_the_least_recently_used() {
    let w = World::new("evict");
    let names = w.names(6);
    let tails: Vec<String> = names.iter().map(|n| format!("{n}.png")).collect();
    // Measure one picon, then allow three and a half.
    let size = {
        let cache = w.cache();
        let t = &tails[0];
        w.run(async { cache.respond(&get(t), t).await });
        let size = cache.stats().bytes;
        fs::remove_dir_all(&w.dir).unwrap();
        size
    };
    assert!(size > 0);
    let budget = size * 7 / 2;
    let cache = PiconCache::new(w.config(budget)).unwrap();
    let fetch = |i: usize| {
        let t = &tails[i];
        let status = w.run(async { cache.respond(&get(t), t).await.status });
        assert_eq!(status, 200, "{t}");
    };
    fetch(0);
    fetch(1);
    fetch(2);
    fetch(0); // a hit: 0 is now the most recently used, 1 the least
    fetch(3);
    let want = |idx: &[usize]| {
        let mut v: Vec<String> = idx.iter().map(|&i| tails[i].clone()).collect();
        v.sort();
        v
    };
    assert_eq!(w.files(), want(&[0, 2, 3]));
    assert!(w.folder_bytes() <= budget);
    fetch(4);
    fetch(5);
    assert_eq!(w.files(), want(&[3, 4, 5]));
    let st = cache.stats();
    assert!(st.bytes <= budget && st.bytes == w.folder_bytes());
    assert_eq!(st.files, 3);
    drop(cache);

    // A restart measures what is there, drops temp leftovers, keeps the rest.
    fs::write(w.dir.join(".x.png.1.0.tmp"), b"junk").unwrap();
    fs::write(w.dir.join("notes.txt"), b"not ours").unwrap();
    let cache = PiconCache::new(w.config(budget)).unwrap();
    let st = cache.stats();
    let picon_bytes: u64 = want(&[3, 4, 5])
        .iter()
        .map(|t| fs::metadata(w.dir.join(t)).unwrap().len())
        .sum();
    assert_eq!((st.files, st.bytes), (3, picon_bytes));
    let mut want_files = want(&[3, 4, 5]);
    want_files.push("notes.txt".to_owned());
    want_files.sort();
    assert_eq!(w.files(), want_files);
    drop(cache);

    // A lower budget at start deletes the oldest at once.
    let cache = PiconCache::new(w.config(size * 2)).unwrap();
    assert_eq!(cache.stats().files, 2);
    assert_eq!(w.files().len(), 3);
}

#[test]
fn the_negative_map_is_bounded_and_expires() {
    let mut st = State::default();
    let start = Instant::now();
    for i in 0..NEGATIVE_MAX + 10 {
        st.remember_missing(&format!("n{i}"), start + Duration::from_millis(i as u64));
    }
    assert_eq!(st.missing.len(), NEGATIVE_MAX);
    let now = start + Duration::from_secs(1);
    assert!(!st.is_missing("n0", now), "the oldest went first");
    assert!(st.is_missing(&format!("n{}", NEGATIVE_MAX + 9), now));
    let later = start + NEGATIVE_TTL + Duration::from_secs(60);
    assert!(!st.is_missing(&format!("n{}", NEGATIVE_MAX + 9), later));
}

#[test]
fn bad_bases_are_refused() {
    let w = World::new("base");
    for base in ["https://box/picon", "http://box/picon?x=1", "ftp://box"] {
        let mut cfg = w.config(1 << 20);
        cfg.base = base.to_owned();
        let e = PiconCache::new(cfg).unwrap_err();
        assert!(matches!(e, Error::Base { .. }), "{base}: {e}");
        assert!(e.to_string().contains(base), "{e}");
    }
}

#[test]
fn config_from_settings_sends_receiver_credentials_only_to_the_receiver() {
    let load = |pairs: &[(&str, &str)]| {
        let env = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        crate::config::Settings::load(None, &env).unwrap()
    };
    let creds = [
        ("XG2G_OWI_BASE", "http://box:81"),
        ("XG2G_OWI_USER", "root"),
        ("XG2G_OWI_PASS", "dreambox"),
        ("XG2G_DATA", "/var/lib/xg2g"),
    ];
    let receiver_auth = Some(http_client::basic_auth("root", "dreambox"));

    let c = PiconConfig::from_settings(&load(&creds));
    assert_eq!(c.base, "http://box:81/picon");
    assert_eq!(c.authorization, receiver_auth);
    assert!(c.from_receiver);
    assert_eq!(c.dir, PathBuf::from("/var/lib/xg2g/picons"));
    assert_eq!(c.max_bytes, 16 << 20);

    let mut same = creds.to_vec();
    same.push(("XG2G_PICON_BASE", "http://BOX:81/logos/"));
    let c = PiconConfig::from_settings(&load(&same));
    assert_eq!(c.base, "http://BOX:81/logos");
    assert_eq!(c.authorization, receiver_auth);
    assert!(c.from_receiver);

    let mut other = creds.to_vec();
    other.push(("XG2G_PICON_BASE", "http://logos.lan/picon"));
    let c = PiconConfig::from_settings(&load(&other));
    assert_eq!(c.authorization, None);
    assert!(!c.from_receiver);

    let mut own = creds.to_vec();
    own.push(("XG2G_PICON_BASE", "http://me:p%40ss+1@logos.lan/picon"));
    let c = PiconConfig::from_settings(&load(&own));
    assert_eq!(c.base, "http://logos.lan/picon");
    assert_eq!(
        c.authorization,
        Some(http_client::basic_auth("me", "p@ss+1"))
    );
    assert!(!format!("{c:?}").contains("Basic"), "{c:?}");
}

#[test]
fn the_cache_is_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PiconCache>();
}
