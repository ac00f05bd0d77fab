"""tests/compat holds scripts run by hand (or by CI on demand), not pytest tests of core.

``pytest`` from the repository root walks ``tests/`` (``testpaths``); nothing here is collected:
the harnesses start their own registry and daemon and run other projects' test suites.
"""

collect_ignore_glob = ["*"]
