"""A local SMTP sink (aiosmtpd) for `make run` and `make test`: every e-mail lands in a Maildir.

The portal e-mails patients their notices through SMTP; on a laptop or in the
tests nothing must leave the machine, yet the e-mail must really travel over
SMTP. This sink accepts every message on 127.0.0.1 at the `mail` port (8025
shifted by the port offset) and files it in ``<state>/mail`` (Maildir), where a
person reads it with any mail client and a test with Python's ``mailbox``.
It is started by the stack in dev and test only; production points the portal
at a real relay (``HEALTHGOV_SMTP_HOST``, ``HEALTHGOV_SMTP_PORT``).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", type=Path, required=True)
    args = parser.parse_args()
    for sub in ("new", "cur", "tmp"):  # a Maildir from the start: a reader finds it empty, not missing
        (args.maildir / sub).mkdir(parents=True, exist_ok=True)
    controller = Controller(Mailbox(str(args.maildir)), hostname=args.host, port=args.port)
    controller.start()
    print(f"mail sink on {args.host}:{args.port}, Maildir {args.maildir}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
