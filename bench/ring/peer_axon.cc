// Peer: axon's SPSC ring (shm/spsc_ring.h), with a 64-byte slot for the side-by-side
// rows, the real 128-byte Descriptor, and the Descriptor plus the eventcount notify the
// data plane issues after every burst. Also the eventcount sleep-to-wake workload.
#include <fcntl.h>
#include <unistd.h>

#include <new>

#include "axon/shm/eventcount.h"
#include "axon/shm/spsc_ring.h"

#include "bench.h"

namespace axon::bench {
namespace {

// Area: two ring headers, two eventcounts, then the two slot arrays (page aligned).
struct AxonArea {
  shm::RingHeader ring[2];
  shm::EventCount event[2];
};
constexpr std::size_t kSlotsAt = 4096;
static_assert(sizeof(AxonArea) <= kSlotsAt);

template <typename Slot>
std::size_t area_bytes() {
  return kSlotsAt + 2 * std::size_t(kCapacity) * sizeof(Slot);
}

template <typename Slot>
Slot* slots_of(std::byte* area, int channel) {
  return reinterpret_cast<Slot*>(area + kSlotsAt + std::size_t(channel) * kCapacity * sizeof(Slot));
}

template <typename Slot>
void init(std::byte* area) {
  auto* a = reinterpret_cast<AxonArea*>(area);
  for (int c = 0; c < 2; ++c) {
    auto* h = new (&a->ring[c]) shm::RingHeader{};
    h->geometry.slots_offset = 0;  // unused: the views get addresses directly
    h->geometry.capacity = kCapacity;
    h->geometry.slot_size = sizeof(Slot);
    new (&a->event[c]) shm::EventCount{};
  }
  std::memset(static_cast<void*>(slots_of<Slot>(area, 0)), 0, 2 * std::size_t(kCapacity) * sizeof(Slot));
}

template <typename Slot, bool Notify>
struct AxonSide {
  using Msg = Slot;
  shm::RingProducer<Slot> out;
  shm::RingConsumer<Slot> in;
  shm::EventCount* out_event;

  AxonSide(std::byte* area, int role) {
    auto* a = reinterpret_cast<AxonArea*>(area);
    const int out_ch = role == 0 ? 0 : 1;
    const int in_ch = 1 - out_ch;
    out = shm::RingProducer<Slot>(&a->ring[out_ch], slots_of<Slot>(area, out_ch));
    in = shm::RingConsumer<Slot>(&a->ring[in_ch], slots_of<Slot>(area, in_ch));
    out_event = &a->event[out_ch];
  }
  bool push1(const Msg& m) noexcept { return out.try_push(m); }
  bool pop1(Msg& m) noexcept { return in.try_pop(m); }
  std::uint32_t push_burst(const Msg* m, std::uint32_t n) noexcept { return out.try_push_burst(m, n); }
  std::uint32_t pop_burst(Msg* m, std::uint32_t n) noexcept { return in.try_pop_burst(m, n); }
  void after_push() noexcept {
    if constexpr (Notify) shm::eventcount_notify(*out_event);
  }
};

// Two bench-only variants of axon's burst path, run beside the real ring in the same
// slices, so that the differences are what the ring's per-slot stamp costs. Both keep
// spsc_ring.h's cached peer indices, the one release store of the index per burst and the
// 56-byte body copy; they differ only in the commit stamp:
//  - Stamps::none: no stamp at all (the experiment behind issue 17's burst question). The
//    producer does not store it, the consumer neither reads nor checks it, so a single-slot
//    pop has to read the producer's head.
//  - Stamps::per_burst: the protocol issue 17 proposed, measured but not adopted (see
//    docs/benchmarks.md): the producer release-stores the burst's end into the commit word of
//    the burst's first slot only; the consumer checks that one stamp and keeps the proven end
//    in the view, taking the rest of the burst without a check, and a single-slot pop polls
//    the next burst's first slot. The proven end lives only in the process: spsc_ring.h's
//    shared layout has no field for it, which is why the ring did not adopt this.
enum class Stamps { none, per_burst };

template <typename Slot, Stamps kStamps>
struct VariantSide {
  using Msg = Slot;
  shm::RingHeader* out_h;
  Slot* out_s;
  shm::RingHeader* in_h;
  Slot* in_s;
  std::uint32_t mask = kCapacity - 1;
  std::uint64_t proven_end = 0;  // per_burst: end of the last burst a stamp proved
  std::uint32_t idle_polls = 0;

  VariantSide(std::byte* area, int role) {
    auto* a = reinterpret_cast<AxonArea*>(area);
    const int out_ch = role == 0 ? 0 : 1;
    out_h = &a->ring[out_ch];
    out_s = slots_of<Slot>(area, out_ch);
    in_h = &a->ring[1 - out_ch];
    in_s = slots_of<Slot>(area, 1 - out_ch);
  }
  std::uint32_t push_burst(const Msg* m, std::uint32_t n) noexcept {
    const std::uint64_t head = out_h->producer.head.load(std::memory_order_relaxed);
    std::uint64_t free = kCapacity - (head - out_h->producer.cached_tail);
    if (free < n) {
      out_h->producer.cached_tail = out_h->consumer.tail.load(std::memory_order_acquire);
      free = kCapacity - (head - out_h->producer.cached_tail);
    }
    const std::uint32_t count = n < free ? n : std::uint32_t(free);
    for (std::uint32_t i = 0; i < count; ++i) shm::ring_detail::copy_body(out_s[(head + i) & mask], m[i]);
    if constexpr (kStamps == Stamps::per_burst) {
      if (count > 0) {
        std::atomic_ref<std::uint64_t>(out_s[head & mask].commit).store(head + count, std::memory_order_release);
      }
    }
    out_h->producer.head.store(head + count, std::memory_order_release);
    return count;
  }
  // per_burst: the end of the burst starting at `pos`, proven by its stamp, or 0.
  std::uint64_t stamped_end(std::uint64_t pos, std::uint64_t tail) const noexcept {
    const std::uint64_t stamp = shm::ring_detail::load_stamp(in_s[pos & mask]);
    return stamp > pos && stamp - tail <= kCapacity ? stamp : 0;
  }
  std::uint32_t pop_burst(Msg* m, std::uint32_t max) noexcept {
    const std::uint64_t tail = in_h->consumer.tail.load(std::memory_order_relaxed);
    if constexpr (kStamps == Stamps::per_burst) {
      // Honest peers only: an unstamped next slot means empty (no torn path, no head read).
      std::uint64_t pos = tail;
      while (pos - tail < max) {
        if (proven_end <= pos) {
          const std::uint64_t end = stamped_end(pos, tail);
          if (end == 0) break;
          proven_end = end;
        }
        const std::uint64_t stop = proven_end < tail + max ? proven_end : tail + max;
        for (; pos < stop; ++pos) m[pos - tail] = in_s[pos & mask];
      }
      if (pos != tail) in_h->consumer.tail.store(pos, std::memory_order_release);
      return std::uint32_t(pos - tail);
    } else {
      std::uint64_t head = in_h->consumer.cached_head;
      if (head <= tail) {
        head = in_h->producer.head.load(std::memory_order_acquire);
        in_h->consumer.cached_head = head;
        if (head <= tail) return 0;
      }
      const std::uint32_t ready = std::uint32_t(head - tail);
      const std::uint32_t count = ready < max ? ready : max;
      for (std::uint32_t i = 0; i < count; ++i) m[i] = in_s[(tail + i) & mask];
      in_h->consumer.tail.store(tail + count, std::memory_order_release);
      return count;
    }
  }
  bool push1(const Msg& m) noexcept { return push_burst(&m, 1) == 1; }
  bool pop1(Msg& m) noexcept { return pop_burst(&m, 1) == 1; }
  void after_push() noexcept {}
};

template <typename Slot, Stamps kStamps>
int variant_child(std::byte* area, Workload workload, int role, Control& ctl, const Params& p) {
  if (workload == Workload::wake) {
    fail(ctl.role[role], "the bench-only ring variants have no blocking wait");
    return 1;
  }
  VariantSide<Slot, kStamps> side(area, role);
  return run_role(side, workload, role, ctl, p);
}

// Is the process asleep (state S) right now? Reads /proc/<pid>/stat.
bool sleeping(int pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[512];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* paren = std::strrchr(buf, ')');
  return paren != nullptr && paren[1] == ' ' && paren[2] == 'S';
}

// Sleep-to-wake: B sleeps on the eventcount with an empty ring; A waits until B is
// really asleep in the kernel, stamps the TSC, pushes one descriptor and notifies. B
// measures from the stamp to the moment it holds the message.
int wake_producer(std::byte* area, Control& ctl, const Params& p) {
  RoleResult& r = ctl.role[0];
  auto* a = reinterpret_cast<AxonArea*>(area);
  shm::RingProducer<shm::Descriptor> out(&a->ring[0], slots_of<shm::Descriptor>(area, 0));
  shm::EventCount& ev = a->event[0];
  if (!start_line(ctl, 0, r, p)) return 1;
  const int consumer = ctl.role[1].pid;
  const std::uint64_t limit = std::uint64_t(5e9 * p.tsc_per_ns);
  shm::Descriptor d{};
  for (std::uint32_t i = 0; i < p.wake_samples; ++i) {
    std::uint64_t t0 = rdtsc();
    // Registered as a waiter, and then parked in futex_wait.
    while (ev.waiters.load(std::memory_order_acquire) == 0 || !sleeping(consumer)) {
      cpu_relax();
      if (rdtsc() - t0 > limit) {
        fail(r, "consumer never went to sleep before sample %u", i);
        return 1;
      }
    }
    set_msg(d, i);
    d.hop_ns[shm::kHopEnqueue] = rdtsc();
    if (!out.try_push(d)) {
      fail(r, "ring full in the wake workload");
      return 1;
    }
    shm::eventcount_notify(ev);
    t0 = rdtsc();
    while (ctl.ack.load(std::memory_order_acquire) != i + 1ull) {
      cpu_relax();
      if (rdtsc() - t0 > limit) {
        fail(r, "consumer did not wake for sample %u (lost wakeup?)", i);
        return 1;
      }
    }
  }
  r.wakes_issued = ev.wakes_issued.load(std::memory_order_relaxed);
  r.messages = p.wake_samples;
  r.status = 0;
  return 0;
}

int wake_consumer(std::byte* area, Control& ctl, const Params& p) {
  RoleResult& r = ctl.role[1];
  auto* a = reinterpret_cast<AxonArea*>(area);
  shm::RingConsumer<shm::Descriptor> in(&a->ring[0], slots_of<shm::Descriptor>(area, 0));
  shm::EventCount& ev = a->event[0];
  std::vector<std::uint64_t> samples(p.wake_samples);
  if (!start_line(ctl, 1, r, p)) return 1;
  const std::uint64_t limit = std::uint64_t(10e9 * p.tsc_per_ns);
  for (std::uint32_t i = 0; i < p.wake_samples; ++i) {
    shm::Descriptor d;
    const std::uint64_t t0 = rdtsc();
    while (!in.try_pop(d)) {
      const std::uint32_t key = shm::eventcount_prepare_wait(ev);
      if (!in.empty()) {
        shm::eventcount_cancel_wait(ev);
        continue;
      }
      shm::eventcount_wait(ev, key, 1'000'000'000ull);
      if (rdtsc() - t0 > limit) {
        fail(r, "no message for sample %u", i);
        return 1;
      }
    }
    const std::uint64_t t1 = rdtsc();
    if (!msg_ok(d, i)) {
      fail(r, "wake sample %u carried seq %llu", i, static_cast<unsigned long long>(msg_seq(d)));
      return 1;
    }
    const std::uint64_t stamp = d.hop_ns[shm::kHopEnqueue];
    samples[i] = t1 > stamp ? t1 - stamp : 0;
    ctl.ack.store(i + 1ull, std::memory_order_release);
  }
  r.latency = summarize(samples, p.tsc_per_ns);
  r.messages = p.wake_samples;
  r.status = 0;
  return 0;
}

template <typename Slot, bool Notify>
int child(std::byte* area, Workload workload, int role, Control& ctl, const Params& p) {
  if (workload == Workload::wake) {
    if constexpr (Notify && std::is_same_v<Slot, shm::Descriptor>) {
      return role == 0 ? wake_producer(area, ctl, p) : wake_consumer(area, ctl, p);
    }
    fail(ctl.role[role], "wake workload runs on the descriptor+eventcount peer only");
    return 1;
  }
  AxonSide<Slot, Notify> side(area, role);
  int rc = run_role(side, workload, role, ctl, p);
  if (role == 0) {
    ctl.role[0].wakes_issued = side.out_event->wakes_issued.load(std::memory_order_relaxed);
  }
  if (rc == 0 && (side.out.corrupt() || side.in.corrupt())) {
    fail(ctl.role[role], "ring reported a corrupt peer index");
    return 1;
  }
  return rc;
}

}  // namespace

std::vector<Peer> axon_peers() {
  return {
      Peer{"axon_ring_64", "axon SPSC ring", "64 B", 64, true, true, false, nullptr, &area_bytes<Msg64>, &init<Msg64>,
           &child<Msg64, false>,
           "axon RingProducer/RingConsumer<Slot> with a 64-byte slot (commit stamp + 56 B), copy in/out"},
      Peer{"axon_ring_descriptor", "axon SPSC ring, 128 B Descriptor", "128 B", 128, true, true, false, nullptr,
           &area_bytes<shm::Descriptor>, &init<shm::Descriptor>, &child<shm::Descriptor, false>,
           "the production slot: axon::shm::Descriptor (two cache lines)"},
      Peer{"axon_descriptor_notify", "axon Descriptor + eventcount notify", "128 B", 128, true, true, true, nullptr,
           &area_bytes<shm::Descriptor>, &init<shm::Descriptor>, &child<shm::Descriptor, true>,
           "the data plane's producer path: eventcount_notify() after every push call (fence + waiter check; "
           "futex wake only when the consumer sleeps)"},
      Peer{"axon_ring_64_stampfree", "axon burst path without commit stamps (experiment)", "64 B", 64, true, true,
           false, nullptr, &area_bytes<Msg64>, &init<Msg64>, &variant_child<Msg64, Stamps::none>,
           "bench-only: the same burst path with no stamp written or checked; its difference to the "
           "axon SPSC ring row is what the stamps cost"},
      Peer{"axon_ring_64_burststamp", "axon burst path with one stamp per burst (experiment)", "64 B", 64, true, true,
           false, nullptr, &area_bytes<Msg64>, &init<Msg64>, &variant_child<Msg64, Stamps::per_burst>,
           "bench-only: the proposed protocol (the burst's end stamped into its first slot, the rest taken on "
           "that one stamp); measured, not adopted: see docs/benchmarks.md"},
  };
}

}  // namespace axon::bench
