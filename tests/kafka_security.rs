//! Plexus against a Kafka broker configured like production: TLS with a private CA, mutual
//! TLS, SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER), secrets from files and the environment;
//! and every way a connection can be wrong failing fast with one clear error.
//!
//! The broker is the one scripts/kafka-up starts; its SASL_SSL and mutual-TLS listeners and
//! its test PKI are described by [`secured`].

use plexus_tests::kafka::shop_config;
use plexus_tests::kafka::{
    PLAIN_PASSWORD, SCRAM_PASSWORD, bootstrap, create_topic, produce_events, read, secured,
    spawn_plexus, terminate, unique, wait_exit,
};
use plexus_tests::{Scenario, attr, plexus_command, plugins};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One Kafka test at a time: they share the broker and two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `[broker.kafka.tls]` trusting the test CA (and presenting the client certificate if `mtls`).
fn tls_table(mtls: bool) -> String {
    let dir = secured().tls_dir;
    let mut table = format!(
        "[broker.kafka.tls]\nca_file = \"{}\"\n",
        dir.join("ca.pem").display()
    );
    if mtls {
        table += &format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("client.pem").display(),
            dir.join("client.key").display()
        );
    }
    table
}

/// A Kafka config at `address` with `tables` after the `[broker]` table.
fn config_at(
    scenario: &Scenario,
    name: &str,
    address: &str,
    broker: &str,
    tables: &str,
) -> std::path::PathBuf {
    scenario.file(
        name,
        &format!(
            "[runtime]\ncache_dir = \"{}\"\n[broker]\nkind = \"kafka\"\nkafka.bootstrap_servers = \"{address}\"\nkafka.group = \"{}\"\n{broker}\n{tables}",
            scenario.dir.path().join("cache").display(),
            unique("sec")
        ),
    )
}

/// An unsigned JWT for the test user, as the broker's unsecured validator accepts it,
/// expiring `expires_in` seconds from now (negative: already expired).
fn bearer_token(expires_in: i64) -> String {
    use base64::Engine as _;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let part = |json: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    };
    format!(
        "{}.{}.",
        part(serde_json::json!({"alg": "none"})),
        part(serde_json::json!({"sub": "plexus", "iat": now - 10, "exp": now + expires_in}))
    )
}

/// Runs `plexus check --connect`; exit code, stdout, stderr.
fn check_connect(config: &Path, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = plexus_command()
        .args(["check", "--connect", "--config"])
        .arg(config)
        .envs(env.iter().copied())
        .env("PLEXUS_CACHE_DIR", config.parent().unwrap().join("cache"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_shop_chain_runs_over_sasl_ssl_with_scram_and_the_password_is_never_shown() {
    let _serial = serial();
    let scenario = Scenario::new();
    let prefix = unique("secure-shop");
    let password_file = scenario.file("kafka-password", &format!("{SCRAM_PASSWORD}\n"));
    let text = shop_config(&prefix, &secured().sasl_ssl)
        + &format!(
            "\n{}[broker.kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"plexus\"\npassword_file = \"{}\"\n\
             [broker.kafka.properties]\n\"debug\" = \"security,broker,conf\"\n",
            tls_table(false),
            password_file.display()
        );
    let config = scenario.file("plexus.toml", &text);
    // librdkafka's debug lines (configuration, security, broker states) are logged too.
    let log_file = config.with_extension("log");
    let mut plexus = plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(&config)
        .env("PLEXUS_LOG", "info,librdkafka=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(120)), 0);
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(log.contains("connected to Kafka"), "{log}");
    assert!(
        log.contains("sasl_ssl://"),
        "librdkafka's security debug log is there to be searched: {log}"
    );
    assert!(
        !log.contains(SCRAM_PASSWORD),
        "the password appears in the log"
    );

    // Read back over the plaintext listener: the same cluster, the same topics.
    let notifications = read(
        &format!("{prefix}.notifications"),
        5,
        Duration::from_secs(30),
    );
    let orders: BTreeSet<Option<String>> = notifications
        .iter()
        .map(|n| n.correlation_id.clone())
        .collect();
    assert_eq!(notifications.len(), 5, "{orders:?}");
    assert_eq!(orders.len(), 5, "one notification per order: {orders:?}");
    let dead = read(
        &format!("{prefix}.dead-letters"),
        2,
        Duration::from_secs(30),
    );
    assert_eq!(dead.len(), 2);
}

#[test]
fn mutual_tls_carries_events_and_every_sasl_mechanism_connects() {
    let _serial = serial();
    let scenario = Scenario::new();
    let sec = secured();

    // Mutual TLS, the data path: events in, echoes out, over the client-certificate listener.
    let (input, out) = (unique("mtls-in"), unique("mtls-out"));
    create_topic(&input, 2);
    let events: Vec<_> = (0..20)
        .map(|i| plexus_tests::kafka::event(&format!("m-{i}"), "test.ok", Some("k")))
        .collect();
    produce_events(&input, &events);
    let route = format!(
        "[plugins.m]\npath = \"{}\"\nconfig = {{ out = \"{out}\" }}\n[routes.m]\ntopic = \"{input}\"\nplugin = \"m\"\n",
        plugins::MISBEHAVE
    );
    let config = config_at(
        &scenario,
        "mtls.toml",
        &sec.mtls,
        "idle_exit = \"3s\"",
        &(tls_table(true) + &route),
    );
    let mut plexus = spawn_plexus(&config);
    assert_eq!(wait_exit(&mut plexus, Duration::from_secs(120)), 0);
    let echoes = read(&out, 20, Duration::from_secs(30));
    let echoed: BTreeSet<String> = echoes.iter().filter_map(|e| attr(e, "echoof")).collect();
    assert_eq!(echoed.len(), 20, "{echoed:?}");

    // Mutual TLS with an encrypted client key, its password from the environment.
    let encrypted = format!(
        "[broker.kafka.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nkey_password_env = \"PLEXUS_TEST_KEY_PASSWORD\"\n",
        sec.tls_dir.join("ca.pem").display(),
        sec.tls_dir.join("client.pem").display(),
        sec.tls_dir.join("client-encrypted.key").display()
    );
    let config = config_at(&scenario, "encrypted-key.toml", &sec.mtls, "", &encrypted);
    let (code, stdout, stderr) = check_connect(
        &config,
        &[("PLEXUS_TEST_KEY_PASSWORD", "plexus-key-secret")],
    );
    assert_eq!(code, 0, "encrypted key: {stdout}{stderr}");
    let (code, _, stderr) = check_connect(
        &config,
        &[("PLEXUS_TEST_KEY_PASSWORD", "not-the-key-password-42")],
    );
    assert_eq!(code, 2, "a wrong key password must not connect: {stderr}");
    assert!(!stderr.contains("not-the-key-password-42"), "{stderr}");

    // Each SASL mechanism, secrets from a file or the environment.
    let plain_file = scenario.file("plain-password", PLAIN_PASSWORD);
    let token_file = scenario.file("token", &bearer_token(3600));
    let cases = [
        (
            "plain",
            format!(
                "[broker.kafka.sasl]\nmechanism = \"PLAIN\"\nusername = \"plexus\"\npassword_file = \"{}\"\n",
                plain_file.display()
            ),
        ),
        (
            "scram-256",
            "[broker.kafka.sasl]\nmechanism = \"SCRAM-SHA-256\"\nusername = \"plexus\"\npassword_env = \"PLEXUS_TEST_KAFKA_PASSWORD\"\n".to_owned(),
        ),
        (
            "scram-512",
            "[broker.kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"plexus\"\npassword_env = \"PLEXUS_TEST_KAFKA_PASSWORD\"\n".to_owned(),
        ),
        (
            "oauthbearer-token-file",
            format!(
                "[broker.kafka.sasl]\nmechanism = \"OAUTHBEARER\"\ntoken_file = \"{}\"\n",
                token_file.display()
            ),
        ),
        (
            "oauthbearer-librdkafka-unsecured",
            "[broker.kafka.sasl]\nmechanism = \"OAUTHBEARER\"\n[broker.kafka.properties]\n\"enable.sasl.oauthbearer.unsecure.jwt\" = \"true\"\n\"sasl.oauthbearer.config\" = \"principal=plexus\"\n".to_owned(),
        ),
    ];
    for (name, sasl) in cases {
        let config = config_at(
            &scenario,
            &format!("{name}.toml"),
            &sec.sasl_ssl,
            "",
            &(tls_table(false) + &sasl),
        );
        let (code, stdout, stderr) =
            check_connect(&config, &[("PLEXUS_TEST_KAFKA_PASSWORD", SCRAM_PASSWORD)]);
        assert_eq!(code, 0, "{name}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("connect: Kafka at {}: 1 broker(s)", sec.sasl_ssl)),
            "{name}: {stdout}"
        );
        assert!(
            stdout.contains(&format!(
                "broker: Kafka at {} over sasl_ssl, SASL ",
                sec.sasl_ssl
            )),
            "check says how it connects: {stdout}"
        );
        assert!(!stdout.contains(SCRAM_PASSWORD) && !stdout.contains(PLAIN_PASSWORD));
    }
}

/// Runs `plexus run` on `config`; asserts it fails with exit 2 within `within`, printing one
/// error line that names `address` and contains `cause`; returns how long it took.
fn assert_fails_fast(config: &Path, address: &str, cause: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let out = plexus_command()
        .args(["run", "--no-watch", "--config"])
        .arg(config)
        .env("PLEXUS_CACHE_DIR", config.parent().unwrap().join("cache"))
        .env("PLEXUS_TEST_KAFKA_PASSWORD", "not-the-password")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(errors.len(), 1, "one error line, no noise: {stderr}");
    assert!(
        errors[0].starts_with("error: ")
            && errors[0].contains(address)
            && errors[0].contains(cause),
        "the error names {address} and `{cause}`: {stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert!(took < within, "took {took:?} (limit {within:?}): {stderr}");
    took
}

#[test]
fn a_cluster_that_cannot_be_used_fails_fast_with_one_clear_error() {
    let _serial = serial();
    let scenario = Scenario::new();
    let sec = secured();
    let dir = &sec.tls_dir;
    let scram = "[broker.kafka.sasl]\nmechanism = \"SCRAM-SHA-512\"\nusername = \"plexus\"\npassword_env = \"PLEXUS_TEST_KAFKA_PASSWORD\"\n";
    let untrusted = format!(
        "[broker.kafka.tls]\nca_file = \"{}\"\n",
        dir.join("other-ca.pem").display()
    );
    let topic = unique("absent");
    let expired = format!(
        "[broker.kafka.sasl]\nmechanism = \"OAUTHBEARER\"\ntoken_file = \"{}\"\n",
        scenario.file("expired-token", &bearer_token(-60)).display()
    );
    let route = format!(
        "[plugins.m]\npath = \"{}\"\n[routes.m]\ntopic = \"{topic}\"\nplugin = \"m\"\n",
        plugins::MISBEHAVE
    );
    // Causes that waiting cannot cure end at once; the limit leaves room for a busy machine
    // but stays below the 10 s connect_timeout they would otherwise run into.
    let quick = Duration::from_secs(8);
    let cases = [
        (
            "wrong password",
            sec.sasl_ssl.clone(),
            "",
            tls_table(false) + scram,
            "Authentication failed",
        ),
        (
            "untrusted CA",
            sec.sasl_ssl.clone(),
            "",
            untrusted.clone() + scram,
            "certificate verify failed",
        ),
        (
            "expired bearer token",
            sec.sasl_ssl.clone(),
            "",
            tls_table(false) + &expired,
            "unexpired token",
        ),
        (
            "plaintext client on the TLS port",
            sec.sasl_ssl.clone(),
            "",
            String::new(),
            "security.protocol",
        ),
        (
            "TLS client on the plaintext port",
            bootstrap().to_owned(),
            "",
            tls_table(false),
            "SSL handshake failed",
        ),
        (
            "no client certificate for mutual TLS",
            sec.mtls.clone(),
            "",
            tls_table(false),
            "bad certificate",
        ),
        (
            "nothing listening",
            "127.0.0.1:9".to_owned(),
            "kafka.connect_timeout = \"2s\"",
            String::new(),
            "Connection refused",
        ),
        (
            "unknown topic, creation off",
            bootstrap().to_owned(),
            "kafka.create_topics = false",
            String::new(),
            &format!("no topic `{topic}`"),
        ),
    ];
    for (i, (name, address, broker, tables, cause)) in cases.iter().enumerate() {
        let config = config_at(
            &scenario,
            &format!("case-{i}.toml"),
            address,
            broker,
            &(tables.clone() + &route),
        );
        let took = assert_fails_fast(&config, address, cause, quick);
        eprintln!("{name}: failed in {took:?}");
    }

    // `plexus check --connect` says the same, with the same exit code.
    let config = config_at(
        &scenario,
        "check.toml",
        &sec.sasl_ssl,
        "",
        &(untrusted + scram),
    );
    let (code, _, stderr) = check_connect(&config, &[("PLEXUS_TEST_KAFKA_PASSWORD", "x")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("certificate verify failed"), "{stderr}");
}

#[test]
fn sigterm_while_connecting_ends_the_run_within_two_seconds() {
    let scenario = Scenario::new();
    let config = config_at(
        &scenario,
        "plexus.toml",
        "127.0.0.1:9",
        "kafka.connect_timeout = \"5m\"",
        &format!(
            "[plugins.m]\npath = \"{}\"\n[routes.m]\ntopic = \"t\"\nplugin = \"m\"\n",
            plugins::MISBEHAVE
        ),
    );
    let mut plexus = spawn_plexus(&config);
    // Let it load the plugin and start connecting.
    let log = config.with_extension("log");
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("connecting to Kafka")
        && started.elapsed() < Duration::from_secs(60)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    terminate(&plexus);
    let code = wait_exit(&mut plexus, Duration::from_secs(30));
    let took = signalled.elapsed();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("stopped while connecting"), "{text}");
    eprintln!("SIGTERM while connecting: exited in {took:?}");
    assert!(took < Duration::from_secs(4), "took {took:?}: {text}");
}
