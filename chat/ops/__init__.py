"""What operators look at: health endpoints, Prometheus metrics, structured logs, request ids."""
