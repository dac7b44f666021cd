"""flipgate.report."""
