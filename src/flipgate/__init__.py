"""flipgate: ship classifier updates without negative flips."""

__version__ = "0.1.0"
