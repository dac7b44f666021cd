"""flipgate.mitigation."""
