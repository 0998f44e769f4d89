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

/// How many descriptors process `pid` has open (0 once it has gone).
pub fn open_descriptors(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |entries| entries.count() as u64)
}

/// TCP connections accepted so far in this network namespace: the kernel's
/// `PassiveOpens` counter in `/proc/net/snmp`.
pub fn passive_opens() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    // Two `Tcp:` lines: the names, then the values, in the same order.
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "PassiveOpens")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0)
}

/// Samples how many descriptors a process has open, every few
/// milliseconds on its own thread, keeping the most, until stopped.
pub struct DescriptorSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl DescriptorSampler {
    pub fn start(pid: u32) -> DescriptorSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                let mut most = 0;
                while !stop.load(Ordering::Relaxed) {
                    most = most.max(open_descriptors(pid));
                    std::thread::sleep(Duration::from_millis(20));
                }
                most
            }
        });
        DescriptorSampler { stop, thread }
    }

    pub fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}
