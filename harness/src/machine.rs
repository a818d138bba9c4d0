//! The host a benchmark ran on, noted with every figure: the figures mean
//! little without the cores, the CPU and how busy the machine was.

/// The host, as a benchmark report names it.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Cores available to the process.
    pub cores: usize,
    /// The CPU's model name (`/proc/cpuinfo`), or `unknown CPU`.
    pub model: String,
    /// The load averages when the benchmark started (see [`load_average`]).
    pub load_before: String,
}

impl Machine {
    /// Reads the host now.
    pub fn observe() -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|line| line.starts_with("model name"))
                    .and_then(|line| line.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine {
            cores,
            model,
            load_before: load_average(),
        }
    }
}

/// The 1/5/15-minute load averages (`/proc/loadavg`), or `?`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "?".into())
}
