//! `[aws]`: the regions trailguard watches: a list, or `["all"]` for every region enabled in
//! each guarded account (`account:ListRegions`, at start).

use serde::{Deserialize, Serialize};

use crate::arn::{is_region, partition_of};
use crate::validate::{Field, Problems};

crate::validated!(RawAws => Regions, Regions::from_raw);

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct RawAws {
    pub regions: Field<Vec<String>>,
}

/// The regions to watch: at least one, all in one partition, none twice; or every enabled
/// region (`["all"]`, kept as an empty list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Regions(pub Vec<String>);

impl Regions {
    /// `["all"]`: every region enabled in the account.
    pub fn all(&self) -> bool {
        self.0.is_empty()
    }

    pub fn from_raw(raw: RawAws, p: &mut Problems) -> Self {
        let regions = raw.regions.get("aws.regions", p).unwrap_or_default();
        if regions.iter().any(|r| r == "all") {
            if regions.len() > 1 {
                p.push(
                    "aws.regions",
                    "\"all\" stands alone: [\"all\"] or a list of regions",
                );
            }
            return Self(Vec::new());
        }
        if regions.is_empty() {
            p.push(
                "aws.regions",
                "list at least one region to watch, e.g. [\"us-east-1\"], or [\"all\"]",
            );
        }
        for r in &regions {
            if !is_region(r) {
                p.push(
                    "aws.regions",
                    format!("{r:?} is not an AWS region name like \"eu-west-1\""),
                );
            }
        }
        let mut unique = regions.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != regions.len() {
            p.push("aws.regions", "lists a region twice");
        }
        let partitions: std::collections::BTreeSet<&str> = regions.iter().map(|r| partition_of(r)).collect();
        if partitions.len() > 1 {
            p.push(
                "aws.regions",
                format!(
                    "mixes partitions ({}): run one trailguard per partition",
                    partitions.into_iter().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        Self(regions)
    }
}
