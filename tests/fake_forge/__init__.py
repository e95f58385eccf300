"""Local fakes of the forges' REST APIs (GitHub now; GitLab next), held to their published
contracts, serving real git over smart HTTP, so PyGithub and python-gitlab run for real.

- :class:`~tests.fake_forge.github.FakeGitHub`: the HTTP server and its test API;
- :class:`~tests.fake_forge.memory.MemoryForge`: an in-memory :class:`bot.forges.Forge` for
  fast unit tests of jobs;
- ``fixture.py``: pytest fixtures.
"""
