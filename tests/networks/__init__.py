"""Tests of networks: the network service, DNS, ports, links, end to end."""
