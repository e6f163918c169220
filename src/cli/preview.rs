//! `gavat preview USER_ID --store …`: the next message a user would get — its text (HTML
//! and as Telegram shows it), language and why, segment, template or LLM, bot — and the
//! earliest time it may go out with the rule that keeps it from going sooner. The user's
//! state comes from the store (SQLite or Redis, as `gavat users analyze` reads it), the
//! text from `gavat.toml`'s `[messages]` (`--config`; without one, the shipped templates)
//! through the same [`TemplateText`](crate::compose::TemplateText) a live Telegram run sends with.
//!
//! What it assumes, as the engine does: the governing segment's strategy chooses; a run
//! starts each user's content rotation at the strategy's first kind and sends through the
//! user's first bot; the time is the store's present (the end of its saved run, or now).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::anyhow;
use clap::Args;

use crate::compose::TextKind;
use crate::contacts::ContactBook;
use crate::domain::UserId;
use crate::inspect::{InspectError, MessagePreview, preview_message};
use crate::live::config::RunConfig;

use super::CliError;
use super::crm::{StoreArg, print_json};

/// `gavat preview`'s flags.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The user id.
    pub user: u64,
    /// The store.
    #[command(flatten)]
    pub store: StoreArg,
    /// gavat.toml, for `[messages]` (templates, default language, offer, LLM), the bots'
    /// names and the experiment in force; without it, the shipped templates in English.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Runs `gavat preview` with the store's contacts.
pub fn run(args: PreviewArgs) -> Result<(), CliError> {
    let (contacts, source) = store_contacts(&args.store)?;
    preview(args, contacts, source)
}

/// The contacts of `store` (a user without one is previewed in the default language, with
/// the language's word for an unknown name, and the output says so).
fn store_contacts(store: &StoreArg) -> Result<(Arc<dyn ContactBook>, &'static str), CliError> {
    Ok((store.contacts()?, "the store's contacts"))
}

/// `gavat preview` with `contacts` (described by `source` in the output).
pub fn preview(args: PreviewArgs, contacts: Arc<dyn ContactBook>, source: &'static str) -> Result<(), CliError> {
    let config = match &args.config {
        Some(path) => RunConfig::from_path(path).map_err(CliError::usage)?,
        None => RunConfig::default(),
    };
    let (db, now) = args.store.open()?;
    let preview = preview_message(db.as_ref(), UserId(args.user), now, &config, contacts, source)
        .map_err(|e| match e {
            InspectError::Store(e) => CliError::failure(e),
            other => CliError::usage(other),
        })?
        .ok_or_else(|| CliError::usage(anyhow!("no user {} in {}", args.user, args.store.name())))?;
    if args.store.json {
        return print_json(&preview);
    }
    print_preview(&preview, &config);
    Ok(())
}

fn print_preview(p: &MessagePreview, config: &RunConfig) {
    println!("user {} (as of {})", p.user, p.now);
    let Some(segment) = p.segment else {
        println!("no message: the user holds no segment, so no strategy messages them");
        return;
    };
    println!("segment:   {} (governs)", segment.as_str());
    if let Some(kind) = p.content {
        println!("content:   {kind} (the strategy's first kind: a run starts each user's rotation there)");
    }
    if let Some(bot) = &p.bot {
        let note = if config.bots.is_empty() { " — no [[bots]] configured" } else { "" };
        println!("bot:       {} (bot {}){note}", bot.name, bot.index);
    }
    match (p.earliest, p.not_sooner_because) {
        (None, Some(rule)) => println!("when:      never ({})", rule.as_str()),
        (None, None) => println!("when:      never (no allowed time)"),
        (Some(_), None) => println!("when:      now (no rule holds it back)"),
        (Some(t), Some(rule)) => println!("when:      not before {t}: {} holds it back until then", rule.as_str()),
    }
    if let (Some(planned), Some(earliest)) = (p.planned, p.earliest)
        && planned != earliest
    {
        println!("planned:   {planned} (the strategy's optimal hours)");
    }
    let Some(m) = &p.message else { return };
    println!("language:  {} ({})", m.language, m.language_reason);
    println!("contacts:  {}", p.contacts);
    let fallback = if m.template.fallback_steps == 0 {
        String::new()
    } else {
        format!(", {} step(s) down the fallback chain", m.template.fallback_steps)
    };
    println!("template:  [{}].{} in {}{fallback}", m.template.table, m.template.kind, m.template.file);
    if let Some(arm) = &m.arm {
        println!("arm:       {arm} (template set {})", m.template_set);
    }
    match (m.text, &m.llm_fallback) {
        (TextKind::Llm, _) => println!("text:      LLM variant (passed every guardrail)"),
        (TextKind::Template, Some(why)) => println!("text:      template (LLM fell back: {why})"),
        (TextKind::Template, None) => println!("text:      template (LLM off)"),
    }
    println!("--- HTML (parse_mode = HTML) ---");
    println!("{}", m.html);
    println!("--- as Telegram shows it ---");
    println!("{}", m.plain);
    for button in &m.buttons {
        println!("[{}]", button.label);
    }
}
