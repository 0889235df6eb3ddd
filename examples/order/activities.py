"""The order's activities against an in-memory shop, and the types they share.

The shop is a fake with switches for its failures, so the example runs
anywhere. Like any real provider it keys every call on the order, so that a
retried call (or an undo of a call that never landed) is harmless: the saga
core retries and compensates, but idempotency is the activities' job. They
raise typed errors and never decide retryability: each step's retry policy
(``workflows.py``) says which types end it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import activity
from temporalio.exceptions import ApplicationError

#: The task queue the example's worker polls and its starter sends to.
TASK_QUEUE = "order-saga"


@dataclass
class Line:
    sku: str
    qty: int = 1


@dataclass
class Order:
    order_id: str
    lines: list[Line]
    amount_cents: int
    #: Release all reservations at once instead of in reverse order.
    parallel_unwind: bool = False
    #: Releasing a reservation costs this (a restocking fee): each release then waits for approval.
    restock_fee_cents: int = 0


@dataclass
class Decide:
    """An operator's ``approve_undo`` or ``keep`` of a release held for its fee."""

    step: str
    operator: str
    note: str


@dataclass
class Reservation:
    order_id: str
    sku: str
    qty: int


@dataclass
class Receipt:
    order_id: str
    payment_id: str
    #: ``None`` when an operator settled the shipment by hand.
    tracking: str | None


@dataclass
class Settle:
    """An operator's ``retry`` (``steps=None``: every outstanding step) or ``resolve``."""

    steps: list[str] | None
    operator: str
    note: str


@dataclass
class Shop:
    """Stock, payments and a carrier in memory, plus what happened, in order."""

    stock: dict[str, int]
    #: SKUs whose reservation the warehouse cannot release (a retryable outage).
    stuck_releases: set[str] = field(default_factory=set)
    card_declined: bool = False
    #: How many charge calls fail with a 503 before the gateway answers (the outcome is unknown).
    gateway_errors: int = 0
    carrier_down: bool = False
    reservations: dict[tuple[str, str], int] = field(default_factory=dict)
    #: Reservations released (or released before they existed): they can never land again.
    voided: set[tuple[str, str]] = field(default_factory=set)
    payments: dict[str, int] = field(default_factory=dict)
    shipments: dict[str, str] = field(default_factory=dict)
    #: "reserve a", "release a", "charge o-1", "ship o-1": every effect that happened.
    log: list[str] = field(default_factory=list)


class OrderActivities:
    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    @activity.defn
    async def reserve_stock(self, r: Reservation) -> None:
        if (r.order_id, r.sku) in self.shop.reservations:
            return  # a retry of a reservation that landed
        if (r.order_id, r.sku) in self.shop.voided:
            # A late call, from a step cancelled and undone: it must not land now.
            raise ApplicationError(f"{r.sku} for {r.order_id} was released", type="Voided")
        if self.shop.stock.get(r.sku, 0) < r.qty:
            raise ApplicationError(f"only {self.shop.stock.get(r.sku, 0)} of {r.sku} left", type="OutOfStock")
        self.shop.stock[r.sku] -= r.qty
        self.shop.reservations[(r.order_id, r.sku)] = r.qty
        self.shop.log.append(f"reserve {r.sku}")

    @activity.defn
    async def release_stock(self, r: Reservation) -> None:
        if r.sku in self.shop.stuck_releases:
            raise ApplicationError(f"the warehouse cannot release {r.sku} now", type="WarehouseOffline")
        self.shop.voided.add((r.order_id, r.sku))
        qty = self.shop.reservations.pop((r.order_id, r.sku), 0)  # nothing reserved: nothing to do
        if qty:
            self.shop.stock[r.sku] += qty
            self.shop.log.append(f"release {r.sku}")

    @activity.defn
    async def charge_payment(self, order: Order) -> str:
        if order.order_id not in self.shop.payments:
            if self.shop.gateway_errors > 0:
                self.shop.gateway_errors -= 1
                raise ApplicationError("payment gateway: 503", type="GatewayUnavailable")
            if self.shop.card_declined:
                raise ApplicationError("card declined", type="CardDeclined")
            self.shop.payments[order.order_id] = order.amount_cents
            self.shop.log.append(f"charge {order.order_id}")
        return f"pay-{order.order_id}"

    @activity.defn
    async def ship_order(self, order: Order) -> str:
        if order.order_id not in self.shop.shipments:
            if self.shop.carrier_down:
                raise ApplicationError("the carrier does not answer", type="CarrierDown")
            self.shop.shipments[order.order_id] = f"trk-{order.order_id}"
            self.shop.log.append(f"ship {order.order_id}")
        return self.shop.shipments[order.order_id]
