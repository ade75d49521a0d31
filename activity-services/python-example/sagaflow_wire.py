"""Sagaflow's wire contract in a few lines of Python: names, schemas, publishing.

Everything here follows docs/WIRE.md; nothing is imported from Sagaflow itself. The JSON Schemas
are the ones checked in under contracts/schema/ (the envelopes) and contracts/schema/activities/
(each activity's input and output).
"""

import json
import os
import uuid
from pathlib import Path

import jsonschema
import pika

# The version of the wire contract this code speaks (docs/WIRE.md, "Versioning").
CONTENT_TYPE = "application/vnd.sagaflow.v1+json"

HEADER_SAGA_ID = "x-sagaflow-saga-id"
HEADER_STEP = "x-sagaflow-step"
HEADER_ATTEMPT = "x-sagaflow-attempt"
HEADER_IDEMPOTENCY_KEY = "x-sagaflow-idempotency-key"
TRACE_HEADERS = ("traceparent", "tracestate")

TYPE_START_SAGA = "sagaflow.StartSaga"
TYPE_ACTIVITY_COMMAND = "sagaflow.ActivityCommand"
TYPE_ACTIVITY_RESULT = "sagaflow.ActivityResult"

DEFAULT_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "contracts" / "schema"


class Schemas:
    """The checked-in JSON Schemas, loaded once."""

    def __init__(self, directory=None):
        self.directory = Path(directory or os.environ.get("SAGAFLOW_SCHEMA_DIR") or DEFAULT_SCHEMA_DIR)
        self._validators = {}

    def validator(self, relative_path):
        if relative_path not in self._validators:
            with open(self.directory / relative_path, encoding="utf-8") as f:
                schema = json.load(f)
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validators[relative_path] = cls(schema)
        return self._validators[relative_path]

    def errors(self, relative_path, instance):
        """Every way `instance` does not fit the schema, as short sentences (empty: it fits)."""
        found = sorted(self.validator(relative_path).iter_errors(instance), key=lambda e: list(e.path))
        return [f"{'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in found]

    def check(self, relative_path, instance):
        """Raises ValueError when `instance` does not fit the schema."""
        problems = self.errors(relative_path, instance)
        if problems:
            raise ValueError(f"does not fit {relative_path}: " + "; ".join(problems))


class Topology:
    """Queue names under one namespace (the orchestrator's SAGAFLOW_NAMESPACE)."""

    def __init__(self, namespace):
        self.namespace = namespace

    @property
    def start_queue(self):
        return f"{self.namespace}.start"

    @property
    def results_queue(self):
        return f"{self.namespace}.results"

    @property
    def heartbeats_queue(self):
        return f"{self.namespace}.heartbeats"

    @property
    def dead_letter_exchange(self):
        return f"{self.namespace}.dead-letter"

    def activity_queue(self, activity):
        return f"{self.namespace}.activity.{activity}"

    def declare_queue(self, channel, name, queue_type):
        """Declares `name` exactly as the orchestrator does, or the broker refuses it."""
        channel.queue_declare(
            queue=name,
            durable=True,
            arguments={
                "x-queue-type": queue_type,
                "x-dead-letter-exchange": self.dead_letter_exchange,
            },
        )


def check_content_type(content_type):
    """Raises ValueError for a message of a wire contract version this code does not speak.
    Absent and plain application/json are version 1 (docs/WIRE.md, "Versioning")."""
    essence = (content_type or "").split(";")[0].strip().lower()
    if essence.startswith("application/vnd.sagaflow.v") and essence != CONTENT_TYPE:
        raise ValueError(f"content type {content_type!r} is a wire contract version this service does not speak ({CONTENT_TYPE})")


def properties(message_type, headers):
    """The AMQP properties every Sagaflow message carries: persistent JSON with an id and type."""
    return pika.BasicProperties(
        delivery_mode=pika.DeliveryMode.Persistent,
        content_type=CONTENT_TYPE,
        message_id=str(uuid.uuid4()),
        type=message_type,
        headers=headers,
    )


def publish_confirmed(channel, routing_key, message_type, body, headers):
    """Publishes `body` to the default exchange with routing key = queue name, mandatory, on a
    channel in confirm mode: returns once the broker has it, raises if it refused it
    (pika.exceptions.NackError) or no queue took it (pika.exceptions.UnroutableError)."""
    channel.basic_publish(
        exchange="",
        routing_key=routing_key,
        body=json.dumps(body).encode("utf-8"),
        properties=properties(message_type, headers),
        mandatory=True,
    )
