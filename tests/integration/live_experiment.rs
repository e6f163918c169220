//! A live experiment end to end: `gavat run --experiment` on a simulated store splits the
//! users into the experiment's arms by the simulations' hash, sends nothing to the holdout,
//! writes the run logs; `gavat experiment export` writes the per-user results file from the
//! store, and `gavat experiment compare` reads it.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::{Command, Stdio};

use gavat_experiments::design::Experiment;

use super::common::{gavat, s, temp_dir};

/// Two arms and a holdout of 0.3 / 2.3 ≈ 13% of the users.
const EXPERIMENT: &str = r#"
name = "live-cooldown"
salt = "live-cooldown-test"
primary_metric = "response_rate"
minimum_detectable_effect = 0.10

[holdout]
weight = 0.3

[[arms]]
name = "control"
weight = 1.0

[[arms]]
name = "longer-cooldown"
weight = 1.0
[arms.overrides.HOT_LEAD]
cooldown_hours = 8
"#;

/// `gavat …` run in `dir` with the run logs in `dir/logs` and no API token; returns
/// (success, stdout, stderr).
fn gavat_in(dir: &Path, args: &[&str]) -> Result<(bool, String, String), std::io::Error> {
    let out = Command::new(env!("CARGO_BIN_EXE_gavat"))
        .args(args)
        .current_dir(dir)
        .env("GAVAT_LOG", "error")
        .env("GAVAT_LOG_DIR", dir.join("logs"))
        .env_remove("GAVAT_API_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Two days at 3600× under a 2-arm experiment with a holdout: the start names the
/// experiment and its arms' sizes; no holdout user is messaged; the export has every store
/// user once, each in the arm the hash gives, with the outbox's messages counted; compare
/// reads it; the run logs are written.
#[test]
fn a_live_experiment_is_assigned_exported_and_compared() -> Result<(), Box<dyn std::error::Error>> {
    let dir = temp_dir();
    let cwd = dir.path();
    let demo = cwd.join("demo.db");
    let made = gavat(&["simulate", "--users", "300", "--days", "2", "--seed", "7", "--save-state", s(&demo)]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let experiment = cwd.join("live.toml");
    std::fs::write(&experiment, EXPERIMENT)?;
    let store = format!("sqlite:{}", s(&demo));

    let run_args = ["run", "--store", &store, "--experiment", s(&experiment)];
    let (ok, _, err) =
        gavat_in(cwd, &[&run_args[..], &["--time-scale", "3600", "--for", "2d", "--no-http", "--quiet"]].concat())?;
    assert!(ok, "{err}");
    assert!(err.contains("experiment live-cooldown"), "the start names the experiment: {err}");
    for arm in ["control ", "longer-cooldown ", "holdout "] {
        assert!(err.contains(arm), "the start counts arm {arm}: {err}");
    }
    assert!(err.contains("cap violations found by the audit: 0"), "{err}");

    // Who is in which arm, by the simulations' hash.
    let design = Experiment::from_toml_str(EXPERIMENT, "live.toml")?;
    let names: Vec<&str> = design.group_names().collect();
    let weights = design.assignment_weights();
    let arm_of = |user: u64| -> Result<&str, Box<dyn std::error::Error>> {
        Ok(names[gavat_experiments::assignment::assign(&design.salt, user, &weights)?])
    };

    let outbox = std::fs::read_to_string(cwd.join("outbox.jsonl"))?;
    let mut messages: BTreeMap<u64, u64> = BTreeMap::new();
    for line in outbox.lines() {
        let message: serde_json::Value = serde_json::from_str(line)?;
        let user = message["to"]["user"].as_u64().ok_or("a message to a user")?;
        *messages.entry(user).or_default() += 1;
    }
    assert!(!messages.is_empty(), "two days of 300 users send something");
    for user in messages.keys() {
        assert_ne!(arm_of(*user)?, "holdout", "holdout user {user} was messaged");
    }

    let results = cwd.join("results.csv");
    let (ok, _, err) = gavat_in(
        cwd,
        &["experiment", "export", "--store", &store, "--experiment", s(&experiment), "--out", s(&results)],
    )?;
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&results)?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    assert!(header.starts_with("# gavat-experiment {\"experiment\":\"live-cooldown\",\"arms\":["), "{header}");
    assert!(header.contains("\"exported_at\":") && header.contains("\"log_end\":"), "{header}");
    assert_eq!(lines.next(), Some("user,arm,messages,responses,conversions,opted_out,engagement,pre_period"));
    let mut seen = HashSet::new();
    let mut in_holdout = 0;
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let user: u64 = fields[0].parse()?;
        assert!(seen.insert(user), "user {user} appears once");
        assert_eq!(fields[1], arm_of(user)?, "user {user}'s arm is the hash's");
        let sent: u64 = fields[2].parse()?;
        assert_eq!(sent, messages.get(&user).copied().unwrap_or(0), "user {user}'s messages are the outbox's");
        let pre: f64 = fields[7].parse()?;
        assert!(pre >= 0.0 && pre.fract() == 0.0, "user {user}'s pre-period is a count of replies: {pre}");
        in_holdout += usize::from(fields[1] == "holdout");
    }
    assert_eq!(seen.len(), 300, "every user of the store appears");
    assert!(in_holdout > 0, "some users are in the holdout");

    // Another salt assigns other arms than the sends recorded: refused, naming a user.
    let other = cwd.join("other.toml");
    std::fs::write(&other, EXPERIMENT.replace("live-cooldown-test", "another-salt"))?;
    let (ok, _, err) = gavat_in(
        cwd,
        &["experiment", "export", "--store", &store, "--experiment", s(&other), "--out", s(&cwd.join("x.csv"))],
    )?;
    assert!(!ok && err.contains("is this the experiment file that was in force"), "{err}");
    assert!(!cwd.join("x.csv").exists(), "nothing written on refusal");

    let (ok, out, err) = gavat_in(cwd, &["experiment", "compare", s(&results), "--experiment", s(&experiment)])?;
    assert!(ok, "{err}");
    assert!(out.contains("longer-cooldown"), "{out}");

    let logs: Vec<String> = std::fs::read_dir(cwd.join("logs"))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    assert!(logs.iter().any(|n| n.starts_with("crm_analytics_")), "{logs:?}");
    let analytics = std::fs::read_dir(cwd.join("logs"))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("crm_analytics_"))
        .map(|e| std::fs::read_to_string(e.path()))
        .collect::<Result<String, _>>()?;
    assert!(analytics.contains("live store=") && analytics.contains("experiment=live-cooldown"), "{analytics}");
    // No arm asks for the learner: it did not run, and left no decision log.
    assert!(!logs.iter().any(|n| n.starts_with("delivery_optimizer_")), "{logs:?}");
    Ok(())
}
