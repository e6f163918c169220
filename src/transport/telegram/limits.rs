//! Telegram's send limits, kept inside the sender: at most 30 messages a second per bot, one
//! a second per private chat, 20 a minute per group (the defaults; they can be set lower,
//! never higher), and a bot frozen after a 429 for the `retry_after` it was given.
//!
//! # How a send is admitted
//! Each limit is a minimum spacing between two sends (1/30 s per bot, rounded up to the
//! nanosecond; 1 s per private chat; 3 s per group), so any window of the limit's length
//! holds at most its count, whatever the window's alignment. A send *reserves* its slot
//! synchronously, when [`super::TelegramSender`]'s `send` is called:
//! the earliest instant that is no sooner than now, than the chat's next free instant and
//! than the bot's freeze, and that lies at least one bot spacing from every slot the bot has
//! already reserved. A slot may fill a gap before later reservations (a send to an idle chat
//! does not queue behind a busy one), while two sends to one chat always get slots in the
//! order they were asked for: **order within a chat is kept**.
//!
//! The caller then sleeps (asynchronously, on tokio's clock) until its slot. A slot further
//! away than the limiter's `max_wait` is refused instead, as [`Admission::Later`]: the
//! sender answers `RateLimited` without sending and the engine tries again later, so a send
//! never waits in here past the engine's own send timeout.
//!
//! # A 429
//! The Bot API does not say whether a 429 is about the chat or the whole bot. The limiter
//! parks the **chat** for all of its `retry_after`, and freezes the **bot** for the same
//! wait up to [`BOT_FREEZE_CAP`]: a longer wait is a chat's flood wait (RELIABILITY.md row
//! 40), and other chats flow again after the cap. If it was the bot's after all, the next
//! request through it meets another 429 and freezes it for that one's `retry_after`.
//!
//! Time is `tokio::time::Instant`: real time in a live run, the paused clock in unit tests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{BotId, Destination};

use super::super::TransportConfigError;

/// The limits, as counts per window. [`Limits::TELEGRAM`] holds the platform's published
/// ceilings; [`Limits::checked`] refuses any setting above them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Messages a second through one bot, over all its chats (Telegram: 30).
    pub per_bot_per_second: u32,
    /// Messages a minute from one bot into one private chat (Telegram: 60, i.e. one a
    /// second).
    pub per_private_chat_per_minute: u32,
    /// Messages a minute from one bot into one group (Telegram: 20).
    pub per_group_per_minute: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::TELEGRAM
    }
}

impl Limits {
    /// The Bot API's published limits: the defaults, and the ceiling of every setting.
    pub const TELEGRAM: Limits =
        Limits { per_bot_per_second: 30, per_private_chat_per_minute: 60, per_group_per_minute: 20 };

    /// These limits if each is between 1 and Telegram's own; otherwise an error naming the
    /// setting.
    pub fn checked(self) -> Result<Limits, TransportConfigError> {
        let check = |field: &'static str, value: u32, max: u32| {
            if (1..=max).contains(&value) {
                Ok(())
            } else {
                Err(TransportConfigError::Invalid {
                    field,
                    why: format!("{value} is outside 1–{max} (Telegram's limit; it can be set lower, never higher)"),
                })
            }
        };
        check("limits.per_bot_per_second", self.per_bot_per_second, Limits::TELEGRAM.per_bot_per_second)?;
        check(
            "limits.per_private_chat_per_minute",
            self.per_private_chat_per_minute,
            Limits::TELEGRAM.per_private_chat_per_minute,
        )?;
        check("limits.per_group_per_minute", self.per_group_per_minute, Limits::TELEGRAM.per_group_per_minute)?;
        Ok(self)
    }

    /// The least time between two sends through one bot.
    pub fn bot_spacing(&self) -> Duration {
        spacing(Duration::from_secs(1), self.per_bot_per_second)
    }

    /// The least time between two sends from one bot into `to`.
    pub fn chat_spacing(&self, to: Destination) -> Duration {
        match to {
            Destination::User(_) => spacing(Duration::from_secs(60), self.per_private_chat_per_minute),
            Destination::Group(_) => spacing(Duration::from_secs(60), self.per_group_per_minute),
        }
    }
}

/// `window / count`, rounded *up* to the nanosecond so that `count` spacings never fit in
/// less than `window`.
fn spacing(window: Duration, count: u32) -> Duration {
    let nanos = window.as_nanos().div_ceil(u128::from(count.max(1)));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The longest one 429 freezes a whole bot (see the module doc); its chat stays parked for
/// all of the `retry_after`.
pub const BOT_FREEZE_CAP: Duration = Duration::from_secs(10);

/// What [`Limiter::reserve`] grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Send at this instant (sleep until it first).
    At(Instant),
    /// Not within the limiter's `max_wait`: come back after this long. Nothing reserved.
    Later(Duration),
}

/// One bot's schedule.
#[derive(Debug, Default)]
struct BotSchedule {
    /// The slots reserved, kept while they can still constrain a new one. A `BTreeSet`
    /// because a new slot is placed between its neighbours; slots are distinct, being at
    /// least one spacing apart.
    slots: BTreeSet<Instant>,
    /// No send through this bot before this instant (a 429's `retry_after`).
    frozen_until: Option<Instant>,
}

/// The limiter's state. A `std::sync::Mutex`: it is held for a few map operations and never
/// across an `.await`.
#[derive(Debug, Default)]
struct State {
    bots: HashMap<BotId, BotSchedule>,
    /// Per bot and chat: the earliest instant of that chat's next send.
    chats: HashMap<(BotId, Destination), Instant>,
    /// Per bot and chat: no send before this instant (a 429's `retry_after`).
    parked: HashMap<(BotId, Destination), Instant>,
}

/// Admits sends under [`Limits`] (see the module doc).
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    max_wait: Duration,
    state: Mutex<State>,
}

impl Limiter {
    /// A limiter for `limits` granting slots at most `max_wait` away.
    pub fn new(limits: Limits, max_wait: Duration) -> Limiter {
        Limiter { limits, max_wait, state: Mutex::new(State::default()) }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Reserves the earliest slot for a send through `bot` to `to`, asked at `now`.
    pub fn reserve(&self, bot: BotId, to: Destination, now: Instant) -> Admission {
        let bot_spacing = self.limits.bot_spacing();
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let State { bots, chats, parked } = &mut *state;
        // Chats whose next free instant has passed constrain nothing: forget them now and
        // then, so the map holds only busy chats.
        if chats.len() > 4096 {
            chats.retain(|_, next| *next > now);
        }
        if parked.len() > 4096 {
            parked.retain(|_, until| *until > now);
        }
        let schedule = bots.entry(bot).or_default();
        // Slots more than one spacing in the past constrain nothing.
        while schedule.slots.first().is_some_and(|first| *first + bot_spacing <= now) {
            schedule.slots.pop_first();
        }
        let mut at = now;
        if let Some(next) = chats.get(&(bot, to)) {
            at = at.max(*next);
        }
        if let Some(frozen) = schedule.frozen_until {
            at = at.max(frozen);
        }
        if let Some(until) = parked.get(&(bot, to)) {
            at = at.max(*until);
        }
        // Move `at` past any reserved slot closer than one spacing, until it is clear on
        // both sides. Each step moves it forward past one slot, so this ends.
        loop {
            if let Some(before) = schedule.slots.range(..=at).next_back()
                && at < *before + bot_spacing
            {
                at = *before + bot_spacing;
                continue;
            }
            if let Some(after) = schedule.slots.range(at..).next()
                && *after < at + bot_spacing
            {
                at = *after + bot_spacing;
                continue;
            }
            break;
        }
        let wait = at - now;
        if wait > self.max_wait {
            return Admission::Later(wait);
        }
        schedule.slots.insert(at);
        chats.insert((bot, to), at + self.limits.chat_spacing(to));
        Admission::At(at)
    }

    /// Freezes `bot` for `for_` from `now` (a 429's `retry_after`); a freeze already
    /// reaching further stays.
    pub fn freeze(&self, bot: BotId, now: Instant, for_: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let schedule = state.bots.entry(bot).or_default();
        let until = now + for_;
        schedule.frozen_until = Some(schedule.frozen_until.map_or(until, |old| old.max(until)));
    }

    /// A 429 on a send through `bot` to `to`: the chat parks for all of `retry_after`, the
    /// bot freezes for it up to [`BOT_FREEZE_CAP`] (see the module doc).
    pub fn rate_limited(&self, bot: BotId, to: Destination, now: Instant, retry_after: Duration) {
        self.park(bot, to, now + retry_after);
        self.freeze(bot, now, retry_after.min(BOT_FREEZE_CAP));
    }

    /// No send through `bot` to `to` before `until` (a later park already there stays).
    pub fn park(&self, bot: BotId, to: Destination, until: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let parked = state.parked.entry((bot, to)).or_insert(until);
        *parked = (*parked).max(until);
    }

    /// How much longer `bot` is frozen at `now`, if it is.
    pub fn frozen_for(&self, bot: BotId, now: Instant) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let until = state.bots.get(&bot)?.frozen_until?;
        (until > now).then(|| until - now)
    }

    /// How much longer a send through `bot` to `to` must wait at `now` for a freeze of the
    /// bot or a park of the chat, if it must.
    pub fn held_for(&self, bot: BotId, to: Destination, now: Instant) -> Option<Duration> {
        let parked = {
            let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            state.parked.get(&(bot, to)).copied().filter(|until| *until > now).map(|until| until - now)
        };
        match (self.frozen_for(bot, now), parked) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{GroupId, UserId};

    fn slots(limiter: &Limiter, bot: u32, to: Destination, now: Instant, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|_| match limiter.reserve(BotId(bot), to, now) {
                Admission::At(at) => at - now,
                Admission::Later(wait) => panic!("refused, wait {wait:?}"),
            })
            .collect()
    }

    /// 30 sends through one bot to 30 chats fill one second, evenly; the 31st is a second
    /// after the first.
    #[tokio::test(start_paused = true)]
    async fn a_bot_sends_at_most_30_a_second() {
        let limiter = Limiter::new(Limits::TELEGRAM, Duration::from_secs(60));
        let now = Instant::now();
        let got: Vec<Duration> = (0..31u64)
            .map(|i| match limiter.reserve(BotId(0), Destination::User(UserId(i)), now) {
                Admission::At(at) => at - now,
                Admission::Later(_) => panic!("refused"),
            })
            .collect();
        assert_eq!(got[0], Duration::ZERO);
        assert_eq!(got[1], Duration::from_nanos(33_333_334));
        assert!(got[30] >= Duration::from_secs(1), "{:?}", got[30]);
        // Another bot is not held up.
        assert_eq!(slots(&limiter, 1, Destination::User(UserId(0)), now, 1), [Duration::ZERO]);
    }

    /// One chat: a second apart; one group: three seconds apart (20 a minute).
    #[tokio::test(start_paused = true)]
    async fn chats_and_groups_are_spaced() {
        let limiter = Limiter::new(Limits::TELEGRAM, Duration::from_secs(600));
        let now = Instant::now();
        let user = slots(&limiter, 0, Destination::User(UserId(7)), now, 3);
        assert_eq!(user, [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(2)]);
        let group = slots(&limiter, 0, Destination::Group(GroupId(7)), now, 21);
        assert!(group.windows(2).all(|w| w[1] - w[0] >= Duration::from_secs(3)), "{group:?}");
        assert!(group[20] >= Duration::from_secs(60), "the 21st post is a minute after the first");
    }

    /// A send to an idle chat fills the gap before a busy chat's later slots.
    #[tokio::test(start_paused = true)]
    async fn an_idle_chat_does_not_queue_behind_a_busy_one() {
        let limiter = Limiter::new(Limits::TELEGRAM, Duration::from_secs(60));
        let now = Instant::now();
        slots(&limiter, 0, Destination::User(UserId(1)), now, 5);
        let other = slots(&limiter, 0, Destination::User(UserId(2)), now, 1);
        assert_eq!(other, [Duration::from_nanos(33_333_334)]);
    }

    /// A freeze holds every new slot of that bot until it ends, and no other bot's.
    #[tokio::test(start_paused = true)]
    async fn a_freeze_holds_the_bot() {
        let limiter = Limiter::new(Limits::TELEGRAM, Duration::from_secs(60));
        let now = Instant::now();
        limiter.freeze(BotId(0), now, Duration::from_secs(5));
        limiter.freeze(BotId(0), now, Duration::from_secs(2));
        assert_eq!(limiter.frozen_for(BotId(0), now), Some(Duration::from_secs(5)), "the longer freeze stays");
        assert_eq!(slots(&limiter, 0, Destination::User(UserId(1)), now, 1), [Duration::from_secs(5)]);
        assert_eq!(slots(&limiter, 1, Destination::User(UserId(1)), now, 1), [Duration::ZERO]);
        assert_eq!(limiter.frozen_for(BotId(0), now + Duration::from_secs(5)), None);
    }

    /// A 429's long wait parks its chat for all of it and the bot only up to the cap: another
    /// chat of the bot goes after the cap, the parked chat only after the wait.
    #[tokio::test(start_paused = true)]
    async fn a_long_429_parks_the_chat_and_freezes_the_bot_briefly() {
        let limiter = Limiter::new(Limits::TELEGRAM, Duration::from_secs(7_200));
        let now = Instant::now();
        let parked = Destination::User(UserId(1));
        limiter.rate_limited(BotId(0), parked, now, Duration::from_secs(3_600));
        assert_eq!(limiter.held_for(BotId(0), parked, now), Some(Duration::from_secs(3_600)));
        assert_eq!(limiter.held_for(BotId(0), Destination::User(UserId(2)), now), Some(BOT_FREEZE_CAP));
        assert_eq!(slots(&limiter, 0, Destination::User(UserId(2)), now, 1), [BOT_FREEZE_CAP]);
        assert_eq!(slots(&limiter, 0, parked, now, 1), [Duration::from_secs(3_600)]);
        assert_eq!(limiter.held_for(BotId(1), parked, now), None, "another bot is not held");
    }

    /// A slot beyond `max_wait` is refused with the wait, and reserves nothing.
    #[tokio::test(start_paused = true)]
    async fn a_slot_too_far_is_refused() {
        let limiter = Limiter::new(Limits::TELEGRAM, Duration::from_secs(2));
        let now = Instant::now();
        let to = Destination::User(UserId(1));
        slots(&limiter, 0, to, now, 3);
        assert_eq!(limiter.reserve(BotId(0), to, now), Admission::Later(Duration::from_secs(3)));
        assert_eq!(
            limiter.reserve(BotId(0), to, now + Duration::from_secs(1)),
            Admission::At(now + Duration::from_secs(3))
        );
    }

    /// Settings above Telegram's limits, or zero, are refused by name.
    #[test]
    fn limits_go_down_never_up() {
        assert!(Limits::TELEGRAM.checked().is_ok());
        assert!(Limits { per_bot_per_second: 10, ..Limits::TELEGRAM }.checked().is_ok());
        let up = Limits { per_bot_per_second: 31, ..Limits::TELEGRAM }.checked().unwrap_err();
        assert!(up.to_string().contains("limits.per_bot_per_second"), "{up}");
        assert!(Limits { per_group_per_minute: 0, ..Limits::TELEGRAM }.checked().is_err());
        assert!(Limits { per_private_chat_per_minute: 61, ..Limits::TELEGRAM }.checked().is_err());
    }
}
