//! `/api/status`: the board as one JSON document (routes, plugins and their versions,
//! positions and lag, counters, dead-letter depths), for people, scripts and the topology
//! page.

use super::board::{Board, Phase, PluginView};
use crate::metrics::{PartitionPosition, RouteSnapshot};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// The whole status.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub phase: Phase,
    /// Why the run is not ready, when it is not.
    pub not_ready: Option<String>,
    pub uptime_seconds: f64,
    pub broker: String,
    pub routes: BTreeMap<String, RouteStatus>,
    pub plugins: BTreeMap<String, PluginView>,
    /// Records in each dead-letter topic, as last measured.
    pub dead_letter_depth: BTreeMap<String, u64>,
    pub reloads: Reloads,
}

/// One route.
#[derive(Debug, serde::Serialize)]
pub struct RouteStatus {
    pub topic: String,
    pub types: Option<Vec<String>>,
    pub plugin: String,
    pub plugin_version: Option<String>,
    pub dead_letter: String,
    pub assigned: bool,
    pub in_flight: usize,
    /// Lag summed over the partitions it reads.
    pub lag: u64,
    pub positions: Vec<Position>,
    pub counters: RouteSnapshot,
}

/// Where a route stands on one partition.
#[derive(Debug, serde::Serialize)]
pub struct Position {
    #[serde(flatten)]
    pub position: PartitionPosition,
    pub lag: u64,
}

/// Reloads so far.
#[derive(Debug, serde::Serialize)]
pub struct Reloads {
    pub applied: u64,
    pub refused: u64,
    pub plugin_swaps: u64,
}

/// The status of `board` now.
pub fn of(board: &Board) -> Status {
    let view = board.view();
    let routes = view
        .routes
        .iter()
        .map(|(name, route)| {
            let plugin = view.plugins.get(&route.plugin);
            let positions: Vec<Position> = route
                .metrics
                .positions()
                .into_iter()
                .map(|position| Position {
                    lag: position.lag(),
                    position,
                })
                .collect();
            let status = RouteStatus {
                topic: route.topic.clone(),
                types: route.types.clone(),
                plugin: route.plugin.clone(),
                plugin_version: plugin.map(|p| p.version.clone()),
                dead_letter: route.dead_letter.clone(),
                assigned: route.metrics.assigned.load(Ordering::Relaxed),
                in_flight: route.tracker.in_flight(),
                lag: positions.iter().map(|p| p.lag).sum(),
                positions,
                counters: route.metrics.snapshot(),
            };
            (name.clone(), status)
        })
        .collect();
    Status {
        phase: board.phase(),
        not_ready: board.not_ready(),
        uptime_seconds: board.started().1.as_secs_f64(),
        broker: view.broker.clone(),
        routes,
        plugins: view.plugins.clone(),
        dead_letter_depth: board.dead_letter_depths(),
        reloads: Reloads {
            applied: view.reloads_applied,
            refused: view.reloads_refused,
            plugin_swaps: view.plugin_swaps,
        },
    }
}
