//! `plexus new` as a new plugin author uses it, from an empty directory outside this
//! repository: the Rust project it writes builds with its own script (the SDK written out
//! next to it), passes `plexus check`, behaves as its README says under `plexus test` and
//! `plexus run`, and `plexus run --follow` serves lines appended to its input and a rebuilt
//! version of the plugin without a restart.

use plexus_tests::{KillOnDrop, plexus_command};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn plexus_in(dir: &Path, args: &[&str]) -> Output {
    plexus_command()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run plexus")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds the project with its `build.sh`, in a target directory kept between test runs.
fn build(project: &Path) {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/new-project-rust");
    let out = Command::new("./build.sh")
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run build.sh");
    assert!(
        out.status.success(),
        "build.sh failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The JSON lines of `path` written so far (a line being written is not one yet).
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn greetings(project: &Path) -> Vec<String> {
    lines(&project.join("out/greetings.jsonl"))
        .iter()
        .map(|e| e["data"]["greeting"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits up to a minute for `done`, saying `what` if it never comes.
fn wait_for(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what} never happened; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn append(path: &Path, line: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    writeln!(file, "{line}").unwrap();
}

fn request(id: &str, name: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/t","type":"greeting.requested","datacontenttype":"application/json","data":{{"name":"{name}"}}}}"#
    )
}

#[test]
fn a_new_rust_plugin_builds_runs_and_is_served_rebuilt_while_its_input_is_followed() {
    let workspace = tempfile::tempdir().unwrap();
    let project: PathBuf = workspace.path().join("greeter");
    let created = plexus_in(workspace.path(), &["new", "greeter", "--lang", "rust"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "build.sh",
        "plexus.toml",
        "events.jsonl",
        "README.md",
        "plexus-sdk/wit/plexus.wit",
    ] {
        assert!(project.join(file).is_file(), "{file} written");
    }
    let again = plexus_in(workspace.path(), &["new", "greeter"]);
    assert_eq!(again.status.code(), Some(1), "an existing project is kept");
    assert!(text(&again.stderr).contains("exists and is not empty"));

    build(&project);
    let size = std::fs::metadata(project.join("greeter.wasm"))
        .unwrap()
        .len();
    assert!(
        size < 300_000,
        "the release profile keeps the component small: {size} bytes"
    );
    let checked = plexus_in(&project, &["check"]);
    assert!(checked.status.success(), "{}", text(&checked.stderr));

    // plexus test, as the README gives it.
    let tested = plexus_in(
        &project,
        &[
            "test",
            "greeter.wasm",
            "--events",
            "events.jsonl",
            "--types",
            "greeting.requested",
        ],
    );
    assert!(tested.status.success(), "{}", text(&tested.stderr));
    let outcomes: Vec<Value> = text(&tested.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = outcomes
        .iter()
        .map(|o| o["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ok", "rejected", "filtered", "ok"]);
    assert_eq!(outcomes[0]["emitted"][0]["data"]["greeting"], "Hello, Ada!");
    assert_eq!(outcomes[1]["reason"], "a greeting needs a name");
    let summary = text(&tested.stderr);
    assert!(
        summary.contains("4 events: 1 filtered, 2 ok, 1 rejected; handle: ")
            && summary.contains(" µs per event (median "),
        "{summary}"
    );

    // plexus run: the events file through the plugin, then exit.
    let ran = plexus_in(&project, &["run"]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    assert_eq!(greetings(&project), ["Hello, Ada!", "Hello, Grace!"]);
    let dead = lines(&project.join("out/dead-letters.jsonl"));
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["plexusdlqreason"], "a greeting needs a name");

    // plexus run --follow: the local loop.
    let log = project.join("follow.log");
    let mut following = KillOnDrop(
        plexus_command()
            .args(["run", "--follow"])
            .current_dir(&project)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let events = project.join("events.jsonl");
    wait_for("the first greetings", &log, || {
        greetings(&project).len() == 2
    });
    append(&events, &request("5", "Linus"));
    wait_for("the appended event's greeting", &log, || {
        greetings(&project).len() == 3
    });
    let source = project.join("src/lib.rs");
    let edited = std::fs::read_to_string(&source)
        .unwrap()
        .replace("Hello, {}!", "Hi, {}!");
    std::fs::write(&source, edited).unwrap();
    build(&project);
    wait_for("the rebuilt plugin swapped in", &log, || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("plugin `greeter` swapped")
    });
    append(&events, &request("6", "Barbara"));
    wait_for("the rebuilt plugin's greeting", &log, || {
        greetings(&project).len() == 4
    });
    assert_eq!(
        greetings(&project),
        [
            "Hello, Ada!",
            "Hello, Grace!",
            "Hello, Linus!",
            "Hi, Barbara!"
        ]
    );
    let interrupted = Command::new("kill")
        .args(["-INT", &following.0.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = following.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "stops on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        !log.contains("inputs and outputs are not changed"),
        "a plugin-only reload does not warn about inputs: {log}"
    );
    assert!(log.contains("events=6"), "six lines fed, each once: {log}");
}
