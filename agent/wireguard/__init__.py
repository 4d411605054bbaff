"""WireGuard for the agent: the pieces behind agent.drivers.wireguard.

    model.py    validated interface/peer specs, device state as read back, the peer diff (plan_update)
    uapi.py     wireguard-go's text UAPI over /var/run/wireguard/NAME.sock (get=1 / set=1)
    backend.py  one small Backend interface: wireguard-go (UAPI) and kernel WireGuard (`wg`)
    link.py     `ip` commands: link, addresses, MTU, up, default route
    nat.py      ip_forward + masquerade via iptables or nft
    traffic.py  per-peer counters -> deltas for telemetry, surviving restarts

Everything here is synchronous (subprocess.run, blocking sockets with timeouts); the driver runs it in a
worker thread so the agent's event loop never waits on a device.
"""
