// The JSON messages of the control socket, both directions, in one place so the data plane
// (server) and ControlClient cannot drift apart. Parsing never throws: every malformed input
// becomes an error with a message that names the offending field or item.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "axon/common/result.h"
#include "axon/dataplane/control.h"

namespace axon::dataplane::control {

enum class CodecError { oversize, malformed, unknown_op, invalid };

enum class Op { hello, apply, slots, grant, invalidate_cache };

struct Request {
  Op op = Op::hello;
  Tables tables;         // op == apply
  std::string slot;      // op == grant: the slot's name
  std::int32_t pid = 0;  // op == grant: the only process that may claim it (0 = none yet)
  // op == invalidate_cache: the agent whose response-cache entries go (by id), or all of them.
  std::uint32_t agent_id = 0;
  bool all = false;
};

// Both ends: lets a message of up to kMaxMessageBytes (a hello with thousands of slots, a
// large apply) through where the kernel allows it; SO_SNDBUF alone is capped by
// net.core.wmem_max unless the caller may force it.
void widen_socket_buffers(int fd) noexcept;

// --- server side
Result<Request, CodecError> parse_request(std::string_view text);
std::string encode_error(std::string_view message, bool refused = false);
std::string encode_hello(const Hello& hello);
std::string encode_slots(const std::vector<SlotInfo>& slots);
std::string encode_applied(std::uint64_t version);
std::string encode_ok();

// --- client side
std::string encode_hello_request();
std::string encode_slots_request();
std::string encode_apply_request(const Tables& tables);
std::string encode_grant_request(const std::string& slot, std::int32_t pid);
// agent_id 0: every agent's entries.
std::string encode_invalidate_cache_request(std::uint32_t agent_id);
// Checks the reply's "ok"; an ok:false reply becomes `rejected` (or `refused`) with the
// data plane's message, anything unparseable becomes protocol_error.
Result<Hello, ControlError> parse_hello_reply(std::string_view text);
Result<std::vector<SlotInfo>, ControlError> parse_slots_reply(std::string_view text);
Result<std::uint64_t, ControlError> parse_applied_reply(std::string_view text);
Result<Ok, ControlError> parse_ok_reply(std::string_view text);

}  // namespace axon::dataplane::control
