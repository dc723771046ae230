"""pocketkube's control plane: API types, client, API server, scheduler, controllers."""
