"""flipgate.gate."""
