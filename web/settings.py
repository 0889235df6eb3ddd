"""The web app's settings (``python -m web``), from the environment.

``create_app`` reads them once into ``app.config`` (then ``FLASK_*`` variables
and a test config may override them, as Flask's tutorial does), and
``python -m web`` reads the address to listen on. ``docs/configuration.md`` is
generated from this model: describe a new field here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from wiring.settings import ClientSettings, ListenPort


class WebSettings(ClientSettings):
    """The web app (``python -m web``)

    ``--host`` and ``--port`` win over ``WEB_HOST`` and ``WEB_PORT``.
    """

    web_host: str = Field("127.0.0.1", description="The address it listens on.")
    web_port: ListenPort = Field(5000, description="The port it listens on; 0 picks a free one.")
    secret_key: SecretStr | None = Field(
        None,
        description="Signs sessions; give every web process the same. Unset: generated once into "
        "`instance/secret_key` (0600).",
    )
    codec_token: SecretStr | None = Field(
        None,
        description="What the codec server asks of callers that are not logged in (`Bearer <token>`). Unset: "
        "generated once into `instance/codec_token` (0600).",
    )
    codec_ui_origin: str | None = Field(
        None,
        description="Comma-separated browser origins the codec server answers. Unset: TEMPORAL_UI_URL's origin "
        "(for a loopback UI, under both 127.0.0.1 and localhost).",
    )
    callback_secrets_file: Path | None = Field(
        None,
        description="The 0600 JSON file of each provider's callback secret, which `POST /callbacks/<kind>` checks "
        "signatures with; `CALLBACK_SECRET_<KIND>` variables win over it. Unset: only those variables.",
    )
    operators_file: Path | None = Field(
        None, description="The operators' TOML file (name = password hash). Unset: `instance/operators.toml`."
    )
