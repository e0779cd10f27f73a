"""``v2serve start``: the entry point.

``mlserver start FOLDER`` forces the repository root to FOLDER whatever settings.json
says, so v2serve builds MLServer's Settings itself and keeps ``settings/`` and
``model-repository/`` apart. Precedence: flags, environment, settings file, defaults.
"""

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from mlserver.utils import install_uvloop_event_loop

from .errors import SettingsError
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
    return parser


async def _serve(args: argparse.Namespace) -> None:
    from .server import V2Server

    settings_dir = args.settings if args.settings is not None else Path("settings")
    if args.settings is not None and not settings_dir.is_dir():
        raise SettingsError(str(settings_dir), "settings folder does not exist")
    config = build_server_config(settings_dir, args.model_repository)
    server = V2Server(config)
    await server.start()


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
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
