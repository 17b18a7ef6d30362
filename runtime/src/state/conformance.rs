//! What every state backend must do, as one test each backend's tests run on a fresh
//! store (the memory and local ones in their unit tests, the redis one against a real
//! server in the end-to-end tests).

use super::*;
use futures::executor::block_on;

fn marker(offset: u64) -> Marker {
    Marker {
        route: "r".into(),
        partition: 0,
        offset,
    }
}

fn ns<'a>(store: &'a dyn StateBackend, name: &'static str, quota: Quota) -> txn::Namespace<'a> {
    txn::Namespace { store, name, quota }
}

/// Handles one "event" that runs `f` on a fresh transaction and commits it alone.
fn one_event(
    store: &dyn StateBackend,
    name: &'static str,
    offset: u64,
    f: impl FnOnce(&mut Transaction, &txn::Namespace<'_>),
) -> Committed {
    let namespace = ns(store, name, Quota::UNLIMITED);
    let mut txn = Transaction::begin(Overlay::default());
    f(&mut txn, &namespace);
    let (_, commit) = txn.into_commit(marker(offset), format!("out-{offset}").into_bytes(), None);
    store.commit(name, Quota::UNLIMITED, &[commit]).unwrap()
}

fn read(store: &dyn StateBackend, name: &str, key: &str) -> Option<Vec<u8>> {
    block_on(store.read(name, key)).unwrap().map(|s| s.value)
}

const ALL: Committed = Committed {
    applied: 1,
    stop: None,
};

/// What every backend must do; each backend's tests run it on a fresh store. The namespace
/// quota is checked only where `quota_enforced` (the redis backend leaves it to the server).
pub fn conformance(store: &dyn StateBackend, quota_enforced: bool) {
    // Namespaces are separate; writes reach the store only when committed.
    let namespace = ns(store, "a", Quota::UNLIMITED);
    let mut txn = Transaction::begin(Overlay::default());
    block_on(txn.set(&namespace, "kept", b"1".to_vec(), None)).unwrap();
    assert_eq!(
        block_on(txn.get(&namespace, "kept")).unwrap(),
        Some(b"1".to_vec()),
        "a handler reads its own writes"
    );
    assert_eq!(
        read(store, "a", "kept"),
        None,
        "nothing is visible before the commit"
    );
    let (overlay, commit) = txn.into_commit(marker(1), b"out-1".to_vec(), None);
    // The next event of the group sees the first one's writes before they are committed.
    let mut next = Transaction::begin(overlay);
    assert_eq!(
        block_on(next.get(&namespace, "kept")).unwrap(),
        Some(b"1".to_vec())
    );
    let overlay = next.abort();
    assert!(!overlay.is_empty());
    assert_eq!(store.commit("a", Quota::UNLIMITED, &[commit]).unwrap(), ALL);
    assert_eq!(read(store, "a", "kept"), Some(b"1".to_vec()));
    assert_eq!(read(store, "b", "kept"), None);

    // An event already applied is not applied again; what it emitted comes back.
    let again = one_event(store, "a", 1, |txn, ns| {
        block_on(txn.set(ns, "kept", b"2".to_vec(), None)).unwrap();
    });
    assert_eq!(
        again,
        Committed {
            applied: 0,
            stop: Some(Stop::AlreadyApplied(b"out-1".to_vec()))
        }
    );
    assert_eq!(read(store, "a", "kept"), Some(b"1".to_vec()));
    assert_eq!(
        store
            .applied("r", 0)
            .unwrap()
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![1]
    );

    // Compare-and-swap: two events read the same value; the second to commit conflicts
    // instead of losing the first one's update.
    let namespace = ns(store, "c", Quota::UNLIMITED);
    let mut first = Transaction::begin(Overlay::default());
    let mut second = Transaction::begin(Overlay::default());
    assert!(
        block_on(first.compare_and_swap(&namespace, "n", None, Some(b"1".to_vec()), None)).unwrap()
    );
    assert!(
        block_on(second.compare_and_swap(&namespace, "n", None, Some(b"1".to_vec()), None))
            .unwrap()
    );
    let (_, first) = first.into_commit(marker(10), Vec::new(), None);
    let (_, second) = second.into_commit(marker(11), Vec::new(), None);
    assert_eq!(store.commit("c", Quota::UNLIMITED, &[first]).unwrap(), ALL);
    assert_eq!(
        store.commit("c", Quota::UNLIMITED, &[second]).unwrap(),
        Committed {
            applied: 0,
            stop: Some(Stop::Conflict("n".into()))
        }
    );

    // A key deleted and written again has a new version: a reader of the old one conflicts.
    let mut stale = Transaction::begin(Overlay::default());
    assert_eq!(
        block_on(stale.get(&namespace, "n")).unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(
        one_event(store, "c", 12, |txn, ns| assert!(
            block_on(txn.delete(ns, "n")).unwrap()
        )),
        ALL
    );
    assert_eq!(
        one_event(store, "c", 13, |txn, ns| block_on(txn.set(
            ns,
            "n",
            b"1".to_vec(),
            None
        ))
        .unwrap()),
        ALL
    );
    let (_, stale) = stale.into_commit(marker(14), Vec::new(), None);
    assert!(matches!(
        store.commit("c", Quota::UNLIMITED, &[stale]).unwrap().stop,
        Some(Stop::Conflict(_))
    ));

    // A group stops at its first conflict; the events before it are committed.
    let mut group = Vec::new();
    for (offset, key) in [(20, "g1"), (21, "n"), (22, "g2")] {
        let mut txn = Transaction::begin(Overlay::default());
        block_on(txn.get(&namespace, key)).unwrap();
        block_on(txn.set(&namespace, key, b"x".to_vec(), None)).unwrap();
        group.push(txn.into_commit(marker(offset), Vec::new(), None).1);
    }
    assert_eq!(
        one_event(store, "c", 23, |txn, ns| block_on(txn.set(
            ns,
            "n",
            b"2".to_vec(),
            None
        ))
        .unwrap()),
        ALL
    );
    assert_eq!(
        store.commit("c", Quota::UNLIMITED, &group).unwrap(),
        Committed {
            applied: 1,
            stop: Some(Stop::Conflict("n".into()))
        }
    );
    assert_eq!(read(store, "c", "g1"), Some(b"x".to_vec()));
    assert_eq!(read(store, "c", "g2"), None);

    // Markers below a committed position are pruned.
    store.prune("r", 0, 21).unwrap();
    let left: Vec<u64> = store.applied("r", 0).unwrap().keys().copied().collect();
    assert_eq!(left, vec![23]);
    store.forget_route("r").unwrap();
    assert!(store.applied("r", 0).unwrap().is_empty());

    // Entries expire, and expired entries do not count against the quota.
    assert_eq!(
        one_event(store, "t", 30, |txn, ns| {
            block_on(txn.set(ns, "short", b"v".to_vec(), Some(Duration::from_millis(30)))).unwrap();
            block_on(txn.set(ns, "long", b"v".to_vec(), Some(Duration::from_secs(3600)))).unwrap();
        }),
        ALL
    );
    assert!(read(store, "t", "short").is_some());
    std::thread::sleep(Duration::from_millis(80));
    assert_eq!(read(store, "t", "short"), None);
    assert!(read(store, "t", "long").is_some());
    if quota_enforced {
        assert_eq!(
            block_on(store.usage("t")).unwrap(),
            Usage { keys: 1, bytes: 5 }
        );
    }

    if quota_enforced {
        check_quota(store);
    }
    let big = vec![0; MAX_VALUE_BYTES + 1];
    let mut txn = Transaction::begin(Overlay::default());
    let namespace = ns(store, "q", Quota::UNLIMITED);
    assert!(matches!(
        block_on(txn.set(&namespace, "a", big, None)),
        Err(StateError::TooLarge(_))
    ));

    // Bookkeeping outside the namespaces.
    store.set_meta("m", b"v").unwrap();
    assert_eq!(store.meta("m").unwrap(), Some(b"v".to_vec()));

    check_finished(store);
}

/// A deduping route's finished events: recorded by the commit with the event's writes,
/// found until their window ends, and a second commit of the same key stops as a duplicate
/// without applying its writes.
fn check_finished(store: &dyn StateBackend) {
    let now = crate::event::now_millis();
    let finished = |key: &str, until: i64| Finished {
        route: "d".into(),
        key: dedupe_key("/src", key),
        until,
    };
    let commit = |offset: u64, done: Finished, value: &[u8]| {
        let namespace = ns(store, "dd", Quota::UNLIMITED);
        let mut txn = Transaction::begin(Overlay::default());
        block_on(txn.set(&namespace, "v", value.to_vec(), None)).unwrap();
        let (_, commit) = txn.into_commit(marker(offset), Vec::new(), Some(done));
        store.commit("dd", Quota::UNLIMITED, &[commit]).unwrap()
    };
    let keys = [
        dedupe_key("/src", "e-1"),
        dedupe_key("/src", "e-2"),
        dedupe_key("/other", "e-1"),
    ];
    assert_eq!(store.finished("d", &keys).unwrap(), [false, false, false]);
    assert_eq!(commit(500, finished("e-1", now + 60_000), b"first"), ALL);
    assert_eq!(
        store.finished("d", &keys).unwrap(),
        [true, false, false],
        "found by source and id together"
    );
    assert_eq!(
        store.finished("other-route", &keys[..1]).unwrap(),
        [false],
        "per route"
    );
    assert_eq!(
        commit(501, finished("e-1", now + 60_000), b"second"),
        Committed {
            applied: 0,
            stop: Some(Stop::Duplicate)
        }
    );
    assert_eq!(
        read(store, "dd", "v"),
        Some(b"first".to_vec()),
        "the duplicate's write dropped"
    );
    // A window that has ended remembers nothing.
    assert_eq!(commit(502, finished("e-2", now - 1), b"third"), ALL);
    assert_eq!(store.finished("d", &keys[1..2]).unwrap(), [false]);
    assert_eq!(commit(503, finished("e-2", now + 60_000), b"fourth"), ALL);
    assert_eq!(read(store, "dd", "v"), Some(b"fourth".to_vec()));
}

/// The quota: refused at the call, naming the limit; checked again at the commit.
fn check_quota(store: &dyn StateBackend) {
    let quota = Quota {
        max_keys: 2,
        max_bytes: 1000,
    };
    let limited = ns(store, "q", quota);
    let mut txn = Transaction::begin(Overlay::default());
    block_on(txn.set(&limited, "a", b"1".to_vec(), None)).unwrap();
    block_on(txn.set(&limited, "b", b"1".to_vec(), None)).unwrap();
    let refused = block_on(txn.set(&limited, "c", b"1".to_vec(), None)).unwrap_err();
    assert!(
        refused.to_string().contains("limits.max_state_keys"),
        "{refused}"
    );
    block_on(txn.set(&limited, "a", b"2".to_vec(), None)).expect("replacing a key adds none");
    let (overlay, commit) = txn.into_commit(marker(40), Vec::new(), None);
    let mut over = Transaction::begin(overlay);
    assert!(
        block_on(over.set(&limited, "d", b"1".to_vec(), None)).is_err(),
        "the group's writes count"
    );
    let mut sneaky = Transaction::begin(Overlay::default());
    block_on(sneaky.set(&limited, "e", b"1".to_vec(), None)).unwrap();
    let (_, sneaky) = sneaky.into_commit(marker(41), Vec::new(), None);
    assert_eq!(store.commit("q", quota, &[commit]).unwrap(), ALL);
    assert!(
        matches!(store.commit("q", quota, &[sneaky]).unwrap().stop, Some(Stop::OverQuota(m)) if m.contains("max_state_keys"))
    );
}
