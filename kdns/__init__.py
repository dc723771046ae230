"""kdns: the cluster DNS (Services and Endpoints as DNS records, other names forwarded)."""
