#!/usr/bin/env python3
"""Start a ProcessPayment saga from Python and wait for its outcome.

    python client.py --start-key order-7 --input '{"order_id":"order-7", ...}'

The start message is validated against contracts/schema/start-saga.json and the saga's input
against contracts/schema/sagas/ProcessPayment.input.json, then published to <namespace>.start
with a publisher confirm. Until start messages can carry a reply_to, the outcome is read by
polling `sagaflow show --start-key KEY --json` (the CLI reads DATABASE_URL); set SAGAFLOW_CLI to
the binary's path if it is not on PATH. Prints the saga as JSON; exits 0 if it completed, 1 if
it failed or got stuck, 2 if it did not end within --timeout-secs.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import pika

import sagaflow_wire as wire


def start(args, schemas, start_message):
    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        # The orchestrator declares the start queue; publishing is mandatory, so a missing queue
        # is an error here (pika.exceptions.UnroutableError) instead of a lost start.
        wire.publish_confirmed(channel, wire.Topology(args.namespace).start_queue,
                               wire.TYPE_START_SAGA, start_message, {})
    finally:
        connection.close()


def wait_for_outcome(args):
    deadline = time.monotonic() + args.timeout_secs
    last_error = ""
    while time.monotonic() < deadline:
        shown = subprocess.run(
            [args.sagaflow, "show", "--saga-type", args.saga_type, "--start-key", args.start_key, "--json"],
            capture_output=True, text=True,
        )
        if shown.returncode == 0:
            saga = json.loads(shown.stdout)
            if saga["status"] != "running":
                return saga
        else:
            last_error = shown.stderr.strip()  # not started yet, or the database is unreachable
        time.sleep(0.2)
    print(f"the saga did not end within {args.timeout_secs} s; last answer: {last_error}", file=sys.stderr)
    return None


def main():
    parser = argparse.ArgumentParser(description="Start a saga and wait for its outcome")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
                        help="the broker (env AMQP_URL)")
    parser.add_argument("--namespace", default=os.environ.get("SAGAFLOW_NAMESPACE", "sagaflow"),
                        help="the orchestrator's namespace (env SAGAFLOW_NAMESPACE)")
    parser.add_argument("--saga-type", default="ProcessPayment", help="the registered saga type")
    parser.add_argument("--start-key", required=True, help="makes the start idempotent; also how the outcome is found")
    parser.add_argument("--input", required=True, help="the saga's input, as JSON")
    parser.add_argument("--timeout-secs", type=float, default=60, help="how long to wait for the outcome")
    parser.add_argument("--sagaflow", default=os.environ.get("SAGAFLOW_CLI", "sagaflow"),
                        help="the sagaflow CLI, to read the outcome (env SAGAFLOW_CLI)")
    parser.add_argument("--schema-dir", default=None, help="the checked-in JSON Schemas")
    args = parser.parse_args()

    schemas = wire.Schemas(args.schema_dir)
    start_message = {"saga_type": args.saga_type, "input": json.loads(args.input), "start_key": args.start_key}
    schemas.check("start-saga.json", start_message)
    input_schema = f"sagas/{args.saga_type}.input.json"
    if (schemas.directory / input_schema).exists():
        schemas.check(input_schema, start_message["input"])

    start(args, schemas, start_message)
    print(f"started {args.saga_type} with start key {args.start_key}", file=sys.stderr)
    saga = wait_for_outcome(args)
    if saga is None:
        return 2
    print(json.dumps({k: saga[k] for k in ("id", "status", "output", "error")}))
    return 0 if saga["status"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
