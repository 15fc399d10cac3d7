//! Capacity: the CPU and memory a node offers and a role needs. Placement only puts a role
//! where what it needs fits into what the node has left; a node that declares nothing is not
//! limited, and a role that declares nothing needs nothing.

use serde::{Deserialize, Serialize};

/// CPU in thousandths of a core, memory in MiB.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
    #[serde(default)]
    pub cpu_milli: u64,
    #[serde(default)]
    pub memory_mb: u64,
}

impl Capacity {
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    pub fn plus(self, other: Capacity) -> Capacity {
        Capacity { cpu_milli: self.cpu_milli + other.cpu_milli, memory_mb: self.memory_mb + other.memory_mb }
    }

    pub fn minus(self, other: Capacity) -> Capacity {
        Capacity {
            cpu_milli: self.cpu_milli.saturating_sub(other.cpu_milli),
            memory_mb: self.memory_mb.saturating_sub(other.memory_mb),
        }
    }
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} CPU, {}", cpu_text(self.cpu_milli), memory_text(self.memory_mb))
    }
}

pub fn cpu_text(milli: u64) -> String {
    if milli.is_multiple_of(1000) { format!("{}", milli / 1000) } else { format!("{}", milli as f64 / 1000.0) }
}

pub fn memory_text(mb: u64) -> String {
    if mb >= 1024 && mb.is_multiple_of(1024) { format!("{} GiB", mb / 1024) } else { format!("{mb} MiB") }
}

/// `2`, `0.5` or `500m` (thousandths, as Kubernetes writes them) → thousandths of a core.
pub fn parse_cpu(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid CPU amount '{text}': use cores (2, 0.5) or thousandths (500m)");
    let text = text.trim();
    if let Some(milli) = text.strip_suffix('m') {
        return milli.parse::<u64>().map_err(|_| bad());
    }
    let cores: f64 = text.parse().map_err(|_| bad())?;
    if !(0.0..=1_000_000.0).contains(&cores) {
        return Err(bad());
    }
    Ok((cores * 1000.0).round() as u64)
}

/// `512M`, `2G`, `1.5G`, `1T` (binary units; a bare number is MiB) → MiB.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid memory amount '{text}': use e.g. 512M, 2G or 1.5G");
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let lower = lower.trim_end_matches("ib").trim_end_matches('b');
    let (number, factor) = match lower.chars().last() {
        Some('m') => (&lower[..lower.len() - 1], 1.0),
        Some('g') => (&lower[..lower.len() - 1], 1024.0),
        Some('t') => (&lower[..lower.len() - 1], 1024.0 * 1024.0),
        _ => (lower, 1.0),
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 || value * factor > 1e12 {
        return Err(bad());
    }
    Ok((value * factor).round() as u64)
}

/// Why `needs` does not fit into `total` with `used` taken, if it does not.
pub fn shortfall(total: Capacity, used: Capacity, needs: Capacity) -> Option<String> {
    let free_cpu = total.cpu_milli.saturating_sub(used.cpu_milli);
    if needs.cpu_milli > free_cpu {
        return Some(format!(
            "needs {} CPU, only {} of {} free",
            cpu_text(needs.cpu_milli),
            cpu_text(free_cpu),
            cpu_text(total.cpu_milli)
        ));
    }
    let free_memory = total.memory_mb.saturating_sub(used.memory_mb);
    if needs.memory_mb > free_memory {
        return Some(format!(
            "needs {} memory, only {} of {} free",
            memory_text(needs.memory_mb),
            memory_text(free_memory),
            memory_text(total.memory_mb)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_spellings() {
        assert_eq!(parse_cpu("2"), Ok(2000));
        assert_eq!(parse_cpu("0.5"), Ok(500));
        assert_eq!(parse_cpu("250m"), Ok(250));
        assert!(parse_cpu("lots").unwrap_err().contains("'lots'"));
        assert!(parse_cpu("-1").is_err());
        assert_eq!(parse_memory("512M"), Ok(512));
        assert_eq!(parse_memory("2G"), Ok(2048));
        assert_eq!(parse_memory("1.5GiB"), Ok(1536));
        assert_eq!(parse_memory("300"), Ok(300));
        assert!(parse_memory("2X").unwrap_err().contains("'2X'"));
    }

    #[test]
    fn shortfall_names_the_scarce_resource() {
        let total = Capacity { cpu_milli: 4000, memory_mb: 8192 };
        let used = Capacity { cpu_milli: 3000, memory_mb: 1024 };
        assert_eq!(shortfall(total, used, Capacity { cpu_milli: 1000, memory_mb: 7168 }), None);
        assert_eq!(
            shortfall(total, used, Capacity { cpu_milli: 1500, memory_mb: 0 }).as_deref(),
            Some("needs 1.5 CPU, only 1 of 4 free")
        );
        assert_eq!(
            shortfall(total, used, Capacity { cpu_milli: 0, memory_mb: 8192 }).as_deref(),
            Some("needs 8 GiB memory, only 7 GiB of 8 GiB free")
        );
    }
}
