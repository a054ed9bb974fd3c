"""Writes crates/tasks/tests/data/pcfg_reference.json: examples of PCFG SET (Hupkes et al.
2020) as released in i-machine-think/am-i-compositional (MIT licence), with statistics of the
released sources by function count, for ordo's golden test (`crates/tasks/tests/pcfg.rs`):

* `examples`: up to 12 sources (and their targets) of each function count, the first ones in
  file order of the random split's dev set, then of the productivity test set;
* `stats`: for each function count, the number of sources, their mean length in tokens and
  their mean fraction of binary functions, over the productivity test set (9-35) and the random
  split's dev and test sets (1-8).

Run by hand (not in CI), on a checkout of the reference (no packages needed):

    python3 scripts/pcfg_reference.py /path/to/am-i-compositional > crates/tasks/tests/data/pcfg_reference.json
"""

import json
import sys
from collections import defaultdict

UNARY = {"copy", "reverse", "shift", "echo", "swap_first_last", "repeat"}
BINARY = {"append", "prepend", "remove_first", "remove_second"}
PER_COUNT = 12


def read(repo, split, name):
    base = f"{repo}/data/pcfgset/{split}/{name}"
    with open(base + ".src") as s, open(base + ".tgt") as t:
        return [(a.split(), b.split()) for a, b in zip(s.read().splitlines(), t.read().splitlines())]


def functions(source):
    return sum(t in UNARY or t in BINARY for t in source)


def main(repo):
    productivity = read(repo, "productivity", "test")
    random_split = read(repo, "pcfgset", "dev") + read(repo, "pcfgset", "test")
    pooled = [p for p in random_split if functions(p[0]) <= 8] + productivity
    examples, taken = [], defaultdict(int)
    for source, target in read(repo, "pcfgset", "dev") + productivity:
        n = functions(source)
        if taken[n] < PER_COUNT:
            taken[n] += 1
            examples.append({"functions": n, "source": source, "target": target})
    by_count = defaultdict(list)
    for source, _ in pooled:
        n = functions(source)
        by_count[n].append((len(source), sum(t in BINARY for t in source) / n))
    stats = [
        {
            "functions": n,
            "sources": len(v),
            "mean_tokens": sum(x[0] for x in v) / len(v),
            "binary_fraction": sum(x[1] for x in v) / len(v),
        }
        for n, v in sorted(by_count.items())
    ]
    json.dump(
        {
            "source": "i-machine-think/am-i-compositional 4f75bdd, data/pcfgset/{productivity/test,pcfgset/dev,pcfgset/test}",
            "licence": "MIT (c) 2020 i-machine-think",
            "examples": examples,
            "stats": stats,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main(sys.argv[1])
