"""The numbers Yang et al. (2021) report for their four MNIST networks, as data.

H. Yang, X. Ding, R. Chan, H. Hu, Y. Peng, T. Zeng, "A new initialization method based on normed
statistical spaces in deep networks", Inverse Problems and Imaging 15(1):147-158, 2021,
doi:10.3934/ipi.2020045, Tables 1-4 and Figure 1.

For each network the paper gives the last smoothed training loss (mean +- std over runs) and the
test accuracy, for its method ("Ours") and for Xavier/He (one column for both). Optimizer, learning
rate, batch size, epochs and the smoothing are not given.

Example::

    from examples.paper.paper import PAPER, paper_row
    PAPER["b"].ours.loss          # 0.111
    paper_row("b", "glorot")      # the Xavier/He numbers of net (b)
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

__all__ = ["NETS", "PAPER", "PaperResult", "PaperNet", "paper_row", "REFERENCE"]

REFERENCE = ("H. Yang et al., \"A new initialization method based on normed statistical spaces "
             "in deep networks\", Inverse Problems and Imaging 15(1):147-158, 2021")


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """One cell group of the paper's tables: smoothed loss mean, its std, test accuracy (0-1)."""

    loss: float
    loss_std: float
    accuracy: float

    def format(self) -> str:
        return f"{self.loss:.3f} ± {self.loss_std:.3f} / {100 * self.accuracy:.2f}%"


@dataclasses.dataclass(frozen=True)
class PaperNet:
    """A network of the paper: its table, its structure, and the two reported results."""

    table: str
    structure: str
    ours: PaperResult
    xavier_he: PaperResult


PAPER: Dict[str, PaperNet] = {
    "a": PaperNet(
        "Table 1",
        "Conv3x3(32)+MaxPool, Conv3x3(64)+MaxPool, Fc 3136->64, Fc 64->10",
        ours=PaperResult(0.070, 0.005, 0.9806),
        xavier_he=PaperResult(0.069, 0.001, 0.9813),
    ),
    "b": PaperNet(
        "Table 2",
        "Conv(32)+MaxPool, Conv(64)+MaxPool, reshape 56x56x1, periodic Conv 55x55 (1 channel), "
        "Fc 3136->10",
        ours=PaperResult(0.111, 0.006, 0.9566),
        xavier_he=PaperResult(0.206, 0.012, 0.9394),
    ),
    "c": PaperNet(
        "Table 3",
        "Conv(32)+MaxPool, Conv(64)+MaxPool, block-circulant Fc 3136->1568 (block 1568), "
        "Fc 1568->10",
        ours=PaperResult(0.088, 0.003, 0.9717),
        xavier_he=PaperResult(0.221, 0.016, 0.9507),
    ),
    "d": PaperNet(
        "Table 4",
        "Conv(32)+MaxPool, Conv(64)+MaxPool, Conv3x3(256), 2x block-circulant Conv3x3 256->256 "
        "(block 256), Fc 12544->64, Fc 64->10",
        ours=PaperResult(0.083, 0.004, 0.9801),
        xavier_he=PaperResult(0.164, 0.012, 0.9622),
    ),
}

NETS = tuple(PAPER)  # "a".."d"

# Which paper column an initialization of `python -m examples.paper compare` corresponds to.
_COLUMN = {"normed": "ours", "normed-analytic": "ours", "glorot": "xavier_he", "he": "xavier_he"}


def paper_row(net: str, init: str) -> Optional[PaperResult]:
    """The paper's result for ``net`` under the column matching ``init``, or ``None``.

    ``"normed"`` and ``"normed-analytic"`` map to "Ours", ``"glorot"`` and ``"he"`` to
    "Xavier/He"; other initializations have no paper counterpart.
    """
    column = _COLUMN.get(init)
    if net not in PAPER or column is None:
        return None
    return getattr(PAPER[net], column)
