"""Booking activities; see ``activities.booking``."""

from activities.booking import BookingActivities, make_http_client

__all__ = ["BookingActivities", "make_http_client"]
