"""Entry point for shiv (`app.__main__:main`) and `python -m app`."""

import sys


def main() -> int:
    from app.cli import main as cli_main

    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
