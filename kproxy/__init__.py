"""kproxy: the node agent that makes Service virtual IPs work, in kube-proxy's iptables layout."""
