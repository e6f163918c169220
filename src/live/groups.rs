//! Groups in a live run: the `[groups]` table of `gavat.toml` (the group policy: a group's
//! own caps in its local time, Telegram's posts per minute, the member-exposure limit), and
//! the watch that carries membership changes written to the store — by the Telegram inbound
//! side from `chat_member` updates ([`GroupStore::change_membership`]), or by `gavat import
//! groups` — into the running engine ([`crate::engine::group_updates`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::actors::scheduler::{DEFAULT_EXPOSURE_LIMIT, GroupPolicy};
use crate::config::{FieldError, parse_hours};
use crate::domain::{Caps, GroupId, HOUR, UserId};
use crate::store::{GroupRecord, GroupStore, MembershipChanged};

/// Telegram's limit on messages to groups, per minute: the default and the most allowed.
pub const TELEGRAM_GROUP_POSTS_PER_MINUTE: u32 = 20;

/// How often the store's memberships are looked at.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// `[groups]` as written; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsSection {
    daily_limit: Option<u32>,
    cooldown_hours: Option<f64>,
    allowed_hours: Option<String>,
    optimal_hours: Option<String>,
    posts_per_minute: Option<u32>,
    member_exposure_limit: Option<u32>,
    post_interval_hours: Option<f64>,
}

/// The group policy of a live run without a `[groups]` table.
pub fn default_group_policy() -> GroupPolicy {
    GroupPolicy {
        caps: Caps {
            daily_limit: 2,
            cooldown_secs: 6 * HOUR,
            allowed_hours: crate::domain::HourMask::window(10, 21),
            period_days: 1,
        },
        optimal_hours: crate::domain::HourMask::window(12, 14),
        posts_per_minute: TELEGRAM_GROUP_POSTS_PER_MINUTE,
        interval_secs: 12 * HOUR,
        exposure_limit: DEFAULT_EXPOSURE_LIMIT,
    }
}

/// Validates `[groups]` into the policy (defaults for what is not written); an error names
/// the field (`groups.posts_per_minute`), which the caller locates in the file.
pub(crate) fn group_policy(section: Option<GroupsSection>) -> Result<GroupPolicy, FieldError> {
    let mut policy = default_group_policy();
    let Some(s) = section else { return Ok(policy) };
    let hours = |field: &str, v: f64| -> Result<i64, FieldError> {
        if (0.0..=720.0).contains(&v) {
            Ok((v * 3_600.0).round() as i64)
        } else {
            Err(FieldError::new(format!("groups.{field}"), "must be 0–720 hours"))
        }
    };
    if let Some(n) = s.daily_limit {
        if !(1..=24).contains(&n) {
            return Err(FieldError::new("groups.daily_limit", "must be 1–24 posts per group local day"));
        }
        policy.caps.daily_limit = n;
    }
    if let Some(h) = s.cooldown_hours {
        policy.caps.cooldown_secs = hours("cooldown_hours", h)?;
    }
    if let Some(text) = s.allowed_hours {
        policy.caps.allowed_hours = parse_hours(&text).map_err(|m| FieldError::new("groups.allowed_hours", m))?;
    }
    match s.optimal_hours {
        Some(text) => {
            policy.optimal_hours = parse_hours(&text).map_err(|m| FieldError::new("groups.optimal_hours", m))?;
        }
        // Without preferred hours of its own, a group prefers its whole allowed window.
        None => policy.optimal_hours = policy.optimal_hours.intersect(policy.caps.allowed_hours),
    }
    if policy.optimal_hours.intersect(policy.caps.allowed_hours) != policy.optimal_hours {
        return Err(FieldError::new("groups.optimal_hours", "is not inside groups.allowed_hours"));
    }
    if policy.optimal_hours.is_empty() {
        policy.optimal_hours = policy.caps.allowed_hours;
    }
    if let Some(n) = s.posts_per_minute {
        if !(1..=TELEGRAM_GROUP_POSTS_PER_MINUTE).contains(&n) {
            return Err(FieldError::new(
                "groups.posts_per_minute",
                "must be 1–20: Telegram allows 20 messages a minute to groups, never more",
            ));
        }
        policy.posts_per_minute = n;
    }
    if let Some(n) = s.member_exposure_limit {
        if n > 100 {
            return Err(FieldError::new("groups.member_exposure_limit", "must be 0–100 group posts a local day"));
        }
        policy.exposure_limit = n;
    }
    if let Some(h) = s.post_interval_hours {
        let secs = hours("post_interval_hours", h)?;
        if secs < HOUR {
            return Err(FieldError::new("groups.post_interval_hours", "must be at least 1 hour"));
        }
        policy.interval_secs = secs;
    }
    Ok(policy)
}

/// Each group's members, by group.
fn memberships(groups: &[GroupRecord]) -> BTreeMap<GroupId, BTreeSet<UserId>> {
    groups.iter().map(|g| (g.id, g.members.iter().copied().collect())).collect()
}

/// Every join and leave from `before` to `after`, for the groups in `before` (a group added
/// later is posted to from the next start), in group and user order.
pub fn changes(
    before: &BTreeMap<GroupId, BTreeSet<UserId>>,
    after: &BTreeMap<GroupId, BTreeSet<UserId>>,
) -> Vec<MembershipChanged> {
    let empty = BTreeSet::new();
    let mut out = Vec::new();
    for (group, old) in before {
        let new = after.get(group).unwrap_or(&empty);
        out.extend(new.difference(old).map(|&user| MembershipChanged { group: *group, user, joined: true }));
        out.extend(old.difference(new).map(|&user| MembershipChanged { group: *group, user, joined: false }));
    }
    out
}

/// Watches the store's memberships from `start` (the groups the engine was given) and sends
/// every change into `updates`. Runs until the engine drops the receiving end.
pub async fn watch(
    store: Arc<dyn GroupStore>,
    start: Vec<GroupRecord>,
    updates: tokio::sync::mpsc::UnboundedSender<MembershipChanged>,
) {
    let mut seen = memberships(&start);
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        if updates.is_closed() {
            return;
        }
        let now = match store.load_groups() {
            Ok(groups) => memberships(&groups),
            Err(e) => {
                tracing::warn!(error = %e, "Could not read the groups' members; trying again.");
                continue;
            }
        };
        for change in changes(&seen, &now) {
            tracing::info!(group = change.group.0, user = %change.user, joined = change.joined, "Group membership changed.");
            if updates.send(change).is_err() {
                return;
            }
        }
        // Groups added since the start stay out of the engine until the next start.
        seen = now.into_iter().filter(|(g, _)| seen.contains_key(g)).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<GroupPolicy, FieldError> {
        #[derive(Deserialize)]
        struct File {
            groups: Option<GroupsSection>,
        }
        let file: File = toml::from_str(text).expect("toml");
        group_policy(file.groups)
    }

    /// Defaults without a table; each key read; Telegram's 20 a minute never raised.
    #[test]
    fn groups_table_reads_and_checks_every_key() {
        assert_eq!(parsed("").expect("defaults"), default_group_policy());
        let p = parsed(
            "[groups]\ndaily_limit = 3\ncooldown_hours = 2\nallowed_hours = \"9-22\"\noptimal_hours = \"18-20\"\n\
             posts_per_minute = 5\nmember_exposure_limit = 2\npost_interval_hours = 4\n",
        )
        .expect("valid");
        assert_eq!((p.caps.daily_limit, p.caps.cooldown_secs, p.posts_per_minute), (3, 2 * HOUR, 5));
        assert_eq!((p.exposure_limit, p.interval_secs), (2, 4 * HOUR));
        let err = parsed("[groups]\nposts_per_minute = 30\n").expect_err("above Telegram's limit");
        assert_eq!(err.field, "groups.posts_per_minute");
        assert_eq!(parsed("[groups]\noptimal_hours = \"6-8\"\n").expect_err("outside").field, "groups.optimal_hours");
    }

    /// Joins and leaves of the known groups, in order; a new group is not followed.
    #[test]
    fn changes_are_joins_and_leaves_of_known_groups() {
        let set = |ids: &[u64]| ids.iter().map(|i| UserId(*i)).collect::<BTreeSet<_>>();
        let before = BTreeMap::from([(GroupId(1), set(&[1, 2])), (GroupId(2), set(&[3]))]);
        let after = BTreeMap::from([(GroupId(1), set(&[2, 4])), (GroupId(3), set(&[9]))]);
        let c = changes(&before, &after);
        assert_eq!(
            c,
            vec![
                MembershipChanged { group: GroupId(1), user: UserId(4), joined: true },
                MembershipChanged { group: GroupId(1), user: UserId(1), joined: false },
                MembershipChanged { group: GroupId(2), user: UserId(3), joined: false },
            ]
        );
    }
}
