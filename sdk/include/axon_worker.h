/* axon_worker.h: the C ABI of the axon worker SDK (libaxon_worker.so), for agent workers
 * written in C or bound from other languages (see sdk/python/axon_worker.py).
 *
 * It exposes the same operations as axon::sdk::Worker: attach to the shared-memory segment
 * the data plane hands over, receive requests in place, write replies into a loaned
 * buffer (zero copy) or over the request, complete, flush, and a run loop.
 *
 *   axon_worker* w;
 *   if (axon_worker_from_environment(5000, &w) != AXON_OK) {
 *     fprintf(stderr, "%s\n", axon_worker_last_error());
 *     return 1;
 *   }
 *   axon_worker_run(w, handler, NULL, &stop);   // handler fills an axon_reply
 *   axon_worker_close(w);
 *
 * Rules of the ABI: C99, fixed-width types only, every struct layout is locked by
 * static_assert in c_api.cc and guarded by AXON_WORKER_ABI_VERSION. Functions return an
 * axon_status (AXON_OK or a negative code) unless stated otherwise; on failure
 * axon_worker_last_error() says what happened and what to do. A handle is used by one
 * thread at a time; hot-path calls never allocate, lock or block unless documented.
 */
#ifndef AXON_WORKER_H_
#define AXON_WORKER_H_

#include <stddef.h>
#include <stdint.h>

#if defined(AXON_WORKER_BUILDING) && defined(__GNUC__)
#define AXON_WORKER_API __attribute__((visibility("default")))
#else
#define AXON_WORKER_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct below or a function's meaning changes.
 * 2: axon_worker_stats gained the per-class and deadline counters; AXON_REPLY_DEADLINE_EXCEEDED;
 *    receive returns requests in class order (see axon_worker_receive_burst).
 * 3: trace context: axon_trace_context, axon_request_trace(), axon_request_traceparent(),
 *    axon_request_handler_traceparent(); the SDK makes each traced request's handler span. */
#define AXON_WORKER_ABI_VERSION 3u

/* Bytes a traceparent text takes: "00-" 32 hex "-" 16 hex "-" 2 hex and a NUL. */
#define AXON_TRACEPARENT_SIZE 56u

/* The most requests one receive call returns. */
#define AXON_WORKER_MAX_BURST 32u

/* Status codes. -1..-13 mirror axon::shm::ShmError in order; the rest belong to this ABI. */
typedef enum axon_status {
  AXON_OK = 0,
  AXON_ERR_INVALID_ARGUMENT = -1,     /* a NULL handle, a bad size, a request from another worker */
  AXON_ERR_MEMFD_FAILED = -2,         /* memfd_create refused */
  AXON_ERR_NO_MEMORY = -3,            /* no hugepages and no shared memory left */
  AXON_ERR_MAP_FAILED = -4,           /* mmap of the segment failed */
  AXON_ERR_SEAL_FAILED = -5,          /* the segment could not be sealed */
  AXON_ERR_BAD_FD = -6,               /* the fd is not the sealed memfd the data plane hands over */
  AXON_ERR_TRUNCATED = -7,            /* the segment is smaller than its header claims */
  AXON_ERR_BAD_MAGIC = -8,            /* not an axon segment */
  AXON_ERR_VERSION_MISMATCH = -9,     /* data plane and SDK speak different layout versions */
  AXON_ERR_GENERATION_MISMATCH = -10, /* the segment was recycled; reconnect */
  AXON_ERR_CORRUPT_GEOMETRY = -11,    /* offsets in the segment header do not fit the segment */
  AXON_ERR_HANDOFF_FAILED = -12,      /* the Unix-socket handover failed (no data plane?) */
  AXON_ERR_WATCH_FAILED = -13,        /* liveness watch failed */
  AXON_ERR_AGAIN = -20,               /* the reply ring is full: flush and retry; nothing was lost */
  AXON_ERR_NO_LOAN = -21,             /* no loaned buffer of that size right now: reply in place */
  AXON_ERR_REPLY_TOO_LARGE = -22,     /* the reply does not fit the buffer */
  AXON_ERR_STOPPED = -23,             /* the stop flag was raised before the call could finish */
  AXON_ERR_DATAPLANE_EXITED = -24,    /* the data plane exited: no request will come; exit or reconnect */
  AXON_ERR_INTERNAL = -30             /* out of memory or an unexpected failure inside the SDK */
} axon_status;

/* Status carried by a reply to the data plane (axon::shm::ReplyStatus). */
typedef enum axon_reply_status {
  AXON_REPLY_OK = 0,
  AXON_REPLY_HANDLER_ERROR = 1,    /* the handler failed; the data plane answers ERROR */
  AXON_REPLY_TOO_LARGE = 2,        /* the reply needed more room than any loanable buffer */
  AXON_REPLY_DEADLINE_EXCEEDED = 3 /* the request's deadline passed before it could be served;
                                      the data plane answers ERROR deadline_exceeded */
} axon_reply_status;

/* Opaque handle: one attached worker segment. */
typedef struct axon_worker axon_worker;

/* One request, readable in place until it is completed. The public fields are a copy of
 * the request's metadata; `data` points into shared memory. `internal_` belongs to the
 * SDK: copy the struct freely, but do not modify it. */
typedef struct axon_request {
  const uint8_t* data; /* payload, `length` bytes */
  uint32_t length;
  uint32_t capacity;   /* size of the request's buffer: the most an in-place reply holds */
  uint64_t request_id; /* AXP request id */
  uint32_t tenant_id;
  uint32_t agent_id;
  uint64_t session_key;
  uint32_t deadline_us; /* remaining budget when enqueued; 0 = none */
  uint8_t priority;     /* AXP priority class */
  uint8_t trace_flags;  /* W3C trace flags */
  uint8_t reserved0[2];
  uint8_t trace_id[16]; /* W3C trace context */
  uint8_t parent_span_id[8];
  uint64_t enqueue_ns;    /* CLOCK_MONOTONIC ns (read through the data plane's TSC) when it was enqueued */
  uint64_t internal_[20]; /* the SDK's copy of the descriptor; opaque */
} axon_request;

/* Where a reply is written: a loaned buffer or the request's own buffer. */
typedef struct axon_buffer {
  uint8_t* data; /* NULL: no buffer */
  uint32_t capacity;
  uint32_t offset;   /* position in the segment; opaque */
  uint32_t in_place; /* 1 when this is the request's own buffer */
  uint32_t reserved0;
} axon_buffer;

/* What a run() handler answers with. */
typedef struct axon_reply {
  axon_buffer buffer; /* from axon_worker_loan() or axon_worker_in_place(); data NULL = none */
  uint32_t length;    /* bytes of the reply in `buffer` */
  uint32_t status;    /* axon_reply_status */
} axon_reply;

typedef struct axon_worker_stats {
  uint64_t received;
  uint64_t completed;
  uint64_t loan_failures;   /* no loaned buffer of the needed size was available */
  uint64_t reply_ring_full; /* flushes that had to wait for the data plane */
  uint64_t sleeps;          /* times the worker slept on the futex */
  uint64_t generation;      /* segment generation this worker attached to */
  uint32_t worker_id;
  uint32_t hugepages;         /* 1: 2 MiB hugepages back the segment; 0: 4 KiB pages */
  uint64_t interactive;       /* of `received`: interactive (AXP priority 0) requests */
  uint64_t background;        /* of `received`: background requests */
  uint64_t deadline_expired;  /* answered AXON_REPLY_DEADLINE_EXCEEDED by the SDK, never received */
  uint64_t background_forced; /* background requests served by starvation protection */
  uint32_t background_every;  /* the scheduling policy in force (axon_worker_set_background_every) */
  uint32_t reserved0;
} axon_worker_stats;

/* A request's W3C trace context (docs/protocol.md §5). A request has trace context when
 * its trace id and parent span id are both non-zero; the SDK then made a random non-zero
 * span id for the handler, which the reply carries back to the client: the handler's own
 * child spans and outgoing calls use it as their parent. */
typedef struct axon_trace_context {
  uint8_t trace_id[16];
  uint8_t parent_span_id[8]; /* the caller's span: the parent of the handler's span */
  uint8_t span_id[8];        /* the handler's span; zero without trace context */
  uint8_t flags;             /* W3C trace flags, as received */
  uint8_t sampled;           /* 1 when flags has the sampled bit (0x01) */
  uint8_t valid;             /* 1 when the request has trace context */
  uint8_t reserved0[5];
} axon_trace_context;

/* Handler for axon_worker_run(). Take one buffer (axon_worker_loan, or axon_worker_in_place),
 * write the reply, set reply->length (and reply->status, AXON_REPLY_OK by default) and
 * return 0. A non-zero return sends an explicit AXON_REPLY_HANDLER_ERROR reply. The
 * request and any buffer are valid only until the handler returns. */
typedef int (*axon_handler_fn)(axon_worker* worker, const axon_request* request, axon_reply* reply, void* user_data);

/* --- version and errors ------------------------------------------------------------ */

/* AXON_WORKER_ABI_VERSION of the library actually loaded; compare with the header's. */
AXON_WORKER_API uint32_t axon_worker_abi_version(void);
/* sizeof(axon_request) in the loaded library, for bindings that mirror the struct. */
AXON_WORKER_API uint32_t axon_worker_request_size(void);
/* The message of the last failure on this thread ("" if none). Valid until the next
 * failing call on this thread. */
AXON_WORKER_API const char* axon_worker_last_error(void);
/* A stable name for a status code, e.g. "AXON_ERR_NO_LOAN". */
AXON_WORKER_API const char* axon_status_name(int status);

/* --- attach and detach (setup path: may allocate and block) ------------------------- */

/* Maps the segment behind fd (takes ownership of fd, even on failure). expected_generation
 * 0 accepts any generation. */
AXON_WORKER_API int axon_worker_attach_fd(int fd, uint64_t expected_generation, axon_worker** out);
/* Connects to the data plane's handoff socket and attaches to the segment it sends,
 * retrying a refused handoff (slot still being reclaimed) until timeout_ms; a negative
 * timeout_ms means AXON_WORKER_CONNECT_TIMEOUT_MS, or 5000 when that is unset. */
AXON_WORKER_API int axon_worker_connect(const char* socket_path, int timeout_ms, axon_worker** out);
/* Uses AXON_WORKER_FD (inherited connected socket) or AXON_WORKER_SOCKET (a path). */
AXON_WORKER_API int axon_worker_from_environment(int timeout_ms, axon_worker** out);
/* Publishes queued replies and marks the segment detached (clean shutdown). The handle
 * stays valid for axon_worker_stats() and axon_worker_close(). */
AXON_WORKER_API void axon_worker_detach(axon_worker* worker);
/* Detaches if still attached, unmaps and frees the handle. NULL is ignored. */
AXON_WORKER_API void axon_worker_close(axon_worker* worker);

/* --- hot path ------------------------------------------------------------------------ */

/* Receives up to max (at most AXON_WORKER_MAX_BURST) requests into out[]. Returns how
 * many (0 when none are waiting) or a negative axon_status. Never blocks.
 * Order (docs/scheduling.md, "In the worker"): interactive requests first; after
 * background_every interactive ones in a row while background work waits, one background
 * request; background requests earliest deadline first (no deadline last, arrival order
 * among equals) among the 32 the SDK has taken off the background ring. A request whose
 * deadline has already passed is never returned: the SDK answers it
 * AXON_REPLY_DEADLINE_EXCEEDED itself and counts it in deadline_expired. */
AXON_WORKER_API int axon_worker_receive_burst(axon_worker* worker, axon_request* out, uint32_t max);
/* Spins adaptively, then sleeps on the segment's futex until requests arrive, the sleep
 * timeout passes (100 ms by default) or *stop becomes non-zero (stop may be NULL).
 * Returns 1 when requests are ready, 0 otherwise, or a negative axon_status
 * (AXON_ERR_DATAPLANE_EXITED once the data plane that handed over the segment is gone). */
AXON_WORKER_API int axon_worker_wait(axon_worker* worker, const volatile int* stop);
/* A buffer loaned by the data plane for a reply of up to size bytes (zero copy).
 * AXON_ERR_NO_LOAN when none is available now: reply in place instead. A loaned buffer
 * must be passed to axon_worker_complete(), or it stays out of the pool until the worker
 * exits. */
AXON_WORKER_API int axon_worker_loan(axon_worker* worker, uint32_t size, axon_buffer* out);
/* The request's own buffer, reused for its reply (request->capacity bytes). Writing
 * here overwrites the request's payload. */
AXON_WORKER_API int axon_worker_in_place(axon_worker* worker, const axon_request* request, axon_buffer* out);
/* Queues the reply: length bytes of buffer, with an axon_reply_status. AXON_ERR_AGAIN if
 * the reply ring is full (flush, then retry). Replies become visible on flush. */
AXON_WORKER_API int axon_worker_complete(axon_worker* worker, const axon_request* request, const axon_buffer* buffer,
                                         uint32_t length, uint32_t status);
/* Publishes queued replies without waiting. AXON_ERR_AGAIN if some are still queued. */
AXON_WORKER_API int axon_worker_try_flush(axon_worker* worker);
/* Publishes queued replies, waiting for room while the data plane catches up.
 * AXON_ERR_STOPPED if *stop became non-zero first (stop may be NULL). */
AXON_WORKER_API int axon_worker_flush(axon_worker* worker, const volatile int* stop);

/* Receives, calls handler for each request, completes and flushes, until *stop becomes
 * non-zero (stop must not be NULL; set it from a signal handler). Returns AXON_OK once
 * stopped, AXON_ERR_DATAPLANE_EXITED when the data plane exited. Every request gets
 * exactly one reply. */
AXON_WORKER_API int axon_worker_run(axon_worker* worker, axon_handler_fn handler, void* user_data,
                                    const volatile int* stop);

/* --- trace context (hot path: no allocation) ------------------------------------------ */

/* Fills *out with the request's trace context. Returns 1 when the request has trace
 * context, 0 when it has none (out->valid 0, ids as received), or a negative axon_status. */
AXON_WORKER_API int axon_request_trace(const axon_request* request, axon_trace_context* out);
/* Writes the request's traceparent as the caller sent it, "00-<trace id>-<parent span>-<flags>"
 * in lower-case hex and a NUL, into out (size >= AXON_TRACEPARENT_SIZE). Returns 1 when
 * written, 0 when the request has no trace context (out becomes ""), or a negative axon_status. */
AXON_WORKER_API int axon_request_traceparent(const axon_request* request, char* out, size_t size);
/* The same for the handler's span: "00-<trace id>-<handler span>-<flags>", the traceparent
 * to send on from inside the handler. */
AXON_WORKER_API int axon_request_handler_traceparent(const axon_request* request, char* out, size_t size);

/* --- tuning and introspection ---------------------------------------------------------- */

/* Adaptive spin bounds (pause iterations) and the longest sleep between stop-flag checks. */
AXON_WORKER_API int axon_worker_set_wait_policy(axon_worker* worker, uint32_t spin_min, uint32_t spin_max,
                                                uint64_t sleep_timeout_ns);
/* Starvation protection for background requests: after `every` interactive requests in a
 * row while background work waits, one background request is served (so background gets at
 * least 1/(every+1) of the worker). 0 = strict priority. At most 1048576. The default is
 * 8, or the environment variable AXON_BACKGROUND_EVERY read at attach. */
AXON_WORKER_API int axon_worker_set_background_every(axon_worker* worker, uint32_t every);
AXON_WORKER_API int axon_worker_get_stats(const axon_worker* worker, axon_worker_stats* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* AXON_WORKER_H_ */
