"""Tests of the kernel: contracts, driver loading, daemon start-up, value types, install, wiring, the harnesses."""
