//! Users join a running engine: a profile sent to the engine's arrivals is placed in its
//! shard at once, segmented and planned, and messaged within its caps; an event for a user
//! the engine does not know is counted, never delivered to somebody else.

use std::sync::Arc;
use std::time::Duration;

use gavat::clock::ScaledClock;
use gavat::domain::{Destination, HOUR, InboundEvent, InboundKind, Timestamp, UserId, UserProfile};
use gavat::engine::{Engine, user_arrivals};
use gavat::store::MemoryStore;
use gavat::transport::MemoryTransport;

/// 11:58 UTC: warm leads' optimal hours start two minutes later.
const START: Timestamp = Timestamp(1_767_225_600 + 11 * HOUR + 58 * 60);

fn warm_lead(id: u64) -> UserProfile {
    super::common::warm_lead(id, START)
}

/// Two users at start; a third (a sparse id) joins a third of a second in (about twenty
/// engine minutes at 3600×) and is messaged like the others; an opt-out for a user nobody
/// knows is counted as unknown.
#[test]
fn a_user_who_joins_mid_run_is_messaged_within_caps() {
    let transport = Arc::new(MemoryTransport::new());
    let (join, arrivals) = user_arrivals();
    let engine = Engine::builder()
        .clock(Arc::new(ScaledClock::new(START, 3_600)))
        .transport(transport.clone())
        .store(Arc::new(MemoryStore::keeping_everything()))
        .users(vec![warm_lead(0), warm_lead(1)])
        .horizon(START.plus(3 * HOUR))
        .seed(4)
        .threads(2)
        .arrivals(arrivals)
        .build()
        .expect("all seams given");
    let newcomer = UserId(1_000_003);
    let feeder = transport.clone();
    let result = actix_rt::System::new()
        .block_on(async move {
            actix_rt::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                join.send(warm_lead(newcomer.0)).expect("the engine is running");
                join.send(warm_lead(0)).expect("a known user again is ignored");
                feeder.inject(InboundEvent {
                    at: START,
                    user: UserId(77),
                    kind: InboundKind::OptOut,
                    group: None,
                    source: None,
                });
            });
            engine.run().await
        })
        .expect("run");
    let sent: Vec<_> = transport.sent().into_iter().filter(|m| m.to == Destination::User(newcomer)).collect();
    assert!(!sent.is_empty(), "the newcomer was messaged");
    assert!(sent.iter().all(|m| m.at >= START.plus(10 * 60)), "not before joining: {sent:?}");
    assert_eq!(result.users, 3, "two at start, one joined (the repeat ignored)");
    assert_eq!(result.scheduler.joined_users, 1);
    assert_eq!(result.scheduler.unknown_users, 1);
    assert_eq!(result.scheduler.cap_violations, 0);
}

/// With experiment arms, a user who joins is given the arm the arms' assignment says, not
/// arm 0: a newcomer sent to the silenced holdout gets nothing, one sent to arm `b` is
/// messaged under `b` with `b` recorded on the sends, and the arms of the users present at
/// the start are kept. Arms with arrivals but no assignment for newcomers are refused.
#[test]
fn a_user_who_joins_gets_the_arm_the_assignment_gives() -> Result<(), Box<dyn std::error::Error>> {
    use gavat::config::StrategyBook;
    use gavat::engine::{ArmOfJoining, Arms};
    use gavat::store::LogKind;

    let (to_b, to_holdout) = (UserId(2_000_001), UserId(2_000_002));
    let book = StrategyBook::defaults();
    let arms = |of_joining: Option<ArmOfJoining>| Arms {
        names: vec![Arc::from("a"), Arc::from("b"), Arc::from("holdout")],
        books: vec![Arc::new(book.clone()), Arc::new(book.clone()), Arc::new(book.silenced())],
        of_user: vec![0, 0],
        learning: Vec::new(),
        of_joining,
    };
    let engine = |arms: Arms, arrivals| {
        let transport = Arc::new(MemoryTransport::new());
        let store = Arc::new(MemoryStore::keeping_everything());
        let built = Engine::builder()
            .clock(Arc::new(ScaledClock::new(START, 3_600)))
            .transport(transport.clone())
            .store(store.clone())
            .users(vec![warm_lead(0), warm_lead(1)])
            .horizon(START.plus(3 * HOUR))
            .seed(4)
            .threads(2)
            .arms(arms)
            .arrivals(arrivals)
            .build();
        (built, transport, store)
    };
    let (refused, ..) = engine(arms(None), user_arrivals().1);
    assert!(refused.is_err(), "arms with arrivals need an assignment for newcomers");

    let assign = ArmOfJoining::new(move |user| if user == to_holdout { 2 } else { 1 });
    let (join, arrivals) = user_arrivals();
    let (built, transport, store) = engine(arms(Some(assign)), arrivals);
    let engine = built?;
    let result = actix_rt::System::new().block_on(async move {
        actix_rt::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            for user in [to_b, to_holdout] {
                join.send(warm_lead(user.0)).expect("the engine is running");
            }
        });
        engine.run().await
    })?;
    assert_eq!(result.scheduler.joined_users, 2);
    let sent_to = |user| transport.sent().into_iter().filter(|m| m.to == Destination::User(user)).count();
    assert!(sent_to(to_b) > 0, "the newcomer in arm b was messaged");
    assert_eq!(sent_to(to_holdout), 0, "the newcomer in the holdout got nothing");
    let arm_of_sends = |user| -> Vec<Option<Arc<str>>> {
        store.log().into_iter().filter(|e| e.user == user && e.kind == LogKind::Send).map(|e| e.arm).collect()
    };
    let b_sends = arm_of_sends(to_b);
    assert!(!b_sends.is_empty() && b_sends.iter().all(|a| a.as_deref() == Some("b")), "{b_sends:?}");
    let first = arm_of_sends(UserId(0));
    assert!(first.iter().all(|a| a.as_deref() == Some("a")), "users at the start keep their arm: {first:?}");
    assert_eq!(result.scheduler.cap_violations, 0);
    Ok(())
}
