"""Settings from the environment: one pydantic-settings model per process kind.

A field named ``foo_bar`` is read from the variable ``FOO_BAR``; an empty
variable counts as unset, so ``FOO_BAR= make run`` means the default. Each
process reads its model once, at start, with ``load()``; a bad value stops it
with one line naming the variable, never a traceback. The models here serve
the processes below the web layer (the worker, the CLI, the provider service)
and every Temporal client; the web app's is ``web.settings.WebSettings`` and
``make run``'s is ``scripts.devstack.StackSettings``.

``docs/configuration.md`` is generated from these models
(``python -m scripts.configuration``): describe each field there, not in a
hand-written table. Variables the Temporal SDK reads itself (its env config:
``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, the TLS
variables, ``TEMPORAL_PROFILE``) are not modelled: the SDK owns them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trip import DEFAULT_PROVIDERS_URL, DEFAULT_TEMPORAL_UI_URL, TASK_QUEUE


class SettingsError(ValueError):
    """A setting a process cannot use; the message names the variable."""


S = TypeVar("S", bound="Settings")

#: A port to listen on or connect to.
Port = Annotated[int, Field(ge=1, le=65535)]
#: A port to listen on, where 0 asks the system for a free one.
ListenPort = Annotated[int, Field(ge=0, le=65535)]
TaskQueue = Annotated[str, Field(description="Task queue of the booking workflow and its activities.")]


class Settings(BaseSettings):
    """The base of every settings model: variable = field name in capitals."""

    model_config = SettingsConfigDict(case_sensitive=False, env_ignore_empty=True, frozen=True, extra="ignore")

    @classmethod
    def load(cls: type[S]) -> S:
        """Read the environment now; a bad value raises ``SettingsError`` naming it."""
        try:
            return cls()
        except ValidationError as err:
            raise SettingsError(describe(err)) from None

    @classmethod
    def variables(cls) -> list[str]:
        return [name.upper() for name in cls.model_fields]


def describe(err: ValidationError) -> str:
    """One line per bad variable: ``WEB_PORT='web': Input should be a valid integer``."""
    lines = []
    for problem in err.errors():
        message = str(problem["msg"]).removeprefix("Value error, ")
        if problem["loc"]:
            lines.append(f"{str(problem['loc'][0]).upper()}={problem['input']!r}: {message}")
        else:
            lines.append(message)
    return "; ".join(lines)


class KeySettings(Settings):
    """Payload encryption keys

    Read by every Temporal client: the worker, the web app, the CLI and the bench.
    """

    booking_keys: SecretStr | None = Field(
        None,
        description='The key ring as JSON, `{"current": "k1", "keys": {"k1": "<base64 32 bytes>"}, '
        '"tag_key": "<base64>"}`. Set: the key file is not read.',
    )
    booking_key_file: Path | None = Field(
        None,
        description="The key file, created 0600 on first use. Unset: `instance/codec-keys.json` in the checkout.",
    )


class TracingSettings(Settings):
    """Traces

    Read by the worker, the web app, the CLI and the provider service.
    """

    otel_exporter_otlp_endpoint: str | None = Field(
        None, description="Where spans are sent (OTLP over HTTP). Unset: no traces are exported."
    )
    otel_service_name: str | None = Field(
        None, description="The service name on the spans. Unset: booking-worker, booking-web, booking-providers, ..."
    )


class ClientSettings(Settings):
    """The CLI (``run_workflow.py``, ``run_operator.py``)

    The web app reads these too.
    """

    booking_task_queue: TaskQueue = TASK_QUEUE
    temporal_ui_url: str | None = Field(
        None,
        description="The Temporal Web UI that links point to. Unset: the local dev server's, "
        f"{DEFAULT_TEMPORAL_UI_URL}; the CLI links there only while TEMPORAL_ADDRESS is the local default.",
    )

    @property
    def ui_url(self) -> str:
        return self.temporal_ui_url or DEFAULT_TEMPORAL_UI_URL


class WorkerSettings(Settings):
    """The worker (``run_worker.py``)

    Each of these has a command-line flag too, which wins.
    """

    booking_task_queue: TaskQueue = TASK_QUEUE
    providers_url: str = Field(DEFAULT_PROVIDERS_URL, description="The provider service the activities call.")
    worker_metrics_port: ListenPort | None = Field(
        None, description="Serve Prometheus metrics on this port (--metrics-port). Unset or 0: no metrics endpoint."
    )
    worker_metrics_host: str = Field(
        "127.0.0.1", description="The address the metrics endpoint binds; 0.0.0.0 lets a scraper in."
    )
    log_level: str = Field(
        "INFO", description="LEVEL[,logger=LEVEL...], e.g. INFO,httpx=INFO to log every provider request."
    )
    booking_build_id: str | None = Field(
        None,
        description="The build id this worker serves as, in its Worker Deployment (--build-id); a deploy "
        "pipeline sets it to its image tag. Unset: the package version and the checkout's git commit.",
    )
    booking_deployment_name: str = Field(
        "booking", description="The Worker Deployment this worker's version belongs to (--deployment-name)."
    )
    booking_worker_versioning: bool = Field(
        True,
        description="Poll as a Worker Deployment version. false (--no-versioning): poll unversioned, for a "
        "cluster without Worker Versioning.",
    )

    @field_validator("worker_metrics_port")
    @classmethod
    def _zero_is_off(cls, port: int | None) -> int | None:
        return port or None


class ProviderSettings(Settings):
    """The provider service (``python -m providers``)

    The stand-in car, hotel and airline APIs. ``--host``, ``--port`` and ``--db`` win over these.
    """

    providers_host: str = Field("127.0.0.1", description="The address it listens on (--host).")
    providers_port: ListenPort = Field(8001, description="The port it listens on (--port); 0 picks a free one.")
    providers_db: Path = Field(Path(".providers/ledger.db"), description="The SQLite ledger (--db).")
    callback_base_url: str | None = Field(
        None,
        description="Where a provider that confirms later (`flight-async`) sends its signed callback: the web "
        "app's base URL (--callback-url). Unset: such callbacks fail and the saga's deadline undoes the booking.",
    )
    callback_secrets_file: Path | None = Field(
        None,
        description='A 0600 JSON file of each provider\'s callback secret, `{"flight": "..."}` '
        "(--callback-secrets); `CALLBACK_SECRET_<KIND>` variables win over it. `make run` generates one.",
    )
    callback_delay_s: float = Field(
        60.0, ge=0, description="Seconds a provider that confirms later waits before its callback (--callback-delay-s)."
    )
