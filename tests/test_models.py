"""The BGNN network's pieces against their definitions."""

from __future__ import annotations

import math

import pytest
import torch

from bgnn_sim.errors import ConfigError
from bgnn_sim.models.bgnn import BGNNConfig, InteractionBlock, aggregate


def test_edge_update_is_the_mlp_of_the_concatenated_inputs():
    torch.manual_seed(0)
    block = InteractionBlock(BGNNConfig(latent=16, mlp_layers=2))
    nodes, edges = torch.randn(30, 16), torch.randn(100, 16)
    edge_index = torch.stack([torch.randint(0, 30, (100,)), torch.randint(0, 20, (100,))])
    concatenated = torch.cat([edges, nodes[edge_index[1]], nodes[edge_index[0]]], 1)
    torch.testing.assert_close(
        block.edge_update(nodes, edges, edge_index), block.edge_mlp(concatenated)
    )


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("sum", [3.5, 0.0]), ("mean", [3.5 / 2, 0.0]), ("vpa", [3.5 / math.sqrt(2), 0.0])],
)
def test_weighted_aggregations(kind, expected):
    messages = torch.tensor([[1.0], [2.0], [3.0]])
    receivers = torch.tensor([0, 0, 0])
    weight = torch.tensor([1.0, 0.5, 0.5])  # a particle edge, and the 2 wall nodes of node 0
    result = aggregate(messages, receivers, weight, n_nodes=2, kind=kind)
    torch.testing.assert_close(result[:, 0], torch.tensor(expected))


def test_unknown_aggregation_is_refused():
    with pytest.raises(ConfigError, match="aggregation must be one of 'mean', 'sum', 'vpa'"):
        BGNNConfig(aggregation="max")
