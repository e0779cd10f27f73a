"""``v2serve start``: the entry point.

``mlserver start FOLDER`` forces the repository root to FOLDER whatever settings.json
says, so v2serve builds MLServer's Settings itself and keeps ``settings/`` and
``model-repository/`` apart. Precedence: flags, environment, settings file, defaults.

Exit codes: 0 after a graceful stop, 2 for bad settings, 1 when a port cannot be bound;
each failure is one line on stderr, never a traceback.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from mlserver.utils import install_uvloop_event_loop

from .errors import CannotListen, SettingsError
from .settings import build_server_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="v2serve", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="serve the models of a repository")
    start.add_argument(
        "--model-repository",
        default=None,
        help="repository root (default: $MLSERVER_MODEL_REPOSITORY_ROOT, settings, "
        "then model-repository/)",
    )
    start.add_argument(
        "--settings",
        default=None,
        type=Path,
        help="folder holding settings.json (default: settings/)",
    )
    start.add_argument(
        "--port-file",
        default=None,
        type=Path,
        metavar="PATH",
        help="once every listener is bound, write the ports it holds here as JSON "
        '({"http": ..., "grpc": ..., "metrics": ..., "host": ..., "pid": ...}); with port 0 '
        "(MLSERVER_HTTP_PORT=0 and so on) the kernel picks free ports",
    )
    return parser


async def _serve(args: argparse.Namespace) -> None:
    from .server import V2Server

    settings_dir = args.settings if args.settings is not None else Path("settings")
    if args.settings is not None and not settings_dir.is_dir():
        raise SettingsError(str(settings_dir), "settings folder does not exist")
    config = build_server_config(settings_dir, args.model_repository)
    server = V2Server(config)
    await server.start(port_file=args.port_file)


def _configure_logging() -> None:
    """v2serve's own loggers; MLServer configures its own, and the root stays untouched."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s - %(message)s"))
    v2serve_logger = logging.getLogger("v2serve")
    v2serve_logger.addHandler(handler)
    v2serve_logger.setLevel(logging.INFO)
    v2serve_logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging()
    install_uvloop_event_loop()
    try:
        asyncio.run(_serve(args))
    except SettingsError as exc:
        print(f"v2serve: {exc}", file=sys.stderr)
        return 2
    except CannotListen as exc:
        print(f"v2serve: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
