"""How many generated cases a campaign links apart (issue 24, far calls):
for seeds 1..N, the layout each seed gives (fuzz.campaign.worker
layout_for_seed), and per layout and target how many target lines asked for
one and how many had functions placed apart (chunks: how many pieces).

    .venv/bin/python benchmarks/layout_share.py [N]      # default 3000"""

from __future__ import annotations

import sys
from collections import Counter

from fuzz.campaign.worker import generated, layout_for_seed
from fuzz.pipeline.filetest import parse_text
from fuzz.pipeline.link import NEAR
from fuzz.pipeline.runner import Runner, default_lines
from fuzz.targets import TARGETS


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    targets = list(TARGETS.values())
    runner = Runner()
    asked: Counter[tuple[str, str]] = Counter()
    placed: Counter[tuple[str, str]] = Counter()
    chunks: Counter[tuple[str, str]] = Counter()
    for seed in range(1, count + 1):
        layout = layout_for_seed(seed)
        if layout == NEAR:
            continue
        ft = parse_text(generated(seed, targets))
        for config in runner.prepare_file(ft, default_lines(ft, None)):
            key = (layout, config.line.target.name)
            asked[key] += 1
            if config.layout != NEAR and config.image is not None:
                placed[key] += 1
                chunks[key] += len(config.image.far)
    for key in sorted(asked):
        print(
            f"{key[0]:5} {key[1]:8} lines {asked[key]:4}  placed apart {placed[key]:4}  "
            f"chunks {chunks[key]}"
        )
    print(f"seeds {count}: {sum(asked.values())} lines asked, {sum(placed.values())} placed apart")


if __name__ == "__main__":
    main()
