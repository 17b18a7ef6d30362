//! The recovery examples, run as a user would:
//! - `examples/ledger` (event sourcing) on Kafka: the balances folded from the events equal
//!   an independent fold of the same events; after `plexus positions --reset` to the
//!   beginning and a fresh state, the rebuilt balances are the same.
//! - `examples/checkout-saga` (choreography with compensation): every order ends confirmed
//!   or cancelled, once, and the wallets and the stock agree with the confirmed orders, with
//!   the stock service failing first attempts (retried), payments declined, stock running
//!   out (compensated by refunds); on Kafka also with `plexus` SIGKILLed mid-run and
//!   restarted, where the routes' dedupe keeps a step published twice from being taken twice.

use plexus::event::Event;
use plexus::state::StateBackend;
use plexus::state::local::LocalBackend;
use plexus_tests::kafka::{bootstrap, kill_hard, read_for, spawn_plexus, unique, wait_exit};
use plexus_tests::{Scenario, example_config, plexus_command, repo};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Integers the plugin `ns` keeps under `prefix/NAME` in the local state at `path`, by NAME.
fn integers(
    path: &Path,
    ns: &str,
    prefix: &str,
    names: &BTreeSet<String>,
) -> BTreeMap<String, i64> {
    let store = LocalBackend::open(path).unwrap();
    names
        .iter()
        .filter_map(|name| {
            let stored = futures::executor::block_on(store.read(ns, &format!("{prefix}/{name}")))
                .unwrap()?;
            Some((
                name.clone(),
                String::from_utf8(stored.value).unwrap().parse().unwrap(),
            ))
        })
        .collect()
}

/// The balances the ledger's events give, folded here independently of the plugin: an
/// account exists once opened; a withdrawal larger than the balance is refused.
fn fold_ledger(events: &[Value]) -> BTreeMap<String, i64> {
    let mut balances: BTreeMap<String, i64> = BTreeMap::new();
    for event in events {
        let account = event["data"]["account"].as_str().unwrap().to_owned();
        let amount = event["data"]["amount_cents"].as_i64().unwrap_or(0);
        match (event["type"].as_str().unwrap(), balances.get_mut(&account)) {
            ("ledger.account.opened.v1", None) => {
                balances.insert(account, 0);
            }
            ("ledger.deposited.v1", Some(balance)) => *balance += amount,
            ("ledger.withdrawn.v1", Some(balance)) if *balance >= amount => *balance -= amount,
            _ => {}
        }
    }
    balances
}

#[test]
fn the_ledger_rebuilt_from_the_beginning_on_fresh_state_has_the_same_balances() {
    let _serial = serial();
    let scenario = Scenario::new();
    let prefix = unique("ledger");
    let text = example_config("ledger", "kafka.toml", "unused.jsonl")
        .replace("\"ledger.", &format!("\"{prefix}."))
        .replace(
            "group = \"plexus-ledger\"",
            &format!("group = \"{prefix}\""),
        )
        .replace("127.0.0.1:19092", bootstrap())
        .replace("idle_exit = \"5s\"", "idle_exit = \"3s\"");
    let with_state = |name: &str| {
        let path = scenario.dir.path().join(name);
        let config = scenario.file(
            "ledger.toml",
            &format!("{text}\n[state]\npath = \"{}\"\n", path.display()),
        );
        (config, path)
    };
    let events = lines_of(&repo("examples/ledger/events/ledger.jsonl"));
    let expected = fold_ledger(&events);
    let accounts: BTreeSet<String> = events
        .iter()
        .map(|e| e["data"]["account"].as_str().unwrap().to_owned())
        .collect();

    let (config, first_state) = with_state("first.redb");
    let mut first = spawn_plexus(&config);
    assert_eq!(wait_exit(&mut first, Duration::from_secs(120)), 0);
    let folded = integers(&first_state, "ledger-account", "balance", &accounts);
    assert_eq!(folded, expected, "the plugin's fold agrees with the test's");
    assert!(
        expected.values().any(|b| *b > 0),
        "a ledger with money in it"
    );

    let config_text = config.to_str().unwrap();
    let reset = plexus_command()
        .args([
            "positions",
            "--config",
            config_text,
            "--reset",
            "account",
            "--to",
            "beginning",
        ])
        .output()
        .unwrap();
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let (config, second_state) = with_state("rebuilt.redb");
    let input = format!("{prefix}.events=/dev/null");
    let rebuild = plexus_command()
        .args([
            "run",
            "--no-watch",
            "--config",
            config.to_str().unwrap(),
            "--input",
            &input,
        ])
        .env("PLEXUS_CACHE_DIR", scenario.dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        rebuild.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuild.stderr)
    );
    let summary = String::from_utf8_lossy(&rebuild.stderr);
    assert!(
        summary.contains(&format!("received {}", events.len())),
        "every event read again, none appended: {summary}"
    );
    let rebuilt = integers(&second_state, "ledger-account", "balance", &accounts);
    assert_eq!(
        rebuilt, folded,
        "the same balances, rebuilt from the events alone"
    );
}

/// What the saga's outcome says about each order, checked against the wallets and the stock.
fn assert_consistent(events: &[Value], state: &Path, credit_cents: i64, stock: i64) {
    let mut steps: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut orders: BTreeMap<String, Value> = BTreeMap::new();
    for event in events {
        let order = event["data"]["order"].as_str().unwrap().to_owned();
        let kind = event["type"]
            .as_str()
            .unwrap()
            .trim_start_matches("checkout.")
            .trim_end_matches(".v1")
            .to_owned();
        steps
            .entry(order.clone())
            .or_default()
            .push((kind, event["id"].as_str().unwrap().to_owned()));
        orders.insert(order, event["data"].clone());
    }
    let mut spent: BTreeMap<String, i64> = BTreeMap::new();
    let mut reserved: BTreeMap<String, i64> = BTreeMap::new();
    let (mut confirmed, mut cancelled, mut compensated) = (0, 0, 0);
    for (order, steps) in &steps {
        // A step published twice (after a crash) keeps its id: count each step once.
        let distinct: BTreeSet<&(String, String)> = steps.iter().collect();
        let count = |kind: &str| distinct.iter().filter(|(k, _)| k == kind).count();
        let outcome = (count("order.confirmed"), count("order.cancelled"));
        let data = &orders[order];
        match outcome {
            (1, 0) => {
                assert_eq!(
                    (
                        count("payment.captured"),
                        count("stock.reserved"),
                        count("payment.refunded")
                    ),
                    (1, 1, 0),
                    "{order}: {steps:?}"
                );
                *spent
                    .entry(data["customer"].as_str().unwrap().to_owned())
                    .or_default() += data["amount_cents"].as_i64().unwrap();
                *reserved
                    .entry(data["sku"].as_str().unwrap().to_owned())
                    .or_default() += data["quantity"].as_i64().unwrap();
                confirmed += 1;
            }
            (0, 1) if count("payment.declined") == 1 => {
                assert_eq!(
                    (count("payment.captured"), count("payment.refunded")),
                    (0, 0),
                    "{order}: {steps:?}"
                );
                cancelled += 1;
            }
            (0, 1) => {
                assert_eq!(
                    (
                        count("payment.captured"),
                        count("stock.failed"),
                        count("payment.refunded")
                    ),
                    (1, 1, 1),
                    "{order}: compensated: {steps:?}"
                );
                compensated += 1;
            }
            other => {
                panic!("{order} did not end once, confirmed or cancelled: {other:?} {steps:?}")
            }
        }
    }
    assert!(
        confirmed > 0 && cancelled + compensated > 0,
        "both endings: {confirmed} confirmed, {cancelled} declined, {compensated} compensated"
    );
    assert!(compensated > 0, "the compensation ran (stock ran out)");
    let customers: BTreeSet<String> = orders
        .values()
        .map(|o| o["customer"].as_str().unwrap().to_owned())
        .collect();
    let skus: BTreeSet<String> = orders
        .values()
        .map(|o| o["sku"].as_str().unwrap().to_owned())
        .collect();
    let holds = |ns: &str,
                 prefix: &str,
                 names: &BTreeSet<String>,
                 took: &BTreeMap<String, i64>,
                 limit: i64| {
        let held = integers(state, ns, prefix, names);
        for name in names {
            let held = held.get(name).copied().unwrap_or(0);
            assert_eq!(
                held,
                took.get(name).copied().unwrap_or(0),
                "{ns} {prefix}/{name}: what the confirmed orders took"
            );
            assert!(held <= limit, "{ns} {prefix}/{name}: {held} over {limit}");
        }
    };
    holds("payments", "wallet", &customers, &spent, credit_cents);
    holds("stock", "reserved", &skus, &reserved, stock);
}

/// `count` orders over 5 customers and 3 items, as the example's events are; every tenth is
/// sent twice (a producer retrying), which only the routes' dedupe keeps from being paid
/// twice.
fn orders(count: usize) -> String {
    (1..=count)
        .flat_map(|i| std::iter::repeat_n(i, if i % 10 == 0 { 2 } else { 1 }))
        .map(|i| {
            serde_json::json!({
                "specversion": "1.0", "id": format!("placed-{i}"), "source": "/shop/web",
                "type": "checkout.order.placed.v1", "partitionkey": format!("o-{i}"),
                "data": {"order": format!("o-{i}"), "customer": format!("cust-{}", i % 5),
                         "sku": format!("sku-{}", i % 3), "quantity": 1 + i % 3, "amount_cents": 500 + (i % 7) * 300},
            })
            .to_string()
                + "\n"
        })
        .collect()
}

#[test]
fn every_checkout_ends_consistent_with_injected_failures() {
    let scenario = Scenario::new();
    scenario.file("orders.jsonl", &orders(120));
    let text = example_config("checkout-saga", "plexus.toml", "unused.jsonl")
        .replace(
            &format!(
                "{}/events/orders.jsonl",
                repo("examples/checkout-saga").display()
            ),
            "orders.jsonl",
        )
        .replace("stock = 6", "stock = 15");
    let state = scenario.dir.path().join("saga.redb");
    let report = scenario.run(&format!(
        "{text}\n[state]\npath = \"{}\"\n",
        state.display()
    ));
    assert!(
        report.routes["stock"].retried > 0,
        "the injected failures happened"
    );
    assert!(
        report.routes.values().all(|r| r.dead_lettered.is_empty()),
        "{report:?}"
    );
    let events = lines_of(&scenario.dir.path().join("events.jsonl"));
    assert_consistent(&events, &state, 10_000, 15);
}

#[test]
fn the_checkout_saga_on_kafka_stays_consistent_across_kills() {
    let _serial = serial();
    let scenario = Scenario::new();
    let prefix = unique("saga");
    scenario.file("orders.jsonl", &orders(300));
    let state = scenario.dir.path().join("saga.redb");
    let text = example_config("checkout-saga", "plexus.toml", "unused.jsonl")
        .replace(&format!("{}/events/orders.jsonl", repo("examples/checkout-saga").display()), &scenario.dir.path().join("orders.jsonl").display().to_string())
        .replace("[broker]\npartitions = 4\n", &format!("[broker]\nkind = \"kafka\"\npartitions = 4\nidle_exit = \"4s\"\n[broker.kafka]\nbootstrap_servers = \"{}\"\ngroup = \"{prefix}\"\n", bootstrap()))
        .replace("\"checkout.events\"", &format!("\"{prefix}.events\""))
        .replace("\"checkout.dead-letters\"", &format!("\"{prefix}.dead-letters\""))
        .replace("stock = 6", "stock = 20");
    let config = scenario.file(
        "saga.toml",
        &format!("{text}\n[state]\npath = \"{}\"\n", state.display()),
    );
    let events_topic = format!("{prefix}.events");
    // The first run feeds the orders; it and two more are killed part-way.
    for round in 0..3 {
        let mut child = spawn_plexus(&config);
        let grows_past = 300 + 150 * (round + 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while plexus_tests::kafka::records_in(&events_topic, 4) < grows_past {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: the saga did not progress"
            );
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        kill_hard(&mut child);
        if round == 0 {
            // Later runs must not feed the orders again.
            let text = std::fs::read_to_string(&config).unwrap();
            let fed = scenario
                .dir
                .path()
                .join("orders.jsonl")
                .display()
                .to_string();
            std::fs::write(
                &config,
                text.replace(
                    &fed,
                    &scenario.dir.path().join("none.jsonl").display().to_string(),
                ),
            )
            .unwrap();
            scenario.file("none.jsonl", "");
        }
    }
    let mut last = spawn_plexus(&config);
    assert_eq!(wait_exit(&mut last, Duration::from_secs(180)), 0);
    let events: Vec<Value> = read_for(&events_topic, Duration::from_secs(5))
        .iter()
        .map(|e: &Event| serde_json::from_str(&plexus::testing::cloudevents::encode(e)).unwrap())
        .collect();
    assert_consistent(&events, &state, 10_000, 20);
}
