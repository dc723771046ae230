"""The `pocket` command and the local-cluster bring-up."""
