// {{name}}: a Plexus consumer plugin.
//
// Takes `greeting.requested` events ({"name": "Ada"}) and emits a `greeting.sent` event to
// the topic named by its `out` config entry (default `greetings`). A request without a name
// is rejected: the event goes to the route's dead-letter topic with the reason.

import { Outgoing, Reject, emit, info, plugin } from './plexus.js';

class Greeter {
  constructor(config) {
    this.out = config.get('out') ?? 'greetings';
  }

  handle(event) {
    const name = event.json()?.name ?? '';
    if (!name.trim()) throw new Reject('a greeting needs a name');
    info(`greeting ${name}`);
    emit(new Outgoing(this.out, 'greeting.sent').key(name).json({ greeting: `Hello, ${name}!` }));
  }
}

export const { init, handle } = plugin(Greeter);
