"""Tests of containers: lifecycle, exec, attach, logs, healthchecks, OCI specs."""
