"""Tests of the Engine API: routes, validation, fuzzing, resources over time, real clients."""
