"""The payment workflow for Temporal (module level: the SDK refuses local classes)."""

import uuid
from datetime import timedelta

from temporalio import activity, workflow


@activity.defn(name="validate_payment")
async def validate_payment(request: dict) -> dict:
    return {"valid": request["amount_cents"] > 0}


@activity.defn(name="charge")
async def charge(request: dict) -> dict:
    return {"charge_id": str(uuid.uuid4()), "amount_cents": request["amount_cents"]}


@activity.defn(name="send_receipt")
async def send_receipt(charged: dict) -> dict:
    return {"sent": True}


ACTIVITIES = [validate_payment, charge, send_receipt]


@workflow.defn(name="ProcessPayment", sandboxed=False)
class ProcessPayment:
    @workflow.run
    async def run(self, request: dict) -> dict:
        timeout = timedelta(seconds=30)
        await workflow.execute_activity("validate_payment", request, start_to_close_timeout=timeout)
        charged = await workflow.execute_activity("charge", request, start_to_close_timeout=timeout)
        await workflow.execute_activity("send_receipt", charged, start_to_close_timeout=timeout)
        return charged
