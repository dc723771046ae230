"""The node agent: runs the pods bound to its node on the node's dockerd and wires them to the pod network."""
