"""The bot's jobs: one module per behaviour, each a plain function from an event and its
collaborators to an outcome.

The Celery tasks (``workers/tasks.py``) and the command line (``gitops-bot preview``) are thin
callers of these, so the bot and the CLI run one code path. Nothing here imports Flask, Celery
or the workers (an import-linter contract says so); errors carry their retry meaning
(:class:`~bot.errors.TransientError` is retried by the task while time is left).

* :mod:`bot.jobs.context` — :class:`~bot.jobs.context.JobContext`: a
  :class:`~bot.forges.Forge`, the git cache, the cluster targets, the Redis state
  (:mod:`bot.state`), the settings and a log carrying the delivery id.
* :mod:`bot.jobs.compare` — the preview engine: two commits rendered, diffed offline and
  dry-run live per app (``gitops-bot preview`` and the preview job).
* :mod:`bot.jobs.preview` — ``preview_pull_request(event, ctx)``: the sticky comment and commit
  status of a pull request.
* :mod:`bot.jobs.sync` — ``handle_command(event, ctx)``: ``/sync [app …]`` and ``/help``.
* :mod:`bot.jobs.drift` — ``drift_report(repo, targets=…)``: each app against its deployed commit.
"""
