//! Keeping the allocator's footprint flat over long runs (glibc only; elsewhere these do
//! nothing).
//!
//! Requests are built in buffers of about 1 MB, thousands of them an hour, among smaller
//! allocations. With glibc's defaults, peak RSS crept up with the length of the input although
//! live memory did not: 10M rows through `run` peaked at 52–76 MB against 31–38 MB for 1M.
//! Two measures hold most of that back (`DCRSHIP_BENCH_ROWS=10000000 cargo bench --bench e2e`:
//! `run` 45 MB at 10M rows against 30–34 MB at 1M, so it still crept; since sealed batches keep
//! no raw body and the spool caches 2 MiB, 36 MB against 30–33):
//! one malloc arena (glibc gives each allocating thread its own, up to 8 per core, and
//! the blocking pool's threads come and go), and returning free pages to the kernel once a
//! second. Their CPU cost is within run-to-run noise: 3M rows through `run`, four interleaved
//! runs each way, 4.94–6.15 CPU s with the trim and 5.29–5.94 without.
//!
//! One arena rather than two (issue 19): 3M rows through `send`, three interleaved runs each
//! way (`DCRSHIP_BENCH_WRAP="env MALLOC_ARENA_MAX=N"`), peak RSS 31.4–31.7 MB with one against
//! 35.9–37.6 with two, CPU 2.95–3.18 s against 3.01–3.15; 10M rows through `send` 32.7 MB
//! against 41.5. The hot path allocates little per row, so one arena's lock costs nothing
//! measurable.

/// Caps glibc's malloc arenas at one, unless `MALLOC_ARENA_MAX` says otherwise. Call it first
/// in `main`, before any thread starts.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable; no other thread exists yet to race with it.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// Returns free heap pages to the kernel once a second, for as long as the runtime runs.
pub async fn trim_periodically() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // SAFETY: malloc_trim takes the allocator's own locks and only releases free pages.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}
