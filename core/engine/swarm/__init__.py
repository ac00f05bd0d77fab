"""Swarm mode: the cluster's state in etcd, node identity, and the loops of managers and agents.

- :mod:`core.engine.swarm.etcd_member` -- the etcd member a manager's daemon runs and supervises
  (:class:`~core.engine.swarm.etcd_member.EtcdMember`); :mod:`core.engine.swarm.etcd` -- the v3
  client the daemon talks to it with (:class:`~core.engine.swarm.etcd.EtcdClient`): consensus,
  replication and leader election are etcd's; losing quorum surfaces as
  :class:`~core.engine.swarm.etcd.NoLeader`.  Its peers use the managers' certificates of
  :mod:`~core.engine.swarm.ca`.
- :mod:`core.engine.swarm.ca`, :mod:`~core.engine.swarm.tokens` -- the swarm's root CA, node
  certificates and join tokens.
- :mod:`core.engine.swarm.transport` -- the mutual-TLS node-to-manager channel (port 2377).
- :mod:`core.engine.swarm.store` -- the cluster's objects in etcd, in docker's shapes (key layout);
  :mod:`~core.engine.swarm.nodes` -- docker's Node: rendering, lookups, filters.
- :mod:`core.engine.swarm.dispatcher` -- node sessions and heartbeats on the managers (etcd
  leases), node health on the leader, and every node's agent.
- :mod:`core.engine.swarm.service` -- the swarm service the daemon runs: init, join, leave,
  update, nodes; what ``/info`` and ``/_ping`` say.
"""
