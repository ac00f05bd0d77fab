"""Docker's words for ``swarm init`` and ``swarm join-token``, which core's CLI says with its own
name where docker says ``docker``: what the swarm CLI and cluster tests expect of either."""
from __future__ import annotations


def init_words(cli: str) -> str:
    """A pattern for ``<cli> swarm init``'s output; its groups are the node ID, the worker token
    and the manager's address."""
    return (r"Swarm initialized: current node \((\w{25})\) is now a manager\.\n\n"
            r"To add a worker to this swarm, run the following command:\n\n"
            rf"    {cli} swarm join --token (SWMTKN-1-\w{{50}}-\w{{25}}) ([\d.]+:2377)\n\n"
            rf"To add a manager to this swarm, run '{cli} swarm join-token manager' and "
            r"follow the instructions\.\n")


def manager_join_words(cli: str, token: str, address: str) -> str:
    """``<cli> swarm join-token manager``'s output."""
    return ("To add a manager to this swarm, run the following command:\n\n"
            f"    {cli} swarm join --token {token} {address}\n\n")
