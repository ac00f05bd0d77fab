"""An executor driver whose module fails to import."""
import core_dummy_driver_missing_dependency  # noqa: F401  (does not exist)
