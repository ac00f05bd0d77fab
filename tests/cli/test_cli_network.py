"""``core network create``'s IPAM flags (docker's createIPAMConfig), without a daemon."""
from __future__ import annotations

import pytest

from core.cli.client import CLIError
from core.cli.cmd_network import ipam_config


def test_each_range_gateway_and_aux_address_goes_to_its_subnet():
    assert ipam_config(["10.1.0.0/16"], [], [], {}) == [{"Subnet": "10.1.0.0/16"}]
    assert ipam_config(["10.1.0.0/16"], ["10.1.1.0/24"], ["10.1.0.1"], {"a": "10.1.0.9"}) == [
        {"Subnet": "10.1.0.0/16", "IPRange": "10.1.1.0/24", "Gateway": "10.1.0.1",
         "AuxiliaryAddresses": {"a": "10.1.0.9"}}]
    assert ipam_config(["10.1.0.0/16", "10.2.0.0/16"], ["10.1.1.0/24", "10.2.1.0/24"], ["10.2.0.1", "10.1.0.1"],
                       {}) == [{"Subnet": "10.1.0.0/16", "IPRange": "10.1.1.0/24", "Gateway": "10.1.0.1"},
                               {"Subnet": "10.2.0.0/16", "IPRange": "10.2.1.0/24", "Gateway": "10.2.0.1"}]


@pytest.mark.parametrize("subnets,ranges,gateways,aux,message", [
    (["10.1.0.0/16"], ["10.1.1.0/24", "10.1.2.0/24"], [], {},
     "every ip-range or gateway must have a corresponding subnet"),
    ([], ["10.1.0.0/24"], [], {}, "every ip-range or gateway must have a corresponding subnet"),
    (["10.1.0.0/16", "10.2.0.0/16"], ["10.1.1.0/24", "10.1.2.0/24"], [], {},
     "cannot configure multiple ranges (10.1.2.0/24, 10.1.1.0/24) on the same subnet (10.1.0.0/16)"),
    (["10.1.0.0/16", "10.2.0.0/16"], [], ["10.1.0.1", "10.1.0.2"], {},
     "cannot configure multiple gateways (10.1.0.2, 10.1.0.1) for the same subnet (10.1.0.0/16)"),
    (["10.1.0.0/16"], ["10.3.1.0/24"], [], {}, "no matching subnet for range 10.3.1.0/24"),
    (["10.1.0.0/16"], [], ["10.3.0.1"], {}, "no matching subnet for gateway 10.3.0.1"),
    (["10.1.0.0/16"], [], [], {"x": "10.9.0.1"}, "no matching subnet for aux-address 10.9.0.1"),
    (["10.1.0.0/16", "10.1.0.0/24"], [], [], {}, "multiple overlapping subnet configuration is not supported"),
])
def test_refusals(subnets, ranges, gateways, aux, message):
    with pytest.raises(CLIError) as err:
        ipam_config(subnets, ranges, gateways, aux)
    assert (err.value.message, err.value.code) == (message, 1)
