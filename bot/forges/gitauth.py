"""How a forge's credential reaches ``git``: through the environment of the one git process
that needs it, never through a URL, a remote or a file.

Both adapters hand :func:`basic_auth_env`'s result to :class:`~bot.forges.base.GitAccess`:
GitHub with ``x-access-token:<token>``, GitLab with ``oauth2:<token>`` (both forges accept
HTTP basic authentication with those user names for a token).
"""

from __future__ import annotations

import base64


def git_auth_env(clone_url: str, authorization: str) -> dict[str, str]:
    """Environment giving git the ``Authorization`` header for ``clone_url`` only (git's
    ``http.<url>.extraHeader`` through ``GIT_CONFIG_COUNT``): never in the URL, a remote or a
    file, and not sent on a redirect."""
    return {
        "GIT_CONFIG_COUNT": "3",
        "GIT_CONFIG_KEY_0": f"http.{clone_url}.extraHeader",
        "GIT_CONFIG_VALUE_0": f"Authorization: {authorization}",
        "GIT_CONFIG_KEY_1": "http.followRedirects",
        "GIT_CONFIG_VALUE_1": "false",
        "GIT_CONFIG_KEY_2": "credential.helper",
        "GIT_CONFIG_VALUE_2": "",
    }


def basic_auth_env(clone_url: str, user: str, token: str) -> dict[str, str]:
    """:func:`git_auth_env` with HTTP basic authentication as ``user`` with ``token``."""
    basic = base64.b64encode(f"{user}:{token}".encode()).decode()
    return git_auth_env(clone_url, f"Basic {basic}")
