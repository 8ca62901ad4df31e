"""`make chaos`: python -m chaos --faults N --out docs/reliability.md (run from tests/)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import campaign, report
from netns import available as why_not


def main() -> int:
    ap = argparse.ArgumentParser(prog="chaos")
    ap.add_argument("--faults", type=int, default=100)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("docs/reliability.md"))
    ap.add_argument("--hold-min", type=float, default=2.0)
    ap.add_argument("--hold-max", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=100.0, help="messages/s per producer")
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--pad", type=int, default=200, help="padding bytes per message value")
    args = ap.parse_args()
    reason = why_not()
    if reason:
        print(f"chaos: cannot run here: {reason}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else int(time.time())
    hold = (args.hold_min, args.hold_max)
    tmp = Path(tempfile.mkdtemp(prefix="chronik-chaos-"))
    r = campaign.run(tmp, args.faults, seed, hold, producers=args.producers, rate=args.rate, pad=args.pad,
                     log=lambda s: print(s, flush=True))
    args.out.write_text(report.render(r, seed, hold, args.rate, args.producers, args.pad))
    print(f"chaos: wrote {args.out}: {len(r.faults)} faults, {len(r.attempts)} sent, "
          f"{len(r.violations)} violations")
    for v in r.violations[:30]:
        print(f"  {v.kind} p{v.partition}: {v.detail}")
    if r.violations:
        # Keep what explains them: every node's logs and every send with its outcome.
        with open(tmp / "attempts.jsonl", "w") as f:
            for a in r.attempts:
                f.write(json.dumps(dataclasses.asdict(a), default=str) + "\n")
        print(f"chaos: kept the nodes' logs and WAL (nodeN/wal-copy), the producers' idempotence logs "
              f"(producerN.log) and the send history (attempts.jsonl) in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if r.violations else 0


if __name__ == "__main__":
    sys.exit(main())
