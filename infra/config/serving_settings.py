"""``model-deploy:serving``: the serving container's settings, the same on every cloud and target.

The fields, their types and their bounds are the server's own: :class:`inference.settings.ServerSettings`,
the one ``MODEL_SERVER_*`` contract (a light module: pydantic only, no framework, no server code).
Here they only get the stack config's conventions: camelCase keys, unknown keys refused.
"""

from __future__ import annotations

from inference.settings import ServerSettings
from infra.config.fields import ConfigModel


class ServingConfig(ServerSettings):
    """``model-deploy:serving``: how the serving container runs, the same on every cloud and target.

    Each setting becomes the ``MODEL_SERVER_*`` variable of the same name (``inference/settings.py``);
    unset ones keep the server's defaults. See the README's model-serve section for what they do.
    ``environment()`` gives the variables.
    """

    model_config = ConfigModel.model_config
