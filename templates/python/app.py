"""{{name}}: a Plexus consumer plugin.

Takes `greeting.requested` events ({"name": "Ada"}) and emits a `greeting.sent` event to
the topic named by its `out` config entry (default `greetings`). A request without a name
is rejected: the event goes to the route's dead-letter topic with the reason.
"""

import plexus
from plexus import Outgoing, Reject


class Greeter:
    def __init__(self, config):
        self.out = config.get("out") or "greetings"

    def handle(self, event):
        name = (event.json() or {}).get("name", "")
        if not name.strip():
            raise Reject("a greeting needs a name")
        plexus.info(f"greeting {name}")
        plexus.emit(
            Outgoing(self.out, "greeting.sent")
            .key(name)
            .json({"greeting": f"Hello, {name}!"})
        )


WitWorld = plexus.plugin(Greeter)
