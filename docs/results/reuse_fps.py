"""Encoder reuse at each precision, measured: scored frames/s of the default model's live
network (stride 1, batch 4) whole and with encoder reuse, at fp32 and int8 on both backends,
all timed in turns (:func:`stream.bench.network.live_fps`), into the JSON named on the
command line. docs/results/bench.md reads it.

    OMP_NUM_THREADS=2 nice -n 5 python docs/results/reuse_fps.py docs/results/reuse_fps.json
"""

import json
import os
import sys
import time

from stream.bench.network import live_fps
from stream.bench.timing import cpu_name
from stream.defaults import PED2, ROOT, WEIGHTS
from stream.detector.precision import cpu_flags, isa_summary


def main(out: str) -> None:
    started, load = time.time(), os.getloadavg()
    result = live_fps(WEIGHTS, "cpu", 1, 6.0, PED2)
    result.update(model=str(WEIGHTS.relative_to(ROOT)), device=cpu_name(),
                  isa=isa_summary(cpu_flags()),
                  omp_threads=int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
                  load_average=[round(x, 2) for x in load],
                  load_average_end=[round(x, 2) for x in os.getloadavg()],
                  seconds=round(time.time() - started, 1))
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
