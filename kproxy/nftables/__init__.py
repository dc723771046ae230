"""nftables mode: Service rules in table ip kproxy."""
