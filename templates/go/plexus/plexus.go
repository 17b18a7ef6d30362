// Package plexus is a thin layer over the generated bindings with the Rust SDK's names:
// the outcome of a handler (Ok, Reject, Retry), the event's JSON payload, Outgoing events
// and Emit, the plugin's config, its state and logging.
//
// Pitfall: a panic is not a rejection. It ends the call as a trap (its message is in the
// host's log and in the dead letter's reason); return Reject or Retry for failures you
// expect.
package plexus

import (
	"encoding/json"
	"errors"
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/plexus_plugin_emitter"
	"wit_component/plexus_plugin_log"
	"wit_component/plexus_plugin_state"
	"wit_component/plexus_plugin_types"
)

// Event is one event, as delivered to the plugin.
type Event = plexus_plugin_types.Event

// Outcome is what Handle returns: Ok, Reject or Retry.
type Outcome = witTypes.Result[witTypes.Unit, plexus_plugin_types.HandleError]

// Started is what Init returns: Ready, or Failed.
type Started = witTypes.Result[witTypes.Unit, string]

// Ok says the event was handled; what it emitted is published.
func Ok() Outcome {
	return witTypes.Ok[witTypes.Unit, plexus_plugin_types.HandleError](witTypes.Unit{})
}

// Reject sends the event to the route's dead-letter topic at once, with reason.
func Reject(reason string) Outcome {
	return witTypes.Err[witTypes.Unit](plexus_plugin_types.MakeHandleErrorReject(reason))
}

// Retry delivers the event again after a back-off, up to the route's retry limit.
func Retry(reason string) Outcome {
	return witTypes.Err[witTypes.Unit](plexus_plugin_types.MakeHandleErrorRetry(reason))
}

// Ready says the plugin started.
func Ready() Started { return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{}) }

// Failed says the plugin cannot start, and why; the host does not serve it.
func Failed(reason string) Started { return witTypes.Err[witTypes.Unit](reason) }

// Config is the plugin's `config` entries from plexus.toml (other TOML values as JSON
// text), from the list Init is given.
func Config(entries []witTypes.Tuple2[string, string]) map[string]string {
	config := make(map[string]string, len(entries))
	for _, entry := range entries {
		config[entry.F0] = entry.F1
	}
	return config
}

// JSON decodes the event's payload into value; an event without data is an error.
func JSON(event Event, value any) error {
	if event.Payload.IsNone() {
		return errors.New("the event has no data")
	}
	if err := json.Unmarshal(event.Payload.Some(), value); err != nil {
		return fmt.Errorf("the event's data is not the JSON expected: %w", err)
	}
	return nil
}

// Outgoing is an event to emit, built with NewOutgoing and its methods.
type Outgoing struct {
	event plexus_plugin_types.OutgoingEvent
	err   error
}

// NewOutgoing is an event of CloudEvents type eventType for topic, without data.
func NewOutgoing(topic, eventType string) Outgoing {
	return Outgoing{event: plexus_plugin_types.OutgoingEvent{
		Topic:       topic,
		Type:        eventType,
		Key:         witTypes.None[[]uint8](),
		Subject:     witTypes.None[string](),
		ContentType: witTypes.None[string](),
		Dataschema:  witTypes.None[string](),
		Payload:     witTypes.None[[]uint8](),
	}}
}

// Key sets the partition key: events with equal keys stay in order.
func (o Outgoing) Key(key string) Outgoing {
	o.event.Key = witTypes.Some([]uint8(key))
	return o
}

// Subject sets the CloudEvents subject.
func (o Outgoing) Subject(subject string) Outgoing {
	o.event.Subject = witTypes.Some(subject)
	return o
}

// JSON sets the data to value as JSON (`application/json`); an error encoding it is
// returned by Emit.
func (o Outgoing) JSON(value any) Outgoing {
	data, err := json.Marshal(value)
	if err != nil {
		o.err = fmt.Errorf("encoding the data as JSON: %w", err)
		return o
	}
	o.event.Payload = witTypes.Some(data)
	o.event.ContentType = witTypes.Some("application/json")
	return o
}

// Bytes sets the data to data, of content type contentType.
func (o Outgoing) Bytes(data []byte, contentType string) Outgoing {
	o.event.Payload = witTypes.Some(data)
	o.event.ContentType = witTypes.Some(contentType)
	return o
}

// Emit stages event; the host publishes what a call staged only if it returns Ok. A
// refusal (a limit, an invalid event) is an error saying why: return it as a Reject.
func Emit(event Outgoing) error {
	if event.err != nil {
		return event.err
	}
	if result := plexus_plugin_emitter.Emit(event.event); result.IsErr() {
		return errors.New("emit refused: " + result.Err())
	}
	return nil
}

// Debug, Info, Warn and Error write to the host's log, tagged with the plugin's name.
func Debug(format string, args ...any) { logAt(plexus_plugin_log.Level_Debug, format, args) }
func Info(format string, args ...any)  { logAt(plexus_plugin_log.Level_Info, format, args) }
func Warn(format string, args ...any)  { logAt(plexus_plugin_log.Level_Warn, format, args) }
func Error(format string, args ...any) { logAt(plexus_plugin_log.Level_Error, format, args) }

func logAt(level plexus_plugin_log.Level, format string, args []any) {
	plexus_plugin_log.Log(level, fmt.Sprintf(format, args...))
}

// StateGet reads key from the plugin's state: its value, and whether it was there.
func StateGet(key string) ([]byte, bool, error) {
	result := plexus_plugin_state.Get(key)
	if result.IsErr() {
		return nil, false, stateError(result.Err())
	}
	value := result.Ok()
	if value.IsNone() {
		return nil, false, nil
	}
	return value.Some(), true, nil
}

// StateSet writes value under key; it is kept only if the call returns Ok.
func StateSet(key string, value []byte) error {
	if result := plexus_plugin_state.Set(key, value, witTypes.None[uint64]()); result.IsErr() {
		return stateError(result.Err())
	}
	return nil
}

// StateDelete removes key; whether it was there.
func StateDelete(key string) (bool, error) {
	result := plexus_plugin_state.Delete(key)
	if result.IsErr() {
		return false, stateError(result.Err())
	}
	return result.Ok(), nil
}

func stateError(err plexus_plugin_state.StateError) error {
	if err.Tag() == plexus_plugin_state.StateError_TooLarge {
		return errors.New("state too large: " + err.TooLarge())
	}
	return errors.New("state unavailable: " + err.Unavailable())
}
