"""Why docker-py's integration tests fail against core: the causes found (see FINDINGS.md), and
which tests each one fails.  ``dockerpy.py`` groups a run's failures by these causes and marks
the failures no cause names (``new``) and the named tests that now pass (``fixed``).

``CAUSES``: key -> (issue 10 item or "—", one line).  ``KNOWN``: test (relative to docker-py's
tests/integration) -> the causes that fail it, first the one that bites first.  ``FLAKY``: causes
that are races, so their tests fail in some runs only (their passing is not news).
"""
from __future__ import annotations

CAUSES: dict[str, tuple[str, str]] = {
    "swarm-404": ("4", "/swarm/leave answers 404 'page not found' (docker: 503 'This node is not part of a swarm'); "
                       "TestNetworks.tearDown raises before removing anything, so the next tests trip on leftovers"),
    "cp-anon-volume": ("11", "PUT /containers/{id}/archive into an anonymous volume of a created container: 404"),
    "kill-race": ("11", "POST /kill answers before the container is recorded exited (inspect right after: running, "
                        "ExitCode 0; rm right after: 409)"),
    "exec-tty": ("11", "exec start's Tty overrides the exec create's Tty (docker uses create's)"),
    "detachkeys-case": ("5", "JSON keys matched case-sensitively: exec create's 'detachKeys' ignored"),
    "attach-logs-race": ("—", "the SDK drops stream bytes that arrive in one read with the 101 headers (docker-py "
                              "#3332, #2042; open fix #3438): attach ?logs=1 now and then gives b''; core sends them"),
    "update-resources": ("10", "POST /containers/{id}/update of resources answers 501"),
    "runtime-name": ("11", "HostConfig.Runtime 'runc' reported as 'core'"),
    "device-cgroup-rule": ("11", "DeviceCgroupRules refused: '--device-cgroup-rule is not supported by this engine'"),
    "healthcheck": ("11", "healthchecks do not run: no State.Health"),
    "import": ("—", "POST /images/create?fromSrc=- (docker import) refused: 'importing from a tarball (fromSrc) is "
                    "not supported'"),
    "build": ("—", "POST /build is no route (404 'page not found')"),
}

FLAKY = {"kill-race", "attach-logs-race"}

_NET = "api_network_test.py::TestNetworks::"
_SWARM_ONLY = [
    "test_connect_and_disconnect_container", "test_connect_and_force_disconnect_container",
    "test_connect_on_container_create", "test_connect_with_aliases", "test_connect_with_ipv4_address",
    "test_connect_with_mac_address", "test_create_check_duplicate", "test_create_internal_networks",
    "test_create_network_with_host_driver_fails", "test_create_network_with_labels",
    "test_create_network_with_labels_wrong_type", "test_create_remove_network_with_space_in_name",
    "test_create_with_aliases", "test_create_with_driveropt", "test_create_with_ipv4_address",
    "test_inspect_network", "test_list_networks", "test_prune_networks", "test_remove_network",
]

KNOWN: dict[str, list[str]] = {
    **{_NET + name: ["swarm-404"] for name in _SWARM_ONLY},
    _NET + "test_connect_with_ipv6_address": ["swarm-404"],
    _NET + "test_create_network_ipv6_enabled": ["swarm-404"],
    _NET + "test_create_with_ipv6_address": ["swarm-404"],
    _NET + "test_connect_with_links": ["swarm-404"],
    # both use 172.28.0.0/16 after test_connect_with_ipv4_address left its network behind, and the
    # container name test_connect_with_links left behind
    _NET + "test_create_network_with_ipam_config": ["swarm-404"],
    _NET + "test_create_with_links": ["swarm-404"],
    _NET + "test_create_with_linklocal_ips": ["swarm-404"],
    "api_container_test.py::CreateContainerTest::test_create_with_device_cgroup_rules": ["device-cgroup-rule"],
    "api_container_test.py::ArchiveTest::test_copy_file_to_container": ["cp-anon-volume"],
    "api_container_test.py::ArchiveTest::test_copy_directory_to_container": ["cp-anon-volume"],
    "api_container_test.py::KillTest::test_kill": ["kill-race"],
    "api_container_test.py::KillTest::test_kill_with_dict_instead_of_id": ["kill-race"],
    "models_containers_test.py::ContainerTest::test_kill": ["kill-race"],
    "models_containers_test.py::ContainerCollectionTest::test_list": ["kill-race"],
    "models_containers_test.py::ContainerCollectionTest::test_list_sparse": ["kill-race"],
    "api_container_test.py::AttachContainerTest::test_attach_no_stream": ["attach-logs-race"],
    "api_container_test.py::ContainerUpdateTest::test_update_container": ["update-resources"],
    "models_containers_test.py::ContainerTest::test_update": ["update-resources"],
    "api_container_test.py::ContainerCPUTest::test_create_with_runtime": ["runtime-name"],
    "api_exec_test.py::ExecTest::test_detach_with_config_file": ["detachkeys-case"],
    **{f"api_exec_test.py::ExecDemuxTest::test_exec_command_tty_{name}": ["exec-tty"]
       for name in ("no_stream_demux", "no_stream_no_demux", "stream_demux", "stream_no_demux")},
    **{f"api_image_test.py::ImportImageTest::test_{name}": ["import"]
       for name in ("import_from_bytes", "import_from_file", "import_from_stream",
                    "import_image_from_data_with_changes", "import_image_with_changes")},
    **{f"models_images_test.py::ImageCollectionTest::test_{name}": ["build"]
       for name in ("build", "build_with_error", "build_with_multiple_success", "build_with_success_build_output")},
    **{f"api_healthcheck_test.py::HealthcheckTest::test_healthcheck_{name}": ["healthcheck"]
       for name in ("fails", "passes", "start_period")},
}
