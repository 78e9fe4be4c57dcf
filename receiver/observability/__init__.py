"""What the receiver tells its operators: Prometheus metrics, structured logs, the periodic activity line."""
