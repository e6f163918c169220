//! Telegram as the simulated transport sees it, on the virtual clock: Telegram's limits
//! (30 messages a second per bot, one a second per private chat, 20 a minute per group, or
//! the lower values of the scenario's `[telegram]` table) and a model of the platform, which
//! answers 429 with `retry_after` when a bot goes past what it tolerates in one second and
//! freezes the bot that long. A rehearsal's report then shows when 30 messages a second
//! become the bottleneck: how many messages a live sender would have held, for how long,
//! and how many 429s and frozen seconds the platform would have cost.
//!
//! # Why the limits are measured here, not enforced
//! The user shards run in parallel between sync points, each through its own users. A
//! per-bot limit couples users of every shard: enforcing it as sends arrive would make who is
//! held depend on which shard's thread came first, and `gavat simulate` must print the same
//! numbers for one seed on 1, 2 or 4 threads. So every send is delivered as the engine
//! decided it, and each bot's sends are counted per virtual second — counts that do not
//! depend on arrival order — then run, second by second, through the queue a live sender
//! keeps: at most `per_bot_per_second` leave a second, the rest wait in order; past the
//! platform's tolerance a second earns a 429, and the bot sends nothing for `retry_after`
//! seconds while its queue grows. The live sender enforces the same limits for real
//! (`transport::telegram::limits`, one process, one clock).
//!
//! A private chat's and a group's own limits concern one user (hosted by one shard, in its
//! own order) or one group (posted by the scheduler alone), so they are checked as sends
//! arrive: a send closer to the previous one in the same chat than the limit allows is
//! counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use gavat_sim::TelegramParams;

use crate::domain::{BotId, Destination, Timestamp};

/// What the simulated Telegram saw and what a live sender would have done with it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TelegramStats {
    /// Messages sent, per bot.
    pub per_bot: BTreeMap<u32, u64>,
    /// The most messages the engine sent through one bot in one second.
    pub busiest_bot_second: u32,
    /// Bot-seconds in which a bot sent as many messages as the per-bot limit allows: the
    /// limit was the bottleneck then.
    pub bot_seconds_at_limit: u64,
    /// Messages that would have waited at least one second for their bot.
    pub delayed: u64,
    /// Their total wait, message-seconds.
    pub wait_secs_total: u64,
    /// The longest a message would have waited, seconds.
    pub longest_wait_secs: u64,
    /// 429 answers the platform would have given.
    pub platform_429: u64,
    /// Bot-seconds spent frozen after a 429.
    pub frozen_secs: u64,
    /// Sends into one private chat closer than its limit allows (a live sender spaces them).
    pub chat_too_soon: u64,
    /// Posts into one group closer than its limit allows.
    pub group_too_soon: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Sends per `(bot, virtual second)`.
    per_second: HashMap<(u32, i64), u32>,
    /// The last send per `(bot, chat)`.
    last_in_chat: HashMap<(u32, Destination), i64>,
    chat_too_soon: u64,
    group_too_soon: u64,
}

/// The simulated Telegram (see the module doc).
#[derive(Debug)]
pub struct SimTelegram {
    params: TelegramParams,
    state: Mutex<State>,
}

impl SimTelegram {
    /// The simulated Telegram of `params`.
    pub fn new(params: &TelegramParams) -> SimTelegram {
        SimTelegram { params: params.clone(), state: Mutex::new(State::default()) }
    }

    /// A message through `bot` to `to` at `at`.
    pub fn record(&self, bot: BotId, to: Destination, at: Timestamp) {
        let mut state = self.lock();
        *state.per_second.entry((bot.0, at.secs())).or_default() += 1;
        let spacing = match to {
            Destination::User(_) => 60.0 / f64::from(self.params.per_private_chat_per_minute.max(1)),
            Destination::Group(_) => 60.0 / f64::from(self.params.per_group_per_minute.max(1)),
        };
        if let Some(last) = state.last_in_chat.insert((bot.0, to), at.secs())
            && ((at.secs() - last) as f64) < spacing
        {
            match to {
                Destination::User(_) => state.chat_too_soon += 1,
                Destination::Group(_) => state.group_too_soon += 1,
            }
        }
    }

    /// What a live sender would have done with the sends so far (see the module doc).
    pub fn stats(&self) -> TelegramStats {
        let state = self.lock();
        let mut by_bot: BTreeMap<u32, Vec<(i64, u32)>> = BTreeMap::new();
        for (&(bot, second), &n) in &state.per_second {
            by_bot.entry(bot).or_default().push((second, n));
        }
        let mut stats = TelegramStats {
            chat_too_soon: state.chat_too_soon,
            group_too_soon: state.group_too_soon,
            ..Default::default()
        };
        for (bot, mut seconds) in by_bot {
            seconds.sort_unstable();
            stats.per_bot.insert(bot, seconds.iter().map(|(_, n)| u64::from(*n)).sum());
            stats.busiest_bot_second = stats.busiest_bot_second.max(seconds.iter().map(|(_, n)| *n).max().unwrap_or(0));
            self.queue(&seconds, &mut stats);
        }
        stats
    }

    /// Runs one bot's sends per second through a live sender's queue (FIFO), adding to
    /// `stats`. Time advances second by second while anything waits; idle stretches with an
    /// empty queue are skipped.
    fn queue(&self, seconds: &[(i64, u32)], stats: &mut TelegramStats) {
        let cap = u64::from(self.params.per_bot_per_second.max(1));
        let tolerated = u64::from(self.params.platform_per_bot_per_second.max(1));
        let retry_after = i64::from(self.params.retry_after_secs.max(1));
        // Waiting messages as (arrival second, count), oldest first.
        let mut waiting: std::collections::VecDeque<(i64, u64)> = std::collections::VecDeque::new();
        let mut frozen_until = i64::MIN;
        let mut next = seconds.iter().peekable();
        let Some(&&(mut now, _)) = next.peek() else { return };
        loop {
            while let Some(&&(second, n)) = next.peek() {
                if second > now {
                    break;
                }
                waiting.push_back((second, u64::from(n)));
                next.next();
            }
            if now < frozen_until {
                stats.frozen_secs += 1;
            } else {
                let mut budget = cap;
                let mut sent = 0u64;
                while budget > 0 {
                    let Some(front) = waiting.front_mut() else { break };
                    let take = front.1.min(budget);
                    let waited = (now - front.0) as u64;
                    if waited > 0 {
                        stats.delayed += take;
                        stats.wait_secs_total += take * waited;
                        stats.longest_wait_secs = stats.longest_wait_secs.max(waited);
                    }
                    front.1 -= take;
                    budget -= take;
                    sent += take;
                    if front.1 == 0 {
                        waiting.pop_front();
                    }
                }
                if sent == cap {
                    stats.bot_seconds_at_limit += 1;
                }
                if sent > tolerated {
                    // The platform answered 429 to the sends past its tolerance: they go
                    // back to the head of the queue and the bot waits out `retry_after`.
                    stats.platform_429 += 1;
                    waiting.push_front((now, sent - tolerated));
                    frozen_until = now + 1 + retry_after;
                }
            }
            match (waiting.is_empty(), next.peek()) {
                (true, Some(&&(second, _))) => now = second.max(now + 1),
                (true, None) => break,
                (false, _) => now += 1,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GroupId, UserId};

    fn send_many(t: &SimTelegram, bot: u32, at: i64, n: u64, first_user: u64) {
        for user in first_user..first_user + n {
            t.record(BotId(bot), Destination::User(UserId(user)), Timestamp(at));
        }
    }

    /// 40 sends through one bot in one second: 30 leave that second, 10 wait one second;
    /// another bot's sends are not held; the order sends arrive in does not matter.
    #[test]
    fn thirty_a_second_per_bot_and_the_rest_wait() {
        let t = SimTelegram::new(&TelegramParams::default());
        send_many(&t, 0, 1_000, 40, 0);
        send_many(&t, 1, 1_000, 5, 100);
        let stats = t.stats();
        assert_eq!(stats.per_bot, BTreeMap::from([(0, 40), (1, 5)]));
        assert_eq!((stats.busiest_bot_second, stats.bot_seconds_at_limit), (40, 1));
        assert_eq!((stats.delayed, stats.wait_secs_total, stats.longest_wait_secs), (10, 10, 1));
        assert_eq!(stats.platform_429, 0);

        let reversed = SimTelegram::new(&TelegramParams::default());
        send_many(&reversed, 1, 1_000, 5, 100);
        for user in (0..40).rev() {
            reversed.record(BotId(0), Destination::User(UserId(user)), Timestamp(1_000));
        }
        assert_eq!(reversed.stats(), stats);
    }

    /// A backlog carries over: 90 in one second and 20 the next leave over four seconds.
    #[test]
    fn a_backlog_drains_in_order() {
        let t = SimTelegram::new(&TelegramParams::default());
        send_many(&t, 0, 10, 90, 0);
        send_many(&t, 0, 11, 20, 1_000);
        let stats = t.stats();
        // Second 10: 30 leave; 11: 30 of the first; 12: the last 30 of the first (waited 2);
        // 13: the 20 of second 11 (waited 2).
        assert_eq!(stats.bot_seconds_at_limit, 3);
        assert_eq!(stats.delayed, 80);
        assert_eq!(stats.wait_secs_total, 30 + 30 * 2 + 20 * 2);
        assert_eq!(stats.longest_wait_secs, 2);
    }

    /// A platform that tolerates less than our limit answers 429 and freezes the bot for
    /// `retry_after`: nothing leaves meanwhile, and the held messages wait it out.
    #[test]
    fn a_429_freezes_the_simulated_bot() {
        let params =
            TelegramParams { platform_per_bot_per_second: 20, retry_after_secs: 5, ..TelegramParams::default() };
        let t = SimTelegram::new(&params);
        send_many(&t, 0, 100, 25, 0);
        let stats = t.stats();
        assert_eq!(stats.platform_429, 1);
        assert_eq!(stats.frozen_secs, 5);
        // The 5 refused wait out the freeze (seconds 101–105) and leave at 106.
        assert_eq!((stats.delayed, stats.longest_wait_secs), (5, 6));
    }

    /// A second message into one chat within a second, or a second post into one group
    /// within three, is counted.
    #[test]
    fn chats_and_groups_have_their_own_spacing() {
        let t = SimTelegram::new(&TelegramParams::default());
        let user = Destination::User(UserId(5));
        t.record(BotId(0), user, Timestamp(1_000));
        t.record(BotId(0), user, Timestamp(1_000));
        t.record(BotId(0), user, Timestamp(1_001));
        let group = Destination::Group(GroupId(5));
        t.record(BotId(0), group, Timestamp(1_000));
        t.record(BotId(0), group, Timestamp(1_002));
        t.record(BotId(0), group, Timestamp(1_005));
        let stats = t.stats();
        assert_eq!((stats.chat_too_soon, stats.group_too_soon), (1, 1));
    }
}
