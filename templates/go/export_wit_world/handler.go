// Package export_wit_world is {{name}}, a Plexus consumer plugin: Init and Handle are the
// functions the host calls (the Go bindings generator names the package).
//
// It takes `greeting.requested` events ({"name": "Ada"}) and emits a `greeting.sent` event
// to the topic named by its `out` config entry (default `greetings`). A request without a
// name is rejected: the event goes to the route's dead-letter topic with the reason.
package export_wit_world

import (
	"strings"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/plexus"
)

// out is the topic greetings go to. Package variables live as long as the plugin's
// instance: Init sets them once, and every Handle sees them.
var out = "greetings"

type request struct {
	Name string `json:"name"`
}

// Init is called once per instance with the plugin's config.
func Init(entries []witTypes.Tuple2[string, string]) plexus.Started {
	if topic := plexus.Config(entries)["out"]; topic != "" {
		out = topic
	}
	return plexus.Ready()
}

// Handle is called once per event.
func Handle(event plexus.Event) plexus.Outcome {
	var req request
	if err := plexus.JSON(event, &req); err != nil {
		return plexus.Reject(err.Error())
	}
	if strings.TrimSpace(req.Name) == "" {
		return plexus.Reject("a greeting needs a name")
	}
	plexus.Info("greeting %s", req.Name)
	greeting := plexus.NewOutgoing(out, "greeting.sent").
		Key(req.Name).
		JSON(map[string]string{"greeting": "Hello, " + req.Name + "!"})
	if err := plexus.Emit(greeting); err != nil {
		return plexus.Reject(err.Error())
	}
	return plexus.Ok()
}
