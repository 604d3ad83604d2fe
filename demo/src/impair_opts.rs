//! The demo's link impairment flags (`--loss`, `--reorder`, `--duplicate`, `--corrupt`,
//! `--delay`, `--rate`, `--seed`), turned into a `tunstack::runtime::Impairment` that
//! the runtime applies to both directions of the TUN link.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use clap::Args;
use tunstack::runtime::Impairment;

/// Longest `--delay`, in milliseconds (the link model's limit).
const MAX_DELAY_MS: u64 = tunstack::link::MAX_DELAY.as_millis() as u64;

/// Slowest and fastest `--rate`, in Mbit/s.
const MIN_RATE_MBIT: f64 = 0.001;
const MAX_RATE_MBIT: f64 = 1_000_000.0;

#[derive(Args, Debug, Clone, Default, PartialEq)]
#[command(next_help_heading = "Link impairment (applied by the stack to each direction of the TUN link)")]
pub struct ImpairOpts {
    /// Drop this percentage of packets (0-100).
    #[arg(long, allow_negative_numbers = true, value_name = "PCT", value_parser = parse_percent)]
    pub loss: Option<f64>,

    /// Hold back this percentage of packets so that later ones overtake them (0-100).
    #[arg(long, allow_negative_numbers = true, value_name = "PCT", value_parser = parse_percent)]
    pub reorder: Option<f64>,

    /// Send this percentage of packets twice (0-100).
    #[arg(long, allow_negative_numbers = true, value_name = "PCT", value_parser = parse_percent)]
    pub duplicate: Option<f64>,

    /// Flip one bit in the TCP/UDP/ICMP part of this percentage of packets (0-100).
    #[arg(long, allow_negative_numbers = true, value_name = "PCT", value_parser = parse_percent)]
    pub corrupt: Option<f64>,

    /// Add this many milliseconds of latency to every packet.
    #[arg(long, allow_negative_numbers = true, value_name = "MS", value_parser = parse_delay)]
    pub delay: Option<u64>,

    /// Limit the link to this many Mbit/s (e.g. 10 or 0.5).
    #[arg(long, allow_negative_numbers = true, value_name = "MBIT", value_parser = parse_rate)]
    pub rate: Option<f64>,

    /// Seed of the impairment's random decisions [default: random, printed at start].
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub seed: Option<u64>,
}

impl ImpairOpts {
    /// Whether any flag that impairs the link was given (`--seed` alone does not).
    pub fn any(&self) -> bool {
        self.loss.is_some()
            || self.reorder.is_some()
            || self.duplicate.is_some()
            || self.corrupt.is_some()
            || self.delay.is_some()
            || self.rate.is_some()
    }

    /// The runtime's impairment, or `None` when no impairing flag was given. Without
    /// `--seed`, `random_seed` supplies one.
    pub fn impairment(&self, random_seed: impl FnOnce() -> u64) -> Option<Impairment> {
        if !self.any() {
            return None;
        }
        let p = |pct: Option<f64>| pct.unwrap_or(0.0) / 100.0;
        Some(Impairment::default().with(|c| {
            c.loss = p(self.loss);
            c.reorder = p(self.reorder);
            c.duplicate = p(self.duplicate);
            c.corrupt = p(self.corrupt);
            c.delay = Duration::from_millis(self.delay.unwrap_or(0));
            c.rate_bps = self.rate.map(|mbit| ((mbit * 1e6).round() as u64).max(1));
            c.seed = self.seed.unwrap_or_else(random_seed);
        }))
    }
}

/// A seed that differs from run to run (std's per-process random hash keys).
pub fn random_seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number; give a percentage from 0 to 100"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{s} is not a percentage from 0 to 100"));
    }
    Ok(v)
}

fn parse_delay(s: &str) -> Result<u64, String> {
    let v: u64 = s.trim().parse().map_err(|_| format!("`{s}` is not a whole number of milliseconds"))?;
    if v > MAX_DELAY_MS {
        return Err(format!("{s} ms is longer than the maximum of {MAX_DELAY_MS} ms"));
    }
    Ok(v)
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("`{s}` is not a number of Mbit/s"))?;
    if !(MIN_RATE_MBIT..=MAX_RATE_MBIT).contains(&v) {
        return Err(format!("{s} Mbit/s is outside {MIN_RATE_MBIT}..={MAX_RATE_MBIT}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_delay_and_rate_limits() {
        assert_eq!(parse_percent("0"), Ok(0.0));
        assert_eq!(parse_percent("100"), Ok(100.0));
        assert_eq!(parse_percent("2.5"), Ok(2.5));
        assert!(parse_percent("100.1").unwrap_err().contains("0 to 100"));
        assert!(parse_percent("-1").unwrap_err().contains("0 to 100"));
        assert!(parse_percent("NaN").is_err());
        assert!(parse_percent("five").unwrap_err().contains("not a number"));
        assert_eq!(parse_delay("60000"), Ok(60_000));
        assert!(parse_delay("60001").unwrap_err().contains("maximum"));
        assert!(parse_delay("1.5").is_err());
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("inf").is_err());
    }

    #[test]
    fn impairment_from_flags() {
        assert_eq!(ImpairOpts::default().impairment(|| 1), None);
        assert_eq!(ImpairOpts { seed: Some(3), ..ImpairOpts::default() }.impairment(|| 1), None);
        let o = ImpairOpts { loss: Some(5.0), delay: Some(3), rate: Some(0.5), ..ImpairOpts::default() };
        let imp = o.impairment(|| 77).unwrap();
        assert_eq!(
            imp,
            Impairment::default().with(|c| {
                c.loss = 0.05;
                c.delay = Duration::from_millis(3);
                c.rate_bps = Some(500_000);
                c.seed = 77;
            })
        );
        imp.validate().unwrap();
        let o = ImpairOpts { reorder: Some(100.0), seed: Some(9), ..ImpairOpts::default() };
        let imp = o.impairment(|| unreachable!("--seed was given")).unwrap();
        assert_eq!((imp.reorder, imp.seed), (1.0, 9));
        imp.validate().unwrap();
    }
}
