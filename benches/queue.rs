//! Benchmark (a program, not a timed test) of the encoder slot queue
//! (`transcode::queue::Pool`). Run with `cargo bench --bench queue`; figures go into the
//! README.
//!
//! Part 1, admission with a free slot: acquire + release in a loop, against the
//! simplest possible slot gate (`smol::lock::Semaphore`) measured in the same run;
//! admissions per second and the p99 latency of one admission, medians of 5 rounds.
//!
//! Part 2, contention (the target from the task): 4 slots, 10 and then 20 requests
//! arriving at once, each holding its slot for a simulated session of `SESSION`; the
//! waits' P95 and P99 over 5 rounds (targets: P95 < 1 s at 10, P99 < 3 s at 20), and a
//! check that every request was served and the pool is empty afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smol::lock::Semaphore;
use xg2g::transcode::queue::{DeviceSlots, Eligible, Pool, Priority};

const ROUNDS: usize = 5;
const ADMISSIONS: usize = 200_000;
const SLOTS: u32 = 4;
/// How long a simulated transcoding session holds its slot.
const SESSION: Duration = Duration::from_millis(300);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The `q`-quantile (0..=1) of `v`, nearest rank.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn pool(max_wait: Duration) -> Arc<Pool> {
    Pool::new(
        vec![DeviceSlots {
            id: "cpu".into(),
            capacity: SLOTS,
        }],
        100,
        max_wait,
    )
}

/// Admissions per second and p99 admission latency (µs) of `admit` run `ADMISSIONS` times.
fn measure(mut admit: impl FnMut()) -> (f64, f64) {
    let mut lat = Vec::with_capacity(ADMISSIONS);
    let started = Instant::now();
    for _ in 0..ADMISSIONS {
        let t = Instant::now();
        admit();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let rate = ADMISSIONS as f64 / started.elapsed().as_secs_f64();
    (rate, quantile(&mut lat, 0.99))
}

fn part1() {
    let p = pool(Duration::from_secs(30));
    let sem = Semaphore::new(SLOTS as usize);
    let (mut pool_rate, mut pool_p99, mut sem_rate, mut sem_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let (r, l) = measure(|| {
            let lease = smol::block_on(p.acquire(Eligible::ANY, Priority::Normal)).expect("slot");
            drop(lease);
        });
        pool_rate.push(r);
        pool_p99.push(l);
        let (r, l) = measure(|| {
            let guard = smol::block_on(sem.acquire());
            drop(guard);
        });
        sem_rate.push(r);
        sem_p99.push(l);
    }
    let (pr, pl, sr, sl) = (
        median(pool_rate),
        median(pool_p99),
        median(sem_rate),
        median(sem_p99),
    );
    println!("part 1: admission with a free slot ({ADMISSIONS} per round, median of {ROUNDS})");
    println!("  queue      {pr:>12.0} admissions/s   p99 {pl:.2} µs");
    println!("  semaphore  {sr:>12.0} admissions/s   p99 {sl:.2} µs");
    println!(
        "  ratio queue/semaphore: rate {:.2}, p99 {:.2}",
        pr / sr,
        pl / sl
    );
}

/// Waits (seconds) of `parallel` requests arriving at once on a 4-slot pool.
fn contention_round(parallel: usize) -> Vec<f64> {
    let p = pool(Duration::from_secs(30));
    let ex = Arc::new(smol::Executor::new());
    let tasks: Vec<_> = (0..parallel)
        .map(|_| {
            let p = p.clone();
            ex.spawn(async move {
                let asked = Instant::now();
                let lease = p
                    .acquire(Eligible::ANY, Priority::Normal)
                    .await
                    .expect("served within max wait");
                let waited = asked.elapsed();
                async_io::Timer::after(SESSION).await;
                drop(lease);
                waited.as_secs_f64()
            })
        })
        .collect();
    let waits = smol::block_on(ex.run(async {
        let mut waits = Vec::new();
        for t in tasks {
            waits.push(t.await);
        }
        waits
    }));
    let snap = p.snapshot();
    assert_eq!(snap.devices[0].reserved, 0, "a slot leaked");
    assert_eq!(snap.waiting, [0, 0, 0], "a waiter was left behind");
    waits
}

fn part2() {
    println!(
        "part 2: {SLOTS} slots, requests arriving at once, sessions of {} ms, {ROUNDS} rounds",
        SESSION.as_millis()
    );
    for (parallel, q, target) in [(10, 0.95, 1.0), (20, 0.99, 3.0)] {
        let mut waits = Vec::new();
        for _ in 0..ROUNDS {
            waits.extend(contention_round(parallel));
        }
        let p95 = quantile(&mut waits, 0.95);
        let p99 = quantile(&mut waits, 0.99);
        let checked = if q == 0.95 { p95 } else { p99 };
        println!(
            "  {parallel:>2} parallel: P95 wait {p95:.3} s, P99 wait {p99:.3} s  (target P{} < {target} s: {})",
            (q * 100.0) as u32,
            if checked < target { "met" } else { "MISSED" }
        );
    }
}

fn main() {
    part1();
    part2();
}
