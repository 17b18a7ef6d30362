/* A thin layer over the generated bindings (bindings/consumer.h) with the Rust SDK's
 * names: the outcome of a handler (plexus_reject, plexus_retry), a string field of the
 * event's JSON payload, emitting an event, and logging.
 *
 * Ownership, as the bindings define it: `exports_consumer_handle` owns the event it is
 * given (free it with consumer_event_free) and the error it fills in is freed by the
 * host's post-return call, so its strings must be malloc'd (plexus_reject does that).
 * Pitfall: a crash (abort, a bad pointer) is not a rejection; it ends the call as a trap.
 */
#ifndef PLEXUS_H
#define PLEXUS_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "consumer.h"

/* Rejects the event: the host dead-letters it at once with `reason`. Returns false, the
 * handler's return value for a failure. */
static inline bool plexus_reject(consumer_handle_error_t *err, const char *reason) {
  err->tag = PLEXUS_PLUGIN_TYPES_HANDLE_ERROR_REJECT;
  consumer_string_dup(&err->val.reject, reason);
  return false;
}

/* Asks for the event again after a back-off, up to the route's retry limit. Returns false. */
static inline bool plexus_retry(consumer_handle_error_t *err, const char *reason) {
  err->tag = PLEXUS_PLUGIN_TYPES_HANDLE_ERROR_RETRY;
  consumer_string_dup(&err->val.retry, reason);
  return false;
}

/* Writes a record to the host's log, printf-style, tagged with the plugin's name. */
static inline void plexus_log(plexus_plugin_log_level_t level, const char *format, ...) {
  char message[1024];
  va_list args;
  va_start(args, format);
  int length = vsnprintf(message, sizeof message, format, args);
  va_end(args);
  if (length < 0) return;
  consumer_string_t text = {(uint8_t *)message, strlen(message)};
  plexus_plugin_log_log(level, &text);
}
#define plexus_info(...) plexus_log(PLEXUS_PLUGIN_LOG_LEVEL_INFO, __VA_ARGS__)
#define plexus_warn(...) plexus_log(PLEXUS_PLUGIN_LOG_LEVEL_WARN, __VA_ARGS__)

/* Finds the string value of top-level key `key` in the JSON object `payload`, as it is
 * written there (escapes kept, so it can be put back between quotes as it is). Returns 1
 * and sets *value and *length when found, 0 when the key is absent or the event has no
 * data, -1 when the key's value is not a string. A scanner for small flat objects, not a
 * JSON parser: for real documents, add one (cJSON, say) to the build. */
static inline int plexus_json_string(const consumer_option_list_u8_t *payload, const char *key,
                                     const char **value, size_t *length) {
  if (!payload->is_some) return 0;
  const char *at = (const char *)payload->val.ptr;
  const char *end = at + payload->val.len;
  size_t key_length = strlen(key);
  int depth = 0;
  while (at < end) {
    char c = *at++;
    if (c == '{' || c == '[') { depth++; continue; }
    if (c == '}' || c == ']') { depth--; continue; }
    if (c != '"') continue;
    const char *start = at; /* a string: find its end, skipping escapes */
    while (at < end && *at != '"') at += (*at == '\\') ? 2 : 1;
    if (at >= end) return 0;
    size_t string_length = (size_t)(at - start);
    at++;
    const char *colon = at;
    while (colon < end && (*colon == ' ' || *colon == '\t' || *colon == '\n' || *colon == '\r')) colon++;
    bool is_key = colon < end && *colon == ':';
    if (!is_key || depth != 1 || string_length != key_length || memcmp(start, key, key_length) != 0) continue;
    const char *v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')) v++;
    if (v >= end || *v != '"') return -1;
    const char *text = ++v;
    while (v < end && *v != '"') v += (*v == '\\') ? 2 : 1;
    if (v >= end) return -1;
    *value = text;
    *length = (size_t)(v - text);
    return 1;
  }
  return 0;
}

/* Stages an event of `type` for `topic` with key `key` (NULL for none) and JSON data
 * `json` (`application/json`); the host publishes it only if the handler succeeds. A
 * refusal (a limit, an invalid event) rejects the event being handled with the reason
 * and returns false. */
static inline bool plexus_emit_json(const char *topic, const char *type, const char *key,
                                    const char *json, consumer_handle_error_t *err) {
  plexus_plugin_emitter_outgoing_event_t event = {0};
  consumer_string_set(&event.topic, topic);
  consumer_string_set(&event.type, type);
  if (key) {
    event.key.is_some = true;
    event.key.val.ptr = (uint8_t *)key;
    event.key.val.len = strlen(key);
  }
  event.content_type.is_some = true;
  consumer_string_set(&event.content_type.val, "application/json");
  event.payload.is_some = true;
  event.payload.val.ptr = (uint8_t *)json;
  event.payload.val.len = strlen(json);
  consumer_string_t refusal;
  if (plexus_plugin_emitter_emit(&event, &refusal)) return true;
  char reason[1024];
  snprintf(reason, sizeof reason, "emit refused: %.*s", (int)refusal.len, (const char *)refusal.ptr);
  consumer_string_free(&refusal);
  return plexus_reject(err, reason);
}

#endif
