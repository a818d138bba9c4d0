//! The stored candles against the simulated exchange's deterministic
//! series: lost, duplicated and differing candles of each series.
//!
//! The simulated exchange's candles are pure functions of the seed, the
//! series and the open time ([`final_candle`], [`candle_at`] of the exchanges
//! crate, the same code the exchange serves from), so whatever the
//! collector went through, what it stored can be checked candle by candle.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ohlcv_domain::{Candle, ExchangeId, SeriesKey};
use ohlcv_exchanges::simulated::{candle_at, final_candle, STEPS_PER_CANDLE};
use rusqlite::{Connection, OpenFlags};

use crate::HarnessError;

/// How long a read waits for a lock; the collector's writes are short.
const READ_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Problems kept per series for the report (the counts are complete).
const EXAMPLES_KEPT: usize = 3;

/// The check of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesCheck {
    /// The series.
    pub key: SeriesKey,
    /// Rows stored.
    pub rows: u64,
    /// Oldest and newest stored open time, UTC ms (`None` without rows).
    pub span: Option<(i64, i64)>,
    /// Open times between the oldest and newest stored ones with no row.
    pub lost: u64,
    /// Rows beyond the first at the same open time.
    pub duplicated: u64,
    /// Rows that are not what the simulator produced: a closed candle not
    /// equal to the final one, an open candle in any state the simulator
    /// never served, an open candle older than the newest two (it should
    /// have been closed), or an open time off the interval's grid.
    pub differing: u64,
    /// The first few problems, in words.
    pub examples: Vec<String>,
}

impl SeriesCheck {
    fn note(&mut self, problem: String) {
        if self.examples.len() < EXAMPLES_KEPT {
            self.examples.push(problem);
        }
    }
}

/// The check of every expected series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataCheck {
    /// One per expected series, in the order asked.
    pub series: Vec<SeriesCheck>,
}

impl DataCheck {
    /// Candles lost, over every series (a series with no row at all counts
    /// as one lost, as it cannot count more).
    pub fn lost(&self) -> u64 {
        self.series
            .iter()
            .map(|s| s.lost + u64::from(s.rows == 0))
            .sum()
    }

    /// Duplicated rows, over every series.
    pub fn duplicated(&self) -> u64 {
        self.series.iter().map(|s| s.duplicated).sum()
    }

    /// Differing rows, over every series.
    pub fn differing(&self) -> u64 {
        self.series.iter().map(|s| s.differing).sum()
    }

    /// Rows checked.
    pub fn rows(&self) -> u64 {
        self.series.iter().map(|s| s.rows).sum()
    }

    /// Nothing lost, duplicated or differing.
    pub fn is_clean(&self) -> bool {
        self.lost() == 0 && self.duplicated() == 0 && self.differing() == 0
    }

    /// The worse of two checks of the same series (more problems).
    pub fn worst(self, other: DataCheck) -> DataCheck {
        let problems = |c: &DataCheck| c.lost() + c.duplicated() + c.differing();
        if problems(&other) > problems(&self) {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for DataCheck {
    /// One line per series with a problem, with its first examples.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.series {
            if s.rows == 0 {
                writeln!(f, "{}: no row stored", s.key)?;
            } else if s.lost + s.duplicated + s.differing > 0 {
                writeln!(
                    f,
                    "{}: {} rows, {} lost, {} duplicated, {} differing; {}",
                    s.key,
                    s.rows,
                    s.lost,
                    s.duplicated,
                    s.differing,
                    s.examples.join("; ")
                )?;
            }
        }
        Ok(())
    }
}

/// Reads every row of the `ohlcv` view of the database at `path` through a
/// read-only connection (the collector's own contract, whatever the
/// physical layout) and checks the series `expected` against the simulator
/// with `seed`:
///
/// - every open time on the interval's grid between the oldest and the
///   newest stored one has exactly one row (no gap: else *lost*; no second
///   row: else *duplicated*);
/// - every closed row equals the simulator's final candle exactly, and an
///   open row is allowed only at the newest two open times (the newest is
///   forming; the close of the one before may still be queued) and only in
///   a state the simulator served (else *differing*).
///
/// # Errors
/// [`HarnessError::Database`] when the file cannot be opened or read.
pub fn check_database(
    path: &Path,
    seed: u64,
    expected: &[SeriesKey],
) -> Result<DataCheck, HarnessError> {
    let rows = read_rows(path)?;
    let series = expected
        .iter()
        .map(|key| check_series(seed, key, rows.get(key).map_or(&[], Vec::as_slice)))
        .collect();
    Ok(DataCheck { series })
}

/// The rows of the simulated exchange, by series, oldest first.
fn read_rows(path: &Path) -> Result<BTreeMap<SeriesKey, Vec<Candle>>, HarnessError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(HarnessError::database(path))?;
    connection
        .busy_timeout(READ_BUSY_TIMEOUT)
        .map_err(HarnessError::database(path))?;
    let mut statement = connection
        .prepare(
            "SELECT symbol, interval, timestamp, open, high, low, close, volume, closed \
             FROM ohlcv WHERE exchange = ?1 ORDER BY symbol, interval, timestamp",
        )
        .map_err(HarnessError::database(path))?;
    let mut rows: BTreeMap<SeriesKey, Vec<Candle>> = BTreeMap::new();
    let mapped = statement
        .query_map([ExchangeId::Simulated.as_str()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                [
                    row.get::<_, f64>(3)?,
                    row.get::<_, f64>(4)?,
                    row.get::<_, f64>(5)?,
                    row.get::<_, f64>(6)?,
                    row.get::<_, f64>(7)?,
                ],
                row.get::<_, i64>(8)?,
            ))
        })
        .map_err(HarnessError::database(path))?;
    for row in mapped {
        let (symbol, interval, open_time, [open, high, low, close, volume], closed) =
            row.map_err(HarnessError::database(path))?;
        // A row the collector could not have written is not ours to judge
        // here: it cannot belong to an expected series.
        let (Ok(symbol), Ok(interval)) = (ohlcv_domain::Symbol::new(&symbol), interval.parse())
        else {
            continue;
        };
        let key = SeriesKey::new(ExchangeId::Simulated, symbol, interval);
        rows.entry(key.clone()).or_default().push(Candle {
            key,
            open_time,
            open,
            high,
            low,
            close,
            volume,
            closed: closed != 0,
        });
    }
    Ok(rows)
}

/// Checks the rows of one series (oldest first) against the simulator.
fn check_series(seed: u64, key: &SeriesKey, rows: &[Candle]) -> SeriesCheck {
    let mut check = SeriesCheck {
        key: key.clone(),
        rows: rows.len() as u64,
        span: None,
        lost: 0,
        duplicated: 0,
        differing: 0,
        examples: Vec::new(),
    };
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return check;
    };
    check.span = Some((first.open_time, last.open_time));
    let step = key.interval.duration_ms();
    let mut previous: Option<i64> = None;
    for candle in rows {
        let t = candle.open_time;
        if !key.interval.is_aligned(t) {
            check.differing += 1;
            check.note(format!("{t}: off the {} grid", key.interval));
            continue;
        }
        match previous {
            Some(p) if p == t => {
                check.duplicated += 1;
                check.note(format!("{t}: stored twice"));
                continue;
            }
            Some(p) if t > p + step => {
                let missing = (t - p) / step - 1;
                check.lost += missing as u64;
                check.note(format!("{} to {}: {missing} missing", p + step, t - step));
            }
            _ => {}
        }
        previous = Some(t);
        if candle.closed {
            if *candle != final_candle(seed, key, t) {
                check.differing += 1;
                check.note(format!("{t}: closed candle is not the final one"));
            }
        } else if t < last.open_time - step {
            check.differing += 1;
            check.note(format!("{t}: still open, though newer candles exist"));
        } else if !is_simulator_state(seed, candle) {
            check.differing += 1;
            check.note(format!("{t}: open candle in no state the exchange served"));
        }
    }
    check
}

/// Whether an open `candle` is the simulator's candle at one of its steps.
fn is_simulator_state(seed: u64, candle: &Candle) -> bool {
    (0..STEPS_PER_CANDLE)
        .any(|step| candle_at(seed, &candle.key, candle.open_time, step) == *candle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohlcv_domain::{Interval, Symbol};

    const SEED: u64 = 7;
    const T0: i64 = 1_735_689_600_000;
    const MIN: i64 = 60_000;

    fn key() -> SeriesKey {
        SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new("BTCUSDT").unwrap(),
            Interval::M1,
        )
    }

    fn closed(i: i64) -> Candle {
        final_candle(SEED, &key(), T0 + i * MIN)
    }

    #[test]
    fn the_simulators_own_series_is_clean() {
        let mut rows: Vec<Candle> = (0..10).map(closed).collect();
        rows.push(candle_at(SEED, &key(), T0 + 10 * MIN, 30));
        rows.push(candle_at(SEED, &key(), T0 + 11 * MIN, 2));
        let check = check_series(SEED, &key(), &rows);
        assert_eq!((check.lost, check.duplicated, check.differing), (0, 0, 0));
        assert_eq!(check.rows, 12);
        assert_eq!(check.span, Some((T0, T0 + 11 * MIN)));
    }

    #[test]
    fn gaps_duplicates_and_changed_candles_are_counted() {
        let mut changed = closed(5);
        changed.close += 0.1;
        let stale_open = candle_at(SEED, &key(), T0 + 6 * MIN, 10);
        let rows = vec![
            closed(0),
            closed(1),
            closed(1),
            // 2, 3, 4 lost
            changed,
            stale_open,
            closed(7),
            closed(8),
        ];
        let check = check_series(SEED, &key(), &rows);
        assert_eq!(check.lost, 3);
        assert_eq!(check.duplicated, 1);
        assert_eq!(check.differing, 2, "{:?}", check.examples);
        assert_eq!(check.examples.len(), EXAMPLES_KEPT);
    }

    #[test]
    fn an_open_candle_the_exchange_never_served_differs() {
        let mut odd = candle_at(SEED, &key(), T0 + MIN, 20);
        odd.volume += 1.0;
        let check = check_series(SEED, &key(), &[closed(0), odd]);
        assert_eq!(check.differing, 1);
    }

    #[test]
    fn an_empty_series_counts_as_lost() {
        let check = DataCheck {
            series: vec![check_series(SEED, &key(), &[])],
        };
        assert_eq!(check.lost(), 1);
        assert!(!check.is_clean());
    }

    #[test]
    fn reads_the_ohlcv_view_of_a_collector_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ohlcv.db");
        let connection = Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE ohlcv (exchange TEXT, symbol TEXT, interval TEXT, timestamp INTEGER,
                 open REAL, high REAL, low REAL, close REAL, volume REAL, closed INTEGER);",
            )
            .unwrap();
        for i in 0..3 {
            let c = closed(i);
            connection
                .execute(
                    "INSERT INTO ohlcv VALUES ('simulated', 'BTCUSDT', '1m', ?1, ?2, ?3, ?4, ?5, ?6, 1)",
                    rusqlite::params![c.open_time, c.open, c.high, c.low, c.close, c.volume],
                )
                .unwrap();
        }
        drop(connection);
        let other = SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new("ETHUSDT").unwrap(),
            Interval::M1,
        );
        let check = check_database(&path, SEED, &[key(), other]).unwrap();
        assert_eq!(check.series[0].rows, 3);
        assert!(check.series[0].examples.is_empty());
        assert_eq!(check.series[1].rows, 0);
        assert_eq!(check.lost(), 1);
    }
}
