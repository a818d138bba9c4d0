//! [`CandleQueue`]: the candles the storage thread holds between batch writes,
//! and [`merge_overlay`], which lets reads see them.
//!
//! Exchanges send many updates of the same open candle per interval; only
//! the latest matters. Keeping one entry per (series, open time) makes the
//! queue's size bounded by the number of distinct candles, not by the update
//! rate, and makes every batch write as small as it can be. Pure data
//! structure: no SQLite, no I/O, so it is cheap to test exhaustively.

use std::collections::{btree_map, BTreeMap, HashMap};

use ohlcv_domain::{Candle, SeriesKey};

use crate::query::{window, CandleQuery};

/// The hasher of the series index: foldhash rather than std's SipHash,
/// which cost some 8 % of ingest CPU on the string of every key. Series
/// keys come from the config and from exchanges we subscribed to, so a
/// flooding attacker cannot pick keys that collide.
type FastState = foldhash::fast::RandomState;

/// Latest-wins queue of candles awaiting a batch write, per series in
/// open-time order.
///
/// The per-series `BTreeMap` keeps the candles sorted, so
/// [`CandleQueue::range`] answers a [`CandleQuery`] without sorting and the
/// newest open time is found in O(log n).
///
/// Each series is resolved once to a small integer (its slot in `series`)
/// through a fast-hashed index; a batch of updates of one series resolves
/// the key once per run of that series. A series keeps its slot, empty,
/// after its candles are written, so the slots are bounded by the number
/// of distinct series ever queued (those the config collects) until
/// [`CandleQueue::clear`].
#[derive(Debug, Default, Clone)]
pub struct CandleQueue {
    /// Slot of each series in `series`.
    index: HashMap<SeriesKey, usize, FastState>,
    /// Queued candles by series slot, then by open time.
    series: Vec<Slot>,
    /// Total number of candles across all series, kept so `len` is O(1).
    len: usize,
}

/// One series of the queue.
#[derive(Debug, Clone)]
struct Slot {
    key: SeriesKey,
    candles: BTreeMap<i64, Candle>,
}

impl CandleQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `candle`, replacing any queued update of the same series and
    /// open time: the latest update of a candle is the only one worth writing.
    pub fn push(&mut self, candle: Candle) {
        let slot = self.slot_of(&candle.key);
        self.push_into(slot, candle);
    }

    /// Queues every candle of `batch` in order, as [`CandleQueue::push`]
    /// would one by one (a later update of a candle wins over an earlier
    /// one of the same batch), resolving the series once per run of
    /// consecutive candles of one series.
    pub fn push_batch(&mut self, batch: impl IntoIterator<Item = Candle>) {
        let mut last: Option<usize> = None;
        for candle in batch {
            let slot = self.slot_in_run(&mut last, &candle.key);
            self.push_into(slot, candle);
        }
    }

    /// The slot of `key` when walking a batch: `last`'s (the slot of the
    /// previous candle) while the series stays the same, so a run of one
    /// series is resolved once. Keys of one series share their symbol's
    /// `Arc`, so the comparison is mostly a pointer check.
    fn slot_in_run(&mut self, last: &mut Option<usize>, key: &SeriesKey) -> usize {
        let slot = match *last {
            Some(slot) if self.series[slot].key == *key => slot,
            _ => self.slot_of(key),
        };
        *last = Some(slot);
        slot
    }

    /// The slot of `key`, created when the series is new.
    fn slot_of(&mut self, key: &SeriesKey) -> usize {
        if let Some(&slot) = self.index.get(key) {
            return slot;
        }
        let slot = self.series.len();
        self.series.push(Slot {
            key: key.clone(),
            candles: BTreeMap::new(),
        });
        self.index.insert(key.clone(), slot);
        slot
    }

    fn push_into(&mut self, slot: usize, candle: Candle) {
        let candles = &mut self.series[slot].candles;
        // Most updates are of the open candle, the newest of its series.
        if let Some(mut newest) = candles.last_entry() {
            if *newest.key() == candle.open_time {
                newest.insert(candle);
                return;
            }
        }
        if candles.insert(candle.open_time, candle).is_none() {
            self.len += 1;
        }
    }

    /// The queued candles of `key`, if any slot holds the series.
    fn candles_of(&self, key: &SeriesKey) -> Option<&BTreeMap<i64, Candle>> {
        self.index.get(key).map(|&slot| &self.series[slot].candles)
    }

    /// Number of distinct candles queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing awaits writing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes and returns every queued candle, for one batch write.
    ///
    /// Candles of a series come out in ascending open time; series come out
    /// in no particular order. If the write fails, hand the batch back with
    /// [`CandleQueue::restore`].
    pub fn take_all(&mut self) -> Vec<Candle> {
        let mut out = Vec::with_capacity(self.len);
        for slot in &mut self.series {
            out.extend(std::mem::take(&mut slot.candles).into_values());
        }
        self.len = 0;
        out
    }

    /// Copies every queued candle, for one batch write, leaving the queue
    /// as it is: until the write commits, the candles stay here, where
    /// reads see them and a shutdown can still rescue them even if the
    /// writing thread never comes back. After the commit, hand the batch to
    /// [`CandleQueue::remove_written`].
    ///
    /// Candles of a series come out in ascending open time.
    pub fn snapshot(&self) -> Vec<Candle> {
        let mut out = Vec::with_capacity(self.len);
        for slot in &self.series {
            out.extend(slot.candles.values().cloned());
        }
        out
    }

    /// Removes the candles of a committed `batch`, except those updated
    /// since the snapshot was taken: the newer update still awaits its own
    /// write.
    pub fn remove_written(&mut self, batch: &[Candle]) {
        let mut last: Option<usize> = None;
        for candle in batch {
            let slot = match last {
                Some(slot) if self.series[slot].key == candle.key => slot,
                _ => match self.index.get(&candle.key) {
                    Some(&slot) => slot,
                    None => continue,
                },
            };
            last = Some(slot);
            let candles = &mut self.series[slot].candles;
            if candles.get(&candle.open_time) == Some(candle) {
                candles.remove(&candle.open_time);
                self.len -= 1;
            }
        }
    }

    /// Removes and returns every closed candle: final values that can wait
    /// in the rescue file while the database is failing. Open candles stay
    /// (at most a few per series), as they are still being updated.
    pub fn take_closed(&mut self) -> Vec<Candle> {
        let mut out = Vec::new();
        for slot in &mut self.series {
            let candles = std::mem::take(&mut slot.candles);
            let (closed, open): (BTreeMap<i64, Candle>, _) =
                candles.into_iter().partition(|(_, c)| c.closed);
            slot.candles = open;
            out.extend(closed.into_values());
        }
        self.len -= out.len();
        out
    }

    /// Puts back a batch whose write failed, so nothing is lost.
    ///
    /// A candle is restored only if no update of the same series and open
    /// time was pushed since it was taken: that update is newer and must win.
    pub fn restore(&mut self, batch: Vec<Candle>) {
        let mut last: Option<usize> = None;
        for candle in batch {
            let slot = self.slot_in_run(&mut last, &candle.key);
            if let btree_map::Entry::Vacant(e) = self.series[slot].candles.entry(candle.open_time) {
                e.insert(candle);
                self.len += 1;
            }
        }
    }

    /// The queued candles of `key` selected by `query`, ascending, with the
    /// same semantics as [`crate::Database::get_candles`].
    pub fn range(&self, key: &SeriesKey, query: &CandleQuery) -> Vec<Candle> {
        self.candles_of(key)
            .map(|candles| window(candles, query))
            .unwrap_or_default()
    }

    /// Open time of the newest queued candle of `key`: newer than anything
    /// stored, so gap filling must start after it.
    pub fn last_open_time(&self, key: &SeriesKey) -> Option<i64> {
        self.candles_of(key)
            .and_then(|candles| candles.last_key_value())
            .map(|(open_time, _)| *open_time)
    }

    /// The open times of `key`'s queued candles, ascending (what
    /// [`crate::Database::holes_among`] counts as present).
    pub fn open_times(&self, key: &SeriesKey) -> Vec<i64> {
        self.candles_of(key)
            .map(|candles| candles.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The series with at least one queued candle.
    pub fn keys(&self) -> impl Iterator<Item = &SeriesKey> + '_ {
        self.series
            .iter()
            .filter(|slot| !slot.candles.is_empty())
            .map(|slot| &slot.key)
    }

    /// Drops everything queued (the database is being deleted, so pending
    /// writes would only resurrect old data).
    pub fn clear(&mut self) {
        self.index.clear();
        self.series.clear();
        self.len = 0;
    }
}

/// Merges candles read from the database with queued ones of the **same
/// series**, so a read sees updates not yet written.
///
/// The union is taken by open time with the queued candle winning (it is
/// newer), then `query` is applied to it: bounds, and the latest `limit`
/// when `from` is `None` or the first `limit` otherwise. Result ascending.
///
/// Correct when both inputs were selected with the same `query`: any open
/// time among the union's first (or latest) `limit` is also among the first
/// (or latest) `limit` of whichever input holds it, so nothing that belongs
/// in the answer is missing from the inputs.
pub fn merge_overlay(stored: Vec<Candle>, queued: Vec<Candle>, query: &CandleQuery) -> Vec<Candle> {
    let mut by_time: BTreeMap<i64, Candle> = BTreeMap::new();
    for candle in stored.into_iter().chain(queued) {
        by_time.insert(candle.open_time, candle);
    }
    window(&by_time, query)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ohlcv_domain::{ExchangeId, Interval, Symbol};

    const M: i64 = 60_000;

    fn key(symbol: &str) -> SeriesKey {
        SeriesKey::new(
            ExchangeId::Simulated,
            Symbol::new(symbol).expect("valid test symbol"),
            Interval::M1,
        )
    }

    fn candle(symbol: &str, minute: i64, close: f64) -> Candle {
        Candle {
            key: key(symbol),
            open_time: minute * M,
            open: 1.0,
            high: 100.0,
            low: 0.5,
            close,
            volume: 1.0,
            closed: false,
        }
    }

    fn times(candles: &[Candle]) -> Vec<i64> {
        candles.iter().map(|c| c.open_time / M).collect()
    }

    fn q(from: Option<i64>, to: Option<i64>, limit: usize) -> CandleQuery {
        CandleQuery {
            from: from.map(|m| m * M),
            to: to.map(|m| m * M),
            limit,
        }
    }

    #[test]
    fn push_keeps_the_latest_update_of_a_candle() {
        let mut queue = CandleQueue::new();
        assert!(queue.is_empty());
        queue.push(candle("BTCUSDT", 1, 10.0));
        queue.push(candle("BTCUSDT", 1, 11.0));
        queue.push(candle("BTCUSDT", 2, 12.0));
        queue.push(candle("ETHUSDT", 1, 13.0));
        assert_eq!(queue.len(), 3);
        assert!(!queue.is_empty());
        let got = queue.range(&key("BTCUSDT"), &q(None, None, 10));
        assert_eq!(times(&got), vec![1, 2]);
        assert_eq!(got[0].close, 11.0);
        let mut keys: Vec<_> = queue.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, vec![key("BTCUSDT"), key("ETHUSDT")]);
    }

    #[test]
    fn take_all_drains_everything_in_open_time_order_per_series() {
        let mut queue = CandleQueue::new();
        for m in [3, 1, 2] {
            queue.push(candle("BTCUSDT", m, 1.0));
        }
        queue.push(candle("ETHUSDT", 7, 1.0));
        let batch = queue.take_all();
        assert_eq!(batch.len(), 4);
        assert!(queue.is_empty());
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.keys().count(), 0);
        let btc: Vec<_> = batch
            .iter()
            .filter(|c| c.key == key("BTCUSDT"))
            .cloned()
            .collect();
        assert_eq!(times(&btc), vec![1, 2, 3]);
        assert!(queue.take_all().is_empty());
    }

    #[test]
    fn restore_never_overwrites_a_newer_update() {
        let mut queue = CandleQueue::new();
        queue.push(candle("BTCUSDT", 1, 10.0));
        queue.push(candle("BTCUSDT", 2, 20.0));
        let batch = queue.take_all();
        // While the write was failing, minute 2 was updated and minute 3 opened.
        queue.push(candle("BTCUSDT", 2, 21.0));
        queue.push(candle("BTCUSDT", 3, 30.0));
        queue.restore(batch);
        assert_eq!(queue.len(), 3);
        let got = queue.range(&key("BTCUSDT"), &q(None, None, 10));
        assert_eq!(times(&got), vec![1, 2, 3]);
        let closes: Vec<f64> = got.iter().map(|c| c.close).collect();
        assert_eq!(closes, vec![10.0, 21.0, 30.0]);
        // Restoring into an empty queue brings everything back.
        let mut empty = CandleQueue::new();
        empty.restore(queue.take_all());
        assert_eq!(empty.len(), 3);
    }

    #[test]
    fn range_applies_bounds_and_limit_semantics() {
        let mut queue = CandleQueue::new();
        for m in 1..=10 {
            queue.push(candle("BTCUSDT", m, m as f64));
        }
        let k = key("BTCUSDT");
        let cases: &[(CandleQuery, Vec<i64>)] = &[
            // Latest `limit` when from is None.
            (q(None, None, 3), vec![8, 9, 10]),
            (q(None, Some(5), 2), vec![4, 5]),
            (q(None, Some(0), 5), vec![]),
            // First `limit` when from is Some.
            (q(Some(3), None, 2), vec![3, 4]),
            (q(Some(3), Some(4), 10), vec![3, 4]),
            // Inclusive at both ends.
            (q(Some(5), Some(5), 10), vec![5]),
            // Limit larger than the data.
            (q(None, None, 100), (1..=10).collect()),
            (q(None, None, usize::MAX), (1..=10).collect()),
            // Empty windows: no panic, no candles.
            (q(None, None, 0), vec![]),
            (q(Some(6), Some(5), 10), vec![]),
            (q(Some(11), None, 10), vec![]),
            (q(Some(i64::MIN / M), Some(i64::MAX / M), 1), vec![1]),
        ];
        for (query, want) in cases {
            assert_eq!(&times(&queue.range(&k, query)), want, "{query:?}");
        }
        assert!(queue.range(&key("ETHUSDT"), &q(None, None, 5)).is_empty());
    }

    #[test]
    fn last_open_time_is_the_newest_queued() {
        let mut queue = CandleQueue::new();
        assert_eq!(queue.last_open_time(&key("BTCUSDT")), None);
        queue.push(candle("BTCUSDT", 5, 1.0));
        queue.push(candle("BTCUSDT", 2, 1.0));
        assert_eq!(queue.last_open_time(&key("BTCUSDT")), Some(5 * M));
        queue.clear();
        assert!(queue.is_empty());
        assert_eq!(queue.last_open_time(&key("BTCUSDT")), None);
    }

    #[test]
    fn push_batch_equals_pushing_one_by_one_and_the_latest_wins() {
        // Runs of one series, series interleaved, repeated updates of one
        // candle inside the batch, and an update of an older candle.
        let batch = vec![
            candle("BTCUSDT", 1, 10.0),
            candle("BTCUSDT", 1, 11.0),
            candle("BTCUSDT", 2, 12.0),
            candle("ETHUSDT", 1, 13.0),
            candle("BTCUSDT", 2, 14.0),
            candle("ETHUSDT", 1, 15.0),
            candle("BTCUSDT", 1, 16.0),
        ];
        let mut one_by_one = CandleQueue::new();
        for c in batch.clone() {
            one_by_one.push(c);
        }
        let mut batched = CandleQueue::new();
        batched.push_batch(batch);
        assert_eq!(batched.len(), 3);
        assert_eq!(batched.len(), one_by_one.len());
        for symbol in ["BTCUSDT", "ETHUSDT"] {
            let all = q(None, None, 10);
            assert_eq!(
                batched.range(&key(symbol), &all),
                one_by_one.range(&key(symbol), &all)
            );
        }
        let closes: Vec<f64> = batched
            .range(&key("BTCUSDT"), &q(None, None, 10))
            .iter()
            .map(|c| c.close)
            .collect();
        assert_eq!(closes, vec![16.0, 14.0]);
        batched.push_batch(Vec::new());
        assert_eq!(batched.len(), 3);
    }

    #[test]
    fn written_and_taken_series_leave_no_keys_behind() {
        let mut queue = CandleQueue::new();
        queue.push(candle("BTCUSDT", 1, 1.0));
        queue.push(candle("ETHUSDT", 1, 1.0));
        let batch = queue.snapshot();
        // ETHUSDT minute 1 is updated after the snapshot: it stays.
        queue.push(candle("ETHUSDT", 1, 2.0));
        queue.remove_written(&batch);
        assert_eq!(queue.len(), 1);
        assert_eq!(
            queue.keys().cloned().collect::<Vec<_>>(),
            vec![key("ETHUSDT")]
        );
        assert_eq!(queue.last_open_time(&key("BTCUSDT")), None);
        assert!(queue.open_times(&key("BTCUSDT")).is_empty());
        // A batch naming a series never queued is ignored.
        queue.remove_written(&[candle("SOLUSDT", 1, 1.0)]);
        assert_eq!(queue.len(), 1);
        queue.take_all();
        assert_eq!(queue.keys().count(), 0);
        // The series come back after being emptied.
        queue.push(candle("BTCUSDT", 3, 1.0));
        assert_eq!(
            queue.keys().cloned().collect::<Vec<_>>(),
            vec![key("BTCUSDT")]
        );
        assert_eq!(queue.open_times(&key("BTCUSDT")), vec![3 * M]);
    }

    #[test]
    fn take_closed_leaves_the_open_candles() {
        let mut queue = CandleQueue::new();
        for m in 1..=3 {
            let mut c = candle("BTCUSDT", m, 1.0);
            c.closed = m < 3;
            queue.push(c);
        }
        let mut closed_eth = candle("ETHUSDT", 1, 1.0);
        closed_eth.closed = true;
        queue.push(closed_eth);
        let closed = queue.take_closed();
        assert_eq!(closed.len(), 3);
        assert!(closed.iter().all(|c| c.closed));
        assert_eq!(queue.len(), 1);
        assert_eq!(
            queue.keys().cloned().collect::<Vec<_>>(),
            vec![key("BTCUSDT")]
        );
        assert_eq!(queue.open_times(&key("BTCUSDT")), vec![3 * M]);
    }

    #[test]
    fn merge_overlay_prefers_queued_and_applies_the_limit_to_the_union() {
        let stored: Vec<Candle> = (1..=5).map(|m| candle("BTCUSDT", m, 1.0)).collect();
        let queued = vec![candle("BTCUSDT", 5, 2.0), candle("BTCUSDT", 6, 2.0)];

        let all = merge_overlay(stored.clone(), queued.clone(), &q(None, None, 100));
        assert_eq!(times(&all), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(all[4].close, 2.0, "queued update of minute 5 wins");

        let latest = merge_overlay(stored.clone(), queued.clone(), &q(None, None, 3));
        assert_eq!(times(&latest), vec![4, 5, 6]);

        let first = merge_overlay(stored.clone(), queued.clone(), &q(Some(2), None, 2));
        assert_eq!(times(&first), vec![2, 3]);

        let bounded = merge_overlay(stored.clone(), queued.clone(), &q(None, Some(5), 2));
        assert_eq!(times(&bounded), vec![4, 5]);
        assert_eq!(bounded[1].close, 2.0);

        assert!(merge_overlay(stored.clone(), queued.clone(), &q(None, None, 0)).is_empty());
        assert!(merge_overlay(stored.clone(), queued.clone(), &q(Some(9), Some(1), 5)).is_empty());
        assert!(merge_overlay(Vec::new(), Vec::new(), &q(None, None, 5)).is_empty());
        assert_eq!(
            times(&merge_overlay(Vec::new(), queued, &q(None, None, 5))),
            vec![5, 6]
        );
        assert_eq!(
            times(&merge_overlay(stored, Vec::new(), &q(Some(4), None, 5))),
            vec![4, 5]
        );
    }

    #[test]
    fn merging_per_source_windows_equals_windowing_the_union() {
        // The storage actor queries the DB and the queue with the same query
        // and merges; check that equals querying the merged series directly.
        let stored: Vec<Candle> = (0..40)
            .filter(|m| m % 3 != 0)
            .map(|m| candle("BTCUSDT", m, 1.0))
            .collect();
        let queued: Vec<Candle> = (0..40)
            .filter(|m| m % 4 == 0)
            .map(|m| candle("BTCUSDT", m, 2.0))
            .collect();
        let mut full = CandleQueue::new();
        for c in stored.iter().chain(&queued) {
            full.push(c.clone());
        }
        let mut queue = CandleQueue::new();
        for c in &queued {
            queue.push(c.clone());
        }
        let mut db = CandleQueue::new();
        for c in &stored {
            db.push(c.clone());
        }
        let k = key("BTCUSDT");
        for from in [None, Some(0), Some(5), Some(17), Some(39), Some(45)] {
            for to in [None, Some(0), Some(12), Some(30), Some(50)] {
                for limit in [0, 1, 2, 5, 13, 100] {
                    let query = q(from, to, limit);
                    let merged =
                        merge_overlay(db.range(&k, &query), queue.range(&k, &query), &query);
                    assert_eq!(merged, full.range(&k, &query), "{query:?}");
                }
            }
        }
    }
}
