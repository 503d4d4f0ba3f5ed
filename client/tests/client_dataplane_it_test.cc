// axon::client against the REAL data plane (issue 14, "Clients"): axon-dataplane on a veth pair
// in a namespace this test creates (prefix axcpc), a real echo_worker, and the client's socket
// made inside the namespace. Per backend (xdp, uring), over IPv4 and IPv6: 1 byte, exactly one
// segment, one segment plus one byte, and 64 KiB echoed, the requests segmented by the client
// (§6) and reassembled by the data plane, the replies segmented by the data plane and
// reassembled by the client; and axonctl send with a 64 KiB --payload-file. Nothing asserts on
// time.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <fstream>
#include <optional>
#include <string>

#include "axon/client/client.h"
#include "axon/testing/dataplane_it.h"

namespace axon::dataplane::it {
namespace {

namespace p = axon::protocol;
using axon::client::CallOptions;
using axon::client::Client;
using axon::client::ClientOptions;
using axon::client::RequestOptions;
using axon::client::TraceContext;

constexpr std::size_t kMtu = 1500;  // the veth pair's

class ClientDataplaneIT : public DataplaneIT<ClientDataplaneIT, ::testing::TestWithParam<std::string>> {
 public:
  static void SetUpTestSuite() {
    axon::testing::NetworkSpec spec;
    spec.prefix = "axcpc";
    create_network(spec);
  }

 protected:
  // A Client whose socket lives in the namespace, sized for the veth MTU of its family.
  std::optional<Client> open_client(int family) {
    ClientOptions options;
    options.max_datagram_bytes = kMtu - (family == AF_INET6 ? 40 : 20) - 8;
    options.receive_buffer_bytes = 1 << 20;
    const std::string host = family == AF_INET6 ? net_->root_ip6 : net_->root_ip4;
    std::optional<Client> out;
    std::string why;
    const bool entered = axon::testing::in_netns(
        net_->ns,
        [&] {
          auto c = Client::open(host, p::kDefaultPort, options);
          if (c) {
            out.emplace(std::move(c.value()));
          } else {
            why = c.message();
          }
        },
        &why);
    EXPECT_TRUE(entered && out) << "cannot open a client in " << net_->ns << ": " << why;
    return out;
  }
};

TEST_P(ClientDataplaneIT, MessagesUpTo64KiBEchoBothWaysOverIPv4AndIPv6) {
  ConfigSpec spec;
  spec.backend = GetParam();
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_NE(start_worker("w0", 0), nullptr);

  for (int family : {AF_INET, AF_INET6}) {
    if (family == AF_INET6 && !net_->has_ipv6) {
      std::cerr << "note: IPv6 is not available on the test veth pair; IPv6 not covered\n";
      continue;
    }
    auto client = open_client(family);
    ASSERT_TRUE(client);
    const std::size_t most = kMtu - (family == AF_INET6 ? 40 : 20) - 8 - p::kHeaderLen;
    for (std::size_t size : {std::size_t{1}, most, most + 1, std::size_t{65536}}) {
      SCOPED_TRACE(std::to_string(size) + " bytes over " + (family == AF_INET6 ? "IPv6" : "IPv4"));
      const auto message = pattern_payload(size, std::uint8_t(size + family));
      RequestOptions req;
      req.tenant = 1;
      req.agent = 7;
      req.trace = TraceContext::generate();
      CallOptions call;
      call.timeout = 20s;
      call.busy_retries = 20;  // the worker may still be coming up to speed
      call.timeout_retries = 3;
      call.attempt_timeout = 3s;
      auto reply = client->call(req, message, call);
      ASSERT_TRUE(reply.ok()) << reply.message();
      ASSERT_EQ(reply->type, p::MessageType::response) << p::to_string(reply->error_code);
      EXPECT_EQ(reply->payload, message);
      EXPECT_EQ(reply->trace_id, req.trace->trace_id);
    }
    EXPECT_EQ(client->counters().replies, 4u);
    EXPECT_EQ(client->counters().invalid, 0u);
    EXPECT_EQ(client->counters().reply_restarts, 0u);
  }
  // The data plane put the segmented requests together and cut the long replies itself.
  EXPECT_GT(stats().lcores(&LcoreStats::reassembled), 0u);
  EXPECT_GT(stats().lcores(&LcoreStats::reply_segments), 0u);
  EXPECT_EQ(stats().lcore_drops(p::Reason::reassembly_timeout), 0u);
}

// A worker slower than attempt_timeout: the client resends the segmented request (same id and
// header, checked byte for byte in ClientRetries) while the first runs, and takes the first
// reply; the data plane reassembled every resend whole, with no segment mismatch, and ran the
// request more than once (this agent has no dedup window, so every resend runs, protocol §1).
TEST_P(ClientDataplaneIT, ASlowWorkerGetsTheSegmentedRequestResentWhole) {
  ConfigSpec spec;
  spec.backend = GetParam();
  // Resends that find the worker busy are answered BUSY: hint 50 ms, so that busy_retries
  // below lasts well past the worker's 400 ms.
  spec.busy_retry_after_us = 50'000;
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_NE(start_worker("w0", 0, 400'000'000), nullptr);  // 400 ms per request
  auto client = open_client(AF_INET);
  ASSERT_TRUE(client);
  const auto message = pattern_payload(3000, 42);
  RequestOptions req;
  req.tenant = 1;
  req.agent = 7;
  req.trace = TraceContext::generate();
  CallOptions call;
  call.timeout = 20s;
  call.busy_retries = 100;
  call.timeout_retries = 2;
  call.attempt_timeout = 100ms;  // well under the worker's 400 ms: a retry is certain
  call.backoff_initial = 50ms;
  auto reply = client->call(req, message, call);
  ASSERT_TRUE(reply.ok()) << reply.message();
  ASSERT_EQ(reply->type, p::MessageType::response) << p::to_string(reply->error_code);
  EXPECT_EQ(reply->payload, message);
  EXPECT_GE(reply->attempts, 2u);
  EXPECT_GE(client->counters().retries, 1u);
  EXPECT_LE(client->counters().retries, 2u) << "the retry budget";
  // Each attempt was reassembled as a whole request: the resend repeated every segment.
  EXPECT_TRUE(eventually([&] { return stats().lcores(&LcoreStats::reassembled) >= 2; }));
  EXPECT_EQ(stats().lcore_drops(p::Reason::segment_mismatch), 0u);
}

// axonctl send (the real binary, run in the namespace) on the same client: a 64 KiB payload
// file echoed over IPv4 and IPv6, with timeout retries allowed; a file or stdin one byte over
// 64 KiB is refused (exit 2) rather than sent cut short.
TEST_P(ClientDataplaneIT, AxonctlSendsA64KiBPayloadFile) {
  ConfigSpec spec;
  spec.backend = GetParam();
  ASSERT_NO_FATAL_FAILURE(start_daemon(spec));
  ASSERT_NE(start_worker("w0", 0), nullptr);
  std::string text;
  for (std::size_t i = 0; text.size() < 65536; ++i) text += char('a' + i % 26);
  const std::string file = dir_->path() + "/payload.txt";
  const std::string too_big = dir_->path() + "/too_big.txt";
  {
    std::ofstream(file, std::ios::binary) << text;
    std::ofstream(too_big, std::ios::binary) << text << 'x';
  }
  const std::vector<std::string> common{"--tenant", "1",
                                        "--agent",  "7",
                                        "--json",   "--timeout-ms",
                                        "20000",    "--retries",
                                        "20",       "--timeout-retries",
                                        "2",        "--attempt-timeout-ms",
                                        "3000"};
  auto axonctl = [&](std::vector<std::string> args, std::string* out) {
    std::vector<std::string> argv{"ip", "netns", "exec", net_->ns, AXONCTL_BIN, "-v", "send"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), common.begin(), common.end());
    return run_command(argv, out);
  };
  for (int family : {AF_INET, AF_INET6}) {
    if (family == AF_INET6 && !net_->has_ipv6) continue;
    const std::string to = family == AF_INET6 ? "[" + net_->root_ip6 + "]" : net_->root_ip4;
    const std::string datagram = family == AF_INET6 ? "1452" : "1472";
    std::string out;
    EXPECT_EQ(axonctl({"--to", to, "--max-datagram", datagram, "--payload-file", file}, &out), 0) << out;
    EXPECT_NE(out.find("\"payload\":\"" + text + "\""), std::string::npos) << "the 64 KiB echo, over " << to;
    EXPECT_NE(out.find("replies=1 "), std::string::npos) << out.substr(out.size() > 300 ? out.size() - 300 : 0);
  }
  std::string out;
  EXPECT_EQ(axonctl({"--to", net_->root_ip4, "--payload-file", too_big}, &out), 2) << out;
  EXPECT_NE(out.find("65536"), std::string::npos) << out;
  EXPECT_EQ(run_command({"sh", "-c",
                         "head -c 65537 " + too_big + " | ip netns exec " + net_->ns + " " + AXONCTL_BIN +
                             " send --to " + net_->root_ip4 + " --tenant 1 --agent 7 --timeout-ms 5000 -"},
                        &out),
            2)
      << "a stdin payload over 64 KiB must be refused, not cut to 64 KiB: " << out.substr(0, 300);
}

INSTANTIATE_TEST_SUITE_P(Backends, ClientDataplaneIT, ::testing::Values("xdp", "uring"),
                         [](const ::testing::TestParamInfo<std::string>& p_info) { return p_info.param; });

}  // namespace
}  // namespace axon::dataplane::it
