"""``python -m keras_normed <command> [options]``: same as the ``keras-normed`` script."""

import sys

from keras_normed.cli import main

if __name__ == "__main__":
    sys.exit(main())
