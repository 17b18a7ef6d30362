//! `plexus new` as a new plugin author uses it, from an empty directory outside this
//! repository: the Rust project it writes builds with its own script (the SDK written out
//! next to it), passes `plexus check`, behaves as its README says under `plexus test` and
//! `plexus run`, and `plexus run --follow` serves lines appended to its input and a rebuilt
//! version of the plugin without a restart. The Python, JavaScript, Go and C projects build
//! with their real toolchains (componentize-py, componentize-js, stock Go, clang with
//! wasi-libc; installed once by `scripts/setup-plugin-toolchains`) and run in one
//! `plexus run` beside the Rust one.

use plexus_tests::{KillOnDrop, plexus_bin, plexus_command};
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

/// The component toolchains of the Python and JavaScript templates, as environment
/// variables for their `build.sh` (installed the first time).
fn toolchains() -> Vec<(String, String)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/setup-plugin-toolchains");
    let out = Command::new(script)
        .output()
        .expect("run setup-plugin-toolchains");
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Builds the project with its `build.sh` (a Rust one in a target directory kept between
/// test runs; Go and C ones componentized by the plexus under test), with `env` set.
fn build_with(project: &Path, env: &[(String, String)]) {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/new-project-rust");
    let out = Command::new("./build.sh")
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .env("PLEXUS", plexus_bin())
        .envs(env.iter().map(|(k, v)| (k, v)))
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
fn build(project: &Path) {
    build_with(project, &[]);
}

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
    let project = new_built(workspace.path(), "greeter", "rust", &[]);
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

    let size = std::fs::metadata(project.join("greeter.wasm"))
        .unwrap()
        .len();
    assert!(
        size < 300_000,
        "the release profile keeps the component small: {size} bytes"
    );

    let (outcomes, summary) = plexus_test(&project, "greeter");
    let kinds: Vec<&str> = outcomes
        .iter()
        .map(|o| o["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["ok", "rejected", "filtered", "ok"]);
    assert_eq!(outcomes[0]["emitted"][0]["data"]["greeting"], "Hello, Ada!");
    assert_eq!(outcomes[1]["reason"], "a greeting needs a name");
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

/// `plexus test NAME.wasm` in `project` as its README gives it: the outcome of each event,
/// and the summary printed on stderr.
fn plexus_test(project: &Path, name: &str) -> (Vec<Value>, String) {
    let wasm = format!("{name}.wasm");
    let args = [
        "test",
        &wasm,
        "--events",
        "events.jsonl",
        "--types",
        "greeting.requested",
    ];
    let tested = plexus_in(project, &args);
    assert!(tested.status.success(), "{name}: {}", text(&tested.stderr));
    let outcomes = text(&tested.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (outcomes, text(&tested.stderr))
}

/// `plexus new NAME --lang LANG` in `workspace`, built and checked; the project's directory.
fn new_built(workspace: &Path, name: &str, lang: &str, env: &[(String, String)]) -> PathBuf {
    let created = plexus_in(workspace, &["new", name, "--lang", lang]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let project = workspace.join(name);
    build_with(&project, env);
    let checked = plexus_in(&project, &["check"]);
    assert!(
        checked.status.success(),
        "{lang}: {}",
        text(&checked.stderr)
    );
    project
}

#[test]
fn plugins_from_the_templates_of_every_language_run_beside_each_other() {
    let env = toolchains();
    let workspace = tempfile::tempdir().unwrap();
    let languages = [
        ("rs-greeter", "rust"),
        ("py-greeter", "python"),
        ("js-greeter", "js"),
        ("go-greeter", "go"),
        ("c-greeter", "c"),
    ];
    for (name, lang) in languages {
        let project = new_built(workspace.path(), name, lang, &env);
        // Each template behaves as its README says under plexus test.
        let (outcomes, _) = plexus_test(&project, name);
        let kinds: Vec<&str> = outcomes
            .iter()
            .map(|o| o["outcome"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["ok", "rejected", "filtered", "ok"], "{lang}");
    }

    // One run, one input, a route per language. A name that is not a string is a bug in
    // the Python and JavaScript handlers (they call a string method on it): an exception,
    // which must trap with its traceback, not be mistaken for a rejection. The Rust, Go and
    // C handlers check the type and reject.
    let input = workspace.path().join("events.jsonl");
    let mut events =
        std::fs::read_to_string(workspace.path().join("rs-greeter/events.jsonl")).unwrap();
    events.push_str(&request("5", "Linus"));
    events.push('\n');
    events.push_str(r#"{"specversion":"1.0","id":"6","source":"/t","type":"greeting.requested","datacontenttype":"application/json","data":{"name":5}}"#);
    events.push('\n');
    std::fs::write(&input, events).unwrap();
    let mut config = String::from(
        "[broker]\npartitions = 2\n[state]\nbackend = \"memory\"\n[[inputs]]\ntopic = \"requests\"\nfile = \"events.jsonl\"\n",
    );
    for (name, _) in languages {
        config.push_str(&format!(
            "[[outputs]]\ntopic = \"{name}.out\"\nfile = \"out/{name}.jsonl\"\n\
             [[outputs]]\ntopic = \"{name}.dlq\"\nfile = \"out/{name}.dlq.jsonl\"\n\
             [plugins.{name}]\npath = \"{name}/{name}.wasm\"\nconfig = {{ out = \"{name}.out\" }}\n\
             [routes.{name}]\ntopic = \"requests\"\ntypes = [\"greeting.requested\"]\nplugin = \"{name}\"\ndead_letter = \"{name}.dlq\"\n\
             retry = {{ max_attempts = 1 }}\n"
        ));
    }
    std::fs::write(workspace.path().join("plexus.toml"), config).unwrap();
    let ran = plexus_in(workspace.path(), &["run"]);
    assert!(ran.status.success(), "{}", text(&ran.stderr));
    for (name, lang) in languages {
        let mut greeted: Vec<String> = lines(&workspace.path().join(format!("out/{name}.jsonl")))
            .iter()
            .map(|e| e["data"]["greeting"].as_str().unwrap().to_owned())
            .collect();
        greeted.sort();
        assert_eq!(
            greeted,
            ["Hello, Ada!", "Hello, Grace!", "Hello, Linus!"],
            "{lang}"
        );
        let dead = lines(&workspace.path().join(format!("out/{name}.dlq.jsonl")));
        let kind_of = |id: &str| {
            let letter = dead
                .iter()
                .find(|e| e["id"] == id)
                .unwrap_or_else(|| panic!("{lang}: {id} dead-lettered"));
            (
                letter["plexusdlqkind"].as_str().unwrap().to_owned(),
                letter["plexusdlqreason"].as_str().unwrap().to_owned(),
            )
        };
        assert_eq!(dead.len(), 2, "{lang}: {dead:?}");
        assert_eq!(
            kind_of("2"),
            ("rejected".to_owned(), "a greeting needs a name".to_owned()),
            "{lang}"
        );
        let (kind, reason) = kind_of("6");
        match lang {
            // serde refuses the payload: a rejection that names it.
            "rust" => assert!(
                kind == "rejected" && reason.contains("invalid type"),
                "{reason}"
            ),
            "go" => assert!(
                kind == "rejected" && reason.contains("cannot unmarshal number"),
                "{kind}: {reason}"
            ),
            "c" => assert!(
                kind == "rejected" && reason == "the name is not a string",
                "{kind}: {reason}"
            ),
            "python" => assert!(
                kind == "trap" && reason.contains("AttributeError"),
                "{kind}: {reason}"
            ),
            _ => assert!(
                kind == "trap" && reason.contains("TypeError"),
                "{kind}: {reason}"
            ),
        }
    }

    a_go_panic_and_a_go_memory_hog_are_contained_and_the_next_event_is_served(
        &workspace.path().join("go-greeter"),
        &env,
    );
}

/// A panic in a Go handler ends the call as a trap whose reason carries the panic's message
/// (the Go runtime's report, from the guest's stderr); a Go handler that allocates without
/// end meets the memory limit (the runtime's heap grows the instance's memory) and is
/// counted as such. After each, the next event is served by a fresh instance: the Go
/// runtime starts again.
fn a_go_panic_and_a_go_memory_hog_are_contained_and_the_next_event_is_served(
    project: &Path,
    env: &[(String, String)],
) {
    let handler = project.join("export_wit_world/handler.go");
    let source = std::fs::read_to_string(&handler).unwrap();
    let guard = "\tif strings.TrimSpace(req.Name) == \"\" {";
    assert!(source.contains(guard), "the template's name check moved");
    let misbehaving = source.replacen(
        guard,
        &format!(
            "\tif req.Name == \"boom\" {{\n\t\tpanic(\"the name is boom\")\n\t}}\n\
             \tif req.Name == \"hog\" {{\n\t\tvar hog [][]byte\n\t\tfor {{\n\t\t\thog = append(hog, make([]byte, 1<<20))\n\t\t}}\n\t}}\n{guard}"
        ),
        1,
    );
    std::fs::write(&handler, misbehaving).unwrap();
    build_with(project, env);
    std::fs::write(
        project.join("events.jsonl"),
        format!(
            "{}\n{}\n{}\n",
            request("1", "boom"),
            request("2", "hog"),
            request("3", "Ada")
        ),
    )
    .unwrap();
    let (outcomes, _) = plexus_test(project, "go-greeter");
    assert_eq!(outcomes[0]["outcome"], "trap", "{outcomes:?}");
    let reason = outcomes[0]["reason"].as_str().unwrap();
    assert!(reason.contains("panic: the name is boom"), "{reason}");
    assert_eq!(outcomes[1]["outcome"], "memory-limit", "{outcomes:?}");
    assert_eq!(outcomes[2]["outcome"], "ok", "{outcomes:?}");
}
