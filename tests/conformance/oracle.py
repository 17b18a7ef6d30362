"""The CNCF CloudEvents Python SDK as a test oracle for Plexus (tests/conformance.rs).

    oracle.py corpus DIR          writes DIR/python.jsonl (JSON format) and
                                  DIR/python-kafka.json (Kafka records, binary and structured),
                                  made with the SDK's 2.x API and its 1.x API
    oracle.py describe-json FILE  parses every line of FILE with both APIs and prints, per
                                  line, a description of the event (see `describe`)
    oracle.py describe-kafka FILE the same for a JSON list of Kafka records

A description is {"attrs": {name: [type, text]}, "data": {"kind": ..., "value": ...}}, with
times in UTC at microseconds (the SDK's precision), data as JSON (canonical text) or content
(base64): the form tests compare events in, input against output, within one SDK. Any
parse error ends the script with a non-zero status and the reason on stderr.
"""

import base64
import json
import sys
from datetime import datetime, timedelta, timezone

from dateutil.parser import isoparse

from cloudevents.core.bindings import kafka as kafka2
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as CloudEvent2
from cloudevents.v1 import conversion as conversion1
from cloudevents.v1 import kafka as kafka1
from cloudevents.v1.http import CloudEvent as CloudEvent1
from cloudevents.v1.http import from_json as from_json1

FORMAT = JSONFormat()
PLUS_TWO = timezone(timedelta(hours=2))


def sdk2_events():
    """Events made with the 2.x API: every attribute type and every data form."""
    base = {"source": "/oracle/python", "specversion": "1.0"}
    full = dict(
        base,
        id="py-full",
        type="conf.full",
        subject="order-7",
        dataschema="https://schemas.example.com/order/v1.json",
        datacontenttype="application/json",
        time=datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=PLUS_TWO),
        partitionkey="customer-7",
        correlationid="flow-1",
        color="red",
        count=42,
        negative=-2147483648,
        urgent=True,
        quiet=False,
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    yield CloudEvent2(
        full,
        {"total": 12.5, "items": [1, 2, 3], "big": 2**70, "nested": {"ok": None}},
    )
    yield CloudEvent2(
        dict(base, id="py-text", type="conf.text", datacontenttype="text/plain",
             time=datetime(2026, 1, 1, tzinfo=timezone.utc)),
        "plain text, with üñíçødé",
    )
    yield CloudEvent2(
        dict(base, id="py-xml", type="conf.xml", datacontenttype="application/xml",
             time=datetime(2026, 1, 1, tzinfo=timezone.utc)),
        '<order id="7"><total>12.50</total></order>',
    )
    yield CloudEvent2(
        dict(base, id="py-binary", type="conf.binary",
             datacontenttype="application/octet-stream",
             time=datetime(2026, 1, 1, tzinfo=timezone.utc)),
        bytes([0, 159, 146, 150, 255, 254]),
    )
    yield CloudEvent2(
        dict(base, id="py-empty-text", type="conf.empty", datacontenttype="text/plain",
             time=datetime(2026, 1, 1, tzinfo=timezone.utc)),
        "",
    )
    yield CloudEvent2(
        dict(base, id="py-no-data", type="conf.nodata", note="no data at all",
             time=datetime(2026, 1, 1, tzinfo=timezone.utc)),
        None,
    )
    yield CloudEvent2(
        dict(base, id="py-json-string", type="conf.jsonstring",
             datacontenttype="application/json",
             time=datetime(2026, 1, 1, tzinfo=timezone.utc)),
        "a JSON string",
    )


def sdk1_events():
    """Events made with the 1.x API."""
    yield CloudEvent1(
        {"id": "py1-json", "source": "/oracle/python1", "type": "conf.v1",
         "time": "2026-05-06T07:08:09.5Z", "subject": "s", "color": "blue",
         "partitionkey": "k-1", "datacontenttype": "application/json"},
        {"v1": True},
    )
    yield CloudEvent1(
        {"id": "py1-text", "source": "/oracle/python1", "type": "conf.v1text",
         "datacontenttype": "text/plain", "time": "2026-05-06T07:08:09Z"},
        "hello from 1.x",
    )


# Lines written by hand where the SDK cannot: nanoseconds and offsets, null extensions,
# pre-1970 times, an empty data_base64, JSON null data. Each is checked by parsing it with
# the SDK before it is used.
RAW_LINES = [
    '{"specversion":"1.0","id":"raw-nanos","source":"/oracle/raw","type":"conf.nanos",'
    '"time":"2026-03-04T05:06:07.123456789-07:30","gone":null,"kept":"yes",'
    '"datacontenttype":"application/json","data":{"n":123456789012345678901234567890}}',
    '{"specversion":"1.0","id":"raw-1969","source":"/oracle/raw","type":"conf.old",'
    '"time":"1969-07-20T20:17:40.5Z","data_base64":""}',
    '{"specversion":"1.0","id":"raw-null-data","source":"/oracle/raw","type":"conf.null",'
    '"time":"2026-01-01T00:00:00Z","datacontenttype":"application/json","data":null}',
]


def corpus(directory):
    lines = [FORMAT.write(e).decode("utf-8") for e in sdk2_events()]
    lines += [conversion1.to_json(e).decode("utf-8") for e in sdk1_events()]
    for line in RAW_LINES:
        describe_line(line)
        lines.append(line)
    with open(f"{directory}/python.jsonl", "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    records = []
    for event in sdk2_events():
        records.append(record(kafka2.to_binary(event, FORMAT)))
        structured = kafka2.to_structured(event, FORMAT)
        records.append(record(structured, f"{event.get_id()}-structured"))
    for event in sdk1_events():
        records.append(record(kafka1.to_binary(event)))
    for line in RAW_LINES:
        structured = {"content-type": b"application/cloudevents+json"}
        records.append(record(kafka2.KafkaMessage(structured, None, line.encode("utf-8"))))
    with open(f"{directory}/python-kafka.json", "w", encoding="utf-8") as out:
        json.dump(records, out)


def b64(raw):
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def unb64(text):
    return None if text is None else base64.b64decode(text)


def record(message, rename=None):
    """A Kafka message as JSON (base64 bytes); `rename` gives a structured copy its own id."""
    value = message.value
    if rename is not None:
        event = json.loads(value)
        event["id"] = rename
        value = json.dumps(event).encode("utf-8")
    key = message.key.encode("utf-8") if isinstance(message.key, str) else message.key
    headers = {
        name: (v if isinstance(v, bytes) else str(v).encode("utf-8"))
        for name, v in message.headers.items()
    }
    return {
        "key": b64(key),
        "headers": [[name, b64(v)] for name, v in headers.items()],
        "value": b64(value if isinstance(value, bytes) else value.encode("utf-8")),
    }


def utc_micros(value):
    moment = value if isinstance(value, datetime) else isoparse(value)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def typed(name, value):
    if name == "time":
        return ["timestamp", utc_micros(value)]
    if isinstance(value, bool):
        return ["boolean", "true" if value else "false"]
    if isinstance(value, int):
        return ["integer", str(value)]
    if isinstance(value, (bytes, bytearray)):
        return ["binary", b64(bytes(value))]
    if isinstance(value, datetime):
        return ["timestamp", utc_micros(value)]
    return ["string", str(value)]


def data_of(data):
    if data is None:
        return {"kind": "none"}
    if isinstance(data, (bytes, bytearray)):
        return {"kind": "content", "value": b64(bytes(data))}
    if isinstance(data, str):
        return {"kind": "content", "value": b64(data.encode("utf-8"))}
    return {"kind": "json", "value": json.dumps(data, sort_keys=True, separators=(",", ":"))}


def describe(attributes, data, had_time):
    attrs = {
        name: typed(name, value)
        for name, value in attributes.items()
        if value is not None and name not in ("data", "data_base64")
    }
    if not had_time:
        # The 2.x API sets `time` to now when an event has none: not the event's own.
        attrs.pop("time", None)
    return {"attrs": attrs, "data": data_of(data)}


def describe_line(line):
    had_time = json.loads(line).get("time") is not None
    event2 = FORMAT.read(None, line.encode("utf-8"))
    event1 = from_json1(line)
    return {
        "v2": describe(event2.get_attributes(), event2.get_data(), had_time),
        "v1": describe(event1.get_attributes(), event1.get_data(), had_time),
    }


def describe_record(raw):
    key = unb64(raw["key"])
    headers = {name: unb64(value) for name, value in raw["headers"]}
    value = unb64(raw["value"])
    content_type = (headers.get("content-type") or b"").decode("utf-8").lower()
    structured = content_type.startswith("application/cloudevents")
    if structured:
        had_time = json.loads(value).get("time") is not None
        event2 = kafka2.from_structured(kafka2.KafkaMessage(headers, key, value), FORMAT)
        event1 = kafka1.from_structured(kafka1.KafkaMessage(headers, key, value))
    else:
        had_time = "ce_time" in headers
        event2 = kafka2.from_binary(kafka2.KafkaMessage(headers, key, value), FORMAT)
        # The 1.x API parses every value as JSON unless told otherwise: take the bytes.
        event1 = kafka1.from_binary(
            kafka1.KafkaMessage(headers, key, value), data_unmarshaller=lambda v: v
        )
    return {
        "v2": describe(event2.get_attributes(), event2.get_data(), had_time),
        "v1": describe(event1.get_attributes(), event1.get_data(), had_time),
    }


def main(argv):
    command, path = argv[1], argv[2]
    if command == "corpus":
        corpus(path)
        return
    if command == "describe-json":
        with open(path, encoding="utf-8") as lines:
            described = [describe_line(line) for line in lines if line.strip()]
    elif command == "describe-kafka":
        with open(path, encoding="utf-8") as records:
            described = [describe_record(raw) for raw in json.load(records)]
    else:
        raise SystemExit(f"unknown command {command}")
    json.dump(described, sys.stdout)


if __name__ == "__main__":
    main(sys.argv)
