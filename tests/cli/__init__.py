"""Tests of the CLI: flags, formats, run's configuration, lean start-up, templates."""
