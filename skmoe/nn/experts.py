"""A bank of expert MLPs whose weights are stacked into a few tensors.

Every layer of every expert lives in one ``(n_experts, in, out)`` weight tensor and one
``(n_experts, out)`` bias tensor, so a forward pass costs a fixed number of batched
matrix products however many experts there are, and the optimiser sees two parameter
tensors per layer instead of two per layer per expert.
"""

import itertools
import math

import torch
from torch import nn


def _identity(t):
    return t


# Module-level functions, not lambdas: modules holding them must pickle.
ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "logistic": torch.sigmoid,
    "identity": _identity,
}
# In-place forms, for a layer's own fresh output: the batched product's backward
# does not need its result, and skipping the allocation halves the activation's cost.
ACTIVATIONS_IN_PLACE = {
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "logistic": torch.sigmoid_,
    "identity": _identity,
}


class ExpertBank(nn.Module):
    """``n_experts`` independent MLPs evaluated with batched matrix products.

    Parameters
    ----------
    n_experts : int
        Number of experts.
    in_features : int
        Width of the input.
    out_features : int
        Width of each expert's output.
    hidden_layer_sizes : tuple of int, default=()
        Hidden widths shared by all experts; ``()`` makes each expert linear.
    activation : {"relu", "tanh", "logistic", "identity"}, default="relu"
        Non-linearity after each hidden layer.

    Examples
    --------
    >>> import torch
    >>> bank = ExpertBank(n_experts=4, in_features=3, out_features=2,
    ...                   hidden_layer_sizes=(8,))
    >>> bank.forward_shared(torch.zeros(5, 3)).shape
    torch.Size([4, 5, 2])
    """

    def __init__(
        self,
        n_experts,
        in_features,
        out_features,
        hidden_layer_sizes=(),
        activation="relu",
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}."
            )
        self.n_experts = int(n_experts)
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.hidden_layer_sizes = tuple(int(h) for h in hidden_layer_sizes)
        self.activation = activation
        self._act = ACTIVATIONS_IN_PLACE[activation]
        sizes = [self.in_features, *self.hidden_layer_sizes, self.out_features]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(self.n_experts, d_in, d_out))
            for d_in, d_out in itertools.pairwise(sizes)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.empty(self.n_experts, d_out)) for d_out in sizes[1:]
        )
        self.reset_parameters()

    def reset_parameters(self):
        """Initialise each expert as ``torch.nn.Linear`` would (uniform, fan-in)."""
        for weight, bias in zip(self.weights, self.biases, strict=True):
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -bound, bound)
            nn.init.uniform_(bias, -bound, bound)

    def forward_shared(self, x):
        """Run every expert on the same input.

        Parameters
        ----------
        x : torch.Tensor of shape (batch, in_features)

        Returns
        -------
        torch.Tensor of shape (n_experts, batch, out_features)
        """
        # A stride-0 view of the input per expert: no copy, and one batched product
        # whose output is already laid out (n_experts, batch, out) for the next layer.
        return self.forward(x.expand(self.n_experts, *x.shape))

    def forward(self, x, experts=None):
        """Run expert ``e`` on ``x[e]``, or expert ``experts[i]`` on ``x[i]``.

        Parameters
        ----------
        x : torch.Tensor of shape (n_experts, rows, in_features)
            With ``experts``, of shape ``(len(experts), rows, in_features)``.
        experts : torch.Tensor of shape (n_chosen,) or None, default=None
            Indices of the experts to run, one per leading slice of ``x``.

        Returns
        -------
        torch.Tensor of shape (x.shape[0], rows, out_features)
        """
        weights, biases = list(self.weights), list(self.biases)
        if experts is not None:
            weights = [w.index_select(0, experts) for w in weights]
            biases = [b.index_select(0, experts) for b in biases]
        h = torch.baddbmm(biases[0].unsqueeze(1), x, weights[0])
        for weight, bias in zip(weights[1:], biases[1:], strict=True):
            h = torch.baddbmm(bias.unsqueeze(1), self._act(h), weight)
        return h

    def extra_repr(self):
        return (
            f"n_experts={self.n_experts}, in_features={self.in_features}, "
            f"out_features={self.out_features}, "
            f"hidden_layer_sizes={self.hidden_layer_sizes}, "
            f"activation={self.activation!r}"
        )


def mix_experts(weights, expert_out):
    """Each row's weighted sum of the experts' outputs.

    Parameters
    ----------
    weights : torch.Tensor of shape (batch, n_experts)
    expert_out : torch.Tensor of shape (n_experts, batch, out_features)

    Returns
    -------
    torch.Tensor of shape (batch, out_features)

    Examples
    --------
    >>> import torch
    >>> mix_experts(torch.tensor([[0.25, 0.75]]), torch.ones(2, 1, 3)).tolist()
    [[1.0, 1.0, 1.0]]
    """
    # A broadcast product and a sum over the experts: faster on a CPU than einsum's
    # batched product (docs/performance.md).
    return (expert_out * weights.t().unsqueeze(-1)).sum(0)


def mix_choices(weights, picked):
    """Each row's weighted sum of its chosen experts' outputs.

    Parameters
    ----------
    weights : torch.Tensor of shape (batch, k)
    picked : torch.Tensor of shape (batch * k, out_features)
        The output of each row's ``j``-th choice at position ``row * k + j``.

    Returns
    -------
    torch.Tensor of shape (batch, out_features)

    Examples
    --------
    >>> import torch
    >>> mix_choices(torch.tensor([[0.25, 0.75]]), torch.tensor([[4.0], [8.0]])).tolist()
    [[7.0]]
    """
    n_rows, k = weights.shape
    if k == 1:
        return picked * weights
    return (picked.view(n_rows, k, -1) * weights.unsqueeze(-1)).sum(1)
