//! Readings from `/proc`: a server's memory, threads and CPU time, and the
//! kernel's own memory.
//!
//! A thread costs memory in two places. Its stack and allocations show in
//! the process's RSS; its kernel stack and task structures do not, so the
//! kernel side is read from `/proc/meminfo` (KernelStack + Slab), system-wide.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// One look at a process and at the kernel, sizes in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reading {
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub threads: u64,
    pub kernel_kib: u64,
}

/// The field `name:` of a `/proc` file in `Name:   123 kB` form.
fn field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// KernelStack + Slab from `/proc/meminfo`, in KiB.
pub fn kernel_kib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    field(&meminfo, "KernelStack").unwrap_or(0) + field(&meminfo, "Slab").unwrap_or(0)
}

/// Reads process `pid` (all zero once it has gone) and the kernel.
pub fn read(pid: u32) -> Reading {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    Reading {
        rss_kib: field(&status, "VmRSS").unwrap_or(0),
        peak_rss_kib: field(&status, "VmHWM").unwrap_or(0),
        threads: field(&status, "Threads").unwrap_or(0),
        kernel_kib: kernel_kib(),
    }
}

/// CPU seconds used so far by process `pid` ("self" works): (user, system).
pub fn cpu_seconds(pid: &str) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces, so count the fields after
    // its closing parenthesis: the first of those is field 3, which puts
    // utime (field 14) at index 11 and stime (field 15) at index 12.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let seconds = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0) as f64
            / ticks_per_second
    };
    (seconds(11), seconds(12))
}

/// Samples a process every few milliseconds on its own thread, keeping the
/// largest value of each reading, until stopped.
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Reading>,
}

impl PeakSampler {
    pub fn start(pid: u32) -> PeakSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut peak = Reading::default();
                while !stop.load(Ordering::Relaxed) {
                    let now = read(pid);
                    peak.rss_kib = peak.rss_kib.max(now.rss_kib);
                    peak.peak_rss_kib = peak.peak_rss_kib.max(now.peak_rss_kib);
                    peak.threads = peak.threads.max(now.threads);
                    peak.kernel_kib = peak.kernel_kib.max(now.kernel_kib);
                    std::thread::sleep(Duration::from_millis(5));
                }
                peak
            }
        });
        PeakSampler { stop, thread }
    }

    pub fn stop(self) -> Reading {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}

/// Raises this process's descriptor limit to the hard limit (children
/// inherit it) and returns the new soft limit.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024; // the usual soft limit, if it cannot even be read
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}
