"""``python -m attrib``: the command line, as the ``attrib`` script runs it."""

from .cli import main

if __name__ == "__main__":
    main()
