"""flipgate.models."""
