"""Tests of the built-in drivers and the kits they build on, through the conformance suites."""
