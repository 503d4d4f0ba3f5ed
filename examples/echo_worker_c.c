/* echo_worker_c: the echo worker in plain C11, through the C ABI (axon_worker.h).
 *
 * Same behaviour as echo_worker.cc: each payload is echoed into a loaned buffer (zero
 * copy across processes), or in place when no loan is available; SIGTERM/SIGINT stop it
 * cleanly. It links only libaxon_worker.so, which is what proves the ABI self-contained.
 *
 *   echo_worker_c [--socket PATH] [--work-ns N]
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "axon_worker.h"

/* The run loop reads the flag through `const volatile int*`; sig_atomic_t is what a
 * signal handler may write, and on Linux it is an int. */
_Static_assert(_Generic((sig_atomic_t)0, int : 1, default : 0), "sig_atomic_t must be int for axon_worker_run");
static volatile sig_atomic_t g_stop = 0;

static void on_signal(int signo) {
  (void)signo;
  g_stop = 1;
}

typedef struct echo_state {
  uint64_t work_ns;
  uint64_t loaned;
  uint64_t in_place;
} echo_state;

static uint64_t monotonic_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Simulated handler work: a busy spin, since a real agent's CPU time is what we model. */
static void spin_for(uint64_t ns) {
  if (ns == 0) return;
  const uint64_t until = monotonic_ns() + ns;
  while (monotonic_ns() < until) {
  }
}

static int echo(axon_worker* worker, const axon_request* request, axon_reply* reply, void* user_data) {
  echo_state* state = user_data;
  spin_for(state->work_ns);
  if (axon_worker_loan(worker, request->length, &reply->buffer) == AXON_OK) {
    memcpy(reply->buffer.data, request->data, request->length);
    ++state->loaned;
  } else if (axon_worker_in_place(worker, request, &reply->buffer) == AXON_OK) {
    /* The request's own buffer already holds the echo. */
    ++state->in_place;
  } else {
    return -1; /* the run loop sends an explicit handler-error reply */
  }
  reply->length = request->length;
  reply->status = AXON_REPLY_OK;
  return 0;
}

static int usage(const char* argv0, int code) {
  fprintf(code == 0 ? stdout : stderr,
          "usage: %s [--socket PATH] [--work-ns N]\n"
          "  --socket PATH  connect to this handoff socket instead of AXON_WORKER_FD/AXON_WORKER_SOCKET\n"
          "  --work-ns N    busy-spin N ns per request to simulate handler work (default 0)\n",
          argv0);
  return code;
}

int main(int argc, char** argv) {
  const char* socket_path = NULL;
  echo_state state = {0, 0, 0};
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc) {
      socket_path = argv[++i];
    } else if (strcmp(argv[i], "--work-ns") == 0 && i + 1 < argc) {
      char* end = NULL;
      errno = 0;
      const char* text = argv[++i];
      unsigned long long value = strtoull(text, &end, 10);
      if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        fprintf(stderr, "echo_worker_c: --work-ns needs a non-negative integer, got '%s'\n", text);
        return 2;
      }
      state.work_ns = value;
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      return usage(argv[0], 0);
    } else {
      fprintf(stderr, "echo_worker_c: unknown argument '%s'\n", argv[i]);
      return usage(argv[0], 2);
    }
  }
  if (axon_worker_abi_version() != AXON_WORKER_ABI_VERSION) {
    fprintf(stderr, "echo_worker_c: libaxon_worker.so speaks ABI %u but this program was built for %u; rebuild\n",
            axon_worker_abi_version(), AXON_WORKER_ABI_VERSION);
    return 1;
  }

  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0; /* no SA_RESTART: a sleeping worker's futex wait returns at once */
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);

  axon_worker* worker = NULL;
  int rc = socket_path != NULL ? axon_worker_connect(socket_path, 5000, &worker)
                               : axon_worker_from_environment(5000, &worker);
  if (rc != AXON_OK) {
    fprintf(stderr, "echo_worker_c: cannot attach (%s): %s\n", axon_status_name(rc), axon_worker_last_error());
    return 1;
  }

  const uint64_t started = monotonic_ns();
  rc = axon_worker_run(worker, echo, &state, &g_stop);
  if (rc != AXON_OK) {
    fprintf(stderr, "echo_worker_c: run loop failed (%s): %s\n", axon_status_name(rc), axon_worker_last_error());
  }
  axon_worker_detach(worker);

  axon_worker_stats stats;
  axon_worker_get_stats(worker, &stats);
  fprintf(stderr,
          "echo_worker_c[%d]: worker %u generation %llu (%s): %llu received, %llu completed (%llu loaned, %llu in "
          "place), %llu loan failures, %llu sleeps, %llu reply-ring waits in %.1f s; detached\n",
          (int)getpid(), stats.worker_id, (unsigned long long)stats.generation,
          stats.hugepages ? "2 MiB hugepages" : "4 KiB pages", (unsigned long long)stats.received,
          (unsigned long long)stats.completed, (unsigned long long)state.loaned, (unsigned long long)state.in_place,
          (unsigned long long)stats.loan_failures, (unsigned long long)stats.sleeps,
          (unsigned long long)stats.reply_ring_full, (double)(monotonic_ns() - started) / 1e9);
  axon_worker_close(worker);
  return rc == AXON_OK ? 0 : 1;
}
