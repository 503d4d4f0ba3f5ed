// XdpProgram: load, configure, attach and observe the axon XDP front door (bpf/axon_xdp.bpf.c).
//
// libbpf and libxdp types stay behind this interface, so the data plane and tools include no
// BPF headers. Setup and control calls return XdpResult with a message that says what to do;
// nothing here is on the packet path (counters are read by a control thread, not per packet).
//
// Lifetime: the destructor detaches from the interface before it unloads, so a program is never
// left attached behind an XdpProgram that went out of scope. The single-program attach goes
// through a BPF link, so even a process killed without running destructors leaves nothing behind.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "axon/common/result.h"

#include "axon_xdp.shared.h"

namespace axon::bpf {

enum class XdpError {
  invalid_argument,     // a config value that cannot work (message names it)
  open_failed,          // the embedded BPF object could not be opened
  load_failed,          // the verifier or the kernel refused the program
  not_loaded,           // the call needs a loaded program
  already_attached,     // attach() on a program that is attached somewhere
  interface_not_found,  // no such interface (name or ifindex)
  attach_failed,        // the kernel refused native-mode attach
  detach_failed,        // the program could not be removed from the interface
  map_update_failed,    // a table update was refused (full map, bad key)
  map_read_failed,      // counters could not be read
  query_failed,         // the interface's XDP state could not be queried
  test_run_failed,      // BPF_PROG_TEST_RUN refused the input
};

[[nodiscard]] const char* to_string(XdpError code) noexcept;

template <typename T>
using XdpResult = Result<T, XdpError>;

inline constexpr std::size_t kMaxPorts = AXON_MAX_PORTS;
inline constexpr std::size_t kReasonCount = AXON_REASON_COUNT;
inline constexpr std::size_t kClassCount = AXON_CLASS_COUNT;  // AXP priorities: 0 interactive, 1 background

// Which of a tenant's requests a rate limit applies to: one priority class, or all of them.
enum class RateScope : std::uint32_t {
  interactive = AXON_SCOPE_INTERACTIVE,
  background = AXON_SCOPE_BACKGROUND,
  all = AXON_SCOPE_ALL,
};

// Load-time configuration; it is baked into the program's read-only data and cannot change
// while loaded (reload to change it). Runtime tables go through the update calls below.
struct XdpConfig {
  std::array<std::uint16_t, kMaxPorts> ports{AXP_DEFAULT_PORT, 0, 0, 0};  // host order, 0 = unused
  bool enforce_allowlist = false;   // drop AXP whose source is outside the tenant's prefixes
  bool enforce_rate = false;        // apply per-tenant rate limits (tenants without one: unlimited)
  bool enforce_credits = false;     // spend per-tenant credits; none left: BUSY via XDP_TX (no entry: unlimited)
  bool deliver_to_kernel = false;   // valid AXP -> kernel stack (XDP_PASS) instead of AF_XDP
  bool drop_all_fragments = false;  // drop every IP fragment, not only attributable AXP ones
  bool rx_stamp = false;            // stamp redirected frames with the hook's time (axon_rx_meta)
  std::uint32_t max_queues = 64;    // size of the queue -> AF_XDP socket map
};

// How attach() ended up attaching.
enum class AttachMode {
  multiprog,  // behind libxdp's dispatcher: other XDP programs can share the interface
  single,     // the only program on the interface, native (driver) mode
};

[[nodiscard]] const char* to_string(AttachMode mode) noexcept;

// What is attached to an interface right now, from the kernel's point of view.
struct AttachedXdp {
  std::uint32_t program_id = 0;  // 0 = nothing attached
  bool native = false;           // driver mode (false: generic/SKB or offloaded)
};

// An IPv4 or IPv6 prefix such as "10.0.0.0/8" or "2001:db8::/32".
struct IpPrefix {
  int family = 0;  // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> address{};
  std::uint8_t length = 0;  // prefix bits

  [[nodiscard]] static XdpResult<IpPrefix> parse(std::string_view text);
  [[nodiscard]] std::string to_string() const;
};

// Counters summed over CPUs, indexed by enum axon_reason; the class arrays count, per AXP
// priority, the frames whose AXP header validated (earlier drops have no class).
struct XdpCounters {
  std::array<std::uint64_t, kReasonCount> packets{};
  std::array<std::uint64_t, kReasonCount> bytes{};
  std::array<std::array<std::uint64_t, kReasonCount>, kClassCount> class_packets{};
  std::array<std::array<std::uint64_t, kReasonCount>, kClassCount> class_bytes{};

  [[nodiscard]] std::uint64_t packets_for(axon_reason reason) const noexcept { return packets[reason]; }
  [[nodiscard]] std::uint64_t packets_for(axp_priority klass, axon_reason reason) const noexcept {
    return class_packets[klass][reason];
  }
};

// One BPF_PROG_TEST_RUN execution: what the program returned for a frame, and the frame as the
// program left it (rewritten and cut for XDP_TX).
struct TestRunResult {
  std::uint32_t action = 0;  // XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX or XDP_REDIRECT
  // The frame as the program left it, preceded by any metadata it put in front (axon_rx_meta
  // on a redirect with rx_stamp).
  std::vector<std::uint8_t> frame;
};

struct TestRunOptions {
  std::uint32_t ingress_ifindex = 0;  // 0 = no device context (then rx_queue must be 0)
  std::uint32_t rx_queue = 0;
};

class XdpProgram {
 public:
  // Opens the embedded object, writes `config` into its read-only data and loads it.
  [[nodiscard]] static XdpResult<XdpProgram> load(const XdpConfig& config);

  XdpProgram(XdpProgram&& other) noexcept;
  XdpProgram& operator=(XdpProgram&& other) noexcept;
  XdpProgram(const XdpProgram&) = delete;
  XdpProgram& operator=(const XdpProgram&) = delete;
  ~XdpProgram();  // detaches (logging any failure), then unloads

  // Native mode only: generic (SKB) mode is never chosen silently. Tries libxdp's multi-program
  // dispatcher first; where the kernel cannot run it (no freplace support, or no bpffs), attaches
  // as the interface's only program through a BPF link, logging one line that says so.
  [[nodiscard]] XdpResult<AttachMode> attach(int ifindex);
  [[nodiscard]] XdpResult<AttachMode> attach(std::string_view interface_name);
  [[nodiscard]] XdpResult<Ok> detach();
  [[nodiscard]] bool attached() const noexcept;
  [[nodiscard]] int attached_ifindex() const noexcept;  // -1 when not attached

  // Allowlist rules: `prefix` becomes an allowed source for `tenant_id` (host order).
  [[nodiscard]] XdpResult<Ok> allow_prefix(std::uint32_t tenant_id, const IpPrefix& prefix);
  [[nodiscard]] XdpResult<Ok> remove_prefix(std::uint32_t tenant_id, const IpPrefix& prefix);

  // Rate limits: `packets_per_second` sustained, up to `burst` back to back, for the tenant's
  // requests of one class or of all classes together (a request must pass both that apply).
  // Setting a limit resets that bucket to full.
  [[nodiscard]] XdpResult<Ok> set_rate_limit(std::uint32_t tenant_id, std::uint32_t packets_per_second,
                                             std::uint32_t burst, RateScope scope = RateScope::all);
  [[nodiscard]] XdpResult<Ok> clear_rate_limit(std::uint32_t tenant_id, RateScope scope = RateScope::all);

  // Credits (with XdpConfig::enforce_credits): the tenant may send `credits` more requests; each
  // one admitted spends one, and a request that finds none is answered BUSY with
  // `retry_after_us` by the program itself (XDP_TX). Setting replaces the count (a refresh, not
  // an addition). A tenant without credits is unlimited.
  [[nodiscard]] XdpResult<Ok> set_credits(std::uint32_t tenant_id, std::int64_t credits, std::uint32_t retry_after_us);
  [[nodiscard]] XdpResult<Ok> clear_credits(std::uint32_t tenant_id);
  // What is left of the tenant's credits (below 0 when requests raced for the last one);
  // nullopt when it has none set.
  [[nodiscard]] XdpResult<std::optional<std::int64_t>> read_credits(std::uint32_t tenant_id) const;

  // AF_XDP sockets: valid requests arriving on `queue` are redirected to `xsk_fd`.
  [[nodiscard]] XdpResult<Ok> set_socket(std::uint32_t queue, int xsk_fd);
  [[nodiscard]] XdpResult<Ok> clear_socket(std::uint32_t queue);

  [[nodiscard]] XdpResult<XdpCounters> read_counters() const;

  // Runs the loaded program once on `frame` without any interface (BPF_PROG_TEST_RUN). Maps and
  // counters are the live ones, so a test run is counted like a real packet.
  [[nodiscard]] XdpResult<TestRunResult> test_run(std::span<const std::uint8_t> frame,
                                                  const TestRunOptions& options = {}) const;

  [[nodiscard]] const XdpConfig& config() const noexcept;
  [[nodiscard]] int program_fd() const noexcept;
  [[nodiscard]] std::uint32_t program_id() const noexcept;

 private:
  struct State;
  explicit XdpProgram(std::unique_ptr<State> state) noexcept;
  void release() noexcept;

  std::unique_ptr<State> state_;
};

// What the kernel has attached to `ifindex` (any program, not only ours). Use it at start-up to
// find a program left behind by a crashed predecessor, and in tests to prove a clean detach.
[[nodiscard]] XdpResult<AttachedXdp> query_attached(int ifindex);

// Resolves an interface name, with an error message that lists what to check.
[[nodiscard]] XdpResult<int> interface_index(std::string_view interface_name);

}  // namespace axon::bpf
