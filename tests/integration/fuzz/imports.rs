//! Row 28: the files `gavat import` and `gavat experiment compare` read — users (CSV and
//! JSON lines) into a real SQLite store, groups (CSV), experiment results (CSV). No panic;
//! every refusal names `FILE:LINE` (a file with no user at all names the file); an import
//! that is refused leaves the store exactly as it was.

use std::path::{Path, PathBuf};

use gavat::config::StrategyBook;
use gavat::domain::Timestamp;
use gavat::import::{self, ImportError, ImportPlan};
use gavat::segmentation::SegmentationRules;
use gavat::store::{SqliteStore, UpsertMode, UserRepository};

use super::mutate::{Shape, Target, Verdict, fuzz, names_file_and_line, with_huge_line};
use crate::common::temp_dir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The store's present for every import here (2027-01-15): the files' times are before it.
const NOW: Timestamp = Timestamp(1_800_000_000);

const USERS_CSV: &str = "id,utc_offset_minutes,bots_followed,joined_at,purchases,sessions,last_active,weekly_sessions,messages_received,responses,recent_responses\n\
1001,180,2,2026-09-01T10:00:00Z,1,40,2026-12-01T18:30:00Z,2.5,12,5,ynyyn\n\
1002,0,1,2026-11-20T08:15:00Z,0,0,2026-12-02T09:00:00Z,0,0,0,\n\
1003,-300,3,2026-06-11T22:40:00+02:00,2,9,2026-11-30T23:10:00Z,1,20,2,nnnyn\n";

const USERS_JSONL: &str = r#"{"id": 2001, "utc_offset_minutes": 330, "bots_followed": 2, "joined_at": "2026-09-01T10:00:00Z", "purchases": 1, "messages_received": 12, "responses": 5, "recent_responses": "ynyyn"}
{"id": 2002, "utc_offset_minutes": -720, "sessions": 12, "weekly_sessions": 3.5, "last_active": "2026-12-02T09:00:00Z", "joined_at": "2026-01-01T00:00:00Z"}
{"id": 2003, "utc_offset_minutes": 840, "sessions_by_local_hour": [0,0,0,0,0,0,0,1,2,3,1,0,0,0,0,0,0,0,4,5,6,1,0,0]}
"#;

/// Unknown columns and keys, and lines that look like users but are not.
const CSV_UNKNOWN: &[&str] = &[
    "id,utc_offset_minutes,email",
    "1004,60,ann@example.com",
    "1005,Europe/Nowhere",
    "\"1006\",\"60\",\"\"\"\"",
    ",,,,,,,,,,,,,,,,,,,,",
];
const JSONL_UNKNOWN: &[&str] = &[
    r#"{"id": 2004, "utc_offset_minutes": 0, "email": "ann@example.com"}"#,
    r#"{"id": 2005, "zone": "Mars/Olympus_Mons", "utc_offset_minutes": 0}"#,
    r#"{"id": 1e400, "utc_offset_minutes": NaN}"#,
    r#"[{"id": 2006}]"#,
    r#"{"id": 2007, "utc_offset_minutes": 0, "id": 2008}"#,
];

/// A store holding the valid file's users, so that refused imports have something to
/// leave alone.
fn store_with(dir: &Path, seed_file: &Path) -> Result<SqliteStore, Box<dyn std::error::Error>> {
    let store = SqliteStore::open(&dir.join("gavat.db"))?;
    let parsed = import::read_file(seed_file)?;
    import::apply(seed_file, Some(&store), &parsed, &plan_inputs().plan(), UpsertMode::Write)?;
    Ok(store)
}

/// The rules and strategies every import is planned with.
struct PlanInputs {
    rules: SegmentationRules,
    book: StrategyBook,
}

impl PlanInputs {
    fn plan(&self) -> ImportPlan<'_> {
        ImportPlan { rules: &self.rules, book: &self.book, now: NOW }
    }
}

fn plan_inputs() -> PlanInputs {
    PlanInputs { rules: SegmentationRules::defaults(), book: StrategyBook::defaults() }
}

/// Everything the store holds about its users, to compare before and after.
fn snapshot(store: &SqliteStore) -> String {
    format!("{:?}", store.load_users())
}

/// Imports each case into `store`: an accepted file is written, a refused one must leave
/// the store as it was and name where every problem is.
fn import_case(store: &SqliteStore, path: &Path, bytes: &[u8], inputs: &PlanInputs, before: &mut String) -> Verdict {
    if let Err(e) = std::fs::write(path, bytes) {
        return Verdict::Broken(format!("cannot write the case: {e}"));
    }
    let origin = path.display().to_string();
    let result = import::read_file(path)
        .and_then(|parsed| import::apply(path, Some(store), &parsed, &inputs.plan(), UpsertMode::Write));
    let after = snapshot(store);
    match result {
        Ok(_) => {
            *before = after;
            Verdict::Accepted
        }
        Err(_) if after != *before => Verdict::Broken("a refused import changed the store".into()),
        Err(ImportError::Store(e)) => Verdict::Broken(format!("the store failed: {e}")),
        Err(e) => {
            let message = e.to_string();
            let located = match &e {
                ImportError::Invalid { .. } => {
                    let report = e.report();
                    !report.is_empty()
                        && report.iter().all(|line| names_file_and_line(line, &origin) || line.contains("… and "))
                }
                ImportError::Empty { .. } => message.starts_with(&origin),
                _ => false,
            };
            Verdict::Rejected { located, message: format!("{message}: {}", e.report().join("; ")) }
        }
    }
}

fn fuzz_users(row: &'static str, seed: u64, name: &str, valid: &str, unknown: &[&str], huge: &[u8]) -> TestResult {
    let dir = temp_dir();
    let seed_file = dir.path().join(format!("seed-{name}"));
    std::fs::write(&seed_file, valid)?;
    let store = store_with(dir.path(), &seed_file)?;
    let inputs = plan_inputs();
    let path: PathBuf = dir.path().join(name);
    let mut before = snapshot(&store);
    let target = Target { row, seed, valid: valid.as_bytes(), shape: Shape::Lines, unknown };
    let tally = fuzz(&target, Some(with_huge_line(valid.as_bytes(), huge)), |bytes| {
        import_case(&store, &path, bytes, &inputs, &mut before)
    });
    let mut report = tally.report(&target);
    report.figure("refused imports that changed the store", tally.broken, tally.rejections + tally.broken);
    report.emit();
    Ok(())
}

/// Users CSV: mutated exports never panic, every refusal names `FILE:LINE`, and a refused
/// import leaves the SQLite store unchanged.
#[test]
fn users_csv_import_survives_hostile_files() -> TestResult {
    fuzz_users("28-users-csv", 2801, "users.csv", USERS_CSV, CSV_UNKNOWN, b"1,")
}

/// Users JSON lines: as for CSV.
#[test]
fn users_jsonl_import_survives_hostile_files() -> TestResult {
    fuzz_users("28-users-jsonl", 2802, "users.jsonl", USERS_JSONL, JSONL_UNKNOWN, b"[1,")
}

const GROUPS_CSV: &str =
    "id,title,utc_offset,members\n1,Fans of tea,180,1001;1002;1003\n2,Night owls,-300,\n3,\"Quoted, title\",0,1002\n";

/// Groups CSV: no panic; every refusal names `FILE:LINE: field`, or the file when it holds
/// no group. The file is read whole before anything is written (`read_groups`), so a
/// refusal writes nothing by construction.
#[test]
fn groups_csv_import_survives_hostile_files() -> TestResult {
    let dir = temp_dir();
    let path = dir.path().join("groups.csv");
    let origin = path.display().to_string();
    let unknown = ["id,title,utc_offset,members,colour", "4,X,Asia/Nowhere,1", "5,Y,60,1;1;x", "-6,Z,0,"];
    let target = Target {
        row: "28-groups-csv",
        seed: 2803,
        valid: GROUPS_CSV.as_bytes(),
        shape: Shape::Lines,
        unknown: &unknown,
    };
    let tally = fuzz(&target, Some(with_huge_line(GROUPS_CSV.as_bytes(), b"1;")), |bytes| {
        if let Err(e) = std::fs::write(&path, bytes) {
            return Verdict::Broken(e.to_string());
        }
        match gavat::live::group_file::read_groups(&path) {
            Ok(_) => Verdict::Accepted,
            Err(e) => {
                let message = e.to_string();
                let located = match e {
                    gavat::live::group_file::GroupFileError::Invalid { .. } => {
                        names_file_and_line(&message, &origin) && message.contains(": field ")
                    }
                    gavat::live::group_file::GroupFileError::Empty { .. } => message.starts_with(&origin),
                    gavat::live::group_file::GroupFileError::Io { .. } => false,
                };
                Verdict::Rejected { located, message }
            }
        }
    });
    tally.report(&target).emit();
    Ok(())
}

/// Experiment results CSV (`gavat experiment compare`): no panic; every refusal names
/// `FILE:LINE`.
#[test]
fn results_csv_survives_hostile_files() -> TestResult {
    use gavat_experiments::results::{ResultsWriter, UserRow, read_rows};
    let mut writer = ResultsWriter::new(Vec::new())?;
    for (user, arm, messages, responses, conversions, opted_out) in
        [(1, "control", 5, 2, 1, false), (2, "treatment", 3, 0, 0, true), (3, "a,b \"quoted\"", 0, 0, 0, false)]
    {
        let engagement = UserRow::engagement_of(responses, conversions, opted_out);
        writer.write(&UserRow {
            user,
            arm: arm.into(),
            messages,
            responses,
            conversions,
            opted_out,
            engagement,
            pre_period: None,
        })?;
    }
    let valid = writer.finish()?;
    let unknown = [
        "user,arm,messages,responses,conversions,opted_out,engagement,extra",
        "4,control,1,5,0,0,5",
        "5,control,1,0,0,2,0",
    ];
    let target = Target { row: "28-results-csv", seed: 2804, valid: &valid, shape: Shape::Lines, unknown: &unknown };
    let origin = "results.csv";
    let tally = fuzz(&target, Some(with_huge_line(&valid, b"9")), |bytes| match read_rows(bytes, origin, |_| Ok(())) {
        Ok(_) => Verdict::Accepted,
        Err(e) => {
            let message = e.to_string();
            Verdict::Rejected { located: names_file_and_line(&message, origin), message }
        }
    });
    tally.report(&target).emit();
    Ok(())
}
