"""A Python worker for sdk_python_classes_test: attaches to the segment fd in argv[1], sets the
starvation-protection share to argv[2], serves argv[3] requests with run() (each reply is empty,
status ok), then checks the SDK's counters and exits 0 only if they match argv[4..6]
(interactive, background, deadline_expired)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
import axon_worker  # noqa: E402


def main() -> int:
    fd, every, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    want = tuple(int(v) for v in sys.argv[4:7])
    stop = axon_worker.StopFlag()
    seen = []
    with axon_worker.Worker.attach_fd(fd) as worker:
        worker.set_background_every(every)

        def handler(request, reply):
            seen.append(request.request_id)
            reply.in_place()
            reply.commit(0)
            if len(seen) == count:
                stop.set()

        worker.run(handler, stop)
        stats = worker.stats()
    got = (stats["interactive"], stats["background"], stats["deadline_expired"])
    if got != want or stats["background_every"] != every:
        print(f"counters {got} (every {stats['background_every']}), expected {want} (every {every})", file=sys.stderr)
        return 1
    print(" ".join(str(i) for i in seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
