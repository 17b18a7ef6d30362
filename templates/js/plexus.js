// Plexus helpers for JavaScript plugins, with the names of the Rust SDK.
//
// Built with componentize-js against the WIT world `plexus:plugin/consumer`
// (`wit/plexus.wit`). What it does for you:
// - `plugin(Class)` returns the component's `init` and `handle` exports from a plain class:
//   `new Class(config)` once, `obj.handle(event)` per event.
// - `Reject` and `Retry` are errors to throw from `handle`; they reach the host as the WIT
//   `handle-error` variant. (A plain `throw "reason"` cannot: it traps with a message about
//   the thrown value's type.) Anything else thrown is a bug: its stack goes to stderr and the
//   call traps, so the event is dead-lettered as a `trap` (as a Rust panic would be).
// - `Event` gives typed access to the delivered event, `Outgoing` builds an emitted one,
//   and `emit`, `config`, `state`, the log functions and `nowMillis` wrap the host's imports.

import { log as hostLog } from 'plexus:plugin/log@0.2.0';
import { emit as hostEmit } from 'plexus:plugin/emitter@0.2.0';
import * as hostConfig from 'plexus:plugin/config@0.2.0';
import * as hostState from 'plexus:plugin/state@0.2.0';
import { nowMillis as hostNowMillis } from 'plexus:plugin/clock@0.2.0';

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** Dead-letter the event with this reason (a bad event: another try will not help). */
export class Reject extends Error {
  constructor(reason) {
    super(reason);
    this.payload = { tag: 'reject', val: String(reason) };
  }
}

/** Try the event again later (a dependency is down), as the route's retry policy says. */
export class Retry extends Error {
  constructor(reason) {
    super(reason);
    this.payload = { tag: 'retry', val: String(reason) };
  }
}

/** The event being handled. */
export class Event {
  constructor(raw) {
    this.raw = raw;
    this.id = raw.id;
    this.type = raw.type;
    this.source = raw.source;
    this.subject = raw.subject;
    this.time = raw.time;
    this.topic = raw.topic;
    this.partition = raw.partition;
    this.offset = raw.offset;
    this.key = raw.key;
    this.contentType = raw.contentType;
    this.correlationId = raw.correlationId;
    this.attempt = raw.attempt;
    this.payload = raw.payload;
  }

  /** The payload as JSON; `Reject` if it is not JSON. */
  json() {
    try {
      return JSON.parse(this.text() ?? 'null');
    } catch (e) {
      throw new Reject(`invalid JSON payload: ${e.message}`);
    }
  }

  /** The payload as UTF-8 text, if it is. */
  text() {
    return decode(this.payload);
  }

  /** The partition key as UTF-8 text, if it is. */
  keyStr() {
    return decode(this.key);
  }

  /** An extension attribute's value, or undefined. */
  extension(name) {
    return this.raw.extensions.find((a) => a.name === name)?.value.val;
  }

  extensionStr(name) {
    const value = this.extension(name);
    return value === undefined ? undefined : String(value);
  }

  /** A transport header (Kafka header) as bytes, or undefined. */
  header(name) {
    return this.raw.headers.find((h) => h.name === name)?.value;
  }
}

function decode(bytes) {
  if (bytes === undefined) return undefined;
  try {
    return fromUtf8.decode(bytes);
  } catch {
    return undefined;
  }
}

const bytesOf = (value) => (typeof value === 'string' ? utf8.encode(value) : new Uint8Array(value));

/** An event to emit: `new Outgoing(topic, type).key('k').json({...})`. */
export class Outgoing {
  constructor(topic, type) {
    this.raw = { topic, type, extensions: [], headers: [] };
  }
  key(key) { this.raw.key = bytesOf(key); return this; }
  subject(subject) { this.raw.subject = subject; return this; }
  dataschema(uri) { this.raw.dataschema = uri; return this; }
  extension(name, value) {
    let typed;
    if (typeof value === 'boolean') typed = { tag: 'boolean', val: value };
    else if (typeof value === 'bigint') typed = { tag: 'integer', val: Number(value) };
    else if (typeof value === 'number' && Number.isInteger(value)) typed = { tag: 'integer', val: value };
    else if (value instanceof Uint8Array) typed = { tag: 'binary', val: value };
    else typed = { tag: 'string', val: String(value) };
    this.raw.extensions.push({ name, value: typed });
    return this;
  }
  header(name, value) { this.raw.headers.push({ name, value: bytesOf(value) }); return this; }
  json(value) {
    this.raw.contentType = 'application/json';
    this.raw.payload = utf8.encode(JSON.stringify(value));
    return this;
  }
  bytes(contentType, payload) {
    this.raw.contentType = contentType;
    this.raw.payload = new Uint8Array(payload);
    return this;
  }
}

/** Stages `event`; a refusal (a limit, an invalid event) throws `Reject`. */
export function emit(event) {
  try {
    hostEmit(event.raw);
  } catch (e) {
    throw new Reject(`emit refused: ${e.payload ?? e}`);
  }
}

/** The plugin's `config` entries from plexus.toml (other TOML values as JSON text). */
export const config = {
  get: (key) => hostConfig.get(key),
  json: (key) => {
    const value = hostConfig.get(key);
    return value === undefined ? undefined : JSON.parse(value);
  },
  entries: () => hostConfig.entries(),
};

function stateCall(call) {
  try {
    return call();
  } catch (e) {
    const error = e.payload;
    if (error?.tag === 'unavailable') throw new Retry(`state unavailable: ${error.val}`);
    throw new Reject(`state: ${error?.val ?? e}`);
  }
}

const sameBytes = (a, b) =>
  a === b || (a !== undefined && b !== undefined && a.length === b.length && a.every((x, i) => x === b[i]));

/** The plugin's key-value state; writes commit with the event (see the README). */
export const state = {
  get: (key) => stateCall(() => hostState.get(key)),
  set: (key, value, ttlMillis) =>
    stateCall(() => hostState.set(key, bytesOf(value), ttlMillis === undefined ? undefined : BigInt(ttlMillis))),
  delete: (key) => stateCall(() => hostState.delete(key)),
  compareAndSwap: (key, expected, next, ttlMillis) =>
    stateCall(() =>
      hostState.compareAndSwap(key, expected, next, ttlMillis === undefined ? undefined : BigInt(ttlMillis)),
    ),
  update(key, change) {
    for (;;) {
      const current = this.get(key);
      const next = bytesOf(change(current));
      if (sameBytes(current, next) || this.compareAndSwap(key, current, next)) return next;
    }
  },
  increment(key, by = 1) {
    const next = this.update(key, (current) => String((parseInt(decode(current) ?? '0', 10) || 0) + by));
    return parseInt(decode(next), 10);
  },
};

export const trace = (message) => hostLog('trace', String(message));
export const debug = (message) => hostLog('debug', String(message));
export const info = (message) => hostLog('info', String(message));
export const warn = (message) => hostLog('warn', String(message));
export const error = (message) => hostLog('error', String(message));

/** The host's wall-clock time, in milliseconds since the Unix epoch. */
export const nowMillis = () => Number(hostNowMillis());

/** The component's `init` and `handle` exports for `Class`. */
export function plugin(Class) {
  let instance;
  return {
    init(_entries) {
      try {
        instance = new Class(config);
      } catch (e) {
        console.error(e?.stack ?? String(e));
        const failed = new Error(String(e?.message ?? e));
        failed.payload = failed.message;
        throw failed;
      }
    },
    handle(event) {
      try {
        instance.handle(new Event(event));
      } catch (e) {
        if (e instanceof Reject || e instanceof Retry) throw e;
        // A bug: its stack goes to stderr, and the trap dead-letters the event with it.
        console.error(e?.stack ?? String(e));
        throw e;
      }
    },
  };
}
