"""Kubernetes API types shared by the server and every client."""
