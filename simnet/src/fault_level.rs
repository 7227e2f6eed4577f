//! The fault level both modes share (`--faults none|mild|harsh`): what each level means is
//! up to the mode (`sim::FaultProfile` for the simulator, `live::faults` for live runs).
//! It lives below both so that the simulator's configuration, its report and the live harness
//! depend on it, and not on one another.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// How hostile the simulated network is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultLevel {
    /// Latency only: no loss, no partitions, no crashes, no hostile member.
    None,
    /// Occasional loss, duplication, short partitions, a few crashes, a quiet hostile member.
    Mild,
    /// Heavy loss and duplication, long symmetric and asymmetric partitions, frequent crashes
    /// (including mid-request, before the flush), relay outages, clock skew, a busy hostile member.
    Harsh,
}

impl fmt::Display for FaultLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultLevel::None => "none",
            FaultLevel::Mild => "mild",
            FaultLevel::Harsh => "harsh",
        })
    }
}

impl FromStr for FaultLevel {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(FaultLevel::None),
            "mild" => Ok(FaultLevel::Mild),
            "harsh" => Ok(FaultLevel::Harsh),
            other => Err(format!(
                "`{other}` is not a fault level; use none, mild or harsh"
            )),
        }
    }
}
