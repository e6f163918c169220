//! Platform rate limits: at most N group posts in any sliding 60-second window (Telegram
//! allows 20 messages a minute to groups).

use std::collections::VecDeque;

use crate::domain::Timestamp;

/// A sliding one-minute window of recent group posts.
#[derive(Clone, Debug)]
pub struct PostRateWindow {
    per_minute: u32,
    recent: VecDeque<Timestamp>,
}

impl PostRateWindow {
    /// A window allowing `per_minute` posts in any 60 seconds.
    pub fn new(per_minute: u32) -> PostRateWindow {
        PostRateWindow { per_minute, recent: VecDeque::with_capacity(per_minute as usize) }
    }

    /// `None` if a post may go out at `now`, otherwise the first instant one may.
    pub fn next_free(&mut self, now: Timestamp) -> Option<Timestamp> {
        while self.recent.front().is_some_and(|t| now.secs() - t.secs() >= 60) {
            self.recent.pop_front();
        }
        if self.per_minute == 0 {
            return Some(Timestamp(i64::MAX));
        }
        if (self.recent.len() as u32) < self.per_minute { None } else { self.recent.front().map(|t| t.plus(60)) }
    }

    /// Records a post at `now` (call only after [`PostRateWindow::next_free`] said `None`).
    pub fn record(&mut self, now: Timestamp) {
        self.recent.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 21st post within a minute waits until the first one is a minute old.
    #[test]
    fn twenty_a_minute() {
        let mut w = PostRateWindow::new(20);
        let t0 = Timestamp(1_000);
        for i in 0..20 {
            let t = t0.plus(i);
            assert_eq!(w.next_free(t), None);
            w.record(t);
        }
        assert_eq!(w.next_free(t0.plus(30)), Some(t0.plus(60)));
        assert_eq!(w.next_free(t0.plus(60)), None);
    }
}
