//! `plexus positions`: where each route's committed positions stand (per partition, with
//! lag), and `--reset ROUTE --to ...` to move one route back (reprocess) or forward (skip),
//! refused while the route's group has live members.
//!
//! Reads and moves the broker's own consumer groups (`GROUP.ROUTE`), so it works whether or
//! not Plexus is running; the embedded broker keeps no positions between runs and says so.

use super::{EXIT_INVALID, EXIT_UNREACHABLE, load_config};
use crate::broker::{self, Broker, BrokerError, GroupPosition, ResetTo};
use crate::config::Config;
use crate::shutdown::Shutdown;
use std::io::Write;
use std::path::Path;

/// Exit code when the broker refuses a reset (live members, no such topic).
pub const EXIT_REFUSED: i32 = 3;

/// What `plexus positions` is asked to do.
pub struct PositionsOptions<'a> {
    /// The config file.
    pub config: &'a Path,
    /// Only this route (required with `reset`).
    pub route: Option<String>,
    /// Move the route's positions here.
    pub reset: Option<ResetTo>,
    /// One JSON object per partition instead of a table.
    pub json: bool,
}

/// One row of the answer: a route's position on one partition.
#[derive(serde::Serialize)]
struct Row<'a> {
    route: &'a str,
    topic: &'a str,
    #[serde(flatten)]
    position: GroupPosition,
}

/// Runs `plexus positions`; returns the exit code.
pub fn positions(options: PositionsOptions<'_>, stop: &Shutdown, out: &mut dyn Write) -> i32 {
    let config = match load_config(options.config) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let routes = match chosen_routes(&config, options.route.as_deref(), options.reset.is_some()) {
        Ok(routes) => routes,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_INVALID;
        }
    };
    let broker = match broker::open(&config, stop) {
        Ok(broker) => broker,
        Err(error) => {
            eprintln!("error: {error:#}");
            return EXIT_UNREACHABLE;
        }
    };
    let mut rows = Vec::new();
    for (route, topic) in &routes {
        let found = match options.reset {
            Some(to) => reset(&*broker, route, topic, to),
            None => broker.group_positions(topic, route),
        };
        match found {
            Ok(positions) => rows.extend(positions.into_iter().map(|position| Row {
                route,
                topic,
                position,
            })),
            Err(error) => {
                eprintln!("error: route `{route}` on `{topic}`: {}", reason(&error));
                return match error {
                    BrokerError::Refused(_) => EXIT_REFUSED,
                    BrokerError::Unavailable(_) => EXIT_UNREACHABLE,
                };
            }
        }
    }
    let written = if options.json {
        rows.iter().try_for_each(|row| {
            writeln!(
                out,
                "{}",
                serde_json::to_string(row).expect("rows serialise")
            )
        })
    } else {
        write_table(&rows, out)
    };
    if let Err(error) = written {
        eprintln!("error: writing the positions: {error}");
        return EXIT_INVALID;
    }
    0
}

/// The broker's words, without the "refused by the broker" prefix a person does not need.
fn reason(error: &BrokerError) -> String {
    match error {
        BrokerError::Refused(reason) => reason.clone(),
        BrokerError::Unavailable(_) => error.to_string(),
    }
}

/// Resets `route` and logs where it was before, for the record.
fn reset(
    broker: &dyn Broker,
    route: &str,
    topic: &str,
    to: ResetTo,
) -> Result<Vec<GroupPosition>, BrokerError> {
    let before = broker.group_positions(topic, route)?;
    for p in &before {
        eprintln!(
            "route {route}: {topic}/{} was at {} (lag {})",
            p.partition,
            p.committed.map_or("-".to_owned(), |c| c.to_string()),
            p.lag
        );
    }
    let after = broker.reset_positions(topic, route, to)?;
    eprintln!("route {route}: reset to {to:?}; it reads from there when it next runs");
    Ok(after)
}

/// The `(route, topic)` pairs asked about: one route, or all of them.
fn chosen_routes(
    config: &Config,
    route: Option<&str>,
    resetting: bool,
) -> Result<Vec<(String, String)>, String> {
    let all: Vec<(String, String)> = config
        .spec
        .routes
        .iter()
        .map(|(name, r)| (name.get_ref().clone(), r.topic.to_string()))
        .collect();
    match route {
        Some(wanted) => all
            .into_iter()
            .find(|(name, _)| name == wanted)
            .map(|found| vec![found])
            .ok_or_else(|| {
                let names: Vec<&str> = config
                    .spec
                    .routes
                    .keys()
                    .map(|k| k.get_ref().as_str())
                    .collect();
                format!(
                    "no route `{wanted}` in {}; its routes are: {}",
                    config.file,
                    names.join(", ")
                )
            }),
        None if resetting => {
            Err("--reset moves one route: name it (--reset ROUTE --to ...)".into())
        }
        None => Ok(all),
    }
}

fn write_table(rows: &[Row<'_>], out: &mut dyn Write) -> std::io::Result<()> {
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            let p = &row.position;
            [
                row.route.to_owned(),
                row.topic.to_owned(),
                p.partition.to_string(),
                p.committed.map_or("-".to_owned(), |c| c.to_string()),
                p.end.to_string(),
                p.lag.to_string(),
                p.detail.clone(),
            ]
        })
        .collect();
    let header = [
        "ROUTE",
        "TOPIC",
        "PARTITION",
        "COMMITTED",
        "END",
        "LAG",
        "DETAIL",
    ]
    .map(str::to_owned);
    super::table::write(out, &header, &cells)
}
