//! [`FaultyTransport`]: the simulated world behind seeded platform faults. Outbound, each
//! send draws at most one fault from its destination's stream — a chat-scoped 429, a 5xx,
//! accept-then-hang, a slow answer — unless a bot-wide 429 storm is on. Inbound, each event
//! gets a source id (as a Telegram `update_id`) and may be delivered twice or late.
//!
//! The engine sees only [`TransportError`] values, exactly as from the live transports:
//! - 429 → `RateLimited { retry_after_secs }`: not sent, retried no earlier;
//! - 500 with a Bot API `ok:false` body → `Transient`: provably not sent, retried;
//! - 502 without a body, accept-then-hang, a slow answer past the send timeout →
//!   `Unknown`: counted against the caps, never resent (ground truth kept here).
//!
//! It also keeps the ground-truth ledger of what the platform accepted, by message id, and
//! counts what must never happen: an accepted message sent again, an unknown one resent, a
//! send before its `retry_after`, a send while the cap gate was down.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use rand::RngExt;
use rand_pcg::Pcg64Mcg;

use crate::domain::{Destination, InboundEvent, OutboundMessage, Timestamp};
use crate::engine::DEFAULT_SEND_TIMEOUT;
use crate::transport::{Delivered, InboundSink, InboundSource, SendFuture, Sender, SimTransport, TransportError};

use super::{FaultCounters, FaultPlan, FaultWindows, INBOUND_SALT, OUTBOUND_SALT};

/// Inbound faults stay this far from the horizon, so that an event and its copy are both
/// taken in before the run ends (each is then recorded once, or the checker says so).
const INBOUND_MARGIN_SECS: i64 = 600;

/// One fault a send drew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drawn {
    None,
    ChatLimited { retry_after_secs: u32 },
    Storm { retry_after_secs: u32 },
    Server500,
    Server502 { processed: bool },
    Hang,
    Slow { latency_ms: u32 },
}

/// What the simulated platform knows of one chat (a user or a group).
#[derive(Debug)]
struct Chat {
    rng: Pcg64Mcg,
    /// Message ids the platform accepted (delivered, or accepted before an unknown answer).
    accepted: BTreeSet<u64>,
    /// Message ids whose answer was unknown.
    unknown: BTreeSet<u64>,
    /// No request before this time (the latest `retry_after` given).
    quiet_until: Timestamp,
}

impl Chat {
    fn new(seed: u64, id: u64) -> Chat {
        Chat {
            rng: gavat_sim::stream(seed ^ OUTBOUND_SALT, id, gavat_sim::Purpose::Behaviour),
            accepted: BTreeSet::new(),
            unknown: BTreeSet::new(),
            quiet_until: Timestamp(i64::MIN),
        }
    }
}

/// What the inbound side knows of one user.
#[derive(Debug)]
struct InboundUser {
    rng: Pcg64Mcg,
    /// Events reported so far (their source ids derive from it).
    reported: u64,
    /// Source ids delivered twice, and whether one copy was acknowledged already.
    doubled: BTreeMap<u64, bool>,
}

/// The inbound half's state, shared with the sink it wraps.
#[derive(Debug)]
struct InboundFaults {
    users: Vec<Mutex<InboundUser>>,
    plan: FaultPlan,
    /// Faults fire before this time only.
    until: Timestamp,
    counters: Arc<FaultCounters>,
}

/// The simulated world with seeded faults at its edge (see the module documentation).
#[derive(Debug)]
pub struct FaultyTransport {
    inner: Arc<SimTransport>,
    plan: FaultPlan,
    /// Faults fire before this time only (`stop_after_days`, or the horizon).
    until: Timestamp,
    windows: Arc<FaultWindows>,
    users: Vec<Mutex<Chat>>,
    groups: Vec<Mutex<Chat>>,
    inbound: Arc<InboundFaults>,
    counters: Arc<FaultCounters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A user's `n`-th event's source id: a SplitMix64 mix of the two (distinct, like Telegram's
/// `update_id`s, and the same in every run of the seed).
fn source_id(user: u64, n: u64) -> u64 {
    let mut z = user.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n.wrapping_add(0x6576_656e_7473);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl FaultyTransport {
    /// `inner` behind the faults of `plan`, drawn from `seed`; faults fire before `until`;
    /// the world's events stop at `horizon`.
    pub fn new(
        inner: Arc<SimTransport>,
        plan: FaultPlan,
        seed: u64,
        until: Timestamp,
        horizon: Timestamp,
        windows: Arc<FaultWindows>,
        counters: Arc<FaultCounters>,
    ) -> FaultyTransport {
        let population = inner.population();
        let users = population.users.iter().map(|u| Mutex::new(Chat::new(seed, u.id))).collect();
        // Group streams are numbered apart from user ids.
        let groups = population.groups.iter().map(|g| Mutex::new(Chat::new(seed, g.id | 1 << 62))).collect();
        let inbound_users = population
            .users
            .iter()
            .map(|u| {
                Mutex::new(InboundUser {
                    rng: gavat_sim::stream(seed ^ INBOUND_SALT, u.id, gavat_sim::Purpose::Behaviour),
                    reported: 0,
                    doubled: BTreeMap::new(),
                })
            })
            .collect();
        let inbound = Arc::new(InboundFaults {
            users: inbound_users,
            plan: plan.clone(),
            until: until.min(horizon.plus(-INBOUND_MARGIN_SECS)),
            counters: counters.clone(),
        });
        FaultyTransport { inner, plan, until, windows, users, groups, inbound, counters }
    }

    /// The fault this send draws (none once the faults have stopped).
    fn draw(&self, chat: &mut Chat, at: Timestamp) -> Drawn {
        if at >= self.until {
            return Drawn::None;
        }
        if let Some(end) = self.windows.storms.covering(at) {
            let rest = (end.secs() - at.secs()).clamp(1, i64::from(u32::MAX)) as u32;
            return Drawn::Storm { retry_after_secs: rest };
        }
        let rng = &mut chat.rng;
        let u: f64 = rng.random();
        let [limited, server, hang, slow] = self.plan.outbound_rates();
        let p = &self.plan;
        if u < limited {
            let [low, high] = p.rate_limited.retry_after_secs;
            Drawn::ChatLimited { retry_after_secs: rng.random_range(low..=high) }
        } else if u < limited + server {
            if rng.random::<f64>() < p.server_error.unknown_share {
                Drawn::Server502 { processed: rng.random::<f64>() < p.server_error.processed_share }
            } else {
                Drawn::Server500
            }
        } else if u < limited + server + hang {
            Drawn::Hang
        } else if u < limited + server + hang + slow {
            let [low, high] = p.slow.latency_ms;
            Drawn::Slow { latency_ms: rng.random_range(low..=high) }
        } else {
            Drawn::None
        }
    }

    /// The platform takes the message: the world reacts. `true` if it was delivered.
    fn accept(&self, chat: &mut Chat, message: &OutboundMessage) -> Result<Delivered, TransportError> {
        let answer = futures::FutureExt::now_or_never(self.inner.send(message)).unwrap_or_else(|| {
            Err(TransportError::Unknown { reason: "the simulated world did not answer at once".into() })
        });
        if answer.is_ok() {
            chat.accepted.insert(message.id);
        }
        answer
    }

    /// The answer to one send, with the fault it drew, counted.
    fn answer(&self, chat: &mut Chat, message: &OutboundMessage) -> Result<Delivered, TransportError> {
        let c = &self.counters;
        FaultCounters::add(&c.sends);
        if chat.accepted.contains(&message.id) {
            FaultCounters::add(&c.duplicate_sends);
        }
        if chat.unknown.contains(&message.id) {
            FaultCounters::add(&c.unknown_resent);
        }
        if message.at < chat.quiet_until {
            FaultCounters::add(&c.early_retries);
        }
        if self.windows.outages.covering(message.at).is_some() {
            FaultCounters::add(&c.sends_while_gate_down);
        }
        let unknown = |chat: &mut Chat, delivered: bool, reason: &str| {
            chat.unknown.insert(message.id);
            FaultCounters::add(&c.unknown);
            if delivered {
                FaultCounters::add(&c.unknown_delivered);
            }
            Err(TransportError::Unknown { reason: reason.to_string() })
        };
        let limited = |chat: &mut Chat, retry_after_secs: u32| {
            chat.quiet_until = message.at.plus(i64::from(retry_after_secs));
            FaultCounters::add(&c.retried);
            Err(TransportError::RateLimited { retry_after_secs })
        };
        match self.draw(chat, message.at) {
            Drawn::ChatLimited { retry_after_secs } => {
                FaultCounters::add(&c.rate_limited_chat);
                limited(chat, retry_after_secs)
            }
            Drawn::Storm { retry_after_secs } => {
                FaultCounters::add(&c.rate_limited_storm);
                limited(chat, retry_after_secs)
            }
            Drawn::Server500 => {
                FaultCounters::add(&c.server_error_500);
                FaultCounters::add(&c.retried);
                Err(TransportError::Transient { reason: "HTTP 500, Bot API ok:false".into() })
            }
            Drawn::Server502 { processed } => {
                FaultCounters::add(&c.server_error_502);
                let delivered = processed && self.accept(chat, message).is_ok();
                unknown(chat, delivered, "HTTP 502 without a Bot API body")
            }
            Drawn::Hang => {
                FaultCounters::add(&c.accept_then_hang);
                let delivered = self.accept(chat, message).is_ok();
                let timeout = DEFAULT_SEND_TIMEOUT.as_millis();
                unknown(chat, delivered, &format!("accepted, then no answer within {timeout} ms"))
            }
            Drawn::Slow { latency_ms } if u128::from(latency_ms) > DEFAULT_SEND_TIMEOUT.as_millis() => {
                FaultCounters::add(&c.slow);
                FaultCounters::add(&c.slow_timed_out);
                let delivered = self.accept(chat, message).is_ok();
                unknown(chat, delivered, &format!("no answer within {} ms", DEFAULT_SEND_TIMEOUT.as_millis()))
            }
            drawn => {
                if drawn != Drawn::None {
                    FaultCounters::add(&c.slow);
                }
                let answer = self.accept(chat, message);
                match &answer {
                    Ok(Delivered) => FaultCounters::add(&c.delivered),
                    Err(TransportError::Unknown { .. }) => FaultCounters::add(&c.unknown),
                    Err(TransportError::RateLimited { .. } | TransportError::Transient { .. }) => {
                        FaultCounters::add(&c.retried)
                    }
                    Err(TransportError::Blocked | TransportError::Fatal { .. }) => FaultCounters::add(&c.failed),
                }
                answer
            }
        }
    }
}

impl Sender for FaultyTransport {
    fn send(&self, message: &OutboundMessage) -> SendFuture {
        let chat = match message.to {
            Destination::User(id) => self.users.get(id.0 as usize),
            Destination::Group(id) => self.groups.get(id.0 as usize),
        };
        let Some(chat) = chat else {
            // Not a chat of the world: it answers (chat not found) without faults.
            return self.inner.send(message);
        };
        let answer = self.answer(&mut lock(chat), message);
        Box::pin(std::future::ready(answer))
    }
}

impl InboundFaults {
    /// Gives the event its source id, draws its faults, and hands it (and a copy) on.
    fn deliver(&self, mut event: InboundEvent, sink: &InboundSink) {
        let Some(user) = self.users.get(event.user.0 as usize) else {
            sink.push(event);
            return;
        };
        let twice = {
            let mut u = lock(user);
            u.reported += 1;
            let id = source_id(event.user.0, u.reported);
            event.source = Some(id);
            let reorder: f64 = u.rng.random();
            let duplicate: f64 = u.rng.random();
            let [low, high] = self.plan.reorder_inbound.delay_secs;
            let delay = i64::from(u.rng.random_range(low..=high));
            if event.at < self.until && reorder < self.plan.reorder_inbound.rate && event.at.plus(delay) < self.until {
                event.at = event.at.plus(delay);
                FaultCounters::add(&self.counters.reorder_inbound);
            }
            let twice = event.at < self.until && duplicate < self.plan.duplicate_inbound.rate;
            if twice {
                u.doubled.insert(id, false);
                FaultCounters::add(&self.counters.duplicate_inbound);
            }
            twice
        };
        if twice {
            sink.push(event);
        }
        sink.push(event);
    }

    /// Whether the engine's acknowledgement of `event` goes on to the world: once per event,
    /// however many copies were delivered (the world draws a user's next activity on it).
    fn first_acknowledgement(&self, event: &InboundEvent) -> bool {
        let (Some(user), Some(id)) = (self.users.get(event.user.0 as usize), event.source) else {
            return true;
        };
        let mut u = lock(user);
        match u.doubled.get_mut(&id) {
            None => true,
            Some(acknowledged @ false) => {
                *acknowledged = true;
                true
            }
            Some(true) => {
                u.doubled.remove(&id);
                false
            }
        }
    }
}

impl InboundSource for FaultyTransport {
    fn start(&self, sink: InboundSink) {
        let faults = self.inbound.clone();
        self.inner.start(InboundSink::new(move |event| faults.deliver(event, &sink)));
    }

    fn acknowledge(&self, event: &InboundEvent) {
        if self.inbound.first_acknowledgement(event) {
            self.inner.acknowledge(event);
        }
    }

    fn reject(&self, event: &InboundEvent) {
        self.inner.reject(event);
    }

    fn acknowledge_after_persist(&self) -> bool {
        self.inner.acknowledge_after_persist()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{BotId, ContentKind, DAY, Segment, UserId};
    use crate::faults::AcceptThenHang;

    const START: Timestamp = Timestamp(1_767_225_600);

    fn transport(plan: FaultPlan) -> (FaultyTransport, Arc<FaultCounters>) {
        let scenario = gavat_sim::Scenario::default_scenario();
        let population = gavat_sim::generate(&scenario, 5, 1, START.secs());
        let model = gavat_sim::BehaviourModel::new(&scenario);
        let horizon = START.plus(DAY);
        let world = Arc::new(SimTransport::new(population, model, &scenario.telegram, 1, horizon));
        let counters = Arc::new(FaultCounters::default());
        let windows = Arc::new(FaultWindows::default());
        (FaultyTransport::new(world, plan, 1, horizon, horizon, windows, counters.clone()), counters)
    }

    fn message(id: u64) -> OutboundMessage {
        OutboundMessage {
            id,
            to: Destination::User(UserId(2)),
            bot: BotId(0),
            content: ContentKind::Reminder,
            segment: Segment::WarmLead,
            at: START.plus(3_600),
        }
    }

    fn send(t: &FaultyTransport, id: u64) -> Result<Delivered, TransportError> {
        futures::executor::block_on(t.send(&message(id)))
    }

    /// The checker catches a planted double send: a message the platform accepted, sent
    /// again, is counted (rule 9: every checker is shown to catch a planted bug).
    #[test]
    fn a_planted_double_send_is_caught() {
        let (t, counters) = transport(FaultPlan::default());
        assert_eq!(send(&t, 1), Ok(Delivered));
        assert_eq!(FaultCounters::get(&counters.duplicate_sends), 0);
        assert_eq!(send(&t, 1), Ok(Delivered));
        assert_eq!(FaultCounters::get(&counters.duplicate_sends), 1);
    }

    /// Accept-then-hang answers unknown, with the message delivered (ground truth); the
    /// checker catches a planted resend of that unknown message.
    #[test]
    fn a_planted_resend_of_an_unknown_is_caught() {
        let plan = FaultPlan { accept_then_hang: AcceptThenHang { rate: 1.0 }, ..FaultPlan::default() };
        let (t, counters) = transport(plan);
        assert!(matches!(send(&t, 9), Err(TransportError::Unknown { .. })));
        assert_eq!(FaultCounters::get(&counters.unknown_delivered), 1);
        assert_eq!(FaultCounters::get(&counters.unknown_resent), 0);
        let _ = send(&t, 9);
        assert_eq!(FaultCounters::get(&counters.unknown_resent), 1);
    }

    /// A planted send before a 429's `retry_after` is caught.
    #[test]
    fn a_planted_early_retry_is_caught() {
        let plan = FaultPlan {
            rate_limited: crate::faults::RateLimited { rate: 1.0, retry_after_secs: [30, 30], ..Default::default() },
            ..FaultPlan::default()
        };
        let (t, counters) = transport(plan);
        assert_eq!(send(&t, 1), Err(TransportError::RateLimited { retry_after_secs: 30 }));
        assert_eq!(FaultCounters::get(&counters.early_retries), 0);
        let _ = send(&t, 2);
        assert_eq!(FaultCounters::get(&counters.early_retries), 1, "sent again at once");
    }
}
