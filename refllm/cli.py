"""The ``refllm`` command line (being written: ``refllm demo``, ``refllm check ...``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("refllm: the command line is being written", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
