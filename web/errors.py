"""Error pages: plain words, the right status code, never a stack trace."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from web.portal import TemporalUnavailable

log = logging.getLogger("booking.web")


def _wants_json() -> bool:
    return request.path.endswith("/status") or request.accept_mimetypes.best == "application/json"


def _page(status: int, title: str, message: str) -> Response | tuple[str, int]:
    if _wants_json():
        response = jsonify({"error": title, "message": message})
        response.status_code = status
        return response
    return render_template("error.html", title=title, message=message), status


def register(app: Flask) -> None:
    @app.errorhandler(TemporalUnavailable)
    def temporal_down(err: TemporalUnavailable) -> Response | tuple[str, int]:
        log.warning("Temporal unavailable: %s", err)
        return _page(
            503,
            "Temporal is unavailable",
            "The booking service cannot reach Temporal right now, so nothing was started or changed. "
            "Please try again in a moment.",
        )

    @app.errorhandler(CSRFError)
    def csrf_failed(err: CSRFError) -> Response | tuple[str, int]:
        return _page(
            400,
            "Form expired",
            "This form's security token is missing or no longer valid. Reload the page and submit again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Response | tuple[str, int]:
        titles = {
            401: "Operators only",
            403: "Not your booking",
            404: "Not found",
            405: "Method not allowed",
            413: "Request too large",
        }
        messages = {
            401: "Only a logged-in operator can do this, so nothing was changed. Log in as an operator first.",
            403: "Only the browser this trip was booked from, or a logged-in operator, can confirm, decline or "
            "cancel it, so nothing was changed. You can still read the booking's page.",
            404: "There is no booking or page at this address.",
        }
        code = err.code or 500
        return _page(code, titles.get(code, err.name), messages.get(code, err.description or err.name))

    @app.errorhandler(Exception)
    def unexpected(err: Exception) -> Response | tuple[str, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _page(500, "Something went wrong", "The error has been logged. Nothing you entered was lost.")
