"""``python -m examples.paper <command> [options]``: the paper's experiments, from a clone.

The same dispatcher as ``keras-normed`` (:func:`keras_normed.cli.main`), with this table.
"""

import sys
from typing import List, Optional

# command -> module with add_arguments(parser) and run(args) -> int. One line per command.
COMMANDS = {
    "compare": "examples.paper.compare",
    "datainit": "examples.paper.datainit",
    "demo": "examples.paper.demo",
    "depth": "examples.paper.depth",
    "growth": "examples.paper.growth",
    "resnet": "examples.paper.resnet",
}

PROG = "python -m examples.paper"


def main(argv: Optional[List[str]] = None) -> int:
    from keras_normed import cli

    return cli.main(argv, commands=COMMANDS, prog=PROG,
                    description="The paper reproductions of keras-normed (run from a clone).")


if __name__ == "__main__":
    sys.exit(main())
