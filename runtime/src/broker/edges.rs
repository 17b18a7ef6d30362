//! The file edges of a run, as threads: each output topic written out by a thread of its
//! own, and the input files fed into their topics by one thread, in order. The formats are in
//! [`super::files`]; this module only starts, counts and stops.

use super::files::write_output;
use super::{Broker, InputGuard};
use crate::config::{InputConfig, OutputConfig};
use crate::shutdown::Shutdown;
use anyhow::Context as _;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Lines written per output topic.
pub type OutputCounts = BTreeMap<String, u64>;

/// Events and undecodable lines fed per input file.
pub type InputCounts = BTreeMap<String, (u64, u64)>;

/// The running output writers and input feeder.
#[derive(Default)]
pub struct FileEdges {
    outputs: Vec<(String, JoinHandle<anyhow::Result<u64>>)>,
    outputs_stop: Shutdown,
    feeder: Option<JoinHandle<InputCounts>>,
}

impl FileEdges {
    /// Subscribes and starts a writer for every output. Called before any route starts and
    /// any input is fed, so every output sees every event.
    pub fn start_outputs(
        broker: &dyn Broker,
        outputs: &[OutputConfig],
    ) -> anyhow::Result<FileEdges> {
        let mut edges = FileEdges::default();
        for output in outputs {
            let source =
                broker.subscribe(output.topic.as_str(), &format!("output.{}", output.topic))?;
            let writer = open_output(&output.file)?;
            let stop = edges.outputs_stop.clone();
            let topic = output.topic.to_string();
            let thread = std::thread::Builder::new()
                .name(format!("output-{topic}"))
                .spawn(move || write_output(source, writer, &stop))?;
            edges.outputs.push((topic, thread));
        }
        Ok(edges)
    }

    /// Feeds `inputs` in order on a thread of its own until done or `stop` is set, holding
    /// `guard` (the embedded broker's "more to come") until the last is fed. Followed
    /// inputs, which end only with the run, are fed side by side, after the others.
    pub fn feed_inputs(
        &mut self,
        broker: &Arc<dyn Broker>,
        inputs: Vec<InputConfig>,
        guard: Option<InputGuard>,
        stop: &Shutdown,
    ) -> anyhow::Result<()> {
        let broker = broker.clone();
        let stop = stop.clone();
        let feeder = std::thread::Builder::new().name("inputs".into()).spawn(move || {
            let _open = guard;
            let (followed, once): (Vec<_>, Vec<_>) = inputs.into_iter().partition(|i| i.follow);
            let mut fed: InputCounts = once
                .iter()
                .filter_map(|input| feed_one(&*broker, input, &stop))
                .collect();
            std::thread::scope(|scope| {
                let followers: Vec<_> = followed
                    .iter()
                    .map(|input| {
                        tracing::info!(file = %input.file.display(), topic = %input.topic, "following input: lines appended to it are fed until the run stops");
                        scope.spawn(|| feed_one(&*broker, input, &stop))
                    })
                    .collect();
                fed.extend(followers.into_iter().filter_map(|f| f.join().ok().flatten()));
            });
            fed
        })?;
        self.feeder = Some(feeder);
        Ok(())
    }

    /// Whether every input has been fed (or there were none).
    pub fn inputs_fed(&self) -> bool {
        self.feeder.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the feeder, then lets every writer finish what its topic holds; returns
    /// what was fed and written.
    pub fn stop(mut self) -> (InputCounts, OutputCounts) {
        let inputs = self
            .feeder
            .take()
            .map(|feeder| feeder.join().unwrap_or_default())
            .unwrap_or_default();
        self.outputs_stop.trigger();
        let mut outputs = OutputCounts::new();
        for (topic, writer) in self.outputs.drain(..) {
            match writer.join() {
                Ok(Ok(lines)) => *outputs.entry(topic).or_default() += lines,
                Ok(Err(error)) => tracing::error!(%topic, "output failed: {error:#}"),
                Err(_) => tracing::error!(%topic, "output writer panicked"),
            }
        }
        (inputs, outputs)
    }
}

/// Standard output for `-`, else the file (and its directory), created afresh.
fn open_output(file: &Path) -> anyhow::Result<Box<dyn Write + Send>> {
    if file.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::File::create(file)
        .with_context(|| format!("creating output {}", file.display()))?;
    Ok(Box::new(std::io::BufWriter::new(out)))
}

/// Feeds one input; its counts by file name, unless it could not be fed.
fn feed_one(
    broker: &dyn Broker,
    input: &InputConfig,
    stop: &Shutdown,
) -> Option<(String, (u64, u64))> {
    match broker.feed(input.topic.as_str(), &input.file, input.follow, stop) {
        Ok(r) => {
            tracing::info!(file = %input.file.display(), topic = %input.topic, events = r.events, undecodable = r.undecodable, "input fed");
            Some((input.file.display().to_string(), (r.events, r.undecodable)))
        }
        Err(error) => {
            tracing::error!(file = %input.file.display(), %error, "cannot feed input");
            None
        }
    }
}
