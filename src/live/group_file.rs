//! The groups file of `gavat import groups FILE.csv`: one group a line under the header
//! `id,title,utc_offset,members` — the group's id, its title, its offset from UTC in minutes
//! (-720 to 840: its allowed hours and daily limit are in this local time) and its members
//! as user ids separated by `;` (may be empty). Read whole before anything is written; every
//! problem is reported as `FILE:LINE: field NAME: problem`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::domain::{GroupId, UserId, UtcOffset, Zone};
use crate::store::GroupRecord;

/// The header the file must start with.
pub const HEADER: [&str; 4] = ["id", "title", "utc_offset", "members"];

/// The header with the optional fifth column: the group's Telegram chat id (negative), saved
/// in the contact book so that the Telegram transport can post to the group.
pub const HEADER_WITH_CHAT: [&str; 5] = ["id", "title", "utc_offset", "members", "chat_id"];

/// A group as the file gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportedGroup {
    /// The group and its members.
    pub record: GroupRecord,
    /// Its Telegram chat id, when the file has the `chat_id` column.
    pub chat_id: Option<i64>,
}

/// Why a groups file cannot be imported. Nothing is written for any of them.
#[derive(Debug, thiserror::Error)]
pub enum GroupFileError {
    /// The file cannot be read.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system or the CSV reader said.
        cause: String,
    },
    /// A line (or the header) is wrong.
    #[error("{}:{line}: field {field}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: u64,
        /// The column (`id`, `members`, or `header`).
        field: &'static str,
        /// What is wrong, with the value as written.
        message: String,
    },
    /// The file holds no group.
    #[error("{}: no groups to import (only a header, or nothing)", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads and checks `path` whole.
pub fn read_groups(path: &Path) -> Result<Vec<ImportedGroup>, GroupFileError> {
    let io = |cause: String| GroupFileError::Io { path: path.to_path_buf(), cause };
    let file = std::fs::File::open(path).map_err(|e| io(e.to_string()))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).trim(csv::Trim::All).from_reader(file);
    let invalid = |line: u64, field: &'static str, message: String| GroupFileError::Invalid {
        path: path.to_path_buf(),
        line,
        field,
        message,
    };
    let mut groups = Vec::new();
    let mut ids = BTreeSet::new();
    let mut record = csv::StringRecord::new();
    let mut line = 0u64;
    let mut columns = HEADER.len();
    let mut chats = BTreeSet::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let at = e.position().map_or(line + 1, |p| p.line());
                return Err(invalid(at, "line", format!("not CSV: {e}")));
            }
        }
        line = record.position().map_or(line + 1, |p| p.line());
        if groups.is_empty() && ids.is_empty() && line == 1 {
            let header: Vec<&str> = record.iter().collect();
            if header == HEADER_WITH_CHAT {
                columns = HEADER_WITH_CHAT.len();
            } else if header != HEADER {
                return Err(invalid(
                    1,
                    "header",
                    format!("is {header:?}; it must be id,title,utc_offset,members (and optionally chat_id)"),
                ));
            }
            continue;
        }
        if record.len() != columns {
            return Err(invalid(line, "line", format!("has {} columns, not {columns}", record.len())));
        }
        let id = record[0]
            .parse::<u64>()
            .map_err(|_| invalid(line, "id", format!("{:?} is not a group id (a whole number ≥ 0)", &record[0])))?;
        if !ids.insert(id) {
            return Err(invalid(line, "id", format!("{id} appears twice in the file")));
        }
        let title = record[1].to_string();
        if title.is_empty() || title.chars().count() > 255 {
            return Err(invalid(line, "title", "must be 1–255 characters".into()));
        }
        let offset =
            record[2].parse::<i32>().ok().filter(|m| (-720..=840).contains(m)).ok_or_else(|| {
                invalid(line, "utc_offset", format!("{:?} is not minutes from -720 to 840", &record[2]))
            })?;
        let mut members = BTreeSet::new();
        for part in record[3].split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let user = part
                .parse::<u64>()
                .map_err(|_| invalid(line, "members", format!("{part:?} is not a user id (ids separated by ;)")))?;
            members.insert(UserId(user));
        }
        let chat_id = match record.get(4) {
            None | Some("") => None,
            Some(text) => {
                let chat = text.parse::<i64>().ok().filter(|c| *c < 0).ok_or_else(|| {
                    invalid(line, "chat_id", format!("{text:?} is not a Telegram group chat id (a negative number)"))
                })?;
                if !chats.insert(chat) {
                    return Err(invalid(line, "chat_id", format!("{chat} appears twice in the file")));
                }
                Some(chat)
            }
        };
        let record = GroupRecord {
            id: GroupId(id),
            title,
            zone: Zone::Fixed(UtcOffset(offset)),
            members: members.into_iter().collect(),
        };
        groups.push(ImportedGroup { record, chat_id });
    }
    if groups.is_empty() {
        return Err(GroupFileError::Empty { path: path.to_path_buf() });
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<GroupRecord>, GroupFileError> {
        read_with_chats(text).map(|groups| groups.into_iter().map(|g| g.record).collect())
    }

    fn read_with_chats(text: &str) -> Result<Vec<ImportedGroup>, GroupFileError> {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("groups.csv");
        std::fs::write(&path, text).expect("write");
        read_groups(&path)
    }

    /// A good file reads whole (quoted titles with commas, empty member lists); each kind of
    /// bad line names its line and field.
    #[test]
    fn reads_groups_and_names_each_bad_field() {
        let groups =
            read("id,title,utc_offset,members\n7,\"Deals, Istanbul\",180,3;1; 2\n8,Empty,0,\n").expect("valid");
        assert_eq!(groups[0].title, "Deals, Istanbul");
        assert_eq!(groups[0].members, vec![UserId(1), UserId(2), UserId(3)]);
        assert!(groups[1].members.is_empty());
        for (text, expected) in [
            ("id,name,utc_offset,members\n1,a,0,\n", ":1: field header:"),
            ("id,title,utc_offset,members\n1,a,0,\nx,b,0,\n", ":3: field id:"),
            ("id,title,utc_offset,members\n1,a,0,\n1,b,0,\n", ":3: field id: 1 appears twice"),
            ("id,title,utc_offset,members\n1,a,900,\n", ":2: field utc_offset:"),
            ("id,title,utc_offset,members\n1,a,0,4;z\n", ":2: field members: \"z\""),
            ("id,title,utc_offset,members\n1,,0,\n", ":2: field title:"),
            ("id,title,utc_offset,members\n1,a,0\n", ":2: field line: has 3 columns"),
        ] {
            let err = read(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        assert!(matches!(read("id,title,utc_offset,members\n"), Err(GroupFileError::Empty { .. })));
        let with_chats =
            read_with_chats("id,title,utc_offset,members,chat_id\n7,Deals,180,1,-1001\n8,Other,0,,\n").expect("valid");
        assert_eq!(with_chats.iter().map(|g| g.chat_id).collect::<Vec<_>>(), [Some(-1001), None]);
        for (text, expected) in [
            ("id,title,utc_offset,members,chat_id\n7,a,0,,1001\n", ":2: field chat_id: \"1001\""),
            ("id,title,utc_offset,members,chat_id\n7,a,0,,-5\n8,b,0,,-5\n", ":3: field chat_id: -5 appears twice"),
            ("id,title,utc_offset,members,chat_id\n7,a,0,\n", ":2: field line: has 4 columns, not 5"),
        ] {
            let err = read_with_chats(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
    }
}
