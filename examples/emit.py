"""A Unix-pipe stage: write N framed messages ``<id>|<filler>`` to stdout, then exit.

    python -m examples.emit --count 1000 --framing line --line-encoding raw | head
"""

from __future__ import annotations

import argparse
import sys

from services.transport import PipeTransport


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and emit the messages."""
    parser = argparse.ArgumentParser(prog="python -m examples.emit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--payload-bytes", type=int, default=64)
    parser.add_argument("--framing", choices=("line", "length"), default="length")
    parser.add_argument("--line-encoding", choices=("base64", "raw"), default="base64")
    args = parser.parse_args(argv)
    pipe = PipeTransport.from_stdio(framing=args.framing, line_encoding=args.line_encoding)
    filler = b"." * max(0, args.payload_bytes - 8)
    try:
        pipe.send_many(b"%d|%s" % (i, filler) for i in range(args.count))
    except EOFError:  # the reader went away (e.g. `| head`)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
