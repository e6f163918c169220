//! The simulated transport: synthetic users from `gavat-sim` receive messages and react on
//! the virtual clock. Each user draws from their own random streams derived from
//! `(seed, user id)` — one for reactions, one for spontaneous activity — so a user's story
//! does not depend on the order in which the engine happens to process other users.
//!
//! Every send is also counted by the simulated Telegram ([`SimTelegram`]), which reports
//! what Telegram's limits and the platform's 429s would have done to it.
//!
//! Each synthetic user's memory sits behind a lock of its own: the shards that host users
//! call in from several threads, and a user is only ever touched by their own shard (or by
//! the scheduler's group post while every shard waits), so no lock is ever contended.

use std::sync::{Mutex, MutexGuard, OnceLock};

use gavat_sim::{BehaviourModel, Exposure, Population, Purpose, UserMemory};
use rand_pcg::Pcg64Mcg;

use crate::domain::{ContentKind, Destination, GroupId, InboundEvent, InboundKind, OutboundMessage, Timestamp, UserId};

use super::sim_telegram::{SimTelegram, TelegramStats};
use super::{Delivered, InboundSink, InboundSource, SendFuture, Sender, TransportError};

/// The engine's content kind as the behaviour model sees it: the one place the domain's
/// kind meets the simulator's (the proof simulation in `learner::proof` uses it too).
impl From<ContentKind> for gavat_sim::ContentKind {
    fn from(content: ContentKind) -> gavat_sim::ContentKind {
        match content {
            ContentKind::Offer => gavat_sim::ContentKind::Offer,
            ContentKind::Reminder => gavat_sim::ContentKind::Reminder,
            ContentKind::Educational => gavat_sim::ContentKind::Educational,
            ContentKind::News => gavat_sim::ContentKind::News,
            ContentKind::Premium => gavat_sim::ContentKind::Premium,
            ContentKind::Community => gavat_sim::ContentKind::Community,
        }
    }
}

/// Synthetic users behind a transport.
#[derive(Debug)]
pub struct SimTransport {
    population: Population,
    model: BehaviourModel,
    horizon: Timestamp,
    users: Vec<Mutex<SimUser>>,
    sink: OnceLock<InboundSink>,
    telegram: SimTelegram,
}

#[derive(Debug)]
struct SimUser {
    memory: UserMemory,
    behaviour_rng: Pcg64Mcg,
    activity_rng: Pcg64Mcg,
}

impl SimTransport {
    /// Synthetic `population` reacting by `model`, reached through Telegram as `telegram`
    /// models it; activity stops at `horizon`. User ids must be `0..n` (as
    /// [`gavat_sim::generate`] makes them).
    pub fn new(
        population: Population,
        model: BehaviourModel,
        telegram: &gavat_sim::TelegramParams,
        seed: u64,
        horizon: Timestamp,
    ) -> SimTransport {
        let users = population
            .users
            .iter()
            .map(|u| {
                Mutex::new(SimUser {
                    memory: UserMemory::default(),
                    behaviour_rng: gavat_sim::stream(seed, u.id, Purpose::Behaviour),
                    activity_rng: gavat_sim::stream(seed, u.id, Purpose::Activity),
                })
            })
            .collect();
        let telegram = SimTelegram::new(telegram);
        SimTransport { population, model, horizon, users, sink: OnceLock::new(), telegram }
    }

    /// Marks `user` as having blocked the bot before this run (a continuation's users who
    /// opted out in the run before): they react to nothing, as they would have.
    pub fn carry_opt_out(&self, user: UserId) {
        if let Some(mut sim) = self.user(user.0 as usize) {
            sim.memory.mark_opted_out();
        }
    }

    /// What the simulated Telegram did so far.
    pub fn telegram_stats(&self) -> TelegramStats {
        self.telegram.stats()
    }

    /// The synthetic population.
    pub fn population(&self) -> &Population {
        &self.population
    }

    fn user(&self, user: usize) -> Option<MutexGuard<'_, SimUser>> {
        self.users.get(user).map(|u| u.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    fn push(&self, event: InboundEvent) {
        if let Some(sink) = self.sink.get() {
            sink.push(event);
        }
    }

    /// Draws one user's reaction to an exposure and reports it; `Err(Blocked)` if the user
    /// has already blocked the bot.
    fn expose(&self, user: usize, exposure: Exposure, group: Option<GroupId>) -> bool {
        let (Some(profile), Some(mut sim)) = (self.population.users.get(user), self.user(user)) else {
            return false;
        };
        let sim = &mut *sim;
        if sim.memory.opted_out() {
            return false;
        }
        let reaction = self.model.react(profile, &mut sim.memory, &mut sim.behaviour_rng, exposure);
        let at = Timestamp(exposure.at);
        let id = UserId(profile.id);
        let report = |after: Option<u32>, kind: InboundKind| {
            if let Some(after) = after {
                self.push(InboundEvent { at: at.plus(i64::from(after)), user: id, kind, group, source: None });
            }
        };
        report(reaction.response_after, InboundKind::Reply);
        report(reaction.conversion_after, InboundKind::Conversion);
        report(reaction.opt_out_after, InboundKind::OptOut);
        true
    }

    fn next_activity(&self, user: usize, after: Timestamp) {
        let (Some(profile), Some(mut sim)) = (self.population.users.get(user), self.user(user)) else {
            return;
        };
        let rng = &mut sim.activity_rng;
        let horizon = self.horizon.secs() - after.secs();
        if horizon <= 0 {
            return;
        }
        if let Some(at) = self.model.next_activity(profile, rng, after.secs(), horizon) {
            self.push(InboundEvent {
                at: Timestamp(at),
                user: UserId(profile.id),
                kind: InboundKind::Activity,
                group: None,
                // The simulated world never delivers an event twice.
                source: None,
            });
        }
    }
}

impl InboundSource for SimTransport {
    fn start(&self, sink: InboundSink) {
        if self.sink.set(sink).is_err() {
            return; // already started
        }
        let start = Timestamp(self.population.start);
        for user in 0..self.population.users.len() {
            self.next_activity(user, start);
        }
    }

    fn acknowledge(&self, event: &InboundEvent) {
        if event.kind == InboundKind::Activity {
            self.next_activity(event.user.0 as usize, event.at);
        }
    }

    fn acknowledge_after_persist(&self) -> bool {
        false
    }
}

impl Sender for SimTransport {
    fn send(&self, message: &OutboundMessage) -> SendFuture {
        self.telegram.record(message.bot, message.to, message.at);
        let outcome = match message.to {
            Destination::User(id) => {
                let exposure = Exposure { at: message.at.secs(), content: message.content.into(), via_group: false };
                if self.expose(id.0 as usize, exposure, None) {
                    Ok(Delivered)
                } else if (id.0 as usize) < self.population.users.len() {
                    Err(TransportError::Blocked)
                } else {
                    Err(TransportError::Fatal { reason: format!("chat {} not found", id.0) })
                }
            }
            Destination::Group(gid) => match self.population.groups.get(gid.0 as usize).filter(|g| g.id == gid.0) {
                Some(group) => {
                    let exposure = Exposure { at: message.at.secs(), content: message.content.into(), via_group: true };
                    for &member in &group.members {
                        self.expose(member as usize, exposure, Some(gid));
                    }
                    Ok(Delivered)
                }
                None => Err(TransportError::Fatal { reason: format!("group {} not found", gid.0) }),
            },
        };
        Box::pin(std::future::ready(outcome))
    }
}
