"""flipgate.data."""
