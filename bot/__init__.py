"""gitops-bot: previews what merging a pull request would change in Kubernetes, applies on merge.

The package is split into a pure core (``bot.model``, ``bot.events``, ``bot.diff``,
``bot.impact``, ``bot.report``, ``bot.commands``) and thin adapters around it (web intake in
``bot.app`` and ``bot.webhooks``, the job queue in ``bot.queue``, manifests on disk in
``bot.manifests``, the cluster in ``bot.cluster``). Import-linter contracts in
``pyproject.toml`` keep it that way.
"""

__version__ = "0.1.0"
