"""Tests of swarm mode: CA, tokens, transport, etcd, the cluster."""
