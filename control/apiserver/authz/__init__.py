"""Authorization for the API server: who may do what, as Kubernetes decides it.

- `attributes`: what a request asks to do (Kubernetes' RequestInfo).
- `authorizer`: the chain from `--authorization-mode` and the 403 it answers with.
- `rbac`: Roles, ClusterRoles and bindings, read from the watch cache.
- `node`: the Node authorizer and the graph of what each node's pods need.
- `admission`: the NodeRestriction admission plugin.
- `bootstrap`: the default roles and bindings, and ClusterRole aggregation.
- `reviews`: authorization.k8s.io access and rules reviews (`kubectl auth can-i`).
- `filter`: the middleware tying them together, with impersonation.
"""
