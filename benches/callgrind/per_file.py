"""The project's source files whose code ran for each event: the instructions of each file in
the larger run less those in the smaller one, over the events between them (see run.sh).

    python3 per_file.py SRC_DIR SMALL.txt LARGE.txt EVENTS

SMALL.txt and LARGE.txt are `callgrind_annotate --inclusive=no --auto=no` of the two runs.
Prints the files of SRC_DIR with at least one instruction per event, most first, and how many.
A file whose code runs on a timer (a checkpoint, a heartbeat) shows too, at a few
instructions per event: the larger run lasts longer.
"""
import collections
import re
import sys

# `  1,234 (0.01%)  /path/file.rs:function [binary]`; older valgrinds print no percentage.
LINE = re.compile(r"\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(/\S+?):")


def per_file(path, src):
    """Instructions by file of `src` in one annotated profile."""
    totals = collections.Counter()
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m and m.group(2).startswith(src):
                totals[m.group(2)[len(src):]] += int(m.group(1).replace(",", ""))
    return totals


def main():
    src, small, large, events = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    before, after = per_file(small, src), per_file(large, src)
    rows = sorted(((after[f] - before.get(f, 0)) / events, f) for f in after)
    walk = [(per, f) for per, f in reversed(rows) if per >= 1]
    for per, f in walk:
        print(f"{per:12.0f}  src/{f}")
    print(f"{len(walk)} files of src/ ran at least one instruction per event")


if __name__ == "__main__":
    main()
