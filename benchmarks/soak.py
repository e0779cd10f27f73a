"""``make soak``: the soak engine (``tests/soak.py``) for 5 minutes, printed as JSON.

Mixed REST and gRPC traffic against several models, one request in ten bad, a new iris
version every ``--drop-every`` seconds, while the server's RSS and file descriptors are
watched (docs/reliability.md). ``tests/e2e/test_soak.py`` runs the same engine for 30 s.

    .venv/bin/python -m benchmarks.soak [--duration 300] [--drop-every 30]
"""

import argparse
import json
import tempfile
import warnings
from pathlib import Path

from tests.soak import soak


def main() -> None:
    # The forest's predict, run in client threads for the expected answers, warns about
    # joblib's config propagation on every call.
    warnings.filterwarnings("ignore", message=".*sklearn.utils.parallel.delayed.*")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--drop-every", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=2, help="threads per protocol")
    parser.add_argument("--warmup", type=float, default=None, help="default: 20%% of duration")
    args = parser.parse_args()
    warmup = args.warmup if args.warmup is not None else 0.2 * args.duration
    with tempfile.TemporaryDirectory(prefix="v2serve-soak-") as workdir:
        report = soak(Path(workdir), args.duration, args.drop_every, args.clients, warmup)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
