#!/usr/bin/env python3
"""Reads trailwatch's Insights and findings from Kafka with Confluent's Python client and prints them.

One JSON object per line on stdout: {"topic", "partition", "offset", "key", "headers", "value"},
the value decoded by Confluent's AvroDeserializer with the writer's schema fetched from the
registry by the id in the record's wire header. A summary goes to stderr at the end: records per
topic, and Insights paired Start/End by sharedEventID.

    pip install 'confluent-kafka[avro,schemaregistry]>=2.14,<3'
    python3 scripts/consumers/read_insights.py --from-beginning --until-end

Settings that matter against Apicurio's Confluent-compatible API (docs/consumers.md says why):
  * the registry client gets a timeout: without one it waits forever on a registry that accepts
    the connection and never answers;
  * the subject name strategy is TOPIC: the default (ASSOCIATED, since 2.14.0) first asks
    /associations/..., which Apicurio answers 404;
  * isolation.level=read_committed: trailwatch writes in transactions.

Exit status: 0 when every record decoded, 1 when some did not (each reported on stderr with its
topic, partition and offset), 2 on bad arguments or a client that could not be set up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
import uuid
from typing import Any

from confluent_kafka import DeserializingConsumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.error import ConsumeError
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import StringDeserializer

DEFAULT_TOPICS = [
    os.environ.get("TRAILWATCH_TOPICS__ALERTS", "trailwatch.insights"),
    os.environ.get("TRAILWATCH_TOPICS__FINDINGS", "trailwatch.findings"),
]

# Seconds per registry request. The client's default is no timeout at all.
REGISTRY_TIMEOUT_S = 10
# Retries after the first attempt, for timeouts, refused connections and 408/429/5xx answers.
REGISTRY_RETRIES = 2


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BROKERS", "127.0.0.1:19092"), help="brokers (env KAFKA_BROKERS)")
    p.add_argument(
        "--registry",
        default=os.environ.get("SCHEMA_REGISTRY_URL", "http://127.0.0.1:18080/apis/ccompat/v7"),
        help="Confluent-compatible registry URL, for Apicurio .../apis/ccompat/v7 (env SCHEMA_REGISTRY_URL)",
    )
    p.add_argument("--topic", action="append", help=f"topic to read, repeatable (default: {' and '.join(DEFAULT_TOPICS)})")
    p.add_argument("--group", help="consumer group: offsets are committed under it (default: a throwaway one)")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest record when the group has no offset")
    p.add_argument("--until-end", action="store_true", help="exit once every assigned partition is read to its end")
    p.add_argument("--max", type=int, help="exit after this many records")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.add_argument("--registry-timeout", type=float, default=REGISTRY_TIMEOUT_S, help="seconds per registry request")
    p.add_argument(
        "-X",
        dest="extra",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="librdkafka consumer property, repeatable (e.g. -X security.protocol=SASL_SSL); never printed",
    )
    args = p.parse_args(argv)
    args.topic = args.topic or DEFAULT_TOPICS
    return args


def registry_client(args: argparse.Namespace) -> SchemaRegistryClient:
    conf: dict[str, Any] = {"url": args.registry, "timeout": args.registry_timeout, "max.retries": REGISTRY_RETRIES}
    user = os.environ.get("SCHEMA_REGISTRY_USERNAME")
    if user:
        # Basic auth, as Apicurio with its basic-auth client credentials expects it.
        conf["basic.auth.user.info"] = f"{user}:{os.environ.get('SCHEMA_REGISTRY_PASSWORD', '')}"
    return SchemaRegistryClient(conf)


def consumer(args: argparse.Namespace, registry: SchemaRegistryClient) -> DeserializingConsumer:
    conf: dict[str, Any] = {
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group or f"trailwatch-reader-{uuid.uuid4()}",
        # trailwatch writes Insights and findings in transactions: never show an aborted one.
        # (librdkafka's default already; Java's is read_uncommitted.)
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest" if args.from_beginning else "latest",
        "enable.partition.eof": args.until_end,
        # A throwaway group has nothing to come back to.
        "enable.auto.commit": args.group is not None,
        "key.deserializer": StringDeserializer("utf_8"),
        # A callable, not subject.name.strategy.type: it works on every 2.x release. The subject only
        # names where the writer schema is registered; the schema itself comes by the id in the record.
        "value.deserializer": AvroDeserializer(registry, conf={"subject.name.strategy": topic_subject_name_strategy}),
    }
    for kv in args.extra:
        key, sep, value = kv.partition("=")
        if not sep:
            raise SystemExit(f"read_insights: -X takes KEY=VALUE, got {key!r}")
        conf[key] = value
    return DeserializingConsumer(conf)


def plain(value: Any) -> Any:
    """JSON-ready: fastavro decodes timestamp-millis to aware datetimes; trailwatch's fields are ms numbers."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000) if value.tzinfo else int(value.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class Summary:
    def __init__(self) -> None:
        self.per_topic: dict[str, int] = {}
        self.starts: set[str] = set()
        self.ends: set[str] = set()
        self.failed = 0

    def add(self, topic: str, value: Any) -> None:
        self.per_topic[topic] = self.per_topic.get(topic, 0) + 1
        details = value.get("insightDetails") if isinstance(value, dict) else None
        if isinstance(details, dict):
            (self.starts if details.get("state") == "Start" else self.ends).add(value["sharedEventID"])

    def line(self) -> str:
        topics = ", ".join(f"{t} {n}" for t, n in sorted(self.per_topic.items())) or "no records"
        paired = len(self.starts & self.ends)
        return (
            f"read_insights: {topics}; Insights: {len(self.starts)} Start, {len(self.ends)} End, "
            f"{paired} paired by sharedEventID, {len(self.starts - self.ends)} still open"
            + (f", {len(self.ends - self.starts)} End without its Start (read from a later offset?)" if self.ends - self.starts else "")
            + (f"; {self.failed} not decoded" if self.failed else "")
        )


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        c = consumer(args, registry_client(args))
    except (KafkaException, ValueError) as err:
        print(f"read_insights: cannot set the consumer up: {err}", file=sys.stderr)
        return 2

    assigned: set[tuple[str, int]] = set()
    at_end: set[tuple[str, int]] = set()

    def on_assign(_c: Any, partitions: list[TopicPartition]) -> None:
        assigned.update((p.topic, p.partition) for p in partitions)

    def on_revoke(_c: Any, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            assigned.discard((p.topic, p.partition))
            at_end.discard((p.topic, p.partition))

    c.subscribe(args.topic, on_assign=on_assign, on_revoke=on_revoke)
    summary = Summary()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while True:
            if args.max is not None and sum(summary.per_topic.values()) >= args.max:
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            if args.until_end and assigned and assigned <= at_end:
                break
            try:
                msg = c.poll(1.0)
            except ConsumeError as err:
                # DeserializingConsumer raises what a plain Consumer returns as msg.error().
                m = err.kafka_message
                where = (m.topic(), m.partition()) if m is not None else None
                if err.code == KafkaError._PARTITION_EOF and where is not None:
                    at_end.add(where)
                elif err.code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    print(f"read_insights: {err} (not created yet?)", file=sys.stderr)
                elif err.code in (KafkaError._KEY_DESERIALIZATION, KafkaError._VALUE_DESERIALIZATION):
                    # A record that did not decode: say where it is and go on.
                    summary.failed += 1
                    at = f"{m.topic()}[{m.partition()}]@{m.offset()}" if m is not None else "?"
                    print(f"read_insights: {at}: {err.exception or err}", file=sys.stderr)
                else:
                    raise
                continue
            if msg is None:
                continue
            at_end.discard((msg.topic(), msg.partition()))
            value = plain(msg.value())
            summary.add(msg.topic(), value)
            headers = {k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in (msg.headers() or [])}
            record = {"topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(), "key": msg.key(), "headers": headers, "value": value}
            sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    except KeyboardInterrupt:
        pass
    finally:
        sys.stdout.flush()
        c.close()
    print(summary.line(), file=sys.stderr)
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
