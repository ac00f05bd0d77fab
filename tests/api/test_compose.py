"""Debian's ``docker-compose`` drives core: a project with two services, a user network, a named
volume and a published port goes ``up -d``, ``ps``, ``logs``, ``exec``, ``down -v``, leaving
nothing behind (the steps are ``tests/compat/compose.py``'s, which also writes a report)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

COMPAT = Path(__file__).resolve().parents[1] / "compat"
COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.access(COMPOSE, os.X_OK), reason="docker-compose is not installed"),
]


@pytest.fixture(scope="module")
def compose_steps():
    sys.path.insert(0, str(COMPAT))
    try:
        import compose
    finally:
        sys.path.remove(str(COMPAT))
    return compose


def test_a_compose_project_lives_and_leaves_nothing(core_env, registry, compose_steps, tmp_path):
    compose = compose_steps
    compose.dockerpy.push_standins(registry, tmp_path / "layouts")
    core_env.write_config({"registry-mirrors": [registry.url]})
    core_env.start_daemon()
    project = tmp_path / "project"
    project.mkdir()
    port = compose.free_port()
    (project / "docker-compose.yml").write_text(compose.COMPOSE_FILE.format(port=port))
    (tmp_path / "docker-config").mkdir()
    env = {k: v for k, v in core_env.env.items() if not k.startswith(("DOCKER_TLS", "DOCKER_CERT", "COMPOSE_"))}
    env.update({"DOCKER_HOST": core_env.host, "DOCKER_CONFIG": str(tmp_path / "docker-config")})
    steps = compose.Steps([COMPOSE], project, env)
    try:
        compose.run_steps(steps, port, core_env.host)
    finally:
        if not any(r["step"] == "down -v" for r in steps.results):
            steps.run("down -v (cleanup)", ["down", "-v", "-t", "1"], timeout=300)
    failed = [f"{r['step']}: `{r['command']}` exit {r['rc']}\n{r['output'][-1500:]}"
              for r in steps.results if not r["ok"]]
    assert not failed, "\n\n".join(failed)
    assert [r["step"] for r in steps.results][:5] == ["up -d", "ps", "logs", "exec (network DNS, shared volume)",
                                                     "published port"]
