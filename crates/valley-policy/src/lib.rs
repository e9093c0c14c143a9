//! Valley's policy engine. Pure: no I/O, no clock (time is an argument), so every decision is
//! reproducible and property-testable.
//!
//! - [`topology`]: the network — hubs, their jurisdictions, roles, failure domains, links —
//!   parsed from one TOML file every hub loads, with a hash that peers compare.
//! - [`placement`]: a bucket's placement policy and where its copies go.
//! - [`grant`]: recorded legal bases for cross-border flows.
//! - [`decide`]: the single function every transfer passes through.
//! - [`floor`]: what a bucket's data may never exceed after a copy brought another's in.
//! - [`rules`]: rule packs, the law as data: which bases a grant may rest on.

pub mod decide;
pub mod floor;
pub mod grant;
pub mod placement;
pub mod rules;
pub mod topology;

pub use decide::{Decision, Rule, Transfer, TransferKind, decide};
pub use floor::Floor;
pub use grant::{Basis, Grant};
pub use placement::{AckFallback, PlacementPolicy, Tiering, place, place_avoiding};
pub use rules::{Judgement, RuleBook, RulePack};
pub use topology::{Hub, Link, Role, TlsPin, Topology, TopologyError};

/// A calendar date, days since 1970-01-01 (UTC). Grants expire at the end of a date.
pub type Day = i64;

/// Days since the epoch of `y-m-d` (proleptic Gregorian), or `None` if it is not a date.
#[must_use]
pub fn day_of(date: &str) -> Option<Day> {
    let mut parts = date.splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// The `y-m-d` of a day number.
#[must_use]
pub fn date_of(day: Day) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(day_of("1970-01-01"), Some(0));
        assert_eq!(day_of("2000-03-01"), Some(11_017));
        for day in [-1000, 0, 59, 60, 11_016, 20_000, 21_000, 30_000] {
            assert_eq!(day_of(&date_of(day)), Some(day));
        }
        assert_eq!(day_of("2027-02-29"), None);
        assert_eq!(day_of("2028-02-29").map(date_of).as_deref(), Some("2028-02-29"));
        assert_eq!(day_of("2027-13-01"), None);
        assert_eq!(day_of("soon"), None);
    }
}
