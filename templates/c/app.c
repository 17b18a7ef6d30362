/* {{name}}: a Plexus consumer plugin.
 *
 * Takes `greeting.requested` events ({"name": "Ada"}) and emits a `greeting.sent` event to
 * the topic named by its `out` config entry (default `greetings`). A request without a
 * name is rejected: the event goes to the route's dead-letter topic with the reason.
 */
#include <stdlib.h>

#include "plexus.h"

/* The topic greetings go to. Globals live as long as the plugin's instance: init sets them
 * once, and every handle sees them. */
static char out[256] = "greetings";

bool exports_consumer_init(consumer_list_tuple2_string_string_t *config, consumer_string_t *err) {
  for (size_t i = 0; i < config->len; i++) {
    consumer_tuple2_string_string_t *entry = &config->ptr[i];
    if (entry->f0.len == 3 && memcmp(entry->f0.ptr, "out", 3) == 0 && entry->f1.len > 0 &&
        entry->f1.len < sizeof out) {
      memcpy(out, entry->f1.ptr, entry->f1.len);
      out[entry->f1.len] = '\0';
    }
  }
  consumer_list_tuple2_string_string_free(config);
  return true;
}

static bool only_spaces(const char *text, size_t length) {
  for (size_t i = 0; i < length; i++)
    if (text[i] != ' ') return false;
  return true;
}

static bool greet(consumer_event_t *event, consumer_handle_error_t *err) {
  const char *name;
  size_t length;
  int found = plexus_json_string(&event->payload, "name", &name, &length);
  if (found < 0) return plexus_reject(err, "the name is not a string");
  if (found == 0 || only_spaces(name, length)) return plexus_reject(err, "a greeting needs a name");
  if (length > 200) return plexus_reject(err, "the name is longer than 200 bytes");

  char who[201], greeting[256];
  memcpy(who, name, length);
  who[length] = '\0';
  plexus_info("greeting %s", who);
  snprintf(greeting, sizeof greeting, "{\"greeting\":\"Hello, %s!\"}", who);
  return plexus_emit_json(out, "greeting.sent", who, greeting, err);
}

bool exports_consumer_handle(consumer_event_t *event, consumer_handle_error_t *err) {
  bool handled = greet(event, err);
  consumer_event_free(event);
  return handled;
}
