//! The credential report: one CSV for the account (`text/csv`, a header line, then one line per
//! user). Read with a CSV parser, since user names may contain commas. Pure.

use chrono::{DateTime, Utc};

/// One access-key slot of a report line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportKey {
    pub active: bool,
    pub last_rotated: DateTime<Utc>,
    pub last_used: Option<DateTime<Utc>>,
}

/// One user's line: the user name and its (up to two) access keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportLine {
    pub user: String,
    pub keys: Vec<ReportKey>,
}

fn time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Parses a report. Columns are found by name, so added or reordered columns do not matter.
pub fn parse(csv_bytes: &[u8]) -> Result<Vec<ReportLine>, String> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(csv_bytes);
    let header = reader
        .headers()
        .map_err(|e| format!("credential report header: {e}"))?
        .clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let user_col = col("user").ok_or("credential report has no `user` column")?;
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| format!("credential report line {}: {e}", i + 2))?;
        let cell = |name: &str| col(name).and_then(|c| row.get(c)).unwrap_or("N/A");
        let mut keys = Vec::new();
        for n in 1..=2 {
            let Some(last_rotated) = time(cell(&format!("access_key_{n}_last_rotated"))) else {
                continue;
            };
            keys.push(ReportKey {
                active: cell(&format!("access_key_{n}_active")).eq_ignore_ascii_case("true"),
                last_rotated,
                last_used: time(cell(&format!("access_key_{n}_last_used_date"))),
            });
        }
        out.push(ReportLine {
            user: row.get(user_col).unwrap_or_default().to_owned(),
            keys,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_commas_and_missing_keys() {
        let csv = "user,arn,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date\n\
                   <root_account>,arn:aws:iam::1:root,false,N/A,N/A,false,N/A,N/A\n\
                   \"ops,admin\",arn:aws:iam::1:user/x,true,2026-01-01T00:00:00+00:00,N/A,false,2025-06-01T00:00:00+00:00,2025-07-01T00:00:00+00:00\n";
        let lines = parse(csv.as_bytes()).unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].keys.is_empty());
        assert_eq!(lines[1].user, "ops,admin");
        assert_eq!(lines[1].keys.len(), 2);
        assert!(lines[1].keys[0].active && lines[1].keys[0].last_used.is_none());
        assert!(!lines[1].keys[1].active && lines[1].keys[1].last_used.is_some());
    }
}
