"""iptables mode: the rule generator (`rules`) and the code that applies it (`restore`)."""
