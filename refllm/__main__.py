"""``python -m refllm``: the command line."""

from refllm.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
