"""A Python worker for sdk_python_trace_test: attaches to the segment fd in argv[1], serves
argv[2] requests with run(), and answers each with what its handler saw of the trace context:
"<traceparent> <handler_traceparent> <sampled> <has_trace> <span_id hex>" ("-" for None)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
import axon_worker  # noqa: E402


def main() -> int:
    fd, count = int(sys.argv[1]), int(sys.argv[2])
    stop = axon_worker.StopFlag()
    served = [0]
    with axon_worker.Worker.attach_fd(fd) as worker:

        def handler(request, reply):
            text = " ".join(
                [
                    request.traceparent or "-",
                    request.handler_traceparent or "-",
                    str(int(request.sampled)),
                    str(int(request.has_trace)),
                    request.span_id.hex(),
                ]
            )
            reply.send(text.encode())
            served[0] += 1
            if served[0] == count:
                stop.set()

        worker.run(handler, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
