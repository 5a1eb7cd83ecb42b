"""dapt: distillation as an alternative to pre-training small models — a notebook study kit."""

__version__ = "0.1.0"
