//! Small text helpers shared by the command line and the console (below both, so neither
//! depends on the other).

/// An age for tables: `42s`, `12m`, `3h05m`, `2d`.
pub(crate) fn age(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds}s"),
        60..=3599 => format!("{}m", seconds / 60),
        3600..=86_399 => format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60),
        _ => format!("{}d", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_switch_unit_at_each_boundary() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60), "1m");
        assert_eq!(age(3599), "59m");
        assert_eq!(age(3600), "1h00m");
        assert_eq!(age(3600 + 5 * 60 + 59), "1h05m");
        assert_eq!(age(86_399), "23h59m");
        assert_eq!(age(86_400), "1d");
        assert_eq!(age(10 * 86_400 + 3600), "10d");
    }
}
