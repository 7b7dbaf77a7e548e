//! Approval requirements (`@approval("sre:2,security")`) and the rule that
//! decides when they are met: every listed group gets its count of *distinct*
//! humans, and one human fills at most one seat even if they belong to several
//! of the groups. That is a bipartite matching of approvers to seats.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Largest count a single group can require; keeps matching trivially cheap.
pub const MAX_COUNT: u32 = 100;

/// `count` distinct approvals from members of `group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupQuorum {
    /// The group whose members may approve.
    pub group: String,
    /// How many distinct members must approve.
    pub count: u32,
}

/// All the groups that must approve, sorted by group name, one entry per group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Requirement(pub Vec<GroupQuorum>);

/// Why an `@approval` annotation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    /// The annotation is empty.
    #[error("approval requirement is empty; expected e.g. \"sre:2,security\"")]
    Empty,
    /// A group name is not valid.
    #[error("invalid group `{0}` in approval requirement")]
    Group(String),
    /// A count is not a number from 1 to 100.
    #[error(
        "invalid count `{count}` for group `{group}`: expected a number from 1 to {MAX_COUNT}"
    )]
    Count {
        /// The group the count belongs to.
        group: String,
        /// The text that is not a count.
        count: String,
    },
}

impl std::str::FromStr for Requirement {
    type Err = RequirementError;

    /// Parses `group[:count][,group[:count]…]`; a count defaults to 1 and a
    /// group listed twice keeps its highest count.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut groups: BTreeMap<String, u32> = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (group, count) = match part.split_once(':') {
                Some((g, c)) => (g.trim(), Some(c.trim())),
                None => (part, None),
            };
            if crate::principal::validate_name("group", group).is_err() {
                return Err(RequirementError::Group(group.to_owned()));
            }
            let count = match count {
                None => 1,
                Some(c) => match c.parse::<u32>() {
                    Ok(n) if (1..=MAX_COUNT).contains(&n) => n,
                    _ => {
                        return Err(RequirementError::Count {
                            group: group.to_owned(),
                            count: c.to_owned(),
                        })
                    }
                },
            };
            let seat = groups.entry(group.to_owned()).or_insert(0);
            *seat = (*seat).max(count);
        }
        if groups.is_empty() {
            return Err(RequirementError::Empty);
        }
        Ok(Requirement(
            groups
                .into_iter()
                .map(|(group, count)| GroupQuorum { group, count })
                .collect(),
        ))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, q) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}:{}", q.group, q.count)?;
        }
        Ok(())
    }
}

impl Requirement {
    /// Union of two requirements: every group of either, highest count wins.
    pub fn merge(&self, other: &Requirement) -> Requirement {
        let mut groups: BTreeMap<&str, u32> = BTreeMap::new();
        for q in self.0.iter().chain(other.0.iter()) {
            let seat = groups.entry(q.group.as_str()).or_insert(0);
            *seat = (*seat).max(q.count);
        }
        Requirement(
            groups
                .into_iter()
                .map(|(g, count)| GroupQuorum {
                    group: g.to_owned(),
                    count,
                })
                .collect(),
        )
    }

    /// Whether no approval is needed at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The group names, in order.
    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|q| q.group.as_str())
    }

    /// Whether `approvers` (each a human's groups at the time they approved)
    /// fill every seat, each human filling at most one.
    pub fn is_met_by<'a, I, G>(&self, approvers: I) -> bool
    where
        I: IntoIterator<Item = G>,
        G: IntoIterator<Item = &'a str>,
    {
        let seats: usize = self.0.iter().map(|q| q.count as usize).sum();
        matched_seats(self, approvers) == seats
    }
}

/// Size of a maximum matching between approvers and seats (Kuhn's augmenting
/// paths). Approver and seat counts are small (≤ a few hundred), so the
/// O(V·E) bound is irrelevant.
fn matched_seats<'a, I, G>(req: &Requirement, approvers: I) -> usize
where
    I: IntoIterator<Item = G>,
    G: IntoIterator<Item = &'a str>,
{
    // seat index → group index
    let seat_group: Vec<usize> = req
        .0
        .iter()
        .enumerate()
        .flat_map(|(gi, q)| std::iter::repeat_n(gi, q.count as usize))
        .collect();
    // approver → list of seats they may fill
    let adjacency: Vec<Vec<usize>> = approvers
        .into_iter()
        .map(|groups| {
            let member: Vec<usize> = groups
                .into_iter()
                .filter_map(|g| req.0.iter().position(|q| q.group == g))
                .collect();
            seat_group
                .iter()
                .enumerate()
                .filter(|(_, gi)| member.contains(gi))
                .map(|(si, _)| si)
                .collect()
        })
        .collect();
    let mut seat_owner: Vec<Option<usize>> = vec![None; seat_group.len()];
    let mut matched = 0;
    for a in 0..adjacency.len() {
        let mut visited = vec![false; seat_group.len()];
        if augment(a, &adjacency, &mut seat_owner, &mut visited) {
            matched += 1;
        }
    }
    matched
}

fn augment(
    a: usize,
    adj: &[Vec<usize>],
    owner: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for &s in &adj[a] {
        if visited[s] {
            continue;
        }
        visited[s] = true;
        let free = match owner[s] {
            None => true,
            Some(other) => augment(other, adj, owner, visited),
        };
        if free {
            owner[s] = Some(a);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Requirement {
        s.parse().unwrap()
    }

    #[test]
    fn parses_counts_and_defaults() {
        assert_eq!(req("sre:2,security").to_string(), "security:1,sre:2");
        assert_eq!(req(" sre : 2 , sre:3 ").to_string(), "sre:3");
        assert_eq!("".parse::<Requirement>(), Err(RequirementError::Empty));
        assert_eq!(
            "sre:0".parse::<Requirement>().unwrap_err().to_string(),
            "invalid count `0` for group `sre`: expected a number from 1 to 100"
        );
        assert!("sre:x".parse::<Requirement>().is_err());
        assert!("s re".parse::<Requirement>().is_err());
    }

    #[test]
    fn merge_takes_highest_count_per_group() {
        assert_eq!(
            req("sre:2,dba").merge(&req("sre:1,security:2")).to_string(),
            "dba:1,security:2,sre:2"
        );
    }

    #[test]
    fn one_human_fills_one_seat() {
        let r = req("sre:1,security:1");
        // alice is in both groups but counts once
        assert!(!r.is_met_by([vec!["sre", "security"]]));
        assert!(r.is_met_by([vec!["sre", "security"], vec!["sre"]]));
    }

    #[test]
    fn matching_finds_assignment_greedy_would_miss() {
        // greedy could seat alice in sre and leave security empty
        let r = req("sre:1,security:1");
        assert!(r.is_met_by(
            [vec!["sre", "security"], vec!["security"]]
                .iter()
                .map(|g| g.iter().copied())
        ));
    }

    #[test]
    fn counts_need_distinct_members() {
        let r = req("sre:2");
        assert!(!r.is_met_by([vec!["sre"]]));
        assert!(!r.is_met_by([vec!["sre"], vec!["dba"]]));
        assert!(r.is_met_by([vec!["sre"], vec!["sre", "dba"]]));
    }
}
