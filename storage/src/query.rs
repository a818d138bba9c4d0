//! [`CandleQuery`]: the one definition of "which candles of a series", shared
//! by the database, the in-memory queue and their merge so that all three
//! answer the same question the same way.

use std::collections::BTreeMap;

use ohlcv_domain::Candle;

/// A window over one series: open times within `[from, to]` (inclusive,
/// UTC ms), at most `limit` candles, always returned in ascending open time.
///
/// Which candles survive the limit depends on `from`, mirroring how the
/// seed's `/ohlcv?from&to&limit` is used by charts:
/// - `from == None`: the **latest** `limit` candles at or before `to`
///   (a chart opening on "now" wants the newest data);
/// - `from == Some(_)`: the **first** `limit` candles at or after `from`
///   (a chart paging forward through history).
///
/// `to == None` means no upper bound. An empty window (`from > to`, or
/// `limit == 0`) yields no candles rather than an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CandleQuery {
    /// Earliest open time wanted, inclusive; `None` selects the latest candles.
    pub from: Option<i64>,
    /// Latest open time wanted, inclusive; `None` means no upper bound.
    pub to: Option<i64>,
    /// Most candles returned.
    pub limit: usize,
}

impl CandleQuery {
    /// The inclusive open-time bounds, or `None` when the window is empty.
    pub(crate) fn bounds(&self) -> Option<(i64, i64)> {
        let lo = self.from.unwrap_or(i64::MIN);
        let hi = self.to.unwrap_or(i64::MAX);
        (self.limit > 0 && lo <= hi).then_some((lo, hi))
    }

    /// The limit as SQLite's signed integer, saturating (a `usize` limit above
    /// `i64::MAX` means "all" anyway).
    pub(crate) fn sql_limit(&self) -> i64 {
        i64::try_from(self.limit).unwrap_or(i64::MAX)
    }
}

/// Applies `query` to one series held in open-time order.
///
/// Checks the bounds before calling `BTreeMap::range`, which panics when
/// start > end.
pub(crate) fn window(candles: &BTreeMap<i64, Candle>, query: &CandleQuery) -> Vec<Candle> {
    let Some((lo, hi)) = query.bounds() else {
        return Vec::new();
    };
    let in_range = candles.range(lo..=hi);
    if query.from.is_some() {
        in_range.take(query.limit).map(|(_, c)| c.clone()).collect()
    } else {
        let mut latest: Vec<Candle> = in_range
            .rev()
            .take(query.limit)
            .map(|(_, c)| c.clone())
            .collect();
        latest.reverse();
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_windows_are_recognised() {
        let q = |from, to, limit| CandleQuery { from, to, limit };
        assert_eq!(q(None, None, 0).bounds(), None);
        assert_eq!(q(Some(5), Some(4), 10).bounds(), None);
        assert_eq!(q(Some(5), Some(5), 1).bounds(), Some((5, 5)));
        assert_eq!(q(None, None, 1).bounds(), Some((i64::MIN, i64::MAX)));
        assert_eq!(q(None, None, usize::MAX).sql_limit(), i64::MAX);
    }
}
