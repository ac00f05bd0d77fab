"""A pytest plugin for a *diagnostic* run of docker-py's tests (``dockerpy.py --assume-swarm-503``).

docker-py's ``TestNetworks.tearDown`` calls ``leave_swarm(force=True)`` before it removes anything;
the SDK accepts docker's answer for a node outside a swarm (503) but raises on core's 404, so
every network test fails and leaves its containers and networks behind for the next ones to trip
over.  Loaded with ``-p compat_swarm_shim``, this plugin makes the SDK take core's 404 on
``/swarm/leave`` as docker's 503 (issue 10 item 4), so that a run shows the failures behind it.
It changes the client only, never core; the counts of the measured run come without it.
"""
from __future__ import annotations

import docker
import docker.errors

_original = docker.APIClient.leave_swarm


def _leave_swarm(self, force=False):
    try:
        return _original(self, force)
    except docker.errors.NotFound as exc:
        if force and "/swarm/leave" in str(exc):
            return True
        raise


docker.APIClient.leave_swarm = _leave_swarm
