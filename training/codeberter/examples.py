"""Write the tab's one-click examples: short functions from held-out library files, each with one
injected bug (its place and its fix recorded), plus one left as it is.

    python -m training.codeberter.examples
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from adapters.codeberter import data
from adapters.codeberter.config import BUG_MAX_LEN

OUT = Path("assets/codeberter/examples.json")
PER_KIND = 3


def main() -> None:
    from adapters.zoo import load_minilm

    tokenizer = load_minilm()[1]
    _, heldout = data.split_files()
    pool = [f for f in data.functions(heldout, 360) if f.count("\n") >= 3]
    random.Random(7).shuffle(pool)
    rng = random.Random(7)
    rows, counts = [], {"variable misuse": 0, "operator swap": 0}
    for code in pool:
        kind = min(counts, key=counts.get)
        bug = data.inject(code, rng, kind)
        if bug is None or data.encode_bug(tokenizer, bug, BUG_MAX_LEN) is None or counts[kind] >= PER_KIND:
            continue
        line = bug.code.count("\n", 0, bug.start) + 1
        column = bug.start - (bug.code.rfind("\n", 0, bug.start) + 1) + 1
        rows.append({"code": bug.code, "kind": kind, "line": line, "column": column, "wrong": bug.wrong,
                     "right": bug.right})
        counts[kind] += 1
        if all(c >= PER_KIND for c in counts.values()):
            break
    rows.append({"code": pool[-1], "kind": "none", "line": 0, "column": 0, "wrong": "", "right": ""})
    OUT.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {len(rows)} examples to {OUT}")


if __name__ == "__main__":
    main()
