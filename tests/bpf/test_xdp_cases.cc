// The shared case table run through the loaded XDP program with BPF_PROG_TEST_RUN: every frame's
// verdict and the one counter it moves. tests/protocol holds the userspace parser to the same
// table, so the kernel and userspace classifiers are proven to agree case by case.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <optional>
#include <random>
#include <span>
#include <string>

#include "axon/bpf/xdp_program.h"
#include "axon/protocol/packet.h"

#include "packet_cases.h"

namespace axon::bpf {
namespace {

using protocol::Reason;

// The configuration the case table assumes (packet_cases.h).
XdpConfig case_config() {
  XdpConfig config;
  config.ports = test::kCasePorts;
  config.enforce_allowlist = true;
  config.enforce_rate = true;
  config.deliver_to_kernel = true;
  return config;
}

class XdpCase : public ::testing::TestWithParam<test::PacketCase> {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    auto loaded = XdpProgram::load(case_config());
    ASSERT_TRUE(loaded.ok()) << loaded.message();
    program_.emplace(std::move(loaded).value());
    ASSERT_TRUE(program_->allow_prefix(test::kAllowedTenant, IpPrefix::parse(test::kAllowedV4).value()).ok());
    ASSERT_TRUE(program_->allow_prefix(test::kAllowedTenant, IpPrefix::parse(test::kAllowedV6).value()).ok());
  }
  static void TearDownTestSuite() { program_.reset(); }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "BPF_PROG_TEST_RUN needs root (CAP_BPF + CAP_NET_ADMIN)";
    ASSERT_TRUE(program_.has_value()) << "the XDP program did not load; see the suite set-up failure";
  }

  static std::optional<XdpProgram> program_;
};

std::optional<XdpProgram> XdpCase::program_;

// What one test run did: the verdict and which counters moved.
struct Observed {
  std::uint32_t action = 0;
  std::array<std::uint64_t, kReasonCount> packets{};
  std::array<std::uint64_t, kReasonCount> bytes{};
};

XdpResult<Observed> observe(const XdpProgram& program, std::span<const std::uint8_t> frame) {
  auto before = program.read_counters();
  if (!before.ok()) return before.error();
  auto run = program.test_run(frame);
  if (!run.ok()) return run.error();
  auto after = program.read_counters();
  if (!after.ok()) return after.error();
  Observed o;
  o.action = run->action;
  for (std::size_t r = 0; r < kReasonCount; ++r) {
    o.packets[r] = after->packets[r] - before->packets[r];
    o.bytes[r] = after->bytes[r] - before->bytes[r];
  }
  return o;
}

// The single reason whose counter moved, or nullopt when zero or several moved.
std::optional<Reason> moved_reason(const Observed& o) {
  std::optional<Reason> moved;
  for (std::size_t r = 0; r < kReasonCount; ++r) {
    if (o.packets[r] == 0) continue;
    if (moved || o.packets[r] != 1) return std::nullopt;
    moved = static_cast<Reason>(r);
  }
  return moved;
}

TEST_P(XdpCase, VerdictAndCounter) {
  const test::PacketCase& c = GetParam();
  auto observed = observe(*program_, c.frame);
  if (!c.test_run_accepts) {
    // The kernel refuses test input shorter than an Ethernet header before the program runs;
    // a NIC cannot deliver such a frame to XDP either. The parser test covers the rule.
    ASSERT_FALSE(observed.ok());
    EXPECT_EQ(observed.code(), XdpError::test_run_failed);
    return;
  }
  ASSERT_TRUE(observed.ok()) << observed.message();
  EXPECT_EQ(observed->action, c.xdp_action);
  for (std::size_t r = 0; r < kReasonCount; ++r) {
    const char* name = protocol::to_string(static_cast<Reason>(r));
    if (r == static_cast<std::size_t>(c.xdp_reason)) {
      EXPECT_EQ(observed->packets[r], 1u) << "counter " << name << " should count this frame";
      EXPECT_EQ(observed->bytes[r], c.frame.size()) << "counter " << name;
    } else {
      EXPECT_EQ(observed->packets[r], 0u)
          << "counter " << name << " moved, expected only " << protocol::to_string(c.xdp_reason);
    }
  }
}

// Kernel and userspace side by side on the same bytes, without going through the table: the
// reason the XDP program counted is the reason the parser returns (policy reasons aside).
TEST_P(XdpCase, ParserAgreesWithKernel) {
  const test::PacketCase& c = GetParam();
  if (!c.test_run_accepts) GTEST_SKIP() << "test_run refuses frames shorter than 14 bytes";
  auto observed = observe(*program_, c.frame);
  ASSERT_TRUE(observed.ok()) << observed.message();
  auto kernel = moved_reason(*observed);
  ASSERT_TRUE(kernel.has_value()) << "expected exactly one counter to move";
  Reason parsed = protocol::PacketParser(test::case_parser_config()).parse(c.frame).reason;
  bool policy = *kernel == Reason::prefix_denied || *kernel == Reason::rate_limited || *kernel == Reason::no_socket;
  EXPECT_EQ(parsed, policy ? Reason::ok : *kernel)
      << "parser " << protocol::to_string(parsed) << ", kernel " << protocol::to_string(*kernel);
}

INSTANTIATE_TEST_SUITE_P(Table, XdpCase, ::testing::ValuesIn(test::packet_cases()),
                         [](const auto& test_info) { return test_info.param.name; });

// Beyond the table: thousands of frames derived from it by random corruption (byte overwrites,
// truncation, extension), each classified by the kernel and by the parser. With no map policy
// configured, the two must agree on every single frame.
TEST(XdpAgreement, RandomlyCorruptedFramesGetTheSameReasonInKernelAndUserspace) {
  if (geteuid() != 0) GTEST_SKIP() << "BPF_PROG_TEST_RUN needs root";
  XdpConfig config;
  config.ports = test::kCasePorts;
  config.deliver_to_kernel = true;
  auto loaded = XdpProgram::load(config);
  ASSERT_TRUE(loaded.ok()) << loaded.message();
  const XdpProgram& program = loaded.value();
  protocol::PacketParser parser(test::case_parser_config());

  std::vector<std::vector<std::uint8_t>> seeds;
  for (const auto& c : test::packet_cases())
    if (c.test_run_accepts) seeds.push_back(c.frame);

  constexpr std::uint32_t kSeed = 0xA7C0FFEE;
  constexpr int kFrames = 3000;
  std::mt19937 rng(kSeed);
  std::array<int, kReasonCount> seen{};
  for (int i = 0; i < kFrames; ++i) {
    std::vector<std::uint8_t> frame = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      switch (rng() % 4) {
        case 0:
        case 1: {  // overwrite a byte, mostly inside the headers where the rules live
          std::size_t limit = std::min<std::size_t>(frame.size(), 14 + 8 + 40 + 8 + 8 + protocol::kHeaderLen);
          frame[rng() % limit] = static_cast<std::uint8_t>(rng());
          break;
        }
        case 2:  // cut, but keep the 14 bytes test_run insists on
          frame.resize(14 + rng() % (frame.size() - 13));
          break;
        default:  // extend with junk
          frame.insert(frame.end(), rng() % 16, static_cast<std::uint8_t>(rng()));
          break;
      }
    }
    auto observed = observe(program, frame);
    ASSERT_TRUE(observed.ok()) << observed.message();
    auto kernel = moved_reason(*observed);
    ASSERT_TRUE(kernel.has_value()) << "frame " << i << ": expected exactly one counter to move";
    Reason parsed = parser.parse(frame).reason;
    if (parsed != *kernel) {
      std::string hex;
      for (std::uint8_t b : frame) {
        char byte[4];
        std::snprintf(byte, sizeof byte, "%02x", b);
        hex += byte;
      }
      FAIL() << "frame " << i << " (seed " << kSeed << "): kernel " << protocol::to_string(*kernel) << ", parser "
             << protocol::to_string(parsed) << "\n"
             << hex;
    }
    ++seen[static_cast<std::size_t>(parsed)];
  }
  // The corpus must actually exercise many rules, or agreement proves little.
  int distinct = 0;
  for (int count : seen) distinct += count > 0;
  EXPECT_GE(distinct, 12) << "random corruption reached too few distinct reasons";
}

}  // namespace
}  // namespace axon::bpf
