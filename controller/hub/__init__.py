"""The agent hub: gRPC servicers, one session per connected agent, and what flows over it."""
