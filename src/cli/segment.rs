//! `gavat segment`: re-segments every user of a CRM store — the rules first, then, for the
//! users the rules are unsure of, an OpenAI-compatible model when a key is configured —
//! writes the result back, logs every decision to `logs/segmentation_YYYY-MM-DD.log`
//! (`--log-dir`, `GAVAT_LOG_DIR`; the path is said on stderr) and prints what changed and
//! what the LLM pass did.

use std::hash::BuildHasher;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::config::StrategyBook;
use crate::decision_log::DecisionLog;
use crate::domain::{Segment, SegmentSet, Timestamp, UserId};
use crate::llm::{Aggregates, LlmClient, LlmSegmenter, Request, Resolution, SegmenterStats};
use crate::policy::governing_segment;
use crate::segmentation::{self, Explained, SegmentationRules};
use crate::store::{SegmentUpdate, SqliteStore};

use super::CliError;
use super::crm::{StoreArg, print_json};
use super::llm_args::LlmArgs;
use super::simulate::Progress;

/// Flags of `gavat segment`.
#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// Segmentation rules replacing the shipped thresholds (`config/segmentation.toml`).
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Strategies that decide which segment governs (default: the shipped ones).
    #[arg(long, value_name = "FILE")]
    pub strategy: Option<PathBuf>,
    /// Where the daily decision log goes (`<dir>/segmentation_YYYY-MM-DD.log`).
    #[arg(long, value_name = "DIR", env = "GAVAT_LOG_DIR", default_value = "logs")]
    pub log_dir: PathBuf,
    /// The LLM.
    #[command(flatten)]
    pub llm: LlmArgs,
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
}

/// One user between the rules and the write-back.
struct Pending {
    user: UserId,
    before: Vec<Segment>,
    decided: Vec<Explained>,
    source: &'static str,
    /// The rules' best confidence is below the threshold.
    unsure: bool,
    /// What the LLM is told, for unsure users when it is on.
    aggregates: Option<Aggregates>,
    /// Why the LLM's answer was not used, for the log.
    fallback: Option<String>,
}

/// What the LLM pass did, for the summary.
#[derive(Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
enum LlmSummary {
    RulesOnly { why: &'static str, unsure_users: u64, threshold: f32 },
    Assisted { model: String, base_url: String, threshold: f32, max_calls: u64, max_tokens: u64, stats: SegmenterStats },
}

/// A random salt for this store's hashed user ids.
fn fresh_salt() -> String {
    let a = std::collections::hash_map::RandomState::new().hash_one(0u8);
    let b = std::collections::hash_map::RandomState::new().hash_one(1u8);
    format!("{a:016x}{b:016x}")
}

/// Runs `gavat segment`.
pub fn run(args: SegmentArgs) -> Result<(), CliError> {
    let rules = match &args.rules {
        Some(path) => SegmentationRules::from_path(path).map_err(CliError::usage)?,
        None => SegmentationRules::defaults(),
    };
    let book = match &args.strategy {
        Some(path) => StrategyBook::from_path(path).map_err(CliError::usage)?,
        None => StrategyBook::defaults(),
    };
    let llm = args.llm.settings()?;
    let threshold = args.llm.llm_threshold;
    let (db, now) = args.store.open_for_writing()?;
    let mut log = DecisionLog::open(&args.log_dir, "segmentation", SystemClock.now()).map_err(|e| {
        CliError::usage(anyhow!("--log-dir {}: cannot open the decision log: {e}", args.log_dir.display()))
    })?;

    let mut pending = rules_pass(&db, now, &rules, threshold, llm.is_ok(), !args.store.json)?;
    let unsure = pending.iter().filter(|p| p.unsure).count() as u64;
    let summary = match llm {
        Err(why) => LlmSummary::RulesOnly { why, unsure_users: unsure, threshold },
        Ok(settings) => {
            let client = LlmClient::new(settings).map_err(CliError::usage)?;
            let salt = db.meta_get_or_insert("llm_id_salt", fresh_salt).map_err(CliError::failure)?;
            let segmenter = LlmSegmenter::new(client, salt);
            let stats = llm_pass(&segmenter, &db, &mut pending, unsure, !args.store.json)?;
            let s = segmenter.client().settings();
            LlmSummary::Assisted {
                model: s.model.clone(),
                base_url: s.base_url.clone(),
                threshold,
                max_calls: s.max_calls,
                max_tokens: s.max_tokens,
                stats,
            }
        }
    };

    // Write back, log and count what changed.
    let (mut changed, mut gained, mut lost) = (0u64, [0u64; 8], [0u64; 8]);
    let mut updates = Vec::with_capacity(pending.len());
    let mut log_error = None;
    for p in pending {
        let after: Vec<Segment> = p.decided.iter().map(|e| e.segment).collect();
        let differs = p.before.iter().any(|s| !after.contains(s)) || after.iter().any(|s| !p.before.contains(s));
        if differs {
            changed += 1;
            for s in after.iter().filter(|s| !p.before.contains(s)) {
                gained[s.index()] += 1;
            }
            for s in p.before.iter().filter(|s| !after.contains(s)) {
                lost[s.index()] += 1;
            }
        }
        if differs || p.source == "llm" || p.fallback.is_some() {
            let detail: Vec<String> = p
                .decided
                .iter()
                .map(|e| format!("{}={:.2} ({})", e.segment, e.confidence, e.reasons.join("; ")))
                .collect();
            let fallback = p.fallback.as_deref().map(|f| format!(" llm_fallback={f}")).unwrap_or_default();
            let line = format!("user={} source={}{fallback} {}", p.user, p.source, detail.join(" "));
            if let Err(e) = log.write(now, &line) {
                log_error.get_or_insert(e);
            }
        }
        let mut set = SegmentSet::default();
        for e in &p.decided {
            set.insert(e.segment, e.confidence);
        }
        updates.push(SegmentUpdate {
            user: p.user,
            governing: governing_segment(&set, &book),
            segments: p.decided,
            source: p.source,
        });
    }
    db.replace_segments(&updates).map_err(CliError::failure)?;
    if let Some(e) = log_error.or_else(|| log.flush().err()) {
        return Err(CliError::failure(anyhow!("{}: cannot write the decision log: {e}", log.path().display())));
    }
    eprintln!("gavat: decision log: {}", log.path().display());
    print_summary(&args, now, updates.len() as u64, changed, &gained, &lost, &summary, log.path())
}

/// Runs the rules over every user; marks the unsure ones for the LLM when `llm_on`.
fn rules_pass(
    db: &SqliteStore,
    now: Timestamp,
    rules: &SegmentationRules,
    threshold: f32,
    llm_on: bool,
    show_progress: bool,
) -> Result<Vec<Pending>, CliError> {
    let total = db.user_count().map_err(CliError::failure)?.max(1);
    let progress = Progress::new(format!("segmenting {total} users"), show_progress);
    let mut tick = progress.callback();
    let mut pending = Vec::with_capacity(total as usize);
    db.for_each_user(|u| {
        let decided = segmentation::explain(&u.profile, now, rules);
        let unsure = decided.first().is_none_or(|e| e.confidence < threshold);
        pending.push(Pending {
            user: u.profile.id,
            before: u.segments.iter().map(|e| e.segment).collect(),
            aggregates: (llm_on && unsure).then(|| Aggregates::of(&u.profile, now, &decided)),
            unsure,
            decided,
            source: "rules",
            fallback: None,
        });
        if pending.len() % 1_000 == 0 {
            tick(pending.len() as f64 / total as f64);
        }
    })
    .map_err(CliError::failure)?;
    progress.finish();
    Ok(pending)
}

/// Asks the model about the unsure users and puts its validated verdicts in place.
fn llm_pass(
    segmenter: &LlmSegmenter,
    db: &SqliteStore,
    pending: &mut [Pending],
    unsure: u64,
    show_progress: bool,
) -> Result<SegmenterStats, CliError> {
    let mut index = Vec::with_capacity(unsure as usize);
    let mut requests = Vec::with_capacity(unsure as usize);
    for (i, p) in pending.iter_mut().enumerate() {
        if let Some(aggregates) = p.aggregates.take() {
            index.push(i);
            requests.push(Request { user: p.user, aggregates });
        }
    }
    let progress = Progress::new(format!("asking the LLM about {unsure} unsure users"), show_progress);
    let mut tick = progress.callback();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(anyhow!("cannot start the async runtime: {e}")))?;
    let wall_now = SystemClock.now().secs();
    let (resolutions, stats) = runtime
        .block_on(segmenter.resolve(requests, db, wall_now, |done, total| tick(done as f64 / total.max(1) as f64)))
        .map_err(CliError::failure)?;
    progress.finish();
    let model = &segmenter.client().settings().model;
    for (i, (_, resolution)) in index.into_iter().zip(resolutions) {
        let p = &mut pending[i];
        match resolution {
            Resolution::Accepted { verdict, cached } => {
                let origin = if cached { "cached" } else { "asked" };
                p.decided = verdict
                    .segments
                    .iter()
                    .map(|&(segment, confidence)| Explained {
                        segment,
                        confidence,
                        reasons: vec![format!("LLM {model} ({origin}): {}", verdict.reason)],
                    })
                    .collect();
                p.source = "llm";
            }
            Resolution::Fallback(f) => p.fallback = Some(format!("{} ({f})", f.label())),
        }
    }
    Ok(stats)
}

#[allow(clippy::too_many_arguments)]
fn print_summary(
    args: &SegmentArgs,
    now: Timestamp,
    users: u64,
    changed: u64,
    gained: &[u64; 8],
    lost: &[u64; 8],
    llm: &LlmSummary,
    log: &std::path::Path,
) -> Result<(), CliError> {
    if args.store.json {
        let segments: Vec<serde_json::Value> = Segment::ALL
            .iter()
            .map(|s| serde_json::json!({"segment": s.as_str(), "gained": gained[s.index()], "lost": lost[s.index()]}))
            .collect();
        return print_json(&serde_json::json!({
            "users": users, "changed": changed, "segments": segments, "log": log, "llm": llm,
        }));
    }
    match llm {
        LlmSummary::RulesOnly { why, unsure_users, threshold } => println!(
            "segmentation: rules only ({why}); {unsure_users} users below confidence {threshold:.2} keep their rule segments"
        ),
        LlmSummary::Assisted { model, base_url, threshold, max_calls, max_tokens, stats } => {
            println!(
                "segmentation: rules, then {model} at {base_url} for the {} users below confidence {threshold:.2}",
                stats.users
            );
            println!(
                "  {} distinct profiles: {} answered from the cache; {} requests, {} tokens (budget {max_calls} requests, {max_tokens} tokens)",
                stats.distinct_profiles, stats.cache_hits, stats.calls, stats.tokens
            );
            let fallbacks: u64 = stats.fallback_users.values().sum();
            let why: Vec<String> = stats.fallback_users.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!(
                "  LLM verdict used for {} users; rules kept for {fallbacks}{}",
                stats.accepted_users,
                if why.is_empty() { String::new() } else { format!(" ({})", why.join(", ")) }
            );
            if stats.unreadable_cache_entries > 0 {
                println!("  {} unreadable cache entries were asked again", stats.unreadable_cache_entries);
            }
        }
    }
    println!("{users} users segmented as of {now}; {changed} changed segments");
    for s in Segment::ALL {
        if gained[s.index()] + lost[s.index()] > 0 {
            println!("  {:<18} +{} -{}", s.as_str(), gained[s.index()], lost[s.index()]);
        }
    }
    Ok(())
}
