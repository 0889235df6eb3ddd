"""An order saga: reserve stock, charge the card (the pivot), ship.

It imports only the saga core and ``temporalio``: nothing from the booking
service. ``workflows.py`` is the workflow, ``activities.py`` the in-memory
shop it talks to.
"""

from examples.order.activities import Line, Order, OrderActivities, Receipt, Settle, Shop
from examples.order.workflows import OrderWorkflow

__all__ = ["Line", "Order", "OrderActivities", "OrderWorkflow", "Receipt", "Settle", "Shop"]
