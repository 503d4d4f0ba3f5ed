#!/usr/bin/env python3
"""Worker for test_dataplane_it.py, on the Python worker SDK (axon_worker): echoes, and

  payload b"fail..."     -> answered as a handler failure (the client sees ERROR handler_error);
  payload b"sleep:<ms>"  -> the first time a request id is seen, sleeps <ms> before echoing
                            (so the client's attempt times out and it retries);

and appends every request id it sees, in hex, to the file named by argv[1] (one per line,
flushed), so the test can tell which ids reached a worker and how often."""

import os
import sys
import time

import axon_worker


def main() -> int:
    log = open(sys.argv[1], "a", buffering=1)
    seen = set()
    stop = axon_worker.StopFlag().install()

    def handle(request: axon_worker.Request, reply: axon_worker.ReplyWriter) -> None:
        log.write(f"{request.request_id:x}\n")
        data = bytes(request.data)
        if data.startswith(b"fail"):
            reply.commit(0, axon_worker.REPLY_HANDLER_ERROR)
            return
        if data.startswith(b"sleep:") and request.request_id not in seen:
            seen.add(request.request_id)
            time.sleep(int(data[6:].split(b";")[0]) / 1000)
        reply.send(data)

    with axon_worker.Worker.from_environment() as worker:
        try:
            worker.run(handle, stop)
        except axon_worker.AxonError as e:
            if e.status != axon_worker.ERR_DATAPLANE_EXITED:
                raise
    print(f"it_worker[{os.getpid()}]: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
