//! `[state]`: where the state file lives.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::validate::{Field, Problems};

crate::validated!(RawState => StateDir, StateDir::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawState {
    pub dir: Field<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    pub fn from_raw(raw: RawState, p: &mut Problems) -> Self {
        let dir = raw
            .dir
            .get("state.dir", p)
            .unwrap_or_else(|| "/var/lib/trailguard".into());
        if dir.trim().is_empty() {
            p.push("state.dir", "must not be empty");
        }
        Self(PathBuf::from(dir))
    }
}
