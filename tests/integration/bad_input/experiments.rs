//! Bad input: experiment files, results files and experiment flags.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{gavat, s, temp_dir};

const COOLDOWN: &str = include_str!("../../../experiments/cooldown.toml");
const SEND_HOURS: &str = include_str!("../../../experiments/send_hours.toml");
const HEADER: &str = "user,arm,messages,responses,conversions,opted_out,engagement";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `gavat experiment run` on `text` (written to `dir/e.toml`) with `extra` flags.
fn run_design(dir: &Path, text: &str, extra: &[&str]) -> (Output, PathBuf) {
    let file = dir.join("e.toml");
    std::fs::write(&file, text).unwrap();
    let results = dir.join("results.csv");
    let mut args = vec!["experiment", "run", s(&file), "--days", "2", "--seed", "1", "--out", s(&results)];
    args.extend_from_slice(extra);
    (gavat(&args), results)
}

/// Asserts exit code 2 and a one-line error starting with `start` after `gavat: error: `.
fn assert_usage(out: &Output, start: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let line = err.lines().last().unwrap_or("");
    assert!(line.starts_with(&format!("gavat: error: {start}")), "expected `{start}…`, got: {err}");
}

/// An arm named `holdout` beside a [holdout] table is refused at its line, not merged
/// into the holdout; nothing is written.
#[test]
fn an_arm_named_holdout_is_refused() {
    let dir = temp_dir();
    let text = SEND_HOURS.replace("name = \"evening\"", "name = \"holdout\"");
    let (out, results) = run_design(dir.path(), &text, &["--users", "100"]);
    let file = dir.path().join("e.toml");
    assert_usage(&out, &format!("{}:17: field arms[1].name: \"holdout\" is reserved", file.display()));
    assert!(!results.exists());
}

/// Arm names with a newline are refused; names with commas and quotes are quoted in the
/// results CSV and read back by `compare`.
#[test]
fn arm_names_round_trip_through_the_results_csv() {
    let dir = temp_dir();
    let text = COOLDOWN.replace("name = \"longer-cooldown\"", "name = \"a\\nb\"");
    let (out, _) = run_design(dir.path(), &text, &["--users", "100"]);
    assert_usage(
        &out,
        &format!("{}:15: field arms[1].name: \"a\\nb\" must not contain control", s(&dir.path().join("e.toml"))),
    );

    let text = COOLDOWN.replace("name = \"longer-cooldown\"", "name = 'longer, \"cooler\" down'");
    let (out, results) = run_design(dir.path(), &text, &["--users", "400", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(&results).unwrap();
    assert!(csv.contains(",\"longer, \"\"cooler\"\" down\","), "{csv}");
    let file = dir.path().join("e.toml");
    let out = gavat(&["experiment", "compare", s(&results), "--experiment", s(&file), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["arms"][1]["arm"], "longer, \"cooler\" down");
}

/// Impossible results rows are refused naming the line: a user twice, more replies or
/// purchases than messages (a rate above 1), an engagement that is not its definition.
#[test]
fn impossible_results_rows_are_refused() {
    let dir = temp_dir();
    let csv = dir.path().join("r.csv");
    let cases = [
        ("1,a,2,1,0,0,1\n2,b,2,0,0,0,0\n1,b,2,0,0,0,0\n", "r.csv:4: column user: 1 has a row already"),
        ("1,a,2,1,0,0,1\n2,b,2,3,0,0,3\n", "r.csv:3: column responses: 3 is more than the 2 messages"),
        ("1,a,2,1,0,0,1\n2,b,2,0,5,0,10\n", "r.csv:3: column conversions: 5 is more than the 2 messages"),
        ("1,a,2,1,0,0,1\n2,b,2,1,0,0,9\n", "r.csv:3: column engagement: `9` is not responses"),
        ("", "r.csv:1: empty file"),
    ];
    std::fs::write(&csv, format!("{HEADER}\n1,a,2,1,0,0,1\n2,b,2,0,0,0,0\n")).unwrap();
    assert_usage(&gavat(&["experiment", "compare", s(&csv), "--alpha", "1e300"]), "--alpha 1e300: must be strictly");
    for (body, expected) in cases {
        let text = if body.is_empty() { String::new() } else { format!("{HEADER}\n{body}") };
        std::fs::write(&csv, text).unwrap();
        let out = gavat(&["experiment", "compare", s(&csv)]);
        assert_usage(&out, &format!("{}", csv.display()).replace("r.csv", ""));
        assert!(stderr(&out).contains(expected), "{expected}: {}", stderr(&out));
    }
}

/// `plan` refuses effects too small to plan for (never prints 18446744073709551615) and
/// out-of-range or non-finite inputs, quoting the flag as written.
#[test]
fn plan_refuses_impossible_inputs() {
    let out = gavat(&["experiment", "plan", "--baseline", "1e-7", "--mde", "1e-7"]);
    assert_usage(&out, "--baseline 1e-7 --mde 1e-7: the effect is too small to plan for");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("18446744073709551615"));
    let cases: [(&[&str], &str); 6] = [
        (&["--baseline", "0.05", "--mde", "1e300"], "--mde 1e300: must move the rate"),
        (&["--baseline", "nan", "--mde", "0.1"], "--baseline nan: must be strictly between 0 and 1"),
        (&["--baseline", "0.05", "--mde", "inf"], "--mde inf: must move the rate"),
        (&["--baseline", "0.05", "--mde", "0.1", "--alpha", "1e-300"], "--alpha 1e-300: is too close to 0"),
        (&["--baseline", "0.05", "--mde", "0.1", "--power", "1"], "--power 1: must be strictly between 0 and 1"),
        (&["--baseline", "0.05", "--mde", "-2"], "--mde -2: must move the rate"),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["experiment", "plan"];
        args.extend_from_slice(flags);
        assert_usage(&gavat(&args), expected);
    }
    // A fall is a legitimate effect.
    assert!(gavat(&["experiment", "plan", "--baseline", "0.05", "--mde", "-0.1"]).status.success());
}

/// Experiment-file value errors name file:line: field and the value as written — `1e300`,
/// not a 301-digit number — including an arm's strategy overrides.
#[test]
fn experiment_value_errors_name_the_line_and_value() {
    let dir = temp_dir();
    let file = dir.path().join("e.toml");
    let cases = [
        (COOLDOWN.replace("= 0.10", "= 1e300"), "6: field minimum_detectable_effect: 1e300 must be"),
        (COOLDOWN.replace("power = 0.8", "power = 1.5"), "8: field power: 1.5 must be strictly between 0 and 1"),
        (COOLDOWN.replacen("weight = 1.0", "weight = 0", 1), "12: field arms[0].weight: 0 must be a positive number"),
        (
            COOLDOWN.replace("cooldown_hours = 8", "cooldown_hours = 1e300"),
            "18: field arms[1].overrides.HOT_LEAD.cooldown_hours: 1e300 ",
        ),
        (
            COOLDOWN.replace("\"opt_out_rate\"", "\"bounces\""),
            "23: field guardrails[0].metric: unknown variant `bounces`",
        ),
    ];
    for (text, expected) in cases {
        let (out, results) = run_design(dir.path(), &text, &["--users", "100"]);
        assert_usage(&out, &format!("{}:{expected}", file.display()));
        assert!(!stderr(&out).contains("00000000000"), "{}", stderr(&out));
        assert!(!results.exists());
    }
}

/// `--users 1` is refused before any work (statistics need users in every group), and
/// leaves no file behind — never a 0-byte CSV.
#[test]
fn too_few_users_is_refused_before_any_work() {
    let dir = temp_dir();
    let (out, results) = run_design(dir.path(), SEND_HOURS, &["--users", "1"]);
    assert_usage(
        &out,
        "--users 1: experiment send-hour-test splits users into 3 groups; comparing them needs at least 6 users",
    );
    assert!(!results.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the experiment file");
}

/// Outputs are checked before any work: a directory, a missing directory, an input file,
/// two outputs on one file, and an unwritable place all exit 2 and change nothing.
#[test]
fn bad_output_paths_exit_2() {
    let dir = temp_dir();
    let file = dir.path().join("e.toml");
    std::fs::write(&file, COOLDOWN).unwrap();
    let run = |out: &Path, extra: &[&str]| {
        let mut args =
            vec!["experiment", "run", s(&file), "--users", "100", "--days", "2", "--seed", "1", "--out", s(out)];
        args.extend_from_slice(extra);
        gavat(&args)
    };
    let d = dir.path().display();
    assert_usage(&run(dir.path(), &[]), &format!("--out {d}: is a directory"));
    let missing = dir.path().join("nowhere/r.csv");
    assert_usage(&run(&missing, &[]), &format!("--out {}: directory {d}/nowhere does not exist", missing.display()));
    assert_usage(&run(&file, &[]), &format!("--out {}: is the experiment file", file.display()));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), COOLDOWN, "the input is untouched");
    let results = dir.path().join("r.csv");
    assert_usage(
        &run(&results, &["--plot", s(&results)]),
        &format!("--plot {}: is the same file as --out", results.display()),
    );
    assert_usage(&run(&results, &["--plot", s(&file)]), &format!("--plot {}: is the experiment file", file.display()));
    assert_usage(&run(Path::new("/dev/null"), &[]), "--out /dev/null: exists and is not a regular file");
    if cfg!(target_os = "linux") {
        // Not writable, even by root.
        assert_usage(&run(Path::new("/proc/r.csv"), &[]), "--out /proc/r.csv: cannot write in directory /proc");
    }
    assert!(!results.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left behind");
}

/// A failed command leaves an existing output as it was, and no temporary file beside it.
#[test]
fn a_failed_command_leaves_outputs_untouched() {
    let dir = temp_dir();
    let csv = dir.path().join("r.csv");
    std::fs::write(&csv, format!("{HEADER}\n1,only,2,1,0,0,1\n")).unwrap();
    let plot = dir.path().join("arms.svg");
    std::fs::write(&plot, "old").unwrap();
    let out = gavat(&["experiment", "compare", s(&csv), "--plot", s(&plot)]);
    assert_usage(&out, "need at least two arms with users to compare, found 1");
    assert_eq!(std::fs::read_to_string(&plot).unwrap(), "old");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

/// `run` says where the results went (absolute path), on stdout in text mode and on stderr
/// with --json; --help names the default.
#[test]
fn run_says_where_the_results_went() {
    let dir = temp_dir();
    let (out, results) = run_design(dir.path(), COOLDOWN, &["--users", "200", "--plot", s(&dir.path().join("a.svg"))]);
    assert!(out.status.success(), "{}", stderr(&out));
    let results = results.canonicalize().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("per-user results: {}\n", results.display())), "{stdout}");
    assert!(stdout.contains("chart: "), "{stdout}");
    let (out, _) = run_design(dir.path(), COOLDOWN, &["--users", "200", "--json"]);
    assert!(
        stderr(&out).contains(&format!("gavat: per-user results written to {}", results.display())),
        "{}",
        stderr(&out)
    );
    let help = gavat(&["experiment", "run", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: experiment-results.csv]"));
}
