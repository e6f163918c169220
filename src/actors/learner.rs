//! `LearnerActor`: receives every outcome, aggregates sends and responses per segment and
//! local send hour, and — when the engine runs with a learner — answers the scheduler's
//! periodic [`Learn`] with the strategies to put in force and the audit entries of the
//! look (`crate::learner::planner` decides). Without a learner it only aggregates.

use std::sync::Arc;

use actix::prelude::*;

use serde::Serialize;

use crate::config::StrategyBook;
use crate::domain::Timestamp;
use crate::learner::adviser::{parse_advice, system_message, user_message};
use crate::learner::{HourTable, Learner, Look, StrategyChange};
use crate::llm::{BlockingLlm, CallError};

use super::messages::{OutcomeKind, OutcomesRecorded};

/// What the LLM adviser did in a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AdviserStats {
    /// Looks at which it was asked.
    pub asked: u64,
    /// Replies that were one valid JSON object of the schema.
    pub replies: u64,
    /// Replies refused whole (not the schema's JSON).
    pub malformed_replies: u64,
    /// Proposals read from the valid replies.
    pub proposals: u64,
    /// Requests that failed, by kind (timeout, rate_limited, unauthorized, ...).
    pub call_errors: std::collections::BTreeMap<&'static str, u64>,
    /// Set after a 401/403: not asked again in this run.
    pub disabled: bool,
}

/// The adviser and what it did.
#[derive(Debug)]
struct AdviserLink {
    llm: BlockingLlm,
    stats: AdviserStats,
}

/// One learning arm: its own outcomes and its own learner.
#[derive(Debug)]
struct ArmLearner {
    table: HourTable,
    learner: Learner,
}

/// The learner.
#[derive(Debug, Default)]
pub struct LearnerActor {
    /// Every outcome, all arms together (the run's table).
    table: HourTable,
    /// Each user's arm by dense index (empty: everyone is in arm 0).
    arm_of: Arc<Vec<u16>>,
    /// The arm of a user past the end of `arm_of` (one who joined while the engine ran).
    arm_of_joining: Option<super::scheduler::ArmOfJoining>,
    /// A learner for each arm that learns.
    arms: Vec<Option<ArmLearner>>,
    adviser: Option<AdviserLink>,
}

impl LearnerActor {
    /// An actor that re-plans the strategies of each arm with a learner in `learners`
    /// (indexed by arm; arm 0 alone in a run without arms), each from its own users'
    /// outcomes, consulting `adviser` (an OpenAI-compatible model) at every look after the
    /// observation period if given.
    pub fn with_learners(
        arm_of: Arc<Vec<u16>>,
        learners: Vec<Option<Learner>>,
        adviser: Option<BlockingLlm>,
    ) -> LearnerActor {
        LearnerActor {
            table: HourTable::default(),
            arm_of,
            arm_of_joining: None,
            arms: learners
                .into_iter()
                .map(|l| l.map(|learner| ArmLearner { table: HourTable::default(), learner }))
                .collect(),
            adviser: adviser.map(|llm| AdviserLink { llm, stats: AdviserStats::default() }),
        }
    }

    /// Attributes the outcomes of users who join while the engine runs to the arm `f` gives
    /// them (the same the scheduler places them in), not to arm 0.
    pub fn with_arm_of_joining(mut self, f: Option<super::scheduler::ArmOfJoining>) -> LearnerActor {
        self.arm_of_joining = f;
        self
    }

    /// Asks the adviser about `arm`'s strategies after this look's own decision, and adds
    /// what its proposals came to.
    fn consult_adviser(&mut self, arm: usize, at: Timestamp, book: &StrategyBook, look: &mut Look) {
        let (Some(Some(state)), Some(adviser)) = (self.arms.get_mut(arm), self.adviser.as_mut()) else { return };
        let learner = &mut state.learner;
        if adviser.stats.disabled || !learner.observing_done(at) {
            return;
        }
        let current = look.book.clone().unwrap_or_else(|| book.clone());
        let system = system_message(learner.settings());
        let user = user_message(&current, &learner.totals(), &state.table);
        adviser.stats.asked += 1;
        let reply = match adviser.llm.complete_json(&system, &user) {
            Ok(completion) => completion.content,
            Err(e) => {
                *adviser.stats.call_errors.entry(e.label()).or_default() += 1;
                if matches!(e, CallError::Unauthorized(_)) {
                    adviser.stats.disabled = true;
                }
                look.notes.push(format!("llm adviser unavailable ({e}); the statistics decide alone"));
                return;
            }
        };
        let advice = match parse_advice(&reply) {
            Ok(advice) => advice,
            Err(e) => {
                adviser.stats.malformed_replies += 1;
                look.notes.push(format!("llm reply refused whole: {e}"));
                return;
            }
        };
        adviser.stats.replies += 1;
        adviser.stats.proposals += advice.len() as u64;
        let advised = learner.consider_advice(at, advice, &state.table, &current);
        look.changes.extend(advised.changes);
        look.notes.extend(advised.notes);
        if advised.book.is_some() {
            look.book = advised.book;
        }
    }
}

/// Scheduler → learner: look now, with the strategies in force; answered with a
/// [`StrategyUpdate`] (always: the scheduler waits for the look before time moves on).
#[derive(Message)]
#[rtype(result = "StrategyUpdate")]
pub struct Learn {
    /// Engine time.
    pub at: Timestamp,
    /// Whose strategies (the experiment arm; 0 without arms).
    pub arm: u16,
    /// The strategies in force.
    pub book: Arc<StrategyBook>,
}

impl std::fmt::Debug for Learn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Learn").field("at", &self.at).finish_non_exhaustive()
    }
}

/// Learner → scheduler: new strategies (if any) and the look's audit entries.
#[derive(Debug, MessageResponse)]
pub struct StrategyUpdate {
    /// Whose strategies.
    pub arm: u16,
    /// The strategies to put in force from now on.
    pub book: Option<Arc<StrategyBook>>,
    /// What was applied, kept, rolled back or rejected.
    pub changes: Vec<StrategyChange>,
    /// What could not be an audit entry (an adviser's failures), for the logs.
    pub notes: Vec<(Timestamp, String)>,
    /// The adviser's counts so far, if there is one.
    pub adviser: Option<AdviserStats>,
}

impl Handler<Learn> for LearnerActor {
    type Result = StrategyUpdate;

    fn handle(&mut self, msg: Learn, _ctx: &mut Self::Context) -> StrategyUpdate {
        let arm = usize::from(msg.arm);
        let mut look = match self.arms.get_mut(arm) {
            Some(Some(state)) => state.learner.tick(msg.at, &state.table, &msg.book),
            _ => Default::default(),
        };
        self.consult_adviser(arm, msg.at, &msg.book, &mut look);
        for c in &mut look.changes {
            c.arm = msg.arm;
        }
        for note in &look.notes {
            tracing::warn!(target: "gavat::learner", at = %msg.at, "{note}");
        }
        for c in &look.changes {
            tracing::info!(
                target: "gavat::learner",
                id = c.id, at = %c.at, segment = c.segment.as_str(), action = c.action.as_str(),
                field = c.field, before = %c.before, after = %c.after, evidence = %c.evidence,
                "strategy change"
            );
        }
        StrategyUpdate {
            arm: msg.arm,
            book: look.book.map(Arc::new),
            changes: look.changes,
            notes: look.notes.into_iter().map(|n| (msg.at, n)).collect(),
            adviser: self.adviser.as_ref().map(|a| a.stats.clone()),
        }
    }
}

impl Actor for LearnerActor {
    type Context = Context<Self>;
}

impl Handler<OutcomesRecorded> for LearnerActor {
    type Result = ();

    fn handle(&mut self, msg: OutcomesRecorded, _ctx: &mut Self::Context) {
        self.table.batches += 1;
        for o in msg.outcomes.iter() {
            let arm = match (self.arm_of.get(o.index as usize), &self.arm_of_joining) {
                (Some(arm), _) => *arm,
                (None, Some(f)) => f.arm_of(o.user),
                _ => 0,
            };
            let own = self.arms.get_mut(usize::from(arm)).and_then(Option::as_mut);
            let s = o.segment.index();
            match o.kind {
                OutcomeKind::Sent { local_hour, .. } => {
                    self.table.sent[s][usize::from(local_hour)] += 1;
                    if let Some(state) = own {
                        state.table.sent[s][usize::from(local_hour)] += 1;
                        state.learner.record_sent(o.segment);
                    }
                }
                OutcomeKind::Response { send_hour } => {
                    self.table.responses[s][usize::from(send_hour % 24)] += 1;
                    if let Some(state) = own {
                        state.table.responses[s][usize::from(send_hour % 24)] += 1;
                        state.learner.record_response(o.segment);
                    }
                }
                OutcomeKind::OptOut => {
                    if let Some(state) = own {
                        state.learner.record_opt_out(o.segment);
                    }
                }
                OutcomeKind::Conversion => {
                    if let Some(state) = own {
                        state.learner.record_conversion(o.segment);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Asks the learner for its table.
#[derive(Message, Debug)]
#[rtype(result = "HourTable")]
pub struct GetHourTable;

impl Handler<GetHourTable> for LearnerActor {
    type Result = MessageResult<GetHourTable>;

    fn handle(&mut self, _msg: GetHourTable, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.table.clone())
    }
}
