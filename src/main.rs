//! The `xg2g` command: the daemon, `check-config`, `demo` and the simulated receiver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_signal::{Signal, Signals};
use smol::Executor;
use smol::Task;
use smol::stream::StreamExt;

use xg2g::config::{FileStamp, Live, LiveSettings, Settings};
use xg2g::hdhr::Hdhr;
use xg2g::hls::HlsService;
use xg2g::http::routes::{App, Router, Routes};
use xg2g::http::{self, ServerLimits, ServerStats};
use xg2g::limit::{RateLimitConfig, RateLimiter};
use xg2g::lineup::{Lineup, LineupStore};
use xg2g::metrics::{Metrics, ResultLabel};
use xg2g::picon::{PiconCache, PiconConfig};
use xg2g::refresh::Refresher;
use xg2g::reload::{ReloadSource, reload};
use xg2g::sim::{Fault, SimConfig, Simulator};
use xg2g::stream::StreamService;
use xg2g::transcode::Transcoder;

/// The cargo features this binary was built with, for `--version`: a build for a box
/// with a V4L2 or VAAPI encoder can be told apart from one that probes with ffmpeg only.
const FEATURES: &str = match (cfg!(feature = "vaapi"), cfg!(feature = "v4l2")) {
    (true, true) => "vaapi, v4l2",
    (true, false) => "vaapi",
    (false, true) => "v4l2",
    (false, false) => "none",
};

const USAGE: &str = "\
usage: xg2g [--config FILE] [serve]     run the daemon (settings: XG2G_* environment)
       xg2g [--config FILE] check-config  validate and print the effective settings
       xg2g [--config FILE] demo          run a simulated receiver and the daemon on it
       xg2g sim [--listen ADDR] [--stream-listen ADDR] [--relay-listen ADDR]
                [--relay-user U --relay-pass P] [--stream-bitrate BITS_PER_S]
                [--tuners N] [--channels N] [--days N] [--events-per-day N]
                [--fault MODE] [--latin1]
                                          run only the simulated receiver
                                          (--stream-bitrate 0: unpaced; --tuners 1..8)
       xg2g --version | --help";

/// Executor threads: few, because nothing on them blocks.
const CORE_THREADS: usize = 2;

enum Command {
    Serve,
    CheckConfig,
    Demo,
    Sim(SimArgs),
    Version,
    Help,
}

struct SimArgs {
    listen: SocketAddr,
    stream_listen: SocketAddr,
    relay_listen: SocketAddr,
    // Boxed so that `Command` stays small (clippy's large_enum_variant).
    config: Box<SimConfig>,
}

struct Cli {
    config: Option<PathBuf>,
    command: Command,
}

fn parse_cli() -> Result<Cli, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_env();
    let mut config = None;
    let mut command: Option<Command> = None;
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("config") | Short('c') => {
                config = Some(PathBuf::from(parser.value().map_err(|e| e.to_string())?));
            }
            Long("version") | Short('V') => command = Some(Command::Version),
            Long("help") | Short('h') => command = Some(Command::Help),
            Value(v) if command.is_none() => {
                let word = v.to_string_lossy().into_owned();
                command = Some(match word.as_str() {
                    "serve" => Command::Serve,
                    "check-config" => Command::CheckConfig,
                    "demo" => Command::Demo,
                    "sim" => Command::Sim(parse_sim_args(&mut parser)?),
                    other => return Err(format!("unknown command {other:?}")),
                });
            }
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Cli {
        config,
        command: command.unwrap_or(Command::Serve),
    })
}

fn parse_sim_args(parser: &mut lexopt::Parser) -> Result<SimArgs, String> {
    use lexopt::prelude::*;
    let mut args = SimArgs {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        stream_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        relay_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        config: Box::default(),
    };
    let (mut relay_user, mut relay_pass): (Option<String>, Option<String>) = (None, None);
    fn value<T: std::str::FromStr>(p: &mut lexopt::Parser, name: &str) -> Result<T, String> {
        let raw = p.value().map_err(|e| e.to_string())?;
        let text = raw.to_string_lossy();
        text.parse()
            .map_err(|_| format!("--{name}: invalid value {text:?}"))
    }
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("listen") => args.listen = value(parser, "listen")?,
            Long("stream-listen") => args.stream_listen = value(parser, "stream-listen")?,
            Long("relay-listen") => args.relay_listen = value(parser, "relay-listen")?,
            Long("relay-user") => relay_user = Some(value(parser, "relay-user")?),
            Long("relay-pass") => relay_pass = Some(value(parser, "relay-pass")?),
            Long("stream-bitrate") => {
                args.config.stream_bitrate = Some(value(parser, "stream-bitrate")?);
            }
            Long("tuners") => {
                let n: u32 = value(parser, "tuners")?;
                if !(1..=8).contains(&n) {
                    return Err(format!("--tuners: {n} is not from 1 to 8"));
                }
                args.config.tuners = n;
            }
            Long("channels") => args.config.channels = value(parser, "channels")?,
            Long("days") => args.config.days = value(parser, "days")?,
            Long("events-per-day") => args.config.events_per_day = value(parser, "events-per-day")?,
            Long("fault") => {
                let text: String = value(parser, "fault")?;
                args.config.fault = text.parse::<Fault>().map_err(|e| format!("--fault: {e}"))?;
            }
            Long("latin1") => args.config.latin1 = true,
            other => return Err(other.unexpected().to_string()),
        }
    }
    args.config.relay_auth = match (relay_user, relay_pass) {
        (Some(user), Some(pass)) => Some((user, pass)),
        (None, None) => None,
        _ => return Err("--relay-user and --relay-pass go together".to_string()),
    };
    Ok(args)
}

fn main() -> ExitCode {
    // The blocking pool (file reads/writes, EPG parsing) must stay small on a set-top box.
    if std::env::var_os("BLOCKING_MAX_THREADS").is_none() {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("BLOCKING_MAX_THREADS", "8") };
    }
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("xg2g: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Version => {
            println!("xg2g {} (features: {FEATURES})", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::CheckConfig => match Settings::from_process(cli.config.as_deref()) {
            Ok(settings) => {
                print!("{}", settings.describe());
                println!("# configuration ok");
                ExitCode::SUCCESS
            }
            Err(e) => config_error(e),
        },
        Command::Serve => match Settings::from_process(cli.config.as_deref()) {
            Ok(settings) => {
                init_logging(&settings.log_level);
                let file = cli.config;
                finish(run_core(move |ex| daemon(Arc::new(settings), file, ex)))
            }
            Err(e) => config_error(e),
        },
        Command::Demo => {
            let config = cli.config;
            init_logging("info");
            finish(run_core(move |ex| demo(config, ex)))
        }
        Command::Sim(args) => {
            init_logging("info");
            finish(run_core(move |ex| sim(args, ex)))
        }
    }
}

fn config_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("xg2g: configuration error: {e}");
    ExitCode::from(2)
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("event=fatal error=\"{e:#}\"");
            eprintln!("xg2g: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default_level: &str) {
    let env = env_logger::Env::default().default_filter_or(default_level);
    env_logger::Builder::from_env(env)
        .format_timestamp(None)
        .init();
}

/// Runs `main_task` on a small executor: the calling thread plus `CORE_THREADS - 1`.
fn run_core<F, Fut>(main_task: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<Executor<'static>>) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let ex = Arc::new(Executor::new());
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let mut threads = Vec::new();
    for i in 1..CORE_THREADS {
        let (ex, stop_rx) = (ex.clone(), stop_rx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("xg2g-core-{i}"))
                .spawn(move || smol::block_on(ex.run(stop_rx.recv())))
                .context("starting an executor thread")?,
        );
    }
    let result = smol::block_on(ex.run(main_task(ex.clone())));
    drop(stop_tx);
    for t in threads {
        let _ = t.join();
    }
    result
}

/// Tasks started in order; stopped in reverse order on shutdown.
struct Lifecycle {
    started: Vec<(&'static str, Task<()>)>,
}

impl Lifecycle {
    fn start(
        &mut self,
        ex: &Executor<'static>,
        name: &'static str,
        fut: impl Future<Output = ()> + Send + 'static,
    ) {
        log::debug!("event=start part={name}");
        self.started.push((name, ex.spawn(fut)));
    }

    async fn stop(mut self) {
        while let Some((name, task)) = self.started.pop() {
            task.cancel().await;
            log::debug!("event=stopped part={name}");
        }
    }
}

/// Starts the daemon on `settings` (read from `config_file` and the environment) and
/// runs until SIGTERM/SIGINT.
async fn daemon(
    settings: Arc<Settings>,
    config_file: Option<PathBuf>,
    ex: Arc<Executor<'static>>,
) -> anyhow::Result<()> {
    let mut life = Lifecycle {
        started: Vec::new(),
    };
    let (shutdown_tx, shutdown_rx) = smol::channel::bounded::<()>(1);
    let signals = Signals::new([Signal::Term, Signal::Int, Signal::Hup])
        .context("installing signal handlers")?;
    let app = start_daemon(&settings, config_file, &ex, &mut life, shutdown_rx).await?;
    xg2g::notify::ready(); // systemd Type=notify: listeners bound, services started
    wait_for_stop(signals, &app).await;
    log::info!("event=shutdown");
    xg2g::notify::stopping();
    app.hls.shutdown(); // segmenters stop, their folders go
    app.streams.shutdown(); // upstreams close, stream clients get their end
    if let Some(hdhr) = &app.hdhr {
        hdhr.say_goodbye(); // SSDP listeners forget the tuner now, not in 30 minutes
    }
    drop(shutdown_tx); // servers stop accepting, open connections are cut
    life.stop().await;
    // Every ffmpeg child was killed with its session; reap them before exiting.
    let left = app.streams.wait_children(Duration::from_secs(3)).await;
    if left > 0 {
        log::warn!("event=shutdown_children_left count={left}");
    }
    Ok(())
}

async fn start_daemon(
    settings: &Arc<Settings>,
    config_file: Option<PathBuf>,
    ex: &Arc<Executor<'static>>,
    life: &mut Lifecycle,
    shutdown: http::ShutdownSignal,
) -> anyhow::Result<Arc<App>> {
    let dir = settings.data_dir.clone();
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data folder {}", dir.display()))?;
    xg2g::guide::remove_stale_temp_files(&dir);

    // Encoder probing can take a while (a test encode per GPU): it runs while the rest
    // starts up.
    let encoders = ex.spawn(xg2g::transcode::find_encoders(settings));
    let server_stats = ServerStats::default();
    let metrics = Arc::new(Metrics::new(&server_stats));
    // The last good lineup lets streams work before the first refresh.
    let lineup_dir = dir.clone();
    let saved = smol::unblock(move || Lineup::load(&lineup_dir)).await;
    let lineup = LineupStore::new(saved.unwrap_or_default());
    let live = LiveSettings::new(settings.clone());
    let refresher = Refresher::new(live.clone(), lineup.clone(), metrics.clone(), ex.clone())
        .context("setting up the receiver client")?;
    let picon_config = PiconConfig::from_settings(settings);
    let picon_metrics = metrics.clone();
    // Picons from the receiver share its pacing and breaker with the OpenWebIF calls.
    let picon_gate = picon_config
        .from_receiver
        .then(|| refresher.receiver_gate().clone());
    // Without a cache the playlist points logos straight at XG2G_PICON_BASE.
    let picons = match smol::unblock(move || PiconCache::new(picon_config)).await {
        Ok(cache) => {
            let cache = cache.with_observer(Arc::new(move |result| {
                picon_metrics
                    .picon_requests
                    .get_or_create(&ResultLabel {
                        result: result.to_string(),
                    })
                    .inc();
            }));
            Some(Arc::new(match picon_gate {
                Some(gate) => cache.with_gate(gate),
                None => cache,
            }))
        }
        Err(e) => {
            log::warn!("event=picon_cache_off error=\"{e}\"");
            None
        }
    };
    let limiter = Live::new(Arc::new(RateLimiter::new(RateLimitConfig::from_settings(
        settings,
    ))));
    let transcoder = Transcoder::new(live.clone(), metrics.clone(), encoders.await);
    let streams = StreamService::new(
        settings,
        lineup,
        metrics.clone(),
        ex.clone(),
        transcoder.clone(),
    )
    .map_err(|e| anyhow::anyhow!("setting up the stream proxy: {e}"))?;
    // Bound before the app is built: the HDHomeRun answers carry the real port.
    let listener =
        http::bind(settings.listen).with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.get_ref().local_addr()?;
    let streams = Arc::new(streams);
    let hls = {
        let (dir, streams, live, metrics, ex) = (
            dir.clone(),
            streams.clone(),
            live.clone(),
            metrics.clone(),
            ex.clone(),
        );
        smol::unblock(move || HlsService::new(&dir, streams, live, metrics, ex)).await
    };
    let hdhr = if settings.hdhr_enabled {
        let (live, metrics, streams) = (live.clone(), metrics.clone(), streams.clone());
        Some(smol::unblock(move || Hdhr::new(live, addr.port(), metrics, streams)).await)
    } else {
        None
    };
    let app = Arc::new(App {
        settings: live,
        config_file: config_file.clone(),
        limiter,
        refresher: refresher.clone(),
        metrics,
        streams,
        hls,
        picons,
        hdhr: hdhr.clone(),
        started: Instant::now(),
    });
    let limits = ServerLimits {
        max_connections: settings.http_max_connections,
        header_timeout: settings.http_header_timeout,
        idle_timeout: settings.http_idle_timeout,
        write_timeout: settings.http_write_timeout,
        max_header_bytes: settings.http_max_header_bytes,
        max_body_bytes: 64 * 1024,
    };

    log::info!("event=listening addr={addr} data={}", dir.display());
    let router = Arc::new(Router::new(
        app.clone(),
        Routes::Main {
            metrics: settings.metrics_listen.is_none(),
        },
    ));
    life.start(
        ex,
        "http",
        http::serve(
            listener,
            limits.clone(),
            router,
            ex.clone(),
            server_stats,
            shutdown.clone(),
        ),
    );
    if let Some(maddr) = settings.metrics_listen {
        let listener =
            http::bind(maddr).with_context(|| format!("listening for metrics on {maddr}"))?;
        log::info!(
            "event=listening_metrics addr={}",
            listener.get_ref().local_addr()?
        );
        let router = Arc::new(Router::new(app.clone(), Routes::MetricsOnly));
        life.start(
            ex,
            "metrics-http",
            http::serve(
                listener,
                limits,
                router,
                ex.clone(),
                ServerStats::default(),
                shutdown,
            ),
        );
    }
    if let Some(hdhr) = &hdhr {
        if let Some(service) = hdhr.ssdp_service() {
            life.start(ex, "ssdp", service);
        }
        if let Some(service) = hdhr.discovery_service() {
            life.start(ex, "hdhr-discovery", service);
        }
    }
    life.start(ex, "refresh", refresher.run());
    life.start(
        ex,
        "encoder-load",
        transcoder.run_sampler(PathBuf::from("/"), settings.gpu_load_interval),
    );
    life.start(ex, "rate-limit-janitor", rate_limit_janitor(app.clone()));
    if let Some(file) = config_file {
        life.start(ex, "config-watch", watch_config(app.clone(), file));
    }
    // systemd's WatchdogSec: ping at half the interval, as sd_watchdog_enabled advises.
    if let Some(every) = xg2g::notify::watchdog_interval() {
        life.start(ex, "watchdog", xg2g::notify::watchdog_loop(every / 2));
    }
    Ok(app)
}

/// Every few seconds, forgets rate-limited clients whose buckets are full again, so the
/// table holds only clients active lately.
async fn rate_limit_janitor(app: Arc<App>) {
    loop {
        async_io::Timer::after(JANITOR_EVERY).await;
        let limiter = app.limiter.get();
        let evicted = limiter.evict_idle_at(Instant::now());
        let tracked = limiter.tracked();
        app.metrics
            .rate_limit_clients
            .set(i64::try_from(tracked).unwrap_or(i64::MAX));
        if evicted > 0 {
            log::debug!("event=rate_limit_evicted clients={evicted} tracked={tracked}");
        }
    }
}

/// How often the rate-limit janitor runs.
const JANITOR_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Polls the settings file's stamp (`XG2G_CONFIG_WATCH_INTERVAL`; no inotify needed)
/// and reloads when it changes. A file being written may be caught half-done: that
/// reload is refused and the next change (the finished file) is picked up.
async fn watch_config(app: Arc<App>, file: PathBuf) {
    let stamp_of = |file: &PathBuf| {
        let file = file.clone();
        smol::unblock(move || FileStamp::of(&file))
    };
    let mut last = stamp_of(&file).await;
    loop {
        let every = app.settings.get().config_watch_interval;
        if every.is_zero() {
            // Off; look again later in case a reload turns it on.
            async_io::Timer::after(std::time::Duration::from_secs(30)).await;
            continue;
        }
        async_io::Timer::after(every).await;
        let now = stamp_of(&file).await;
        if now != last && now.is_some() {
            last = now;
            log::info!("event=config_file_changed file={}", file.display());
            let _ = reload(&app, ReloadSource::FileWatch).await;
        }
    }
}

/// Waits for SIGTERM/SIGINT; SIGHUP reloads the settings.
async fn wait_for_stop(mut signals: Signals, app: &Arc<App>) {
    while let Some(signal) = signals.next().await {
        match signal {
            Ok(Signal::Hup) => {
                log::info!("event=sighup action=reload");
                let _ = reload(app, ReloadSource::Signal).await;
            }
            Ok(_) => return,
            Err(e) => log::warn!("event=signal_error error=\"{e}\""),
        }
    }
}

/// `xg2g demo`: a simulated receiver on loopback and the daemon wired to it.
async fn demo(config: Option<PathBuf>, ex: Arc<Executor<'static>>) -> anyhow::Result<()> {
    let (sim_stop_tx, sim_stop_rx) = smol::channel::bounded::<()>(1);
    let sim = new_simulator(SimConfig::default()).await;
    let (api, stream, relay) = start_sim(
        &sim,
        &ex,
        sim_stop_rx,
        [localhost(0), localhost(0), localhost(0)],
    )?;
    let data = std::env::temp_dir().join("xg2g-demo");
    let mut overrides: HashMap<&str, String> = HashMap::new();
    overrides.insert("XG2G_OWI_BASE", format!("http://{api}"));
    overrides.insert("XG2G_STREAM_PORT", stream.port().to_string());
    overrides.insert("XG2G_RELAY_PORT", relay.port().to_string());
    let env = |key: &str| {
        overrides
            .get(key)
            .cloned()
            .or_else(|| std::env::var(key).ok())
            .or_else(|| match key {
                "XG2G_LISTEN" => Some("127.0.0.1:8080".into()),
                "XG2G_DATA" => Some(data.display().to_string()),
                _ => None,
            })
    };
    let settings = Settings::load(config.as_deref(), &env).context("demo settings")?;
    let port = settings.listen.port();
    println!(
        "xg2g demo: simulated receiver at http://{api}\n  playlist: http://127.0.0.1:{port}/playlist.m3u\n  guide:    http://127.0.0.1:{port}/xmltv.xml\n  status:   http://127.0.0.1:{port}/api/v1/status\nPress Ctrl-C to stop."
    );
    let result = daemon(Arc::new(settings), config, ex).await;
    drop(sim_stop_tx);
    result
}

/// `xg2g sim`: only the simulated receiver; prints its addresses on stdout.
async fn sim(args: SimArgs, ex: Arc<Executor<'static>>) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let sim = new_simulator(*args.config).await;
    let addrs = [args.listen, args.stream_listen, args.relay_listen];
    let (api, stream, relay) = start_sim(&sim, &ex, stop_rx, addrs)?;
    println!("sim api=http://{api} stream={stream} relay={relay}");
    let mut signals =
        Signals::new([Signal::Term, Signal::Int]).context("installing signal handlers")?;
    let _ = signals.next().await;
    drop(stop_tx);
    Ok(())
}

/// A simulator streaming a clip made by ffmpeg when it is installed (cached in the temp
/// folder), else the small clip built into the binary.
async fn new_simulator(config: SimConfig) -> Simulator {
    let cache = std::env::temp_dir().join("xg2g-sim");
    let clip = smol::unblock(move || xg2g::sim::load_clip(&cache)).await;
    Simulator::with_clip(config, clip)
}

/// Binds the simulator's API, streaming (8001-like) and stream-relay (17999-like)
/// listeners on `[api, stream, relay]` and serves them until `stop` fires; returns the
/// bound addresses in the same order.
fn start_sim(
    sim: &Simulator,
    ex: &Arc<Executor<'static>>,
    stop: http::ShutdownSignal,
    [api_addr, stream_addr, relay_addr]: [SocketAddr; 3],
) -> anyhow::Result<(SocketAddr, SocketAddr, SocketAddr)> {
    let api = http::bind(api_addr).with_context(|| format!("sim listening on {api_addr}"))?;
    let stream =
        http::bind(stream_addr).with_context(|| format!("sim listening on {stream_addr}"))?;
    let relay = http::bind(relay_addr).with_context(|| format!("sim listening on {relay_addr}"))?;
    let addrs = (
        api.get_ref().local_addr()?,
        stream.get_ref().local_addr()?,
        relay.get_ref().local_addr()?,
    );
    let limits = ServerLimits::default();
    ex.spawn(http::serve(
        api,
        limits.clone(),
        Arc::new(sim.api_handler()),
        ex.clone(),
        ServerStats::default(),
        stop.clone(),
    ))
    .detach();
    ex.spawn(http::serve(
        stream,
        limits,
        Arc::new(sim.stream_handler()),
        ex.clone(),
        sim.stream_server_stats(),
        stop.clone(),
    ))
    .detach();
    let relay_sim = sim.clone();
    let relay_ex = ex.clone();
    ex.spawn(async move { relay_sim.serve_relay(relay, relay_ex, stop).await })
        .detach();
    Ok(addrs)
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
