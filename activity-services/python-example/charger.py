#!/usr/bin/env python3
"""ChargeCustomer in Python, written against Sagaflow's wire contract alone (docs/WIRE.md).

    python charger.py --db charges.sqlite3            # serve ChargeCustomer until SIGTERM/SIGINT
    python charger.py --db charges.sqlite3 --list-charges   # print the charges as JSON lines

What it shows:
- every command it receives and every result it sends is validated against the checked-in JSON
  Schemas (the envelopes and ChargeCustomer's input and output);
- the charge happens once per idempotency key (a UNIQUE key in SQLite, the first row wins), so a
  redelivered command or a retry answers with the same charge;
- a failure another attempt may fix is answered with "retryable": true, and the orchestrator
  sends the next attempt; a command it cannot run is answered with a failed result that is not
  retryable, or, when it cannot even tell which attempt it is, rejected without requeue;
- the command is acked only after the result was confirmed by the broker.
"""

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import time
import uuid

import pika

import sagaflow_wire as wire

ACTIVITY = "ChargeCustomer"
INPUT_SCHEMA = f"activities/{ACTIVITY}.input.json"
OUTPUT_SCHEMA = f"activities/{ACTIVITY}.output.json"

log = logging.getLogger("python-charger")


class Charges:
    """The service's own record: one row per idempotency key."""

    def __init__(self, path):
        self.db = sqlite3.connect(path)
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS charges (
                   idempotency_key TEXT PRIMARY KEY,
                   charge_id TEXT NOT NULL,
                   saga_id TEXT NOT NULL,
                   order_id TEXT NOT NULL,
                   amount_cents INTEGER NOT NULL,
                   currency TEXT NOT NULL,
                   attempt INTEGER NOT NULL
               )"""
        )
        self.db.commit()

    def charge_once(self, key, saga_id, attempt, request):
        """Charges the request unless this key was charged already; returns the charge."""
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO charges VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, str(uuid.uuid4()), saga_id, request["order_id"],
                 request["amount_cents"], request["currency"], attempt),
            )
        charge_id, order_id, amount_cents, currency = self.db.execute(
            "SELECT charge_id, order_id, amount_cents, currency FROM charges WHERE idempotency_key = ?",
            (key,),
        ).fetchone()
        return {"charge_id": charge_id, "order_id": order_id,
                "amount_cents": amount_cents, "currency": currency}

    def all(self):
        columns = ["idempotency_key", "charge_id", "saga_id", "order_id", "amount_cents", "currency", "attempt"]
        rows = self.db.execute(f"SELECT {', '.join(columns)} FROM charges ORDER BY rowid")
        return [dict(zip(columns, row)) for row in rows]


class Charger:
    def __init__(self, args, channel, schemas, charges):
        self.args = args
        self.channel = channel
        self.schemas = schemas
        self.charges = charges
        self.topology = wire.Topology(args.namespace)

    def on_command(self, channel, method, props, body):
        try:
            wire.check_content_type(props.content_type)
            command = json.loads(body)
            self.schemas.check("activity-command.json", command)
            if command["activity"] != ACTIVITY:
                raise ValueError(f"a command for {command['activity']!r} on the queue of {ACTIVITY}")
        except ValueError as error:  # json.JSONDecodeError is a ValueError too
            return self.reject(method, props, str(error))

        attempt = command["attempt"]
        log.info("command saga=%s step=%s attempt=%s redelivered=%s",
                 command["saga_id"], command["step"], attempt, method.redelivered)
        problems = self.schemas.errors(INPUT_SCHEMA, command["input"])
        if problems:
            outcome = failed("InvalidInput", "; ".join(problems), retryable=False)
        elif attempt <= self.args.fail_first_attempts:
            # A failure another attempt may fix: the orchestrator backs off and sends attempt+1
            # with the same idempotency key. Never requeue the command to retry it yourself.
            outcome = failed("ProcessorBusy", f"the card processor is busy (attempt {attempt})", retryable=True)
        else:
            charge = self.charges.charge_once(command["idempotency_key"], command["saga_id"], attempt, command["input"])
            self.schemas.check(OUTPUT_SCHEMA, charge)
            outcome = {"status": "completed", "output": charge}
        result = {key: command[key] for key in ("saga_id", "step", "activity", "attempt")}
        result["outcome"] = outcome
        self.reply_then_ack(method, props, result)

    def reply_then_ack(self, method, props, result):
        self.schemas.check("activity-result.json", result)
        headers = {
            wire.HEADER_SAGA_ID: result["saga_id"],
            wire.HEADER_STEP: str(result["step"]),
            wire.HEADER_ATTEMPT: str(result["attempt"]),
        }
        for name in wire.TRACE_HEADERS:
            value = (props.headers or {}).get(name)
            if value is not None:
                headers[name] = value.decode() if isinstance(value, bytes) else str(value)
        try:
            wire.publish_confirmed(self.channel, self.topology.results_queue, wire.TYPE_ACTIVITY_RESULT, result, headers)
        except (pika.exceptions.NackError, pika.exceptions.UnroutableError) as error:
            # Not confirmed: put the command back to run again (the charge is idempotent).
            log.error("result not confirmed (%s); returning the command", error)
            self.channel.basic_nack(method.delivery_tag, requeue=True)
            return
        # Only now: a crash before this line redelivers the command, which answers again.
        self.channel.basic_ack(method.delivery_tag)
        log.info("answered saga=%s step=%s attempt=%s: %s", result["saga_id"], result["step"],
                 result["attempt"], result["outcome"]["status"])

    def reject(self, method, props, reason):
        """A command this service cannot read. If its headers name the attempt, answer with a
        permanent failure so the saga does not wait; otherwise reject it without requeue: the
        broker dead-letters it and the orchestrator fails the attempt (CommandDeadLettered)."""
        log.warning("rejecting a command: %s", reason)
        headers = props.headers or {}
        try:
            result = {
                "saga_id": text(headers[wire.HEADER_SAGA_ID]),
                "step": int(text(headers[wire.HEADER_STEP])),
                "activity": ACTIVITY,
                "attempt": int(text(headers[wire.HEADER_ATTEMPT])),
                "outcome": failed("CommandRejected", reason[:500], retryable=False),
            }
            self.schemas.check("activity-result.json", result)
        except (KeyError, ValueError):
            self.channel.basic_nack(method.delivery_tag, requeue=False)
            return
        self.reply_then_ack(method, props, result)


def failed(kind, message, retryable):
    return {"status": "failed", "error": {"kind": kind, "message": message, "retryable": retryable}}


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def main():
    parser = argparse.ArgumentParser(description="ChargeCustomer, in Python, on Sagaflow's wire contract")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
                        help="the broker (env AMQP_URL)")
    parser.add_argument("--namespace", default=os.environ.get("SAGAFLOW_NAMESPACE", "sagaflow"),
                        help="prefix of every queue; must match the orchestrator (env SAGAFLOW_NAMESPACE)")
    parser.add_argument("--queue-type", default=os.environ.get("SAGAFLOW_QUEUE_TYPE", "quorum"),
                        choices=["quorum", "classic"],
                        help="must match the orchestrator (env SAGAFLOW_QUEUE_TYPE)")
    parser.add_argument("--db", default=os.environ.get("CHARGER_DB", "charges.sqlite3"),
                        help="SQLite file with this service's charges (env CHARGER_DB)")
    parser.add_argument("--prefetch", type=int, default=16, help="commands taken from the broker at once")
    parser.add_argument("--fail-first-attempts", type=int, default=0,
                        help="answer attempts up to this number with a retryable failure (to show retries)")
    parser.add_argument("--schema-dir", default=None,
                        help="the checked-in JSON Schemas (default: contracts/schema of this repository)")
    parser.add_argument("--list-charges", action="store_true",
                        help="print the recorded charges as JSON lines and exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    charges = Charges(args.db)
    if args.list_charges:
        for charge in charges.all():
            print(json.dumps(charge))
        return 0

    schemas = wire.Schemas(args.schema_dir)
    for path in ("activity-command.json", "activity-result.json", INPUT_SCHEMA, OUTPUT_SCHEMA):
        schemas.validator(path)  # fail at start-up, not on the first command

    params = pika.URLParameters(args.amqp_url)
    params.client_properties = {"connection_name": "python-charger"}
    topology = wire.Topology(args.namespace)
    # RabbitMQ can refuse the first basic.consume on a quorum queue that another process is
    # declaring at the same moment (and close the connection): connect again a few times, as
    # the Rust SDK does.
    for attempt in range(1, 6):
        try:
            connection = pika.BlockingConnection(params)
            channel = connection.channel()
            channel.confirm_delivery()
            # Idempotent declarations with exactly the orchestrator's arguments.
            topology.declare_queue(channel, topology.activity_queue(ACTIVITY), args.queue_type)
            topology.declare_queue(channel, topology.results_queue, args.queue_type)
            channel.basic_qos(prefetch_count=args.prefetch)
            charger = Charger(args, channel, schemas, charges)
            channel.basic_consume(topology.activity_queue(ACTIVITY), charger.on_command,
                                  auto_ack=False)
            break
        except pika.exceptions.AMQPConnectionError as error:
            if attempt == 5:
                raise
            log.warning("consuming did not start (%s); connecting again", error)
            time.sleep(0.25 * attempt)

    def stop(signum, _frame):
        log.info("signal %s: stopping after the command in hand", signum)
        connection.add_callback_threadsafe(channel.stop_consuming)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("consuming %s", topology.activity_queue(ACTIVITY))
    channel.start_consuming()
    connection.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
