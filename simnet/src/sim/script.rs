//! The script of a scenario: timed steps (who sends, who crashes, which links are cut) that
//! replace the random workload and faults. Plain data, carried by [`SimConfig`] and played by
//! the simulator; the named stories and their checks are in `scenario`, above both.
//!
//! [`SimConfig`]: super::config::SimConfig

use super::workload::WorkKind;

/// Who a step acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Who {
    /// One node by index.
    Node(usize),
    /// Every relay the roster names for this member.
    RelaysOf(usize),
}

/// One scripted action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// An officer at `from` submits an urgent preservation request to `to`.
    Send {
        /// Sender index.
        from: usize,
        /// Recipient index.
        to: usize,
    },
    /// kill -9: the node loses its unflushed writes and stays down until `Restart` or the heal.
    Crash(Who),
    /// The node comes back from its store.
    Restart(Who),
    /// Nothing crosses between these nodes and everyone else, either way.
    Isolate(Vec<usize>),
    /// Packets from `from` to `to` are dropped (one direction; everyone else unaffected).
    CutLink {
        /// Whose packets are dropped.
        from: usize,
        /// On their way to whom.
        to: usize,
    },
    /// Every cut made by earlier steps ends.
    MendAll,
    /// The node runs `key rotate` and restarts on its new keys (a node that is down comes back
    /// on them at its restart); the roster authority issues the next roster serial naming them,
    /// with the old keys valid for `grace_ms`, and the node holds it (the others learn it from
    /// the node's traffic, as roster spread works).
    Rotate {
        /// Who rotates.
        who: Who,
        /// How long the old keys stay valid.
        grace_ms: u64,
    },
    /// The roster authority issues the next roster serial (same members) and the operator of
    /// node `at` installs it into the running node (`roster install`); the others must learn
    /// it from their connections, with no request traffic needed.
    NewRoster {
        /// Where it is installed.
        at: usize,
    },
    /// The roster authority signs a revocation notice for member `who` and the operator of node
    /// `at` hands it to the running node (`roster revoke --install`); it must reach every node.
    Revoke {
        /// The revoked member.
        who: usize,
        /// Where the notice is installed.
        at: usize,
    },
    /// The next request carrying a message that `node` handles is stored and flushed, and then
    /// the node dies before the answer leaves; it restarts `down_ms` later.
    CrashAfterStore {
        /// The node.
        node: usize,
        /// How long it stays down.
        down_ms: u64,
    },
}

/// An action at a virtual instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// When, in virtual ms from the start.
    pub at_ms: u64,
    /// What.
    pub action: Action,
}

/// The steps of one story with the size of the world they act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// The scenario's name (for the replay command line).
    pub name: &'static str,
    /// Member nodes the steps may name.
    pub nodes: usize,
    /// The steps, in any order (each carries its instant).
    pub steps: Vec<Step>,
}

impl Script {
    /// Refuses steps that name nodes the world does not have.
    pub(crate) fn validate(&self) -> Result<(), String> {
        let member = |node: usize| {
            if node < self.nodes {
                Ok(())
            } else {
                Err(format!(
                    "scenario {}: node {node} is not one of its {} members",
                    self.name, self.nodes
                ))
            }
        };
        for step in &self.steps {
            match &step.action {
                Action::Send { from, to } | Action::CutLink { from, to } => {
                    member(*from)?;
                    member(*to)?;
                }
                Action::Revoke { who, at } => {
                    member(*who)?;
                    member(*at)?;
                }
                Action::NewRoster { at } => member(*at)?,
                Action::Crash(Who::Node(node) | Who::RelaysOf(node))
                | Action::Restart(Who::Node(node) | Who::RelaysOf(node))
                | Action::CrashAfterStore { node, .. }
                | Action::Rotate {
                    who: Who::Node(node) | Who::RelaysOf(node),
                    ..
                } => member(*node)?,
                Action::Isolate(nodes) => nodes.iter().try_for_each(|node| member(*node))?,
                Action::MendAll => {}
            }
        }
        Ok(())
    }

    /// The Send steps, in the order the workload plan needs.
    pub(crate) fn sends(&self) -> impl Iterator<Item = (u64, usize, usize, WorkKind)> + '_ {
        self.steps.iter().filter_map(|step| match step.action {
            Action::Send { from, to } => Some((step.at_ms, from, to, WorkKind::Preservation)),
            _ => None,
        })
    }
}
