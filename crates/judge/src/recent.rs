//! A buffer of per-tick values that forgets anything older than a span.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Per-tick values from the last `span` seconds.
///
/// Checks estimate their bets and aggregate their guards from recent data
/// only: a long healthy history must not dilute evidence that something
/// changed a minute ago.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recent<T> {
    span: f64,
    items: VecDeque<(f64, T)>,
}

impl<T> Recent<T> {
    /// An empty buffer keeping `span` seconds.
    pub fn new(span: f64) -> Self {
        Recent {
            span,
            items: VecDeque::new(),
        }
    }

    /// Forgets values older than `span` before `now` (strictly: a value at
    /// `now - span` is gone, so a 60 s window holds 60 one-second ticks).
    pub fn evict(&mut self, now: f64) {
        while let Some((t, _)) = self.items.front() {
            if *t <= now - self.span {
                self.items.pop_front();
            } else {
                break;
            }
        }
    }

    /// Adds the value of the tick at `t` and forgets what fell out of the span.
    pub fn push(&mut self, t: f64, value: T) {
        self.push_with(t, value, |_| {});
    }

    /// Like [`Recent::push`], handing each forgotten value to `gone`.
    pub fn push_with(&mut self, t: f64, value: T, mut gone: impl FnMut(T)) {
        self.items.push_back((t, value));
        while let Some((old, _)) = self.items.front() {
            if *old > t - self.span {
                break;
            }
            if let Some((_, v)) = self.items.pop_front() {
                gone(v);
            }
        }
    }

    /// The values kept, oldest first.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(_, v)| v)
    }

    /// The values kept with their times, newest first.
    pub fn iter_rev(&self) -> impl Iterator<Item = (f64, &T)> {
        self.items.iter().rev().map(|(t, v)| (*t, v))
    }

    /// Time of the newest value kept.
    pub fn newest(&self) -> Option<f64> {
        self.items.back().map(|(t, _)| *t)
    }

    /// Time of the oldest value kept.
    pub fn oldest(&self) -> Option<f64> {
        self.items.front().map(|(t, _)| *t)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// How many ticks are kept.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(span: f64, pushes: &[f64], expected: &[f64]) {
        let mut r = Recent::new(span);
        for &t in pushes {
            r.push(t, t);
        }
        let got: Vec<f64> = r.values().copied().collect();
        assert_eq!(got, expected, "span {span}, pushes {pushes:?}");
    }

    #[test]
    fn forgets_old_values() {
        check(3.0, &[], &[]);
        check(3.0, &[1.0], &[1.0]);
        check(3.0, &[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]);
        check(3.0, &[1.0, 2.0, 3.0, 4.0], &[2.0, 3.0, 4.0]);
        check(3.0, &[1.0, 10.0], &[10.0]);
        check(0.5, &[1.0, 2.0], &[2.0]);
    }
}
