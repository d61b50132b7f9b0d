//! A property-driven fuzzer of the C API, called from Rust.
//!
//! From a seed (u64) it derives a random call sequence over the C API's
//! queue, listener and record core: queues (`ql_queue_new`, `ql_queue_new_with_options` with random
//! capacities, policies, timeouts, thresholds, drop reports and `on_drop`),
//! listeners on the built-in queue or on a program queue (`ql_queue_vtable`
//! backed by a Rust queue whose `dequeue` randomly answers RECORD, SENTINEL,
//! EMPTY, ERROR or unknown codes and whose `enqueue_sentinel` answers OK,
//! FULL or ERROR; slots randomly NULL), random hooks (prepare keeping,
//! replacing, writing NULL or failing; a failing handle hook; random
//! levels; done / release / on_error counting), handlers that fail or call
//! back into the library from the listener thread, the built-in handlers,
//! every control call in any order with short timeouts, puts, logs (a
//! third of them through `ql_log_src` with random fields, valid or not,
//! and a source location; `ql_context_set` / `_remove` / `_clear` with
//! valid and invalid fields), gets, NULL arguments, and the frees. A
//! background producer sometimes logs onto one queue meanwhile. Not
//! reached here (the C tests under `tests/c/` and the sinks' own tests
//! cover them): the C-side helpers (`ql_log_fields`, `ql_logf*`,
//! `ql_vlogf*`, `ql_field_*`, all thin over `ql_log_src`), the file,
//! `FILE *`, syslog and journald handlers, `ql_reopen_files`,
//! `ql_listener_handler_stats` and `ql_listener_drain_at_exit`.
//!
//! The sequence respects the documented contract (it tests the library, not
//! undefined behaviour): nothing is called on a freed object,
//! `ql_listener_free` runs with no other call on the listener in progress,
//! vtable and hook contexts outlive their listener, a blocking put is only
//! made where the policy bounds its wait, `ql_queue_get*` only drains a
//! queue no listener is running on. Listeners may share a queue: a new
//! listener joins a queue that already has a live one in a third of the
//! tries (sentinels and flush barriers are addressed to their listener;
//! `tests/shared_queue.rs` tests the semantics of sharing in detail).
//!
//! Checked: no crash and no hang (a watchdog per sequence); every status is
//! a known one and one the documentation allows for that call; NULL gives
//! `QL_ERR_NULL`; the program's records are each done / released / given to
//! `on_drop` / taken back exactly once, never touched after that, and none is
//! lost unless the program gave up the means to get it back (a listener
//! without `done`, `DROP_OLDEST` without `on_drop`, a queue freed under a
//! listener); built-in records reach `done` at most once; each handler is
//! destroyed exactly once, in `ql_listener_free`; a stopped listener's
//! counters agree with what the callbacks saw; and once everything is freed
//! the Rust heap is back where it was (a counting global allocator: no
//! memory leaks inside the library).
//!
//! The corpus (`tests/fuzz_corpus/seeds.txt`) is replayed first, then fresh
//! seeds run for `QL_FUZZ_SECONDS` (default 15). `QL_FUZZ_SEED=<n>` runs one
//! seed and prints its calls; `QL_FUZZ_KEEP_GOING=1` reports every failing
//! seed instead of stopping at the first. A failure prints its seed: add it
//! to the corpus with a comment. `QL_FUZZ_COVERAGE=1` prints what each seed
//! reached (the counters of the final summary), to choose corpus seeds.
//!
//! The parts: `support` (the counting allocator, the generator, the panic
//! guard of callbacks, coverage counters), `world` (the program's records
//! and what became of each), `objects` (the queues and listeners the
//! program holds, and the C callbacks it gives them), `ops` (the fuzzer and
//! its operations), `checks` (statuses, a stopped listener's counters, the
//! final accounting); this file runs sequences under a watchdog
//! (`tests/common`). The generator's draws are in the same order as before
//! the split, so a seed names the same calls.

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod objects;
mod ops;
mod support;
mod world;

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{lock, run_bounded, Run};
use ops::*;
use queue_listener::ffi::listener::ql_start;
use queue_listener::ffi::QL_OK;
use support::*;
use world::*;

// ---------------------------------------------------------------------------
// Running sequences.

type Trace = Arc<Mutex<VecDeque<String>>>;

/// Runs one sequence; returns the violations found.
fn run_sequence(seed: u64, trace: Trace, verbose: bool) -> Vec<String> {
    let devnull = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    let mut f = Fuzzer {
        world: Arc::new(World::new(seed)),
        rng: Rng(seed),
        queues: Vec::new(),
        listeners: Vec::new(),
        fakes: Vec::new(),
        trace,
        verbose,
        devnull,
        background: None,
        lost_fakes: HashSet::new(),
    };
    if f.rng.pct(25) {
        f.start_background();
    }
    // Most sequences begin with a running listener, so that records flow.
    if f.rng.pct(80) {
        f.op_new_queue();
        f.op_new_listener_on_queue();
    }
    if f.rng.pct(30) {
        f.op_new_listener_on_vtable();
    }
    for li in 0..f.listeners.len() {
        if f.rng.pct(80) && f.listeners[li].is_some() {
            let l = f.listeners[li].as_ref().unwrap().ptr;
            // SAFETY: a live listener.
            let got = unsafe { ql_start(l) };
            f.expect(&format!("ql_start(listener {li})"), got, &[QL_OK]);
        }
    }
    let steps = 20 + f.rng.below(120);
    for _ in 0..steps {
        f.step();
    }
    f.finish();
    let violations = std::mem::take(&mut *lock(&f.world.violations));
    drop(f);
    violations
}

/// How long one sequence may take before it counts as a hang.
const HANG_BOUND: Duration = Duration::from_secs(20);

enum Outcome {
    Passed,
    Failed(String),
    Hung(String),
}

/// Runs one sequence on its own thread under a watchdog, and checks the
/// heap is back where it was once everything is freed and joined.
fn run_watched(seed: u64, verbose: bool) -> Outcome {
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    let trace: Trace = Arc::new(Mutex::new(VecDeque::new()));
    let t = trace.clone();
    let last_calls = |trace: &Trace| lock(trace).iter().cloned().collect::<Vec<_>>().join("\n  ");
    // The run's thread is joined and its channel dropped by now.
    match run_bounded("fuzz-sequence", HANG_BOUND, move || {
        run_sequence(seed, t, verbose)
    }) {
        Run::Done(violations) if violations.is_empty() => {
            drop(trace);
            drop(violations);
            let after = LIVE_BYTES.load(Ordering::SeqCst);
            cover(C_HEAP_CHECKS);
            if after != before && !verbose {
                Outcome::Failed(format!(
                    "the Rust heap holds {} bytes more after everything was freed (a leak)",
                    after - before
                ))
            } else {
                Outcome::Passed
            }
        }
        Run::Done(violations) => Outcome::Failed(format!(
            "{}\nlast calls:\n  {}",
            violations.join("\n"),
            last_calls(&trace)
        )),
        Run::Hung => Outcome::Hung(format!(
            "HANG: the sequence did not finish within {HANG_BOUND:?}\nlast calls:\n  {}",
            last_calls(&trace)
        )),
        Run::Panicked(_) => Outcome::Failed("the sequence thread panicked (a fuzzer bug)".into()),
    }
}

/// The corpus: one seed per line (decimal or 0x hex), `#` starts a comment.
fn corpus() -> Vec<u64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz_corpus/seeds.txt");
    let text = std::fs::read_to_string(path).expect("tests/fuzz_corpus/seeds.txt");
    text.lines()
        .filter_map(|line| {
            let seed = line.split('#').next()?.trim();
            if seed.is_empty() {
                return None;
            }
            let parsed = match seed.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => seed.parse(),
            };
            Some(parsed.unwrap_or_else(|_| panic!("bad corpus seed {seed:?}")))
        })
        .collect()
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| {
        let v = v.trim();
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    })
}

#[test]
fn fuzz_c_api() {
    // One sequence first, unchecked for the heap: it warms up what the
    // process keeps once (the watchdog's channel context, and so on).
    let _ = run_watched(0x0123_4567_89AB_CDEF, true);
    if let Some(seed) = env_u64("QL_FUZZ_SEED") {
        eprintln!("fuzz_api: seed {seed}, its calls:");
        match run_watched(seed, true) {
            Outcome::Passed => return,
            Outcome::Failed(e) | Outcome::Hung(e) => panic!("seed {seed} failed:\n{e}"),
        }
    }
    let keep_going = std::env::var_os("QL_FUZZ_KEEP_GOING").is_some();
    let coverage = std::env::var_os("QL_FUZZ_COVERAGE").is_some();
    let seconds = env_u64("QL_FUZZ_SECONDS").unwrap_or(15);
    let start = Instant::now();
    let mut failures = Vec::new();
    let mut check = |seed: u64, from: &str| {
        if keep_going {
            eprintln!("fuzz_api: {from} seed {seed}");
        }
        let before: Vec<u64> = COVER.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let outcome = run_watched(seed, false);
        if coverage {
            let line: Vec<String> = COVER
                .iter()
                .zip(before)
                .map(|(c, b)| (c.load(Ordering::Relaxed) - b).to_string())
                .collect();
            eprintln!("fuzz_api: coverage {seed} {}", line.join(" "));
        }
        match outcome {
            Outcome::Passed => true,
            Outcome::Failed(e) | Outcome::Hung(e) if keep_going => {
                eprintln!(
                    "fuzz_api: {from} seed {seed} FAILED: {}",
                    e.lines().next().unwrap_or("")
                );
                failures.push(seed);
                !e.starts_with("HANG")
            }
            Outcome::Failed(e) | Outcome::Hung(e) => panic!(
                "fuzz_api: {from} seed {seed} failed (rerun: QL_FUZZ_SEED={seed}; \
             add it to tests/fuzz_corpus/seeds.txt):\n{e}"
            ),
        }
    };
    let corpus = corpus();
    for &seed in &corpus {
        check(seed, "corpus");
    }
    let mut fresh = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (u64::from(std::process::id()) << 40));
    let mut ran = 0u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let seed = fresh.next();
        ran += 1;
        if !check(seed, "fresh") {
            break; // a hung thread is left behind: stop here
        }
    }
    let reached: Vec<String> = COVER_NAMES
        .iter()
        .zip(&COVER)
        .map(|(name, n)| format!("{name} {}", n.load(Ordering::Relaxed)))
        .collect();
    // Straight to stderr: libtest's capture would hide it in a passing run.
    let summary = format!(
        "fuzz_api: {} corpus seeds and {ran} fresh sequences in {:.1} s\nfuzz_api: reached: {}\n",
        corpus.len(),
        start.elapsed().as_secs_f64(),
        reached.join(", ")
    );
    let _ = std::io::Write::write_all(&mut std::io::stderr(), summary.as_bytes());
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}
