"""The V2Ray driver's parts; agent.drivers.v2ray.V2RayComponent puts them together.

    spec      the desired part as validated, normalised values; the user diff (pure)
    config    V2Ray's JSON configuration rendered from a spec, and read back (pure)
    api       gRPC client of a running V2Ray: add/remove users, read traffic counters
    process   starting, finding and stopping the V2Ray process; `v2ray -test`
    traffic   per-user traffic deltas kept on disk until their telemetry batch is spooled
    logtail   V2Ray's access and error log files turned into live log lines
"""
