//! OpenTelemetry traces: a span per handled event, a child of the event's `traceparent`
//! (the CloudEvents distributed-tracing extension) or the root of a new trace, and the
//! events it emits carry the span's context, so a flow through several routes is one trace.
//!
//! Tracing is on once [`init_from_env`] (the binary calls it) finds the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: spans are then
//! batched off the dispatch path and exported over OTLP/HTTP (protobuf). The other standard
//! variables apply too: `OTEL_SERVICE_NAME` (default `plexus`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`/`_ARG`. Without them no span is made,
//! and emitted events carry their cause's trace context unchanged.

use crate::event::Event;
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};
use std::sync::OnceLock;

/// The tracer of this process, once tracing is on.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Tracing for the life of the process; dropping it exports what is still batched.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "traces not all exported at exit");
        }
    }
}

/// Turns tracing on when the environment names an OTLP endpoint; `Ok(None)` when it does
/// not (or `OTEL_TRACES_EXPORTER=none`).
pub fn init_from_env() -> Result<Option<Telemetry>, String> {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let exporter_off = std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v == "none");
    if exporter_off
        || !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("the OTLP trace exporter: {e}"))?;
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter);
    Ok(Some(install(provider)))
}

/// Makes the provider `builder` builds this process's tracer (the first call wins).
pub fn install(builder: opentelemetry_sdk::trace::TracerProviderBuilder) -> Telemetry {
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("plexus");
    }
    let provider = builder.with_resource(resource.build()).build();
    let _ = TRACER.set(opentelemetry::trace::TracerProvider::tracer(
        &provider, "plexus",
    ));
    Telemetry { provider }
}

/// Tracing on with nothing exported: spans are made, sampled and ended, then dropped (for
/// benchmarks measuring what tracing costs inside Plexus).
#[cfg(feature = "testing")]
pub fn install_without_export() -> Telemetry {
    install(SdkTracerProvider::builder())
}

/// Reads the trace context attributes of an event.
struct TraceAttributes<'a>(&'a Event);

impl Extractor for TraceAttributes<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.extension(key)? {
            crate::event::AttributeValue::String(text) => Some(text),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        crate::attributes::TRACE_CONTEXT.to_vec()
    }
}

/// Where a handled event's span was started from.
pub struct SpanStart<'a> {
    pub event: &'a Event,
    pub route: &'a str,
    pub plugin: &'a str,
    pub version: &'a str,
    pub broker: &'a str,
}

/// The span of one handled event.
pub struct EventSpan {
    span: Span,
}

/// How the handling ended, for the span.
pub enum Ended<'a> {
    /// Handled; `emitted` events published.
    Succeeded { emitted: usize },
    /// Dead-lettered, with the kind and reason.
    DeadLettered { kind: &'a str, reason: &'a str },
}

impl EventSpan {
    /// A span for handling `start.event`, when tracing is on.
    pub fn start(start: &SpanStart<'_>) -> Option<EventSpan> {
        let tracer = TRACER.get()?;
        let event = start.event;
        let parent = TraceContextPropagator::new().extract(&TraceAttributes(event));
        let mut attributes = vec![
            KeyValue::new("messaging.system", start.broker.to_owned()),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", event.topic.clone()),
            KeyValue::new(
                "messaging.destination.partition.id",
                event.partition.to_string(),
            ),
            KeyValue::new("messaging.message.id", event.id.clone()),
            KeyValue::new("cloudevents.event_id", event.id.clone()),
            KeyValue::new("cloudevents.event_type", event.type_.clone()),
            KeyValue::new("cloudevents.event_source", event.source.clone()),
            KeyValue::new("plexus.route", start.route.to_owned()),
            KeyValue::new("plexus.plugin", start.plugin.to_owned()),
            KeyValue::new("plexus.plugin.version", start.version.to_owned()),
            KeyValue::new("plexus.offset", event.offset as i64),
        ];
        if let Some(correlation) = &event.correlation_id {
            attributes.push(KeyValue::new("plexus.correlation_id", correlation.clone()));
        }
        let span = tracer
            .span_builder(format!("process {}", start.route))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        Some(EventSpan { span })
    }

    /// The span's context as `traceparent` and `tracestate` values, for what the event
    /// emits.
    pub fn context(&self) -> (String, Option<String>) {
        let context = self.span.span_context();
        let traceparent = format!(
            "00-{}-{}-{:02x}",
            context.trace_id(),
            context.span_id(),
            context.trace_flags().to_u8()
        );
        let state = context.trace_state().header();
        (traceparent, (!state.is_empty()).then_some(state))
    }

    /// Ends the span with how the handling ended, after `attempts` attempts.
    pub fn end(mut self, ended: Ended<'_>, attempts: u32) {
        self.span
            .set_attribute(KeyValue::new("plexus.attempts", i64::from(attempts)));
        match ended {
            Ended::Succeeded { emitted } => {
                self.span
                    .set_attribute(KeyValue::new("plexus.outcome", "succeeded"));
                self.span
                    .set_attribute(KeyValue::new("plexus.emitted", emitted as i64));
            }
            Ended::DeadLettered { kind, reason } => {
                self.span
                    .set_attribute(KeyValue::new("plexus.outcome", "dead-lettered"));
                self.span
                    .set_attribute(KeyValue::new("plexus.failure_kind", kind.to_owned()));
                self.span.set_status(Status::error(reason.to_owned()));
            }
        }
        self.span.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{AttributeValue, EmitContext, OutgoingEvent};

    fn outgoing() -> OutgoingEvent {
        OutgoingEvent {
            topic: "out".into(),
            type_: "t.v1".into(),
            key: None,
            subject: None,
            content_type: None,
            dataschema: None,
            extensions: Vec::new(),
            headers: Vec::new(),
            payload: None,
        }
    }

    #[test]
    fn a_span_continues_the_events_trace_and_its_emits_continue_the_span() {
        let _telemetry = install(SdkTracerProvider::builder());
        let cause = crate::cloudevents::decode(
            br#"{"specversion":"1.0","id":"o-1","source":"/s","type":"t","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"vendor=1"}"#,
        )
        .unwrap();
        let span = EventSpan::start(&SpanStart {
            event: &cause,
            route: "r",
            plugin: "p",
            version: "p@sha256:00",
            broker: "embedded",
        })
        .expect("tracing is on");
        let context = span.context();
        let parts: Vec<&str> = context.0.split('-').collect();
        assert_eq!(parts.len(), 4, "{}", context.0);
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
        assert_ne!(parts[2], "00f067aa0ba902b7", "a span of its own");
        assert_eq!(parts[2].len(), 16);
        assert_eq!(parts[3], "01", "sampled, as the parent");
        assert_eq!(context.1.as_deref(), Some("vendor=1"));

        let emit = |out: OutgoingEvent| {
            EmitContext {
                cause: &cause,
                route: "r",
                handled_by: "p@sha256:00",
                trace: Some(&context),
            }
            .complete(0, out)
        };
        let emitted = emit(outgoing());
        assert_eq!(
            emitted.extension("traceparent"),
            Some(&AttributeValue::String(context.0.clone()))
        );
        // A plugin that sets its own trace context keeps it.
        let mut own = outgoing();
        own.extensions.push(crate::event::Attribute {
            name: "traceparent".into(),
            value: AttributeValue::String("00-aaaa-bbbb-01".into()),
        });
        assert_eq!(
            emit(own).extension("traceparent"),
            Some(&AttributeValue::String("00-aaaa-bbbb-01".into()))
        );
        span.end(Ended::Succeeded { emitted: 1 }, 1);
    }
}
