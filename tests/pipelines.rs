//! Whole pipelines on the embedded broker, with real plugins built from source: the shop
//! chain, the catalog fan-out, per-key order under concurrency, deterministic emit ids.

use plexus::event::emitted_event_id;
use plexus_tests::{Scenario, attr, event_line, example_config, plugins};
use serde_json::{Value, json};
use std::collections::BTreeMap;

#[test]
fn shop_chain_produces_exactly_the_expected_notifications() {
    let scenario = Scenario::new();
    let report = scenario.run(&example_config(
        "shop",
        "plexus.toml",
        "notifications.jsonl",
    ));

    let notifications = scenario.output("notifications.jsonl");
    let by_order: BTreeMap<String, Value> = notifications
        .json()
        .into_iter()
        .map(|n| (n["order_id"].as_str().unwrap().to_owned(), n))
        .collect();
    let messages: BTreeMap<&str, &str> = by_order
        .iter()
        .map(|(k, v)| (k.as_str(), v["message"].as_str().unwrap()))
        .collect();
    assert_eq!(
        messages,
        BTreeMap::from([
            ("o-1001", "Your order o-1001 over 49.50 EUR is confirmed."),
            ("o-1002", "Your order o-1002 over 89.00 EUR is confirmed."),
            (
                "o-1003",
                "Your order o-1003 could not be accepted: total 20000 does not match the items (24000)."
            ),
            (
                "o-1004",
                "Your order o-1004 could not be accepted: total 65000 is over the limit of 50000."
            ),
            ("o-1008", "Your order o-1008 over 71.00 EUR is confirmed."),
        ])
    );
    assert_eq!(
        notifications.len(),
        5,
        "one notification per order, no duplicates"
    );

    // Lineage: correlation id kept through two hops, trace context copied, ids derived.
    let first = notifications
        .0
        .iter()
        .find(|e| e.correlation_id.as_deref() == Some("checkout-1001"))
        .expect("o-1001");
    assert_eq!(
        attr(first, "traceparent").as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    let validated_id = emitted_event_id("order-1001", "validate", 0);
    assert_eq!(first.id, emitted_event_id(&validated_id, "notify", 0));
    assert_eq!(attr(first, "causationid"), Some(validated_id.clone()));
    assert!(
        attr(first, "plexushandledby")
            .unwrap()
            .starts_with("notifier@sha256:")
    );
    assert_eq!(first.key.as_deref(), Some(&b"c-ada"[..]));

    // The dashboard's state-store counts reach the exact totals.
    let dashboard = scenario.output("dashboard.jsonl").json();
    assert_eq!(dashboard.len(), 5);
    let last = dashboard
        .iter()
        .max_by_key(|d| d["validated"].as_i64().unwrap() + d["rejected"].as_i64().unwrap())
        .unwrap();
    assert_eq!(
        last,
        &json!({"validated": 3, "rejected": 2, "revenue_cents": 4950 + 8900 + 7100})
    );

    // The non-order payload and the broken line are dead letters, with their reasons.
    let dead = scenario.output("dead-letters.jsonl").by_dlq_kind();
    assert_eq!(dead.keys().collect::<Vec<_>>(), ["rejected", "undecodable"]);
    assert_eq!(dead["rejected"][0].id, "order-1006");
    let undecodable = &dead["undecodable"][0];
    let reason = attr(undecodable, "plexusdlqreason").unwrap();
    assert!(
        reason.contains("orders.jsonl:7:") && reason.contains("EOF while parsing"),
        "{reason}"
    );
    assert!(
        String::from_utf8_lossy(undecodable.data())
            .starts_with(r#"{"specversion":"1.0","id":"order-1007""#)
    );

    let validate = &report.routes["validate"];
    assert_eq!(
        (validate.received, validate.succeeded, validate.filtered),
        (8, 5, 1)
    );
    assert_eq!(validate.dead_lettered_total(), 2);
}

#[test]
fn emitted_ids_are_the_same_in_every_run() {
    let ids = || {
        let scenario = Scenario::new();
        scenario.run(&example_config(
            "shop",
            "plexus.toml",
            "notifications.jsonl",
        ));
        let mut ids: Vec<String> = scenario
            .output("notifications.jsonl")
            .0
            .into_iter()
            .map(|e| e.id)
            .collect();
        ids.sort();
        ids
    };
    let first = ids();
    assert_eq!(first.len(), 5);
    assert_eq!(
        first,
        ids(),
        "a replay must re-emit the same ids so duplicates are recognisable"
    );
}

#[test]
fn catalog_fans_out_to_three_independent_routes() {
    let scenario = Scenario::new();
    let report = scenario.run(&example_config(
        "catalog",
        "plexus.toml",
        "announcements.jsonl",
    ));
    let stock = scenario.output("inventory.jsonl").json();
    let prices = scenario.output("billing.jsonl").json();
    let announcements = scenario.output("announcements.jsonl").json();
    assert_eq!(stock.len(), 6, "inventory sees every product");
    assert_eq!(announcements.len(), 6, "announcements see every product");
    assert_eq!(
        prices.len(),
        5,
        "billing prices all but the one without a price"
    );
    let mut products: Vec<&str> = stock
        .iter()
        .map(|s| s["product_id"].as_str().unwrap())
        .collect();
    products.sort();
    assert_eq!(
        products,
        [
            "p-chair", "p-desk", "p-kettle", "p-lamp", "p-mug", "p-sample"
        ]
    );
    assert!(
        stock
            .iter()
            .any(|s| s == &json!({"product_id": "p-lamp", "quantity": 25}))
    );
    assert!(prices.iter().any(|p| p == &json!({"product_id": "p-desk", "price_cents": 45000, "currency": "EUR"})));
    let dead = scenario.output("dead-letters.jsonl");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead.0[0].id, "product-4");
    assert_eq!(dead.attrs("plexusdlqroute"), ["billing"]);
    assert_eq!(
        dead.attrs("plexusdlqreason"),
        ["product p-sample has no price"]
    );
    for route in ["inventory", "billing", "announcements"] {
        assert_eq!(report.routes[route].received, 6, "{route}");
    }
}

#[test]
fn per_key_order_holds_with_concurrency_above_one() {
    const KEYS: usize = 8;
    const PER_KEY: usize = 150;
    let scenario = Scenario::new();
    let mut lines = Vec::new();
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            lines.push(event_line(
                &format!("k{key}-{seq}"),
                "test.seq",
                Some(&format!("key-{key}")),
                json!({"seq": seq}),
            ));
        }
    }
    let input = scenario.events("in.jsonl", &lines);
    let report = scenario.run(&format!(
        r#"
        [broker]
        partitions = 2
        [[inputs]]
        topic = "in"
        file = "{}"
        [[outputs]]
        topic = "echo"
        file = "echo.jsonl"
        [[outputs]]
        topic = "dlq"
        file = "dlq.jsonl"
        [plugins.misbehave]
        path = "{}"
        config = {{ out = "echo", spin = 2000 }}
        [routes.echo]
        topic = "in"
        plugin = "misbehave"
        concurrency = 4
        dead_letter = "dlq"
        "#,
        input.display(),
        plugins::MISBEHAVE
    ));
    assert!(
        scenario.output("dlq.jsonl").is_empty(),
        "the plugin saw a key go backwards"
    );
    let echoed = scenario.output("echo.jsonl");
    assert_eq!(echoed.len(), KEYS * PER_KEY);
    let mut per_key: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
    for (event, payload) in echoed.0.iter().zip(echoed.json()) {
        per_key
            .entry(event.key.clone().unwrap())
            .or_default()
            .push(payload["seq"].as_i64().unwrap());
    }
    assert_eq!(per_key.len(), KEYS);
    for (key, seqs) in per_key {
        assert_eq!(
            seqs,
            (0..PER_KEY as i64).collect::<Vec<_>>(),
            "key {}",
            String::from_utf8_lossy(&key)
        );
    }
    assert_eq!(report.routes["echo"].succeeded, (KEYS * PER_KEY) as u64);
}
