//! The `plexus` command: `run`, `check`, `test`, `new`, `wit`, `catalog`, `replay` and `positions`. What belongs to the process is here:
//! arguments, logging, signals and the exit code; the work is in [`plexus::commands`].

use clap::{Parser, Subcommand};
use plexus::commands;
use plexus::config::Limits;
use plexus::{Reloads, RunOptions, Shutdown};
use std::path::PathBuf;

/// Runs event topics through sandboxed WebAssembly consumer plugins.
#[derive(Parser)]
#[command(name = "plexus", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run until the inputs are exhausted or SIGINT/SIGTERM, then drain, commit and exit 0.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "plexus.toml")]
        config: PathBuf,
        /// Do not watch the config and plugin files for changes (SIGHUP still reloads).
        #[arg(long)]
        no_watch: bool,
        /// Feed this file of CloudEvents JSON lines into a topic, `TOPIC=FILE`, instead of
        /// the config's inputs (repeatable; what `plexus replay` writes on the embedded
        /// broker).
        #[arg(long = "input", value_parser = parse_entry)]
        inputs: Vec<(String, String)>,
        /// Keep reading each input file as it grows (lines appended are fed as they come),
        /// until SIGINT: with the plugin files watched, the local edit-build-run loop.
        #[arg(long)]
        follow: bool,
    },
    /// Validate the config and load every plugin against the WIT world.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "plexus.toml")]
        config: PathBuf,
        /// Also connect to the broker: reach Kafka (TLS, credentials) within
        /// `connect_timeout` and, with `create_topics` off, find every topic.
        #[arg(long)]
        connect: bool,
    },
    /// Print the event catalog of a config: topics, the event types each route takes and
    /// emits, where dead letters go, and a flowchart of it all.
    Catalog {
        /// The configuration file.
        #[arg(long, short, default_value = "plexus.toml")]
        config: PathBuf,
        /// markdown (a page with the flowchart and tables), mermaid (the flowchart) or json.
        #[arg(long, value_enum, default_value = "markdown")]
        format: commands::catalog::Format,
    },
    /// Publish dead letters again (same id and payload, `plexusreplayed` counting) to the
    /// topic each failed on; on Kafka and Redis only those not replayed before.
    Replay {
        /// The configuration file.
        #[arg(long, short, default_value = "plexus.toml")]
        config: PathBuf,
        /// The dead-letter topic to read (repeatable; default: every route's).
        #[arg(long = "from")]
        from: Vec<String>,
        /// Read the letters from this JSON-lines file instead (a dead-letter output file).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Publish every chosen event to this topic instead of the one it failed on.
        #[arg(long)]
        to: Option<String>,
        /// Only letters of this kind: rejected, trap, timeout, retries-exhausted, ...
        /// (repeatable).
        #[arg(long = "kind")]
        kinds: Vec<String>,
        /// Only letters of this route (repeatable).
        #[arg(long = "route")]
        routes: Vec<String>,
        /// Only letters of this plugin: a name, or `NAME@sha256:...` (repeatable).
        #[arg(long = "plugin")]
        plugins: Vec<String>,
        /// Only letters dead-lettered at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<i64>,
        /// Only letters dead-lettered before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        until: Option<i64>,
        /// Only the event with this id (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
        /// At most this many events; the rest stay for the next replay.
        #[arg(long)]
        limit: Option<usize>,
        /// List what would be replayed, as a table; publish and commit nothing.
        #[arg(long)]
        dry_run: bool,
        /// Publish even to topics no route reads.
        #[arg(long)]
        force: bool,
        /// Keep a separate replay position: consumer group `GROUP.replay.NAME`.
        #[arg(long, default_value = commands::replay::DEFAULT_GROUP)]
        group: String,
        /// Embedded broker: where to write the events to run (default: `replay/` beside
        /// the config).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show each route's committed position and lag per partition, or move one route's.
    Positions {
        /// The configuration file.
        #[arg(long, short, default_value = "plexus.toml")]
        config: PathBuf,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// Move this route's positions (with --to); refused while it runs.
        #[arg(long, value_name = "ROUTE", requires = "to")]
        reset: Option<String>,
        /// Where to: beginning, end, offset:N, time:RFC3339.
        #[arg(long, requires = "reset")]
        to: Option<plexus::broker::ResetTo>,
        /// One JSON object per partition.
        #[arg(long)]
        json: bool,
    },
    /// Write a ready plugin project: a handler that emits and rejects, a build script, an
    /// events file, a plexus.toml on the embedded broker and a README with the commands.
    New {
        /// The plugin's name (lower-case letters, digits and `-`).
        name: String,
        /// The language of the project.
        #[arg(long, value_enum, default_value = "rust")]
        lang: commands::new::Language,
        /// Where to write it (default: ./NAME); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the WIT world plugins implement (`plexus:plugin/consumer`), or write it to
    /// DIR/plexus.wit, for component toolchains of other languages.
    Wit {
        /// Write DIR/plexus.wit instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the Go or C bindings of the WIT world into DIR (default: `.` for Go,
    /// `bindings/` for C, as `plexus new` lays projects out), e.g. after a Plexus upgrade.
    Bindings {
        /// The language of the bindings.
        #[arg(long, value_enum)]
        lang: commands::bindings::BindingLanguage,
        /// Where to write them.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make a plugin component of a core WebAssembly module built for WASI preview 1 as a
    /// reactor (stock Go's `-buildmode=c-shared`, clang's `-mexec-model=reactor`).
    Componentize {
        /// The core module the compiler wrote.
        core: PathBuf,
        /// The component to write.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Run one plugin on a file of CloudEvents JSON lines and print the outcomes.
    Test {
        /// The plugin component (.wasm).
        plugin: PathBuf,
        /// CloudEvents, one JSON object per line.
        #[arg(long)]
        events: PathBuf,
        /// A plugin config entry, `key=value` (repeatable).
        #[arg(long = "set", value_parser = parse_entry)]
        config: Vec<(String, String)>,
        /// The topic the events are said to come from.
        #[arg(long, default_value = "test")]
        topic: String,
        /// Memory limit, e.g. 64MiB.
        #[arg(long, default_value = "64MiB")]
        memory: plexus::config::units::ByteSize,
        /// Time limit per event, e.g. 1s.
        #[arg(long, default_value = "1s")]
        timeout: plexus::config::units::Duration,
        /// Only events of these types are handled, as by a route's `types` (comma-separated
        /// or repeated); the others are reported as filtered.
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
        /// A JSON file of keys and values the plugin's state starts with (a string is
        /// stored as its text, anything else as JSON).
        #[arg(long)]
        state: Option<PathBuf>,
    },
}

fn parse_time(text: &str) -> Result<i64, String> {
    commands::replay::parse_time(text)
}

fn parse_entry(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, found `{text}`"))
}

/// Colour codes only for a person at a terminal: never in a file or a pipe, and not when
/// `NO_COLOR` is set to anything (<https://no-color.org>).
fn colours_wanted() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// SIGINT or SIGTERM sets `shutdown` (the run drains and commits); a second one exits at
/// once with 130. SIGHUP asks `reloads` for a reload, where there is one.
fn on_signals(shutdown: &Shutdown, reloads: Option<&Reloads>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut wanted = vec![SIGINT, SIGTERM];
    if reloads.is_some() {
        wanted.push(SIGHUP);
    }
    let mut signals = signal_hook::iterator::Signals::new(wanted)?;
    let shutdown = shutdown.clone();
    let reloads = reloads.cloned();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stops = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    tracing::info!("SIGHUP: reloading");
                    if let Some(reloads) = &reloads {
                        reloads.request();
                    }
                    continue;
                }
                stops += 1;
                if stops > 1 {
                    tracing::warn!(signal, "second signal: exiting without draining");
                    std::process::exit(130);
                }
                tracing::info!(signal, "signal received: draining in-flight events");
                shutdown.trigger();
            }
        })?;
    Ok(())
}

/// The log filter: `PLEXUS_LOG` (e.g. `debug`, `info,plexus=debug`), else info.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_env("PLEXUS_LOG").unwrap_or_else(|_| {
        // rdkafka warns "Ignored event 'Error'" after handing each error to our context,
        // which logs it already.
        tracing_subscriber::EnvFilter::new("info,rdkafka::producer::base_producer=error")
    })
}

/// Logs on stderr: text for people, or with `PLEXUS_LOG_FORMAT=json` one JSON object per
/// line (`timestamp`, `level`, `target`, `message` and the event's fields at the top
/// level: `route`, `plugin`, `event_id`, `correlation_id`, ...) for log pipelines.
fn init_logging() {
    let format = std::env::var("PLEXUS_LOG_FORMAT").unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(log_filter());
    match format.as_str() {
        "json" => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
        _ => {
            builder.with_ansi(colours_wanted()).init();
            if !matches!(format.as_str(), "" | "text") {
                tracing::warn!(
                    "PLEXUS_LOG_FORMAT={format} is not a log format (json or text): logging text"
                );
            }
        }
    }
}

fn main() {
    init_logging();
    let code = match Cli::parse().command {
        Command::Run {
            config,
            no_watch,
            inputs,
            follow,
        } => {
            let options = RunOptions {
                watch: !no_watch,
                ..RunOptions::default()
            };
            if let Err(error) = on_signals(&options.shutdown, Some(&options.reloads)) {
                eprintln!("error: cannot install signal handlers: {error}");
                std::process::exit(commands::EXIT_INVALID);
            }
            let telemetry = match plexus::telemetry::init_from_env() {
                Ok(telemetry) => telemetry,
                Err(error) => {
                    eprintln!("error: tracing: {error}");
                    std::process::exit(commands::EXIT_INVALID);
                }
            };
            if telemetry.is_some() {
                tracing::info!("tracing: a span per handled event, exported over OTLP");
            }
            let code = commands::run::run(&config, &inputs, follow, options);
            // Exports the spans still batched before the process exits.
            drop(telemetry);
            code
        }
        Command::Check { config, connect } => {
            let stop = Shutdown::new();
            if connect && let Err(error) = on_signals(&stop, None) {
                eprintln!("warning: signals not handled: {error}");
            }
            commands::check::check(&config, connect.then_some(&stop))
        }
        Command::Replay {
            config,
            from,
            file,
            to,
            kinds,
            routes,
            plugins,
            since,
            until,
            ids,
            limit,
            dry_run,
            force,
            group,
            out,
        } => {
            let stop = Shutdown::new();
            if let Err(error) = on_signals(&stop, None) {
                eprintln!("warning: signals not handled: {error}");
            }
            let options = commands::replay::ReplayOptions {
                config: &config,
                from,
                file,
                to,
                filter: commands::replay::select::Filter {
                    kinds,
                    routes,
                    plugins,
                    since,
                    until,
                    ids,
                },
                limit,
                dry_run,
                force,
                group,
                out_dir: out,
            };
            commands::replay::replay(options, &stop, &mut std::io::stdout().lock())
        }
        Command::Positions {
            config,
            route,
            reset,
            to,
            json,
        } => {
            let stop = Shutdown::new();
            let options = commands::positions::PositionsOptions {
                config: &config,
                route: reset.or(route),
                reset: to,
                json,
            };
            commands::positions::positions(options, &stop, &mut std::io::stdout().lock())
        }
        Command::Catalog { config, format } => {
            commands::catalog::catalog(&config, format, &mut std::io::stdout().lock())
        }
        Command::New { name, lang, dir } => commands::new::new_project(&name, lang, dir.as_deref()),
        Command::Wit { out } => commands::new::write_wit(out.as_deref()),
        Command::Bindings { lang, out } => commands::bindings::write_bindings(lang, out.as_deref()),
        Command::Componentize { core, out } => {
            commands::componentize::componentize_file(&core, &out)
        }
        Command::Test {
            plugin,
            events,
            config,
            topic,
            memory,
            timeout,
            types,
            state,
        } => {
            let limits = Limits {
                memory,
                timeout,
                ..Limits::default()
            };
            let options = commands::test::TestOptions {
                plugin: &plugin,
                events: &events,
                config,
                topic,
                limits,
                types: (!types.is_empty()).then(|| types.into_iter().collect()),
                state: state.as_deref(),
            };
            commands::test::test(options, &mut std::io::stdout().lock())
        }
    };
    std::process::exit(code);
}
